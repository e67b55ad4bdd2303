package overload

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

var defaults = NewConfig(Defaults(0.1))

func newHost(c *Config) *Host {
	h := new(Host)
	h.Init(c, 0, 0) // no phase: the allowance is exactly c
	return h
}

// drain withdraws until refused and returns how many were granted.
func drain(h *Host, c *Config, now time.Duration) int {
	n := 0
	for h.Withdraw(c, now, Answered) {
		n++
	}
	return n
}

// steady deposits one request every gap from start to end (exclusive).
func steady(h *Host, c *Config, start, end, gap time.Duration) {
	for now := start; now < end; now += gap {
		h.Deposit(c, now)
	}
}

func TestFreshHostHasTheAllowance(t *testing.T) {
	h := newHost(defaults)
	if got := drain(h, defaults, 0); got != 2 {
		t.Fatalf("a fresh host granted %d retries, want the allowance, 2", got)
	}
	// Nine deposits earn 0.9 of a retry: nothing; the tenth earns one.
	for range 9 {
		h.Deposit(defaults, 0)
	}
	if h.Withdraw(defaults, 0, Answered) {
		t.Fatal("granted a retry with 0.9 tokens")
	}
	h.Deposit(defaults, 0)
	if got := drain(h, defaults, 0); got != 1 {
		t.Fatalf("granted %d retries after ten deposits, want 1", got)
	}
}

func TestZeroRatioRefusesEveryRetry(t *testing.T) {
	c := NewConfig(Defaults(0))
	h := newHost(c)
	for i := range 1000 {
		h.Deposit(c, time.Duration(i)*time.Millisecond)
	}
	if h.Withdraw(c, time.Second, Answered) {
		t.Fatal("ratio 0 granted a retry")
	}
}

func TestRatioOneEarnsOneRetryPerRequest(t *testing.T) {
	c := NewConfig(Defaults(1))
	h := newHost(c)
	drain(h, c, 0)
	for i := range 1000 {
		now := time.Duration(i) * time.Millisecond
		h.Deposit(c, now)
		if !h.Withdraw(c, now, Answered) {
			t.Fatalf("request %d: retry refused with ratio 1", i)
		}
	}
}

// The cap is ratio x the requests of the last ~Window: a busy host saves
// for a blip of 10% of its last ten seconds, a quiet one only c. Pacing
// lets it spend at once only ratio x its last 50ms of requests (at least
// the pace floor, 5, and never more than its tokens), the rest as
// requests come.
func TestCapFollowsTheRequestRate(t *testing.T) {
	for _, tt := range []struct {
		rate   float64 // requests per second
		tokens float64 // after a minute at that rate
		atOnce int     // retries granted at one instant then
	}{
		{0.1, 2, 2},
		{1, 2, 2},
		{10, 10, 5},
		{100, 100, 5},
		{1000, 1000, 5},
	} {
		t.Run(fmt.Sprintf("%g/s", tt.rate), func(t *testing.T) {
			h := newHost(defaults)
			gap := time.Duration(float64(time.Second) / tt.rate)
			steady(h, defaults, 0, time.Minute, gap)
			got := h.State(defaults, time.Minute).Tokens
			if math.Abs(got-tt.tokens) > 0.02*tt.tokens+0.1 {
				t.Errorf("%v tokens, want about %v", got, tt.tokens)
			}
			if n := drain(h, defaults, time.Minute); math.Abs(float64(n-tt.atOnce)) > 0.05*float64(tt.atOnce)+1 {
				t.Errorf("granted %d retries at once, want about %d", n, tt.atOnce)
			}
			// Requests go on; every one asks for retries.
			n := 0
			for now := time.Minute; now < time.Minute+10*time.Second; now += gap {
				h.Deposit(defaults, now)
				n += drain(h, defaults, now)
			}
			// The tokens (saved, and earned meanwhile), or the pace.
			want := min(tt.tokens-float64(tt.atOnce)+0.1*tt.rate*10, 1.5*0.1*tt.rate*10)
			if math.Abs(float64(n)-want) > 0.05*want+2 {
				t.Errorf("granted %d retries over the next 10s, want about %v", n, want)
			}
		})
	}
}

// After traffic stops the cap decays, continuously: the tokens left
// follow exp(-t/W) down to the allowance, and never jump.
func TestCapDecaysContinuously(t *testing.T) {
	h := newHost(defaults)
	steady(h, defaults, 0, time.Minute, time.Millisecond) // cap 100
	prev := h.State(defaults, time.Minute).Tokens
	for now := time.Minute; now < 3*time.Minute; now += Tick {
		got := h.State(defaults, now).Tokens
		if got > prev {
			t.Fatalf("tokens rose from %v to %v at %v without a deposit", prev, got, now)
		}
		if prev-got > 0.01*prev+1e-6 {
			t.Fatalf("tokens fell from %v to %v in one tick at %v: a step, not a decay", prev, got, now)
		}
		prev = got
	}
	if want := 2.0; prev != want {
		t.Errorf("tokens two minutes after traffic stopped: %v, want the allowance %v", prev, want)
	}
}

// outage runs one instance through a full outage: requests at a steady
// rate (or Poisson, if rng is set) for warm before it, then for length
// during it, every attempt failing, each request asking for up to
// retries retries at once. Outcomes are recorded when record is set (the
// gate then sees them). It returns the requests and attempts made during
// the outage, and the most retries granted in any 100ms step after the
// outage's first 2s.
func outage(c *Config, rate float64, warm, length time.Duration, retries int, rng *rand.Rand, record bool) (reqs, attempts, peakStep int) {
	h := newHost(c)
	gap := func() time.Duration {
		if rng == nil {
			return time.Duration(float64(time.Second) / rate)
		}
		return time.Duration(rng.ExpFloat64() * float64(time.Second) / rate)
	}
	now := gap()
	for ; now < warm; now += gap() {
		h.Deposit(c, now)
		if record {
			h.Record(c, now, true)
		}
	}
	step, inStep := int64(-1), 0
	for ; now < warm+length; now += gap() {
		reqs++
		attempts++
		h.Deposit(c, now)
		for range retries {
			if record {
				h.Record(c, now, false)
			}
			if !h.Withdraw(c, now, Answered) {
				break
			}
			attempts++
			if s := int64((now - warm) / (100 * time.Millisecond)); s != step {
				step, inStep = s, 0
			}
			if inStep++; now-warm >= 2*time.Second {
				peakStep = max(peakStep, inStep)
			}
		}
	}
	return reqs, attempts, peakStep
}

// The bound: attempts per logical request during an outage are at most
// 1 + ratio + cap/N for N requests, whatever the rate, and so whatever
// the number of instances sharing a load: each instance is bounded alone.
// Outcomes are not recorded here, so the gate stays open and the budget
// alone is measured: with evenly spaced requests it spends all it may.
func TestOutageBound(t *testing.T) {
	for _, rate := range []float64{1, 10, 1000} {
		for _, arrivals := range []string{"even", "poisson"} {
			t.Run(fmt.Sprintf("%g/s %s", rate, arrivals), func(t *testing.T) {
				var rng *rand.Rand
				if arrivals == "poisson" {
					rng = rand.New(rand.NewPCG(1, uint64(rate)))
				}
				reqs, attempts, _ := outage(defaults, rate, time.Minute, time.Minute, 3, rng, false)
				got := float64(attempts) / float64(reqs)
				capacity := max(2, 0.1*rate*10) // the cap at the outage's start
				bound := 1 + 0.1 + capacity/float64(reqs)
				t.Logf("%d requests, %.4f attempts each, bound %.4f", reqs, got, bound)
				if got > bound+1e-9 {
					t.Errorf("%.4f attempts per request, over the bound %.4f", got, bound)
				}
				if arrivals == "even" && got < bound-1/float64(reqs)-0.005*(bound-1) {
					t.Errorf("%.4f attempts per request: the budget spent far less than it may (%.4f)", got, bound)
				}
			})
		}
	}
}

// With outcomes recorded, a busy instance's gate sees the outage within a
// fraction of a second and stops retrying: what it saved is forfeited, and
// it retries again only once its attempts are answered.
func TestGateStopsRetriesIntoOverload(t *testing.T) {
	reqs, attempts, peak := outage(defaults, 1000, time.Minute, time.Minute, 3, nil, true)
	got := float64(attempts) / float64(reqs)
	if got > 1.001 || peak != 0 {
		t.Errorf("%.4f attempts per request, %d retries in a 100ms step after 2s; want the gate shut", got, peak)
	}
	// A quiet instance has too few requests for the averages: two
	// overload answers in a row close its gate, so the outage costs one
	// retry, its first request's.
	reqs, attempts, _ = outage(defaults, 1, time.Minute, time.Minute, 3, nil, true)
	if got, want := float64(attempts)/float64(reqs), 1+1.0/float64(reqs); math.Abs(got-want) > 1e-9 {
		t.Errorf("1/s: %.4f attempts per request, want %.4f (one retry)", got, want)
	}

	h := newHost(defaults)
	steady(h, defaults, 0, time.Minute, time.Millisecond) // 1000 tokens saved
	for now := time.Minute; now < time.Minute+time.Second; now += time.Millisecond {
		h.Record(defaults, now, false)
	}
	if h.Withdraw(defaults, time.Minute+time.Second, Answered) {
		t.Fatal("a retry granted after a second of overload answers")
	}
	if s := h.State(defaults, time.Minute+time.Second); s.Tokens != 2 {
		t.Errorf("%v tokens after the gate refused a retry, want the allowance (the rest forfeited)", s.Tokens)
	}
	for now := time.Minute + time.Second; now < time.Minute+2*time.Second; now += time.Millisecond {
		h.Record(defaults, now, true)
	}
	if !h.Withdraw(defaults, time.Minute+2*time.Second, Answered) {
		t.Error("a retry refused after a second of accepted attempts")
	}
}

// No pulses: once the cap at the outage's start is spent, retries are
// granted as requests earn them and as pacing allows, never a window's
// worth at once.
func TestOutageHasNoPulses(t *testing.T) {
	for _, rate := range []float64{10, 1000, 10000} {
		_, _, peak := outage(defaults, rate, time.Minute, time.Minute, 3, nil, false)
		// 100ms of requests earn 1.5 x ratio of them in pace credits, on
		// top of a burst of max(pace floor, ratio x 50ms of them).
		limit := int(1.5*0.1*rate*0.1+max(5, 0.1*rate*0.05)) + 1
		if peak > limit {
			t.Errorf("%g/s: %d retries in one 100ms step, want at most %d", rate, peak, limit)
		}
	}
}

// Healing: a healthy upstream that fails 2% of attempts at random. An
// instance sending one request per second loses under 0.1% of its
// requests: a failed retry closes its gate (two in a row), which costs
// 0.02 x 0.02 = 0.04% of them; with an allowance of 1.5 the tokens add
// 0.2% more. A busy instance needs three in a row: it loses nothing to
// chance streaks.
func TestHealsRandomFailures(t *testing.T) {
	for _, tt := range []struct {
		rate, allowance  float64
		minLoss, maxLoss float64
	}{
		{1, 2, 0.0002, 0.001},
		{1, 1.5, 0.0015, 1},
		{10, 2, 0.0002, 0.001},
		{1000, 2, 0, 0.00002},
	} {
		t.Run(fmt.Sprintf("%g/s allowance %g", tt.rate, tt.allowance), func(t *testing.T) {
			p := Defaults(0.1)
			p.Allowance = tt.allowance
			c := NewConfig(p)
			h := newHost(c)
			rng := rand.New(rand.NewPCG(7, uint64(tt.rate)))
			const n = 300_000
			lost := 0
			now := time.Duration(0)
			for range n {
				now += time.Duration(rng.ExpFloat64() * float64(time.Second) / tt.rate)
				h.Deposit(c, now)
				ok := rng.Float64() >= 0.02
				h.Record(c, now, ok)
				for retry := 0; !ok && retry < 3; retry++ {
					if !h.Withdraw(c, now, Answered) {
						break
					}
					ok = rng.Float64() >= 0.02
					h.Record(c, now, ok)
				}
				if !ok {
					lost++
				}
			}
			// Failing all four attempts: 0.02^4 = 1.6e-7 of requests.
			loss := float64(lost) / n
			t.Logf("lost %d of %d requests (%.4f%%)", lost, n, 100*loss)
			if loss > tt.maxLoss || loss < tt.minLoss {
				t.Errorf("lost %.4f%% of requests, want %.4f%% to %.4f%%", 100*loss, 100*tt.minLoss, 100*tt.maxLoss)
			}
		})
	}
}

// Granted retries never exceed what the host was given: the allowance,
// what requests earned and what was refunded.
func TestGrantsNeverExceedEarnings(t *testing.T) {
	h := newHost(defaults)
	rng := rand.New(rand.NewPCG(3, 3))
	var granted, deposits, refunds int
	now := time.Duration(0)
	for range 100_000 {
		now += time.Duration(rng.IntN(int(50 * time.Millisecond)))
		switch rng.IntN(4) {
		case 0, 1:
			h.Deposit(defaults, now)
			deposits++
		case 2:
			if h.Withdraw(defaults, now, Answered) {
				granted++
			}
		case 3:
			if granted > refunds && rng.IntN(4) == 0 {
				h.Refund(defaults)
				refunds++
			}
		}
	}
	if limit := 2 + 0.1*float64(deposits) + float64(refunds); float64(granted) > limit {
		t.Errorf("granted %d, more than the %v given", granted, limit)
	}
}

func TestClockGoingBackwardsCountsAsTheLatest(t *testing.T) {
	// Two hosts with the same history, then the same operations: one at
	// the latest time, the other at times before it.
	var hosts [2]*Host
	for i := range hosts {
		hosts[i] = newHost(defaults)
		steady(hosts[i], defaults, 0, time.Minute, time.Millisecond)
	}
	last := time.Minute - time.Millisecond
	hosts[0].Deposit(defaults, last)
	hosts[0].Withdraw(defaults, last, Answered)
	hosts[0].Record(defaults, last, false)
	hosts[1].Deposit(defaults, -time.Hour)
	hosts[1].Withdraw(defaults, time.Second, Answered)
	hosts[1].Record(defaults, 0, false)
	a, b := hosts[0].State(defaults, time.Minute), hosts[1].State(defaults, time.Minute)
	if a != b {
		t.Errorf("state %+v after operations in the past, want %+v", b, a)
	}
}

func TestRejectProbability(t *testing.T) {
	for _, tt := range []struct {
		requests, accepts float64
		k, min            float64
		want              float64
	}{
		{100, 100, 2, 0, 0},
		{100, 50, 2, 0, 0},
		{100, 40, 2, 0, 20.0 / 101},
		{100, 0, 2, 0, 0.9},
		{1, 0, 2, 0, 0.5},
		{9, 0, 2, 10, 0},
		{10, 0, 2, 10, 0.9},
		{100, 0, 0, 0, 0},
		{100, 0, -1, 0, 0},
		{100, 95, 1.0 / 0.95, 0, 0},
		{100, 90, 1.0 / 0.9, 0, 0},
		{100, 80, 1.0 / 0.9, 0, (100 - 80/0.9) / 101},
	} {
		got := RejectProbability(int64(tt.requests*Unit), int64(tt.accepts*Unit), tt.k, int64(tt.min*Unit))
		if math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("RejectProbability(%v, %v, K=%v, min %v) = %v, want %v", tt.requests, tt.accepts, tt.k, tt.min, got, tt.want)
		}
	}
}

// throttled runs one host's throttle at rate attempts per second for
// length, each attempt accepted if accept(now) says so, and returns the
// fraction rejected locally in each 100ms.
func throttled(c *Config, h *Host, rng *rand.Rand, start, length time.Duration, rate, k float64, accept func(time.Duration) bool) []float64 {
	gap := time.Duration(float64(time.Second) / rate)
	var out []float64
	var offered, rejected int
	step := 100 * time.Millisecond
	for now := start; now < start+length; now += gap {
		offered++
		if !h.Admit(c, now, k, rng.Float64) {
			rejected++
		} else {
			h.Record(c, now, accept(now))
		}
		if (now-start+gap)%step < gap {
			out = append(out, float64(rejected)/float64(offered))
			offered, rejected = 0, 0
		}
	}
	return out
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func TestThrottle(t *testing.T) {
	always := func(time.Duration) bool { return true }
	never := func(time.Duration) bool { return false }
	t.Run("healthy: never rejects", func(t *testing.T) {
		h := newHost(defaults)
		rng := rand.New(rand.NewPCG(1, 1))
		accept := func(time.Duration) bool { return rng.Float64() >= 0.02 }
		for i, f := range throttled(defaults, h, rng, 0, time.Minute, 100, 2, accept) {
			if f != 0 {
				t.Fatalf("step %d: rejected %.1f%%", i, 100*f)
			}
		}
	})
	t.Run("40% refused: under the threshold of K=2, rejects next to nothing", func(t *testing.T) {
		h := newHost(defaults)
		rng := rand.New(rand.NewPCG(1, 2))
		accept := func(time.Duration) bool { return rng.Float64() >= 0.4 }
		if m := mean(throttled(defaults, h, rng, 0, time.Minute, 100, 2, accept)); m > 0.02 {
			t.Errorf("rejected %.1f%% on average", 100*m)
		}
	})
	t.Run("outage: rejects 90% within a second, lets go within a second of its end", func(t *testing.T) {
		h := newHost(defaults)
		rng := rand.New(rand.NewPCG(1, 3))
		throttled(defaults, h, rng, 0, 10*time.Second, 1000, 2, always)
		fr := throttled(defaults, h, rng, 10*time.Second, 10*time.Second, 1000, 2, never)
		if m := mean(fr[10:]); m < 0.85 || m > 0.95 {
			t.Errorf("rejected %.0f%% after the outage's first second, want about 90%%", 100*m)
		}
		if s := h.State(defaults, 20*time.Second); s.Reject != MaxReject {
			t.Errorf("rejection probability at the outage's end %v, want the cap %v", s.Reject, MaxReject)
		}
		fr = throttled(defaults, h, rng, 20*time.Second, 5*time.Second, 1000, 2, always)
		t.Logf("rejected after the outage, per 100ms: %.2f", fr[:15])
		for i, f := range fr[10:] {
			if f != 0 {
				t.Errorf("step %d after the outage: rejected %.1f%%, want none", i+10, 100*f)
			}
		}
	})
	t.Run("quiet: fewer than 10 requests in the window are no evidence", func(t *testing.T) {
		h := newHost(defaults)
		rng := rand.New(rand.NewPCG(1, 4))
		if m := mean(throttled(defaults, h, rng, 0, time.Minute, 20, 2, never)); m != 0 {
			t.Errorf("rejected %.1f%% at 20 requests/s (5 in the window)", 100*m)
		}
	})
	t.Run("k 0: off", func(t *testing.T) {
		h := newHost(defaults)
		rng := rand.New(rand.NewPCG(1, 5))
		for _, f := range throttled(defaults, h, rng, 0, 10*time.Second, 100, 0, never) {
			if f != 0 {
				t.Fatal("throttling off rejected an attempt")
			}
		}
		s := h.State(defaults, 10*time.Second)
		if s.Reject != 0 || math.Abs(s.Requests-100) > 10 || s.Accepts != 0 {
			t.Errorf("state %+v, want 100 requests/s, no accepts, no rejection", s)
		}
	})
}

// The streaks: after its first accepted answer, a host is refused retries
// while its last two attempts in a row (three once its averages hold ten
// requests) got overload answers, until an attempt is accepted. A streak
// forfeits nothing. A host never seen to work spends its allowance.
func TestStreakClosesTheGate(t *testing.T) {
	t.Run("no baseline", func(t *testing.T) {
		h := newHost(defaults)
		for range 5 {
			h.Record(defaults, 0, false)
		}
		if got := drain(h, defaults, 0); got != 2 {
			t.Errorf("a host never seen to work granted %d retries, want its allowance, 2", got)
		}
	})
	t.Run("quiet", func(t *testing.T) {
		h := newHost(defaults)
		h.Record(defaults, 0, true)
		h.Record(defaults, time.Second, false)
		if h.Gated(defaults, time.Second, Answered) || !h.Withdraw(defaults, time.Second, Answered) {
			t.Fatal("one overload answer closed the gate")
		}
		h.Record(defaults, 2*time.Second, false)
		if !h.Gated(defaults, 2*time.Second, Answered) || h.Withdraw(defaults, 2*time.Second, Answered) {
			t.Fatal("two overload answers in a row left the gate open")
		}
		h.Record(defaults, 3*time.Second, true)
		if h.Gated(defaults, 3*time.Second, Answered) || !h.Withdraw(defaults, 3*time.Second, Answered) {
			t.Fatal("an accepted answer did not open the gate")
		}
	})
	t.Run("busy", func(t *testing.T) {
		h := newHost(defaults)
		steady(h, defaults, 0, time.Minute, time.Millisecond)
		now := time.Minute
		for range 100 { // a busy host, 2% of whose attempts fail
			h.Record(defaults, now, true)
		}
		before := h.State(defaults, now).Tokens
		h.Record(defaults, now, false)
		h.Record(defaults, now, false)
		if h.Gated(defaults, now, Answered) {
			t.Fatal("two overload answers in a row closed a busy host's gate")
		}
		h.Record(defaults, now, false)
		if !h.Gated(defaults, now, Answered) || h.Withdraw(defaults, now, Answered) {
			t.Fatal("three overload answers in a row left a busy host's gate open")
		}
		if after := h.State(defaults, now).Tokens; after != before {
			t.Errorf("a streak forfeited tokens: %v, then %v", before, after)
		}
		h.Record(defaults, now, true)
		if !h.Withdraw(defaults, now, Answered) {
			t.Error("an accepted answer did not open a busy host's gate")
		}
	})
}

// Hedges come in clusters: a host sending 100 requests a second, which
// hedges 5% of them at random, is refused almost none (with a pace floor
// of 2, about 2% were).
func TestPaceFloorLetsHedgesCluster(t *testing.T) {
	h := newHost(defaults)
	rng := rand.New(rand.NewPCG(5, 5))
	now, refused, asked := time.Duration(0), 0, 0
	for range 100_000 {
		now += time.Duration(rng.ExpFloat64() * float64(10*time.Millisecond))
		h.Deposit(defaults, now)
		h.Record(defaults, now, true)
		if rng.Float64() < 0.05 {
			asked++
			if !h.Withdraw(defaults, now, Answered) {
				refused++
			}
		}
	}
	if float64(refused) > 0.001*float64(asked) {
		t.Errorf("%d of %d hedges refused, want under 0.1%%", refused, asked)
	}
}

// The retry of an attempt timeout is refused unless nearly all (10 of 11)
// recent attempts were accepted; any other retry only while over half
// were not. Neither refusal forfeits tokens.
func TestTimeoutRetryNeedsAHealthyHost(t *testing.T) {
	for _, tt := range []struct {
		failPerHundred      int
		retry, timeoutRetry bool
	}{
		{2, true, true},
		{20, true, false},
		{60, false, false},
	} {
		h := newHost(defaults)
		steady(h, defaults, 0, time.Minute, time.Millisecond)
		now := time.Minute
		for i := range 300 { // failures spread evenly: no streak of three
			h.Record(defaults, now, i*tt.failPerHundred/100 == (i+1)*tt.failPerHundred/100)
		}
		if got := h.Gated(defaults, now, Answered); got == tt.retry {
			t.Errorf("%d%% overload answers: a retry gated %v, want %v", tt.failPerHundred, got, !tt.retry)
		}
		if got := h.Gated(defaults, now, TimedOut); got == tt.timeoutRetry {
			t.Errorf("%d%% overload answers: a timeout's retry gated %v, want %v", tt.failPerHundred, got, !tt.timeoutRetry)
		}
	}
}
