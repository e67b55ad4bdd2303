package saferetry

// Benchmarks of the full stack against the bare pooled transport, both in
// the same run, over a loopback httptest server.
//
// Every end-to-end benchmark has the sub-benchmarks transport=bare
// (cleanhttp.DefaultPooledTransport, what New uses when its base is nil)
// and transport=saferetry (New over a transport of the same kind), so that
// benchstat pairs them:
//
//	go test -run '^$' -bench . -benchmem -count 6 > bench.txt
//	benchstat -col /transport bench.txt
//
// The server runs in the benchmark's process: its work (and its
// allocations) is in every figure, the same for both transports; the
// difference between the two columns is what the stack costs. The module
// github.com/saferetry/saferetry/benchmarks compares the other Go retry
// libraries on the same scenarios.

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"

	"github.com/saferetry/saferetry/internal/benchserver"
	"github.com/saferetry/saferetry/internal/serverwait"
)

// Body sizes of the benchmark scenarios.
const (
	benchSmallBody  = 1 << 10 // POST from a bytes.Reader: GetBody is set
	benchStreamBody = 1 << 20 // POST from a plain reader: at BodyCache's default cap, so it is kept
	benchFileBody   = 8 << 20 // PUT of a regular file: replayed by position, never kept
)

// benchTransport is one contender of an end-to-end benchmark.
type benchTransport struct {
	name string
	// rt builds a fresh transport over base, a fresh pooled transport.
	rt func(base *http.Transport) http.RoundTripper
}

// benchBareAndStack returns the bare pooled transport and the full stack
// New builds over one, with opts.
func benchBareAndStack(opts ...Option) []benchTransport {
	return []benchTransport{
		{"bare", func(base *http.Transport) http.RoundTripper { return base }},
		{"saferetry", func(base *http.Transport) http.RoundTripper { return New(base, opts...) }},
	}
}

// runTransports runs body once per contender, as sub-benchmark
// transport=NAME, each with a fresh transport whose idle connections are
// closed at the end (no goroutine outlives the benchmark).
func runTransports(b *testing.B, contenders []benchTransport, body func(b *testing.B, rt http.RoundTripper)) {
	for _, c := range contenders {
		b.Run("transport="+c.name, func(b *testing.B) {
			base := cleanhttp.DefaultPooledTransport()
			rt := c.rt(base)
			defer base.CloseIdleConnections()
			b.ReportAllocs()
			body(b, rt)
		})
	}
}

// roundTrip sends req, checks for a 200 and reads and closes the body, as
// a client that reuses its connections does.
func roundTrip(b *testing.B, rt http.RoundTripper, req *http.Request) {
	resp, err := rt.RoundTrip(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("%s %s: status %d", req.Method, req.URL.Path, resp.StatusCode)
	}
}

func newBenchRequest(b *testing.B, method, url string, body io.Reader) *http.Request {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		b.Fatal(err)
	}
	return req
}

// BenchmarkGET is the happy path: an idempotent request, no body, a 200 at
// once. The request is built once and reused, so that the figures are the
// transport's alone.
func BenchmarkGET(b *testing.B) {
	srv := benchserver.New(b)
	runTransports(b, benchBareAndStack(), func(b *testing.B, rt http.RoundTripper) {
		req := newBenchRequest(b, http.MethodGet, srv.URL+"/get", nil)
		for b.Loop() {
			roundTrip(b, rt, req)
		}
	})
}

// BenchmarkGETParallel is BenchmarkGET from GOMAXPROCS goroutines sharing
// one transport; the stack's default budget sees every request to the one
// host (a Deposit each), so its accounting is under contention.
func BenchmarkGETParallel(b *testing.B) {
	srv := benchserver.New(b)
	runTransports(b, benchBareAndStack(), func(b *testing.B, rt http.RoundTripper) {
		b.RunParallel(func(pb *testing.PB) {
			req := newBenchRequest(b, http.MethodGet, srv.URL+"/get", nil)
			for pb.Next() {
				roundTrip(b, rt, req)
			}
		})
	})
}

// BenchmarkPOSTSmall posts 1 KiB from a bytes.Reader, so http.NewRequest
// sets GetBody: BodyCache has nothing to do and nothing may be copied. The
// stack adds an Idempotency-Key (a UUID) to each request.
func BenchmarkPOSTSmall(b *testing.B) {
	srv := benchserver.New(b)
	payload := bytes.Repeat([]byte("p"), benchSmallBody)
	runTransports(b, benchBareAndStack(), func(b *testing.B, rt http.RoundTripper) {
		for b.Loop() {
			roundTrip(b, rt, newBenchRequest(b, http.MethodPost, srv.URL+"/drain", bytes.NewReader(payload)))
		}
	})
}

// newStreamRequest posts data from a benchserver.StreamReader with its length declared,
// as a caller relaying a body of known size would.
func newStreamRequest(b *testing.B, url string, data []byte) *http.Request {
	req := newBenchRequest(b, http.MethodPost, url, io.NopCloser(&benchserver.StreamReader{Data: data}))
	req.ContentLength = int64(len(data))
	return req
}

// BenchmarkPOSTStream posts 1 MiB from a reader that cannot be replayed;
// the stack keeps it, in a pooled buffer, while the first attempt sends it.
// Over many requests the buffer is reused, so B/op stays far below 1 MiB.
func BenchmarkPOSTStream(b *testing.B) {
	srv := benchserver.New(b)
	payload := bytes.Repeat([]byte("s"), benchStreamBody)
	runTransports(b, benchBareAndStack(), func(b *testing.B, rt http.RoundTripper) {
		b.SetBytes(benchStreamBody)
		for b.Loop() {
			roundTrip(b, rt, newStreamRequest(b, srv.URL+"/drain", payload))
		}
	})
}

// writeBenchFile writes a file of n bytes in a temporary directory.
func writeBenchFile(b *testing.B, n int) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "body")
	if err := os.WriteFile(path, bytes.Repeat([]byte("f"), n), 0o600); err != nil {
		b.Fatal(err)
	}
	return path
}

// newFileRequest opens path for one PUT; the transport closes the file.
func newFileRequest(b *testing.B, url, path string, size int64) *http.Request {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	req := newBenchRequest(b, http.MethodPut, url, f)
	req.ContentLength = size // http.NewRequest leaves it unknown for a file
	return req
}

// BenchmarkPUTFile puts an 8 MiB regular file, reopened for each request.
// The stack replays it by position and must not buffer any of it.
func BenchmarkPUTFile(b *testing.B) {
	srv := benchserver.New(b)
	path := writeBenchFile(b, benchFileBody)
	runTransports(b, benchBareAndStack(), func(b *testing.B, rt http.RoundTripper) {
		b.SetBytes(benchFileBody)
		for b.Loop() {
			roundTrip(b, rt, newFileRequest(b, srv.URL+"/drain", path, benchFileBody))
		}
	})
}

// retryByHand is the bare transport's side of the retry benchmarks: what a
// caller without a retry layer writes to survive two 503s. It resends req
// (no body) until it gets a 200, at most three times.
func retryByHand(b *testing.B, rt http.RoundTripper, req *http.Request) {
	for attempt := 1; ; attempt++ {
		resp, err := rt.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			return
		case attempt == 3:
			b.Fatalf("status %d after %d attempts", resp.StatusCode, attempt)
		}
	}
}

// retryOnce sends one logical request to /flaky, numbered seq: by hand
// when rt is the bare transport, in one RoundTrip through the stack.
func retryOnce(b *testing.B, rt http.RoundTripper, req *http.Request, seq uint64) {
	req.Header[benchserver.SeqHeader] = []string{strconv.FormatUint(seq, 10)}
	if _, bare := rt.(*http.Transport); bare {
		retryByHand(b, rt, req)
		return
	}
	roundTrip(b, rt, req)
}

// BenchmarkRetry is the retry path: each logical GET meets two 503s, then
// a 200, so it costs three round trips. The stack retries without waiting
// and without a budget; the bare transport's figures are for the same
// three round trips made by hand.
func BenchmarkRetry(b *testing.B) {
	srv := benchserver.New(b)
	runTransports(b, benchBareAndStack(WithBackoff(0, 0), WithBudget(nil)), func(b *testing.B, rt http.RoundTripper) {
		req := newBenchRequest(b, http.MethodGet, srv.URL+"/flaky", nil)
		var seq uint64
		for b.Loop() {
			seq++
			retryOnce(b, rt, req, seq)
		}
	})
}

// BenchmarkRetryParallel is BenchmarkRetry from GOMAXPROCS goroutines
// sharing one transport. transport=saferetry+budget is the same stack with
// a budget: the deposit, both records and both withdrawals of every
// logical request contend for the one host's state. The budget is large
// enough never to refuse (unlimitedBudget), so what it adds is the
// accounting alone.
func BenchmarkRetryParallel(b *testing.B) {
	srv := benchserver.New(b)
	huge := unlimitedBudget()
	contenders := []benchTransport{
		benchBareAndStack()[0],
		{"saferetry", func(base *http.Transport) http.RoundTripper {
			return New(base, WithBackoff(0, 0), WithBudget(nil))
		}},
		{"saferetry+budget", func(base *http.Transport) http.RoundTripper {
			return New(base, WithBackoff(0, 0), WithBudget(huge))
		}},
	}
	runTransports(b, contenders, func(b *testing.B, rt http.RoundTripper) {
		var seq atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			req := newBenchRequest(b, http.MethodGet, srv.URL+"/flaky", nil)
			for pb.Next() {
				retryOnce(b, rt, req, seq.Add(1))
			}
		})
	})
}

// BenchmarkOverhead isolates what the stack costs per request, without a
// network: the base is a plain *http.Transport (so the stack takes the
// same path as over a real one) whose "bench" scheme is answered in
// memory, by a RoundTripper that reads and closes the request body and
// returns a canned 200. bare is that transport alone; the difference is
// the stack's own CPU time and allocations, which the loopback benchmarks
// show only through a few percent of noise.
func BenchmarkOverhead(b *testing.B) {
	payload := bytes.Repeat([]byte("p"), benchSmallBody)
	requests := []struct {
		name string
		new  func(b *testing.B) *http.Request
	}{
		{"GET", nil}, // built once, reused
		{"POSTSmall", func(b *testing.B) *http.Request {
			return newBenchRequest(b, http.MethodPost, "bench://api.example/v1/things", bytes.NewReader(payload))
		}},
	}
	for _, r := range requests {
		b.Run("request="+r.name, func(b *testing.B) {
			for _, c := range benchBareAndStack() {
				b.Run("transport="+c.name, func(b *testing.B) {
					base := &http.Transport{}
					base.RegisterProtocol("bench", inMemoryServer{})
					rt := c.rt(base)
					b.ReportAllocs()
					if r.new == nil {
						req := newBenchRequest(b, http.MethodGet, "bench://api.example/v1/things", nil)
						for b.Loop() {
							roundTrip(b, rt, req)
						}
						return
					}
					for b.Loop() {
						roundTrip(b, rt, r.new(b))
					}
				})
			}
		})
	}
}

// inMemoryServer answers every request with the same 200 and no body,
// after reading and closing the request body, as a server would.
type inMemoryServer struct{}

var inMemoryOK = &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody, ContentLength: 0}

func (inMemoryServer) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		_ = req.Body.Close()
	}
	return inMemoryOK, nil
}

// The micro-benchmarks below measure the decisions the retry loop makes
// per attempt; none should allocate.

func BenchmarkClassify(b *testing.B) {
	req := httptest.NewRequest(http.MethodGet, "http://api.example/v1/things", nil)
	b.Run("status=503", func(b *testing.B) {
		resp := &http.Response{StatusCode: http.StatusServiceUnavailable, Header: http.Header{}, Request: req}
		a := Attempt{Request: req, Response: resp, Number: 1}
		b.ReportAllocs()
		for b.Loop() {
			if DefaultStrategy.Classify(a) != Transient {
				b.Fatal("503 on a GET is not transient")
			}
		}
	})
	b.Run("status=200", func(b *testing.B) {
		resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"text/plain"}}, Request: req}
		a := Attempt{Request: req, Response: resp, Number: 1}
		b.ReportAllocs()
		for b.Loop() {
			if DefaultStrategy.Classify(a) != Done {
				b.Fatal("200 is not done")
			}
		}
	})
	b.Run("err=connection-refused", func(b *testing.B) {
		// What net/http returns when nothing listens on the port.
		err := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
		a := Attempt{Request: req, Err: err, Number: 1}
		b.ReportAllocs()
		for b.Loop() {
			if DefaultStrategy.Classify(a) != Transient {
				b.Fatal("connection refused is not transient")
			}
		}
	})
	b.Run("err=reset-after-write", func(b *testing.B) {
		// A connection reset while reading the response: unknown fate,
		// the last rule of the table (the longest path through it).
		err := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
		a := Attempt{Request: req, Err: err, Number: 1}
		b.ReportAllocs()
		for b.Loop() {
			if DefaultStrategy.Classify(a) != Transient {
				b.Fatal("a reset GET is not transient")
			}
		}
	})
}

func BenchmarkExponentialDelay(b *testing.B) {
	for _, j := range []Jitter{FullJitter, DecorrelatedJitter} {
		b.Run("jitter="+j.String(), func(b *testing.B) {
			e := Exponential{Initial: defaultBackoff.Initial, Max: defaultBackoff.Max, Jitter: j}
			var prev time.Duration
			b.ReportAllocs()
			retry := 0
			for b.Loop() {
				retry = retry%8 + 1
				prev = e.Delay(retry, prev)
			}
		})
	}
}

func BenchmarkRetryAfterParse(b *testing.B) {
	now := time.Date(2025, 11, 23, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct{ name, value string }{
		{"form=seconds", "120"},
		{"form=IMF-fixdate", "Sun, 23 Nov 2025 12:02:00 GMT"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d, ok := serverwait.RetryAfter(c.value, now); !ok || d != 2*time.Minute {
					b.Fatalf("Parse(%q) = %v, %v", c.value, d, ok)
				}
			}
		})
	}
}
