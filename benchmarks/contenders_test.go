package benchmarks

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/PuerkitoBio/rehttp"
	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/saferetry/saferetry"
)

// maxRetries is the retry limit every retrying contender is given: three
// retries after the first attempt, four attempts at most.
const maxRetries = 3

// drainLimit bounds how much of a discarded response a contender's
// configuration reads, where the library leaves draining to its user.
const drainLimit = 16 << 10

// contender is one way of sending the benchmarks' requests.
type contender struct {
	// name is the value of the transport= part of the benchmark names.
	name string
	// wrap returns the contender's RoundTripper over base, a fresh pooled
	// transport from go-cleanhttp (the same for every contender). For the
	// bare contender it is base itself.
	wrap func(base *http.Transport) http.RoundTripper
}

// bare is no retry layer: the pooled transport alone. The retry scenario
// sends its three attempts by hand (see retryByHand).
var bare = contender{"bare", func(base *http.Transport) http.RoundTripper { return base }}

// contenders lists every transport the benchmarks compare, bare first.
// Each retrying contender is configured alike, as far as its library
// allows:
//
//   - at most 3 retries (4 attempts);
//   - no wait between attempts, so that the figures are the library's
//     work and not its sleeping;
//   - retry on 5xx and 429 responses and on transport errors, never after
//     the caller's context ended; a discarded response is read to the end
//     (bounded) so that its connection returns to the pool; when retries
//     run out, the last response is returned as it is.
//
// What differs is what the libraries do by design: saferetry adds an
// Idempotency-Key to POSTs (its retry budget is off here: see
// newSaferetry); the others send the request as it is and buffer bodies
// their own way.
var contenders = []contender{
	bare,
	{"saferetry", newSaferetry},
	{"retryablehttp", newRetryablehttp},
	{"failsafehttp", newFailsafehttp},
	{"rehttp", newRehttp},
}

// newSaferetry is the standard stack with its defaults (key injection,
// body replay, the default classification table, Retry-After), except
// that it retries without waiting and has no budget: the retry scenario
// (two 503s in every three attempts) is what the default budget exists
// to refuse, and no public setting makes one that never refuses. The
// budget's own cost per request is measured in the root package
// (BenchmarkBudget, and BenchmarkRetryParallel's saferetry+budget).
func newSaferetry(base *http.Transport) http.RoundTripper {
	return saferetry.New(base,
		saferetry.WithMaxRetries(maxRetries),
		saferetry.WithBackoff(0, 0),
		saferetry.WithBudget(nil),
	)
}

// newRetryablehttp is go-retryablehttp's RoundTripper around a Client
// whose http.Client sends through base. DefaultRetryPolicy retries
// transport errors (except redirect, scheme, header and certificate
// errors) and every 5xx but 501, and 429; DefaultBackoff with both bounds
// 0 waits 0 (it still arms a timer per retry). The default logger, which
// writes every request to stderr, is removed, and PassthroughErrorHandler
// returns the last response when retries run out instead of an error.
func newRetryablehttp(base *http.Transport) http.RoundTripper {
	return &retryablehttp.RoundTripper{Client: &retryablehttp.Client{
		HTTPClient:   &http.Client{Transport: base},
		Logger:       nil,
		RetryWaitMin: 0,
		RetryWaitMax: 0,
		RetryMax:     maxRetries,
		CheckRetry:   retryablehttp.DefaultRetryPolicy,
		Backoff:      retryablehttp.DefaultBackoff,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}}
}

// newFailsafehttp is failsafehttp's RoundTripper with the retry policy of
// NewRetryPolicyBuilder (retry transport errors except scheme, certificate
// and redirect ones, 429 and every 5xx but 501; Retry-After honoured on
// 429 and 503), 3 retries, a delay of 0, and ReturnLastFailure so that the
// last response is returned when retries run out.
//
// failsafehttp neither drains nor closes the responses it retries: each
// would keep its connection busy, and that connection's read goroutine
// blocked, for as long as the process runs (TestFailsafeLeaksWithoutDrain
// shows it). The OnRetryScheduled listener reads the discarded response
// (up to drainLimit) and closes it, as the other libraries do by
// themselves.
func newFailsafehttp(base *http.Transport) http.RoundTripper {
	policy := failsafehttp.NewRetryPolicyBuilder().
		WithMaxRetries(maxRetries).
		WithDelay(0).
		ReturnLastFailure().
		OnRetryScheduled(func(e failsafe.ExecutionScheduledEvent[*http.Response]) {
			if resp := e.LastResult(); resp != nil {
				_, _ = io.CopyN(io.Discard, resp.Body, drainLimit)
				_ = resp.Body.Close()
			}
		}).
		Build()
	return failsafehttp.NewRoundTripper(base, policy)
}

// newRehttp is rehttp's Transport: retry while fewer than 3 retries were
// made, on 5xx but 501 and 429, and on any transport error other than the
// caller's context ending, with a constant delay of 0 (a time.After per
// retry). rehttp drains and closes the responses it discards itself.
func newRehttp(base *http.Transport) http.RoundTripper {
	retryable := rehttp.RetryAny(
		rehttp.RetryStatuses(http.StatusTooManyRequests),
		rehttp.RetryStatusInterval(http.StatusInternalServerError, http.StatusNotImplemented),
		rehttp.RetryStatusInterval(http.StatusBadGateway, 600),
		rehttp.RetryIsErr(func(err error) bool {
			return err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
		}),
	)
	return rehttp.NewTransport(base, rehttp.RetryAll(rehttp.RetryMaxRetries(maxRetries), retryable), rehttp.ConstDelay(0))
}
