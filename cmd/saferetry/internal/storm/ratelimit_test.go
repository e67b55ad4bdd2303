package storm

import (
	"context"
	"net/http"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/saferetry/saferetry/internal/serverwait"
)

// epoch is where the tests put a run's time 0 on the wall clock: a whole
// second, as the simulated windows start on whole seconds.
var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// TestQuotaAnnouncesWhatServerwaitReads checks the simulated server
// against the library's own header parser: the wait take returns is the
// one internal/serverwait computes from the headers the modelled API
// sends (GitHub's for a fixed window, OpenAI's for a token bucket), and a
// 429's headers say the quota is exhausted.
func TestQuotaAnnouncesWhatServerwaitReads(t *testing.T) {
	t.Run("fixed window", func(t *testing.T) {
		q := rlQuota{q: Quota{Kind: FixedWindow, Limit: 3, Window: time.Minute}, offset: 17 * time.Second, window: -1}
		now := 90*time.Second + 250*time.Millisecond // window [43s, 103s)
		for i := range 4 {
			ok, rem, wait, short := q.take(now)
			if ok != (i < 3) || rem != max(2-i, 0) {
				t.Fatalf("request %d: ok %v, remaining %d; want %v, %d", i, ok, rem, i < 3, max(2-i, 0))
			}
			end := 103 * time.Second
			h := http.Header{}
			h.Set("Date", epoch.Add(now).Format(http.TimeFormat))
			h.Set("X-RateLimit-Remaining", strconv.Itoa(rem))
			h.Set("X-RateLimit-Reset", strconv.FormatInt(epoch.Add(end).Unix(), 10))
			hint := serverwait.Parse(h, epoch.Add(now))
			if rem == 0 && (!hint.Exhausted || hint.Wait != wait || short != wait) {
				t.Errorf("request %d: take says %v (short %v); serverwait reads %+v", i, wait, short, hint)
			}
			if want := end - 90*time.Second; wait != want {
				t.Errorf("request %d: wait %v, want %v (to the window's end, from Date's whole second)", i, wait, want)
			}
		}
		// The next window serves again.
		if ok, rem, _, _ := q.take(103 * time.Second); !ok || rem != 2 {
			t.Errorf("next window: ok %v, remaining %d; want true, 2", ok, rem)
		}
	})
	t.Run("token bucket", func(t *testing.T) {
		q := rlQuota{q: Quota{Kind: TokenBucket, Limit: 600, Window: time.Minute}, window: -1, tokens: 1}
		ok, _, _, _ := q.take(0)
		if !ok {
			t.Fatal("the last token was refused")
		}
		now := 30 * time.Millisecond // 0.3 of a token back
		ok, rem, wait, short := q.take(now)
		if ok || rem != 0 {
			t.Fatalf("ok %v, remaining %d; want a 429 with nothing left", ok, rem)
		}
		if short != 70*time.Millisecond || wait != 59970*time.Millisecond {
			t.Errorf("waits %v (to one token) and %v (to full), want 70ms and 59.97s", short, wait)
		}
		h := http.Header{}
		h.Set("Retry-After-Ms", strconv.FormatInt(short.Milliseconds(), 10))
		h.Set("X-Ratelimit-Remaining-Requests", "0")
		h.Set("X-Ratelimit-Reset-Requests", wait.String()) // Go-style, as OpenAI writes it
		hint := serverwait.Parse(h, epoch.Add(now))
		if !hint.Exhausted || hint.Wait != wait {
			t.Errorf("serverwait reads %+v, want exhausted and the longest wait, %v", hint, wait)
		}
		// Tokens come back at 10 a second.
		if ok, _, _, _ := q.take(now + 100*time.Millisecond); !ok {
			t.Error("no token 100ms later")
		}
	})
}

func testRateLimit() RateLimitParams {
	return RateLimitParams{
		Instances: 2, Quota: Quota{Kind: FixedWindow, Limit: 60, Window: 10 * time.Second},
		Base: 3, Surge: 12, SurgeStart: 20 * time.Second, SurgeEnd: 50 * time.Second, End: 90 * time.Second,
		Reject: 50 * time.Millisecond, Serve: 200 * time.Millisecond, Seed: 3,
	}
}

func TestSimulateRateLimitIsDeterministic(t *testing.T) {
	p := testRateLimit()
	var logical int64
	for i, v := range HoldVariants {
		a, err := SimulateRateLimit(v, p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := SimulateRateLimit(v, p)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: two runs with the same seed differ", v.Name)
		}
		if i == 0 {
			logical = a.Logical
		} else if a.Logical != logical {
			t.Errorf("%s: %d logical requests, %s had %d: the variants must see the same arrivals", v.Name, a.Logical, HoldVariants[0].Name, logical)
		}
	}
	p.Seed++
	other, _ := SimulateRateLimit(HoldVariants[0], p)
	if other.Logical == logical {
		t.Errorf("seeds %d and %d made the same %d arrivals", p.Seed-1, p.Seed, logical)
	}
}

// TestSimulateRateLimitAccounts checks every run of the default grid for
// the invariants of its counts.
func TestSimulateRateLimitAccounts(t *testing.T) {
	cells := RateLimitCells(1)
	res, err := RunRateLimit(t.Context(), cells, HoldVariants, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cells {
		for j, v := range HoldVariants {
			r := res[i][j]
			name := c.Name + "/" + v.Name
			sent := r.Logical - r.Refused // each sends exactly one first attempt
			switch {
			case r.Logical == 0:
				t.Errorf("%s: no requests", name)
			case r.Attempts != sent+r.Retries:
				t.Errorf("%s: %d attempts, want %d first attempts + %d retries", name, r.Attempts, sent, r.Retries)
			case r.Succeeded+r.Rejected != r.Attempts:
				t.Errorf("%s: %d successes and %d 429s of %d attempts", name, r.Succeeded, r.Rejected, r.Attempts)
			case r.Retries > r.Rejected:
				t.Errorf("%s: %d retries after %d 429s", name, r.Retries, r.Rejected)
			case v.Mode == HoldNone && (r.Held != 0 || r.Refused != 0):
				t.Errorf("%s: today's client held %d and refused %d", name, r.Held, r.Refused)
			}
			if d := c.Params.Deadline; d > 0 && r.Latency(1) > d+d/100 {
				t.Errorf("%s: a success took %v, past the %v deadline", name, r.Latency(1), d)
			}
			if limit := c.Params.maxRetryAfter(); r.HoldQuantile(1) > limit+limit/100 {
				t.Errorf("%s: a hold of %v, over the %v cap", name, r.HoldQuantile(1), limit)
			}
		}
	}
}

// TestRateLimitFindings pins the results STORM.md draws its conclusion
// from (seed 1): holding, with the refusal of holds past the deadline or
// the cap, receives fewer 429s at equal goodput under a fixed window;
// under a token bucket and on a host with two quotas it loses goodput.
func TestRateLimitFindings(t *testing.T) {
	cells := RateLimitCells(1)
	byName := map[string]RateLimitCell{}
	for _, c := range cells {
		byName[c.Name] = c
	}
	run := func(cell, variant string) *RateLimitResult {
		t.Helper()
		for _, v := range HoldVariants {
			if v.Name == variant {
				r, err := SimulateRateLimit(v, byName[cell].Params)
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
		}
		t.Fatalf("no variant %q", variant)
		return nil
	}
	for _, cell := range []string{"fw-2x-dl", "github", "shared-10-dl"} {
		today, hold := run(cell, "today"), run(cell, "hold+refuse")
		if hold.RejectedPer100() > today.RejectedPer100()/5 || hold.GoodputShare() < today.GoodputShare()-0.01 || hold.In10s() < today.In10s()-0.01 {
			t.Errorf("%s: 429s/100 %.1f -> %.1f, ok %.3f -> %.3f, in 10s %.3f -> %.3f; want a fifth of the 429s or fewer at equal goodput",
				cell, today.RejectedPer100(), hold.RejectedPer100(), today.GoodputShare(), hold.GoodputShare(), today.In10s(), hold.In10s())
		}
	}
	for _, cell := range []string{"tb-2x-dl", "two-quotas-dl"} {
		today, hold := run(cell, "today"), run(cell, "hold+refuse")
		if hold.GoodputShare() > today.GoodputShare()-0.05 {
			t.Errorf("%s: ok %.3f -> %.3f; want holding to lose more than 5 points", cell, today.GoodputShare(), hold.GoodputShare())
		}
	}
	// Without a deadline, held requests take the quota at the reset ahead
	// of new ones: more succeed in the end, fewer within 10s.
	today, hold := run("fw-2x", "today"), run("fw-2x", "hold+refuse")
	if hold.GoodputShare() <= today.GoodputShare() || hold.In10s() >= today.In10s()-0.05 {
		t.Errorf("fw-2x: ok %.3f -> %.3f, in 10s %.3f -> %.3f; want more in the end, 5 points fewer within 10s",
			today.GoodputShare(), hold.GoodputShare(), today.In10s(), hold.In10s())
	}
}

func TestRunRateLimitStopsWhenCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := RunRateLimit(ctx, RateLimitCells(1), HoldVariants, 2); err == nil {
		t.Error("a canceled run reported no error")
	}
}

func TestSimulateRateLimitRejectsBadParams(t *testing.T) {
	for name, f := range map[string]func(*RateLimitParams){
		"no instances":      func(p *RateLimitParams) { p.Instances = 0 },
		"no quota":          func(p *RateLimitParams) { p.Quota.Limit = 0 },
		"no demand":         func(p *RateLimitParams) { p.Base, p.Surge = 0, 0 },
		"surge reversed":    func(p *RateLimitParams) { p.SurgeEnd = p.SurgeStart - 1 },
		"no answer time":    func(p *RateLimitParams) { p.Reject = 0 },
		"other share of 1":  func(p *RateLimitParams) { p.OtherShare = 1 },
		"other quota unset": func(p *RateLimitParams) { p.OtherShare = 0.5 },
	} {
		p := testRateLimit()
		f(&p)
		if _, err := SimulateRateLimit(HoldVariants[0], p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
