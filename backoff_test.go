package saferetry

import (
	"testing"
	"time"
)

// top returns n-1, the largest value a uniform draw in [0, n) can take.
func top(n int64) int64 { return n - 1 }

// bottom returns 0, the smallest value a uniform draw can take.
func bottom(int64) int64 { return 0 }

func TestExponentialCeilings(t *testing.T) {
	e := Exponential{Initial: 100 * time.Millisecond, Max: time.Second, Jitter: NoJitter}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for i, w := range want {
		if got := e.Delay(i+1, 0); got != w*time.Millisecond {
			t.Errorf("retry %d: got %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
	if got := e.Delay(1_000_000, 0); got != time.Second {
		t.Errorf("retry 1e6 overflowed: %v", got)
	}
	huge := Exponential{Initial: time.Duration(1) << 61, Max: time.Duration(1<<63 - 1), Jitter: NoJitter}
	if got := huge.Delay(10, 0); got != huge.Max {
		t.Errorf("doubling past MaxInt64: got %v, want %v", got, huge.Max)
	}
}

func TestExponentialJitterBounds(t *testing.T) {
	base := Exponential{Initial: 100 * time.Millisecond, Max: 10 * time.Second}
	tests := []struct {
		name    string
		jitter  Jitter
		retry   int
		prev    time.Duration
		low, hi time.Duration // inclusive bounds reached by bottom and top
	}{
		{name: "full", jitter: FullJitter, retry: 3, low: 0, hi: 400*time.Millisecond - 1},
		{name: "equal", jitter: EqualJitter, retry: 3, low: 200 * time.Millisecond, hi: 400*time.Millisecond - 1},
		{name: "decorrelated first", jitter: DecorrelatedJitter, retry: 1, prev: 0, low: 100 * time.Millisecond, hi: 300*time.Millisecond - 1},
		{name: "decorrelated grows from prev", jitter: DecorrelatedJitter, retry: 2, prev: time.Second, low: 100 * time.Millisecond, hi: 3*time.Second - 1},
		{name: "decorrelated capped", jitter: DecorrelatedJitter, retry: 9, prev: 8 * time.Second, low: 100 * time.Millisecond, hi: 10*time.Second - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := base
			e.Jitter = tt.jitter
			e.Rand = bottom
			if got := e.Delay(tt.retry, tt.prev); got != tt.low {
				t.Errorf("lowest draw: got %v, want %v", got, tt.low)
			}
			e.Rand = top
			if got := e.Delay(tt.retry, tt.prev); got != tt.hi {
				t.Errorf("highest draw: got %v, want %v", got, tt.hi)
			}
		})
	}
}

func TestExponentialDefaultRandomStaysInBounds(t *testing.T) {
	for _, j := range []Jitter{FullJitter, EqualJitter, DecorrelatedJitter} {
		e := Exponential{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond, Jitter: j}
		prev := time.Duration(0)
		for retry := 1; retry <= 200; retry++ {
			d := e.Delay(retry, prev)
			if d < 0 || d > e.Max {
				t.Fatalf("%v retry %d: delay %v outside [0, %v]", j, retry, d, e.Max)
			}
			prev = d
		}
	}
}

func TestExponentialZeroMeansNoWait(t *testing.T) {
	for _, j := range []Jitter{FullJitter, NoJitter, EqualJitter, DecorrelatedJitter} {
		if got := (Exponential{Jitter: j}).Delay(3, time.Second); got != 0 {
			t.Errorf("%v: got %v, want 0", j, got)
		}
	}
}

func TestExponentialDelayAllocatesNothing(t *testing.T) {
	e := Exponential{Initial: 100 * time.Millisecond, Max: 10 * time.Second}
	if n := testing.AllocsPerRun(100, func() { e.Delay(3, 0) }); n != 0 {
		t.Fatalf("Delay allocated %v times", n)
	}
}

func TestJitterString(t *testing.T) {
	for j, want := range map[Jitter]string{FullJitter: "full", NoJitter: "none", EqualJitter: "equal", DecorrelatedJitter: "decorrelated", Jitter(9): "Jitter(9)"} {
		if got := j.String(); got != want {
			t.Errorf("%d: got %q, want %q", int(j), got, want)
		}
	}
}
