package saferetry_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/saferetry/saferetry"
	"github.com/saferetry/saferetry/internal/testutil"
	"github.com/saferetry/saferetry/saferetrytest"
)

// A burst of concurrent stalls: N requests to one host whose first
// attempts all stall at once, longer than the hedge delay, with the
// default budget. Every hedge withdraws a retry token and a pace credit
// (budget.go, internal/overload): a host starts with 2 tokens and 5 pace
// credits (plus a random fraction, its phase), a request earns 0.1 token
// and 0.15 pace credit, tokens are held to max(2, 0.1 x the requests of
// the last ~10s) and pace credits to max(5, 0.1 x those of the last
// ~50ms), plus the phase. So at one instant a fresh client can afford 2
// hedges, a client that has sent 10 requests a second or more 5, and all
// 10 of a burst of 10 only from about 2,000 a second: the pacing that
// keeps saved retry tokens from being spent all at once at an outage's
// start also holds back the hedges of a burst of stalls, which often
// means the host is slow for everyone. A run refused once sends no hedge
// later (an exhausted budget stops its hedges), so the refused ones wait
// out their stall.
//
// burstHedged is what a fresh client hedges of a burst with the default
// budget (the real-network test's case); the cases of
// TestHedgeBurstDefaultBudget hold the others.
const (
	burstSize   = 10
	burstHedged = 2
)

// TestHedgeBurstDefaultBudget measures, on a virtual clock, how many of
// burstSize concurrent stalled requests the default budget lets hedge,
// for a fresh client and after steady traffic: each request's first
// attempt stalls 1s, a hedge answers in 1ms, the hedge delay is 10ms. A
// hedged request is answered at 11ms, the others at 1s.
func TestHedgeBurstDefaultBudget(t *testing.T) {
	cases := []struct {
		name     string
		rate     int // requests a second, for the 10s before the burst; 0: a fresh client
		min, max int // hedged (a range where the random phase decides)
	}{
		{"fresh", 0, burstHedged, burstHedged},
		{"after-10rps", 10, 5, 5},
		{"after-100rps", 100, 5, 5},
		// Pace cap max(5, 0.005 x 632) (632: the rate's average after
		// 10s, 1 - 1/e of its steady value), plus the phase.
		{"after-1000rps", 1000, 5, 6},
		{"after-4000rps", 4000, burstSize, burstSize}, // 12.6: all
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var stalling atomic.Bool
				var firsts sync.Map // request path -> struct{}: its first attempt was sent
				base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
					after := time.Duration(0)
					if stalling.Load() {
						after = time.Millisecond
						if _, seen := firsts.LoadOrStore(r.URL.Path, struct{}{}); !seen {
							after = time.Second
						}
					}
					if after > 0 {
						timer := time.NewTimer(after)
						defer timer.Stop()
						select {
						case <-timer.C:
						case <-r.Context().Done():
							return nil, r.Context().Err()
						}
					}
					return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok")), Request: r}, nil
				})
				var hedges atomic.Int32
				stack := saferetry.New(base,
					saferetry.WithHedge(10*time.Millisecond, 1),
					saferetry.WithHook(func(ev saferetry.Event) {
						if ev.Hedge {
							hedges.Add(1)
						}
					}))
				get := func(path string) (*http.Response, error) {
					req, err := http.NewRequest(http.MethodGet, "http://api.test"+path, nil)
					if err != nil {
						return nil, err
					}
					return stack.RoundTrip(req)
				}

				if tc.rate > 0 {
					gap := time.Second / time.Duration(tc.rate)
					for i := range 10 * tc.rate {
						resp, err := get("/warm/" + strconv.Itoa(i))
						if err != nil {
							t.Fatal(err)
						}
						resp.Body.Close()
						time.Sleep(gap) // virtual: the traffic's pace
					}
				}

				stalling.Store(true)
				type outcome struct {
					attempts int
					took     time.Duration
					err      error
				}
				outcomes := make([]outcome, burstSize)
				var wg sync.WaitGroup
				start := time.Now()
				for i := range burstSize {
					wg.Go(func() {
						resp, err := get("/burst/" + strconv.Itoa(i))
						if err != nil {
							outcomes[i] = outcome{err: err}
							return
						}
						resp.Body.Close()
						outcomes[i] = outcome{attempts: saferetry.Attempts(resp), took: time.Since(start)}
					})
				}
				wg.Wait()

				hedged := 0
				for i, o := range outcomes {
					switch {
					case o.err != nil:
						t.Fatalf("request %d: %v", i, o.err)
					case o.attempts == 2 && o.took == 11*time.Millisecond:
						hedged++
					case o.attempts == 1 && o.took == time.Second:
					default:
						t.Fatalf("request %d: %d attempts, answered at %v; want 2 at 11ms (hedged) or 1 at 1s", i, o.attempts, o.took)
					}
				}
				if int(hedges.Load()) != hedged {
					t.Fatalf("%d hedges reported, %d requests hedged", hedges.Load(), hedged)
				}
				t.Logf("%s: %d of %d stalled requests hedged (answered at 11ms); %d waited 1s for their first attempt", tc.name, hedged, burstSize, burstSize-hedged)
				if hedged < tc.min || hedged > tc.max {
					t.Fatalf("%d of %d hedged; want %d to %d", hedged, burstSize, tc.min, tc.max)
				}
			})
		})
	}
}

// TestHedgeBurstRealNetwork is the same burst over the real network, over
// HTTP/1.1 and HTTP/2, against the fault server: burstSize concurrent GETs,
// each to a path whose first request the server holds, hedged after 20ms,
// with the default budget. burstHedged of them are hedged and answered by
// their hedge (their held first attempt is canceled and its handler sees
// it); the others get their first attempt's answer once the server lets
// it go, after every hedge timer has fired.
func TestHedgeBurstRealNetwork(t *testing.T) {
	verifyNoLeaks(t)
	servers := protocolServers(t)
	for _, proto := range []string{"h1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			srv := servers[proto]
			tr := srv.Transport()
			defer tr.CloseIdleConnections()
			const delay = 20 * time.Millisecond
			release := make(chan struct{})
			arrived, held := make([]chan struct{}, burstSize), make([]chan struct{}, burstSize)
			for i := range arrived {
				arrived[i], held[i] = make(chan struct{}), make(chan struct{})
				srv.Script(burstPath(proto, i), saferetrytest.Fault{Arrived: arrived[i], Release: release})
			}

			// A hedge goes out only once its request's first attempt is
			// held at the server, so that the server holds the first
			// attempt whichever arrives first.
			var calls sync.Map // path -> *atomic.Int32
			base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				n, _ := calls.LoadOrStore(r.URL.Path, new(atomic.Int32))
				if n.(*atomic.Int32).Add(1) > 1 {
					i, _ := strconv.Atoi(r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:])
					select {
					case <-held[i]:
					case <-r.Context().Done():
						return nil, r.Context().Err()
					}
				}
				return tr.RoundTrip(r)
			})
			hedged := make(chan struct{}, burstSize)
			stack := saferetry.New(base,
				saferetry.WithHedge(delay, 1),
				saferetry.WithHook(func(ev saferetry.Event) {
					if ev.Hedge {
						hedged <- struct{}{}
					}
				}))

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			results := make([]<-chan roundTripResult, burstSize)
			for i := range burstSize {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL()+burstPath(proto, i), nil)
				if err != nil {
					t.Fatal(err)
				}
				results[i] = roundTripAsync(stack, req)
			}
			// Each run's hedge timer starts before its first attempt is
			// sent. Once every first attempt is held at the server and
			// twice the hedge delay has passed, every timer has fired and
			// every run has decided: the stall has lasted longer than the
			// delay for all of them, which is the case under test. This
			// waits for time to pass; the expected hedges are waited for
			// as events.
			for i := range burstSize {
				testutil.WaitSignal(t, arrived[i], fmt.Sprintf("first attempt %d held at the server", i))
				close(held[i])
			}
			for range burstHedged {
				testutil.WaitSignal(t, hedged, "a hedge")
			}
			grace := time.NewTimer(2 * delay)
			<-grace.C
			close(release)

			nHedged := 0
			for i := range burstSize {
				r := awaitResult(t, results[i])
				if r.err != nil {
					t.Fatalf("request %d: %v", i, r.err)
				}
				body, err := io.ReadAll(r.resp.Body)
				r.resp.Body.Close()
				want := "ok GET " + burstPath(proto, i) + "\n"
				if err != nil || r.resp.StatusCode != http.StatusOK || string(body) != want {
					t.Fatalf("request %d: %d %q, %v; want 200 %q", i, r.resp.StatusCode, body, err, want)
				}
				wctx, wcancel := context.WithTimeout(ctx, testutil.SignalTimeout)
				ps, err := srv.Wait(wctx, burstPath(proto, i), saferetry.Attempts(r.resp))
				wcancel()
				if err != nil {
					t.Fatal(err)
				}
				switch n := saferetry.Attempts(r.resp); {
				case n == 2 && len(ps.Requests) == 2:
					nHedged++
				case n == 1 && len(ps.Requests) == 1:
				default:
					t.Fatalf("request %d: Attempts %d, server saw %d; want 2 and 2 (hedged) or 1 and 1", i, n, len(ps.Requests))
				}
			}
			t.Logf("%s: %d of %d stalled requests hedged", proto, nHedged, burstSize)
			if nHedged != burstHedged || len(hedged) != 0 {
				t.Fatalf("%d of %d hedged (%d hedge events after the %d waited for); want %d", nHedged, burstSize, len(hedged), burstHedged, burstHedged)
			}
		})
	}
}

func burstPath(proto string, i int) string { return "/burst/" + proto + "/" + strconv.Itoa(i) }
