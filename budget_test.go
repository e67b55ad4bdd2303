package saferetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/saferetry/saferetry/internal/overload"
	"github.com/saferetry/saferetry/internal/testutil"
)

// budgetDrain withdraws until refused and returns how many were granted.
func budgetDrain(b *Budget, host string) int {
	n := 0
	for b.withdraw(host, overload.Answered) {
		n++
	}
	return n
}

func TestNewBudgetPanicsNamingTheRatio(t *testing.T) {
	for _, r := range []float64{-0.1, 1.5, math.NaN(), math.Inf(1), math.Inf(-1)} {
		t.Run(fmt.Sprint(r), func(t *testing.T) {
			defer func() {
				msg, _ := recover().(string)
				want := fmt.Sprintf("saferetry: NewBudget(%v): ratio must be within [0, 1]", r)
				if msg != want {
					t.Errorf("panic %q, want %q", msg, want)
				}
			}()
			NewBudget(r)
		})
	}
}

// A fresh host's allowance is c = 2 plus a random fraction of a token
// (its phase: see overload.Host.Init): 2 whole retries, and, with what
// requests earn, c + phase + ratio x requests in all.
func TestBudgetRatios(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, tt := range []struct {
			ratio    float64
			min, max int // retries for a fresh host and 20 requests
		}{
			{0, 0, 0},
			{0.1, 4, 4},
			{0.5, 12, 12},
			{1, 22, 22},
		} {
			for _, host := range []string{"a", "b", "c", "d"} {
				b := NewBudget(tt.ratio)
				got := budgetDrain(b, host)
				if tt.ratio > 0 && got != 2 {
					t.Errorf("NewBudget(%v): a fresh host granted %d retries, want 2", tt.ratio, got)
				}
				for range 20 {
					b.deposit(host)
					got += budgetDrain(b, host)
					time.Sleep(100 * time.Millisecond) // let pacing earn its credit
				}
				if got < tt.min || got > tt.max {
					t.Errorf("NewBudget(%v): a fresh host and 20 requests: %d retries, want %d to %d", tt.ratio, got, tt.min, tt.max)
				}
			}
		}
	})
}

func TestBudgetZeroValueIsDefault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var zero Budget
		def := NewBudget(0.1)
		for _, b := range []*Budget{&zero, def} {
			if got := budgetDrain(b, "a"); got != 2 {
				t.Fatalf("granted %d retries to a fresh host, want the allowance, 2", got)
			}
			for range 10 {
				b.deposit("a")
			}
			if got := budgetDrain(b, "a"); got != 1 {
				t.Errorf("granted %d retries after 10 requests, want 1", got)
			}
		}
	})
}

func TestBudgetNilIsOff(t *testing.T) {
	var b *Budget
	b.deposit("a")
	b.refund("a")
	b.record("a", false)
	for i := range 1000 {
		if !b.withdraw("a", overload.Answered) || !b.admit("a", 2) {
			t.Fatalf("a nil budget refused attempt %d, want everything allowed", i)
		}
	}
	for h := range b.Hosts() {
		t.Errorf("a nil budget reports host %q", h)
	}
}

// The budget's tokens come back only as requests earn them: time alone
// grants nothing (no floor, no window that expires).
func TestBudgetTimeGrantsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBudget(0.1)
		budgetDrain(b, "a")
		time.Sleep(9 * time.Minute) // not long enough to be forgotten
		if b.withdraw("a", overload.Answered) {
			t.Fatal("a retry granted after 9 minutes without requests")
		}
	})
}

func TestBudgetHosts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBudget(0.1)
		for range 100 {
			b.deposit("busy:443")
			b.record("busy:443", true)
			time.Sleep(time.Millisecond)
		}
		budgetDrain(b, "spent:443")
		for range 50 {
			b.record("refusing:443", false)
			time.Sleep(time.Millisecond)
		}
		b.admit("refusing:443", 2)
		got := map[string]HostState{}
		for h, s := range b.Hosts() {
			got[h] = s
		}
		if len(got) != 3 {
			t.Fatalf("Hosts reported %v, want busy, spent and refusing", got)
		}
		// 100 requests in 100ms: 1000/s, which earns a cap of about 10.
		if s := got["busy:443"]; s.RetryTokens < 9 || s.RetryTokens > 11 || s.Accepts < 100 || s.Requests != s.Accepts || s.RejectProbability != 0 {
			t.Errorf("busy: %+v, want about 10 tokens, as many accepts as requests (hundreds a second), no rejection", s)
		}
		if s := got["spent:443"]; s.RetryTokens >= 1 {
			t.Errorf("spent: %+v, want no tokens", s)
		}
		if s := got["refusing:443"]; s.RejectProbability != 0.9 || s.Accepts != 0 {
			t.Errorf("refusing: %+v, want the rejection probability at its cap, 0.9, and no accepts", s)
		}
		for range b.Hosts() {
			break // stopping early must not panic
		}
	})
}

func TestBudgetThrottle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBudget(0.1)
		if !b.admit("h", 2) {
			t.Fatal("the throttle rejected an attempt to a host with no history")
		}
		for range 1000 {
			b.record("h", false)
			time.Sleep(time.Millisecond)
		}
		rejected := 0
		for range 1000 {
			if !b.admit("h", 2) {
				rejected++
			}
		}
		if rejected < 850 || rejected > 950 {
			t.Errorf("rejected %d of 1000 attempts to a host refusing everything, want about 900", rejected)
		}
		if !b.admit("h", 0) {
			t.Error("k 0 (throttling off) rejected an attempt")
		}
		// The host answers again: the throttle lets go within two seconds.
		for range 2000 {
			if b.admit("h", 2) {
				b.record("h", true)
			}
			time.Sleep(time.Millisecond)
		}
		for i := range 100 {
			if !b.admit("h", 2) {
				t.Fatalf("attempt %d rejected two seconds after the host recovered", i)
			}
			b.record("h", true)
		}
	})
}

func TestOverloaded(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tt := range []struct {
		status int
		err    error
		want   bool
	}{
		{status: 200},
		{status: 404},
		{status: 422},
		{status: 500},
		{status: 502},
		{status: 429, want: true},
		{status: 503, want: true},
		{err: fmt.Errorf("%w after 1s", ErrAttemptTimeout), want: true},
		{err: refused, want: true},
		{err: syscall.ECONNRESET},
		{err: io.ErrUnexpectedEOF},
	} {
		var resp *http.Response
		if tt.err == nil {
			resp = &http.Response{StatusCode: tt.status}
		}
		if got := overloaded(Attempt{Response: resp, Err: tt.err}); got != tt.want {
			t.Errorf("overloaded(%d, %v) = %t, want %t", tt.status, tt.err, got, tt.want)
		}
	}
}

func TestBudgetDoesNotAllocate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBudget(0.1)
		const h = "api.example.com:443"
		b.deposit(h)
		for _, tt := range []struct {
			name string
			f    func()
		}{
			{"deposit", func() { b.deposit(h) }},
			{"withdraw", func() { b.withdraw(h, overload.Answered) }},
			{"refund", func() { b.refund(h) }},
			{"record", func() { b.record(h, true) }},
			{"admit", func() { b.admit(h, 2) }},
			{"a new tick", func() {
				time.Sleep(time.Second)
				b.deposit(h)
				b.withdraw(h, overload.Answered)
			}},
		} {
			if allocs := testing.AllocsPerRun(200, tt.f); allocs != 0 {
				t.Errorf("%s: %v allocs per call, want 0", tt.name, allocs)
			}
		}
	})
}

// TestBudgetConcurrent shares one budget between goroutines, under -race:
// the grants stay within what the host was given.
func TestBudgetConcurrent(t *testing.T) {
	b := NewBudget(0.1)
	const goroutines, iterations = 8, 2000
	var granted, deposits atomic.Int64
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range iterations {
				b.deposit("shared")
				deposits.Add(1)
				if b.withdraw("shared", overload.Answered) {
					granted.Add(1)
				}
				if b.admit("shared", 2) {
					b.record("shared", true)
				}
				for range b.Hosts() {
				}
			}
		})
	}
	wg.Wait()
	if limit := 2 + 0.1*float64(deposits.Load()); float64(granted.Load()) > limit {
		t.Errorf("granted %d retries, more than the %.0f given", granted.Load(), limit)
	}
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

// upstream is a scripted base transport shared by a fleet: it answers
// every attempt at once, 503 during [outageStart, outageEnd) of its clock,
// 503 at random with probability failRate otherwise, 200 else; and counts
// the attempts it received per 100ms, by time since start.
type upstream struct {
	start                  time.Time
	outageStart, outageEnd time.Duration
	failRate               float64

	mu       sync.Mutex
	rng      uint64 // xorshift state: deterministic failures
	attempts []int
}

func (u *upstream) RoundTrip(r *http.Request) (*http.Response, error) {
	at := time.Since(u.start)
	u.mu.Lock()
	i := int(at / (100 * time.Millisecond))
	for len(u.attempts) <= i {
		u.attempts = append(u.attempts, 0)
	}
	u.attempts[i]++
	u.rng ^= u.rng << 13
	u.rng ^= u.rng >> 7
	u.rng ^= u.rng << 17
	fail := float64(u.rng>>11)/(1<<53) < u.failRate
	u.mu.Unlock()
	status := http.StatusOK
	if fail || at >= u.outageStart && at < u.outageEnd {
		status = http.StatusServiceUnavailable
	}
	return &http.Response{StatusCode: status, Body: http.NoBody, Request: r, Header: http.Header{}}, nil
}

// fleetRun drives instances stacks built by New with its defaults (one
// budget each) over one upstream: each instance starts a GET every gap,
// evenly, for length, without waiting for the previous one. It returns
// the logical requests started, those that succeeded, and the upstream.
func fleetRun(t *testing.T, instances int, gap, length time.Duration, u *upstream) (started, succeeded int64) {
	t.Helper()
	u.start = time.Now()
	u.rng = 88172645463325252
	var ok, all atomic.Int64
	var wg sync.WaitGroup
	for i := range instances {
		stack := New(u)
		wg.Go(func() {
			// Instances are spread evenly over a gap.
			time.Sleep(gap * time.Duration(i) / time.Duration(instances))
			for at := time.Duration(0); at < length; at += gap {
				all.Add(1)
				wg.Go(func() {
					req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "https://api.example:443/", nil)
					resp, err := stack.RoundTrip(req)
					if err == nil {
						if resp.StatusCode == http.StatusOK {
							ok.Add(1)
						}
						resp.Body.Close()
					}
				})
				time.Sleep(gap)
			}
		})
	}
	wg.Wait()
	return all.Load(), ok.Load()
}

// TestFleetOutageBound runs fleets of instances built from New's defaults
// through a 60s full outage after 30s of normal load, on a virtual clock:
// attempts per logical request during the outage stay within
// 1 + 0.1 + c/N, N the requests one instance sends during it, whatever
// the fleet's size; and after the outage's first 2s no 100ms carries more
// than 1.3x the normal attempts.
func TestFleetOutageBound(t *testing.T) {
	for _, tt := range []struct {
		instances int
		gap       time.Duration // between one instance's requests
	}{
		{500, time.Second},            // 1 request/s each: bound 1 + 0.1 + 2/60
		{50, 10 * time.Millisecond},   // 100/s each: the gate stops retries
		{5, time.Millisecond},         // 1000/s each
		{100, 100 * time.Millisecond}, // 10/s each: bound 1 + 0.1 + 10/600
	} {
		t.Run(fmt.Sprintf("%d instances, one request every %v", tt.instances, tt.gap), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				u := &upstream{outageStart: 30 * time.Second, outageEnd: 90 * time.Second}
				fleetRun(t, tt.instances, tt.gap, 100*time.Second, u)
				var normal, during, peak int
				for i, n := range u.attempts {
					switch at := time.Duration(i) * 100 * time.Millisecond; {
					case at >= 10*time.Second && at < u.outageStart:
						normal += n
					case at >= u.outageStart && at < u.outageEnd:
						during += n
						if at >= u.outageStart+2*time.Second {
							peak = max(peak, n)
						}
					}
				}
				rate := float64(time.Second) / float64(tt.gap) // per instance
				perBucket := float64(normal) / 200
				requests := rate * 60 * float64(tt.instances)
				amp := float64(during) / requests
				bound := 1 + 0.1 + max(2, 0.1*rate*10)/(rate*60)
				t.Logf("normal %.0f attempts/100ms; outage: %.4f attempts per request (bound %.4f), busiest 100ms after 2s %.2fx normal",
					perBucket, amp, bound, float64(peak)/perBucket)
				if amp > bound+0.001 {
					t.Errorf("%.4f attempts per logical request during the outage, over the bound %.4f", amp, bound)
				}
				if amp > 1.15 {
					t.Errorf("%.4f attempts per logical request during the outage, want at most 1.15", amp)
				}
				if float64(peak) > 1.3*perBucket {
					t.Errorf("%d attempts in one 100ms step after the outage's first 2s, over 1.3x the normal %.0f", peak, perBucket)
				}
			})
		})
	}
}

// TestFleetHeals runs fleets built from New's defaults against a healthy
// upstream that answers 2% of attempts 503 at random: at least 99.9% of
// the logical requests succeed, an instance sending one request a second
// included.
func TestFleetHeals(t *testing.T) {
	for _, tt := range []struct {
		instances int
		gap       time.Duration
		length    time.Duration
	}{
		{20, time.Second, 2000 * time.Second},
		{10, 10 * time.Millisecond, 200 * time.Second},
	} {
		t.Run(fmt.Sprintf("%d instances, one request every %v", tt.instances, tt.gap), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				u := &upstream{failRate: 0.02, outageStart: time.Hour * 1000, outageEnd: time.Hour * 1000}
				started, ok := fleetRun(t, tt.instances, tt.gap, tt.length, u)
				rate := float64(ok) / float64(started)
				t.Logf("%d of %d logical requests succeeded (%.3f%%)", ok, started, 100*rate)
				if rate < 0.999 {
					t.Errorf("%.3f%% of logical requests succeeded, want at least 99.9%%", 100*rate)
				}
			})
		})
	}
}

// A refused connection is an overload answer: a busy client's gate
// closes on it, and stops retrying.
func TestBudgetGateThroughTheStack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var attempts atomic.Int64
		refused := testutil.RoundTripFunc(func(*http.Request) (*http.Response, error) {
			attempts.Add(1)
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
		})
		stack := New(refused)
		var stops [8]atomic.Int64
		var wg sync.WaitGroup
		for range 2000 {
			wg.Go(func() {
				req, _ := http.NewRequest(http.MethodGet, "http://down.example/", nil)
				_, err := stack.RoundTrip(req)
				var re *RetryError
				if errors.As(err, &re) {
					stops[re.Reason].Add(1)
				}
			})
			time.Sleep(time.Millisecond)
		}
		wg.Wait()
		got := float64(attempts.Load()) / 2000
		t.Logf("%.3f attempts per request; budget stops %d", got, stops[StopBudget].Load())
		if got > 1.02 {
			t.Errorf("%.3f attempts per request against a refusing host, want the gate to stop retries (about 1)", got)
		}
	})
}

// oneRetryBudget is a budget whose hosts each allow one retry, and earn
// the next in ten requests: a fresh host starts with 1 token and no phase,
// neither pacing nor the gate applies.
func oneRetryBudget() *Budget {
	p := overload.Defaults(0.1)
	p.Allowance, p.Pace, p.Gate = 1, 0, false
	b := new(Budget)
	b.once.Do(func() {
		b.init(overload.NewConfig(p))
		b.table.SetPhase(func() float64 { return 0 })
	})
	return b
}

// unlimitedBudget is a budget that never refuses a retry, for benchmarks
// that measure the accounting alone: each request earns three retries,
// tokens pile up to a thousand at least, and neither pacing nor the gate
// applies.
func unlimitedBudget() *Budget {
	p := overload.Defaults(1)
	p.Ratio, p.Allowance, p.Pace, p.Gate = 3, 1000, 0, false
	b := new(Budget)
	b.once.Do(func() { b.init(overload.NewConfig(p)) })
	return b
}

// scriptedHost answers each attempt with the next status of its script
// (200 once it runs out), or, for status 0, holds the attempt until its
// context ends; it counts the attempts per path.
type scriptedHost struct {
	mu       sync.Mutex
	script   []int
	attempts map[string]int
}

func (s *scriptedHost) RoundTrip(r *http.Request) (*http.Response, error) {
	s.mu.Lock()
	if s.attempts == nil {
		s.attempts = make(map[string]int)
	}
	s.attempts[r.URL.Path]++
	status := http.StatusOK
	if len(s.script) > 0 {
		status, s.script = s.script[0], s.script[1:]
	}
	s.mu.Unlock()
	if status == 0 {
		<-r.Context().Done()
		return nil, r.Context().Err()
	}
	return &http.Response{StatusCode: status, Body: http.NoBody, Request: r, Header: http.Header{}}, nil
}

func (s *scriptedHost) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts[path]
}

// A quiet client that has seen its host work stops retrying once two
// attempts in a row got overload answers, and starts again with the
// next accepted answer; one that has never seen its host work spends
// its allowance (two retries) on its first request.
func TestQuietClientStreak(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		get := func(stack http.RoundTripper, path string) *http.Response {
			t.Helper()
			req, _ := http.NewRequest(http.MethodGet, "https://api.example"+path, nil)
			resp, err := stack.RoundTrip(req)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			resp.Body.Close()
			return resp
		}

		fresh := &scriptedHost{script: []int{503, 503}}
		if resp := get(New(fresh), "/first"); resp.StatusCode != http.StatusOK || fresh.count("/first") != 3 {
			t.Errorf("a fresh client's first request: %d after %d attempts, want 200 after 3", resp.StatusCode, fresh.count("/first"))
		}

		host := &scriptedHost{}
		stack := New(host)
		get(stack, "/works")
		time.Sleep(10 * time.Second) // the budget's earnings go on; the streak does not age
		host.script = []int{503, 503}
		resp := get(stack, "/outage")
		if resp.StatusCode != http.StatusServiceUnavailable || Stopped(resp) != StopBudget || host.count("/outage") != 2 {
			t.Errorf("after 503, 503: %d, stopped %q, %d attempts; want 503 stopped by the budget after 2",
				resp.StatusCode, Stopped(resp), host.count("/outage"))
		}
		host.script = []int{503}
		if resp := get(stack, "/still"); resp.StatusCode != http.StatusServiceUnavailable || host.count("/still") != 1 {
			t.Errorf("with the gate closed: %d after %d attempts, want the 503 after 1", resp.StatusCode, host.count("/still"))
		}
		get(stack, "/back")
		host.script = []int{503}
		if resp := get(stack, "/blip"); resp.StatusCode != http.StatusOK || host.count("/blip") != 2 {
			t.Errorf("after an accepted answer, a blip: %d after %d attempts, want 200 after 2", resp.StatusCode, host.count("/blip"))
		}
	})
}

// A retry granted after an attempt timeout is asked of the gate again when
// it falls due: if other attempts timed out during its wait, it is not
// sent, and the run ends with the timeout, stopped by the budget.
func TestTimeoutRetryIsAskedAgainWhenDue(t *testing.T) {
	t.Run("plain", func(t *testing.T) { testTimeoutRetryAskedAgain(t) })
	// A hedge delay longer than the attempt timeout: the hedged loop's
	// retry after its only attempt failed.
	t.Run("hedged", func(t *testing.T) { testTimeoutRetryAskedAgain(t, WithHedge(2*time.Second, 1)) })
}

func testTimeoutRetryAskedAgain(t *testing.T, opts ...Option) {
	synctest.Test(t, func(t *testing.T) {
		host := &scriptedHost{}
		var events []Event
		var mu sync.Mutex
		opts = append(opts, WithAttemptTimeout(time.Second), WithJitter(NoJitter),
			WithHook(func(ev Event) { mu.Lock(); events = append(events, ev); mu.Unlock() }))
		stack := New(host, opts...)
		req, _ := http.NewRequest(http.MethodGet, "https://api.example/works", nil)
		resp, err := stack.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()

		host.script = []int{0, 0} // the next two attempts hang
		errs := make(chan error, 2)
		for _, path := range []string{"/a", "/b"} {
			go func() {
				req, _ := http.NewRequest(http.MethodGet, "https://api.example"+path, nil)
				_, err := stack.RoundTrip(req)
				errs <- err
			}()
			time.Sleep(50 * time.Millisecond) // /b times out 50ms after /a, during /a's 100ms wait
		}
		for range 2 {
			err := <-errs
			var re *RetryError
			if !errors.As(err, &re) || re.Reason != StopBudget || !errors.Is(err, ErrAttemptTimeout) {
				t.Errorf("got %v, want a RetryError stopped by the budget, wrapping ErrAttemptTimeout", err)
			}
		}
		if a, b := host.count("/a"), host.count("/b"); a != 1 || b != 1 {
			t.Errorf("the host received /a %d times and /b %d times, want once each", a, b)
		}
		mu.Lock()
		defer mu.Unlock()
		var planned, stopped int
		for _, ev := range events {
			if ev.Request.URL.Path == "/a" && ev.Stopped == StopNone {
				planned++
			}
			if ev.Request.URL.Path == "/a" && ev.Stopped == StopBudget {
				stopped++
			}
		}
		if planned != 1 || stopped != 1 {
			t.Errorf("/a reported %d planned retries and %d budget stops, want 1 and 1", planned, stopped)
		}
	})
}
