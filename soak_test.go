//go:build soak

package saferetry_test

// The soak test: thousands of goroutines send a mix of methods, bodies and
// faults (503 bursts, 429s, resets before and after the commit, cut and
// slow response bodies, hangs ended by the attempt timeout, connections
// reset before they are read) through ONE stack, and the test checks that
// the process stays flat and that no write was ever committed twice.
//
// Run it with:
//
//	go test -tags soak -run Soak -race -soak.duration=60s .
//
// Flags: -soak.duration (default 20s), -soak.workers (default 2000).
//
// The run is cut into soakPhases phases. Each phase sends the load at a
// fresh fault server (the stack, its budget and its connection pool stay)
// and ends by canceling the requests still in flight, which also cancels
// requests at every point of their life under load. Then the server is
// checked and closed, the pool's idle connections are closed, and the
// goroutines and the heap in use are sampled after GC: at these quiet
// points nothing should be left of the phase, so a leak accumulates from
// phase to phase instead of hiding in the noise of thousands of requests
// in flight. One sample is also taken in the middle of each phase, under
// load, for the report.
//
// Each logical request has a path of its own on the fault server, so the
// server's per-path commit count says whether that request's write was
// duplicated.

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/saferetry/saferetry"
	"github.com/saferetry/saferetry/saferetrytest"
)

var (
	soakDuration = flag.Duration("soak.duration", 20*time.Second, "how long the soak test sends requests")
	soakWorkers  = flag.Int("soak.workers", 2000, "how many goroutines send requests at once")
)

// soakPhases is how many phases the run is cut into.
const soakPhases = 6

// Bounds on the quiet samples, taken between phases, relative to the
// first: at most 20 more goroutines (connections still being torn down
// when the sample is taken), and at most 25% + 8 MiB more heap in use.
// Once the run is over, every goroutine started by the test must have
// ended (goleak).
const (
	soakGoroutineSlack = 20
	soakHeapGrowth     = 1.25
	soakHeapSlack      = 8 << 20
)

// soakGen is one phase's fault server and the requests sent to it.
type soakGen struct {
	srv      *saferetrytest.Server
	outcomes sync.Map // path -> soakOutcome
}

type soakOutcome struct {
	method string
	keyed  bool
	ok     bool // 200 with the whole body read
}

type soakSample struct {
	at         time.Duration
	goroutines int
	heapInuse  uint64
}

type soakCounts struct {
	requests, ok, statuses, errors, canceled, retries atomic.Int64
	refused                                           [saferetry.StopCanceled + 1]atomic.Int64 // by reason
}

func TestSoak(t *testing.T) {
	verifyNoLeaks(t)
	base := &http.Transport{
		MaxIdleConns:        *soakWorkers,
		MaxIdleConnsPerHost: *soakWorkers,
	}
	defer base.CloseIdleConnections()
	var counts soakCounts
	stack := saferetry.New(base,
		saferetry.WithBackoff(time.Millisecond, 50*time.Millisecond),
		saferetry.WithBudget(saferetry.NewBudget(0.5)),
		saferetry.WithKeyMethods(http.MethodPost), // POST keyed, PATCH not
		saferetry.WithAttemptTimeout(2*time.Second),
		saferetry.WithMaxBodyBytes(64<<10),
		saferetry.WithHook(func(ev saferetry.Event) {
			if ev.Stopped == saferetry.StopNone {
				counts.retries.Add(1)
			} else if int(ev.Stopped) < len(counts.refused) {
				counts.refused[ev.Stopped].Add(1)
			}
		}),
	)

	start := time.Now()
	sample := func() soakSample {
		// Twice: what sync.Pools hold (body buffers, net/http's bufio
		// readers) survives one collection in their victim caches.
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return soakSample{time.Since(start).Round(100 * time.Millisecond), runtime.NumGoroutine(), ms.HeapInuse}
	}
	baseline := sample()
	var duplicates atomic.Int64
	var quiet, loaded []soakSample
	phaseLen := *soakDuration / soakPhases
	for phase := range soakPhases {
		g := &soakGen{srv: saferetrytest.New()}
		ctx, cancel := context.WithTimeout(context.Background(), phaseLen)
		var wg sync.WaitGroup
		for w := range *soakWorkers {
			wg.Go(func() { soakWorker(ctx, fmt.Sprintf("/p%d/w%d", phase, w), stack, g, &counts) })
		}
		mid := time.NewTimer(phaseLen / 2)
		select {
		case <-mid.C:
			loaded = append(loaded, sample())
		case <-ctx.Done():
		}
		mid.Stop()
		<-ctx.Done()
		wg.Wait()
		cancel()
		g.srv.Close() // returns once every handler has: the records are final
		duplicates.Add(soakCheck(t, g))
		g = nil
		base.CloseIdleConnections()
		quiet = append(quiet, sample())
	}

	elapsed := time.Since(start)
	t.Logf("%d workers for %v: %d requests (%.0f/s): %d ok, %d other statuses, %d errors, %d canceled at phase ends; %d retries; %d duplicated writes",
		*soakWorkers, elapsed.Round(time.Second), counts.requests.Load(),
		float64(counts.requests.Load())/elapsed.Seconds(), counts.ok.Load(), counts.statuses.Load(),
		counts.errors.Load(), counts.canceled.Load(), counts.retries.Load(), duplicates.Load())
	var refused []string
	for reason := range counts.refused {
		if n := counts.refused[reason].Load(); n > 0 {
			refused = append(refused, fmt.Sprintf("%v: %d", saferetry.StopReason(reason), n))
		}
	}
	t.Logf("retries refused, by reason: %s", strings.Join(refused, ", "))
	t.Logf("before: %d goroutines, heap in use %.1f MiB", baseline.goroutines, mib(baseline.heapInuse))
	for i := range quiet {
		l := soakSample{}
		if i < len(loaded) {
			l = loaded[i]
		}
		t.Logf("phase %d: under load at %v: %d goroutines, heap in use %.1f MiB; quiet at %v: %d goroutines, heap in use %.1f MiB",
			i+1, l.at, l.goroutines, mib(l.heapInuse), quiet[i].at, quiet[i].goroutines, mib(quiet[i].heapInuse))
	}

	if counts.ok.Load() == 0 {
		t.Fatal("no request succeeded")
	}
	ref := quiet[0]
	for i, s := range quiet[1:] {
		if s.goroutines > ref.goroutines+soakGoroutineSlack {
			t.Errorf("after phase %d: %d goroutines; after phase 1: %d", i+2, s.goroutines, ref.goroutines)
		}
		if float64(s.heapInuse) > soakHeapGrowth*float64(ref.heapInuse)+soakHeapSlack {
			t.Errorf("after phase %d: heap in use %.1f MiB; after phase 1: %.1f MiB", i+2, mib(s.heapInuse), mib(ref.heapInuse))
		}
	}
	// verifyNoLeaks checks, once the test returns, that every goroutine
	// started since it began has ended.
}

// soakCheck checks every write of a phase against what the server
// committed, and returns the number of duplicated ones.
func soakCheck(t *testing.T, g *soakGen) int64 {
	t.Helper()
	st := g.srv.Stats()
	var dups int64
	g.outcomes.Range(func(k, v any) bool {
		o := v.(soakOutcome)
		commits := st.Paths[k.(string)].Commits
		switch {
		case (o.method == http.MethodPost || o.method == http.MethodPatch) && commits > 1:
			dups++
			t.Errorf("%s %s (keyed %v) committed %d times", o.method, k, o.keyed, commits)
		case o.keyed && o.ok && commits != 1:
			t.Errorf("keyed %s %s succeeded with %d commits", o.method, k, commits)
		}
		return true
	})
	return dups
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// soakWorker sends requests until ctx ends, each with a fault drawn at
// random.
func soakWorker(ctx context.Context, prefix string, stack http.RoundTripper, g *soakGen, counts *soakCounts) {
	var seed [32]byte
	copy(seed[:], prefix)
	rng := rand.New(rand.NewChaCha8(seed))
	for seq := 0; ctx.Err() == nil; seq++ {
		soakRequest(ctx, rng, g, fmt.Sprintf("%s/%d", prefix, seq), stack, counts)
	}
}

var soakMethods = []string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodPost, http.MethodPatch, http.MethodDelete}

func soakRequest(ctx context.Context, rng *rand.Rand, g *soakGen, path string, stack http.RoundTripper, counts *soakCounts) {
	method := soakMethods[rng.IntN(len(soakMethods))]
	var f saferetrytest.Fault
	scripted := true
	switch p := rng.IntN(100); {
	case p < 40: // served
		scripted = false
	case p < 52:
		f = saferetrytest.Burst(1+rng.IntN(2), 503)
	case p < 57:
		f = saferetrytest.RetryAfter(429, "0")
	case p < 67:
		f = saferetrytest.Fault{Kind: saferetrytest.ResetAfterCommit}
	case p < 75:
		f = saferetrytest.Fault{Kind: saferetrytest.ResetAfterHeaders}
	case p < 80:
		f = saferetrytest.Fault{Kind: saferetrytest.ResetMidResponse}
	case p < 85:
		f = saferetrytest.Fault{Kind: saferetrytest.Truncate}
	case p < 98:
		f = saferetrytest.Fault{Kind: saferetrytest.SlowBody, Body: bytes.Repeat([]byte("slow"), 64), Chunk: 64, Delay: time.Millisecond}
	case p < 99:
		f = saferetrytest.Fault{Kind: saferetrytest.Hang} // ended by the attempt timeout
	default:
		g.srv.ResetConns(1) // whichever connection comes next
		scripted = false
	}
	if scripted {
		g.srv.Script(path, f)
	}

	var body io.Reader
	switch k := rng.IntN(4); {
	case method == http.MethodGet || k == 0:
	case k == 1:
		body = bytes.NewReader(payloadFor(path, 512))
	case k == 2:
		body = io.NopCloser(struct{ io.Reader }{bytes.NewReader(payloadFor(path, 1500))})
	default:
		body = io.NopCloser(struct{ io.Reader }{bytes.NewReader(payloadFor(path, 40<<10))})
	}
	req, err := http.NewRequestWithContext(ctx, method, g.srv.URL()+path, body)
	if err != nil {
		panic(err)
	}
	counts.requests.Add(1)
	o := soakOutcome{method: method, keyed: method == http.MethodPost}
	resp, err := stack.RoundTrip(req)
	switch {
	case err != nil && ctx.Err() != nil:
		counts.canceled.Add(1)
	case err != nil:
		counts.errors.Add(1)
	case resp.StatusCode != http.StatusOK:
		counts.statuses.Add(1)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	default:
		_, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil {
			o.ok = true
			counts.ok.Add(1)
		} else {
			counts.errors.Add(1)
		}
	}
	g.outcomes.Store(path, o)
}
