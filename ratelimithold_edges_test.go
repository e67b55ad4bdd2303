package saferetry

// Adversarial tests of the rate-limit hold (WithRateLimitHold) and of
// hedging against a host that answers 429.

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// WithRateLimitHold's doc: the state is "forgotten at the reset, or once
// the host has been idle 10 minutes: after that, a request goes out and
// learns it again" (hold.go: "A hold thus never silences a host for
// longer than MaxIdle on a stale announcement"). A client whose only host
// announced a reset an hour away (GitHub's resets are up to an hour) is
// still refused every request 11 minutes later: refused requests touch no
// host, so no sweep ever runs, and the host is never evicted.
func TestHoldForgottenAfterMaxIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &quotaBase{script: []scripted{exhausted(time.Hour)}}
		stack := New(base, WithRateLimitHold(true))
		learn(t, stack, http.StatusTooManyRequests)
		for _, after := range []time.Duration{time.Minute, 11 * time.Minute} {
			time.Sleep(after)
			req, _ := http.NewRequest(http.MethodGet, "http://api.test/later", nil)
			resp, err := stack.RoundTrip(req)
			if resp != nil {
				resp.Body.Close()
			}
			if after > 10*time.Minute && err != nil {
				t.Errorf("after %v idle: %v; want the request sent (the hold forgotten after 10 minutes idle)", after, err)
			}
			if after < 10*time.Minute && !errors.Is(err, ErrRateLimited) {
				t.Errorf("after %v: %v, want ErrRateLimited (an hour's hold is past the 60s cap)", after, err)
			}
		}
		if got := base.count(); got != 2 {
			t.Errorf("the host received %d requests, want 2 (the 429, then one after the hold was forgotten)", got)
		}
	})
}

// Resets that mean nothing hold nothing: one in the past, a negative or
// malformed one. A huge one refuses at once, unsent, with ErrRateLimited
// (a hold past the 60s cap), however huge: one so far away that the wait
// saturates must not wrap the budget's clock and be dropped while a
// smaller absurd one silences the host. Real time: nothing waits.
func TestHoldAbsurdResets(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reset func() string
		held  bool
	}{
		{"unix time in the past", func() string { return strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10) }, false},
		{"negative", func() string { return "-5" }, false},
		{"malformed", func() string { return "soon" }, false},
		{"zero", func() string { return "0" }, false},
		{"31 years in seconds", func() string { return "999999999" }, true},
		{"unix time in the year 2286", func() string { return "9999999999" }, true},
		{"saturates the wait", func() string { return "99999999999999999999" }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := &quotaBase{script: []scripted{{http.StatusTooManyRequests, http.Header{
				"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {tc.reset()},
			}}}}
			stack := New(base, WithRateLimitHold(true))
			learn(t, stack, http.StatusTooManyRequests)
			req, _ := http.NewRequest(http.MethodGet, "http://api.test/next", nil)
			resp, err := stack.RoundTrip(req)
			if resp != nil {
				resp.Body.Close()
			}
			switch {
			case tc.held && !errors.Is(err, ErrRateLimited):
				t.Errorf("got %v, want ErrRateLimited at once", err)
			case !tc.held && err != nil:
				t.Errorf("got %v, want the request sent", err)
			}
			want := 2
			if tc.held {
				want = 1
			}
			if got := base.count(); got != want {
				t.Errorf("the host received %d requests, want %d", got, want)
			}
		})
	}
}

// hedgeQuota is a base transport whose first attempt hangs until its
// context ends, and which answers every later one with a 429 saying the
// quota is gone for 30s (Retry-After: 30 too).
type hedgeQuota struct {
	n    atomic.Int64
	mu   sync.Mutex
	sent []time.Time
}

func (b *hedgeQuota) RoundTrip(r *http.Request) (*http.Response, error) {
	b.mu.Lock()
	b.sent = append(b.sent, time.Now())
	b.mu.Unlock()
	if b.n.Add(1) == 1 {
		<-r.Context().Done()
		return nil, r.Context().Err()
	}
	h := http.Header{"Retry-After": {"30"}, "X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {"30"}}
	return &http.Response{StatusCode: http.StatusTooManyRequests, Header: h, Body: http.NoBody, Request: r}, nil
}

// A hedged GET whose first hedge is answered 429 "come back in 30s" while
// the original is still in flight: settle sends the next hedge at once
// (gRPC A6's rule for failures), and the next, up to maxHedges, each
// meeting the same 429 within the same instant. The server's Retry-After
// is ignored, and with WithRateLimitHold(true) the hold that settle has
// just learnt is bypassed: exactly the requests "bound to be refused"
// that the hold promises not to send (GitHub may ban such clients). gRPC
// A6 has a server's pushback stop or delay hedging.
func TestHedgeStopsAfterA429(t *testing.T) {
	for _, hold := range []bool{false, true} {
		t.Run("hold="+strconv.FormatBool(hold), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base := &hedgeQuota{}
				stack := New(base, WithHedge(100*time.Millisecond, 5), WithRateLimitHold(hold))
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://api.test/x", nil)
				resp, err := stack.RoundTrip(req)
				if resp != nil {
					resp.Body.Close()
				}
				t.Logf("result: %v", err)
				base.mu.Lock()
				defer base.mu.Unlock()
				if len(base.sent) > 2 {
					t.Errorf("%d attempts sent, the last %v after the first 429 (Retry-After: 30, quota exhausted for 30s); want none within 30s of it",
						len(base.sent), base.sent[len(base.sent)-1].Sub(base.sent[1]))
				}
			})
		})
	}
}

// The hold over real HTTP/2 (lower-case header names on the wire, a Unix
// reset from the server's Date), through an http.Client: the error a
// request that cannot wait gets matches ErrRateLimited through url.Error,
// says why in saferetry's voice, and the request's body is closed once
// and nothing is sent.
func TestHoldOverHTTP2(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		now := time.Now()
		w.Header().Set("Date", now.UTC().Format(http.TimeFormat))
		w.Header().Set("x-ratelimit-remaining", "0")
		w.Header().Set("x-ratelimit-reset", strconv.FormatInt(now.Add(30*time.Second).Unix(), 10))
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	client := &http.Client{Transport: New(srv.Client().Transport, WithRateLimitHold(true), WithMaxRetries(0))}
	defer client.CloseIdleConnections()

	resp, err := client.Get(srv.URL + "/learn")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("got %s %d, want HTTP/2 429", resp.Proto, resp.StatusCode)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	body := &countedBody{Reader: strings.NewReader("payload")}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/write", body)
	_, err = client.Do(req)
	if !errors.Is(err, ErrRateLimited) {
		t.Fatalf("got %v, want ErrRateLimited", err)
	}
	var inner error = err
	for u := errors.Unwrap(inner); u != nil && u != ErrRateLimited; u = errors.Unwrap(inner) {
		inner = u
	}
	if msg := inner.Error(); !strings.HasPrefix(msg, "saferetry: ") || !strings.Contains(msg, "deadline") ||
		!strings.Contains(msg, strings.TrimPrefix(srv.URL, "https://")) {
		t.Errorf("message %q: want saferetry's prefix, the host and the deadline named", msg)
	}
	if errors.Is(err, ErrThrottled) || errors.Is(err, ErrBudgetExhausted) {
		t.Errorf("%v also matches another sentinel", err)
	}
	if body.Closes() != 1 {
		t.Errorf("the request body was closed %d times, want 1", body.Closes())
	}
	if got := requests.Load(); got != 1 {
		t.Errorf("the server received %d requests, want 1", got)
	}
}

// Per-request overrides: a stack that holds lets one request out with
// WithRateLimitHold(false); a stack that does not hold holds one request
// with WithRateLimitHold(true). With WithBudget(nil), the per-request
// hold is silently a no-op (New panics for the stack-wide option).
func TestHoldPerRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		send := func(stack http.RoundTripper, opts ...Option) error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if len(opts) > 0 {
				ctx = WithRequestOptions(ctx, opts...)
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://api.test/x", nil)
			resp, err := stack.RoundTrip(req)
			if resp != nil {
				resp.Body.Close()
			}
			return err
		}

		base := &quotaBase{script: []scripted{exhausted(30 * time.Second)}}
		holding := New(base, WithRateLimitHold(true))
		learn(t, holding, http.StatusTooManyRequests)
		if err := send(holding, WithRateLimitHold(false)); err != nil || base.count() != 2 {
			t.Errorf("hold off for one request: %v after %d sent, want it sent", err, base.count())
		}
		if err := send(holding); !errors.Is(err, ErrRateLimited) || base.count() != 2 {
			t.Errorf("the stack's hold: %v after %d sent, want ErrRateLimited, unsent", err, base.count())
		}

		base = &quotaBase{script: []scripted{exhausted(30 * time.Second)}}
		plain := New(base)
		learn(t, plain, http.StatusTooManyRequests)
		if err := send(plain, WithRateLimitHold(true)); !errors.Is(err, ErrRateLimited) || base.count() != 1 {
			t.Errorf("hold on for one request: %v after %d sent, want ErrRateLimited, unsent", err, base.count())
		}

		base = &quotaBase{script: []scripted{exhausted(30 * time.Second)}}
		noBudget := New(base, WithBudget(nil))
		learn(t, noBudget, http.StatusTooManyRequests)
		err := send(noBudget, WithRateLimitHold(true))
		t.Logf("WithBudget(nil), per-request WithRateLimitHold(true): %v, %d sent (silently not held)", err, base.count())
	})
}
