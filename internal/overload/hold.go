package overload

import (
	"sync/atomic"
	"time"
)

// A host's rate-limit hold: the host announced that its quota for this
// client is exhausted until a time (a 429, or GitHub's 403, with a
// remaining count of 0 and a reset), and saferetry, when asked to
// (WithRateLimitHold), holds first attempts to it until then instead of
// sending requests bound to be refused. The state is one word of Host,
// until: that time on the table's clock, 0 for none; and one word of the
// Table, holdsEnd, the latest such time of all its hosts, so that a
// client none of whose hosts is held pays one atomic load to know it.
//
// A host with a hold is not forgotten as a fresh one after IdleEvict,
// only after MaxIdle: requests refused locally do not use the host, so a
// long hold (GitHub's resets are up to an hour away) is forgotten after
// MaxIdle without a request sent, and the next request goes out and
// learns it again. A hold thus never silences a host for longer than
// MaxIdle on a stale announcement.

// Exhaust records that name announced its quota exhausted until until, a
// time on the caller's clock, as now is. A later end already recorded is
// kept: the quota comes back when every announced reset has passed.
func (tb *Table) Exhaust(name string, now, until time.Duration) {
	// A hold ends by MaxIdle at the latest: the host would be forgotten
	// by then (the documented bound), and an absurd reset (years away,
	// or a sum that overflowed) must not silence a host for good.
	until = min(max(until, now), now+tb.c.p.MaxIdle)
	h := tb.host(name, Ticks(now))
	raise(&h.until, until)
	raise(&tb.holdsEnd, until)
}

// raise sets w to v if v is later.
func raise(w *atomic.Int64, v time.Duration) {
	for {
		old := w.Load()
		if int64(v) <= old || w.CompareAndSwap(old, int64(v)) {
			return
		}
	}
}

// HoldsEnd returns the latest end of any host's hold, or 0 if no hold
// was recorded since they last all ended. It reads one word.
func (tb *Table) HoldsEnd() time.Duration { return time.Duration(tb.holdsEnd.Load()) }

// EndHolds records that every hold has ended, if end, which the caller
// has seen pass, is still the latest end: later calls of HoldsEnd then
// return 0 until another hold is recorded.
func (tb *Table) EndHolds(end time.Duration) { tb.holdsEnd.CompareAndSwap(int64(end), 0) }

// HeldUntil returns when name's announced exhaustion ends, or 0 if none
// is recorded (or name has no host). The time may have passed: the caller
// compares it with its clock.
func (tb *Table) HeldUntil(name string) time.Duration {
	h := tb.lookup(name, -1)
	if h == nil || h.tick.Load() == dead {
		return 0
	}
	return time.Duration(h.until.Load())
}
