package overload

import "time"

// A host's rate-limit hold: the host announced that its quota for this
// client is exhausted until a time (a 429, or GitHub's 403, with a
// remaining count of 0 and a reset), and saferetry, when asked to
// (WithRateLimitHold), holds first attempts to it until then instead of
// sending requests bound to be refused. The state is one word of Host,
// until: that time on the table's clock, 0 for none. Recording it takes a
// compare-and-swap; reading it, one load, no lock and no allocation.
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
	h := tb.host(name, Ticks(now))
	for {
		old := h.until.Load()
		if int64(until) <= old || h.until.CompareAndSwap(old, int64(until)) {
			return
		}
	}
}

// HeldUntil returns when name's announced exhaustion ends, or 0 if none
// is recorded (or name has no host). The time may have passed: the caller
// compares it with its clock, which HeldUntil does not read, so that a
// host without a hold costs a lookup and a load.
func (tb *Table) HeldUntil(name string) time.Duration {
	h := tb.lookup(name, -1)
	if h == nil || h.tick.Load() == dead {
		return 0
	}
	return time.Duration(h.until.Load())
}

// EndHold forgets name's hold if it still ends at until, once the caller
// has seen that time pass: later requests then skip reading the clock.
func (tb *Table) EndHold(name string, until time.Duration) {
	if h := tb.lookup(name, -1); h != nil {
		h.until.CompareAndSwap(int64(until), 0)
	}
}
