package saferetryotel

import (
	"errors"

	"github.com/saferetry/saferetry"
	"go.opentelemetry.io/otel/metric"
)

// ObserveBudget reports b's state per host through four observable
// gauges (saferetry.budget.retry_tokens, saferetry.throttle.reject_probability,
// saferetry.throttle.request_rate, saferetry.throttle.accept_rate), read
// at each collection, with server.address and server.port attributes. A
// budget is per stack unless shared (saferetry.WithBudget), so observe
// the one you pass to New, once however many stacks share it. Call
// Unregister on the result when the budget is retired: the callback holds
// it. Safe for concurrent use with requests.
func (c Config) ObserveBudget(b *saferetry.Budget) (metric.Registration, error) {
	return c.observeHosts(func(yield func(string, hostState) bool) {
		for host, s := range b.Hosts() {
			if !yield(host, hostState{
				retryTokens:       s.RetryTokens,
				rejectProbability: s.RejectProbability,
				requests:          s.Requests,
				accepts:           s.Accepts,
			}) {
				return
			}
		}
	})
}

// newerStopName names the stop reasons of the overload branch.
func newerStopName(r saferetry.StopReason) (string, bool) {
	if r == saferetry.StopThrottled {
		return "throttle", true
	}
	return "", false
}

// newerStopOf recognises a refusal by the throttle that reaches the
// caller as ErrThrottled rather than through the hook (a first attempt
// refused before it was sent).
func newerStopOf(err error) (saferetry.StopReason, bool) {
	if errors.Is(err, saferetry.ErrThrottled) {
		return saferetry.StopThrottled, true
	}
	return saferetry.StopNone, false
}
