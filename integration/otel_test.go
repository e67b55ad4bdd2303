package integration

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/saferetry/saferetry"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// traceRetries is the pattern the README documents for making saferetry's
// retries visible in a trace: a WithHook hook that adds an event to the
// span in the attempt's context. With otelhttp outside saferetry, that is
// the one client span of the logical request.
func traceRetries(ev saferetry.Event) {
	span := trace.SpanFromContext(ev.Request.Context())
	attrs := []attribute.KeyValue{attribute.Int("saferetry.attempt", ev.Number)}
	if ev.StatusCode() != 0 {
		attrs = append(attrs, attribute.Int("http.response.status_code", ev.StatusCode()))
	}
	if ev.Err != nil {
		attrs = append(attrs, attribute.String("error.type", fmt.Sprintf("%T", ev.Err)))
	}
	if ev.Stopped != saferetry.StopNone {
		attrs = append(attrs, attribute.String("saferetry.stopped", ev.Stopped.String()))
		span.AddEvent("saferetry.give_up", trace.WithAttributes(attrs...))
		return
	}
	attrs = append(attrs,
		attribute.Int64("saferetry.delay_ms", ev.Delay.Milliseconds()),
		attribute.Bool("saferetry.retry_after", ev.ServerDirected))
	span.AddEvent("saferetry.retry", trace.WithAttributes(attrs...))
}

// newTracing returns a tracer provider that records spans in memory,
// synchronously (no batching goroutine).
func newTracing(t *testing.T) (*sdktrace.TracerProvider, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() {
		if err := tp.Shutdown(context.Background()); err != nil {
			t.Errorf("tracer provider shutdown: %v", err)
		}
	})
	return tp, rec
}

func otelOptions(tp trace.TracerProvider) []otelhttp.Option {
	return []otelhttp.Option{
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithPropagators(propagation.TraceContext{}),
	}
}

// traceparent is the W3C header a span's context propagates as.
func traceparent(sc trace.SpanContext) string {
	return fmt.Sprintf("00-%s-%s-%s", sc.TraceID(), sc.SpanID(), sc.TraceFlags())
}

func intAttr(attrs []attribute.KeyValue, key string) (int64, bool) {
	for _, kv := range attrs {
		if string(kv.Key) == key {
			return kv.Value.AsInt64(), true
		}
	}
	return 0, false
}

func stringAttr(attrs []attribute.KeyValue, key string) string {
	for _, kv := range attrs {
		if string(kv.Key) == key {
			return kv.Value.AsString()
		}
	}
	return ""
}

// TestOTelOutsideSaferetry: otelhttp.NewTransport(saferetry.New(base))
// makes exactly one client span per logical request, with the final
// outcome's status, however many attempts saferetry made. The traceparent
// otelhttp injects is sent unchanged on every attempt, and the retries
// appear as events added to that span by the WithHook hook.
func TestOTelOutsideSaferetry(t *testing.T) {
	cases := []struct {
		name         string
		answer       answer
		opts         []saferetry.Option
		wantAttempts int
		wantStatus   int
		wantCode     codes.Code
		// wantEvents lists, per event, its name, attempt and (for a give
		// up) the stop reason.
		wantEvents []string
	}{
		{
			name:         "healed after two 503s",
			answer:       failFirst(3, http.StatusServiceUnavailable),
			wantAttempts: 3,
			wantStatus:   http.StatusOK,
			wantCode:     codes.Unset,
			wantEvents:   []string{"saferetry.retry 1", "saferetry.retry 2"},
		},
		{
			name:         "retries exhausted",
			answer:       always(http.StatusServiceUnavailable),
			opts:         []saferetry.Option{saferetry.WithMaxRetries(2)},
			wantAttempts: 3,
			wantStatus:   http.StatusServiceUnavailable,
			wantCode:     codes.Error,
			wantEvents:   []string{"saferetry.retry 1", "saferetry.retry 2", "saferetry.give_up 3 max retries"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tp, rec := newTracing(t)
			api := newFakeAPI(t, tc.answer)
			opts := append([]saferetry.Option{saferetry.WithHook(traceRetries)}, tc.opts...)
			client := &http.Client{Transport: otelhttp.NewTransport(newStack(t, newBase(t), opts...), otelOptions(tp)...)}

			ctx, parent := tp.Tracer("test").Start(context.Background(), "caller")
			resp, err := client.Do(mustRequest(t, ctx, http.MethodPost, api.URL+"/jobs", `{"job":1}`))
			if err != nil {
				t.Fatal(err)
			}
			drainClose(t, resp)
			parent.End()

			if got := saferetry.Attempts(resp); got != tc.wantAttempts {
				t.Errorf("saferetry.Attempts = %d, want %d (readable through otelhttp)", got, tc.wantAttempts)
			}
			spans := clientSpans(rec)
			if len(spans) != 1 {
				t.Fatalf("%d client spans, want 1 per logical request", len(spans))
			}
			span := spans[0]
			if span.Parent().SpanID() != parent.SpanContext().SpanID() {
				t.Errorf("client span's parent %s, want the caller's span %s", span.Parent().SpanID(), parent.SpanContext().SpanID())
			}
			if code, _ := intAttr(span.Attributes(), "http.response.status_code"); int(code) != tc.wantStatus {
				t.Errorf("span http.response.status_code = %d, want %d (the final attempt's)", code, tc.wantStatus)
			}
			if span.Status().Code != tc.wantCode {
				t.Errorf("span status %v, want %v", span.Status().Code, tc.wantCode)
			}
			var events []string
			for _, ev := range span.Events() {
				attempt, _ := intAttr(ev.Attributes, "saferetry.attempt")
				s := fmt.Sprintf("%s %d", ev.Name, attempt)
				if stop := stringAttr(ev.Attributes, "saferetry.stopped"); stop != "" {
					s += " " + stop
				}
				events = append(events, s)
				if status, _ := intAttr(ev.Attributes, "http.response.status_code"); status != http.StatusServiceUnavailable {
					t.Errorf("event %q: status %d, want 503", s, status)
				}
			}
			if strings.Join(events, ", ") != strings.Join(tc.wantEvents, ", ") {
				t.Errorf("span events %q, want %q", events, tc.wantEvents)
			}

			seen := api.requests()
			if len(seen) != tc.wantAttempts {
				t.Fatalf("API saw %d attempts, want %d", len(seen), tc.wantAttempts)
			}
			tpHeader := assertSameHeader(t, seen, "Traceparent")
			if want := traceparent(span.SpanContext()); tpHeader != want {
				t.Errorf("traceparent sent %q, want the client span's %q", tpHeader, want)
			}
			assertSameHeader(t, seen, "Idempotency-Key")
		})
	}
}

// TestOTelInsideSaferetry: saferetry.New(otelhttp.NewTransport(base))
// makes one client span per attempt, each with its own outcome. When the
// caller's context carries a span, every attempt's span is its child, in
// the same trace; without one, every attempt starts a trace of its own and
// nothing ties the attempts together.
func TestOTelInsideSaferetry(t *testing.T) {
	for _, withParent := range []bool{true, false} {
		t.Run(fmt.Sprintf("caller span %v", withParent), func(t *testing.T) {
			const attempts = 3
			tp, rec := newTracing(t)
			api := newFakeAPI(t, failFirst(attempts, http.StatusBadGateway))
			client := &http.Client{Transport: newStack(t, otelhttp.NewTransport(newBase(t), otelOptions(tp)...))}

			ctx := context.Background()
			var parent trace.Span
			if withParent {
				ctx, parent = tp.Tracer("test").Start(ctx, "caller")
			}
			resp, err := client.Do(mustRequest(t, ctx, http.MethodGet, api.URL+"/status", ""))
			if err != nil {
				t.Fatal(err)
			}
			drainClose(t, resp)
			if parent != nil {
				parent.End()
			}

			spans := clientSpans(rec)
			if len(spans) != attempts {
				t.Fatalf("%d client spans, want one per attempt (%d)", len(spans), attempts)
			}
			seen := api.requests()
			if len(seen) != attempts {
				t.Fatalf("API saw %d attempts, want %d", len(seen), attempts)
			}
			traces := map[trace.TraceID]bool{}
			for i, span := range spans {
				traces[span.SpanContext().TraceID()] = true
				wantStatus, wantCode := http.StatusBadGateway, codes.Error
				if i == attempts-1 {
					wantStatus, wantCode = http.StatusOK, codes.Unset
				}
				if code, _ := intAttr(span.Attributes(), "http.response.status_code"); int(code) != wantStatus || span.Status().Code != wantCode {
					t.Errorf("span %d: status code %d and span status %v, want %d and %v", i+1, code, span.Status().Code, wantStatus, wantCode)
				}
				if got, want := seen[i].Header.Get("Traceparent"), traceparent(span.SpanContext()); got != want {
					t.Errorf("attempt %d sent traceparent %q, want its own span's %q", i+1, got, want)
				}
				if withParent && span.Parent().SpanID() != parent.SpanContext().SpanID() {
					t.Errorf("span %d: parent %s, want the caller's span %s", i+1, span.Parent().SpanID(), parent.SpanContext().SpanID())
				}
			}
			switch {
			case withParent && (len(traces) != 1 || !traces[parent.SpanContext().TraceID()]):
				t.Errorf("attempt spans in traces %v, want all in the caller's trace %s", traces, parent.SpanContext().TraceID())
			case !withParent && len(traces) != attempts:
				t.Errorf("attempt spans in %d traces, want %d (one each, no common parent)", len(traces), attempts)
			}
		})
	}
}

// clientSpans returns the ended client spans, in the order they ended.
func clientSpans(rec *tracetest.SpanRecorder) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.SpanKind() == trace.SpanKindClient {
			out = append(out, s)
		}
	}
	return out
}

func mustRequest(t *testing.T, ctx context.Context, method, url, body string) *http.Request {
	t.Helper()
	var req *http.Request
	var err error
	if body == "" {
		req, err = http.NewRequestWithContext(ctx, method, url, nil)
	} else {
		req, err = http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	}
	if err != nil {
		t.Fatal(err)
	}
	return req
}
