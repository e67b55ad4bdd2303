package saferetry

// Adversarial tests of the retry gate's second look (a retry after a
// failure without a response is asked of the gate again when its wait
// ends), the streak gate and the stricter gate of a timeout's retry.

import (
	"errors"
	"io"
	"math/rand/v2"
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

// zeroPhaseBudget is a budget with the default parameters (or p) and no
// random phase, so that its token counts are exact.
func zeroPhaseBudget(p overload.Params) *Budget {
	b := new(Budget)
	b.once.Do(func() {
		b.init(overload.NewConfig(p))
		b.table.SetPhase(func() float64 { return 0 })
	})
	return b
}

func tokensOf(b *Budget, host string) float64 {
	for h, s := range b.Hosts() {
		if h == host {
			return s.RetryTokens
		}
	}
	return -1
}

func refusedErr() error {
	return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
}

// The after-wait refusal: /a's connection is refused, its retry is granted
// (streak 1 of 2) and its replay body obtained; during its 100ms wait /b's
// connection is refused too (streak 2), so /a's retry is refused when due.
// The replay body obtained before the wait is closed exactly once and never
// read, the caller's body is closed exactly once, the token comes back,
// the hook sees a planned retry then a budget stop for attempt 1, and the
// caller gets a RetryError (1 attempt, StopBudget) wrapping the refusal.
func TestGateRefusalAfterTheWaitReleasesEverything(t *testing.T) {
	t.Run("plain", func(t *testing.T) { testGateAfterWait(t) })
	t.Run("hedged", func(t *testing.T) { testGateAfterWait(t, WithHedge(5*time.Second, 2)) })
}

func testGateAfterWait(t *testing.T, opts ...Option) {
	synctest.Test(t, func(t *testing.T) {
		const host = "api.example"
		budget := zeroPhaseBudget(overload.Defaults(0.1))
		var sent sync.Map // path -> *atomic.Int64
		base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Body != nil {
				io.Copy(io.Discard, r.Body)
				r.Body.Close()
			}
			n, _ := sent.LoadOrStore(r.URL.Path, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
			if r.URL.Path == "/works" {
				return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
			}
			return nil, refusedErr()
		})
		var mu sync.Mutex
		var events []Event
		opts = append(opts, WithBudget(budget), WithJitter(NoJitter),
			WithHook(func(ev Event) { mu.Lock(); events = append(events, ev); mu.Unlock() }))
		stack := New(base, opts...)

		resp, err := stack.RoundTrip(mustRequest(t, http.MethodGet, "https://"+host+"/works", nil))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		before := tokensOf(budget, host)

		// /a: a PUT whose replays are counted.
		var replays []*testutil.TrackedBody
		var replayMu sync.Mutex
		callerBody := testutil.NewTrackedBody(strings.NewReader("payload"))
		reqA := mustRequest(t, http.MethodPut, "https://"+host+"/a", nil)
		reqA.Body = callerBody
		reqA.ContentLength = int64(len("payload"))
		reqA.GetBody = func() (io.ReadCloser, error) {
			b := testutil.NewTrackedBody(strings.NewReader("payload"))
			replayMu.Lock()
			replays = append(replays, b)
			replayMu.Unlock()
			return b, nil
		}
		errA := make(chan error, 1)
		go func() {
			_, err := stack.RoundTrip(reqA)
			errA <- err
		}()
		time.Sleep(50 * time.Millisecond) // /a is in its 100ms wait
		_, errB := stack.RoundTrip(mustRequest(t, http.MethodGet, "https://"+host+"/b", nil))
		err = <-errA
		synctest.Wait()

		var re *RetryError
		if !errors.As(err, &re) || re.Reason != StopBudget || re.Attempts != 1 ||
			!errors.Is(err, ErrBudgetExhausted) || !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("/a: got %v, want a RetryError after 1 attempt, stopped by the budget, wrapping ECONNREFUSED", err)
		}
		if !errors.Is(errB, ErrBudgetExhausted) {
			t.Errorf("/b: got %v, want its retry refused by the budget", errB)
		}
		if n, _ := sent.Load("/a"); n.(*atomic.Int64).Load() != 1 {
			t.Errorf("/a sent %d times, want 1", n.(*atomic.Int64).Load())
		}
		if got := callerBody.Closes(); got != 1 {
			t.Errorf("the caller's body was closed %d times, want 1", got)
		}
		replayMu.Lock()
		for i, b := range replays {
			if b.Closes() != 1 || b.BytesRead() != 0 {
				t.Errorf("replay %d: closed %d times, %d bytes read; want closed once, unread", i, b.Closes(), b.BytesRead())
			}
		}
		if len(replays) != 1 {
			t.Errorf("%d replays obtained, want 1 (obtained before the wait)", len(replays))
		}
		replayMu.Unlock()
		// Tokens: 2 at the start, +0.1 per deposit (capped at 2 when read),
		// -1 for /a's grant, refunded when the gate refused it when due.
		if after := tokensOf(budget, host); after < before-0.01 {
			t.Errorf("retry tokens %.2f after the refused retry, %.2f before: the grant was not refunded", after, before)
		}

		mu.Lock()
		defer mu.Unlock()
		var seq []StopReason
		for _, ev := range events {
			if ev.Request.URL.Path == "/a" {
				if ev.Attempt.Number != 1 {
					t.Errorf("/a event for attempt %d, want 1", ev.Attempt.Number)
				}
				seq = append(seq, ev.Stopped)
			}
		}
		if len(seq) != 2 || seq[0] != StopNone || seq[1] != StopBudget {
			t.Errorf("/a events %v, want [planned retry, budget stop]", seq)
		}
	})
}

func mustRequest(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// A quiet client that has seen its host work, talking to a rate-limited
// API: each 429 asks it to come back in a second. Two 429s in a row close
// the streak gate, so the retry the server itself asked for is refused
// (StopBudget), with two tokens in hand; and until a first attempt
// happens to be accepted, no later 429 is retried either. With the
// streaks off (Streak, BusyStreak 0), the same client retries both and
// gets its 200 after 3 attempts (checked).
func TestServerDirectedRetryIgnoresTheStreak(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host := &scriptedHost{}
		ra := http.Header{"Retry-After": {"1"}}
		base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			resp, err := host.RoundTrip(r)
			if err == nil && resp.StatusCode == http.StatusTooManyRequests {
				resp.Header = ra.Clone()
			}
			return resp, err
		})
		stack := New(base)
		get := func(path string) *http.Response {
			resp, err := stack.RoundTrip(mustRequest(t, http.MethodGet, "https://api.example"+path, nil))
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			resp.Body.Close()
			return resp
		}
		get("/works")
		time.Sleep(time.Minute)
		host.script = []int{429, 429}
		if resp := get("/limited"); resp.StatusCode != http.StatusOK || host.count("/limited") != 3 {
			t.Errorf("429 (Retry-After: 1), 429 (Retry-After: 1), 200: got %d after %d attempts, stopped %q; want 200 after 3",
				resp.StatusCode, host.count("/limited"), Stopped(resp))
		}
	})
}

// A busy, healthy host (50 requests a second, evenly spaced) on which 2%
// of attempts time out at random, independently: the retry of a timeout
// fails only if it times out too, so about 0.04% of requests should fail
// (DESIGN: with 2% random failures on a healthy upstream, >= 99.9% of
// requests still succeed). The stricter gate of a timeout's retry
// (TimeoutK 1.1) refuses it whenever another of the last ~11 attempts
// failed, which at this rate is about one time in five.
func TestTimeoutGateOnABusyHealthyHost(t *testing.T) {
	for _, tc := range []struct {
		name     string
		rate     int
		timeoutK float64
	}{
		{"50/s default", 50, 1.1}, {"50/s TimeoutK off", 50, 0},
		{"100/s default", 100, 1.1}, {"200/s default", 200, 1.1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := overload.Defaults(0.1)
			p.TimeoutK = tc.timeoutK
			failed, total := runRandomTimeouts(t, p, tc.rate, 10000*time.Second/time.Duration(tc.rate), 0.02)
			rate := float64(failed) / float64(total)
			t.Logf("%s: %d of %d requests failed (%.3f%%)", tc.name, failed, total, 100*rate)
			if rate > 0.001 {
				t.Errorf("%s: %.3f%% of requests failed, want at most 0.1%%", tc.name, 100*rate)
			}
		})
	}
}

// runRandomTimeouts sends rate requests a second for d through a stack
// with a 300ms attempt timeout to a host on which each attempt, with
// probability p, hangs; the others answer 200 after 5ms. It returns how
// many requests failed, of how many.
func runRandomTimeouts(t *testing.T, params overload.Params, rate int, d time.Duration, p float64) (failed, total int64) {
	synctest.Test(t, func(t *testing.T) {
		budget := zeroPhaseBudget(params) // in the bubble: its clock is the bubble's
		var mu sync.Mutex
		rng := rand.New(rand.NewPCG(1, 2))
		base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			hang := rng.Float64() < p
			mu.Unlock()
			if hang {
				<-r.Context().Done()
				return nil, r.Context().Err()
			}
			time.Sleep(5 * time.Millisecond)
			return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
		})
		stack := New(base, WithBudget(budget), WithAttemptTimeout(300*time.Millisecond))
		var wg sync.WaitGroup
		var nFailed, nTotal atomic.Int64
		gap := time.Second / time.Duration(rate)
		for start := time.Now(); time.Since(start) < d; time.Sleep(gap) {
			nTotal.Add(1)
			wg.Go(func() {
				resp, err := stack.RoundTrip(mustRequest(t, http.MethodGet, "https://api.example/", nil))
				if err != nil {
					nFailed.Add(1)
					return
				}
				resp.Body.Close()
			})
		}
		wg.Wait()
		failed, total = nFailed.Load(), nTotal.Load()
	})
	return failed, total
}
