package saferetry

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// budgetTestClock is a virtual clock for BudgetClock, safe for concurrent use.
type budgetTestClock struct{ offset atomic.Int64 }

var budgetClockStart = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func (c *budgetTestClock) now() time.Time {
	return budgetClockStart.Add(time.Duration(c.offset.Load()))
}
func (c *budgetTestClock) set(d time.Duration)     { c.offset.Store(int64(d)) }
func (c *budgetTestClock) advance(d time.Duration) { c.offset.Add(int64(d)) }
func newTestBudget(opts ...BudgetOption) (*Budget, *budgetTestClock) {
	c := new(budgetTestClock)
	return NewBudget(append([]BudgetOption{BudgetClock(c.now)}, opts...)...), c
}

// budgetWithdrawN calls Withdraw n times and returns how many were granted.
func budgetWithdrawN(b *Budget, host string, n int) int {
	granted := 0
	for range n {
		if b.Withdraw(host) {
			granted++
		}
	}
	return granted
}

// budgetDrain withdraws until refused and returns how many were granted.
func budgetDrain(b *Budget, host string) int {
	n := 0
	for b.Withdraw(host) {
		n++
	}
	return n
}

// checkBudgetConsistent fails if a bucket's balance is not reserve plus the sum
// of its slots. Call it only when no operation is in flight.
func checkBudgetConsistent(t *testing.T, b *Budget) {
	t.Helper()
	b.hosts.Range(func(key, v any) bool {
		k := v.(*hostBucket)
		sum := b.reserve
		for i := range k.slots {
			sum += k.slots[i].Load()
		}
		if got := k.balance.Load(); got != sum {
			t.Errorf("host %q: balance %d, want reserve+slots = %d", key, got, sum)
		}
		return true
	})
}

func budgetHostCount(b *Budget) int {
	n := 0
	b.hosts.Range(func(any, any) bool { n++; return true })
	return n
}

// budgetOutageResult is what simulateBudgetOutage counted over its
// measured interval.
type budgetOutageResult struct{ requests, attempts int }

func (r budgetOutageResult) perRequest() float64 { return float64(r.attempts) / float64(r.requests) }

// simulateBudgetOutage replays a full outage against one host: logical requests
// arrive every 1/rate seconds for the whole outage, every attempt fails, and
// each request retries up to len(backoff) times, asking the budget before
// each wait (as the transport does) and giving up at the first refusal.
// Attempts and requests are counted when they happen within [from, outage).
func simulateBudgetOutage(rate float64, outage, from time.Duration, backoff []time.Duration, opts ...BudgetOption) budgetOutageResult {
	const host = "api.example.com:443"
	b, clk := newTestBudget(opts...)
	interval := time.Duration(float64(time.Second) / rate)
	counted := func(at time.Duration) bool { return at >= from && at < outage }

	// With fixed backoffs, the retries waiting at each level are due in the
	// order they were scheduled: one FIFO queue per level is a priority
	// queue. queues[i] holds the due times of retry i+1.
	queues := make([][]time.Duration, len(backoff))
	var res budgetOutageResult
	// failed is called when an attempt (retry number n, 0 for the first
	// attempt) fails at time at.
	failed := func(at time.Duration, n int) {
		if counted(at) {
			res.attempts++
		}
		if n < len(backoff) && b.Withdraw(host) {
			queues[n] = append(queues[n], at+backoff[n])
		}
	}
	next := time.Duration(0)
	for {
		// The earliest event: a queued retry, or else the next arrival.
		level, at := -1, next
		for i, q := range queues {
			if len(q) > 0 && q[0] <= at {
				level, at = i, q[0]
			}
		}
		if at >= outage {
			return res
		}
		clk.set(at)
		if level >= 0 {
			queues[level] = queues[level][1:]
			failed(at, level+1)
			continue
		}
		b.Deposit(host)
		if counted(at) {
			res.requests++
		}
		failed(at, 0)
		next += interval
	}
}

func TestBudgetAmplificationUnderOutage(t *testing.T) {
	// The transport's default backoff without jitter (100ms doubling, 3
	// retries), and retries without waiting.
	defaultBackoff := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}
	noWait := []time.Duration{0, 0, 0}
	tests := []struct {
		name    string
		rate    float64 // logical requests per second
		backoff []time.Duration
		ratio   float64
		floor   float64
	}{
		{"10/s", 10, defaultBackoff, 0.1, 10},
		{"100/s", 100, defaultBackoff, 0.1, 10},
		{"1000/s", 1000, defaultBackoff, 0.1, 10},
		{"10000/s", 10000, defaultBackoff, 0.1, 10},
		{"1000/s no wait", 1000, noWait, 0.1, 10},
		{"100/s ratio 0.2 floor 5", 100, defaultBackoff, 0.2, 5},
		{"50/s ratio 0 floor 1", 50, defaultBackoff, 0, 1},
	}
	// An 80 s outage, measured over its last 60 s: six whole windows, after
	// the reserve's initial burst and the first window's transient. Once
	// that has passed, the grants repeat window after window (a slot's
	// expiry frees exactly what the same slot spent a window earlier) and
	// each window allows floor*window + ratio*deposits retries, exact in
	// fixed point. So the only error left comes from retries whose
	// requests straddle the edges of the measured interval, at most the 3
	// retries of a few requests at each edge: at 10/s, under 6 attempts of
	// 1260 (0.5%), and far less at higher rates. 1% covers that; the
	// failures it must catch are much larger (no budget: 4x; a lost floor
	// at 10/s: 1.1 instead of 2.1; a slot too many or too few: 10%).
	const (
		outage    = 80 * time.Second
		from      = 20 * time.Second
		tolerance = 0.01
	)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := simulateBudgetOutage(tt.rate, outage, from, tt.backoff,
				BudgetRatio(tt.ratio), BudgetMinRetriesPerSecond(tt.floor))
			want := 1 + tt.ratio + tt.floor/tt.rate
			got := res.perRequest()
			t.Logf("%d requests, %d attempts: %.4f attempts per request (want %.4f)",
				res.requests, res.attempts, got, want)
			if math.Abs(got-want)/want > tolerance {
				t.Errorf("attempts per request = %.4f, want %.4f ± %.0f%%", got, want, tolerance*100)
			}
		})
	}
}

func TestBudgetFreshHostHasReserve(t *testing.T) {
	tests := []struct {
		name string
		opts []BudgetOption
		want int // floor * window
	}{
		{"defaults", nil, 100},
		{"floor 5 window 2s", []BudgetOption{BudgetMinRetriesPerSecond(5), BudgetWindow(2 * time.Second)}, 10},
		{"floor 0.5", []BudgetOption{BudgetMinRetriesPerSecond(0.5)}, 5},
		{"floor 0.3 rounds without drift", []BudgetOption{BudgetMinRetriesPerSecond(0.3)}, 3},
		{"floor 0", []BudgetOption{BudgetMinRetriesPerSecond(0)}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := newTestBudget(tt.opts...)
			if got := budgetWithdrawN(b, "a", tt.want+50); got != tt.want {
				t.Errorf("granted %d retries with no traffic, want the reserve, %d", got, tt.want)
			}
		})
	}
}

// TestBudgetWindowSlides uses synctest and the default clock (time.Now),
// so time.Sleep moves the bubble's fake clock exactly.
func TestBudgetWindowSlides(t *testing.T) {
	t.Run("withdrawals expire", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := NewBudget() // 100 retries reserve, 10 s window
			if got := budgetDrain(b, "a"); got != 100 {
				t.Fatalf("fresh host: granted %d, want 100", got)
			}
			time.Sleep(5 * time.Second)
			if got := budgetWithdrawN(b, "a", 10); got != 0 {
				// Nothing has expired yet: the reserve is the floor for the
				// whole window, already spent.
				t.Fatalf("at 5s: granted %d, want 0", got)
			}
			time.Sleep(5*time.Second - time.Nanosecond)
			if b.Withdraw("a") {
				t.Fatal("at 10s-1ns: retry granted, want the t=0 withdrawals still counted")
			}
			time.Sleep(time.Nanosecond)
			if got := budgetDrain(b, "a"); got != 100 {
				t.Fatalf("at 10s: granted %d, want the 100 withdrawn at t=0 back", got)
			}
		})
	})
	t.Run("expires a slot at a time", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := NewBudget()
			if got := budgetWithdrawN(b, "a", 40); got != 40 {
				t.Fatalf("t=0: granted %d, want 40", got)
			}
			time.Sleep(3 * time.Second)
			if got := budgetDrain(b, "a"); got != 60 {
				t.Fatalf("t=3s: granted %d, want 60", got)
			}
			time.Sleep(7 * time.Second) // t=10s: the 40 from t=0 expire
			if got := budgetDrain(b, "a"); got != 40 {
				t.Fatalf("t=10s: granted %d, want 40", got)
			}
			time.Sleep(3 * time.Second) // t=13s: the 60 from t=3s expire
			if got := budgetDrain(b, "a"); got != 60 {
				t.Fatalf("t=13s: granted %d, want 60", got)
			}
		})
	})
	t.Run("deposits expire", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := NewBudget(BudgetRatio(1), BudgetMinRetriesPerSecond(0))
			for range 5 {
				b.Deposit("a")
			}
			time.Sleep(10 * time.Second)
			if b.Withdraw("a") {
				t.Fatal("retry granted from deposits a window old")
			}
			b.Deposit("a")
			if got := budgetDrain(b, "a"); got != 1 {
				t.Fatalf("granted %d after one fresh deposit, want 1", got)
			}
		})
	})
	t.Run("counts for at least nine tenths of the window", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := NewBudget()
			time.Sleep(999 * time.Millisecond) // the end of slot 0
			budgetDrain(b, "a")
			time.Sleep(9*time.Second + time.Millisecond) // t=10s, slot 10
			if got := budgetDrain(b, "a"); got != 100 {
				t.Fatalf("granted %d, want 100", got)
			}
		})
	})
}

func TestBudgetHostsAreIsolated(t *testing.T) {
	b, _ := newTestBudget()
	if got := budgetDrain(b, "a.example:443"); got != 100 {
		t.Fatalf("host a: granted %d, want 100", got)
	}
	for range 1000 {
		b.Deposit("a.example:443")
	}
	if got := budgetDrain(b, "b.example:443"); got != 100 {
		t.Errorf("host b after a was exhausted: granted %d, want its own 100", got)
	}
	if got := budgetDrain(b, "a.example:443"); got != 100 {
		t.Errorf("host a: granted %d, want the 100 its 1000 deposits earned", got)
	}
	// The port is part of the host: another port is another bucket.
	if got := budgetDrain(b, "a.example:8443"); got != 100 {
		t.Errorf("host a, other port: granted %d, want 100", got)
	}
}

func TestBudgetRatioAndFloor(t *testing.T) {
	// Each case runs 1000 logical requests at 100/s for 10 s, each trying
	// up to 3 retries, and counts the retries granted.
	tests := []struct {
		name  string
		ratio float64
		floor float64
		want  int
	}{
		{"ratio 0 floor 0: never", 0, 0, 0},
		{"ratio 1 floor 0: one per request", 1, 0, 1000},
		{"ratio 0.1 floor 0: one per ten requests", 0.1, 0, 100},
		{"ratio 0 floor 10: the reserve only", 0, 10, 100},
		{"ratio 0.25 floor 1: both", 0.25, 1, 250 + 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, clk := newTestBudget(BudgetRatio(tt.ratio), BudgetMinRetriesPerSecond(tt.floor))
			granted := 0
			for i := range 1000 {
				clk.set(time.Duration(i) * 10 * time.Millisecond)
				b.Deposit("a")
				granted += budgetWithdrawN(b, "a", 3)
			}
			if granted != tt.want {
				t.Errorf("granted %d retries for 1000 requests, want %d", granted, tt.want)
			}
		})
	}
	t.Run("ratio 1: exactly one retry after each request", func(t *testing.T) {
		b, _ := newTestBudget(BudgetRatio(1), BudgetMinRetriesPerSecond(0))
		for i := range 100 {
			b.Deposit("a")
			if !b.Withdraw("a") || b.Withdraw("a") {
				t.Fatalf("request %d: want exactly one retry granted", i)
			}
		}
	})
	t.Run("ratio 0.1: the tenth deposit earns a whole retry", func(t *testing.T) {
		// Fixed point: ten credits of 0.1 are exactly one retry, where
		// float64 would sum to 0.9999999999999999.
		b, _ := newTestBudget(BudgetMinRetriesPerSecond(0))
		for round := range 1000 {
			for range 9 {
				b.Deposit("a")
			}
			if b.Withdraw("a") {
				t.Fatalf("round %d: retry granted after 9 deposits", round)
			}
			b.Deposit("a")
			if !b.Withdraw("a") {
				t.Fatalf("round %d: retry refused after 10 deposits", round)
			}
		}
	})
}

// TestBudgetConcurrentExact hammers one shared host and one host per
// goroutine with the clock standing still, so nothing expires. Withdraw
// checks and spends with one compare-and-swap, so the balance never goes
// below zero (a watcher checks it throughout) and the retries granted,
// concurrently and then by a final drain, are exactly
// floor(reserve + ratio*deposits): no slack at all.
func TestBudgetConcurrentExact(t *testing.T) {
	const (
		goroutines = 8
		iterations = 2000
	)
	b, _ := newTestBudget() // the clock stays at its start
	var granted [goroutines + 1]atomic.Int64
	host := func(g int) string {
		if g == goroutines {
			return "shared"
		}
		return fmt.Sprintf("own-%d", g)
	}
	// Make the shared bucket now so the watcher can read it.
	b.Deposit(host(goroutines))
	shared, _ := b.hosts.Load(host(goroutines))
	var minBalance atomic.Int64
	minBalance.Store(math.MaxInt64)
	stop := make(chan struct{})
	watcherDone := make(chan struct{})
	go func() {
		defer close(watcherDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if v := shared.(*hostBucket).balance.Load(); v < minBalance.Load() {
				minBalance.Store(v)
			}
		}
	}()

	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			own := host(g)
			for range iterations {
				b.Deposit(host(goroutines))
				granted[goroutines].Add(int64(budgetWithdrawN(b, host(goroutines), 2)))
				b.Deposit(own)
				granted[g].Add(int64(budgetWithdrawN(b, own, 2)))
			}
		})
	}
	wg.Wait()
	close(stop)
	<-watcherDone

	if m := minBalance.Load(); m < 0 {
		t.Errorf("shared balance fell to %d units, want never below 0", m)
	}
	checkBudgetConsistent(t, b)
	for g := range goroutines + 1 {
		deposits := iterations
		if g == goroutines {
			deposits = goroutines*iterations + 1
		}
		total := granted[g].Load() + int64(budgetDrain(b, host(g)))
		want := int64(100 + deposits/10)
		if total != want {
			t.Errorf("host %s: granted %d in all, want exactly 100 + %d/10 = %d", host(g), total, deposits, want)
		}
	}
}

// budgetLockstep is a reusable barrier that releases its goroutines
// together, by spinning, so that what they do next collides as often as
// possible.
type budgetLockstep struct {
	n       int32
	arrived atomic.Int32
	gen     atomic.Int32
}

func (l *budgetLockstep) wait() {
	gen := l.gen.Load()
	if l.arrived.Add(1) == l.n {
		l.arrived.Store(0)
		l.gen.Add(1)
		return
	}
	for l.gen.Load() == gen {
		runtime.Gosched()
	}
}

// raceBudgetWithdraws has goroutines withdraw from each host in turn, all at
// the same moment, tries times each, and returns the grants per host.
func raceBudgetWithdraws(b *Budget, hosts []string, goroutines, tries int) []int32 {
	granted := make([]atomic.Int32, len(hosts))
	l := &budgetLockstep{n: int32(goroutines)}
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for i, h := range hosts {
				l.wait()
				granted[i].Add(int32(budgetWithdrawN(b, h, tries)))
			}
		})
	}
	wg.Wait()
	out := make([]int32, len(hosts))
	for i := range granted {
		out[i] = granted[i].Load()
	}
	return out
}

func budgetHostNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("h%d.example:443", i)
	}
	return names
}

// TestBudgetConcurrentWithdrawNeverOverspends makes goroutines withdraw
// together, 10 times each, from hosts that hold 5 retries each, so that
// their Withdraws collide as the buckets run out. Withdraw checks and
// spends in one compare-and-swap, so each host grants exactly 5. (A
// check-then-spend that is not one atomic step overspends a few percent of
// the hosts in this test, on 2 cores.)
func TestBudgetConcurrentWithdrawNeverOverspends(t *testing.T) {
	b, _ := newTestBudget(BudgetMinRetriesPerSecond(0.5)) // reserve: 5 retries
	names := budgetHostNames(2000)
	for _, h := range names {
		b.Deposit(h) // make the bucket now, so the race is on the balance
	}
	overspent := 0
	for i, n := range raceBudgetWithdraws(b, names, budgetRaceGoroutines(), 10) {
		if n != 5 {
			overspent++
			if overspent <= 5 {
				t.Errorf("host %s: granted %d retries, want exactly its reserve, 5", names[i], n)
			}
		}
	}
	if overspent > 5 {
		t.Errorf("... and %d more hosts", overspent-5)
	}
	checkBudgetConsistent(t, b)
}

// TestBudgetConcurrentExpiry makes goroutines enter a new window together
// on hosts whose only credit has just expired: whichever goroutine expires
// a host's old slots, no other may spend the expired credit meanwhile.
func TestBudgetConcurrentExpiry(t *testing.T) {
	b, clk := newTestBudget(BudgetRatio(1), BudgetMinRetriesPerSecond(0))
	names := budgetHostNames(2000)
	for _, h := range names {
		b.Deposit(h) // one retry of credit, at t=0
	}
	clk.set(10 * time.Second) // the credit has expired
	for i, n := range raceBudgetWithdraws(b, names, budgetRaceGoroutines(), 2) {
		if n != 0 {
			t.Fatalf("host %s: granted %d retries from credit a window old, want 0", names[i], n)
		}
	}
	checkBudgetConsistent(t, b)
}

// budgetRaceGoroutines is how many goroutines can run at once, at least 2.
func budgetRaceGoroutines() int { return max(2, min(4, runtime.GOMAXPROCS(0))) }

// TestBudgetConcurrentMovingClock hammers shared and own hosts while the
// clock moves, so that slots expire under concurrent operations.
//
// The bound: cut the run into blocks of one window (10 slots). After the
// last retry granted in a block, the balance was >= 0 and its window held
// every withdrawal of that block, so a block's grants are at most
// reserve + the credits in that window, which reach back at most one
// block. Over the run: grants <= blocks*reserve + 2*ratio*deposits. With
// ratio 0 this is exact (blocks*reserve). The slack allowed on top is one
// retry per goroutine: the most a caller preempted for a whole window
// between reading the clock and reaching its bucket can add (see
// hostBucket).
func TestBudgetConcurrentMovingClock(t *testing.T) {
	for _, ratio := range []float64{0, 0.1} {
		t.Run(fmt.Sprintf("ratio %v", ratio), func(t *testing.T) {
			const (
				goroutines = 8
				iterations = 3000
				step       = 500 * time.Millisecond // half a slot
			)
			b, clk := newTestBudget(BudgetRatio(ratio))
			var granted, deposits [goroutines + 1]atomic.Int64
			host := func(g int) string {
				if g == goroutines {
					return "shared"
				}
				return fmt.Sprintf("own-%d", g)
			}
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					for i := range iterations {
						if g == 0 && i%10 == 0 {
							clk.advance(step)
						}
						for _, h := range []int{goroutines, g} {
							b.Deposit(host(h))
							deposits[h].Add(1)
							granted[h].Add(int64(budgetWithdrawN(b, host(h), 2)))
						}
					}
				})
			}
			wg.Wait()
			checkBudgetConsistent(t, b)

			lastEpoch := b.epoch()
			blocks := lastEpoch/budgetSlots + 1
			t.Logf("clock moved %d slots", lastEpoch)
			for h := range goroutines + 1 {
				bound := float64(blocks*100) + 2*ratio*float64(deposits[h].Load()) + goroutines
				got := granted[h].Load()
				if float64(got) > bound {
					t.Errorf("host %s: granted %d, want at most %.0f", host(h), got, bound)
				}
				if h == goroutines {
					t.Logf("host %s: granted %d, bound %.0f", host(h), got, bound)
				}
			}
		})
	}
}

func TestBudgetInvalidOptionsPanic(t *testing.T) {
	tests := []struct {
		opt  BudgetOption
		want string // regexp the panic message must match
	}{
		{BudgetRatio(1.5), `^saferetry: BudgetRatio\(1\.5\): ratio must be within \[0, 1\]$`},
		{BudgetRatio(-0.1), `^saferetry: BudgetRatio\(-0\.1\): `},
		{BudgetRatio(math.NaN()), `^saferetry: BudgetRatio\(NaN\): `},
		{BudgetRatio(math.Inf(1)), `^saferetry: BudgetRatio\(\+Inf\): `},
		{BudgetWindow(0), `^saferetry: BudgetWindow\(0s\): window must be greater than zero$`},
		{BudgetWindow(-time.Second), `^saferetry: BudgetWindow\(-1s\): `},
		{BudgetMinRetriesPerSecond(-1), `^saferetry: BudgetMinRetriesPerSecond\(-1\): floor must be finite and >= 0$`},
		{BudgetMinRetriesPerSecond(math.NaN()), `^saferetry: BudgetMinRetriesPerSecond\(NaN\): `},
		{BudgetMinRetriesPerSecond(math.Inf(1)), `^saferetry: BudgetMinRetriesPerSecond\(\+Inf\): `},
		{BudgetMinRetriesPerSecond(math.Inf(-1)), `^saferetry: BudgetMinRetriesPerSecond\(-Inf\): `},
		{BudgetClock(nil), `^saferetry: BudgetClock\(nil\): clock must not be nil$`},
	}
	for _, tt := range tests {
		name := strings.TrimPrefix(tt.want, `^saferetry: `)
		name, _, _ = strings.Cut(name, `: `)
		t.Run(name, func(t *testing.T) {
			defer func() {
				r := recover()
				msg, ok := r.(string)
				if !ok {
					t.Fatalf("NewBudget panicked with %v (%T), want a string message", r, r)
				}
				if !regexp.MustCompile(tt.want).MatchString(msg) {
					t.Errorf("panic message %q, want match for %s", msg, tt.want)
				}
			}()
			NewBudget(tt.opt)
		})
	}
}

func TestBudgetValidEdgeOptions(t *testing.T) {
	tests := []struct {
		name string
		opts []BudgetOption
		want int // retries a fresh host gets with 10 deposits
	}{
		{"ratio 0", []BudgetOption{BudgetRatio(0), BudgetMinRetriesPerSecond(0)}, 0},
		{"ratio 1", []BudgetOption{BudgetRatio(1), BudgetMinRetriesPerSecond(0)}, 10},
		{"window 1ns", []BudgetOption{BudgetWindow(time.Nanosecond), BudgetMinRetriesPerSecond(0), BudgetRatio(1)}, 10},
		{"huge floor is clamped, not overflowed", []BudgetOption{BudgetMinRetriesPerSecond(math.MaxFloat64), BudgetWindow(time.Duration(math.MaxInt64))}, 1000},
		{"nil option ignored", []BudgetOption{nil, BudgetMinRetriesPerSecond(0), BudgetRatio(1)}, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := newTestBudget(tt.opts...)
			for range 10 {
				b.Deposit("a")
			}
			if got := budgetWithdrawN(b, "a", 1000); got != tt.want {
				t.Errorf("granted %d, want %d", got, tt.want)
			}
		})
	}
}

func TestBudgetNil(t *testing.T) {
	var b *Budget
	b.Deposit("a") // must not panic
	for i := range 1000 {
		if !b.Withdraw("a") {
			t.Fatalf("nil budget refused retry %d, want every retry allowed", i)
		}
	}
}

func TestBudgetZeroValueIsDefault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b Budget
		if got := budgetDrain(&b, "a"); got != 100 {
			t.Fatalf("zero Budget: granted %d, want the default reserve, 100", got)
		}
		for range 100 {
			b.Deposit("a")
		}
		if got := budgetDrain(&b, "a"); got != 10 {
			t.Errorf("zero Budget: granted %d after 100 deposits, want 10", got)
		}
		time.Sleep(10 * time.Second)
		if got := budgetDrain(&b, "a"); got != 100 {
			t.Errorf("zero Budget: granted %d a window later, want 100", got)
		}
	})
}

func TestBudgetClockGoingBackwards(t *testing.T) {
	b, clk := newTestBudget()
	clk.set(5 * time.Second)
	budgetDrain(b, "a")
	clk.set(-time.Hour) // before the budget was made
	if b.Withdraw("a") {
		t.Fatal("retry granted after the clock went back, want the newest slot still counted")
	}
	clk.set(4 * time.Second)
	if b.Withdraw("a") {
		t.Fatal("retry granted after the clock went back, want the newest slot still counted")
	}
	clk.set(15 * time.Second)
	if got := budgetDrain(b, "a"); got != 100 {
		t.Errorf("granted %d a window after the withdrawals, want 100", got)
	}
	checkBudgetConsistent(t, b)
}

func TestBudgetEvictsIdleHosts(t *testing.T) {
	t.Run("a new host sweeps", func(t *testing.T) {
		b, clk := newTestBudget()
		for i := range 1000 {
			b.Withdraw(fmt.Sprintf("old-%d", i))
		}
		if n := budgetHostCount(b); n != 1000 {
			t.Fatalf("%d hosts tracked, want 1000", n)
		}
		clk.set(20 * time.Second)
		b.Withdraw("new")
		if n := budgetHostCount(b); n != 1 {
			t.Errorf("%d hosts tracked after a window idle, want only the new one", n)
		}
	})
	t.Run("a known host's new slot sweeps, active hosts stay", func(t *testing.T) {
		b, clk := newTestBudget()
		for i := range 100 {
			b.Deposit(fmt.Sprintf("old-%d", i))
		}
		budgetDrain(b, "active")
		clk.set(9 * time.Second)
		b.Deposit("recent")
		clk.set(12 * time.Second)
		b.Deposit("active")
		if n := budgetHostCount(b); n != 2 {
			t.Errorf("%d hosts tracked, want active and recent", n)
		}
		// The surviving bucket kept its state: active's withdrawals at t=0
		// have expired, so it has its reserve again.
		if got := budgetDrain(b, "active"); got != 100 {
			t.Errorf("active: granted %d, want 100", got)
		}
	})
	t.Run("an evicted host comes back fresh", func(t *testing.T) {
		b, clk := newTestBudget()
		budgetDrain(b, "a")
		clk.set(time.Minute)
		b.Deposit("b") // sweeps a
		if _, ok := b.hosts.Load("a"); ok {
			t.Fatal("a still tracked after a minute idle")
		}
		if got := budgetDrain(b, "a"); got != 100 {
			t.Errorf("a after eviction: granted %d, want 100", got)
		}
	})
	t.Run("a host idle for less than a window keeps its spending", func(t *testing.T) {
		b, clk := newTestBudget()
		clk.set(10 * time.Second)
		b.Deposit("x") // sweeps at slot 10; the next sweep is due at slot 20
		clk.set(11 * time.Second)
		budgetDrain(b, "a")
		clk.set(20*time.Second + 500*time.Millisecond)
		b.Deposit("y") // sweeps at slot 20, when a has been idle 9 slots
		if b.Withdraw("a") {
			t.Error("a granted a retry at slot 20, want its slot-11 withdrawals still counted")
		}
	})
	t.Run("at most once per window", func(t *testing.T) {
		b, clk := newTestBudget()
		clk.set(10 * time.Second)
		b.Deposit("x") // sweeps (nothing) at slot 10; next sweep at slot 20
		b.Deposit("short-lived")
		clk.set(19 * time.Second)
		b.Deposit("x")
		clk.set(20*time.Second + 500*time.Millisecond)
		b.Deposit("y") // slot 20: short-lived is idle exactly a window: swept
		if _, ok := b.hosts.Load("short-lived"); ok {
			t.Error("short-lived still tracked after a sweep at slot 20")
		}
		b.Deposit("short-lived-2")
		clk.set(29*time.Second + 999*time.Millisecond)
		b.Deposit("z") // idle 9 slots, and no sweep is due before slot 30
		if _, ok := b.hosts.Load("short-lived-2"); !ok {
			t.Error("short-lived-2 evicted before a window idle")
		}
	})
	t.Run("memory stays bounded with ever new hosts", func(t *testing.T) {
		// 100 new hosts every slot for 20 windows: 20,000 hosts in all,
		// of which only those used in the last two windows may remain.
		b, clk := newTestBudget()
		maxHosts := 0
		for slot := range 20 * budgetSlots {
			clk.set(time.Duration(slot) * time.Second)
			for i := range 100 {
				h := fmt.Sprintf("h-%d-%d", slot, i)
				b.Deposit(h)
				b.Withdraw(h)
			}
			maxHosts = max(maxHosts, budgetHostCount(b))
		}
		if limit := 2 * budgetSlots * 100; maxHosts > limit {
			t.Errorf("up to %d hosts tracked, want at most %d", maxHosts, limit)
		}
	})
}

func TestBudgetDoesNotAllocate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBudget()
		b.Deposit("api.example.com:443")
		tests := []struct {
			name string
			f    func()
		}{
			{"Deposit", func() { b.Deposit("api.example.com:443") }},
			{"Withdraw", func() { b.Withdraw("api.example.com:443") }},
			{"Withdraw refused", func() { b.Withdraw("api.example.com:443") }},
			{"Deposit and Withdraw in a new slot", func() {
				time.Sleep(time.Second)
				b.Deposit("api.example.com:443")
				b.Withdraw("api.example.com:443")
			}},
		}
		for _, tt := range tests {
			if allocs := testing.AllocsPerRun(200, tt.f); allocs != 0 {
				t.Errorf("%s: %v allocs per call, want 0", tt.name, allocs)
			}
		}
	})
}

func TestErrBudgetExhausted(t *testing.T) {
	err := fmt.Errorf("saferetry: 2 attempts: %w", ErrBudgetExhausted)
	if !errors.Is(err, ErrBudgetExhausted) {
		t.Error("errors.Is does not find ErrBudgetExhausted through %w")
	}
	if !strings.HasPrefix(ErrBudgetExhausted.Error(), "saferetry: ") {
		t.Errorf("ErrBudgetExhausted = %q, want the saferetry: prefix", ErrBudgetExhausted)
	}
}
