package saferetry

import (
	"math/rand/v2"
	"strconv"
	"time"
)

// Backoff decides how long to wait before a retry. Implementations must be
// safe for concurrent use: one transport serves many goroutines, so any
// per-request state (the previous delay) is passed in, not kept.
type Backoff interface {
	// Delay returns the wait before retry number retry (1 for the first
	// retry). prev is the delay returned for the previous retry of the
	// same logical request, or 0 before the first retry.
	Delay(retry int, prev time.Duration) time.Duration
}

// Jitter selects how Exponential randomises its delays so that clients
// that failed together do not retry together. The zero value is FullJitter.
type Jitter int

const (
	// FullJitter waits U[0, d): the default, and AWS's recommendation
	// ("Exponential Backoff And Jitter", AWS Architecture Blog, 2015).
	FullJitter Jitter = iota
	// NoJitter waits exactly d. Synchronised clients stay synchronised;
	// useful for tests and for comparing against jittered schedules.
	NoJitter
	// EqualJitter waits d/2 + U[0, d/2): never less than half the backoff.
	EqualJitter
	// DecorrelatedJitter waits min(Max, U[Initial, 3*prev)), growing from
	// the previous delay rather than from the retry number.
	DecorrelatedJitter
)

// String returns the jitter's name, as used in logs and the storm report.
func (j Jitter) String() string {
	switch j {
	case FullJitter:
		return "full"
	case NoJitter:
		return "none"
	case EqualJitter:
		return "equal"
	case DecorrelatedJitter:
		return "decorrelated"
	}
	return "Jitter(" + strconv.Itoa(int(j)) + ")"
}

func (j Jitter) valid() bool { return j >= FullJitter && j <= DecorrelatedJitter }

// defaultBackoff is the backoff of a Transport whose Backoff is nil:
// AWS's recommendation of full jitter, from 100ms doubling to 10s.
var defaultBackoff = Exponential{Initial: 100 * time.Millisecond, Max: 10 * time.Second, Jitter: FullJitter}

// exponentialOf returns b if it is an Exponential, and the default
// backoff otherwise: what WithBackoff and WithJitter start from.
func exponentialOf(b Backoff) Exponential {
	if e, ok := b.(Exponential); ok {
		return e
	}
	return defaultBackoff
}

// Exponential is capped exponential backoff with jitter: before retry n the
// ceiling is d = min(Max, Initial * 2^(n-1)), and Jitter picks the wait
// within it. Initial = Max = 0 retries without waiting. An Exponential value
// is immutable and safe for concurrent use.
type Exponential struct {
	Initial time.Duration // the first ceiling; 0 with Max 0 means no wait
	Max     time.Duration // the largest wait; must be >= Initial
	Jitter  Jitter        // how the wait is randomised; the zero value is FullJitter

	// Rand, if set, returns a uniform value in [0, n) for n > 0; tests use
	// it to make delays exact. Nil uses math/rand/v2, which is safe for
	// concurrent use and needs no seeding.
	Rand func(n int64) int64
}

var _ Backoff = Exponential{}

// Delay implements Backoff. It allocates nothing.
func (e Exponential) Delay(retry int, prev time.Duration) time.Duration {
	if e.Max <= 0 {
		return 0
	}
	if e.Jitter == DecorrelatedJitter {
		return e.decorrelated(prev)
	}
	d := e.ceiling(retry)
	switch e.Jitter {
	case NoJitter:
		return d
	case EqualJitter:
		half := d / 2
		return half + e.uniform(d-half)
	default:
		return e.uniform(d)
	}
}

// ceiling returns min(Max, Initial * 2^(retry-1)) without overflowing.
func (e Exponential) ceiling(retry int) time.Duration {
	if retry < 1 {
		retry = 1
	}
	d := e.Initial
	for i := 1; i < retry && d < e.Max; i++ {
		if d > e.Max/2 {
			return e.Max
		}
		d *= 2
	}
	return min(d, e.Max)
}

// decorrelated returns min(Max, U[Initial, 3*prev)), prev defaulting to
// Initial ("Exponential Backoff And Jitter", AWS, 2015).
func (e Exponential) decorrelated(prev time.Duration) time.Duration {
	if prev < e.Initial {
		prev = e.Initial
	}
	hi := e.Max
	if prev < e.Max/3 {
		hi = 3 * prev
	}
	if hi <= e.Initial {
		return min(e.Initial, e.Max)
	}
	return min(e.Max, e.Initial+e.uniform(hi-e.Initial))
}

// uniform returns a value in [0, d).
func (e Exponential) uniform(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	if e.Rand != nil {
		return time.Duration(e.Rand(int64(d)))
	}
	return time.Duration(rand.Int64N(int64(d)))
}
