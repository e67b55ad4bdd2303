package saferetryotel

import (
	"context"
	"sync"

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
	in.stops, err = m.Int64Counter(metricStops, metric.WithUnit("{stop}"),
		metric.WithDescription("Logical requests handed back without the retry the loop wanted, by saferetry.stop.reason."))
	handle()
	return in
}

// enabled reports whether any instrument would record: with a no-op
// provider none does, and nothing needs computing.
func (in *instruments) enabled(ctx context.Context) bool {
	return in.attempts.Enabled(ctx) || in.retries.Enabled(ctx) || in.hedges.Enabled(ctx) ||
		in.delay.Enabled(ctx) || in.stops.Enabled(ctx)
}

// record records a finished logical request. Its attributes are the
// request's method and server: low-cardinality, the URL never.
func (tel *telemetry) record(ctx context.Context, c *call) {
	in := &tel.inst
	if !in.enabled(ctx) {
		return
	}
	attrs := tel.callAttrs(c)
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
		kvs := append(c.metricAttrs(make([]attribute.KeyValue, 0, 4)), keyStopReason.String(stopName(c.stop)))
		in.stops.Add(ctx, 1, metric.WithAttributes(kvs...))
	}
}

// metricAttrs appends the attributes of the call's measurements.
func (c *call) metricAttrs(kvs []attribute.KeyValue) []attribute.KeyValue {
	return serverAttrs(append(kvs, keyMethod.String(c.method)), c.host, c.port)
}

// attrsKey identifies a call's measurement attributes.
type attrsKey struct {
	method, host string
	port         int
}

// maxCachedAttrs bounds the attribute sets kept per Transport: a client
// of more hosts than that builds the others' per call.
const maxCachedAttrs = 1024

// attrsCache keeps the measurement option of each distinct set of call
// attributes: building a set sorts and allocates, and a client talks to
// few hosts. Safe for concurrent use.
type attrsCache struct {
	mu   sync.RWMutex
	sets map[attrsKey]metric.MeasurementOption
}

// callAttrs returns the measurement option of c's attributes.
func (tel *telemetry) callAttrs(c *call) metric.MeasurementOption {
	k := attrsKey{c.method, c.host, c.port}
	ac := &tel.attrs
	ac.mu.RLock()
	opt, ok := ac.sets[k]
	ac.mu.RUnlock()
	if ok {
		return opt
	}
	opt = metric.WithAttributeSet(attribute.NewSet(c.metricAttrs(make([]attribute.KeyValue, 0, 3))...))
	ac.mu.Lock()
	if ac.sets == nil {
		ac.sets = make(map[attrsKey]metric.MeasurementOption)
	}
	if len(ac.sets) < maxCachedAttrs {
		ac.sets[k] = opt
	}
	ac.mu.Unlock()
	return opt
}
