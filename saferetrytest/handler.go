package saferetrytest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// errClosed reports that the server is closing.
var errClosed = errors.New("saferetrytest: server closed")

// errFailed reports that a FailBeforeCommit fault failed the request at
// its hold point.
var errFailed = errors.New("saferetrytest: failed before the commit")

// response is an answer the server computed, before a fault delivers it.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) clone() response {
	return response{status: r.status, header: r.header.Clone(), body: slices.Clone(r.body)}
}

// keyEntry is the server's memory of one idempotency key.
type keyEntry struct {
	fingerprint [sha256.Size]byte
	inFlight    bool
	commit      int
	resp        response
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.enter()
	defer s.leave(r.URL.Path)
	f := s.next(r.URL.Path)
	key := s.keyOf(r.Header)
	path := r.URL.Path
	i := s.record(r, key, f.Kind)
	ctx := r.Context()

	if f.Kind == ResetAfterHeaders {
		s.pauseOrAbort(ctx, f)
		resetRequest(w, r)
		return
	}

	body, err := io.ReadAll(r.Body)
	s.update(path, i, func(rec *Record) {
		rec.Body = body
		rec.BodyRead = err == nil
	})
	if err != nil {
		panic(http.ErrAbortHandler) // the client went away mid-body
	}

	switch f.Kind {
	case Respond:
		s.pauseOrAbort(ctx, f)
		status := f.Status
		if status == 0 {
			status = http.StatusServiceUnavailable
		}
		writeResponse(w, f.apply(textResponse(status, http.StatusText(status)+"\n")))
		return
	case Hang:
		if s.arrive(ctx, f) == nil {
			s.wait(ctx, nil, 0)
		}
		// A hanging server never answers, even a client that has gone:
		// over TLS, Go's transport can still read an answer that races
		// its own cancellation, and would return it.
		panic(http.ErrAbortHandler)
	}

	resp, err := s.process(ctx, r, i, key, body, f)
	switch {
	case err == errFailed && f.Status != 0:
		writeResponse(w, f.apply(textResponse(f.Status, http.StatusText(f.Status)+"\n")))
		return
	case err == errFailed:
		resetRequest(w, r)
		return
	case err != nil:
		panic(http.ErrAbortHandler) // dropped while held
	}

	switch f.Kind {
	case ResetAfterCommit:
		s.pauseOrAbort(ctx, f)
		resetRequest(w, r)
	case ResetMidResponse, Truncate:
		s.cutResponse(ctx, w, r, resp, f)
	case SlowBody:
		s.trickle(ctx, w, resp, f)
	default:
		writeResponse(w, resp)
	}
}

// keyOf returns the request's idempotency key, "" when it has none.
func (s *Server) keyOf(h http.Header) string {
	for _, name := range s.keyHeaders {
		if v := h.Get(name); v != "" {
			return v
		}
	}
	return ""
}

// process does what a normal server does with the request: a read is
// answered; a write commits a side effect, deduplicated by key. A Pass
// fault pauses here: before the commit (after a new key was marked in
// flight), or before answering a read or a request the key store answers.
// The returned error is errClosed or the context's error when the pause
// was cut short; nothing was committed. A FailBeforeCommit fault pauses
// at the same point, then returns errFailed, having committed nothing and
// freed the key it marked.
func (s *Server) process(ctx context.Context, r *http.Request, i int, key string, body []byte, f Fault) (response, error) {
	path := r.URL.Path
	hold := func() error {
		switch f.Kind {
		case Pass:
			return s.pause(ctx, f)
		case FailBeforeCommit:
			if err := s.pause(ctx, f); err != nil {
				return err
			}
			return errFailed
		}
		return nil
	}
	if isSafe(r.Method) {
		if err := hold(); err != nil {
			return response{}, err
		}
		return f.apply(textResponse(http.StatusOK, "ok "+r.Method+" "+path+"\n")), nil
	}

	var entry *keyEntry
	if key != "" {
		fp := fingerprint(r.Method, path, body)
		s.mu.Lock()
		e := s.keys[key]
		if e == nil {
			entry = &keyEntry{fingerprint: fp, inFlight: true}
			s.keys[key] = entry
			s.mu.Unlock()
		} else {
			if f.Kind == FailBeforeCommit {
				s.mu.Unlock()
				return response{}, hold() // fails, whatever the key store says
			}
			// Answered from the key store: nothing is committed.
			rec := &s.paths[path].Requests[i]
			var resp response
			switch {
			case e.fingerprint != fp:
				rec.Effect = KeyReused
				resp = problem(http.StatusUnprocessableEntity,
					"This Idempotency-Key was already used with a different request payload")
			case e.inFlight:
				rec.Effect = InProgress
				resp = problem(http.StatusConflict,
					"A request with this Idempotency-Key is still being processed")
			default:
				rec.Effect, rec.Commit = Replayed, e.commit
				resp = e.resp.clone()
				resp.header.Set("Idempotent-Replayed", "true")
			}
			s.mu.Unlock()
			if err := hold(); err != nil {
				return response{}, err
			}
			return f.apply(resp), nil
		}
	}

	if err := hold(); err != nil {
		if entry != nil {
			s.mu.Lock()
			delete(s.keys, key) // never committed: the key is free again
			s.mu.Unlock()
		}
		return response{}, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.paths[path]
	ps.Commits++
	n := ps.Commits
	rec := &ps.Requests[i]
	rec.Effect, rec.Commit = Committed, n
	resp := textResponse(http.StatusOK, fmt.Sprintf("committed %s %s #%d\n", r.Method, path, n))
	resp.header.Set("X-Commit", strconv.Itoa(n))
	resp = f.apply(resp)
	if entry != nil {
		entry.inFlight = false
		entry.commit = n
		entry.resp = resp.clone()
	}
	return resp, nil
}

// cutResponse sends the status, headers and part of the body of resp,
// pauses if asked, then resets (ResetMidResponse) or ends (Truncate).
func (s *Server) cutResponse(ctx context.Context, w http.ResponseWriter, r *http.Request, resp response, f Fault) {
	if len(resp.body) < 2 {
		resp.body = []byte("a body long enough to be cut\n")
	}
	cut := f.Cut
	if cut <= 0 || cut >= len(resp.body) {
		cut = len(resp.body) / 2
	}
	if r.ProtoMajor == 2 {
		h := w.Header()
		for k, v := range resp.header {
			h[k] = v
		}
		h.Set("Content-Length", strconv.Itoa(len(resp.body)))
		w.WriteHeader(resp.status)
		_, _ = w.Write(resp.body[:cut])
		_ = http.NewResponseController(w).Flush()
		s.pauseOrAbort(ctx, f)
		if f.Kind == ResetMidResponse {
			panic(http.ErrAbortHandler) // RST_STREAM
		}
		return // END_STREAM short of Content-Length
	}
	conn, bufrw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	s.mu.Lock()
	if s.closing() {
		s.mu.Unlock()
		abort(conn)
		return
	}
	s.hijacked[conn] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.hijacked, conn)
		s.mu.Unlock()
	}()
	fmt.Fprintf(bufrw, "HTTP/1.1 %d %s\r\n", resp.status, http.StatusText(resp.status))
	resp.header.Del("Content-Length")
	_ = resp.header.Write(bufrw)
	fmt.Fprintf(bufrw, "Content-Length: %d\r\n\r\n", len(resp.body))
	_, _ = bufrw.Write(resp.body[:cut])
	_ = bufrw.Flush()
	// Once hijacked, the request's context no longer follows the client:
	// only Release or Close end the pause.
	err = s.pause(ctx, f)
	if f.Kind == ResetMidResponse || err != nil {
		abort(conn)
		return
	}
	_ = conn.Close()
}

// trickle sends resp's body in pieces of f.Chunk bytes paced by f.Step or
// f.Delay.
func (s *Server) trickle(ctx context.Context, w http.ResponseWriter, resp response, f Fault) {
	chunk := f.Chunk
	if chunk <= 0 {
		chunk = 8
	}
	delay := f.Delay
	if f.Step == nil && delay <= 0 {
		delay = 100 * time.Millisecond
	}
	h := w.Header()
	for k, v := range resp.header {
		h[k] = v
	}
	h.Set("Content-Length", strconv.Itoa(len(resp.body)))
	w.WriteHeader(resp.status)
	rc := http.NewResponseController(w)
	body := resp.body
	for first := true; ; first = false {
		if !first {
			if err := s.wait(ctx, f.Step, delay); err != nil {
				panic(http.ErrAbortHandler)
			}
		}
		n := min(chunk, len(body))
		if _, err := w.Write(body[:n]); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		body = body[n:]
		if first {
			if err := s.arrive(ctx, f); err != nil {
				panic(http.ErrAbortHandler)
			}
		}
		if len(body) == 0 {
			return
		}
	}
}

// pause signals f.Arrived and waits for f.Release.
func (s *Server) pause(ctx context.Context, f Fault) error {
	if err := s.arrive(ctx, f); err != nil {
		return err
	}
	if f.Release == nil {
		return nil
	}
	return s.wait(ctx, f.Release, 0)
}

// pauseOrAbort pauses; if the pause is cut short (the client left, the
// server is closing) it aborts the handler, which then sends nothing more:
// it closes the connection over HTTP/1.x, resets the stream over HTTP/2.
func (s *Server) pauseOrAbort(ctx context.Context, f Fault) {
	if err := s.pause(ctx, f); err != nil {
		panic(http.ErrAbortHandler)
	}
}

// arrive sends on f.Arrived, if set.
func (s *Server) arrive(ctx context.Context, f Fault) error {
	if f.Arrived == nil {
		return nil
	}
	select {
	case f.Arrived <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return errClosed
	}
}

// wait blocks until ch yields (if not nil), d elapses (if positive), the
// context is done or the server closes. With neither ch nor d it waits for
// the last two only.
func (s *Server) wait(ctx context.Context, ch <-chan struct{}, d time.Duration) error {
	var tick <-chan time.Time
	if d > 0 && ch == nil {
		t := time.NewTimer(d)
		defer t.Stop()
		tick = t.C
	}
	select {
	case <-ch:
		return nil
	case <-tick:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return errClosed
	}
}

func (s *Server) closing() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// resetRequest cuts the request off: a TCP RST of its connection over
// HTTP/1.x, RST_STREAM(INTERNAL_ERROR) of its stream over HTTP/2.
func resetRequest(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 2 {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	abort(conn)
}

// apply sets the fault's header and body overrides on resp.
func (f Fault) apply(resp response) response {
	for k, v := range f.Header {
		resp.header[http.CanonicalHeaderKey(k)] = slices.Clone(v)
	}
	if f.Body != nil {
		resp.body = slices.Clone(f.Body)
	}
	return resp
}

func writeResponse(w http.ResponseWriter, resp response) {
	h := w.Header()
	for k, v := range resp.header {
		h[k] = v
	}
	h.Set("Content-Length", strconv.Itoa(len(resp.body)))
	w.WriteHeader(resp.status)
	_, _ = w.Write(resp.body)
}

func textResponse(status int, body string) response {
	return response{
		status: status,
		header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
		body:   []byte(body),
	}
}

// problem is an RFC 9457 problem document, as the idempotency-key draft
// suggests for its 409 and 422.
func problem(status int, title string) response {
	body := fmt.Sprintf(`{"type":"https://datatracker.ietf.org/doc/draft-ietf-httpapi-idempotency-key-header/","title":%q,"status":%d}`+"\n", title, status)
	return response{
		status: status,
		header: http.Header{"Content-Type": {"application/problem+json"}},
		body:   []byte(body),
	}
}

func fingerprint(method, path string, body []byte) [sha256.Size]byte {
	h := sha256.New()
	io.WriteString(h, method)
	h.Write([]byte{0})
	io.WriteString(h, path)
	h.Write([]byte{0})
	h.Write(body)
	var fp [sha256.Size]byte
	h.Sum(fp[:0])
	return fp
}

func isSafe(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// RefusedURL returns an http URL on a loopback port where nothing listens,
// so that dialling it fails with ECONNREFUSED. It binds a port and
// releases it; another process could take the port in between, which on a
// test machine does not happen in practice.
func RefusedURL() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("saferetrytest: %w", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return "", fmt.Errorf("saferetrytest: %w", err)
	}
	return "http://" + addr, nil
}
