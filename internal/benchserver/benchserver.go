// Package benchserver is the loopback server that saferetry's benchmarks,
// and those of the benchmarks module, send their requests to.
//
//	/get    200 "ok"
//	/drain  reads the request body to its end, then 200 "ok"
//	/flaky  reads the body; 503, 503, then 200 "ok" for each SeqHeader value
//
// The server runs in the benchmark's process, so its work and allocations
// are part of every figure, the same for every transport measured.
package benchserver

import (
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
)

// SeqHeader carries a logical request's number to /flaky, which fails the
// first two attempts of each number.
const SeqHeader = "X-Bench-Seq"

// Received is what /flaky saw of one attempt, when recording.
type Received struct {
	Method string
	Key    string // Idempotency-Key
	Sum    [sha256.Size]byte
	Length int64
}

// Server is a running benchmark server; it is closed when the test ends.
type Server struct {
	*httptest.Server

	record   bool
	mu       sync.Mutex
	attempts map[uint64]int        // attempts per sequence number, until its 200 (all of them when recording)
	seen     map[uint64][]Received // when recording: every attempt per sequence number
}

// New starts a server that records nothing, for benchmarks.
func New(tb testing.TB) *Server { return start(tb, false) }

// NewRecording starts a server whose /flaky remembers every attempt, for
// tests that check what each attempt carried.
func NewRecording(tb testing.TB) *Server { return start(tb, true) }

func start(tb testing.TB, record bool) *Server {
	tb.Helper()
	s := &Server{record: record, attempts: make(map[uint64]int), seen: make(map[uint64][]Received)}
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

func (s *Server) flaky(w http.ResponseWriter, r *http.Request) {
	var rec Received
	if s.record {
		h := sha256.New()
		rec.Length, _ = io.Copy(h, r.Body)
		h.Sum(rec.Sum[:0])
		rec.Method, rec.Key = r.Method, r.Header.Get("Idempotency-Key")
	} else {
		_, _ = io.Copy(io.Discard, r.Body)
	}
	seq, err := strconv.ParseUint(r.Header.Get(SeqHeader), 10, 64)
	if err != nil {
		http.Error(w, "missing "+SeqHeader, http.StatusBadRequest)
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

// Attempts returns what /flaky saw for seq, when recording.
func (s *Server) Attempts(seq uint64) []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.seen[seq]...)
}

// StreamReader yields Data through Read alone: no WriteTo, ReadAt, Seek or
// Len, so neither net/http nor a retry library can tell its size or replay
// it without keeping a copy.
type StreamReader struct{ Data []byte }

func (r *StreamReader) Read(p []byte) (int, error) {
	if len(r.Data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.Data)
	r.Data = r.Data[n:]
	return n, nil
}
