package overload

import (
	"iter"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Table is the state of every host a client talks to, keyed by host name,
// with hosts forgotten once idle so that a client talking to an unbounded
// number of hosts (a webhook sender) keeps bounded memory.
//
// A host is evicted once it has been idle for IdleEvict if its state is
// then the same as a fresh host's (tokens at least the allowance, throttle
// averages decayed below one request): forgetting it changes nothing. Any
// host is evicted once idle for MaxIdle: one that was refused retries
// then comes back with the allowance, a grant of at most Allowance per
// MaxIdle of silence. Idle hosts are swept at most once per Window, by
// whichever operation notices a sweep is due: a new host, or a host's
// first operation in a new tick.
//
// Operations on a known host take no lock and allocate nothing. A Table
// must be set up with Init before use and not copied after.
type Table struct {
	c         *Config
	phase     func() float64 // draws new hosts' phases; nil: rand.Float64
	hosts     sync.Map       // string -> *Host
	nextSweep atomic.Int64   // tick at or after which idle hosts are swept
	// last is a host recently looked up: most clients talk to one host
	// most of the time, and comparing a name costs less than a map
	// lookup. A miss replaces it only if it was not used in the current
	// tick, so that a client talking to many hosts at once writes it at
	// most once a tick.
	last atomic.Pointer[Host]
	// holdsEnd is the latest end of any host's rate-limit hold, 0 once
	// they have all ended: see hold.go.
	holdsEnd atomic.Int64
}

// Init sets the table's configuration. Call it once, before any other
// method.
func (tb *Table) Init(c *Config) {
	tb.c = c
	tb.nextSweep.Store(c.sweepGap)
}

// SetPhase sets the function that draws new hosts' phases (see
// Host.Init), rand.Float64 by default: tests that want exact counts pass
// a constant. Call it after Init, before any other method.
func (tb *Table) SetPhase(f func() float64) { tb.phase = f }

// Config returns the table's configuration.
func (tb *Table) Config() *Config { return tb.c }

// lookup returns name's host, or nil if it has none. The host may have
// been evicted since: its tick says so. t is the current tick, or -1 if
// the caller did not read the clock (the cache is then left alone).
func (tb *Table) lookup(name string, t int64) *Host {
	last := tb.last.Load()
	if last != nil && last.name == name {
		return last
	}
	v, ok := tb.hosts.Load(name)
	if !ok {
		return nil
	}
	h := v.(*Host)
	if t >= 0 && (last == nil || last.tick.Load() < t) {
		tb.last.Store(h)
	}
	return h
}

// host returns name's live host, brought to tick t, making it if need be.
func (tb *Table) host(name string, t int64) *Host {
	for {
		h := tb.lookup(name, t)
		if h == nil {
			h = tb.add(name, t)
		}
		alive, advanced := h.touch(tb.c, t)
		if !alive {
			// Evicted between the lookup and now: the next lookup finds
			// the map without it, or the host that replaced it.
			continue
		}
		if advanced {
			tb.maybeSweep(t)
		}
		return h
	}
}

// add is host's slow path: a host not seen, or seen and evicted.
func (tb *Table) add(name string, t int64) *Host {
	tb.maybeSweep(t)
	h := new(Host)
	draw := tb.phase
	if draw == nil {
		draw = rand.Float64
	}
	h.Init(tb.c, time.Duration(t)*Tick, draw())
	// Clone the name so that the map does not pin a larger string it may
	// have been sliced from.
	h.name = strings.Clone(name)
	v, loaded := tb.hosts.LoadOrStore(h.name, h)
	if !loaded {
		tb.last.Store(h)
	}
	return v.(*Host)
}

// maybeSweep evicts idle hosts if a sweep is due at tick t, at most once
// per Window.
func (tb *Table) maybeSweep(t int64) {
	next := tb.nextSweep.Load()
	if t < next || !tb.nextSweep.CompareAndSwap(next, t+tb.c.sweepGap) {
		return
	}
	tb.hosts.Range(func(key, v any) bool {
		h := v.(*Host)
		if old := h.tick.Load(); old != dead && tb.evictable(h, t-old) {
			// An operation that touched h since the Load makes the CAS
			// fail: a host in use is never evicted.
			if h.tick.CompareAndSwap(old, dead) {
				tb.hosts.CompareAndDelete(key, h)
			}
		}
		return true
	})
}

// evictable reports whether h, idle for idle ticks, may be forgotten.
func (tb *Table) evictable(h *Host, idle int64) bool {
	c := tb.c
	switch {
	case idle >= c.maxIdle:
		return true
	case idle < c.idleEvict, h.until.Load() != 0: // a hold stays until MaxIdle: see hold.go
		return false
	}
	decayed := float64(h.reqs.Load()) * expTicks(idle, c.thrRate)
	t, p := unpack(h.balance.Load())
	tokCap, paceCap := c.caps(0, h.phase)
	// A streak is kept: it is the only evidence a host too quiet for
	// the averages has, and it ends only with an accepted answer.
	return t >= tokCap && p >= paceCap && decayed < Unit && h.streak.Load() <= 0
}

// Deposit credits a logical request to name at time now.
func (tb *Table) Deposit(name string, now time.Duration) {
	tb.host(name, Ticks(now)).deposit(tb.c)
}

// Withdraw asks for a retry to name at time now.
func (tb *Table) Withdraw(name string, now time.Duration, after Failure) bool {
	return tb.host(name, Ticks(now)).withdraw(tb.c, after)
}

// Gated reports whether the gate refuses retries to name at time now (see
// Host.Gated).
func (tb *Table) Gated(name string, now time.Duration, after Failure) bool {
	return tb.host(name, Ticks(now)).gated(tb.c, after)
}

// Refund returns a token Withdraw granted to name for a retry not made.
// A host evicted since (which takes MaxIdle of silence) gets nothing
// back: it starts full.
func (tb *Table) Refund(name string, now time.Duration) {
	tb.host(name, Ticks(now)).refund(tb.c)
}

// Admit is the throttle's decision, with K = k, on an attempt to name
// (see Host.admit); k <= 0 admits without looking name up.
func (tb *Table) Admit(name string, now time.Duration, k float64, draw func() float64) bool {
	if k <= 0 {
		return true
	}
	return tb.host(name, Ticks(now)).admit(tb.c, k, draw)
}

// Record counts the outcome of an attempt to name at time now.
func (tb *Table) Record(name string, now time.Duration, accepted bool) {
	tb.host(name, Ticks(now)).record(accepted)
}

// RecordLatest counts the outcome of an attempt to name without reading
// the clock: at the host's latest tick, which the request's own deposit
// or withdrawal brought up to date (an outcome that comes after the host
// was idle for a while counts as a little older than it is, and decays a
// little sooner). It reports false, having counted nothing, if name has no
// live host; call Record then.
func (tb *Table) RecordLatest(name string, accepted bool) bool {
	h := tb.lookup(name, -1)
	if h == nil || h.tick.Load() == dead {
		return false
	}
	h.record(accepted)
	return true
}

// All iterates over the hosts in the table and their state at time now.
// It may run concurrently with every other method; a host added or
// evicted meanwhile may or may not be seen.
func (tb *Table) All(now time.Duration) iter.Seq2[string, State] {
	return func(yield func(string, State) bool) {
		t := Ticks(now)
		tb.hosts.Range(func(key, v any) bool {
			h := v.(*Host)
			if h.tick.Load() == dead {
				return true
			}
			return yield(key.(string), h.state(tb.c, t))
		})
	}
}

// Len returns the number of hosts in the table (for tests and
// measurements; it walks the whole table).
func (tb *Table) Len() int {
	n := 0
	tb.hosts.Range(func(any, any) bool { n++; return true })
	return n
}
