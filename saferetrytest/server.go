package saferetrytest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
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
	h2c        bool
	done       chan struct{} // closed by Close: releases every paused request
	closeOnce  sync.Once

	mu       sync.Mutex
	scripts  map[string][]Fault
	paths    map[string]*PathStats
	handled  map[string]int // requests per path whose handler has returned
	keys     map[string]*keyEntry
	seq      int
	active   int           // handlers running
	idle     chan struct{} // closed when active drops to 0; nil while 0
	changed  chan struct{} // closed and replaced whenever a handler returns
	hijacked map[net.Conn]struct{}
}

// Option configures a [Server] at [New]; a server's protocol and key
// headers do not change once it runs.
type Option func(*config)

type config struct {
	tls, h2    bool
	keyHeaders []string
}

// WithTLS serves HTTPS with httptest's certificate, which the clients of
// [Server.Client] and [Server.Transport] trust. Default: plain HTTP.
func WithTLS() Option { return func(c *config) { c.tls = true } }

// WithHTTP2 serves HTTP/2 only. With [WithTLS] the server offers only ALPN
// "h2", as most HTTP/2 servers are reached; without it, it speaks HTTP/2
// in cleartext with prior knowledge (h2c, RFC 9113 §3.3), which lets a test
// see the frames a client writes. The clients of [Server.Client] and
// [Server.Transport] speak it either way. Default: HTTP/1.1.
func WithHTTP2() Option { return func(c *config) { c.h2 = true } }

// WithKeyHeader adds a header name whose value the server treats as an
// idempotency key, besides the default Idempotency-Key and
// X-Idempotency-Key.
func WithKeyHeader(name string) Option {
	return func(c *config) { c.keyHeaders = append(c.keyHeaders, http.CanonicalHeaderKey(name)) }
}

// New starts a Server on a loopback port. Like httptest.NewServer, it
// panics if it cannot listen.
func New(opts ...Option) *Server {
	cfg := config{keyHeaders: []string{"Idempotency-Key", "X-Idempotency-Key"}}
	for _, o := range opts {
		o(&cfg)
	}
	s := &Server{
		keyHeaders: cfg.keyHeaders,
		h2c:        cfg.h2 && !cfg.tls,
		done:       make(chan struct{}),
		scripts:    make(map[string][]Fault),
		paths:      make(map[string]*PathStats),
		handled:    make(map[string]int),
		keys:       make(map[string]*keyEntry),
		changed:    make(chan struct{}),
		hijacked:   make(map[net.Conn]struct{}),
	}
	s.ts = httptest.NewUnstartedServer(http.HandlerFunc(s.serveHTTP))
	// The faults provoke handler aborts, hijacked writes and handshakes
	// cut short on purpose: their logs would only be noise.
	s.ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.listener = &resetListener{Listener: s.ts.Listener}
	s.ts.Listener = s.listener
	switch {
	case cfg.tls:
		s.ts.EnableHTTP2 = cfg.h2
		s.ts.StartTLS()
	case cfg.h2:
		s.ts.Config.Protocols = h2cProtocols()
		s.ts.Start()
		s.ts.Client().Transport.(*http.Transport).Protocols = h2cProtocols()
	default:
		s.ts.Start()
	}
	return s
}

// URL returns the base URL, "http://127.0.0.1:port" or "https://...".
func (s *Server) URL() string { return s.ts.URL }

// Client returns an *http.Client that trusts the server's certificate and
// speaks its protocol. It is shared: Close closes its idle connections.
// Tests that need fresh connections use [Server.Transport].
func (s *Server) Client() *http.Client { return s.ts.Client() }

// Transport returns a new *http.Transport configured like the one of
// [Server.Client], with its own connection pool, so that a fault meets a
// fresh connection. The caller closes its idle connections.
func (s *Server) Transport() *http.Transport {
	tr := &http.Transport{ForceAttemptHTTP2: s.ts.EnableHTTP2}
	if cert := s.ts.Certificate(); cert != nil {
		pool := x509.NewCertPool()
		pool.AddCert(cert)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	if s.h2c {
		tr.Protocols = h2cProtocols()
	}
	return tr
}

// h2cProtocols is HTTP/2 in cleartext with prior knowledge, alone.
func h2cProtocols() *http.Protocols {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return p
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
		s.waitIdle() // handlers of hijacked connections
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
// nothing of its request; over plain HTTP/1.1 the client has written its
// request, which the server never reads; over HTTP/2 in cleartext, its
// connection preface. Connections already open (a client's keep-alive
// pool) are not affected.
func (s *Server) ResetConns(n int) { s.listener.add(n) }

// Wait blocks until the server has finished handling at least n requests
// to path (their handlers have returned, so their records are final) and
// returns what path received. A test calls it after its client gave up on
// a request, before asserting on what the server did with it: when the
// client returns, the request may still be in a handler, or even on the
// wire. If ctx ends first, or the server is closed with fewer requests
// handled, Wait returns what path received so far and an error.
func (s *Server) Wait(ctx context.Context, path string, n int) (PathStats, error) {
	for {
		s.mu.Lock()
		ps, handled, changed := s.pathStatsLocked(path), s.handled[path], s.changed
		closed := s.closing()
		over := closed && s.active == 0 // nothing more will be handled
		s.mu.Unlock()
		switch {
		case handled >= n:
			return ps, nil
		case over:
			return ps, fmt.Errorf("saferetrytest: %d of %d requests to %s handled: %w", handled, n, path, errClosed)
		}
		done := s.done
		if closed {
			done = nil // only a handler's return can change anything now
		}
		select {
		case <-changed:
		case <-done:
		case <-ctx.Done():
			return ps, fmt.Errorf("saferetrytest: %d of %d requests to %s handled: %w", handled, n, path, ctx.Err())
		}
	}
}

// waitIdle blocks until no request is being handled.
func (s *Server) waitIdle() {
	s.mu.Lock()
	idle := s.idle
	s.mu.Unlock()
	if idle != nil {
		<-idle
	}
}

// enter and leave count running handlers, for Close and Wait.
func (s *Server) enter() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active == 0 {
		s.idle = make(chan struct{})
	}
	s.active++
}

func (s *Server) leave(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handled[path]++
	close(s.changed)
	s.changed = make(chan struct{})
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

// Effect is what the server did with a request. The zero value is
// NoEffect.
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

// Record is one request as the server received it. Records come in
// snapshots: copies the caller owns.
type Record struct {
	Seq    int         // arrival order across the server, from 1
	Method string      // request method
	Path   string      // URL path
	Proto  string      // "HTTP/1.1" or "HTTP/2.0"
	Header http.Header // the request header as received
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

// PathStats is what one path received: a snapshot the caller owns. Its
// zero value is a path that received nothing.
type PathStats struct {
	// Requests lists every request in arrival order.
	Requests []Record
	// Commits is the number of side effects committed: what a test checks
	// for "charged exactly once".
	Commits int
}

// Stats is a snapshot of what the server received, a deep copy the caller
// owns.
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
// the client gave up on, once [Server.Wait] has seen it handled.
func (s *Server) Stats() Stats {
	conns, resets := s.listener.counts()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Paths: make(map[string]PathStats, len(s.paths)), Conns: conns, ResetConns: resets}
	for p := range s.paths {
		st.Paths[p] = s.pathStatsLocked(p)
	}
	return st
}

// pathStatsLocked returns a deep copy of what path received.
func (s *Server) pathStatsLocked(path string) PathStats {
	ps := s.paths[path]
	if ps == nil {
		return PathStats{}
	}
	cp := PathStats{Commits: ps.Commits, Requests: make([]Record, len(ps.Requests))}
	for i, r := range ps.Requests {
		r.Header = r.Header.Clone()
		r.Body = slices.Clone(r.Body)
		cp.Requests[i] = r
	}
	return cp
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
