package saferetry

import (
	"fmt"
	"log/slog"
	"time"
)

// Option configures the stack New builds. The options of the retry loop
// (WithMaxRetries, WithBackoff, WithJitter, WithStrategy,
// WithAttemptTimeout, WithMaxRetryAfter) and WithKeyMethods can also apply
// to single requests, through WithRequestOptions; the others configure
// state the whole stack shares and panic there.
//
// Invalid values are programmer errors: the option panics with a message
// naming itself and the value, as regexp.MustCompile does, rather than
// failing later at request time. The zero Option is invalid.
type Option struct {
	name  string        // the constructor's name, for panics
	scope optionScope   // which layer it configures
	set   func(*target) // writes the option's value
}

// optionScope says what an option configures, and so whether it can
// apply to one request.
type optionScope int

const (
	scopeStack optionScope = iota // state the whole stack shares
	scopeLoop                     // the retry loop: per request too
	scopeKeys                     // which requests get a key: per request too
)

// target is what an option writes: a stack's layers, or the overrides of
// the requests sent with one context. Options write the layers' own
// fields, so every default lives in one place: the layer's zero value.
type target struct {
	stack   *Stack            // nil for a request's overrides
	retries *Transport        // the stack's retry layer, or a request's copy of it
	request *requestOverrides // nil for a stack
}

func invalid(option string, value any, why string) {
	panic(fmt.Sprintf("saferetry: %s(%v): %s", option, value, why))
}

// stackOption is an option that configures the whole stack.
func stackOption(name string, set func(*Stack)) Option {
	return Option{name: name, set: func(t *target) { set(t.stack) }}
}

// loopOption is an option of the retry loop, which can apply per request.
func loopOption(name string, set func(*Transport)) Option {
	return Option{name: name, scope: scopeLoop, set: func(t *target) { set(t.retries) }}
}

// WithMaxRetries sets how many retries follow the first attempt (default
// 3, so 4 attempts). Zero disables retrying; negative values panic. It can
// apply per request.
func WithMaxRetries(n int) Option {
	if n < 0 {
		invalid("WithMaxRetries", n, "must not be negative")
	}
	if n == 0 {
		n = -1 // Transport's zero means the default
	}
	return loopOption("WithMaxRetries", func(t *Transport) { t.MaxRetries = n })
}

// WithBackoff sets the exponential backoff bounds (default 100ms and 10s):
// the wait before retry n is at most min(max, initial*2^(n-1)). (0, 0)
// retries without waiting. Negative values or initial > max panic. It
// replaces a custom Backoff with Exponential, and can apply per request.
func WithBackoff(initial, max time.Duration) Option {
	if initial < 0 || max < 0 {
		invalid("WithBackoff", fmt.Sprintf("%v, %v", initial, max), "durations must not be negative")
	}
	if initial > max {
		invalid("WithBackoff", fmt.Sprintf("%v, %v", initial, max), "initial must not exceed max")
	}
	return loopOption("WithBackoff", func(t *Transport) {
		e := exponentialOf(t.Backoff)
		e.Initial, e.Max = initial, max
		t.Backoff = e
	})
}

// WithJitter sets how backoff waits are randomised (default FullJitter).
// It replaces a custom Backoff with Exponential, and can apply per request.
func WithJitter(j Jitter) Option {
	if !j.valid() {
		invalid("WithJitter", int(j), "unknown jitter")
	}
	return loopOption("WithJitter", func(t *Transport) {
		e := exponentialOf(t.Backoff)
		e.Jitter = j
		t.Backoff = e
	})
}

// WithStrategy sets the outcome classifier (default DefaultStrategy). A
// nil strategy panics. It can apply per request.
func WithStrategy(s Strategy) Option {
	if s == nil {
		invalid("WithStrategy", "nil", "strategy must not be nil")
	}
	return loopOption("WithStrategy", func(t *Transport) { t.Strategy = s })
}

// WithAttemptTimeout bounds each attempt until its response headers
// arrive (default: no bound; LLM and streaming APIs legitimately take long
// to answer). Reading the body is not bounded. Zero removes the bound;
// negative values panic. It can apply per request.
func WithAttemptTimeout(d time.Duration) Option {
	if d < 0 {
		invalid("WithAttemptTimeout", d, "must not be negative")
	}
	return loopOption("WithAttemptTimeout", func(t *Transport) { t.AttemptTimeout = d })
}

// WithMaxRetryAfter caps the Retry-After the stack waits for (default
// 60s); a response asking for longer is returned at once. It must be
// positive. It can apply per request.
func WithMaxRetryAfter(d time.Duration) Option {
	if d <= 0 {
		invalid("WithMaxRetryAfter", d, "must be positive")
	}
	return loopOption("WithMaxRetryAfter", func(t *Transport) { t.MaxRetryAfter = d })
}

// WithBudget sets the retry budget. Each New has a budget of its own by
// default (NewBudget's defaults); pass one *Budget to several New calls to
// share it, or nil to turn budgeting off.
func WithBudget(b *Budget) Option {
	return stackOption("WithBudget", func(s *Stack) { s.retries.Budget = b })
}

// WithMaxBodyBytes sets the most bytes of a non-replayable body buffered
// for retries (default 1 MiB). A larger body is sent once, unmodified, and
// not retried after it was read. Zero buffers nothing; negative panics.
func WithMaxBodyBytes(n int64) Option {
	if n < 0 {
		invalid("WithMaxBodyBytes", n, "must not be negative")
	}
	if n == 0 {
		n = -1 // BodyCache's zero means the default
	}
	return stackOption("WithMaxBodyBytes", func(s *Stack) { s.bodies.MaxBodyBytes = n })
}

// WithKeyHeader sets the header the idempotency key is sent in (default
// Idempotency-Key). Requests carrying it are treated as keyed. The name
// must be a valid HTTP token.
func WithKeyHeader(name string) Option {
	if !validHeaderName(name) {
		invalid("WithKeyHeader", fmt.Sprintf("%q", name), "not a valid header name")
	}
	return stackOption("WithKeyHeader", func(s *Stack) {
		// Both layers need the name: one to set it, one to recognise it.
		s.keys.Header, s.retries.KeyHeader = name, name
	})
}

// WithKeyMethods sets which methods get an idempotency key (default POST
// and PATCH). Called with no methods, no key is injected. It can apply per
// request, to turn injection off (or on) for one endpoint.
func WithKeyMethods(methods ...string) Option {
	for _, m := range methods {
		if !validHeaderName(m) {
			invalid("WithKeyMethods", fmt.Sprintf("%q", m), "not a valid method")
		}
	}
	keyed := append(make([]string, 0, len(methods)), methods...)
	return Option{name: "WithKeyMethods", scope: scopeKeys, set: func(t *target) {
		if t.request != nil {
			t.request.keyMethods, t.request.keyMethodsSet = keyed, true
			return
		}
		t.stack.keys.Methods = keyed
	}}
}

// WithKeyFunc sets the function that makes idempotency keys (default: a
// random UUID v4). Its keys must be visible ASCII without quotes, at most
// 255 bytes; a bad key fails its request with ErrInvalidKey.
func WithKeyFunc(newKey func() string) Option {
	if newKey == nil {
		invalid("WithKeyFunc", "nil", "key function must not be nil")
	}
	return stackOption("WithKeyFunc", func(s *Stack) { s.keys.NewKey = newKey })
}

// WithQuotedKeys sends keys as structured-field strings ("..."), as
// draft-ietf-httpapi-idempotency-key-header §2.1 specifies. The default is
// the bare key, which Stripe and most deployed APIs expect.
func WithQuotedKeys() Option {
	return stackOption("WithQuotedKeys", func(s *Stack) { s.keys.Quoted = true })
}

// WithKeyStore sets where the idempotency keys of named operations
// (WithOperation) are recorded (default: a MemoryKeyStore of the stack's
// own, which survives no restart). A nil store panics.
func WithKeyStore(store KeyStore) Option {
	if store == nil {
		invalid("WithKeyStore", "nil", "store must not be nil")
	}
	return stackOption("WithKeyStore", func(s *Stack) { s.keys.Store = store })
}

// WithLogger logs one structured record per retry and per retry refused
// (default: silent). Bodies, Authorization and cookies are never logged.
func WithLogger(l *slog.Logger) Option {
	return stackOption("WithLogger", func(s *Stack) { s.retries.Logger = l })
}

// WithHook sets a function called with an Event for every retry and every
// retry refused, for metrics and tracing. It runs on the request's
// goroutine and must not block.
func WithHook(hook func(Event)) Option {
	return stackOption("WithHook", func(s *Stack) { s.retries.Hook = hook })
}

// WithHedge sends hedges: when an attempt has had no answer for delay,
// another is sent while it is still in flight, up to maxHedges more, and
// the first answer the strategy would not retry wins; the others are
// canceled, drained and closed. Only idempotent or keyed requests are
// hedged, so every hedge of a write carries the same key and a server that
// deduplicates applies it once; a body is hedged only when every hedge can
// read its own replay of it. Each hedge is withdrawn from the retry
// budget; a budget that refuses stops further hedges but cancels nothing
// in flight. Off by default; delay must be positive and maxHedges within
// 1..5. It can apply per request.
func WithHedge(delay time.Duration, maxHedges int) Option {
	if delay <= 0 {
		invalid("WithHedge", fmt.Sprintf("%v, %d", delay, maxHedges), "delay must be positive")
	}
	if maxHedges < 1 || maxHedges > maxHedgesAllowed {
		invalid("WithHedge", fmt.Sprintf("%v, %d", delay, maxHedges), "maxHedges must be within 1..5")
	}
	return loopOption("WithHedge", func(t *Transport) { t.HedgeDelay, t.MaxHedges = delay, maxHedges })
}

// WithHedgeQuantile hedges as WithHedge does, after the q-quantile of the
// host's recent times to response headers instead of a fixed delay:
// WithHedgeQuantile(0.9, 2) sends a hedge when an attempt is slower than
// nine in ten of the host's recent ones, so about one request in ten is
// hedged whatever the host's latency. A host with fewer than 20 answers
// yet is hedged after WithHedge's delay, if one was given, and not at all
// otherwise. Attempts a hedge made unnecessary count as lasting until
// they were canceled, so a host's slow tail stays in its history. q must
// be within (0, 1) and maxHedges within 1..5. It can apply per request.
func WithHedgeQuantile(q float64, maxHedges int) Option {
	if !(q > 0 && q < 1) {
		invalid("WithHedgeQuantile", fmt.Sprintf("%v, %d", q, maxHedges), "q must be within (0, 1)")
	}
	if maxHedges < 1 || maxHedges > maxHedgesAllowed {
		invalid("WithHedgeQuantile", fmt.Sprintf("%v, %d", q, maxHedges), "maxHedges must be within 1..5")
	}
	return loopOption("WithHedgeQuantile", func(t *Transport) { t.HedgeQuantile, t.MaxHedges = q, maxHedges })
}

// defaultAttemptHeader is the header New sends the attempt number in on
// every attempt after the first. No standard names one: AWS SDKs send
// "amz-sdk-request: attempt=2; max=4" on every request, Envoy sends
// x-envoy-attempt-count upstream (and overwrites it when it retries
// itself), gRPC sends grpc-previous-rpc-attempts (A6). A neutral name,
// sent only on retries and hedges, tells any server a request is a
// second try without claiming a vendor's header.
const defaultAttemptHeader = "Retry-Attempt"

// WithAttemptHeader sets the header in which every attempt after the first
// carries its number (default Retry-Attempt: 2 on the first retry), so an
// overloaded server can shed retries before first attempts. The empty
// name sends none; an invalid header name panics.
func WithAttemptHeader(name string) Option {
	if name != "" && !validHeaderName(name) {
		invalid("WithAttemptHeader", fmt.Sprintf("%q", name), "not a valid header name")
	}
	return stackOption("WithAttemptHeader", func(s *Stack) { s.retries.AttemptHeader = name })
}

// WithThrottle sets the K of adaptive client-side throttling (the Google
// SRE book, "Handling Overload"): attempts to a host, first attempts
// included, are refused locally with probability max(0, (requests -
// K*accepts) / (requests + 1)) over its recent attempts, at most 0.9, so
// an overloaded host is not hit with requests bound to fail and some keep
// probing it. Only overload answers (429, 503, refused connections,
// attempt timeouts) count as not accepted. A refused first attempt fails
// with ErrThrottled; nothing is sent. Zero turns throttling off; otherwise
// k must be at least 1 (below, a healthy host would be throttled). The
// counts live in the stack's budget, so WithBudget(nil) turns throttling
// off too. It is off by default: the simulator (saferetry storm) shows K
// = 2 cutting an outage's load to about a tenth and bringing a host that
// overload left metastable back in about 1s where a client that never
// retries takes up to 16s, but also losing goodput on a host that fails
// half its attempts at random (29% of requests served against 53%
// without it), which a default must not. It can apply per request.
func WithThrottle(k float64) Option {
	if k != 0 && !(k >= 1 && k <= 100) {
		invalid("WithThrottle", k, "must be 0 (off) or within [1, 100]")
	}
	return loopOption("WithThrottle", func(t *Transport) { t.Throttle = k })
}
