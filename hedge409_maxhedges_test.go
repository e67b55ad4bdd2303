package saferetry

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/saferetry/saferetry/internal/testutil"
)

// A keyed POST hedged up to 5 times (budget off, so only the 409 rule can
// stop hedges) over a real server, h1 and h2: the original holds the key
// for 300ms, and the first hedge meets a 409. No hedge is launched once
// the 409 is in (50ms of slack for the handoff from the attempt's
// goroutine), the server applies the write once, every attempt carried the
// same key and body, and the caller gets the original's 200.
func TestHedge409WithMaxHedges5(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		name := "h1"
		if h2 {
			name = "h2"
		}
		t.Run(name, func(t *testing.T) {
			var mu sync.Mutex
			inFlight := map[string]bool{}
			var keys, bodies []string
			applied := 0
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				key := r.Header.Get("Idempotency-Key")
				mu.Lock()
				keys, bodies = append(keys, key), append(bodies, string(body))
				if inFlight[key] {
					mu.Unlock()
					w.WriteHeader(http.StatusConflict)
					return
				}
				inFlight[key] = true
				mu.Unlock()
				select {
				case <-time.After(300 * time.Millisecond):
				case <-r.Context().Done():
					return
				}
				mu.Lock()
				applied++
				delete(inFlight, key)
				mu.Unlock()
				io.WriteString(w, "applied")
			}))
			srv.EnableHTTP2 = h2
			srv.StartTLS()
			defer srv.Close()

			var tmu sync.Mutex
			var got409 time.Time
			var hedges []time.Time
			inner := srv.Client().Transport
			base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				resp, err := inner.RoundTrip(r)
				if err == nil && resp.StatusCode == http.StatusConflict {
					tmu.Lock()
					if got409.IsZero() {
						got409 = time.Now()
					}
					tmu.Unlock()
				}
				return resp, err
			})
			stack := New(base, WithBudget(nil), WithHedge(20*time.Millisecond, 5),
				WithHook(func(ev Event) {
					if ev.Hedge {
						tmu.Lock()
						hedges = append(hedges, time.Now())
						tmu.Unlock()
					}
				}))
			defer inner.(*http.Transport).CloseIdleConnections()

			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/pay", strings.NewReader("amount=10"))
			resp, err := stack.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "applied" {
				t.Errorf("got %d %q, want 200 applied", resp.StatusCode, b)
			}
			tmu.Lock()
			late := 0
			for _, at := range hedges {
				if !got409.IsZero() && at.After(got409.Add(50*time.Millisecond)) {
					late++
				}
			}
			t.Logf("%d hedges, 409 seen: %v", len(hedges), !got409.IsZero())
			if got409.IsZero() {
				t.Errorf("no 409 seen: the test did not exercise the path")
			}
			if late > 0 {
				t.Errorf("%d hedges launched after the 409", late)
			}
			tmu.Unlock()
			mu.Lock()
			defer mu.Unlock()
			if applied != 1 {
				t.Errorf("applied %d times, want 1", applied)
			}
			for i := range keys {
				if keys[i] == "" || keys[i] != keys[0] || bodies[i] != "amount=10" {
					t.Errorf("attempt %d: key %q body %q; want the first's key %q and amount=10", i, keys[i], bodies[i], keys[0])
				}
			}
		})
	}
}
