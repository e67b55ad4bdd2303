package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/hashicorp/go-cleanhttp"
	"github.com/rs/zerolog"

	"github.com/saferetry/saferetry"
	"github.com/saferetry/saferetry/saferetrytest"
)

var (
	congestedRounds = flag.Int("congested.rounds", 1, "TestCongestedLink: rounds to run (each runs every configuration at once)")
	congestedRate   = flag.Float64("congested.rate", 0, "TestCongestedLink: requests per second (0: the test's default)")
	congestedLink   = flag.Int64("congested.kbps", 0, "TestCongestedLink: link rate in KiB/s (0: the test's default)")
	congestedDelay  = flag.Duration("congested.delay", -1, "TestCongestedLink: pause after each slice (negative: the test's default)")
	congestedExtra  = flag.Bool("congested.extra", false, "debug")
	congestedSeed   = flag.Uint64("congested.seed", 11, "TestCongestedLink: seed of the first round's arrivals (round r uses seed+r)")
	congestedNaive  = flag.Bool("congested.naive", false, "TestCongestedLink: also run a naive client (no budget) and hold it to the promise")
)

// congestion is one run's workload and link.
type congestion struct {
	writes, reads int           // logical requests of each kind
	bigBody       int           // bytes of every other write's body
	smallBody     int           // bytes of the other writes' bodies
	rate          float64       // logical requests per second, sent open-loop
	attempt       time.Duration // WithAttemptTimeout
	slice         int           // bytes per slice of the link
	sliceDelay    time.Duration // pause after each slice
	kbps          int64         // link rate, KiB/s, each direction
	seed          uint64        // order of the requests
}

// congestedClient is one client configuration under test.
type congestedClient struct {
	name string
	opts []saferetry.Option
}

// congestedResult is what one client configuration achieved.
type congestedResult struct {
	name                    string
	writesOK, readsOK       int
	attempts                int64 // attempts the retry layer handed to the base transport
	received                int   // requests the server saw
	duplicates              int   // writes committed more than once
	conns                   int   // connections the server accepted
	elapsed                 time.Duration
	writeErrs, readErrs     map[string]int
	writeStatus, readStatus map[int]int
}

func (r congestedResult) perRequest(n int) float64 { return float64(r.attempts) / float64(n) }

// countingTransport counts the attempts the retry layer sends.
type countingTransport struct {
	base *http.Transport
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(req)
}

func (c *countingTransport) CloseIdleConnections() { c.base.CloseIdleConnections() }

// startLink starts toxiproxy in this process between a loopback port and
// upstream, with the link's toxics in both directions.
func startLink(t *testing.T, c congestion, upstream string) string {
	t.Helper()
	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(api, "congested", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("toxiproxy: %v", err)
	}
	t.Cleanup(p.Stop)
	for _, stream := range []string{"upstream", "downstream"} {
		toxics := []string{
			fmt.Sprintf(`{"name":"slicer_%s","type":"slicer","stream":%q,"attributes":{"average_size":%d,"size_variation":%d,"delay":%d}}`,
				stream, stream, c.slice, c.slice/4, c.sliceDelay.Microseconds()),
			fmt.Sprintf(`{"name":"bandwidth_%s","type":"bandwidth","stream":%q,"attributes":{"rate":%d}}`,
				stream, stream, c.kbps),
		}
		for _, js := range toxics {
			if _, err := p.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
				t.Fatalf("toxiproxy: adding %s: %v", js, err)
			}
		}
	}
	return p.Listen
}

// runCongested sends the workload through one client configuration over
// its own congested link to its own deduplicating server.
func runCongested(t *testing.T, c congestion, cc congestedClient) congestedResult {
	t.Helper()
	srv := saferetrytest.New(saferetrytest.WithTLS(), saferetrytest.WithHTTP2())
	defer srv.Close()
	addr := startLink(t, c, strings.TrimPrefix(srv.URL(), "https://"))

	base := cleanhttp.DefaultPooledTransport()
	base.TLSClientConfig = srv.Transport().TLSClientConfig.Clone()
	base.HTTP2 = &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second, WriteByteTimeout: 30 * time.Second}
	counted := &countingTransport{base: base}
	stack := saferetry.New(counted, append([]saferetry.Option{saferetry.WithAttemptTimeout(c.attempt)}, cc.opts...)...)
	client := &http.Client{Transport: stack}

	kinds := make([]int, 0, c.writes+c.reads) // 0 read, 1 small write, 2 big write
	for i := range c.writes {
		kinds = append(kinds, 1+i%2)
	}
	for range c.reads {
		kinds = append(kinds, 0)
	}
	rng := rand.New(rand.NewPCG(c.seed, c.seed))
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	big := bytes.Repeat([]byte("0123456789abcdef"), c.bigBody/16)
	small := bytes.Repeat([]byte("fedcba9876543210"), c.smallBody/16)

	type outcome struct {
		kind   int
		status int
		err    error
		body   []byte
		at     time.Duration
	}
	out := make([]outcome, len(kinds))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Arrival times: a Poisson process of the given rate, the same for
	// every configuration of a round.
	at := make([]time.Duration, len(kinds))
	for i := 1; i < len(at); i++ {
		at[i] = at[i-1] + time.Duration(rng.ExpFloat64()/c.rate*float64(time.Second))
	}
	// The connection is open before the clock starts, as a daemon's is.
	warm, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/warmup", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := base.RoundTrip(warm); err != nil {
		t.Fatalf("%s: warm-up request: %v", cc.name, err)
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	start := time.Now()
	pace := time.NewTimer(0)
	<-pace.C
	var wg sync.WaitGroup
	for i, k := range kinds {
		if d := at[i] - time.Since(start); d > 0 {
			pace.Reset(d)
			<-pace.C
		}
		wg.Go(func() {
			o := &out[i]
			o.kind = k
			o.at = time.Since(start)
			method, path, body := http.MethodGet, "/r/"+strconv.Itoa(i), []byte(nil)
			switch k {
			case 1:
				method, path, body = http.MethodPost, "/w/"+strconv.Itoa(i), small
			case 2:
				method, path, body = http.MethodPost, "/w/"+strconv.Itoa(i), big
			}
			var rd io.Reader
			if body != nil {
				rd = bytes.NewReader(body)
			}
			req, err := http.NewRequestWithContext(ctx, method, "https://"+addr+path, rd)
			if err != nil {
				o.err = err
				return
			}
			resp, err := client.Do(req)
			if err != nil {
				o.err = err
				return
			}
			o.status = resp.StatusCode
			o.body, o.err = io.ReadAll(resp.Body)
			resp.Body.Close()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	// Every byte the client wrote is still to reach the server: the
	// writes that timed out may yet commit. A last request sent on the
	// same connection arrives after all of them (one TCP stream, in
	// order); once it is answered, and every request the server received
	// has been handled, the commits are final.
	drain, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/drain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := base.RoundTrip(drain)
	if err != nil {
		t.Fatalf("%s: the request sent to drain the link: %v", cc.name, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	for path, ps := range srv.Stats().Paths {
		if _, err := srv.Wait(ctx, path, len(ps.Requests)); err != nil {
			t.Fatalf("%s: %v", cc.name, err)
		}
	}
	st := srv.Stats()
	// Only the client may close first: toxiproxy never reaps a link that
	// fails to write what it still carries, and the client's side carries
	// nothing more now. Closing it ends the server's connection in turn.
	stack.CloseIdleConnections()

	if *congestedExtra {
		var line strings.Builder
		for b := time.Duration(0); b < elapsed; b += 250 * time.Millisecond {
			ok, n := 0, 0
			for i, o := range out {
				if o.at >= b && o.at < b+250*time.Millisecond {
					n++
					if o.err == nil && o.status/100 == 2 && (o.kind == 0 || st.Paths["/w/"+strconv.Itoa(i)].Commits == 1) {
						ok++
					}
				}
			}
			fmt.Fprintf(&line, " %2d/%2d", ok, n)
		}
		t.Logf("%s per 250ms:%s", cc.name, line.String())
	}
	res := congestedResult{
		name: cc.name, attempts: counted.n.Load(), conns: st.Conns, elapsed: elapsed,
		writeErrs: map[string]int{}, readErrs: map[string]int{}, writeStatus: map[int]int{}, readStatus: map[int]int{},
	}
	for path, ps := range st.Paths {
		if path == "/drain" || path == "/warmup" {
			continue
		}
		res.received += len(ps.Requests)
		if ps.Commits > 1 {
			res.duplicates++
		}
	}
	for i, o := range out {
		if o.kind == 0 {
			res.readStatus[o.status]++
			if o.err != nil {
				res.readErrs[errKind(o.err)]++
			} else if o.status == http.StatusOK {
				res.readsOK++
			}
			continue
		}
		res.writeStatus[o.status]++
		if o.err != nil {
			res.writeErrs[errKind(o.err)]++
			continue
		}
		if o.status/100 == 2 && st.Paths["/w/"+strconv.Itoa(i)].Commits == 1 {
			res.writesOK++
		}
	}
	return res
}

func errKind(err error) string {
	var re *saferetry.RetryError
	switch {
	case errors.As(err, &re):
		return "retry(" + re.Reason.String() + ")/" + errKind(re.Err)
	case errors.Is(err, saferetry.ErrAttemptTimeout):
		return "attempt timeout"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	}
	var tlsErr *tls.RecordHeaderError
	if errors.As(err, &tlsErr) {
		return "tls"
	}
	return err.Error()
}

func TestCongestedLink(t *testing.T) {
	zerolog.SetGlobalLevel(zerolog.Disabled)
	c := congestion{
		writes: 120, reads: 120, bigBody: 64 << 10, smallBody: 1 << 10,
		rate: 60, attempt: 300 * time.Millisecond,
		slice: 512, sliceDelay: 100 * time.Microsecond, kbps: 512, seed: 11,
	}
	if *congestedRate > 0 {
		c.rate = *congestedRate
	}
	if *congestedDelay >= 0 {
		c.sliceDelay = *congestedDelay
	}
	if *congestedLink > 0 {
		c.kbps = *congestedLink
	}
	clients := []congestedClient{
		{"no retries", []saferetry.Option{saferetry.WithMaxRetries(0)}},
		{"keys off", []saferetry.Option{saferetry.WithKeyMethods()}},
		{"defaults", nil},
	}
	if *congestedExtra {
		clients = append(clients,
			congestedClient{"keys, no retries", []saferetry.Option{saferetry.WithMaxRetries(0), saferetry.WithKeyMethods("POST")}},
			congestedClient{"no keys, no retries", []saferetry.Option{saferetry.WithMaxRetries(0), saferetry.WithKeyMethods()}},
		)
	}
	if *congestedNaive {
		clients = append(clients, congestedClient{"naive (no budget)", []saferetry.Option{saferetry.WithBudget(nil)}})
	}
	for round := range *congestedRounds {
		c.seed = *congestedSeed + uint64(round)
		results := make([]congestedResult, len(clients))
		var wg sync.WaitGroup
		for i, cc := range clients {
			wg.Go(func() { results[i] = runCongested(t, c, cc) })
		}
		wg.Wait()
		t.Logf("round %d: %d writes (half %d KiB), %d reads at %.0f/s, link %d-byte slices at %d KiB/s, attempt timeout %v",
			round+1, c.writes, c.bigBody>>10, c.reads, c.rate, c.slice, c.kbps, c.attempt)
		t.Logf("%-18s %8s %8s %9s %9s %6s %6s %8s", "client", "writes", "reads", "attempts", "received", "dups", "conns", "elapsed")
		for _, r := range results {
			t.Logf("%-18s %4d/%3d %4d/%3d %9.2f %9d %6d %6d %8v", r.name, r.writesOK, c.writes, r.readsOK, c.reads,
				r.perRequest(c.writes+c.reads), r.received, r.duplicates, r.conns, r.elapsed.Round(10*time.Millisecond))
			t.Logf("   write status %v errs %v; read status %v errs %v", r.writeStatus, r.writeErrs, r.readStatus, r.readErrs)
		}
	}
}
