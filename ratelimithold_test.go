package saferetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/saferetry/saferetry/internal/testutil"
)

// quotaBase is a base transport that plays a rate-limited server: it
// answers each request with the next status and headers of its script
// (200 once the script is spent), and records when each arrived.
type quotaBase struct {
	mu     sync.Mutex
	script []scripted
	sent   []time.Time
	paths  []string
}

type scripted struct {
	status int
	header http.Header
}

// exhausted is a 429 saying the quota is used up for reset more: GitHub's
// headers, with the reset in seconds as many others send it.
func exhausted(reset time.Duration) scripted {
	return scripted{http.StatusTooManyRequests, http.Header{
		"X-Ratelimit-Remaining": {"0"},
		"X-Ratelimit-Reset":     {strconv.Itoa(int(reset / time.Second))},
	}}
}

func (b *quotaBase) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sent = append(b.sent, time.Now())
	b.paths = append(b.paths, r.URL.Path)
	answer := scripted{status: http.StatusOK, header: http.Header{}}
	if len(b.script) > 0 {
		answer, b.script = b.script[0], b.script[1:]
	}
	return &http.Response{StatusCode: answer.status, Header: answer.header.Clone(), Body: http.NoBody, Request: r}, nil
}

func (b *quotaBase) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sent)
}

func (b *quotaBase) sentAt(i int) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sent[i]
}

// learn sends one request that the base answers with its first scripted
// answer, without retrying it, so that the stack learns the host's quota.
func learn(t *testing.T, stack http.RoundTripper, status int) {
	t.Helper()
	learnFrom(t, stack, "http://api.test", status)
}

func learnFrom(t *testing.T, stack http.RoundTripper, origin string, status int) {
	t.Helper()
	ctx := WithRequestOptions(context.Background(), WithMaxRetries(0))
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, origin+"/learn", nil)
	resp, err := stack.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d", resp.StatusCode, status)
	}
}

// countedBody is a request body that counts its Close calls.
type countedBody struct {
	io.Reader
	testutil.CloseCounter
}

// heldOutcome is what a request sent in the background got.
type heldOutcome struct {
	resp *http.Response
	err  error
	at   time.Time
}

func goSend(stack http.RoundTripper, req *http.Request) <-chan heldOutcome {
	done := make(chan heldOutcome, 1)
	go func() {
		resp, err := stack.RoundTrip(req)
		if resp != nil {
			resp.Body.Close()
		}
		done <- heldOutcome{resp, err, time.Now()}
	}()
	return done
}

// A request to a host that said its quota is gone for 30s is held, sends
// nothing until the reset, then goes out once and succeeds.
func TestRateLimitHoldWaitsForTheReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &quotaBase{script: []scripted{exhausted(30 * time.Second)}}
		stack := New(base, WithRateLimitHold(true))
		learn(t, stack, http.StatusTooManyRequests)
		reset := base.sentAt(0).Add(30 * time.Second)

		time.Sleep(time.Second)
		start := time.Now()
		done := goSend(stack, get(t, "http://api.test/held"))
		time.Sleep(time.Until(reset) - time.Nanosecond)
		synctest.Wait()
		if n := base.count(); n != 1 {
			t.Fatalf("%d requests reached the server before the reset, want only the one that learnt it", n)
		}
		o := <-done
		if o.err != nil || o.resp.StatusCode != http.StatusOK || Attempts(o.resp) != 1 {
			t.Fatalf("err %v, resp %v; want a 200 on its first attempt", o.err, o.resp)
		}
		sent := base.sentAt(1)
		// Held until the reset, plus at most 10% of the 29s hold.
		if sent.Before(reset) || sent.After(reset.Add(2900*time.Millisecond)) {
			t.Errorf("sent %v after the 429; want 30s to 32.9s", sent.Sub(base.sentAt(0)))
		}
		if base.count() != 2 || o.at.Sub(start) != sent.Sub(start) {
			t.Errorf("%d requests, answered %v after sent", base.count(), o.at.Sub(sent))
		}
	})
}

// A hold that would end past the request's deadline, or last longer than
// the cap on server-directed waits, is not started: the request fails at
// once with ErrRateLimited, its body closed, and nothing is sent.
func TestRateLimitHoldRefusesWhatCannotWait(t *testing.T) {
	tests := []struct {
		name     string
		reset    time.Duration
		deadline time.Duration // 0: none
		opts     []Option
		want     string // in the error; "" when the request is held and sent
	}{
		{"a deadline before the reset", 30 * time.Second, 10 * time.Second, nil, "past the request's deadline"},
		{"a deadline that leaves an attempt under 100ms", 30 * time.Second, 30*time.Second + 50*time.Millisecond, nil, "past the request's deadline"},
		{"a deadline after the reset", 30 * time.Second, 31 * time.Second, nil, ""},
		{"a reset over the 60s cap", 2 * time.Minute, 0, nil, "past the 1m0s cap on server-directed waits"},
		{"a reset within a raised cap", 2 * time.Minute, 0, []Option{WithMaxRetryAfter(3 * time.Minute)}, ""},
		// A hold lasts at most 10 minutes (the host's idle limit): then a
		// request goes out and learns the rest.
		{"an hour away, GitHub's window", time.Hour, 0, nil, "for 10m0s more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base := &quotaBase{script: []scripted{exhausted(tt.reset)}}
				stack := New(base, append([]Option{WithRateLimitHold(true)}, tt.opts...)...)
				learn(t, stack, http.StatusTooManyRequests)
				ctx := context.Background()
				if tt.deadline > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.deadline)
					defer cancel()
				}
				body := &countedBody{Reader: strings.NewReader("payload")}
				req, _ := http.NewRequestWithContext(ctx, http.MethodPut, "http://api.test/put", body)
				start := time.Now()
				resp, err := stack.RoundTrip(req)
				if tt.want == "" {
					if err != nil || resp.StatusCode != http.StatusOK || base.count() != 2 {
						t.Fatalf("err %v after %d requests; want the held request sent and answered", err, base.count())
					}
					resp.Body.Close()
					if waited := time.Since(start); waited < tt.reset {
						t.Errorf("sent after %v, before the reset", waited)
					}
					return
				}
				if !errors.Is(err, ErrRateLimited) || resp != nil {
					t.Fatalf("resp %v, err %v; want ErrRateLimited", resp, err)
				}
				if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "saferetry: api.test announced") {
					t.Errorf("error %q, want it to say %q", err, tt.want)
				}
				if waited := time.Since(start); waited != 0 {
					t.Errorf("failed after %v, want at once", waited)
				}
				if n := base.count(); n != 1 {
					t.Errorf("%d requests reached the server, want only the one that learnt the quota", n)
				}
				if body.Closes() != 1 {
					t.Errorf("the body was closed %d times, want once", body.Closes())
				}
			})
		})
	}
}

// The caller gives up during the hold: the request returns the context's
// cause at once, and nothing is sent, then or later.
func TestRateLimitHoldCanceled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &quotaBase{script: []scripted{exhausted(30 * time.Second)}}
		stack := New(base, WithRateLimitHold(true))
		learn(t, stack, http.StatusTooManyRequests)
		ctx, cancel := context.WithCancelCause(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://api.test/", nil)
		start := time.Now()
		done := goSend(stack, req)
		time.Sleep(5 * time.Second)
		cause := errors.New("the user left")
		cancel(cause)
		o := <-done
		if !errors.Is(o.err, cause) || o.resp != nil {
			t.Fatalf("resp %v, err %v; want the cancellation's cause", o.resp, o.err)
		}
		if took := o.at.Sub(start); took != 5*time.Second {
			t.Errorf("returned %v after the start, want at the cancellation, 5s", took)
		}
		time.Sleep(time.Minute)
		if n := base.count(); n != 1 {
			t.Errorf("%d requests reached the server, want 1", n)
		}
	})
}

// A held request looks again when it wakes: a later reset announced
// meanwhile holds it on, as long as its whole hold stays within the cap.
func TestRateLimitHoldLooksAgainAtTheReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &quotaBase{script: []scripted{exhausted(30 * time.Second), exhausted(50 * time.Second)}}
		stack := New(base, WithRateLimitHold(true))
		learn(t, stack, http.StatusTooManyRequests) // exhausted until 30s
		t0 := base.sentAt(0)

		time.Sleep(time.Second)
		done := goSend(stack, get(t, "http://api.test/held"))
		time.Sleep(9 * time.Second)
		// At 10s, a request that does not hold learns that the quota is
		// gone until 60s.
		ctx := WithRequestOptions(context.Background(), WithRateLimitHold(false), WithMaxRetries(0))
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://api.test/probe", nil)
		resp, err := stack.RoundTrip(req)
		if err != nil || resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("probe: %v, %v", resp, err)
		}
		o := <-done
		if o.err != nil || o.resp.StatusCode != http.StatusOK {
			t.Fatalf("held request: %v, %v", o.resp, o.err)
		}
		// Its whole hold is capped at 60s from its start, 1s.
		if sent := base.sentAt(2).Sub(t0); sent < 60*time.Second || sent > 61*time.Second {
			t.Errorf("the held request was sent at %v, want 60s to 61s", sent)
		}
	})
}

// Which answers make a host held: a 429 or a 403 that says the quota is
// exhausted until a reset, in any of the forms servers use. A
// Retry-After alone answers one request and holds no other; a 503 is not
// a quota; a success with nothing left is not learnt from (the
// simulations found it made no difference, and reading every response's
// headers would cost every request).
func TestRateLimitHoldLearnsFrom(t *testing.T) {
	github := func() http.Header {
		return http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {strconv.FormatInt(time.Now().Add(30*time.Second).Unix(), 10)}}
	}
	tests := []struct {
		name   string
		status int
		header func() http.Header
		held   bool
	}{
		{"429 with X-RateLimit-Remaining 0 and a reset", 429, func() http.Header { return exhausted(30 * time.Second).header }, true},
		{"GitHub's rate-limit 403, a Unix time", 403, github, true},
		{"429 with the IETF RateLimit r=0", 429, func() http.Header { return http.Header{"Ratelimit": {`"default";r=0;t=30`}} }, true},
		{"429 with OpenAI's headers", 429, func() http.Header {
			return http.Header{"X-Ratelimit-Remaining-Requests": {"0"}, "X-Ratelimit-Reset-Requests": {"30s"}, "Retry-After-Ms": {"200"}}
		}, true},
		{"429 with Retry-After only", 429, func() http.Header { return http.Header{"Retry-After": {"30"}} }, false},
		{"403 with quota left", 403, func() http.Header { return http.Header{"X-Ratelimit-Remaining": {"12"}} }, false},
		{"503 with an exhausted quota", 503, func() http.Header { return exhausted(30 * time.Second).header }, false},
		{"200 with nothing left", 200, func() http.Header { return exhausted(30 * time.Second).header }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				time.Sleep(time.Until(time.Unix(1_700_000_000, 0))) // GitHub's resets are Unix times
				base := &quotaBase{script: []scripted{{tt.status, tt.header()}}}
				stack := New(base, WithRateLimitHold(true))
				learn(t, stack, tt.status)
				done := goSend(stack, get(t, "http://api.test/next"))
				synctest.Wait()
				if held := base.count() == 1; held != tt.held {
					t.Errorf("held %v, want %v", held, tt.held)
				}
				<-done
			})
		})
	}
}

// The hold is off by default; a request can turn it on or off for itself.
// The stack learns the quota either way.
func TestRateLimitHoldOnAndOff(t *testing.T) {
	tests := []struct {
		name        string
		stack, next []Option
		held        bool
	}{
		{"off by default", nil, nil, false},
		{"on for the stack", []Option{WithRateLimitHold(true)}, nil, true},
		{"off for one request", []Option{WithRateLimitHold(true)}, []Option{WithRateLimitHold(false)}, false},
		{"on for one request", nil, []Option{WithRateLimitHold(true)}, true},
		{"hedged requests learn and are held", []Option{WithRateLimitHold(true), WithHedge(time.Second, 1)}, nil, true},
		{"another host is not held", []Option{WithRateLimitHold(true)}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base := &quotaBase{script: []scripted{exhausted(30 * time.Second)}}
				stack := New(base, tt.stack...)
				learn(t, stack, http.StatusTooManyRequests)
				url := "http://api.test/next"
				if strings.HasPrefix(tt.name, "another host") {
					url = "http://other.test/next"
				}
				req, _ := http.NewRequestWithContext(WithRequestOptions(context.Background(), tt.next...), http.MethodGet, url, nil)
				done := goSend(stack, req)
				synctest.Wait()
				if held := base.count() == 1; held != tt.held {
					t.Errorf("held %v, want %v", held, tt.held)
				}
				if o := <-done; o.err != nil {
					t.Fatal(o.err)
				}
			})
		})
	}
}

func TestRateLimitHoldNeedsABudget(t *testing.T) {
	for _, opts := range [][]Option{
		{WithRateLimitHold(true), WithBudget(nil)},
		{WithBudget(nil), WithRateLimitHold(true)},
	} {
		func() {
			defer func() {
				msg := fmt.Sprint(recover())
				if !strings.Contains(msg, "WithRateLimitHold(true)") || !strings.Contains(msg, "WithBudget(nil)") {
					t.Errorf("panic %q, want one naming both options", msg)
				}
			}()
			New(nil, opts...)
		}()
	}
	New(nil, WithRateLimitHold(false), WithBudget(nil)) // off: nothing to keep
}

// Against real servers over HTTP/1.1 and HTTP/2: a request held until an
// OpenAI-style reset is then sent once and succeeds; one whose deadline
// comes before the reset fails at once, the server never seeing it.
func TestRateLimitHoldOverLoopback(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			var mu sync.Mutex
			var paths []string
			reset := "300ms"
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				paths = append(paths, r.URL.Path)
				n := len(paths)
				mu.Unlock()
				if h2 != (r.ProtoMajor == 2) {
					t.Errorf("request over %s", r.Proto)
				}
				if n == 1 || r.URL.Path == "/again" {
					w.Header().Set("X-Ratelimit-Remaining-Requests", "0")
					w.Header().Set("X-Ratelimit-Reset-Requests", reset)
					w.WriteHeader(http.StatusTooManyRequests)
					return
				}
				io.WriteString(w, "ok")
			}))
			srv.EnableHTTP2 = h2
			srv.StartTLS()
			defer srv.Close()
			stack := New(srv.Client().Transport, WithRateLimitHold(true))
			defer stack.CloseIdleConnections()
			served := func() []string {
				mu.Lock()
				defer mu.Unlock()
				return append([]string(nil), paths...)
			}

			learnFrom(t, stack, srv.URL, http.StatusTooManyRequests)
			learnt := time.Now()
			resp, err := stack.RoundTrip(get(t, srv.URL+"/held"))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "ok" {
				t.Fatalf("status %d, body %q", resp.StatusCode, body)
			}
			if waited := time.Since(learnt); waited < 300*time.Millisecond {
				t.Errorf("answered %v after the 429, before the 300ms reset", waited)
			}
			if got := served(); len(got) != 2 || got[1] != "/held" {
				t.Fatalf("the server saw %v, want /learn then /held once", got)
			}

			// Another 429 says the quota is gone for a minute; a request
			// with a second left fails at once.
			mu.Lock()
			reset = "1m0s"
			mu.Unlock()
			ctx := WithRequestOptions(context.Background(), WithMaxRetries(0))
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/again", nil)
			if resp, err := stack.RoundTrip(req); err != nil || resp.StatusCode != 429 {
				t.Fatalf("%v, %v", resp, err)
			} else {
				resp.Body.Close()
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			req, _ = http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/refused", nil)
			resp, err = stack.RoundTrip(req)
			if !errors.Is(err, ErrRateLimited) || resp != nil {
				t.Fatalf("resp %v, err %v; want ErrRateLimited", resp, err)
			}
			if got := served(); len(got) != 3 {
				t.Errorf("the server saw %v; want nothing after /again", got)
			}
		})
	}
}

// A stack that holds costs a request to a host without a hold no
// allocation: a lookup and an atomic load, the clock unread. Counted for
// the host the request goes to, and for a request to another host while
// one host is held (its lookup then misses the last-host cache).
func TestRateLimitHoldAllocatesNothing(t *testing.T) {
	base := &http.Transport{}
	base.RegisterProtocol("bench", inMemoryServer{})
	count := func(rt http.RoundTripper, url string) float64 {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		return testing.AllocsPerRun(200, func() {
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		})
	}
	bare := count(base, "bench://api.example/v1/things")
	stack := New(base, WithRateLimitHold(true))
	if got := count(stack, "bench://api.example/v1/things"); got != bare {
		t.Errorf("a GET through a stack that holds allocates %v times, the base alone %v", got, bare)
	}
	stack.retries.Budget.exhaust("held.example", time.Hour)
	stack.retries.Budget.deposit("third.example") // the last host looked up is neither
	if got := count(stack, "bench://api.example/v1/things"); got != bare {
		t.Errorf("with another host held: %v allocations, the base alone %v", got, bare)
	}
}

// BenchmarkRateLimitHold measures what the hold costs a request to a host
// without a hold, in memory (see BenchmarkOverhead): off (the default),
// and on.
func BenchmarkRateLimitHold(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("hold=%v", on), func(b *testing.B) {
			base := &http.Transport{}
			base.RegisterProtocol("bench", inMemoryServer{})
			rt := New(base, WithRateLimitHold(on))
			req := newBenchRequest(b, http.MethodGet, "bench://api.example/v1/things", nil)
			b.ReportAllocs()
			for b.Loop() {
				roundTrip(b, rt, req)
			}
		})
	}
}
