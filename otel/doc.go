// Package saferetryotel instruments saferetry with OpenTelemetry in one
// line:
//
//	client.Transport = saferetryotel.New(base, saferetry.WithMaxRetries(2))
//
// A retrying client is hard to see into. One logical request may be one
// attempt or five, sent at once or after minutes of backoff, cut short by
// the retry budget or by a deadline, or raced against hedges; an
// instrumentation that sits outside the stack (otelhttp around
// saferetry.New) sees only the logical request, and one inside it sees
// attempts with nothing saying which logical request they served, why they
// were resent, or why the resending stopped. This package sits at both
// ends of the stack so it can say all of that:
//
//	Transport           once per logical request: counts it, records why it stopped
//	  └─ saferetry.Stack   KeyInjector, BodyCache, the retry loop (its hook reports
//	      │                retries, hedges and refusals to this package)
//	      └─ attempt layer  once per attempt: a client span, http.request.resend_count,
//	          │             the trace context propagated to the server
//	          └─ base       your transport, or saferetry's default
//
// Each attempt is an HTTP client span, as the OpenTelemetry HTTP semantic
// conventions ask of instrumentation that can see every physical request,
// under the span in the request's context (the caller's, or otelhttp's
// when otelhttp wraps this transport). Retries, hedges and the reason the
// loop stopped are events on that span. Metrics count attempts, retries,
// hedges and waits per logical request and stops by reason;
// Config.ObserveBudget reports a retry budget's state per host. Nothing
// recorded carries a secret: url.full is redacted, headers are recorded
// only when asked for and then redacted, and error messages are scrubbed
// of the URLs they quote.
//
// The README lists every span attribute, event and instrument.
//
// # Layout
//
//	transport.go   Config, New, Transport: the logical request
//	attempt.go     the attempt layer and its span
//	events.go      the hook: retries, hedges and stops as span events
//	metrics.go     the instruments and what is recorded per logical request
//	budget.go      per-host budget and throttle gauges; overload.go binds them
//	               to Budget.Hosts
//	attributes.go  semantic-convention attributes: method, server, error.type
//	redact.go      what is never recorded: credentials in URLs, secret
//	               query parameters and headers; logs.go applies it to
//	               saferetry's log
package saferetryotel
