package saferetryotel

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Gauge names: the state of a retry budget and its throttle, per host.
const (
	metricBudgetTokens    = "saferetry.budget.retry_tokens"
	metricRejectProb      = "saferetry.throttle.reject_probability"
	metricThrottleRequest = "saferetry.throttle.request_rate"
	metricThrottleAccept  = "saferetry.throttle.accept_rate"
)

// hostState is one host's budget and throttle state, as the gauges
// report it: saferetry.HostState's fields, copied by ObserveBudget.
type hostState struct {
	retryTokens       float64 // retries the budget would grant now
	rejectProbability float64 // the throttle's rejection probability
	requests          float64 // attempts offered per second
	accepts           float64 // attempts answered other than by overload, per second
}

// hostStates iterates over a budget's hosts; it is iter.Seq2's shape.
type hostStates func(yield func(host string, s hostState) bool)

// observeHosts registers the per-host gauges with a callback that reads
// hosts at each collection. The registration ends the callback: a budget
// outliving its gauges is not held by them.
func (c Config) observeHosts(hosts hostStates) (metric.Registration, error) {
	m := c.meterProvider().Meter(scopeName)
	tokens, err1 := m.Float64ObservableGauge(metricBudgetTokens, metric.WithUnit("{retry}"),
		metric.WithDescription("Retries the budget would grant the host now."))
	reject, err2 := m.Float64ObservableGauge(metricRejectProb, metric.WithUnit("1"),
		metric.WithDescription("Probability with which the throttle rejects the host's next attempt."))
	requests, err3 := m.Float64ObservableGauge(metricThrottleRequest, metric.WithUnit("{attempt}/s"),
		metric.WithDescription("Attempts offered to the host's throttle per second, over the last seconds."))
	accepts, err4 := m.Float64ObservableGauge(metricThrottleAccept, metric.WithUnit("{attempt}/s"),
		metric.WithDescription("Attempts answered other than by overload per second, over the last seconds."))
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return nil, err
	}
	return m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		var buf [2]attribute.KeyValue
		for host, s := range hosts {
			name, port := splitHostPort(host, "")
			set := attribute.NewSet(serverAttrs(buf[:0], name, port)...)
			attrs := metric.WithAttributeSet(set)
			o.ObserveFloat64(tokens, s.retryTokens, attrs)
			o.ObserveFloat64(reject, s.rejectProbability, attrs)
			o.ObserveFloat64(requests, s.requests, attrs)
			o.ObserveFloat64(accepts, s.accepts, attrs)
		}
		return nil
	}, tokens, reject, requests, accepts)
}
