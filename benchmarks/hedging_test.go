package benchmarks

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cristalhq/hedgedhttp"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/failsafe-go/failsafe-go/hedgepolicy"
	"github.com/hashicorp/go-cleanhttp"

	"github.com/saferetry/saferetry"
)

// The long-tail hedging table (issue 12) is wall-clock work, about a
// minute per round on an idle 2-core machine, so the plain go test skips
// it; TestHedgingSmoke checks every hedging contender on every run.
var (
	hedgingTable  = flag.Bool("hedging", false, "run TestHedgingTable: the long-tail hedging table")
	hedgingRounds = flag.Int("hedging.rounds", 3, "TestHedgingTable: rounds (every contender in each); the medians are printed")
	hedgingN      = flag.Int("hedging.n", 10000, "TestHedgingTable: measured requests per contender and round")
)

// hedgeHeader numbers the logical requests, so that the server can count
// each one's attempts and draw each attempt's latency from the same
// deterministic source whichever client sent it.
const hedgeHeader = "Bench-Request"

// tailServer answers GETs after fast, or after slow for an attempt drawn
// as slow (probability pSlow, independently per attempt). Attempt k of
// logical request n is slow or not by a hash of (seed, n, k) alone, so
// every client meets the same slow attempts in the same places: request
// 17's first attempt is slow for all of them, or for none.
type tailServer struct {
	seed  uint64
	pSlow float64
	fast  time.Duration
	slow  time.Duration
	// stallBelow: attempt 0 of requests numbered below it never answers
	// until canceled (the smoke test's stall; 0 for none).
	stallBelow int

	mu       sync.Mutex
	attempts map[int]int  // request number -> attempts received
	slowOne  map[int]bool // request number -> its attempt 0 was slow
}

func newTailServer(seed uint64) *tailServer {
	return &tailServer{
		seed: seed, pSlow: 0.05, fast: time.Millisecond, slow: 200 * time.Millisecond,
		attempts: map[int]int{}, slowOne: map[int]bool{},
	}
}

// splitmix64 is SplitMix64's finalizer: a cheap, well-mixed hash.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// slowAttempt reports whether attempt k of request n is a slow one.
func (s *tailServer) slowAttempt(n, k int) bool {
	h := splitmix64(s.seed ^ splitmix64(uint64(n)<<8|uint64(k&0xff)))
	return float64(h>>11)/(1<<53) < s.pSlow
}

func (s *tailServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.Header.Get(hedgeHeader))
	if err != nil {
		http.Error(w, "no "+hedgeHeader, http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	k := s.attempts[n]
	s.attempts[n] = k + 1
	slow := s.slowAttempt(n, k)
	if k == 0 {
		s.slowOne[n] = slow
	}
	s.mu.Unlock()
	if k == 0 && n < s.stallBelow {
		<-r.Context().Done()
		return
	}
	d := s.fast
	if slow {
		d = s.slow
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		_, _ = w.Write([]byte("ok"))
	case <-r.Context().Done(): // a hedge won: the client canceled this one
	}
}

// count returns the attempts received for requests first..first+n-1, and
// how many of those requests had a slow first attempt yet were sent once.
func (s *tailServer) count(first, n int) (attempts, slowUnhedged int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := first; i < first+n; i++ {
		attempts += s.attempts[i]
		if s.slowOne[i] && s.attempts[i] == 1 {
			slowUnhedged++
		}
	}
	return attempts, slowUnhedged
}

// hedger is one client of the hedging table.
type hedger struct {
	name string
	// wrap returns the client over base, a fresh pooled transport; hedges,
	// if not nil, counts the hedges the library reports sending.
	wrap func(tb testing.TB, base *http.Transport, hedges *atomic.Int64) http.RoundTripper
}

// hedgeDelay is the fixed delay the issue measured the anchors with.
const hedgeDelay = 10 * time.Millisecond

// hedgers are the table's clients: no hedging, the two anchors the issue
// measured (a fixed 10 ms delay, at most two requests each; failsafe-go
// also on its moving p90), and saferetry with a fixed delay and on the
// host's p90 and p95 (10 ms until the host has 20 answers), two hedges
// at most and the default retry budget, which each hedge draws on.
var hedgers = []hedger{
	{"none", func(_ testing.TB, base *http.Transport, _ *atomic.Int64) http.RoundTripper { return base }},
	{"hedgedhttp 10ms", func(tb testing.TB, base *http.Transport, _ *atomic.Int64) http.RoundTripper {
		rt, err := hedgedhttp.NewRoundTripper(hedgeDelay, 2, base)
		if err != nil {
			tb.Fatal(err)
		}
		return rt
	}},
	{"failsafe 10ms", func(_ testing.TB, base *http.Transport, _ *atomic.Int64) http.RoundTripper {
		return failsafehttp.NewRoundTripper(base, hedgepolicy.NewBuilderWithDelay[*http.Response](hedgeDelay).Build())
	}},
	{"failsafe p90", func(_ testing.TB, base *http.Transport, _ *atomic.Int64) http.RoundTripper {
		// Quantile age 100 executions; hedging starts after 20, as
		// saferetry's quantile does.
		return failsafehttp.NewRoundTripper(base, hedgepolicy.NewBuilderWithDelayQuantile[*http.Response](0.9, 100, 20).Build())
	}},
	{"saferetry 10ms", func(_ testing.TB, base *http.Transport, hedges *atomic.Int64) http.RoundTripper {
		return saferetry.New(base, append([]saferetry.Option{saferetry.WithHedge(hedgeDelay, 2), countHedges(hedges)}, smokeOptions...)...)
	}},
	{"saferetry p90", func(_ testing.TB, base *http.Transport, hedges *atomic.Int64) http.RoundTripper {
		return saferetry.New(base, append([]saferetry.Option{saferetry.WithHedge(hedgeDelay, 2), saferetry.WithHedgeQuantile(0.9, 2), countHedges(hedges)}, smokeOptions...)...)
	}},
	{"saferetry p95", func(_ testing.TB, base *http.Transport, hedges *atomic.Int64) http.RoundTripper {
		return saferetry.New(base, append([]saferetry.Option{saferetry.WithHedge(hedgeDelay, 2), saferetry.WithHedgeQuantile(0.95, 2), countHedges(hedges)}, smokeOptions...)...)
	}},
}

func countHedges(n *atomic.Int64) saferetry.Option {
	return saferetry.WithHook(func(ev saferetry.Event) {
		if ev.Hedge {
			n.Add(1)
		}
	})
}

// hedgeRun is what one client's run measured.
type hedgeRun struct {
	p50, p99, p999 time.Duration
	extra          float64 // attempts received / requests - 1
	slowUnhedged   int     // requests whose first attempt was slow and that were sent once
	hedges         int64   // hedges the library reported (saferetry only), -1 if unknown
}

// runHedger sends warmup requests (numbered from n, not measured), then n
// requests numbered 0..n-1, from workers goroutines over a fresh pooled
// transport, and measures each logical request from the call to the end
// of its body.
func runHedger(tb testing.TB, h hedger, srv *tailServer, url string, n, warmup, workers int) hedgeRun {
	base := cleanhttp.DefaultPooledTransport()
	defer base.CloseIdleConnections()
	var hedges atomic.Int64
	rt := h.wrap(tb, base, &hedges)

	send := func(i int) (time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set(hedgeHeader, strconv.Itoa(i))
		start := time.Now()
		resp, err := rt.RoundTrip(req)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		return time.Since(start), err
	}
	// sendAll sends requests first..first+count-1 from the workers.
	sendAll := func(first, count int, lat []time.Duration) {
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for range workers {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= count {
						return
					}
					d, err := send(first + i)
					if err != nil {
						errs <- fmt.Errorf("%s: request %d: %w", h.name, first+i, err)
						return
					}
					if lat != nil {
						lat[i] = d
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			tb.Fatal(err)
		}
	}

	sendAll(n, warmup, nil)
	hedges.Store(0)
	lat := make([]time.Duration, n)
	sendAll(0, n, lat)
	// A losing attempt may still be on its way to the server when the
	// winner returns; once the transport's connections are closed, every
	// attempt sent has arrived or never will.
	base.CloseIdleConnections()

	slices.Sort(lat)
	attempts, slowUnhedged := srv.count(0, n)
	run := hedgeRun{
		p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), p999: quantile(lat, 0.999),
		extra:        float64(attempts)/float64(n) - 1,
		slowUnhedged: slowUnhedged,
		hedges:       -1,
	}
	if strings.HasPrefix(h.name, "saferetry") {
		run.hedges = hedges.Load()
	}
	return run
}

// quantile is the nearest-rank q-quantile of sorted.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

// TestHedgingTable prints, for each client, the latency of 10,000 logical
// GETs from 8 workers against a server whose every attempt takes 200 ms
// with probability 5% and 1 ms otherwise, and the extra attempts the
// server received. Each round uses new request numbers' worth of the same
// seed for every client, so the clients meet the same slow attempts.
// Run: go test -run TestHedgingTable -hedging -v
func TestHedgingTable(t *testing.T) {
	if !*hedgingTable {
		t.Skip("the hedging table takes minutes: run with -hedging")
	}
	const warmup, workers = 200, 8
	n := *hedgingN
	runs := make(map[string][]hedgeRun)
	t.Logf("load average before: %s", loadavg())
	for round := range *hedgingRounds {
		for _, h := range hedgers {
			srv := newTailServer(uint64(round) + 12)
			ts := httptest.NewServer(srv)
			run := runHedger(t, h, srv, ts.URL, n, warmup, workers)
			ts.Close()
			runs[h.name] = append(runs[h.name], run)
		}
		t.Logf("round %d of %d (load average %s):\n%s", round+1, *hedgingRounds, loadavg(), hedgeTable(runs, round))
	}
	t.Logf("medians of %d rounds, %d requests from %d workers, %d warm-up requests (load average after: %s):\n%s",
		*hedgingRounds, n, workers, warmup, loadavg(), hedgeTable(runs, -1))
}

// hedgeTable formats round's row per client, or with round -1 the median
// of each column over the rounds.
func hedgeTable(runs map[string][]hedgeRun, round int) string {
	var b strings.Builder
	b.WriteString("| client | p50 | p99 | p99.9 | extra attempts | slow first attempt, not hedged | hedges (library) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
	for _, h := range hedgers {
		rs := runs[h.name]
		var r hedgeRun
		if round >= 0 {
			r = rs[round]
		} else {
			r = hedgeRun{
				p50:          median(rs, func(r hedgeRun) time.Duration { return r.p50 }),
				p99:          median(rs, func(r hedgeRun) time.Duration { return r.p99 }),
				p999:         median(rs, func(r hedgeRun) time.Duration { return r.p999 }),
				extra:        median(rs, func(r hedgeRun) float64 { return r.extra }),
				slowUnhedged: median(rs, func(r hedgeRun) int { return r.slowUnhedged }),
				hedges:       median(rs, func(r hedgeRun) int64 { return r.hedges }),
			}
		}
		hedges := "-"
		if r.hedges >= 0 {
			hedges = strconv.FormatInt(r.hedges, 10)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.1f%% | %d | %s |\n",
			h.name, ms(r.p50), ms(r.p99), ms(r.p999), 100*r.extra, r.slowUnhedged, hedges)
	}
	return b.String()
}

// median is the median of f over rs (the lower middle one for an even count).
func median[T int | int64 | float64 | time.Duration](rs []hedgeRun, f func(hedgeRun) T) T {
	vs := make([]T, len(rs))
	for i, r := range rs {
		vs[i] = f(r)
	}
	slices.Sort(vs)
	return vs[(len(vs)-1)/2]
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// TestHedgingSmoke runs every hedging client of the table against a
// server whose first attempt of each measured request never answers until
// canceled: each request then completes only through a hedge, so a
// client that stopped hedging (a library update, a configuration change)
// hangs until its timeout and fails here, as does one that leaves an
// attempt's goroutine behind (goleak).
// smokeOptions are added to saferetry's stacks by TestHedgingSmoke.
var smokeOptions []saferetry.Option

func TestHedgingSmoke(t *testing.T) {
	// Every request here needs a hedge, and hedges spend saferetry's retry
	// budget (10% of requests by default, which the warm-up's own hedges
	// may have spent): this test is about hedging, so it gives saferetry a
	// budget that earns a hedge per request.
	smokeOptions = []saferetry.Option{saferetry.WithBudget(saferetry.NewBudget(1))}
	defer func() { smokeOptions = nil }()
	const n, warmup, workers = 2, 40, 2
	for _, h := range hedgers {
		if h.name == "none" {
			continue
		}
		t.Run(h.name, func(t *testing.T) {
			srv := newTailServer(1)
			srv.pSlow = 0 // only the stalls: the warm-up builds a fast history
			srv.stallBelow = n
			ts := httptest.NewServer(srv)
			defer ts.Close()
			run := runHedger(t, h, srv, ts.URL, n, warmup, workers)
			for i := range n {
				srv.mu.Lock()
				got := srv.attempts[i]
				srv.mu.Unlock()
				if got < 2 {
					t.Errorf("request %d: the server received %d attempts, want 2 or more (the first stalls)", i, got)
				}
			}
			if run.hedges >= 0 && run.hedges < n {
				t.Errorf("saferetry reported %d hedges, want at least %d", run.hedges, n)
			}
		})
	}
}

// TestTailServerSource checks the server's slow attempts: deterministic
// for a seed, about pSlow of them, and independent of the seed's other
// draws.
func TestTailServerSource(t *testing.T) {
	a, b := newTailServer(12), newTailServer(13)
	const n = 100000
	slowA, same := 0, 0
	for i := range n {
		if a.slowAttempt(i, 0) != a.slowAttempt(i, 0) {
			t.Fatalf("attempt 0 of request %d: two answers for one seed", i)
		}
		sa := a.slowAttempt(i, 0)
		if sa {
			slowA++
		}
		if sa && b.slowAttempt(i, 0) {
			same++
		}
	}
	if frac := float64(slowA) / n; frac < 0.045 || frac > 0.055 {
		t.Errorf("slow fraction %.4f, want about 0.05", frac)
	}
	// Two seeds, or two attempts of one request, should agree on a slow
	// attempt about 0.25% of the time (independent draws), not always.
	if frac := float64(same) / n; frac > 0.01 {
		t.Errorf("seeds 12 and 13 share %.4f slow attempts, want about 0.0025", frac)
	}
	both := 0
	for i := range n {
		if a.slowAttempt(i, 0) && a.slowAttempt(i, 1) {
			both++
		}
	}
	if frac := float64(both) / n; frac > 0.01 {
		t.Errorf("attempts 0 and 1 both slow for %.4f of requests, want about 0.0025", frac)
	}
}
