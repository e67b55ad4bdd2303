package overload

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A quiet host (one request every 40s) of a client that talks to other
// hosts too, so that sweeps run: it worked, then sat idle 30s with nothing
// to remember, and was forgotten. It comes back as a fresh host, as the
// Budget's doc says: a client this quiet is a one-request process for the
// budget, and its first request may spend the allowance again.
func TestEvictedHostStartsFresh(t *testing.T) {
	tb := newTable()
	tb.SetPhase(func() float64 { return 0 })
	sec := func(s int) time.Duration { return time.Duration(s) * time.Second }

	tb.Deposit("quiet", 0)
	tb.Record("quiet", 0, true) // seen to work
	for s := 1; s <= 40; s++ {  // another host keeps the table busy: sweeps run
		tb.Deposit("busy", sec(s))
		tb.Record("busy", sec(s), true)
	}
	// The outage begins: the quiet host's next request fails, and so do
	// both retries of its allowance.
	tb.Deposit("quiet", sec(41))
	for i := range 2 {
		tb.Record("quiet", sec(41), false)
		if !tb.Withdraw("quiet", sec(41), Answered) {
			t.Fatalf("retry %d of a forgotten host's first request refused, want its allowance", i+1)
		}
	}
	tb.Record("quiet", sec(41), false)
	if tb.Withdraw("quiet", sec(41), Answered) {
		t.Error("a third retry granted: more than the allowance")
	}
}

// The same without eviction (the client talks to this host alone, so no
// sweep forgets it): the gate closes. This holds.
func TestStreakWithoutEviction(t *testing.T) {
	tb := newTable()
	tb.SetPhase(func() float64 { return 0 })
	tb.Deposit("quiet", 0)
	tb.Record("quiet", 0, true)
	now := 41 * time.Second
	tb.Deposit("quiet", now)
	tb.Record("quiet", now, false)
	if !tb.Withdraw("quiet", now, Answered) {
		t.Fatal("the first failure's retry was refused")
	}
	tb.Record("quiet", now, false)
	if !tb.Gated("quiet", now, Answered) {
		t.Errorf("two overload answers in a row: the gate is open")
	}
}

// Many goroutines hammer a few hosts with every operation while the clock
// jumps (sweeps evict hosts concurrently). Under -race nothing races;
// afterwards each host is still coherent: tokens within their cap, the
// streak gate opens on an accepted answer and closes on the streak.
func TestTableConcurrentStreaks(t *testing.T) {
	tb := newTable()
	var clock atomic.Int64
	hosts := []string{"a", "b", "c", "d"}
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for range 3000 {
				now := time.Duration(clock.Add(int64(rng.IntN(3)) * int64(time.Millisecond)))
				if rng.IntN(500) == 0 {
					now = time.Duration(clock.Add(int64(11 * time.Minute))) // idle past MaxIdle: evictions
				}
				h := hosts[rng.IntN(len(hosts))]
				switch rng.IntN(6) {
				case 0:
					tb.Deposit(h, now)
				case 1:
					tb.Record(h, now, rng.IntN(3) == 0)
				case 2:
					tb.RecordLatest(h, false)
				case 3:
					if tb.Withdraw(h, now, Failure(rng.IntN(3))) && rng.IntN(2) == 0 {
						tb.Refund(h, now)
					}
				case 4:
					tb.Gated(h, now, Failure(rng.IntN(3)))
				case 5:
					for range tb.All(now) {
					}
				}
			}
		})
	}
	wg.Wait()
	now := time.Duration(clock.Load()) + 5*time.Second // the averages decay: only the streak is under test
	for _, h := range hosts {
		for name, s := range tb.All(now) {
			if name == h && (s.Tokens < 0 || s.Tokens > 1000) {
				t.Errorf("%s: %v tokens", h, s.Tokens)
			}
		}
		tb.Record(h, now, true)
		if tb.Gated(h, now, Answered) {
			t.Errorf("%s: gated after an accepted answer, with the averages decayed", h)
		}
		for range defaults.Params().BusyStreak {
			tb.Record(h, now, false)
		}
		if !tb.Gated(h, now, Answered) {
			t.Errorf("%s: %d overload answers in a row after an accepted one, gate open", h, defaults.Params().BusyStreak)
		}
	}
}
