package saferetry

import (
	"net/http"
	"strings"
)

// Retryable is a strategy's verdict on one attempt's outcome.
type Retryable int

const (
	// Done hands the outcome back as it is: a success, or an answer that
	// retrying cannot change (a 404, a 422). It is the zero value.
	Done Retryable = iota
	// Transient asks for a retry, if the retry limit, the budget, the
	// deadline and the body allow one.
	Transient
	// Fatal refuses a retry for a failure: retrying would be unsafe (an
	// unkeyed POST that may have reached the server) or useless (a bad
	// certificate). The outcome is handed back and marked StopNotRetryable.
	Fatal
)

// String returns the verdict's name.
func (r Retryable) String() string {
	switch r {
	case Done:
		return "done"
	case Transient:
		return "transient"
	case Fatal:
		return "fatal"
	}
	return "Retryable(?)"
}

// Attempt is one attempt's outcome, as a Strategy sees it.
type Attempt struct {
	// Request is the request as sent for this attempt.
	Request *http.Request
	// Response is the attempt's response, or nil when Err is set. A
	// strategy may read its status and headers but must not read its body.
	Response *http.Response
	// Err is the attempt's transport error, or nil.
	Err error
	// Number counts attempts from 1.
	Number int
	// Keyed reports whether the request carries an idempotency key
	// (Idempotency-Key, X-Idempotency-Key or the configured key header).
	Keyed bool
	// NeverSent reports positive evidence that no byte of the request
	// reached the server: net/http asked for a connection and never got
	// one (httptrace GetConn without GotConn). A base that fires no trace
	// hooks gives no evidence, and NeverSent is then false. Errors that
	// prove it by their type (a refused dial, a DNS failure, an HTTP/2
	// REFUSED_STREAM) are classified as such whatever NeverSent says. It
	// is tracked only for requests that are neither idempotent nor keyed,
	// the only ones it decides; for others it is false.
	NeverSent bool
}

// StatusCode returns the response's status, or 0 when the attempt ended
// in an error.
func (a Attempt) StatusCode() int {
	if a.Response == nil {
		return 0
	}
	return a.Response.StatusCode
}

// Idempotent reports whether sending the request again cannot apply it
// twice, so it may be resent after it may have reached the server: its
// method is idempotent (RFC 9110 §9.2.2), or it carries an idempotency key
// the server deduplicates by.
func (a Attempt) Idempotent() bool {
	return a.Keyed || (a.Request != nil && isIdempotent(a.Request.Method))
}

// Strategy classifies an attempt's outcome. Implementations must be safe
// for concurrent use; they are called once per attempt.
type Strategy interface {
	Classify(Attempt) Retryable
}

// StrategyFunc adapts a function to Strategy. A custom strategy can decide
// the cases it cares about and fall back to DefaultStrategy.Classify.
type StrategyFunc func(Attempt) Retryable

// Classify calls f(a).
func (f StrategyFunc) Classify(a Attempt) Retryable { return f(a) }

// TableStrategy implements the classification table of saferetry's
// design: what may be retried depends on the outcome and on whether the
// request is replayable (idempotent or keyed). Its zero value applies the
// table with no server hint headers. Safe for concurrent use.
type TableStrategy struct {
	// HintHeaders name response headers through which a server says
	// whether to retry ("true" or "false", case-insensitive), such as
	// Stripe-Should-Retry. "false" wins over the table; "true" makes an
	// error status retryable for a replayable request.
	HintHeaders []string
}

// DefaultStrategy is the strategy New uses: the table, honouring
// Stripe-Should-Retry.
var DefaultStrategy = TableStrategy{HintHeaders: []string{"Stripe-Should-Retry"}}

var (
	_ Strategy = TableStrategy{}
	_ Strategy = StrategyFunc(nil)
)

// Classify implements Strategy.
func (s TableStrategy) Classify(a Attempt) Retryable {
	if a.Err != nil {
		return classifyAttemptError(a)
	}
	if a.Response == nil {
		return Done
	}
	verdict := classifyStatus(a)
	if a.Response.StatusCode < 400 {
		return verdict // hints speak only of failures
	}
	if hint, ok := s.hint(a.Response.Header); ok {
		switch {
		case !hint && verdict == Transient:
			return Fatal
		case hint && verdict != Transient && a.Idempotent():
			return Transient
		}
	}
	return verdict
}

func classifyAttemptError(a Attempt) Retryable {
	switch classifyError(a.Request, a.Err) {
	case errCanceled, errPermanent:
		return Fatal
	case errNotConnected, errRefusedStream:
		return Transient
	}
	if a.Idempotent() || a.NeverSent {
		return Transient
	}
	return Fatal
}

func classifyStatus(a Attempt) Retryable {
	resp := a.Response
	switch resp.StatusCode {
	case http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		if a.Idempotent() {
			return Transient
		}
		return Fatal
	case http.StatusConflict:
		// Asking again is right only for the same key still in progress;
		// for an unkeyed request a 409 is a real conflict.
		if !a.Keyed {
			return Done
		}
	}
	if askedToComeBack(resp) {
		return Transient
	}
	return Done
}

// hint reads the first configured hint header present in h.
func (s TableStrategy) hint(h http.Header) (retry, ok bool) {
	for _, name := range s.HintHeaders {
		v := h.Get(name)
		switch {
		case strings.EqualFold(v, "true"):
			return true, true
		case strings.EqualFold(v, "false"):
			return false, true
		}
	}
	return false, false
}

// isIdempotent reports RFC 9110 §9.2.2's idempotent methods; the empty
// method means GET in net/http.
func isIdempotent(method string) bool {
	switch method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions,
		http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}
