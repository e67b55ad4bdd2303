package saferetryotel

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/saferetry/saferetry"
)

// TestObserveBudget: the gauges read a real Budget's hosts, with the
// server attributes of the host the stack sent to.
func TestObserveBudget(t *testing.T) {
	h := newHarness(t)
	b := saferetry.NewBudget(0.1)
	reg, err := h.config().ObserveBudget(b)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Unregister()
	tr := h.config().New(&script{answer: statuses(503, 200)}, saferetry.WithBudget(b), saferetry.WithBackoff(0, 0))
	if _, err, _ := h.do(tr, newRequest(t, context.Background(), http.MethodGet, testURL, nil)); err != nil {
		t.Fatal(err)
	}
	m := h.metrics()
	for _, name := range []string{metricBudgetTokens, metricRejectProb, metricThrottleRequest, metricThrottleAccept} {
		pts := m[name]
		if len(pts) != 1 || pts[0].attrs != "server.address=api.test" || pts[0].sum < 0 {
			t.Errorf("%s: %v, want one non-negative value for server.address=api.test", name, pts)
		}
	}
	if p := m[metricRejectProb]; len(p) == 1 && p[0].sum > 0.9 {
		t.Errorf("reject probability %v, above the throttle's 0.9 ceiling", p[0].sum)
	}
}

// TestThrottleStop: a stop by the throttle is counted as "throttle",
// also when it reaches the caller only as ErrThrottled.
func TestThrottleStop(t *testing.T) {
	if got := stopName(saferetry.StopThrottled); got != "throttle" {
		t.Errorf("stopName(StopThrottled) = %q, want throttle", got)
	}
	if stop, ok := unreportedStop(context.Background(), fmt.Errorf("refused: %w", saferetry.ErrThrottled)); !ok || stop != saferetry.StopThrottled {
		t.Errorf("unreportedStop(ErrThrottled) = %v, %v; want StopThrottled", stop, ok)
	}
}
