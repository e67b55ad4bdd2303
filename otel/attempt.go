package saferetryotel

import (
	"context"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// attemptLayer is the stack's base as saferetry sees it: every attempt
// passes through it on its way to the real base, hedges concurrently, so
// each gets a span of its own.
type attemptLayer struct {
	tel  *telemetry
	base http.RoundTripper
}

var _ http.RoundTripper = (*attemptLayer)(nil)

// RoundTrip sends one attempt in a client span under the span of the
// request's context, numbered by the logical request's counter: the
// ordinal of its arrival here, so http.request.resend_count is right
// whatever the stack's attempt header is called, or if it is off. A
// hedge that overtakes an earlier one on its way here takes the lower
// number; the saferetry.attempt of the events may then differ from
// resend_count+1 by one. The span ends when the response headers arrive
// or the attempt fails: a body the caller never closes cannot hold it
// open.
func (l *attemptLayer) RoundTrip(req *http.Request) (*http.Response, error) {
	c := callFrom(req.Context())
	if c == nil {
		return l.base.RoundTrip(req) // not a request of ours
	}
	resend := int(c.attempts.Add(1)) - 1
	ctx, span := l.tel.startAttempt(req, c, resend)
	sent := req
	if span.SpanContext().IsValid() {
		sent = l.tel.withSpanContext(ctx, req)
	}
	resp, err := l.base.RoundTrip(sent)
	if resp != nil && resp.Request == sent && sent != req {
		// The copy carries the span and its trace context; the stack
		// expects the request it sent.
		resp.Request = req
	}
	l.tel.endAttempt(span, resp, err)
	return resp, err
}

// CloseIdleConnections forwards to the base transport.
func (l *attemptLayer) CloseIdleConnections() {
	if c, ok := l.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// startAttempt starts an attempt's span with the attributes the
// conventions want at creation, for samplers: method, server, url.full,
// and http.request.resend_count from the second attempt on.
func (tel *telemetry) startAttempt(req *http.Request, c *call, resend int) (context.Context, trace.Span) {
	kvs := make([]attribute.KeyValue, 0, 6+len(tel.reqHeaders))
	kvs = append(kvs, keyMethod.String(c.method))
	if !c.knownMethod {
		kvs = append(kvs, keyMethodOriginal.String(req.Method))
	}
	kvs = serverAttrs(kvs, c.host, c.port)
	kvs = append(kvs, keyURLFull.String(c.urlFull))
	if resend > 0 {
		kvs = append(kvs, keyResendCount.Int(resend))
	}
	kvs = tel.redact.headerAttrs(kvs, tel.reqHeaders, req.Header)
	name := c.method
	if !c.knownMethod {
		name = "HTTP" // the conventions' span name for an unknown method
	}
	return tel.tracer.Start(req.Context(), name, tel.clientKind, trace.WithAttributes(kvs...))
}

// withSpanContext returns a shallow copy of req whose context holds the
// attempt span (so instrumentation below, httptrace's or otelhttp's,
// nests under it) and whose headers carry its trace context, cloned only
// when the propagator writes something: the caller's request, and the
// stack's, are never modified.
func (tel *telemetry) withSpanContext(ctx context.Context, req *http.Request) *http.Request {
	var carrier lazyHeader
	tel.propagator.Inject(ctx, &carrier)
	sent := req.WithContext(ctx)
	if !carrier.empty() {
		sent.Header = req.Header.Clone()
		if sent.Header == nil {
			sent.Header = make(http.Header, carrier.n)
		}
		carrier.writeTo(sent.Header)
	}
	return sent
}

// endAttempt records the attempt's outcome and ends its span. A status of
// 400 or more, or an error, makes the span's status Error; an error's
// description is its message with any URL it quotes redacted.
func (tel *telemetry) endAttempt(span trace.Span, resp *http.Response, err error) {
	if !span.IsRecording() || (err == nil && resp == nil) {
		span.End() // nothing to record, or a base that broke the RoundTripper contract
		return
	}
	if err != nil {
		span.SetAttributes(keyErrorType.String(errorType(err)))
		span.SetStatus(codes.Error, tel.redact.message(err.Error()))
		span.End()
		return
	}
	kvs := make([]attribute.KeyValue, 0, 3+len(tel.resHeaders))
	kvs = append(kvs, keyStatusCode.Int(resp.StatusCode))
	if v := protocolVersion(resp); v != "" {
		kvs = append(kvs, keyProtocolVer.String(v))
	}
	if resp.StatusCode >= 400 {
		kvs = append(kvs, keyErrorType.String(strconv.Itoa(resp.StatusCode)))
		span.SetStatus(codes.Error, "")
	}
	kvs = tel.redact.headerAttrs(kvs, tel.resHeaders, resp.Header)
	span.SetAttributes(kvs...)
	span.End()
}

// protocolVersion returns network.protocol.version for resp: "1.1", "2".
func protocolVersion(resp *http.Response) string {
	switch {
	case resp.ProtoMajor == 1 && resp.ProtoMinor == 1:
		return "1.1"
	case resp.ProtoMajor == 2 && resp.ProtoMinor == 0:
		return "2"
	case resp.ProtoMajor == 1 && resp.ProtoMinor == 0:
		return "1.0"
	case resp.ProtoMajor == 3 && resp.ProtoMinor == 0:
		return "3"
	}
	return ""
}

// lazyHeader is a propagation carrier that keeps what the propagator
// writes in a small array, spilling to a map only past it: the global
// default propagator writes nothing, W3C trace context one or two
// fields, with baggage three.
type lazyHeader struct {
	n      int
	fields [3][2]string // canonical key, value
	more   http.Header
}

func (c *lazyHeader) Get(key string) string {
	key = http.CanonicalHeaderKey(key)
	for _, f := range c.fields[:c.n] {
		if f[0] == key {
			return f[1]
		}
	}
	return c.more.Get(key)
}

func (c *lazyHeader) Set(key, value string) {
	key = http.CanonicalHeaderKey(key)
	for i := range c.fields[:c.n] {
		if c.fields[i][0] == key {
			c.fields[i][1] = value
			return
		}
	}
	if c.n < len(c.fields) {
		c.fields[c.n] = [2]string{key, value}
		c.n++
		return
	}
	if c.more == nil {
		c.more = make(http.Header)
	}
	c.more.Set(key, value)
}

func (c *lazyHeader) Keys() []string {
	keys := make([]string, 0, c.n+len(c.more))
	for _, f := range c.fields[:c.n] {
		keys = append(keys, f[0])
	}
	for k := range c.more {
		keys = append(keys, k)
	}
	return keys
}

// empty reports whether nothing was written.
func (c *lazyHeader) empty() bool { return c.n == 0 }

// writeTo sets what was written in h.
func (c *lazyHeader) writeTo(h http.Header) {
	for _, f := range c.fields[:c.n] {
		h[f[0]] = []string{f[1]}
	}
	for k, v := range c.more {
		h[k] = v
	}
}
