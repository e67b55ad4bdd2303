package saferetryotel

import (
	"context"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/saferetry/saferetry"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// scopeName is the instrumentation scope of every span and instrument.
const scopeName = "github.com/saferetry/saferetry/otel"

// Config says where the telemetry goes and what it may contain. The zero
// Config sends it to the global providers, records no header and redacts
// with the defaults. A Config is read when New or ObserveBudget is called;
// changing it afterwards changes nothing already built.
type Config struct {
	// TracerProvider creates the attempt spans. Nil means
	// otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider creates the instruments. Nil means
	// otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// Propagator writes each attempt's trace context into the attempt's
	// headers, so the server's span is the attempt span's child. Nil means
	// otel.GetTextMapPropagator() (which propagates nothing until one is
	// set).
	Propagator propagation.TextMapPropagator
	// Hook, if set, is called with every saferetry.Event after the
	// telemetry has recorded it. A saferetry.WithHook among New's options
	// would replace the telemetry's own hook (a stack has one), so pass
	// yours here. It runs on the request's goroutine and must not block.
	Hook func(saferetry.Event)
	// Logger, if set, receives saferetry's log records (it is passed to
	// the stack as saferetry.WithLogger), with every URL quoted in a
	// message or string value redacted as url.full is: saferetry logs an
	// attempt's error message, and some errors (*url.Error, those of
	// wrappers like oauth2) quote the request's URL. A saferetry.WithLogger
	// among New's options is replaced when Logger is set, kept when not.
	Logger *slog.Logger
	// RequestHeaders and ResponseHeaders name headers recorded on attempt
	// spans as http.request.header.<name> and http.response.header.<name>
	// (the semantic conventions make them opt-in). None by default. The
	// values of Authorization, Proxy-Authorization, Cookie and Set-Cookie,
	// and of the headers SecretHeaders matches, are recorded as REDACTED.
	RequestHeaders  []string
	ResponseHeaders []string
	// SecretHeaders names further headers whose values are never recorded,
	// compared case-insensitively; a "*" at either end of a name matches
	// any prefix or suffix ("*token*"). Nil means DefaultSecretHeaders();
	// an empty slice means only the four always redacted.
	SecretHeaders []string
	// SecretQueryParams names the query parameters whose values are
	// replaced by REDACTED in url.full and in the URLs error messages
	// quote, matched as SecretHeaders is. Nil means
	// DefaultSecretQueryParams(); an empty slice redacts no parameter.
	// Credentials in a URL's userinfo are always redacted.
	SecretQueryParams []string
}

// Transport is the saferetry stack with its telemetry. Build it with New
// or Config.New; the zero Transport is not usable. Safe for concurrent
// use.
type Transport struct {
	stack *saferetry.Stack
	tel   *telemetry
}

var _ http.RoundTripper = (*Transport)(nil)

// New returns saferetry.New(base, opts...) instrumented for the global
// providers: Config{}.New(base, opts...).
func New(base http.RoundTripper, opts ...saferetry.Option) *Transport {
	return Config{}.New(base, opts...)
}

// New returns the stack saferetry.New(base, opts...) would build,
// instrumented as c says: base is wrapped so each attempt gets a span, the
// stack's hook is set (see Config.Hook), and the result counts each
// logical request. A nil base means saferetry's default (go-cleanhttp's
// pooled transport with HTTP/2 health checks), the one instance shared by
// saferetry's layers with a nil Base. New panics on an invalid option, as
// saferetry.New does.
func (c Config) New(base http.RoundTripper, opts ...saferetry.Option) *Transport {
	tel := newTelemetry(c)
	if base == nil {
		// A retry layer that never retries, over its nil Base: inside the
		// stack's run it passes each attempt straight to saferetry's
		// shared default transport.
		base = &saferetry.Transport{MaxRetries: -1}
	}
	all := make([]saferetry.Option, 0, len(opts)+2)
	all = append(all, opts...)
	all = append(all, saferetry.WithHook(tel.hook))
	if c.Logger != nil {
		all = append(all, saferetry.WithLogger(slog.New(&redactingHandler{inner: c.Logger.Handler(), r: &tel.redact})))
	}
	return &Transport{
		stack: saferetry.New(&attemptLayer{tel: tel, base: base}, all...),
		tel:   tel,
	}
}

// RoundTrip implements http.RoundTripper: it sends req through the stack,
// then records the logical request's metrics, and, if the loop stopped for
// a reason its hook never reported (the caller canceled), a stop event.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil {
		return t.stack.RoundTrip(req) // nothing to describe; the stack reports the error
	}
	c := &callContext{Context: req.Context()}
	c.call.parent = trace.SpanFromContext(req.Context())
	c.call.describe(req, &t.tel.redact)
	resp, err := t.stack.RoundTrip(req.WithContext(c))
	t.tel.finish(&c.call, req.Context(), err)
	return resp, err
}

// CloseIdleConnections closes the base transport's idle connections, as
// http.Client.CloseIdleConnections expects of its Transport.
func (t *Transport) CloseIdleConnections() { t.stack.CloseIdleConnections() }

// call is what the telemetry learns about one logical request while the
// stack runs it. attempts is counted by the attempt layer, on the
// attempts' goroutines (hedges run concurrently); the other fields are
// written by the stack's hook, which runs on the goroutine that called
// RoundTrip, and read there once the stack returns.
type call struct {
	parent   trace.Span   // the span in the caller's context, for events
	attempts atomic.Int32 // attempts that reached the base, the first included

	// The logical request as recorded, the same for all its attempts:
	// computed once, before the first.
	method      string // the conventions' http.request.method (_OTHER if unknown)
	knownMethod bool
	host        string // server.address
	port        int    // server.port; 0 if unknown
	urlFull     string // url.full, redacted

	retries int           // retries the loop decided on (hook events)
	hedges  int           // hedges sent
	delay   time.Duration // sum of the waits before retries
	stop    saferetry.StopReason
	stopped bool // the hook reported a stop
}

// describe records what every attempt and the metrics say of req.
func (c *call) describe(req *http.Request, r *redactor) {
	c.method, c.knownMethod = method(req)
	c.host, c.port = server(req)
	c.urlFull = r.url(req.URL)
}

// callKey is the context key of a logical request's call.
type callKey struct{}

// callContext carries the call with a single allocation: the context
// value and the call are one object.
type callContext struct {
	context.Context
	call call
}

// Value implements context.Context.
func (c *callContext) Value(key any) any {
	if key == (callKey{}) {
		return &c.call
	}
	return c.Context.Value(key)
}

// callFrom returns the call of the logical request ctx belongs to, or nil
// for a request that did not come through a Transport.
func callFrom(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

// telemetry is what one Transport records with: resolved providers,
// instruments and redaction rules. Immutable once built.
type telemetry struct {
	tracer     trace.Tracer
	clientKind trace.SpanStartOption // made once: an option is an interface value
	propagator propagation.TextMapPropagator
	inst       instruments
	attrs      attrsCache
	redact     redactor
	reqHeaders []capturedHeader
	resHeaders []capturedHeader
	userHook   func(saferetry.Event)
}

func newTelemetry(c Config) *telemetry {
	tp := c.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	prop := c.Propagator
	if prop == nil {
		prop = otel.GetTextMapPropagator()
	}
	r := newRedactor(c.SecretHeaders, c.SecretQueryParams)
	return &telemetry{
		tracer:     tp.Tracer(scopeName),
		clientKind: trace.WithSpanKind(trace.SpanKindClient),
		propagator: prop,
		inst:       newInstruments(c.meterProvider()),
		redact:     r,
		reqHeaders: captured("http.request.header.", c.RequestHeaders),
		resHeaders: captured("http.response.header.", c.ResponseHeaders),
		userHook:   c.Hook,
	}
}

func (c Config) meterProvider() metric.MeterProvider {
	if c.MeterProvider == nil {
		return otel.GetMeterProvider()
	}
	return c.MeterProvider
}
