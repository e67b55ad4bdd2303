package faultserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
)

// Server is a loopback HTTP server that injects scripted faults, built on
// net/http/httptest. Create it with [New] and stop it with [Server.Close].
// Its methods are safe for concurrent use.
type Server struct {
	ts         *httptest.Server
	listener   *resetListener
	keyHeaders []string
	done       chan struct{} // closed by Close: releases every paused request
	closeOnce  sync.Once

	mu       sync.Mutex
	scripts  map[string][]Fault
	paths    map[string]*PathStats
	keys     map[string]*keyEntry
	seq      int
	active   int           // handlers running
	idle     chan struct{} // closed when active drops to 0; nil while 0
	hijacked map[net.Conn]struct{}
}

// Option configures a [Server].
type Option func(*config)

type config struct {
	tls, h2    bool
	keyHeaders []string
	errorLog   *log.Logger
}

// WithTLS serves HTTPS (HTTP/1.1 only) with httptest's certificate, which
// [Server.Client] and [Server.Transport] trust. Default: plain HTTP.
func WithTLS() Option { return func(c *config) { c.tls = true } }

// WithHTTP2 serves HTTP/2 over TLS: the server offers only ALPN "h2", as
// httptest does, and the clients of [Server.Client] and [Server.Transport]
// take it. Default: plain HTTP/1.1.
func WithHTTP2() Option { return func(c *config) { c.tls, c.h2 = true, true } }

// WithKeyHeader adds a header name whose value the server treats as an
// idempotency key, besides Idempotency-Key and X-Idempotency-Key.
func WithKeyHeader(name string) Option {
	return func(c *config) { c.keyHeaders = append(c.keyHeaders, http.CanonicalHeaderKey(name)) }
}

// WithErrorLog sets the logger for the underlying http.Server's errors
// (hijacked writes, aborted handlers, TLS handshakes cut short). Default:
// discarded, because the faults provoke such errors on purpose.
func WithErrorLog(l *log.Logger) Option { return func(c *config) { c.errorLog = l } }

// New starts a Server on a loopback port. Like httptest.NewServer, it
// panics if it cannot listen.
func New(opts ...Option) *Server {
	cfg := config{
		keyHeaders: []string{"Idempotency-Key", "X-Idempotency-Key"},
		errorLog:   log.New(io.Discard, "", 0),
	}
	for _, o := range opts {
		o(&cfg)
	}
	s := &Server{
		keyHeaders: cfg.keyHeaders,
		done:       make(chan struct{}),
		scripts:    make(map[string][]Fault),
		paths:      make(map[string]*PathStats),
		keys:       make(map[string]*keyEntry),
		hijacked:   make(map[net.Conn]struct{}),
	}
	s.ts = httptest.NewUnstartedServer(http.HandlerFunc(s.serveHTTP))
	s.ts.Config.ErrorLog = cfg.errorLog
	s.listener = &resetListener{Listener: s.ts.Listener}
	s.ts.Listener = s.listener
	s.ts.EnableHTTP2 = cfg.h2
	if cfg.tls {
		s.ts.StartTLS()
	} else {
		s.ts.Start()
	}
	return s
}

// URL returns the base URL, "http://127.0.0.1:port" or "https://...".
func (s *Server) URL() string { return s.ts.URL }

// Client returns an *http.Client that trusts the server's certificate and,
// with [WithHTTP2], speaks HTTP/2. It is shared: Close closes its idle
// connections. Tests that need fresh connections use [Server.Transport].
func (s *Server) Client() *http.Client { return s.ts.Client() }

// Transport returns a new *http.Transport configured like the one of
// [Server.Client], with its own connection pool. The caller closes its idle
// connections.
func (s *Server) Transport() *http.Transport {
	tr := &http.Transport{ForceAttemptHTTP2: s.ts.EnableHTTP2}
	if cert := s.ts.Certificate(); cert != nil {
		pool := x509.NewCertPool()
		pool.AddCert(cert)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return tr
}

// Close releases every paused or hanging request (each is aborted), closes
// the listener and every connection, and waits for the handlers to return.
// It is safe to call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.listener.closeResets()
		s.mu.Lock()
		for c := range s.hijacked {
			abort(c) // httptest no longer tracks it
		}
		s.mu.Unlock()
		s.ts.Close()
		_ = s.WaitIdle(context.Background()) // handlers of hijacked connections
		s.listener.wait()
	})
}

// Script queues faults for the next requests to path (compared with the
// request's URL.Path), after any already queued. A request to a path
// with nothing queued is served normally.
func (s *Server) Script(path string, faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scripts[path] = append(s.scripts[path], faults...)
}

// ResetConns makes the server reset the next n connections it accepts
// without reading the request. It waits for the client's first bytes, so
// the reset never races the client's dial: over TLS these are the
// ClientHello, so the handshake fails and the client has provably written
// nothing of its request; over plain HTTP the client has written its
// request, which the server never reads. Connections already open (a
// client's keep-alive pool) are not affected.
func (s *Server) ResetConns(n int) { s.listener.add(n) }

// WaitIdle blocks until no request is being handled (every handler has
// returned, so its record is final) or ctx is done. A test calls it after
// its client gave up on a request, before looking at [Server.Stats] or
// reusing an idempotency key.
func (s *Server) WaitIdle(ctx context.Context) error {
	s.mu.Lock()
	if s.active == 0 {
		s.mu.Unlock()
		return nil
	}
	idle := s.idle
	s.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// enter and leave count running handlers for WaitIdle.
func (s *Server) enter() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active == 0 {
		s.idle = make(chan struct{})
	}
	s.active++
}

func (s *Server) leave() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active--
	if s.active == 0 {
		close(s.idle)
		s.idle = nil
	}
}

// next pops the fault for a request to path.
func (s *Server) next(path string) Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.scripts[path]
	if len(q) == 0 {
		return Fault{}
	}
	f := q[0]
	switch {
	case f.Count < 0:
		return f
	case f.Count > 1:
		q[0].Count--
	default:
		q = q[1:]
		if len(q) == 0 {
			delete(s.scripts, path)
		} else {
			s.scripts[path] = q
		}
	}
	return f
}

// Effect is what the server did with a request.
type Effect int

const (
	// NoEffect: nothing was processed (a read, a fault that acted before
	// processing, a request dropped while held).
	NoEffect Effect = iota
	// Committed: a write committed its side effect.
	Committed
	// Replayed: a keyed write got the stored response of the first request
	// with its key; nothing new was committed.
	Replayed
	// InProgress: a keyed write got 409 because the first request with its
	// key was still in flight.
	InProgress
	// KeyReused: a keyed write got 422 because its key had been used with
	// a different method, path or body.
	KeyReused
)

var effectNames = [...]string{"NoEffect", "Committed", "Replayed", "InProgress", "KeyReused"}

// String returns the constant's name.
func (e Effect) String() string {
	if e >= 0 && int(e) < len(effectNames) {
		return effectNames[e]
	}
	return "Effect(" + strconv.Itoa(int(e)) + ")"
}

// Record is one request as the server received it.
type Record struct {
	Seq    int    // arrival order across the server, from 1
	Method string // request method
	Path   string // URL path
	Proto  string // "HTTP/1.1" or "HTTP/2.0"
	Header http.Header
	// Key is the idempotency key, "" when the request had none.
	Key string
	// Body is what the server read of the body, byte for byte.
	Body []byte
	// BodyRead reports whether the body was read to its end without error
	// (false for ResetAfterHeaders, or a body cut short by the client).
	BodyRead bool
	// Fault is the kind of fault the request met (Pass when none).
	Fault Kind
	// Effect is what the server did with it.
	Effect Effect
	// Commit is the number of the side effect it committed or replayed on
	// its path (1 for the first), 0 when none.
	Commit int
}

// PathStats is what one path received.
type PathStats struct {
	// Requests lists every request in arrival order.
	Requests []Record
	// Commits is the number of side effects committed: what a test checks
	// for "charged exactly once".
	Commits int
}

// Stats is a snapshot of what the server received.
type Stats struct {
	// Paths maps a URL path to what it received; a path that received
	// nothing is absent (its zero PathStats has no requests and no commits).
	Paths map[string]PathStats
	// Conns counts the TCP connections accepted, ResetConns included.
	Conns int
	// ResetConns counts the connections reset by [Server.ResetConns].
	ResetConns int
}

// Stats returns a deep copy of what the server has received so far. A
// request appears once its headers have been read; its record is final
// once the client has seen the response or the fault, or, for a request
// the client gave up on, after [Server.WaitIdle].
func (s *Server) Stats() Stats {
	conns, resets := s.listener.counts()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Paths: make(map[string]PathStats, len(s.paths)), Conns: conns, ResetConns: resets}
	for p, ps := range s.paths {
		cp := PathStats{Commits: ps.Commits, Requests: make([]Record, len(ps.Requests))}
		for i, r := range ps.Requests {
			r.Header = r.Header.Clone()
			r.Body = slices.Clone(r.Body)
			cp.Requests[i] = r
		}
		st.Paths[p] = cp
	}
	return st
}

// Keys returns the idempotency key of each request, in arrival order (""
// for a request without one).
func (p PathStats) Keys() []string {
	keys := make([]string, len(p.Requests))
	for i, r := range p.Requests {
		keys[i] = r.Key
	}
	return keys
}

// Bodies returns the body of each request, in arrival order.
func (p PathStats) Bodies() [][]byte {
	bodies := make([][]byte, len(p.Requests))
	for i, r := range p.Requests {
		bodies[i] = r.Body
	}
	return bodies
}

// record appends a new record for r and returns its index on its path.
func (s *Server) record(r *http.Request, key string, k Kind) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	ps := s.paths[r.URL.Path]
	if ps == nil {
		ps = &PathStats{}
		s.paths[r.URL.Path] = ps
	}
	ps.Requests = append(ps.Requests, Record{
		Seq:    s.seq,
		Method: r.Method,
		Path:   r.URL.Path,
		Proto:  r.Proto,
		Header: r.Header.Clone(),
		Key:    key,
		Fault:  k,
	})
	return len(ps.Requests) - 1
}

// update changes the record at index i of path under the lock.
func (s *Server) update(path string, i int, f func(*Record)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.paths[path].Requests[i])
}

// resetListener counts accepted connections and resets the ones
// ResetConns asked for.
type resetListener struct {
	net.Listener

	mu      sync.Mutex
	pending int                   // connections still to reset
	open    map[net.Conn]struct{} // reset connections waiting for bytes
	conns   int
	resets  int
	closed  bool
	wg      sync.WaitGroup
}

func (l *resetListener) add(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending += n
}

func (l *resetListener) counts() (conns, resets int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conns, l.resets
}

func (l *resetListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		l.conns++
		if l.pending == 0 || l.closed {
			l.mu.Unlock()
			return c, nil
		}
		l.pending--
		l.resets++
		if l.open == nil {
			l.open = make(map[net.Conn]struct{})
		}
		l.open[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.reset(c)
	}
}

// reset waits for the client's first bytes, reads one, and resets c.
func (l *resetListener) reset(c net.Conn) {
	defer l.wg.Done()
	var b [1]byte
	_, _ = c.Read(b[:]) // returns early if Close closes c
	abort(c)
	l.mu.Lock()
	delete(l.open, c)
	l.mu.Unlock()
}

// closeResets closes the connections still waiting to be reset.
func (l *resetListener) closeResets() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for c := range l.open {
		c.Close()
	}
}

func (l *resetListener) wait() { l.wg.Wait() }

// abort closes c with a TCP RST where it can (SO_LINGER 0), or plainly.
func abort(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
