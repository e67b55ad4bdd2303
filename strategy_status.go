package saferetry

import (
	"errors"
	"net/http"
	"syscall"
	"time"

	"github.com/saferetry/saferetry/internal/overload"
	"github.com/saferetry/saferetry/internal/serverwait"
)

// askedToComeBack reports the statuses by which a server says it did not
// process the request and asks the client to send it again later: 408,
// 429 and a rate-limit 403, 413 with a Retry-After (RFC 9110 §15.5.14: the condition is
// temporary), and 409, which answers a keyed request whose key is still
// being processed (draft-ietf-httpapi-idempotency-key-header §2.7). The
// retry loop retries them; a named operation answered with one stays
// pending.
func askedToComeBack(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusRequestTimeout, http.StatusConflict, http.StatusTooManyRequests:
		return true
	case http.StatusRequestEntityTooLarge:
		_, temporary := retryAfterOf(resp.Header)
		return temporary
	case http.StatusForbidden:
		// A rate-limit 403 (GitHub's): the quota is exhausted until a
		// reset, and the request was not processed, as with a 429.
		return serverwait.Parse(resp.Header, time.Now()).Exhausted
	}
	return false
}

// overloaded reports the outcomes that show the host is overloaded, the
// only ones adaptive throttling counts as not accepted: 429, 503, a
// refused connection, an attempt that timed out. A 404 or a 422 is an
// accepted request.
func overloaded(a Attempt) bool {
	if a.Err != nil {
		return errors.Is(a.Err, syscall.ECONNREFUSED) || timedOut(a)
	}
	code := a.StatusCode()
	return code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable
}

// timedOut reports whether a failed with an attempt timeout
// (WithAttemptTimeout).
func timedOut(a Attempt) bool { return a.Err != nil && errors.Is(a.Err, ErrAttemptTimeout) }

// failureKind is what a retry after a follows, for the budget's gate:
// serverDirected says its wait is the server's.
func failureKind(a Attempt, serverDirected bool) overload.Failure {
	switch {
	case timedOut(a):
		return overload.TimedOut
	case serverDirected:
		return overload.ServerDirected
	}
	return overload.Answered
}
