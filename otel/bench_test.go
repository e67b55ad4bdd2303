package saferetryotel_test

// Benchmarks of the telemetry's cost per logical request, against the
// bare stack and against otelhttp's own cost on the same request, all in
// the same run:
//
//	go test -run '^$' -bench . -benchmem -count 6 > bench.txt
//	benchstat -col /transport bench.txt
//
// Besides ns/op, each reports cpu-ns/op, the process's CPU time per
// request (getrusage), which a machine shared with other work disturbs
// less than wall time; the test's loopback server is in both.
//
// Contenders (sub-benchmark transport=NAME):
//
//	bare                 the base transport alone
//	otelhttp             otelhttp.NewTransport(base): otelhttp's own cost
//	saferetry            saferetry.New(base)
//	otelhttp+saferetry   otelhttp.NewTransport(saferetry.New(base)): one span per logical request
//	saferetryotel        saferetryotel.New(base): a span per attempt, events, call metrics
//	saferetryotel-noop   the same with no-op providers (instrumented, nothing installed)
//	otelhttp+saferetryotel  both
//
// The providers are the SDK's, sampling every span, with a span
// processor that drops what it is given (an exporter's cost is the
// exporter's) and a manual metric reader (measurements are aggregated as
// recorded, never collected).

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/saferetry/saferetry"
	saferetryotel "github.com/saferetry/saferetry/otel"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// dropSpans is a span processor that does nothing with the spans.
type dropSpans struct{}

func (dropSpans) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (dropSpans) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (dropSpans) Shutdown(context.Context) error                  { return nil }
func (dropSpans) ForceFlush(context.Context) error                { return nil }

// providers returns SDK providers for one benchmark, shut down at its end.
func providers(b *testing.B) (*sdktrace.TracerProvider, *sdkmetric.MeterProvider) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(dropSpans{}))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	return tp, mp
}

type contender struct {
	name string
	rt   func(b *testing.B, base http.RoundTripper, opts ...saferetry.Option) http.RoundTripper
}

var contenders = []contender{
	{"bare", func(_ *testing.B, base http.RoundTripper, _ ...saferetry.Option) http.RoundTripper { return base }},
	{"otelhttp", func(b *testing.B, base http.RoundTripper, _ ...saferetry.Option) http.RoundTripper {
		tp, mp := providers(b)
		return otelhttp.NewTransport(base, otelhttp.WithTracerProvider(tp), otelhttp.WithMeterProvider(mp),
			otelhttp.WithPropagators(propagation.TraceContext{}))
	}},
	{"saferetry", func(_ *testing.B, base http.RoundTripper, opts ...saferetry.Option) http.RoundTripper {
		return saferetry.New(base, opts...)
	}},
	{"otelhttp+saferetry", func(b *testing.B, base http.RoundTripper, opts ...saferetry.Option) http.RoundTripper {
		tp, mp := providers(b)
		return otelhttp.NewTransport(saferetry.New(base, opts...), otelhttp.WithTracerProvider(tp),
			otelhttp.WithMeterProvider(mp), otelhttp.WithPropagators(propagation.TraceContext{}))
	}},
	{"saferetryotel", func(b *testing.B, base http.RoundTripper, opts ...saferetry.Option) http.RoundTripper {
		tp, mp := providers(b)
		return saferetryotel.Config{TracerProvider: tp, MeterProvider: mp, Propagator: propagation.TraceContext{}}.New(base, opts...)
	}},
	{"saferetryotel-noop", func(_ *testing.B, base http.RoundTripper, opts ...saferetry.Option) http.RoundTripper {
		return saferetryotel.Config{TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: metricnoop.NewMeterProvider(),
			Propagator: propagation.TraceContext{}}.New(base, opts...)
	}},
	{"otelhttp+saferetryotel", func(b *testing.B, base http.RoundTripper, opts ...saferetry.Option) http.RoundTripper {
		tp, mp := providers(b)
		return otelhttp.NewTransport(
			saferetryotel.Config{TracerProvider: tp, MeterProvider: mp, Propagator: propagation.TraceContext{}}.New(base, opts...),
			otelhttp.WithTracerProvider(tp), otelhttp.WithMeterProvider(mp), otelhttp.WithPropagators(propagation.TraceContext{}))
	}},
}

// inMemory answers the n-th request of each pair with 503 when failFirst
// is set, and every other with a 200 and no body, without a network, so
// that the figures are the layers' alone.
type inMemory struct {
	failFirst bool
	n         int
}

func (m *inMemory) RoundTrip(req *http.Request) (*http.Response, error) {
	m.n++
	status := http.StatusOK
	if m.failFirst && m.n%2 == 1 {
		status = http.StatusServiceUnavailable
	}
	return &http.Response{StatusCode: status, Header: http.Header{}, Body: http.NoBody, Request: req,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}, nil
}

func roundTrip(b *testing.B, rt http.RoundTripper, req *http.Request) {
	resp, err := rt.RoundTrip(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

// BenchmarkInMemory: a GET answered at once (ok) or after one 503 and an
// immediate retry (retry), by an in-memory base: what each layer costs
// per logical request, with nothing to hide it.
func BenchmarkInMemory(b *testing.B) {
	for _, scenario := range []struct {
		name      string
		failFirst bool
	}{{"ok", false}, {"retry", true}} {
		b.Run("request="+scenario.name, func(b *testing.B) {
			for _, c := range contenders {
				if scenario.failFirst && (c.name == "bare" || c.name == "otelhttp") {
					continue // nothing retries
				}
				b.Run("transport="+c.name, func(b *testing.B) {
					// No budget: it would (rightly) stop retrying every other request.
					rt := c.rt(b, &inMemory{failFirst: scenario.failFirst}, saferetry.WithBackoff(0, 0), saferetry.WithBudget(nil))
					req, err := http.NewRequest(http.MethodGet, "http://api.example/v1/things?page=2", nil)
					if err != nil {
						b.Fatal(err)
					}
					b.ReportAllocs()
					cpu := cpuTime()
					for b.Loop() {
						roundTrip(b, rt, req)
					}
					reportCPU(b, cpu)
				})
			}
		})
	}
}

// BenchmarkLoopback: a GET answered at once by an httptest server over a
// pooled keep-alive connection: the telemetry's cost next to a real
// round trip.
func BenchmarkLoopback(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	for _, c := range contenders {
		b.Run("transport="+c.name, func(b *testing.B) {
			base := cleanhttp.DefaultPooledTransport()
			defer base.CloseIdleConnections()
			rt := c.rt(b, base)
			req, err := http.NewRequest(http.MethodGet, srv.URL+"/v1/things?page=2", nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				roundTrip(b, rt, req)
			}
			reportCPU(b, cpu)
		})
	}
}

// cpuTime is the CPU time the process has used, user and system, GC
// included. On a machine other processes keep busy, the CPU time per
// request is steadier than the wall time, which counts the waits for a
// core too.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time per request since start as cpu-ns/op.
func reportCPU(b *testing.B, start time.Duration) {
	if b.N > 0 {
		b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
	}
}
