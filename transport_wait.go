package saferetry

import (
	"context"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/saferetry/saferetry/internal/serverwait"
)

// waitSchedule decides the wait before each retry of one logical request:
// the server's Retry-After when it gave one, the backoff otherwise.
type waitSchedule struct {
	retry          int           // backoff retries since the start or the last server-directed wait
	prev           time.Duration // the previous backoff delay (for decorrelated jitter)
	serverDirected bool          // the last wait honoured Retry-After
}

// next returns the wait before the next retry, or the reason not to wait:
// a Retry-After over the cap, or a wait that would leave the next attempt
// less than minAttemptTime before the deadline.
func (w *waitSchedule) next(ctx context.Context, resp *http.Response, backoff Backoff, maxRetryAfter time.Duration) (time.Duration, StopReason) {
	now := time.Now()
	deadline, hasDeadline := ctx.Deadline()
	if hint, ok := serverHint(resp, now); ok {
		limit := maxRetryAfter
		if hint > limit {
			return 0, StopRetryAfterTooLong
		}
		if hasDeadline {
			room := deadline.Sub(now) - minAttemptTime
			if hint > room {
				return 0, StopDeadline
			}
			limit = min(limit, room) // the upward jitter never eats into the attempt's time
		}
		// gRPC A6: after a server-directed wait the backoff starts over.
		w.retry, w.prev, w.serverDirected = 0, 0, true
		return min(hint+upwardJitter(hint), limit), StopNone
	}
	w.retry++
	d := backoff.Delay(w.retry, w.prev)
	w.prev, w.serverDirected = d, false
	if hasDeadline && d > deadline.Sub(now)-minAttemptTime {
		return 0, StopDeadline
	}
	return d, StopNone
}

// minAttemptTime is the least time an attempt must have before the
// caller's deadline for a retry to be worth making. A wait that would
// leave less is not started, and the last response or error is handed
// back: a retry started with no time left can only end in a bare
// deadline error, which tells the caller less than the 503 or 429 it
// replaced. 100ms covers a round trip across a continent with room to
// spare.
const minAttemptTime = 100 * time.Millisecond

// serverHint returns the wait the server asked for in a response whose
// status makes it meaningful for a retry: 429, a rate-limit 403 (one
// whose headers say the quota is exhausted until a reset, as GitHub
// sends), 503, and 413 (RFC 9110 §15.5.14). Every header servers use is
// read (Retry-After, retry-after-ms, the IETF RateLimit fields,
// X-RateLimit-*, the x-ratelimit-reset-* durations of LLM APIs): the
// longest wait announced wins.
func serverHint(resp *http.Response, now time.Time) (time.Duration, bool) {
	if resp == nil {
		return 0, false
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusRequestEntityTooLarge,
		http.StatusForbidden:
	default:
		return 0, false
	}
	hint := serverwait.Parse(resp.Header, now)
	if !hint.Announced || (resp.StatusCode == http.StatusForbidden && !hint.Exhausted) {
		return 0, false
	}
	return hint.Wait, true
}

// upwardJitter returns U[0, hint/10): clients told the same Retry-After
// should not all come back in the same instant.
func upwardJitter(hint time.Duration) time.Duration {
	if spread := hint / 10; spread > 0 {
		return time.Duration(rand.Int64N(int64(spread)))
	}
	return 0
}

// sleep waits for d or until ctx is done, whichever is first, and reports
// whether the wait completed. The timer is stopped either way.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
