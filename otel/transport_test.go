package saferetryotel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/saferetry/saferetry"
)

const testURL = "https://api.test/v1/things"

// metricAttrs is the attribute set of every per-call data point of a
// request to testURL with method m.
func metricAttrs(m string) string {
	return "http.request.method=" + m + " server.address=api.test server.port=443"
}

// withReason adds saferetry.stop.reason to attrs, in key order.
func withReason(attrs, reason string) string {
	method, server, _ := strings.Cut(attrs, " ")
	return method + " saferetry.stop.reason=" + reason + " " + server
}

// refusingBudget is a retry budget that grants no retry.
func refusingBudget() *saferetry.Budget {
	return saferetry.NewBudget(0)
}

// fixedBackoff makes backoff waits exact: 100ms, then 200ms, ...
var fixedBackoff = []saferetry.Option{saferetry.WithBackoff(100*time.Millisecond, time.Second), saferetry.WithJitter(saferetry.NoJitter)}

// TestOutcomes runs one logical request through the instrumented stack
// for every way the retry loop can end, and checks the attempt spans,
// the events on the caller's span and the metrics. Each runs in a
// synctest bubble, so backoff and Retry-After waits are exact and take
// no time.
func TestOutcomes(t *testing.T) {
	cases := []struct {
		name    string
		opts    []saferetry.Option
		hook    func(cancel context.CancelFunc) func(saferetry.Event) // Config.Hook
		answer  func(cancel context.CancelFunc) func(n int, req *http.Request) (*http.Response, error)
		method  string
		body    func() io.Reader
		timeout time.Duration

		wantStatus int    // the response's status; 0 for an error
		wantErr    string // saferetry.RetryError reason, or "raw" for the base's own error
		wantSpans  []string
		wantEvents []string
		// per-call metrics: attempts always; the others absent when zero
		wantAttempts, wantRetries, wantHedges int
		wantDelay                             []float64 // [min, max) of the recorded delay; nil: none
		wantStop                              string
	}{
		{
			name:         "success at once",
			answer:       func(context.CancelFunc) func(int, *http.Request) (*http.Response, error) { return statuses(200) },
			wantStatus:   200,
			wantSpans:    []string{"GET status=200 Unset"},
			wantAttempts: 1,
		},
		{
			name: "success after retries",
			opts: fixedBackoff,
			answer: func(context.CancelFunc) func(int, *http.Request) (*http.Response, error) {
				return func(n int, _ *http.Request) (*http.Response, error) {
					switch n {
					case 1:
						return answer(503, nil), nil
					case 2:
						return answer(503, map[string]string{"Retry-After": "1"}), nil
					}
					return answer(200, nil), nil
				}
			},
			wantStatus: 200,
			wantSpans: []string{
				"GET status=503 error.type=503 Error",
				"GET resend=1 status=503 error.type=503 Error",
				"GET resend=2 status=200 Unset",
			},
			wantEvents: []string{
				"retry attempt=1 http.response.status_code=503 retry.server_directed=false",
				"retry attempt=2 http.response.status_code=503 retry.server_directed=true",
			},
			wantAttempts: 3, wantRetries: 2,
			wantDelay: []float64{0.1 + 1, 0.1 + 1.1}, // backoff, then Retry-After plus up to 10% jitter
		},
		{
			name: "a hedge wins",
			opts: []saferetry.Option{saferetry.WithHedge(50*time.Millisecond, 1)},
			answer: func(context.CancelFunc) func(int, *http.Request) (*http.Response, error) {
				return func(n int, req *http.Request) (*http.Response, error) {
					if n == 1 { // hangs until the winner cancels it
						<-req.Context().Done()
						return nil, req.Context().Err()
					}
					return answer(200, nil), nil
				}
			},
			wantStatus: 200,
			wantSpans: []string{
				"GET error.type=canceled Error",
				"GET resend=1 status=200 Unset",
			},
			wantEvents:   []string{"hedge attempt=2"},
			wantAttempts: 2, wantHedges: 1,
		},
		{
			name:       "retries spent",
			opts:       append([]saferetry.Option{saferetry.WithMaxRetries(2)}, fixedBackoff...),
			answer:     func(context.CancelFunc) func(int, *http.Request) (*http.Response, error) { return statuses(503) },
			wantStatus: 503,
			wantSpans: []string{
				"GET status=503 error.type=503 Error",
				"GET resend=1 status=503 error.type=503 Error",
				"GET resend=2 status=503 error.type=503 Error",
			},
			wantEvents: []string{
				"retry attempt=1 http.response.status_code=503 retry.server_directed=false",
				"retry attempt=2 http.response.status_code=503 retry.server_directed=false",
				"stop attempt=3 http.response.status_code=503 stop.reason=max_retries",
			},
			wantAttempts: 3, wantRetries: 2,
			wantDelay: []float64{0.3, 0.3 + 1e-9},
			wantStop:  "max_retries",
		},
		{
			name:         "budget stop",
			opts:         []saferetry.Option{saferetry.WithBudget(refusingBudget())},
			answer:       func(context.CancelFunc) func(int, *http.Request) (*http.Response, error) { return statuses(503) },
			wantStatus:   503,
			wantSpans:    []string{"GET status=503 error.type=503 Error"},
			wantEvents:   []string{"stop attempt=1 http.response.status_code=503 stop.reason=budget"},
			wantAttempts: 1,
			wantStop:     "budget",
		},
		{
			name: "deadline stop",
			answer: func(context.CancelFunc) func(int, *http.Request) (*http.Response, error) {
				return func(int, *http.Request) (*http.Response, error) {
					return answer(503, map[string]string{"Retry-After": "5"}), nil
				}
			},
			timeout:      time.Second,
			wantStatus:   503,
			wantSpans:    []string{"GET status=503 error.type=503 Error"},
			wantEvents:   []string{"stop attempt=1 http.response.status_code=503 stop.reason=deadline"},
			wantAttempts: 1,
			wantStop:     "deadline",
		},
		{
			name: "Retry-After over the cap",
			opts: []saferetry.Option{saferetry.WithMaxRetryAfter(time.Minute)},
			answer: func(context.CancelFunc) func(int, *http.Request) (*http.Response, error) {
				return func(int, *http.Request) (*http.Response, error) {
					return answer(429, map[string]string{"Retry-After": "120"}), nil
				}
			},
			wantStatus:   429,
			wantSpans:    []string{"GET status=429 error.type=429 Error"},
			wantEvents:   []string{"stop attempt=1 http.response.status_code=429 stop.reason=retry_after_cap"},
			wantAttempts: 1,
			wantStop:     "retry_after_cap",
		},
		{
			name:         "body not replayable",
			opts:         []saferetry.Option{saferetry.WithMaxBodyBytes(0)},
			method:       http.MethodPost,
			body:         func() io.Reader { return io.MultiReader(strings.NewReader(`{"n":1}`)) }, // no GetBody
			answer:       func(context.CancelFunc) func(int, *http.Request) (*http.Response, error) { return statuses(503) },
			wantStatus:   503,
			wantSpans:    []string{"POST status=503 error.type=503 Error"},
			wantEvents:   []string{"stop attempt=1 http.response.status_code=503 stop.reason=body_not_replayable"},
			wantAttempts: 1,
			wantStop:     "body_not_replayable",
		},
		{
			name:         "not retryable",
			opts:         []saferetry.Option{saferetry.WithKeyMethods()}, // an unkeyed POST
			method:       http.MethodPost,
			body:         func() io.Reader { return strings.NewReader(`{"n":1}`) },
			answer:       func(context.CancelFunc) func(int, *http.Request) (*http.Response, error) { return statuses(500) },
			wantStatus:   500,
			wantSpans:    []string{"POST status=500 error.type=500 Error"},
			wantEvents:   []string{"stop attempt=1 http.response.status_code=500 stop.reason=not_retryable"},
			wantAttempts: 1,
			wantStop:     "not_retryable",
		},
		{
			name: "caller cancels during the wait",
			opts: fixedBackoff,
			hook: func(cancel context.CancelFunc) func(saferetry.Event) {
				return func(ev saferetry.Event) {
					if !ev.Hedge && ev.Stopped == saferetry.StopNone {
						cancel() // as the loop starts waiting
					}
				}
			},
			answer:     func(context.CancelFunc) func(int, *http.Request) (*http.Response, error) { return statuses(503) },
			wantErr:    "canceled",
			wantSpans:  []string{"GET status=503 error.type=503 Error"},
			wantEvents: []string{"retry attempt=1 http.response.status_code=503 retry.server_directed=false", "stop attempt=1 error.type=canceled stop.reason=canceled"},
			// The wait the loop decided on is counted, though cut short.
			wantAttempts: 1, wantDelay: []float64{0.1, 0.1 + 1e-9},
			wantStop: "canceled",
		},
		{
			name: "caller cancels the first attempt",
			answer: func(cancel context.CancelFunc) func(int, *http.Request) (*http.Response, error) {
				return func(_ int, req *http.Request) (*http.Response, error) {
					cancel()
					return nil, req.Context().Err()
				}
			},
			wantErr:      "raw",
			wantSpans:    []string{"GET error.type=canceled Error"},
			wantEvents:   []string{"stop attempt=1 error.type=canceled stop.reason=canceled"},
			wantAttempts: 1,
			wantStop:     "canceled",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				if tc.timeout > 0 {
					ctx, cancel = context.WithTimeout(ctx, tc.timeout)
					defer cancel()
				}
				cfg := h.config()
				if tc.hook != nil {
					cfg.Hook = tc.hook(cancel)
				}
				base := &script{answer: tc.answer(cancel)}
				tr := cfg.New(base, tc.opts...)
				m := tc.method
				if m == "" {
					m = http.MethodGet
				}
				var body io.Reader
				if tc.body != nil {
					body = tc.body()
				}
				resp, err, caller := h.do(tr, newRequest(t, ctx, m, testURL, body))

				switch {
				case tc.wantStatus != 0 && err != nil:
					t.Fatalf("error %v, want a %d", err, tc.wantStatus)
				case tc.wantStatus != 0 && resp.StatusCode != tc.wantStatus:
					t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
				case tc.wantErr == "raw" && (err == nil || errors.As(err, new(*saferetry.RetryError))):
					t.Fatalf("error %v, want the base's own", err)
				case tc.wantErr != "" && tc.wantErr != "raw":
					var re *saferetry.RetryError
					if !errors.As(err, &re) || stopName(re.Reason) != tc.wantErr {
						t.Fatalf("error %v, want a RetryError for %s", err, tc.wantErr)
					}
				}
				if resp != nil {
					if got := saferetry.Attempts(resp); got != tc.wantAttempts {
						t.Errorf("saferetry.Attempts = %d through the instrumented stack, want %d", got, tc.wantAttempts)
					}
				}

				spans := h.attemptSpans()
				equal(t, "attempt spans", describeSpans(spans), tc.wantSpans)
				seen := base.requests()
				if len(seen) != len(spans) {
					t.Fatalf("base saw %d attempts, %d spans", len(seen), len(spans))
				}
				for _, s := range spans {
					if s.Parent.SpanID() != caller.SpanID() || s.SpanContext.TraceID() != caller.TraceID() {
						t.Errorf("span %q: parent %s in trace %s, want the caller's span %s in %s",
							describeSpan(s), s.Parent.SpanID(), s.SpanContext.TraceID(), caller.SpanID(), caller.TraceID())
					}
				}
				// Each attempt carries its own span's trace context; the
				// base saw the attempts in the order the spans started,
				// except a hedge, which may overtake: match by span id.
				sent := map[string]bool{}
				for _, r := range seen {
					sent[r.Header.Get("Traceparent")] = true
				}
				for _, s := range spans {
					want := fmt.Sprintf("00-%s-%s-01", s.SpanContext.TraceID(), s.SpanContext.SpanID())
					if !sent[want] {
						t.Errorf("no attempt sent traceparent %s of span %q", want, describeSpan(s))
					}
				}

				equal(t, "events on the caller's span", describeEvents(h.span("caller").Events), tc.wantEvents)

				checkCallMetrics(t, h.metrics(), metricAttrs(m), tc.wantAttempts, tc.wantRetries, tc.wantHedges, tc.wantDelay, tc.wantStop)
			})
		})
	}
}

// checkCallMetrics checks the per-call instruments after one logical
// request: one data point each, zero-valued ones absent.
func checkCallMetrics(t *testing.T, got map[string][]point, attrs string, attempts, retries, hedges int, delay []float64, stop string) {
	t.Helper()
	hist := func(name string, want int) {
		t.Helper()
		pts := got[name]
		if want == 0 {
			if len(pts) != 0 {
				t.Errorf("%s: %v, want nothing recorded", name, pts)
			}
			return
		}
		if len(pts) != 1 || pts[0].count != 1 || pts[0].sum != float64(want) || pts[0].attrs != attrs {
			t.Errorf("%s: %v, want one value %d with {%s}", name, pts, want, attrs)
		}
	}
	hist(metricAttempts, attempts)
	hist(metricRetries, retries)
	hist(metricHedges, hedges)
	pts := got[metricRetryDelay]
	switch {
	case delay == nil && len(pts) != 0:
		t.Errorf("%s: %v, want nothing recorded", metricRetryDelay, pts)
	case delay != nil && (len(pts) != 1 || pts[0].count != 1 || pts[0].attrs != attrs ||
		pts[0].sum < delay[0]-1e-9 || pts[0].sum >= delay[1]):
		t.Errorf("%s: %v, want one value in [%g, %g) s with {%s}", metricRetryDelay, pts, delay[0], delay[1], attrs)
	}
	stops := got[metricStops]
	switch {
	case stop == "" && len(stops) != 0:
		t.Errorf("%s: %v, want none", metricStops, stops)
	case stop != "" && (len(stops) != 1 || stops[0].sum != 1 || stops[0].attrs != withReason(attrs, stop)):
		t.Errorf("%s: %v, want 1 with {%s}", metricStops, stops, withReason(attrs, stop))
	}
}

// TestRetryDelayEvents: a retry event says how long the loop will wait,
// in seconds, and whether the server chose it.
func TestRetryDelayEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		base := &script{answer: func(n int, _ *http.Request) (*http.Response, error) {
			if n == 1 {
				return answer(429, map[string]string{"Retry-After": "3"}), nil
			}
			if n == 2 {
				return answer(503, nil), nil
			}
			return answer(200, nil), nil
		}}
		tr := h.config().New(base, fixedBackoff...)
		if _, err, _ := h.do(tr, newRequest(t, context.Background(), http.MethodGet, testURL, nil)); err != nil {
			t.Fatal(err)
		}
		events := h.span("caller").Events
		if len(events) != 2 {
			t.Fatalf("%d events, want 2 retries", len(events))
		}
		for i, want := range []struct {
			min, max       float64
			serverDirected bool
		}{{3, 3.3, true}, {0.1, 0.1 + 1e-9, false}} {
			delay, _ := attr(events[i].Attributes, keyDelay)
			sd, _ := attr(events[i].Attributes, keyServerDirected)
			if d := delay.AsFloat64(); d < want.min || d >= want.max || math.IsNaN(d) || sd.AsBool() != want.serverDirected {
				t.Errorf("retry %d: delay %v s, server-directed %v; want [%g, %g) s, %v", i+1, d, sd.AsBool(), want.min, want.max, want.serverDirected)
			}
		}
	})
}
