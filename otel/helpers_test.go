package saferetryotel

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// harness records what one test's transports emit: spans in an
// in-memory exporter (synchronously, no goroutine) and metrics through a
// manual reader.
type harness struct {
	t      *testing.T
	spans  *tracetest.InMemoryExporter
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, spans: tracetest.NewInMemoryExporter(), reader: sdkmetric.NewManualReader()}
	h.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(h.spans))
	h.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	t.Cleanup(func() {
		if err := h.tp.Shutdown(context.Background()); err != nil {
			t.Errorf("tracer provider shutdown: %v", err)
		}
		if err := h.mp.Shutdown(context.Background()); err != nil {
			t.Errorf("meter provider shutdown: %v", err)
		}
	})
	return h
}

// config returns a Config recording to the harness, propagating W3C
// trace context.
func (h *harness) config() Config {
	return Config{TracerProvider: h.tp, MeterProvider: h.mp, Propagator: propagation.TraceContext{}}
}

// do sends req with tr under a caller span, as application code would,
// and returns the outcome and the caller span's context. A response body
// is read and closed.
func (h *harness) do(tr http.RoundTripper, req *http.Request) (*http.Response, error, trace.SpanContext) {
	h.t.Helper()
	ctx, parent := h.tp.Tracer("caller").Start(req.Context(), "caller")
	resp, err := tr.RoundTrip(req.WithContext(ctx))
	if resp != nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	parent.End()
	return resp, err, parent.SpanContext()
}

// attemptSpans returns the ended spans of this package, in start order.
func (h *harness) attemptSpans() tracetest.SpanStubs {
	var out tracetest.SpanStubs
	for _, s := range h.spans.GetSpans() {
		if s.InstrumentationScope.Name == scopeName {
			out = append(out, s)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].StartTime.Before(out[j].StartTime) })
	return out
}

// span returns the ended span named name (the first, if several).
func (h *harness) span(name string) tracetest.SpanStub {
	h.t.Helper()
	for _, s := range h.spans.GetSpans() {
		if s.Name == name {
			return s
		}
	}
	h.t.Fatalf("no span named %q", name)
	return tracetest.SpanStub{}
}

// describeSpan is an attempt span in one line: its name, resend count,
// status code or error type, and span status.
func describeSpan(s tracetest.SpanStub) string {
	var b strings.Builder
	b.WriteString(s.Name)
	if v, ok := attr(s.Attributes, keyResendCount); ok {
		fmt.Fprintf(&b, " resend=%s", v.Emit())
	}
	if v, ok := attr(s.Attributes, keyStatusCode); ok {
		fmt.Fprintf(&b, " status=%s", v.Emit())
	}
	if v, ok := attr(s.Attributes, keyErrorType); ok {
		fmt.Fprintf(&b, " error.type=%s", v.Emit())
	}
	fmt.Fprintf(&b, " %s", s.Status.Code)
	return b.String()
}

func describeSpans(spans tracetest.SpanStubs) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = describeSpan(s)
	}
	return out
}

// describeEvents is the events of span in one line each: the name
// without its saferetry. prefix, then the attributes in key order, the
// delay left out (it may be jittered; tests check it apart).
func describeEvents(events []sdktrace.Event) []string {
	var out []string
	for _, ev := range events {
		var parts []string
		for _, kv := range ev.Attributes {
			if kv.Key == keyDelay {
				continue
			}
			parts = append(parts, fmt.Sprintf("%s=%s", strings.TrimPrefix(string(kv.Key), "saferetry."), kv.Value.Emit()))
		}
		sort.Strings(parts)
		out = append(out, strings.TrimPrefix(ev.Name, "saferetry.")+" "+strings.Join(parts, " "))
	}
	return out
}

func attr(kvs []attribute.KeyValue, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// point is one data point of a histogram, a counter or a gauge, with its
// attributes in one string.
type point struct {
	attrs string
	count uint64  // histograms: how many values were recorded
	sum   float64 // histograms: their sum; counters and gauges: the value
}

// metrics collects every data point of this package's instruments, by
// instrument name.
func (h *harness) metrics() map[string][]point {
	h.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		h.t.Fatal(err)
	}
	out := map[string][]point{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != scopeName {
			continue
		}
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Histogram[int64]:
				for _, dp := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{attrs: setString(dp.Attributes), count: dp.Count, sum: float64(dp.Sum)})
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{attrs: setString(dp.Attributes), count: dp.Count, sum: dp.Sum})
				}
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{attrs: setString(dp.Attributes), sum: float64(dp.Value)})
				}
			case metricdata.Gauge[float64]:
				for _, dp := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{attrs: setString(dp.Attributes), sum: dp.Value})
				}
			default:
				h.t.Fatalf("%s: unexpected data %T", m.Name, m.Data)
			}
		}
	}
	for _, pts := range out {
		slices.SortFunc(pts, func(a, b point) int { return strings.Compare(a.attrs, b.attrs) })
	}
	return out
}

func setString(s attribute.Set) string {
	var parts []string
	for _, kv := range s.ToSlice() {
		parts = append(parts, fmt.Sprintf("%s=%s", kv.Key, kv.Value.Emit()))
	}
	return strings.Join(parts, " ")
}

// script is a fake base transport: it answers the n-th attempt it
// receives (from 1) with answer(n, req), and keeps a copy of each
// request's headers. Safe for concurrent use (hedges).
type script struct {
	answer func(n int, req *http.Request) (*http.Response, error)

	mu   sync.Mutex
	seen []*http.Request
}

func (s *script) RoundTrip(req *http.Request) (*http.Response, error) {
	s.mu.Lock()
	s.seen = append(s.seen, req.Clone(req.Context()))
	n := len(s.seen)
	s.mu.Unlock()
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	resp, err := s.answer(n, req)
	if resp != nil {
		resp.Request = req
	}
	return resp, err
}

func (s *script) requests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seen)
}

// statuses answers attempt n with statuses[n-1], or the last one beyond.
func statuses(codes ...int) func(int, *http.Request) (*http.Response, error) {
	return func(n int, _ *http.Request) (*http.Response, error) {
		return answer(codes[min(n, len(codes))-1], nil), nil
	}
}

// answer is a response with the status and the header's pairs.
func answer(status int, header map[string]string) *http.Response {
	h := http.Header{}
	for k, v := range header {
		h.Set(k, v)
	}
	return &http.Response{
		StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(strings.NewReader("body")),
	}
}

func newRequest(t *testing.T, ctx context.Context, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func equal(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got  %q\n want %q", what, got, want)
	}
}
