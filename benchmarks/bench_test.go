package benchmarks

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/go-cleanhttp"

	"github.com/saferetry/saferetry/internal/benchserver"
)

// Every benchmark runs one sub-benchmark per contender, named
// transport=NAME, so that benchstat -col /transport sets them side by
// side and cmd/ratios divides each by transport=bare. run.sh does both.

// runContenders runs body once per contender, each over a fresh pooled
// transport whose idle connections are closed at the end.
func runContenders(b *testing.B, body func(b *testing.B, rt http.RoundTripper)) {
	for _, c := range contenders {
		b.Run("transport="+c.name, func(b *testing.B) {
			base := cleanhttp.DefaultPooledTransport()
			defer base.CloseIdleConnections()
			rt := c.wrap(base)
			b.ReportAllocs()
			body(b, rt)
		})
	}
}

// roundTrip sends req through rt, expects a 200, and reads and closes the
// response body, as a client that reuses its connections does.
func roundTrip(tb testing.TB, rt http.RoundTripper, req *http.Request) {
	resp, err := rt.RoundTrip(req)
	if err != nil {
		tb.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("%s %s: status %d", req.Method, req.URL.Path, resp.StatusCode)
	}
}

// benchScenario runs one scenario serially. A request without a body is
// built once and reused; one with a body is built for each round trip
// (bodies are consumed), which every contender pays alike.
func benchScenario(b *testing.B, sc scenario, url string) {
	runContenders(b, func(b *testing.B, rt http.RoundTripper) {
		b.SetBytes(sc.bytes)
		if sc.bytes == 0 {
			req := sc.request(b, url)
			for b.Loop() {
				roundTrip(b, rt, req)
			}
			return
		}
		for b.Loop() {
			roundTrip(b, rt, sc.request(b, url))
		}
	})
}

// BenchmarkGET: the happy path. A GET, no body, a 2-byte 200 at once.
func BenchmarkGET(b *testing.B) {
	srv := benchserver.New(b)
	benchScenario(b, scenarios(b, b.TempDir(), benchSizes)[0], srv.URL+"/get")
}

// BenchmarkGETParallel is BenchmarkGET from GOMAXPROCS goroutines sharing
// one transport.
func BenchmarkGETParallel(b *testing.B) {
	srv := benchserver.New(b)
	runContenders(b, func(b *testing.B, rt http.RoundTripper) {
		b.RunParallel(func(pb *testing.PB) {
			req := newRequest(b, http.MethodGet, srv.URL+"/get", nil)
			for pb.Next() {
				roundTrip(b, rt, req)
			}
		})
	})
}

// BenchmarkGETCancelable is BenchmarkGET with a request whose context can
// be canceled, as a daemon's requests usually are (a shutdown context, a
// per-request deadline); the others carry context.Background.
func BenchmarkGETCancelable(b *testing.B) {
	srv := benchserver.New(b)
	runContenders(b, func(b *testing.B, rt http.RoundTripper) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/get", nil)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			roundTrip(b, rt, req)
		}
	})
}

// BenchmarkPOSTSmall posts 1 KiB from a bytes.Reader (GetBody is set).
// saferetry also adds an Idempotency-Key to each request.
func BenchmarkPOSTSmall(b *testing.B) {
	srv := benchserver.New(b)
	benchScenario(b, scenarios(b, b.TempDir(), benchSizes)[1], srv.URL+"/drain")
}

// BenchmarkPOSTStream posts 1 MiB from a reader that can only be read
// once, its length declared.
func BenchmarkPOSTStream(b *testing.B) {
	srv := benchserver.New(b)
	benchScenario(b, scenarios(b, b.TempDir(), benchSizes)[2], srv.URL+"/drain")
}

// BenchmarkPUTFile puts an 8 MiB regular file, opened for each request.
func BenchmarkPUTFile(b *testing.B) {
	srv := benchserver.New(b)
	benchScenario(b, scenarios(b, b.TempDir(), benchSizes)[3], srv.URL+"/drain")
}

// BenchmarkRetry is the retry path: each logical GET gets 503, 503, then
// 200. The retrying contenders make the three attempts in one RoundTrip,
// without waiting; bare makes the same three round trips by hand.
func BenchmarkRetry(b *testing.B) {
	srv := benchserver.New(b)
	runContenders(b, func(b *testing.B, rt http.RoundTripper) {
		req := newRequest(b, http.MethodGet, srv.URL+"/flaky", nil)
		var seq uint64
		for b.Loop() {
			seq++
			retryOnce(b, rt, req, seq)
		}
	})
}

// BenchmarkRetryParallel is BenchmarkRetry from GOMAXPROCS goroutines
// sharing one transport (and, for saferetry, one budget).
func BenchmarkRetryParallel(b *testing.B) {
	srv := benchserver.New(b)
	runContenders(b, func(b *testing.B, rt http.RoundTripper) {
		var seq atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			req := newRequest(b, http.MethodGet, srv.URL+"/flaky", nil)
			for pb.Next() {
				retryOnce(b, rt, req, seq.Add(1))
			}
		})
	})
}

// retryOnce sends logical request seq to /flaky through rt; by hand when
// rt is the bare transport.
func retryOnce(tb testing.TB, rt http.RoundTripper, req *http.Request, seq uint64) {
	req.Header[benchserver.SeqHeader] = []string{strconv.FormatUint(seq, 10)}
	if _, isBare := rt.(*http.Transport); isBare {
		retryByHand(tb, rt, req)
		return
	}
	roundTrip(tb, rt, req)
}

// retryByHand is what a caller without a retry layer writes to get past
// two 503s: resend req (which has no body) until a 200, at most 3 times.
func retryByHand(tb testing.TB, rt http.RoundTripper, req *http.Request) {
	for attempt := 1; ; attempt++ {
		resp, err := rt.RoundTrip(req)
		if err != nil {
			tb.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			return
		case attempt == 3:
			tb.Fatalf("status %d after %d attempts", resp.StatusCode, attempt)
		}
	}
}
