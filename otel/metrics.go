package saferetryotel

import (
	"net/http"

	"github.com/saferetry/saferetry"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Instrument names. The semantic conventions name no metric for retries;
// these follow gRPC's A96 retry metrics (grpc.client.call.retries,
// .hedges, .retry_delay), the nearest standard, in saferetry's own
// namespace: the conventions advise against new names under a namespace
// they own (http.*), which they may later define differently.
const (
	metricAttempts   = "saferetry.call.attempts"
	metricRetries    = "saferetry.call.retries"
	metricHedges     = "saferetry.call.hedges"
	metricRetryDelay = "saferetry.call.retry_delay"
	metricStops      = "saferetry.call.stops"
)

// instruments are the per-logical-request instruments of one Transport.
type instruments struct {
	attempts metric.Int64Histogram
	retries  metric.Int64Histogram
	hedges   metric.Int64Histogram
	delay    metric.Float64Histogram
	stops    metric.Int64Counter
}

// newInstruments creates the instruments. An error (a provider refusing
// an instrument) goes to otel.Handle, and the instrument the provider
// returned is used all the same: the API guarantees a usable one.
func newInstruments(mp metric.MeterProvider) instruments {
	m := mp.Meter(scopeName)
	var in instruments
	var err error
	handle := func() {
		if err != nil {
			otel.Handle(err)
		}
	}
	in.attempts, err = m.Int64Histogram(metricAttempts, metric.WithUnit("{attempt}"),
		metric.WithDescription("Attempts sent for one logical request: the first, retries and hedges."),
		metric.WithExplicitBucketBoundaries(0, 1, 2, 3, 4, 5, 6, 8, 11))
	handle()
	in.retries, err = m.Int64Histogram(metricRetries, metric.WithUnit("{retry}"),
		metric.WithDescription("Retries sent for one logical request (hedges excluded); not recorded when there were none."),
		metric.WithExplicitBucketBoundaries(1, 2, 3, 4, 5))
	handle()
	in.hedges, err = m.Int64Histogram(metricHedges, metric.WithUnit("{hedge}"),
		metric.WithDescription("Hedges sent for one logical request; not recorded when there were none."),
		metric.WithExplicitBucketBoundaries(1, 2, 3, 4, 5))
	handle()
	in.delay, err = m.Float64Histogram(metricRetryDelay, metric.WithUnit("s"),
		metric.WithDescription("Total wait before the retries of one logical request, with no attempt in flight; recorded when the loop decided on a retry."),
		metric.WithExplicitBucketBoundaries(0, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
	handle()
	in.stops, err = m.Int64Counter(metricStops, metric.WithUnit("{call}"),
		metric.WithDescription("Logical requests handed back without the retry the loop wanted, by saferetry.stop.reason."))
	handle()
	return in
}

// record records a finished logical request. Its attributes are the
// request's method and server: low-cardinality, the URL never.
func (tel *telemetry) record(c *call, req *http.Request) {
	in := &tel.inst
	ctx := req.Context()
	m, _ := method(req)
	host, port := server(req)
	var buf [4]attribute.KeyValue
	kvs := serverAttrs(append(buf[:0], keyMethod.String(m)), host, port)
	set := attribute.NewSet(kvs...)
	attrs := metric.WithAttributeSet(set)

	attempts := int64(c.attempts.Load())
	in.attempts.Record(ctx, attempts, attrs)
	if retries := attempts - 1 - int64(c.hedges); retries > 0 {
		in.retries.Record(ctx, retries, attrs)
	}
	if c.hedges > 0 {
		in.hedges.Record(ctx, int64(c.hedges), attrs)
	}
	if c.retries > 0 {
		in.delay.Record(ctx, c.delay.Seconds(), attrs)
	}
	if c.stop != saferetry.StopNone {
		in.stops.Add(ctx, 1, metric.WithAttributes(append(kvs, keyStopReason.String(stopName(c.stop)))...))
	}
}
