package saferetry

import (
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"

	"github.com/saferetry/saferetry/internal/testutil"
)

// script is a fake base transport that answers each attempt from a list
// of outcomes (a status, or an error) and remembers what it received.
type script struct {
	mu       sync.Mutex
	outcomes []outcome
	got      []received
	bodies   []*testutil.TrackedBody
}

type outcome struct {
	status  int
	header  http.Header
	err     error
	body    string
	unsized bool // ContentLength -1: the length is not announced
}

type received struct {
	method string
	key    string
	body   string
	req    *http.Request
}

func (s *script) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body.Close()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, received{method: req.Method, key: req.Header.Get("Idempotency-Key"), body: string(body), req: req})
	if len(s.outcomes) == 0 {
		return nil, errors.New("script: no more outcomes")
	}
	o := s.outcomes[0]
	if len(s.outcomes) > 1 {
		s.outcomes = s.outcomes[1:]
	}
	if o.err != nil {
		return nil, o.err
	}
	tb := testutil.NewTrackedBody(strings.NewReader(o.body))
	s.bodies = append(s.bodies, tb)
	h := o.header
	if h == nil {
		h = http.Header{}
	}
	length := int64(len(o.body))
	if o.unsized {
		length = -1
	}
	return &http.Response{StatusCode: o.status, Header: h, Body: tb, Request: req, ContentLength: length}, nil
}

func (s *script) attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

func statuses(codes ...int) []outcome {
	out := make([]outcome, len(codes))
	for i, c := range codes {
		out[i] = outcome{status: c, body: http.StatusText(c)}
	}
	return out
}

// recordingServer is an httptest server that answers from a list of
// statuses and records every request it received, byte for byte.
type recordingServer struct {
	*httptest.Server
	mu       sync.Mutex
	statuses []int
	header   http.Header
	got      []received
}

func newRecordingServer(t *testing.T, statuses ...int) *recordingServer {
	t.Helper()
	rs := &recordingServer{statuses: statuses}
	rs.Server = httptest.NewServer(http.HandlerFunc(rs.serve))
	t.Cleanup(rs.Close)
	return rs
}

func (rs *recordingServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rs.mu.Lock()
	rs.got = append(rs.got, received{method: r.Method, key: r.Header.Get("Idempotency-Key"), body: string(body)})
	status := http.StatusOK
	if len(rs.statuses) > 0 {
		status = rs.statuses[0]
		rs.statuses = rs.statuses[1:]
	}
	for k, v := range rs.header {
		w.Header()[k] = v
	}
	rs.mu.Unlock()
	w.WriteHeader(status)
	io.WriteString(w, http.StatusText(status))
}

func (rs *recordingServer) received() []received {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]received(nil), rs.got...)
}

// tlsVerifyError wraps a certificate failure the way crypto/tls reports it.
type tlsVerifyError = tls.CertificateVerificationError

// httptraceFrom returns the client trace in r's context, if any.
func httptraceFrom(r *http.Request) *httptrace.ClientTrace {
	return httptrace.ContextClientTrace(r.Context())
}
