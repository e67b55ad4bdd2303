package benchmarks

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// bodySizes are the body sizes of the scenarios.
type bodySizes struct {
	small  int // POST from a bytes.Reader: GetBody is set
	stream int // POST from a plain reader, within saferetry's default buffer cap
	file   int // PUT of a regular file
}

// benchSizes are the sizes the benchmarks send. The stream is exactly
// saferetry's default cap (1 MiB), the largest body it keeps.
var benchSizes = bodySizes{small: 1 << 10, stream: 1 << 20, file: 8 << 20}

// testSizes are smaller sizes for the tests that run in CI, on the same
// code paths (the stream is still kept, the file still read by position).
var testSizes = bodySizes{small: 1 << 10, stream: 64 << 10, file: 256 << 10}

// seqHeader carries a logical request's number to /flaky, which fails the
// first two attempts of each number with a 503.
const seqHeader = "X-Bench-Seq"

// server is the loopback server of the benchmarks and tests.
//
//	/get    200 "ok"
//	/drain  reads the request body to its end, then 200 "ok"
//	/flaky  reads the body; 503, 503, then 200 "ok" for each X-Bench-Seq
//
// The server runs in the test's process, so its work and its allocations
// are part of every benchmark figure, the same for every contender.
type server struct {
	*httptest.Server

	// record, when set, makes /flaky remember every attempt it saw; the
	// benchmarks leave it off.
	record bool

	mu       sync.Mutex
	attempts map[uint64]int        // attempts seen per sequence number, until its 200 (all of them when recording)
	seen     map[uint64][]received // when recording: every attempt per sequence number
}

// received is what /flaky saw of one attempt.
type received struct {
	method string
	key    string // Idempotency-Key
	sum    [sha256.Size]byte
	length int64
}

func newServer(tb testing.TB) *server {
	tb.Helper()
	s := &server{attempts: make(map[uint64]int), seen: make(map[uint64][]received)}
	mux := http.NewServeMux()
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})
	mux.HandleFunc("/drain", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	})
	mux.HandleFunc("/flaky", s.flaky)
	s.Server = httptest.NewServer(mux)
	tb.Cleanup(s.Close)
	return s
}

func (s *server) flaky(w http.ResponseWriter, r *http.Request) {
	var rec received
	if s.record {
		h := sha256.New()
		rec.length, _ = io.Copy(h, r.Body)
		h.Sum(rec.sum[:0])
		rec.method, rec.key = r.Method, r.Header.Get("Idempotency-Key")
	} else {
		_, _ = io.Copy(io.Discard, r.Body)
	}
	seq, err := strconv.ParseUint(r.Header.Get(seqHeader), 10, 64)
	if err != nil {
		http.Error(w, "missing "+seqHeader, http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	n := s.attempts[seq] + 1
	switch {
	case s.record:
		s.attempts[seq] = n
		s.seen[seq] = append(s.seen[seq], rec)
	case n < 3:
		s.attempts[seq] = n
	default:
		delete(s.attempts, seq)
	}
	s.mu.Unlock()
	if n < 3 {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "unavailable")
		return
	}
	_, _ = io.WriteString(w, "ok")
}

// attemptsOf returns what /flaky saw for seq, when recording.
func (s *server) attemptsOf(seq uint64) []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.seen[seq]...)
}

// scenario builds the requests of one benchmark. Each call of request
// returns a new request, whose body (if any) has not been read.
type scenario struct {
	name string
	path string // on the server
	// bytes is the body size, for b.SetBytes; 0 for none.
	bytes int64
	// request returns a fresh request to url.
	request func(tb testing.TB, url string) *http.Request
}

func newRequest(tb testing.TB, method, url string, body io.Reader) *http.Request {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		tb.Fatal(err)
	}
	return req
}

// streamReader yields its data through Read alone: no WriteTo, ReadAt,
// Seek or Len, so no library can tell its size or replay it.
type streamReader struct{ data []byte }

func (r *streamReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// scenarios returns the request shapes the benchmarks and tests share,
// with bodies of the given sizes. dir holds the file of the PUT scenario.
func scenarios(tb testing.TB, dir string, size bodySizes) []scenario {
	small := bytes.Repeat([]byte("p"), size.small)
	stream := bytes.Repeat([]byte("s"), size.stream)
	file := filepath.Join(dir, "body")
	if err := os.WriteFile(file, bytes.Repeat([]byte("f"), size.file), 0o600); err != nil {
		tb.Fatal(err)
	}
	return []scenario{
		{name: "GET", path: "/get", request: func(tb testing.TB, url string) *http.Request {
			return newRequest(tb, http.MethodGet, url, nil)
		}},
		{name: "POSTSmall", path: "/drain", bytes: int64(size.small), request: func(tb testing.TB, url string) *http.Request {
			// http.NewRequest sets GetBody for a *bytes.Reader.
			return newRequest(tb, http.MethodPost, url, bytes.NewReader(small))
		}},
		{name: "POSTStream", path: "/drain", bytes: int64(size.stream), request: func(tb testing.TB, url string) *http.Request {
			req := newRequest(tb, http.MethodPost, url, io.NopCloser(&streamReader{data: stream}))
			req.ContentLength = int64(len(stream)) // declared, as a caller relaying a body of known size does
			return req
		}},
		{name: "PUTFile", path: "/drain", bytes: int64(size.file), request: func(tb testing.TB, url string) *http.Request {
			f, err := os.Open(file)
			if err != nil {
				tb.Fatal(err)
			}
			req := newRequest(tb, http.MethodPut, url, f) // the transport closes f
			req.ContentLength = int64(size.file)          // http.NewRequest leaves it unknown for a file
			return req
		}},
	}
}
