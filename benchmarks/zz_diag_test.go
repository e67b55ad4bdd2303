package benchmarks

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/saferetry/saferetry"
)

func TestZZDiag(t *testing.T) {
	for _, name := range []string{"default", "nobudget", "ratio1"} {
		srv := newTailServer(12)
		ts := httptest.NewServer(srv)
		var stops atomic.Int64
		h := hedger{name: "saferetry " + name, wrap: func(_ testing.TB, base *http.Transport, hedges *atomic.Int64) http.RoundTripper {
			opts := []saferetry.Option{saferetry.WithHedge(hedgeDelay, 2), countHedges(hedges), saferetry.WithHook(func(ev saferetry.Event) {
				if ev.Stopped != saferetry.StopNone {
					stops.Add(1)
				}
			})}
			switch name {
			case "nobudget":
				opts = append(opts, saferetry.WithBudget(nil))
			case "ratio1":
				opts = append(opts, saferetry.WithBudget(saferetry.NewBudget(1)))
			}
			return saferetry.New(base, opts...)
		}}
		run := runHedger(t, h, srv, ts.URL, 10000, 200, 8)
		ts.Close()
		t.Logf("%s: p99 %v p99.9 %v extra %.3f slowUnhedged %d hedges %d stops %d", name, run.p99, run.p999, run.extra, run.slowUnhedged, run.hedges, stops.Load())
	}
}
