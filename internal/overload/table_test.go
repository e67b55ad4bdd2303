package overload

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newTable() *Table {
	tb := new(Table)
	tb.Init(defaults)
	return tb
}

func tableDrain(tb *Table, host string, now time.Duration) int {
	n := 0
	for tb.Withdraw(host, now, Answered) {
		n++
	}
	return n
}

// A fresh host's allowance is c = 2 plus its phase, a fraction of a
// token: 2 whole retries.
func fresh(n int) bool { return n == 2 }

func TestTableHostsAreIndependent(t *testing.T) {
	tb := newTable()
	if got := tableDrain(tb, "a", 0); !fresh(got) {
		t.Fatalf("a: %d retries, want its allowance, 2", got)
	}
	if got := tableDrain(tb, "b", 0); !fresh(got) {
		t.Fatalf("b: %d retries after a was drained, want its own allowance", got)
	}
	states := map[string]State{}
	for h, s := range tb.All(0) {
		states[h] = s
	}
	if len(states) != 2 || states["a"].Tokens >= 1 || states["b"].Tokens >= 1 {
		t.Errorf("All = %+v, want a and b, both drained", states)
	}
}

// The phases of a table's hosts are spread: each starts with 2 tokens and
// a fraction, 2.5 on average, and is left with that fraction once it has
// spent its two retries.
func TestTablePhasesSpread(t *testing.T) {
	tb := newTable()
	var sum float64
	var low, high int
	const n = 2000
	for i := range n {
		h := fmt.Sprint(i)
		sum += tb.host(h, 0).state(defaults, 0).Tokens
		if got := tableDrain(tb, h, 0); got != 2 {
			t.Fatalf("a fresh host granted %d retries, want 2", got)
		}
		switch left := tb.host(h, 0).state(defaults, 0).Tokens; {
		case left < 0.5:
			low++
		default:
			high++
		}
	}
	if mean := sum / n; mean < 2.45 || mean > 2.55 {
		t.Errorf("fresh hosts start with %.3f tokens on average, want 2.5", mean)
	}
	if low < n*4/10 || high < n*4/10 {
		t.Errorf("left with under half a token: %d, over: %d; want about as many", low, high)
	}
}

func TestTableEvictsIdleHosts(t *testing.T) {
	t.Run("a host like a fresh one goes after 30s idle", func(t *testing.T) {
		tb := newTable()
		for i := range 1000 {
			tb.Deposit(fmt.Sprintf("old-%d", i), 0)
		}
		tb.Deposit("x", 29*time.Second) // a new host: sweeps; none idle long enough
		if n := tb.Len(); n != 1001 {
			t.Fatalf("%d hosts after 29s, want all 1001", n)
		}
		tb.Deposit("y", 40*time.Second) // sweeps: the old ones are 40s idle
		if n := tb.Len(); n != 2 {
			t.Errorf("%d hosts after 40s, want x and y", n)
		}
	})
	t.Run("a host in deficit stays 10 minutes, then comes back fresh", func(t *testing.T) {
		tb := newTable()
		tableDrain(tb, "spent", 0)
		tb.Deposit("x", time.Minute)
		if _, ok := tb.hosts.Load("spent"); !ok {
			t.Fatal("a host that spent its tokens was forgotten after a minute: it would get them back")
		}
		tb.Deposit("y", 10*time.Minute+time.Second)
		if _, ok := tb.hosts.Load("spent"); ok {
			t.Fatal("a host idle for 10 minutes is still tracked")
		}
		if got := tableDrain(tb, "spent", 11*time.Minute); !fresh(got) {
			t.Errorf("after eviction: %d retries, want the allowance, 2", got)
		}
	})
	t.Run("a host with throttle history stays until it has decayed", func(t *testing.T) {
		tb := newTable()
		for i := range 1000 {
			tb.Record("busy", time.Duration(i)*time.Millisecond, false)
		}
		// 1000 requests decay below one in ~1.7s; the sweep after 30s
		// finds it like a fresh host.
		tb.Deposit("x", 31*time.Second)
		if _, ok := tb.hosts.Load("busy"); ok {
			t.Error("a host idle for 30s with its history decayed is still tracked")
		}
	})
	t.Run("a host in use is not evicted", func(t *testing.T) {
		tb := newTable()
		for s := range 100 {
			now := time.Duration(s) * time.Second
			tb.Deposit("steady", now)
			tb.Deposit(fmt.Sprintf("new-%d", s), now) // sweeps every 10s
		}
		if _, ok := tb.hosts.Load("steady"); !ok {
			t.Error("a host used every second was evicted")
		}
		if n := tb.Len(); n > 1+41 {
			t.Errorf("%d hosts, want steady and at most the last 40s of new ones", n)
		}
	})
	t.Run("memory stays bounded with ever new hosts", func(t *testing.T) {
		tb := newTable()
		most := 0
		for s := range 600 {
			now := time.Duration(s) * 100 * time.Millisecond
			for i := range 100 {
				h := fmt.Sprintf("h-%d-%d", s, i)
				tb.Deposit(h, now)
				tb.Record(h, now, true)
			}
			if s%10 == 0 {
				most = max(most, tb.Len())
			}
		}
		// Hosts live 30s idle plus up to one sweep interval (10s): 40s
		// of new hosts at 1000/s.
		if most > 40_000+1000 {
			t.Errorf("up to %d hosts tracked, want at most 41000", most)
		}
	})
}

// TestTableConcurrent runs deposits, withdrawals, refunds, records and
// admissions from many goroutines on shared and own hosts while the clock
// moves fast enough for hosts to be swept and evicted, under -race. The
// grants on every host stay within what it was given: its allowance once
// per life (a host may be evicted and come back, after 10 minutes idle),
// ratio x its deposits and its refunds.
func TestTableConcurrent(t *testing.T) {
	tb := newTable()
	const goroutines, iterations = 8, 4000
	var clock atomic.Int64 // virtual time, ns
	var granted, deposits, refunds [goroutines + 1]atomic.Int64
	host := func(g int) string {
		if g == goroutines {
			return "shared"
		}
		return fmt.Sprintf("own-%d", g)
	}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			for i := range iterations {
				if g == 0 && i%100 == 0 {
					clock.Add(int64(11 * time.Minute)) // every host idle long enough to go
				}
				now := time.Duration(clock.Load())
				for _, h := range []int{goroutines, g} {
					tb.Deposit(host(h), now)
					deposits[h].Add(1)
					if tb.Withdraw(host(h), now, Answered) {
						granted[h].Add(1)
						if rng.IntN(3) == 0 {
							tb.Refund(host(h), now)
							refunds[h].Add(1)
						}
					}
					if tb.Admit(host(h), now, 2, rng.Float64) {
						tb.Record(host(h), now, rng.IntN(2) == 0)
					}
				}
				if i%500 == 0 {
					for range tb.All(now) {
					}
				}
			}
		})
	}
	wg.Wait()
	lives := clock.Load()/int64(11*time.Minute) + 1
	for h := range goroutines + 1 {
		limit := float64(2*lives) + 0.1*float64(deposits[h].Load()) + float64(refunds[h].Load())
		if got := granted[h].Load(); float64(got) > limit {
			t.Errorf("host %s: granted %d, more than the %.0f it was given", host(h), got, limit)
		}
	}
}
