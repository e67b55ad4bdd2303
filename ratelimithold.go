package saferetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/saferetry/saferetry/internal/serverwait"
)

// ErrRateLimited is matched (with errors.Is) by the error of a request
// that was never sent because its host had announced its quota exhausted
// until a reset that the request could not wait for: past its context's
// deadline, or longer than the cap on server-directed waits
// (WithMaxRetryAfter). Sending it would only have earned a 429 (or
// GitHub's 403), and GitHub warns that clients which keep sending while
// limited may be banned. Only a stack with WithRateLimitHold(true) returns
// it. Nothing was sent, so the request is safe to try again after the
// reset, whatever its method.
var ErrRateLimited = errors.New("saferetry: rate limited: the host's quota is exhausted until a reset; the request was not sent")

// WithRateLimitHold, when on, holds the first attempt of a request to a
// host that has announced its quota exhausted (a 429, or a 403, with a
// remaining count of 0 and a reset: GitHub's X-RateLimit-Remaining and
// X-RateLimit-Reset, the IETF RateLimit field, OpenAI's
// x-ratelimit-remaining-* and -reset-*) until the reset, plus up to 10%
// of the hold as jitter, instead of sending a request bound to be refused.
// When the held request wakes, it looks again, and holds on if a later
// reset was announced meanwhile. A request whose hold would end past its
// context's deadline (less the 100ms an attempt needs), or last longer
// than the cap on server-directed waits (WithMaxRetryAfter, 60s by
// default) in all, fails at once, unsent, with an error matching
// ErrRateLimited. Off by default; it can apply per request.
//
// Turn it on for an API that counts one quota per client in fixed
// windows, such as GitHub's REST API with one token: there, in the
// simulations of cmd/saferetry/STORM.md ("Holding first attempts"), it
// removes almost every refused attempt at equal goodput, though without a
// deadline held requests take the quota at the reset ahead of new ones,
// so more requests succeed in all but fewer within seconds. Leave it off
// when the announced reset is not when capacity comes back, or the
// quota is not the host's: a token bucket that refills continuously
// (OpenAI's reset is the time to a full bucket), a host with several
// quotas (GitHub's search API beside its core API, OpenAI's per-model
// limits), or several API keys through one stack. Holding there lost 6 to
// 15 points of goodput in those simulations; that is why it is off.
//
// The state is learnt from every 429 and 403 the stack receives, kept per
// host in the stack's Budget (so WithBudget(nil) with WithRateLimitHold
// panics in New), and forgotten at the reset, or after 10 minutes at most
// (a reset announced further away, such as GitHub's hourly one, is held
// 10 minutes): after that, a request goes out and learns it again.
// A retry is never held: it already waits for the server's announced
// wait. Off, the hold costs a request one comparison. On, it costs an
// atomic load while no host is held, and a clock read and a lookup while
// one is; never an allocation.
func WithRateLimitHold(on bool) Option {
	return loopOption("WithRateLimitHold", func(t *Transport) { t.RateLimitHold = on })
}

// rateLimitedError is the error of a request the hold refused. It
// matches ErrRateLimited.
type rateLimitedError struct {
	host string
	wait time.Duration // from the refusal to the reset
	past string        // what the hold would have passed
}

func (e *rateLimitedError) Error() string {
	return fmt.Sprintf("saferetry: %s announced its quota exhausted for %v more, past %s; the request was not sent",
		e.host, e.wait.Round(time.Millisecond), e.past)
}

func (e *rateLimitedError) Unwrap() error { return ErrRateLimited }

// holdFirst is called before a logical request's first attempt, by the
// plain and the hedged loop alike. When the transport holds and the
// request's host announced its quota exhausted, it waits until the reset
// (selecting on the request's context), looking again each time it
// wakes, or returns an error matching ErrRateLimited at once if the hold
// would pass the deadline or the cap, or the context's cause if the
// caller gave up during it. A transport that does not hold, or a host
// without a hold, returns nil at once, allocating nothing.
func (r *retryRun) holdFirst() error {
	if !r.t.RateLimitHold || r.t.Budget == nil {
		return nil
	}
	host := r.req.URL.Host
	var limit time.Time // when every hold of this request must end
	for {
		wait := r.t.Budget.heldFor(host)
		if wait <= 0 {
			return nil
		}
		now := time.Now()
		if limit.IsZero() {
			limit = now.Add(r.t.maxRetryAfter())
		}
		end := now.Add(wait)
		if end.After(limit) {
			return &rateLimitedError{host: host, wait: wait, past: fmt.Sprintf("the %v cap on server-directed waits (WithMaxRetryAfter)", r.t.maxRetryAfter())}
		}
		deadline, ok := r.ctx.Deadline()
		if ok && end.After(deadline.Add(-minAttemptTime)) {
			return &rateLimitedError{host: host, wait: wait, past: "the request's deadline"}
		}
		last := limit
		if ok {
			last = minTime(last, deadline.Add(-minAttemptTime))
		}
		if !sleep(r.ctx, min(wait+upwardJitter(wait), last.Sub(now))) {
			return context.Cause(r.ctx)
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// learnRateLimit records, from a's response, that its host announced its
// quota exhausted until a reset: a 429 or a 403 whose headers say a
// remaining count of 0 with a reset (serverwait's Exhausted). A
// Retry-After alone does not: it answers one request, and need not
// concern the others. Other statuses cost one comparison.
//
// planRetry calls it, so both loops learn from every outcome the
// strategy would retry (a 429 and a rate-limit 403 are, by default); the
// hedged loop also calls it for a failure that arrives while other
// attempts are still in flight, which does not reach planRetry.
func (r *retryRun) learnRateLimit(a Attempt) {
	resp := a.Response
	if resp == nil || r.t.Budget == nil ||
		resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusForbidden {
		return
	}
	if hint := serverwait.Parse(resp.Header, time.Now()); hint.Exhausted {
		r.t.Budget.exhaust(r.req.URL.Host, hint.Wait)
	}
}

// exhaust records that host's quota is exhausted for wait from now.
func (b *Budget) exhaust(host string, wait time.Duration) {
	now := b.now()
	// The table keeps a hold to its idle limit; bounding the wait first
	// keeps the sum from overflowing.
	b.table.Exhaust(host, now, now+min(wait, b.table.Config().Params().MaxIdle))
}

// heldFor returns how long host's announced exhaustion lasts from now, or
// 0 if it has none. While no host of the budget is held it reads one
// word, not even the clock.
func (b *Budget) heldFor(host string) time.Duration {
	end := b.table.HoldsEnd()
	if end == 0 {
		return 0
	}
	now := b.now()
	if end <= now {
		b.table.EndHolds(end) // every hold has ended
		return 0
	}
	if left := b.table.HeldUntil(host) - now; left > 0 {
		return left
	}
	return 0
}
