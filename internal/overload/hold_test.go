package overload

import (
	"sync"
	"testing"
	"time"
)

func TestHoldKeepsTheLatestReset(t *testing.T) {
	tb := newTable()
	if got := tb.HeldUntil("api"); got != 0 {
		t.Fatalf("an unknown host holds until %v", got)
	}
	tb.Exhaust("api", time.Second, 30*time.Second)
	tb.Exhaust("api", 2*time.Second, 20*time.Second) // an earlier reset does not shorten it
	if got := tb.HeldUntil("api"); got != 30*time.Second {
		t.Fatalf("held until %v, want 30s", got)
	}
	tb.Exhaust("api", 3*time.Second, 45*time.Second)
	if got := tb.HeldUntil("api"); got != 45*time.Second {
		t.Fatalf("held until %v, want the later reset, 45s", got)
	}
	if got := tb.HeldUntil("other"); got != 0 {
		t.Errorf("another host holds until %v", got)
	}
	if got := tb.HoldsEnd(); got != 45*time.Second {
		t.Fatalf("the table's holds end at %v, want 45s", got)
	}
	tb.Exhaust("other", 4*time.Second, 40*time.Second)
	tb.EndHolds(40 * time.Second) // not the latest end: no effect
	if got := tb.HoldsEnd(); got != 45*time.Second {
		t.Fatalf("EndHolds of an earlier end cleared the table's: %v", got)
	}
	tb.EndHolds(45 * time.Second)
	if got := tb.HoldsEnd(); got != 0 {
		t.Errorf("the table's holds end at %v after EndHolds", got)
	}
	tb.Exhaust("api", 50*time.Second, 80*time.Second)
	if got := tb.HoldsEnd(); got != 80*time.Second {
		t.Errorf("a new hold after they all ended: the table's end %v, want 80s", got)
	}
}

// Concurrent announcements keep the latest: the compare-and-swap never
// lets an earlier one overwrite it.
func TestHoldConcurrentExhaust(t *testing.T) {
	tb := newTable()
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() { tb.Exhaust("api", 0, time.Duration(i+1)*time.Second) })
	}
	wg.Wait()
	if got, end := tb.HeldUntil("api"), tb.HoldsEnd(); got != 64*time.Second || end != 64*time.Second {
		t.Errorf("held until %v, the table's end %v, want 64s", got, end)
	}
}

// A host with a hold is not forgotten when idle as a fresh host is (30s),
// so requests refused locally keep it; it is after MaxIdle (10 minutes),
// and the next request is then sent and learns the hold again.
func TestHoldEviction(t *testing.T) {
	tb := newTable()
	tb.Exhaust("held", 0, time.Hour)
	tb.Deposit("fresh", 0)
	tb.Deposit("x", 40*time.Second) // sweeps: both idle 40s
	if _, ok := tb.hosts.Load("fresh"); ok {
		t.Error("a fresh host idle 40s is still tracked")
	}
	if got := tb.HeldUntil("held"); got != 10*time.Minute {
		t.Fatalf("a held host was forgotten after 40s idle: held until %v, want 10m (a hold lasts MaxIdle at most)", got)
	}
	tb.Deposit("y", 10*time.Minute+time.Second)
	if got := tb.HeldUntil("held"); got != 0 {
		t.Errorf("a held host idle 10 minutes still holds until %v", got)
	}
	if _, ok := tb.hosts.Load("held"); ok {
		t.Error("a held host idle 10 minutes is still tracked")
	}
}
