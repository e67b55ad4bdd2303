package saferetry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/saferetry/saferetry/internal/testutil"
)

// slowFirst is a base whose attempts are scripted by number: each entry
// says how long the attempt takes to answer and with what status. An
// attempt whose context ends first returns the context's error.
type slowFirst struct {
	mu       sync.Mutex
	plan     []plannedAnswer
	sent     []*http.Request
	bodies   []string
	canceled atomic.Int32
}

type plannedAnswer struct {
	after  time.Duration
	status int
}

func (b *slowFirst) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body.Close()
	}
	b.mu.Lock()
	n := len(b.sent)
	b.sent = append(b.sent, r)
	b.bodies = append(b.bodies, string(body))
	p := plannedAnswer{status: http.StatusOK}
	if n < len(b.plan) {
		p = b.plan[n]
	}
	b.mu.Unlock()
	timer := time.NewTimer(p.after)
	defer timer.Stop()
	select {
	case <-timer.C:
		return &http.Response{StatusCode: p.status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("answer")), Request: r}, nil
	case <-r.Context().Done():
		b.canceled.Add(1)
		return nil, r.Context().Err()
	}
}

func (b *slowFirst) attempts() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sent)
}

func hedgedStack(base http.RoundTripper, opts ...Option) *Stack {
	return New(base, append([]Option{WithHedge(10*time.Millisecond, 2), WithBackoff(0, 0), WithBudget(nil)}, opts...)...)
}

func TestHedgeWinsOverASlowAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &slowFirst{plan: []plannedAnswer{{after: time.Second, status: 200}, {after: 2 * time.Millisecond, status: 200}}}
		var hedges int
		stack := hedgedStack(base, WithHook(func(ev Event) {
			if ev.Hedge {
				hedges++
			}
		}))
		start := time.Now()
		resp, err := stack.RoundTrip(get(t, "http://api.test/"))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != "answer" {
			t.Fatalf("body %q, %v", body, err)
		}
		if took := time.Since(start); took != 12*time.Millisecond {
			t.Fatalf("answered after %v; want the hedge's answer at 12ms", took)
		}
		if base.attempts() != 2 || hedges != 1 || Attempts(resp) != 2 || base.canceled.Load() != 1 {
			t.Fatalf("%d attempts, %d hedges reported, Attempts %d, %d canceled; want 2, 1, 2, 1",
				base.attempts(), hedges, Attempts(resp), base.canceled.Load())
		}
	})
}

func TestFastAnswerSendsNoHedge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &slowFirst{plan: []plannedAnswer{{after: 5 * time.Millisecond, status: 200}}}
		resp, err := hedgedStack(base).RoundTrip(get(t, "http://api.test/"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if base.attempts() != 1 || Attempts(resp) != 1 {
			t.Fatalf("%d attempts; want 1", base.attempts())
		}
	})
}

func TestHedgesOfAKeyedPostCarryTheSameKeyAndBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &slowFirst{plan: []plannedAnswer{{after: time.Second}, {after: time.Second}, {after: time.Millisecond, status: 201}}}
		req, _ := http.NewRequest(http.MethodPost, "http://api.test/charges", bytes.NewReader([]byte("amount=100")))
		resp, err := hedgedStack(base).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 201 || base.attempts() != 3 {
			t.Fatalf("status %d after %d attempts; want the third's 201", resp.StatusCode, base.attempts())
		}
		key := base.sent[0].Header.Get("Idempotency-Key")
		for i, r := range base.sent {
			if got := r.Header.Get("Idempotency-Key"); got == "" || got != key || base.bodies[i] != "amount=100" {
				t.Fatalf("attempt %d: key %q body %q; want key %q and the same body", i+1, got, base.bodies[i], key)
			}
		}
	})
}

func TestUnkeyedPostIsNotHedged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &slowFirst{plan: []plannedAnswer{{after: time.Second, status: 200}}}
		req, _ := http.NewRequest(http.MethodPost, "http://api.test/charges", strings.NewReader("amount=100"))
		resp, err := hedgedStack(base, WithKeyMethods()).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if base.attempts() != 1 {
			t.Fatalf("%d attempts; an unkeyed POST must not be hedged", base.attempts())
		}
	})
}

func TestExhaustedBudgetStopsHedgesButNotAttemptsInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &slowFirst{plan: []plannedAnswer{{after: time.Second, status: 200}}}
		empty := NewBudget(0)
		resp, err := hedgedStack(base, WithBudget(empty)).RoundTrip(get(t, "http://api.test/"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if base.attempts() != 1 || resp.StatusCode != 200 || base.canceled.Load() != 0 {
			t.Fatalf("%d attempts, status %d, %d canceled; want the first attempt's own answer", base.attempts(), resp.StatusCode, base.canceled.Load())
		}
	})
}

func TestFatalAnswerEndsTheHedging(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The first attempt is slow; the hedge gets a 400 at once: final,
		// so the first is canceled and no third attempt is sent.
		base := &slowFirst{plan: []plannedAnswer{{after: time.Second, status: 200}, {after: time.Millisecond, status: 400}}}
		resp, err := hedgedStack(base).RoundTrip(get(t, "http://api.test/"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 || base.attempts() != 2 || base.canceled.Load() != 1 {
			t.Fatalf("status %d after %d attempts, %d canceled", resp.StatusCode, base.attempts(), base.canceled.Load())
		}
	})
}

// A 409 answering a hedge of a keyed request means the original is still
// being processed: not a win, and no reason for another hedge.
func TestConflictOnAHedgeWaitsForTheOriginal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &slowFirst{plan: []plannedAnswer{{after: 50 * time.Millisecond, status: 201}, {after: time.Millisecond, status: 409}}}
		req, _ := http.NewRequest(http.MethodPost, "http://api.test/charges", bytes.NewReader([]byte("amount=100")))
		resp, err := New(base, WithHedge(10*time.Millisecond, 1), WithBudget(nil)).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 201 || base.attempts() != 2 {
			t.Fatalf("status %d after %d attempts; want the original's 201 after 2", resp.StatusCode, base.attempts())
		}
	})
}

// A failure while another attempt is in flight sends the next hedge at
// once, and when every attempt failed the run retries as usual.
func TestHedgingAfterFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &slowFirst{plan: []plannedAnswer{
			{after: 15 * time.Millisecond, status: 503}, // 1: fails at 15ms, the hedge in flight
			{after: 40 * time.Millisecond, status: 503}, // 2: the hedge at 10ms, fails at 50ms
			{after: 40 * time.Millisecond, status: 503}, // 3: sent at 15ms when 1 failed, not at 20ms; fails at 55ms
			{after: time.Millisecond, status: 200},      // 4: the retry once all failed, at 55ms
		}}
		start := time.Now()
		resp, err := hedgedStack(base).RoundTrip(get(t, "http://api.test/"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || base.attempts() != 4 || Attempts(resp) != 4 {
			t.Fatalf("status %d after %d attempts (Attempts %d)", resp.StatusCode, base.attempts(), Attempts(resp))
		}
		if took := time.Since(start); took != 56*time.Millisecond {
			t.Fatalf("took %v; want 56ms (the third failed at 55ms, the retry answered 1ms later)", took)
		}
	})
}

func TestCancelMidHedgeEndsEveryAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &slowFirst{plan: []plannedAnswer{{after: time.Hour}, {after: time.Hour}, {after: time.Hour}}}
		ctx, cancel := context.WithTimeout(context.Background(), 25*time.Millisecond)
		defer cancel()
		_, err := hedgedStack(base).RoundTrip(get(t, "http://api.test/").WithContext(ctx))
		var re *RetryError
		if !errors.As(err, &re) || re.Reason != StopCanceled || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v; want a RetryError for the deadline", err)
		}
		if base.attempts() != 3 || base.canceled.Load() != 3 {
			t.Fatalf("%d attempts, %d canceled; want all 3 canceled", base.attempts(), base.canceled.Load())
		}
	})
}

// The winner's context lives until its body is closed; a loser's ends as
// soon as the winner is chosen.
func TestHedgeWinnerBodyOutlivesTheRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pr, pw := io.Pipe()
		var ctxs []context.Context
		var mu sync.Mutex
		calls := 0
		base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			calls++
			n := calls
			ctxs = append(ctxs, r.Context())
			mu.Unlock()
			if n == 1 {
				<-r.Context().Done()
				return nil, r.Context().Err()
			}
			return &http.Response{StatusCode: 200, Body: pr, Request: r}, nil
		})
		resp, err := hedgedStack(base).RoundTrip(get(t, "http://api.test/"))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			time.Sleep(time.Minute) // a slow stream
			pw.Write([]byte("late"))
			pw.Close()
		}()
		if ctxs[0].Err() == nil || ctxs[1].Err() != nil {
			t.Fatal("want the loser's context ended and the winner's alive")
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || string(body) != "late" {
			t.Fatalf("read %q, %v", body, err)
		}
		resp.Body.Close()
		if ctxs[1].Err() == nil {
			t.Fatal("the winner's context outlived its body")
		}
	})
}

// End to end over HTTP/1.1 and HTTP/2: a slow first answer is beaten by a
// hedge; the server sees the same key and body, and deduplicates.
func TestHedgingOverTheNetwork(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		name := map[bool]string{false: "HTTP/1.1", true: "HTTP/2"}[h2]
		t.Run(name, func(t *testing.T) {
			var mu sync.Mutex
			applied := map[string]int{}
			release := make(chan struct{})
			var calls atomic.Int32
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				if calls.Add(1) == 1 {
					select { // the first attempt is slow until the test ends
					case <-release:
					case <-r.Context().Done():
						return
					}
				}
				mu.Lock()
				applied[r.Header.Get("Idempotency-Key")+" "+string(body)]++
				mu.Unlock()
				w.WriteHeader(http.StatusCreated)
			}))
			srv.EnableHTTP2 = h2
			if h2 {
				srv.StartTLS()
			} else {
				srv.Start()
			}
			defer srv.Close()
			defer close(release)
			stack := New(srv.Client().Transport, WithHedge(20*time.Millisecond, 1))
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/charges", bytes.NewReader([]byte("amount=100")))
			resp, err := stack.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if h2 != (resp.ProtoMajor == 2) {
				t.Fatalf("answered over %s", resp.Proto)
			}
			mu.Lock()
			defer mu.Unlock()
			if resp.StatusCode != 201 || len(applied) != 1 || Attempts(resp) != 2 {
				t.Fatalf("status %d, writes %v, Attempts %d; want one write, keyed, applied by the hedge", resp.StatusCode, applied, Attempts(resp))
			}
		})
	}
}

func TestWithHedgeRejectsBadValues(t *testing.T) {
	for _, tt := range []struct {
		delay time.Duration
		n     int
	}{{0, 1}, {time.Millisecond, 0}, {time.Millisecond, 6}} {
		func() {
			defer func() {
				if msg, _ := recover().(string); !strings.HasPrefix(msg, "saferetry: WithHedge(") {
					t.Errorf("WithHedge(%v, %d): panic %q", tt.delay, tt.n, msg)
				}
			}()
			WithHedge(tt.delay, tt.n)
		}()
	}
}

// WithHedgeQuantile hedges after a quantile of the host's recent times to
// response headers, once the host has enough history.
func TestHedgeOnAQuantileOfTheHostsLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		plan := make([]plannedAnswer, 0, 40)
		for range 30 {
			plan = append(plan, plannedAnswer{after: 2 * time.Millisecond, status: 200})
		}
		plan = append(plan, plannedAnswer{after: time.Hour, status: 200}, plannedAnswer{after: 2 * time.Millisecond, status: 200})
		base := &slowFirst{plan: plan}
		stack := New(base, WithHedgeQuantile(0.9, 1), WithBudget(nil))
		for i := range 30 {
			resp, err := stack.RoundTrip(get(t, "http://api.test/"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if i < 20 && base.attempts() != i+1 {
				t.Fatalf("hedged before the host had history")
			}
		}
		start := time.Now()
		resp, err := stack.RoundTrip(get(t, "http://api.test/"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		// The p90 of 2ms answers is reported as its bucket's upper
		// edge, within 25% above: the hedge went out between 2 and 2.5ms.
		took := time.Since(start)
		if Attempts(resp) != 2 || took < 4*time.Millisecond || took > 4500*time.Microsecond {
			t.Fatalf("Attempts %d after %v; want the hedge sent after about 2ms to answer", Attempts(resp), took)
		}
	})
}

// Before the host has history, the fixed delay of WithHedge applies, if
// given.
func TestHedgeQuantileFallsBackToTheFixedDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &slowFirst{plan: []plannedAnswer{{after: time.Hour}, {after: time.Millisecond, status: 200}}}
		stack := New(base, WithHedge(50*time.Millisecond, 1), WithHedgeQuantile(0.9, 1), WithBudget(nil))
		start := time.Now()
		resp, err := stack.RoundTrip(get(t, "http://api.test/"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if took := time.Since(start); took != 51*time.Millisecond {
			t.Fatalf("answered after %v; want the fixed delay's hedge at 51ms", took)
		}
	})
}
