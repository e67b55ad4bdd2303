package saferetryotel

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/saferetry/saferetry"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// loopback is an httptest server answering the n-th request it receives
// with status(n), and recording each request's traceparent.
type loopback struct {
	*httptest.Server
	mu           sync.Mutex
	traceparents []string
}

func newLoopback(t *testing.T, status func(n int) int) *loopback {
	t.Helper()
	l := &loopback{}
	l.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		l.mu.Lock()
		l.traceparents = append(l.traceparents, r.Header.Get("Traceparent"))
		n := len(l.traceparents)
		l.mu.Unlock()
		w.WriteHeader(status(n))
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(l.Close)
	return l
}

func (l *loopback) seen() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.traceparents...)
}

// TestOTelHTTPOutside: with otelhttp outside the stack
// (otelhttp.NewTransport(saferetryotel.New(...))), otelhttp's client span
// is the logical request's, and every attempt span is its child, in its
// trace; the retry events are on otelhttp's span; each attempt sends its
// own span's trace context, not otelhttp's, as the semantic conventions
// ask of resends.
func TestOTelHTTPOutside(t *testing.T) {
	h := newHarness(t)
	srv := newLoopback(t, func(n int) int {
		if n < 3 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	base := cleanhttp.DefaultPooledTransport()
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: otelhttp.NewTransport(
		h.config().New(base, saferetry.WithBackoff(0, 0)),
		otelhttp.WithTracerProvider(h.tp), otelhttp.WithMeterProvider(h.mp),
		otelhttp.WithPropagators(propagation.TraceContext{}),
	)}

	resp, err := client.Get(srv.URL + "/things")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || saferetry.Attempts(resp) != 3 {
		t.Fatalf("status %d after %d attempts, want 200 after 3", resp.StatusCode, saferetry.Attempts(resp))
	}

	var outer []trace.SpanContext
	var outerEvents []string
	for _, s := range h.spans.GetSpans() {
		if s.InstrumentationScope.Name != scopeName && s.SpanKind == trace.SpanKindClient {
			outer = append(outer, s.SpanContext)
			outerEvents = describeEvents(s.Events)
		}
	}
	if len(outer) != 1 {
		t.Fatalf("%d otelhttp client spans, want 1", len(outer))
	}
	attempts := h.attemptSpans()
	equal(t, "attempt spans", describeSpans(attempts), []string{
		"GET status=503 error.type=503 Error",
		"GET resend=1 status=503 error.type=503 Error",
		"GET resend=2 status=200 Unset",
	})
	var want []string
	for _, s := range attempts {
		if s.Parent.SpanID() != outer[0].SpanID() || s.SpanContext.TraceID() != outer[0].TraceID() {
			t.Errorf("attempt span %q: parent %s in trace %s, want otelhttp's span %s in %s",
				describeSpan(s), s.Parent.SpanID(), s.SpanContext.TraceID(), outer[0].SpanID(), outer[0].TraceID())
		}
		want = append(want, fmt.Sprintf("00-%s-%s-01", s.SpanContext.TraceID(), s.SpanContext.SpanID()))
	}
	equal(t, "traceparent of each attempt", srv.seen(), want)
	equal(t, "events on otelhttp's span", outerEvents, []string{
		"retry attempt=1 http.response.status_code=503 retry.server_directed=false",
		"retry attempt=2 http.response.status_code=503 retry.server_directed=false",
	})
	if got := h.metrics()[metricAttempts]; len(got) != 1 || got[0].sum != 3 {
		t.Errorf("%s: %v, want one logical request of 3 attempts", metricAttempts, got)
	}
}

// TestNilBase: New(nil) sends through saferetry's default transport.
func TestNilBase(t *testing.T) {
	h := newHarness(t)
	srv := newLoopback(t, func(n int) int { return http.StatusOK })
	tr := h.config().New(nil)
	defer tr.CloseIdleConnections() // the shared default's: no goroutine may outlive the test
	resp, err, _ := h.do(tr, newRequest(t, context.Background(), http.MethodGet, srv.URL, nil))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%v, %v; want a 200", resp, err)
	}
	if spans := h.attemptSpans(); len(spans) != 1 {
		t.Errorf("%d attempt spans, want 1", len(spans))
	}
}
