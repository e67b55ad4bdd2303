package integration

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/saferetry/saferetry"
)

// seenRequest is what a fake server saw of one request: one attempt, from
// the client's point of view.
type seenRequest struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
}

// fakeAPI is a loopback HTTP server that records every request it receives
// and answers through a handler given the request's 1-based arrival number.
type fakeAPI struct {
	*httptest.Server

	mu   sync.Mutex
	seen []seenRequest
}

// answer writes the response to the n-th request the fake received. The
// request's body has already been read into seen.Body.
type answer func(w http.ResponseWriter, r *http.Request, n int, seen seenRequest)

func newFakeAPI(t *testing.T, answer answer) *fakeAPI {
	t.Helper()
	f := &fakeAPI{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("fake API: reading request body: %v", err)
		}
		s := seenRequest{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body}
		f.mu.Lock()
		f.seen = append(f.seen, s)
		n := len(f.seen)
		f.mu.Unlock()
		answer(w, r, n, s)
	}))
	t.Cleanup(f.Close)
	return f
}

// requests returns a copy of what the fake has seen so far.
func (f *fakeAPI) requests() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seenRequest(nil), f.seen...)
}

// failFirst answers each request whose number is not a multiple of every
// with status fail, and the others with 200 and a small JSON document. With
// every = 3 and sequential requests, each logical request fails twice and
// succeeds on its third attempt.
func failFirst(every, fail int) answer {
	return func(w http.ResponseWriter, _ *http.Request, n int, _ seenRequest) {
		w.Header().Set("Content-Type", "application/json")
		if n%every != 0 {
			w.WriteHeader(fail)
			_, _ = io.WriteString(w, `{"error":"transient"}`)
			return
		}
		_, _ = io.WriteString(w, `{"ok":true}`)
	}
}

// always answers every request with the same status.
func always(status int) answer {
	return func(w http.ResponseWriter, _ *http.Request, _ int, _ seenRequest) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, `{"error":"always"}`)
	}
}

// cutConnection ends the connection without an answer, as a server or a
// proxy that crashed after reading the request would.
func cutConnection(t *testing.T, w http.ResponseWriter) {
	t.Helper()
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Errorf("fake API: hijack: %v", err)
		return
	}
	_ = conn.Close()
}

// newBase returns a fresh pooled transport for the bottom of a stack, so no
// test shares http.DefaultTransport; its idle connections are closed when
// the test ends.
func newBase(t *testing.T) *http.Transport {
	t.Helper()
	base := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(base.CloseIdleConnections)
	return base
}

// fastRetries keeps waits short so the suite stays fast; everything else
// is saferetry's default.
var fastRetries = saferetry.WithBackoff(time.Millisecond, 4*time.Millisecond)

// newStack builds saferetry's stack over base with short backoff and
// closes its idle connections when the test ends (through the stack, which
// forwards CloseIdleConnections down to base).
func newStack(t *testing.T, base http.RoundTripper, opts ...saferetry.Option) *saferetry.Stack {
	t.Helper()
	s := saferetry.New(base, append([]saferetry.Option{fastRetries}, opts...)...)
	t.Cleanup(s.CloseIdleConnections)
	return s
}

// assertSameHeader fails unless every request carries the same, non-empty
// value of header, and returns it.
func assertSameHeader(t *testing.T, reqs []seenRequest, header string) string {
	t.Helper()
	if len(reqs) == 0 {
		t.Fatalf("no requests to compare %s on", header)
	}
	want := reqs[0].Header.Values(header)
	if len(want) != 1 || want[0] == "" {
		t.Fatalf("attempt 1: %s = %q, want exactly one non-empty value", header, want)
	}
	for i, r := range reqs[1:] {
		if got := r.Header.Values(header); !reflect.DeepEqual(got, want) {
			t.Errorf("attempt %d: %s = %q, want %q (as attempt 1)", i+2, header, got, want)
		}
	}
	return want[0]
}

// assertBodies fails unless every request carried exactly body.
func assertBodies(t *testing.T, reqs []seenRequest, body []byte) {
	t.Helper()
	for i, r := range reqs {
		if !bytes.Equal(r.Body, body) {
			t.Errorf("attempt %d: body %q, want %q", i+1, r.Body, body)
		}
	}
}

// drainClose reads a response body to its end and closes it.
func drainClose(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("reading response body: %v", err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Errorf("closing response body: %v", err)
	}
	return b
}
