package saferetryotel

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/saferetry/saferetry"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"
)

// TestResendCountWithoutAttemptHeader: resend counts come from the
// logical request's own counter, so they stay right when the stack's
// Retry-Attempt header is renamed or turned off.
func TestResendCountWithoutAttemptHeader(t *testing.T) {
	for _, tc := range []struct{ name, header string }{
		{"default", "Retry-Attempt"},
		{"renamed", "X-Try"},
		{"off", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			base := &script{answer: statuses(503, 502, 200)}
			var opts []saferetry.Option
			if tc.name != "default" {
				opts = append(opts, saferetry.WithAttemptHeader(tc.header))
			}
			tr := h.config().New(base, append(opts, saferetry.WithBackoff(0, 0))...)
			if _, err, _ := h.do(tr, newRequest(t, context.Background(), http.MethodGet, testURL, nil)); err != nil {
				t.Fatal(err)
			}
			equal(t, "attempt spans", describeSpans(h.attemptSpans()), []string{
				"GET status=503 error.type=503 Error",
				"GET resend=1 status=502 error.type=502 Error",
				"GET resend=2 status=200 Unset",
			})
			var sent []string
			for _, r := range base.requests() {
				if tc.header == "" {
					sent = append(sent, fmt.Sprint(len(r.Header.Values("Retry-Attempt"))))
				} else {
					sent = append(sent, r.Header.Get(tc.header))
				}
			}
			want := []string{"", "2", "3"}
			if tc.header == "" {
				want = []string{"0", "0", "0"}
			}
			equal(t, "attempt header sent", sent, want)
		})
	}
}

// TestRequestNotModified: the caller's request is the same after the
// call, though every attempt carried a traceparent.
func TestRequestNotModified(t *testing.T) {
	h := newHarness(t)
	base := &script{answer: statuses(503, 200)}
	tr := h.config().New(base, saferetry.WithBackoff(0, 0))
	ctx, parent := h.tp.Tracer("caller").Start(context.Background(), "caller")
	defer parent.End()
	req := newRequest(t, ctx, http.MethodPut, testURL, strings.NewReader("body"))
	req.Header.Set("X-Mine", "1")
	before := req.Clone(ctx)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !reflect.DeepEqual(req.Header, before.Header) || req.URL.String() != before.URL.String() ||
		req.Method != before.Method || req.Context() != ctx {
		t.Errorf("request modified: %v %v %v, was %v %v %v", req.Method, req.URL, req.Header, before.Method, before.URL, before.Header)
	}
	for i, r := range base.requests() {
		if r.Header.Get("Traceparent") == "" || r.Header.Get("X-Mine") != "1" {
			t.Errorf("attempt %d: headers %v, want the caller's and a traceparent", i+1, r.Header)
		}
	}
}

// TestBaseSeesAttemptSpan: the base's request context holds the attempt
// span, so instrumentation below (httptrace, otelhttp inside) nests
// under it.
func TestBaseSeesAttemptSpan(t *testing.T) {
	h := newHarness(t)
	var mu sync.Mutex
	var inBase []trace.SpanContext
	base := &script{answer: func(n int, req *http.Request) (*http.Response, error) {
		mu.Lock()
		inBase = append(inBase, trace.SpanContextFromContext(req.Context()))
		mu.Unlock()
		return statuses(503, 200)(n, req)
	}}
	tr := h.config().New(base, saferetry.WithBackoff(0, 0))
	h.do(tr, newRequest(t, context.Background(), http.MethodGet, testURL, nil))
	spans := h.attemptSpans()
	if len(spans) != 2 || len(inBase) != 2 {
		t.Fatalf("%d spans, %d attempts", len(spans), len(inBase))
	}
	for i := range spans {
		if !inBase[i].Equal(spans[i].SpanContext) {
			t.Errorf("attempt %d: base saw span %s, want %s", i+1, inBase[i].SpanID(), spans[i].SpanContext.SpanID())
		}
	}
}

// TestNoCallerSpan: without a span in the context, each attempt span is
// a trace of its own (as the conventions' examples show), the events have
// nowhere to go, and the metrics are recorded all the same.
func TestNoCallerSpan(t *testing.T) {
	h := newHarness(t)
	tr := h.config().New(&script{answer: statuses(503)}, saferetry.WithMaxRetries(1), saferetry.WithBackoff(0, 0))
	resp, err := tr.RoundTrip(newRequest(t, context.Background(), http.MethodGet, testURL, nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	spans := h.attemptSpans()
	if len(spans) != 2 || spans[0].Parent.IsValid() || spans[1].Parent.IsValid() ||
		spans[0].SpanContext.TraceID() == spans[1].SpanContext.TraceID() {
		t.Errorf("attempt spans %v, want two roots in two traces", describeSpans(spans))
	}
	checkCallMetrics(t, h.metrics(), metricAttrs("GET"), 2, 1, 0, []float64{0, 1e-9}, "max_retries")
}

// TestConfigHook: the hook in Config sees every event, after the
// telemetry counted it.
func TestConfigHook(t *testing.T) {
	h := newHarness(t)
	cfg := h.config()
	var got []string
	cfg.Hook = func(ev saferetry.Event) {
		got = append(got, fmt.Sprintf("attempt %d stopped=%v", ev.Number, ev.Stopped))
	}
	tr := cfg.New(&script{answer: statuses(503)}, saferetry.WithMaxRetries(1), saferetry.WithBackoff(0, 0))
	h.do(tr, newRequest(t, context.Background(), http.MethodGet, testURL, nil))
	equal(t, "hook calls", got, []string{"attempt 1 stopped=none", "attempt 2 stopped=max retries"})
	if n := len(h.span("caller").Events); n != 2 {
		t.Errorf("%d events on the caller's span, want 2: Config.Hook does not replace the telemetry's", n)
	}
}

// TestMethodAndServer: the conventions' rules for an unknown method (an
// _OTHER method, an HTTP span name, the original kept on the span only),
// the Host header, IPv6 literals and default ports.
func TestMethodAndServer(t *testing.T) {
	cases := []struct {
		method, url, host string
		wantName          string
		wantSpan, wantMet string // attributes of the span (method, server) and of the metrics
	}{
		{"PURGE", "https://api.test/x", "", "HTTP",
			"http.request.method=_OTHER http.request.method_original=PURGE server.address=api.test server.port=443",
			"http.request.method=_OTHER server.address=api.test server.port=443"},
		{"GET", "http://api.test/x", "", "GET",
			"http.request.method=GET server.address=api.test server.port=80",
			"http.request.method=GET server.address=api.test server.port=80"},
		{"GET", "http://[::1]:8080/x", "", "GET",
			"http.request.method=GET server.address=::1 server.port=8080",
			"http.request.method=GET server.address=::1 server.port=8080"},
		{"GET", "https://10.0.0.7/x", "api.test:8443", "GET",
			"http.request.method=GET server.address=api.test server.port=8443",
			"http.request.method=GET server.address=api.test server.port=8443"},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.url, func(t *testing.T) {
			h := newHarness(t)
			tr := h.config().New(&script{answer: statuses(200)})
			req := newRequest(t, context.Background(), tc.method, tc.url, nil)
			req.Host = tc.host
			h.do(tr, req)
			s := h.attemptSpans()[0]
			if s.Name != tc.wantName {
				t.Errorf("span name %q, want %q", s.Name, tc.wantName)
			}
			var got []string
			for _, kv := range s.Attributes {
				switch kv.Key {
				case keyMethod, keyMethodOriginal, keyServerAddress, keyServerPort:
					got = append(got, fmt.Sprintf("%s=%s", kv.Key, kv.Value.Emit()))
				}
			}
			if strings.Join(got, " ") != tc.wantSpan {
				t.Errorf("span attributes %q, want %q", strings.Join(got, " "), tc.wantSpan)
			}
			if pts := h.metrics()[metricAttempts]; len(pts) != 1 || pts[0].attrs != tc.wantMet {
				t.Errorf("metric attributes %v, want {%s}", pts, tc.wantMet)
			}
		})
	}
}

// TestErrorType: error.type names the failure by its type, never by its
// message.
func TestErrorType(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	cases := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("%w after 1s", saferetry.ErrAttemptTimeout), "attempt_timeout"},
		{context.DeadlineExceeded, "deadline_exceeded"},
		{&url.Error{Op: "Get", URL: "https://x.test/?token=SECRET", Err: context.Canceled}, "canceled"},
		{refused, "*net.OpError"},
		{&url.Error{Op: "Get", URL: "https://x.test/", Err: refused}, "*net.OpError"},
		{fmt.Errorf("wrapped: %w", x509.UnknownAuthorityError{}), "x509.UnknownAuthorityError"},
		{errors.New("something"), "_OTHER"},
	}
	for _, tc := range cases {
		if got := errorType(tc.err); got != tc.want {
			t.Errorf("errorType(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestConcurrentRequests: one Transport shared by many goroutines counts
// each logical request once, whatever its outcome (run with -race).
func TestConcurrentRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		base := &script{answer: func(n int, req *http.Request) (*http.Response, error) {
			if strings.HasSuffix(req.URL.Path, "/fail") {
				return answer(503, nil), nil
			}
			return answer(200, nil), nil
		}}
		tr := h.config().New(base, saferetry.WithMaxRetries(2), saferetry.WithHedge(1, 1), saferetry.WithBudget(nil))
		const each = 8
		var wg sync.WaitGroup
		for i := range 2 * each {
			path := "/ok"
			if i%2 == 0 {
				path = "/fail"
			}
			wg.Go(func() {
				resp, err := tr.RoundTrip(newRequest(t, context.Background(), http.MethodGet, "https://api.test"+path, nil))
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
			})
		}
		wg.Wait()
		m := h.metrics()
		if pts := m[metricAttempts]; len(pts) != 1 || pts[0].count != 2*each {
			t.Errorf("%s: %v, want %d logical requests", metricAttempts, pts, 2*each)
		}
		if pts := m[metricStops]; len(pts) != 1 || pts[0].sum != each {
			t.Errorf("%s: %v, want %d stops", metricStops, pts, each)
		}
		var sent int64
		for _, p := range m[metricAttempts] {
			sent += int64(p.sum)
		}
		if got := int64(len(base.requests())); got != sent {
			t.Errorf("attempts recorded %d, base saw %d", sent, got)
		}
	})
}

// TestObserveHosts: the gauges report each host's state at collection,
// with server attributes, and nothing once unregistered.
func TestObserveHosts(t *testing.T) {
	h := newHarness(t)
	states := map[string]hostState{
		"api.test:443":  {retryTokens: 12.5, rejectProbability: 0, requests: 40, accepts: 40},
		"slow.test":     {retryTokens: 0.25, rejectProbability: 0.6, requests: 10, accepts: 4},
		"[2001:db8::1]": {retryTokens: 3},
	}
	reg, err := h.config().observeHosts(func(yield func(string, hostState) bool) {
		for host, s := range states {
			if !yield(host, s) {
				return
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	m := h.metrics()
	want := map[string][]point{
		metricBudgetTokens: {
			{attrs: "server.address=2001:db8::1", sum: 3},
			{attrs: "server.address=api.test server.port=443", sum: 12.5},
			{attrs: "server.address=slow.test", sum: 0.25},
		},
		metricRejectProb: {
			{attrs: "server.address=2001:db8::1", sum: 0},
			{attrs: "server.address=api.test server.port=443", sum: 0},
			{attrs: "server.address=slow.test", sum: 0.6},
		},
		metricThrottleRequest: {
			{attrs: "server.address=2001:db8::1", sum: 0},
			{attrs: "server.address=api.test server.port=443", sum: 40},
			{attrs: "server.address=slow.test", sum: 10},
		},
		metricThrottleAccept: {
			{attrs: "server.address=2001:db8::1", sum: 0},
			{attrs: "server.address=api.test server.port=443", sum: 40},
			{attrs: "server.address=slow.test", sum: 4},
		},
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("gauges:\n got  %v\n want %v", m, want)
	}
	if err := reg.Unregister(); err != nil {
		t.Fatal(err)
	}
	if m := h.metrics(); len(m) != 0 {
		t.Errorf("after Unregister: %v, want nothing", m)
	}
}

// TestCloseIdleConnections reaches the base.
func TestCloseIdleConnections(t *testing.T) {
	base := &closeCounter{}
	New(base).CloseIdleConnections()
	if base.n != 1 {
		t.Errorf("base closed its idle connections %d times, want 1", base.n)
	}
}

type closeCounter struct {
	http.RoundTripper
	n int
}

func (c *closeCounter) CloseIdleConnections() { c.n++ }

// TestSplitHostPort: hosts as URLs and budgets key them.
func TestSplitHostPort(t *testing.T) {
	cases := []struct {
		in, scheme string
		host       string
		port       int
	}{
		{"api.test", "https", "api.test", 443},
		{"api.test", "http", "api.test", 80},
		{"api.test", "", "api.test", 0},
		{"api.test:8443", "https", "api.test", 8443},
		{"[::1]", "https", "::1", 443},
		{"[::1]:8080", "", "::1", 8080},
		{"::1", "", "::1", 0}, // a bare IPv6 address has no port
		{"api.test:http", "https", "api.test", 443},
		{"api.test:0", "", "api.test", 0},
		{"", "https", "", 443},
	}
	for _, tc := range cases {
		if host, port := splitHostPort(tc.in, tc.scheme); host != tc.host || port != tc.port {
			t.Errorf("splitHostPort(%q, %q) = %q, %d; want %q, %d", tc.in, tc.scheme, host, port, tc.host, tc.port)
		}
	}
}

// TestInstrumentTable: the instruments, their kinds and units, as the
// README lists them.
func TestInstrumentTable(t *testing.T) {
	h := newHarness(t)
	reg, err := h.config().observeHosts(func(yield func(string, hostState) bool) { yield("api.test", hostState{}) })
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Unregister()
	tr := h.config().New(&script{answer: statuses(503)}, saferetry.WithMaxRetries(1), saferetry.WithBackoff(0, 0), saferetry.WithHedge(time.Hour, 1))
	h.do(tr, newRequest(t, context.Background(), http.MethodGet, testURL, nil))
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			got[m.Name] = fmt.Sprintf("%T %s", m.Data, m.Unit)
		}
	}
	want := map[string]string{
		"saferetry.call.attempts":               "metricdata.Histogram[int64] {attempt}",
		"saferetry.call.retries":                "metricdata.Histogram[int64] {retry}",
		"saferetry.call.retry_delay":            "metricdata.Histogram[float64] s",
		"saferetry.call.stops":                  "metricdata.Sum[int64] {stop}",
		"saferetry.budget.retry_tokens":         "metricdata.Gauge[float64] {retry}",
		"saferetry.throttle.reject_probability": "metricdata.Gauge[float64] 1",
		"saferetry.throttle.request_rate":       "metricdata.Gauge[float64] {attempt}/s",
		"saferetry.throttle.accept_rate":        "metricdata.Gauge[float64] {attempt}/s",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("instruments:\n got  %v\n want %v", got, want)
	}
}

// TestUnreportedStop: the stops the hook does not report, read from the
// run's error.
func TestUnreportedStop(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		ctx  context.Context
		err  error
		want saferetry.StopReason
		ok   bool
	}{
		{context.Background(), &saferetry.RetryError{Attempts: 2, Reason: saferetry.StopDeadline}, saferetry.StopDeadline, true},
		{context.Background(), fmt.Errorf("wrapped: %w", &saferetry.RetryError{Reason: saferetry.StopCanceled}), saferetry.StopCanceled, true},
		{canceled, context.Canceled, saferetry.StopCanceled, true},
		{context.Background(), errors.New("dial tcp: refused"), saferetry.StopNone, false},
	}
	for _, tc := range cases {
		if got, ok := unreportedStop(tc.ctx, tc.err); got != tc.want || ok != tc.ok {
			t.Errorf("unreportedStop(%v) = %v, %v; want %v, %v", tc.err, got, ok, tc.want, tc.ok)
		}
	}
}

// TestCarrier: the propagation carrier keeps what it is given, past its
// array too, with keys canonical.
func TestCarrier(t *testing.T) {
	var c lazyHeader
	if !c.empty() || c.Get("traceparent") != "" || len(c.Keys()) != 0 {
		t.Fatal("a new carrier is not empty")
	}
	for i, k := range []string{"traceparent", "tracestate", "baggage", "x-b3-traceid", "x-b3-spanid"} {
		c.Set(k, fmt.Sprint(i))
	}
	c.Set("Tracestate", "again")
	h := http.Header{"Traceparent": {"old"}, "Other": {"kept"}}
	c.writeTo(h)
	want := http.Header{"Traceparent": {"0"}, "Tracestate": {"again"}, "Baggage": {"2"},
		"X-B3-Traceid": {"3"}, "X-B3-Spanid": {"4"}, "Other": {"kept"}}
	if !reflect.DeepEqual(h, want) || c.Get("X-B3-SPANID") != "4" || len(c.Keys()) != 5 {
		t.Errorf("header %v, keys %v; want %v", h, c.Keys(), want)
	}
}
