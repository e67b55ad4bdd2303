package saferetry_test

// The matrix's runner: it sends each cell's request through a fresh stack
// and checks what came back, what was sent and what the server saw
// against the oracle (matrix_expect_test.go).

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/saferetry/saferetry"
	"github.com/saferetry/saferetry/internal/testutil"
	"github.com/saferetry/saferetry/saferetrytest"
)

// matrixAttemptTimeout bounds the attempts of the cells whose first
// attempt only a timeout ends (a hang, a held header write). It must be
// long enough for a healthy attempt, and for the first attempt to put its
// request on the wire, on a loaded machine: 300 ms was not, on a 2-core
// runner shared with several other test runs under -race, until these
// cells dialed their connections ahead (dialAhead). The cells spend it
// asleep, many at once (matrixTimedWorkers).
const matrixAttemptTimeout = time.Second

// matrixEnv holds the servers of the cells: one per protocol and fault
// row, each cell with a path of its own. One server for everything would
// do, but Server.Stats copies every path it holds (bodies included), which
// would make the matrix quadratic. ResetConns acts on the next connection
// whoever opens it, so the cells of the reset-before-read rows run one at
// a time.
type matrixEnv struct {
	refusedURL string
	// sessions lets the HTTP/2 cells resume TLS sessions: each cell has a
	// fresh pool, and full handshakes under -race dominate their cost.
	sessions tls.ClientSessionCache

	mu      sync.Mutex
	servers map[string]*saferetrytest.Server
}

func newMatrixEnv(t *testing.T) *matrixEnv {
	t.Helper()
	refused, err := saferetrytest.RefusedURL()
	if err != nil {
		t.Fatal(err)
	}
	env := &matrixEnv{
		refusedURL: refused,
		sessions:   tls.NewLRUClientSessionCache(64),
		servers:    make(map[string]*saferetrytest.Server),
	}
	t.Cleanup(func() {
		for _, s := range env.servers {
			s.Close()
		}
	})
	return env
}

// server returns the server of the cell's protocol and fault row.
func (env *matrixEnv) server(c cell) *saferetrytest.Server {
	env.mu.Lock()
	defer env.mu.Unlock()
	name := c.proto + "/" + c.fault.name
	s := env.servers[name]
	if s == nil {
		var opts []saferetrytest.Option
		switch c.proto {
		case "h2":
			opts = append(opts, saferetrytest.WithTLS(), saferetrytest.WithHTTP2())
		case "h2c":
			opts = append(opts, saferetrytest.WithHTTP2())
		}
		s = saferetrytest.New(opts...)
		env.servers[name] = s
	}
	return s
}

// cellRun is one cell in progress: its server, path, stack and request.
type cellRun struct {
	c       cell
	want    cellWant
	srv     *saferetrytest.Server
	path    string
	tr      *http.Transport
	base    *tracingBase
	stack   http.RoundTripper
	payload []byte
	req     *http.Request
	caller  callerBody
	// releaseCut lets a held fault go on (see matrixFault.hold).
	releaseCut func()
	// releaseHeaders ends the hold on a slow-headers cell's header write.
	releaseHeaders func()
}

// run sends the cell's request and checks everything listed at the top of
// matrix_test.go.
func (env *matrixEnv) run(t *testing.T, c cell) {
	r := env.start(t, c)
	defer r.releaseCut()
	defer r.releaseHeaders()
	defer r.tr.CloseIdleConnections()
	snap := testutil.Snapshot(r.req)

	resp, err := r.stack.RoundTrip(r.req)
	r.releaseCut()

	r.checkResult(t, resp, err)
	snap.Check(t, r.req)
	attempts := r.checkAttempts(t)
	r.checkClosed(t, attempts, resp)
	r.checkServer(t, attempts)
}

// start scripts the cell's fault and builds its stack and request.
func (env *matrixEnv) start(t *testing.T, c cell) *cellRun {
	r := &cellRun{c: c, want: expectCell(c), srv: env.server(c)}
	r.path = "/" + strings.ReplaceAll(c.name(), "/", "_")
	url := r.srv.URL() + r.path
	if c.fault.refused {
		url = env.refusedURL + r.path
	}
	release := make(chan struct{})
	var releaseOnce sync.Once
	r.releaseCut = func() { releaseOnce.Do(func() { close(release) }) }
	for _, f := range c.fault.script {
		if c.fault.hold {
			f.Release = release
		}
		r.srv.Script(r.path, f)
	}
	if c.fault.resetConn {
		r.srv.ResetConns(1)
	}

	r.tr = r.srv.Transport()
	if r.tr.TLSClientConfig != nil {
		r.tr.TLSClientConfig.ClientSessionCache = env.sessions
	}
	r.base = &tracingBase{base: r.cellBase(t)}
	r.stack = saferetry.New(r.base, cellOptions(c)...)
	r.payload = payloadFor(c.name(), c.body.size())
	r.req, r.caller = newCallerRequest(t, context.Background(), c.method.method, url, c.body, r.payload)
	return r
}

// cellOptions returns the options of the cell's stack.
func cellOptions(c cell) []saferetry.Option {
	opts := []saferetry.Option{
		saferetry.WithBackoff(0, 0),
		saferetry.WithBudget(nil),
		saferetry.WithMaxRetries(matrixRetries),
	}
	if !c.method.keyed {
		opts = append(opts, saferetry.WithKeyMethods())
	}
	if c.body == bodyBigStream {
		opts = append(opts, saferetry.WithMaxBodyBytes(bigBodyCap))
	}
	if c.fault.attemptTimeout {
		opts = append(opts, saferetry.WithAttemptTimeout(matrixAttemptTimeout))
	}
	return opts
}

// checkResult checks what the caller got.
func (r *cellRun) checkResult(t *testing.T, resp *http.Response, err error) {
	t.Helper()
	if !r.want.isResponse() {
		if resp != nil {
			resp.Body.Close()
			t.Fatalf("got status %d; want an error (%+v)", resp.StatusCode, r.want)
		}
		checkError(t, r.c, r.want, err)
		return
	}
	if err != nil {
		t.Fatalf("RoundTrip error %v; want a response (%+v)", err, r.want)
	}
	body, readErr := io.ReadAll(resp.Body)
	if cerr := resp.Body.Close(); cerr != nil {
		t.Errorf("closing the response body: %v", cerr)
	}
	checkResponse(t, r.c, r.want, resp, body, readErr)
}

// checkAttempts checks every attempt, as the stack handed it to the base
// transport, and returns them.
func (r *cellRun) checkAttempts(t *testing.T) []*sentAttempt {
	t.Helper()
	req := r.req
	attempts := r.base.sent()
	if len(attempts) != r.want.attempts {
		t.Errorf("%d attempts; want %d", len(attempts), r.want.attempts)
	}
	key := r.key(attempts)
	for i, a := range attempts {
		if a.method != req.Method || a.url != req.URL.String() || a.contentLength != req.ContentLength || a.key != key {
			t.Errorf("attempt %d: %s %s length %d key %q; want %s %s length %d key %q",
				i+1, a.method, a.url, a.contentLength, a.key, req.Method, req.URL, req.ContentLength, key)
		}
	}
	if r.c.method.keyed && key == "" {
		t.Errorf("no Idempotency-Key on a keyed %s", r.c.method.method)
	}
	if !r.c.method.keyed && key != "" {
		t.Errorf("Idempotency-Key %q on an unkeyed request", key)
	}
	return attempts
}

// key returns the key of the first attempt, "" when there is none.
func (r *cellRun) key(attempts []*sentAttempt) string {
	if len(attempts) == 0 {
		return ""
	}
	return attempts[0].key
}

// checkClosed checks that every discarded response was drained and
// closed, and that every attempt's body and the caller's body were closed
// (net/http may close request bodies after RoundTrip returns, so it waits
// for them).
func (r *cellRun) checkClosed(t *testing.T, attempts []*sentAttempt, resp *http.Response) {
	t.Helper()
	for i, a := range attempts {
		if a.resp != nil && a.resp != resp {
			if !a.respBody.ReadToEOF() || a.respBody.Closes() != 1 {
				t.Errorf("attempt %d: discarded response read to EOF %v, closed %d times; want drained and closed once",
					i+1, a.respBody.ReadToEOF(), a.respBody.Closes())
			}
		}
	}
	r.base.waitBodiesClosed(t)
	r.caller.checkClosedOnce(t)
}

// checkServer checks what the server saw.
func (r *cellRun) checkServer(t *testing.T, attempts []*sentAttempt) {
	t.Helper()
	key, m, want := r.key(attempts), r.c.method, r.want
	r.tr.CloseIdleConnections()
	// A request the stack gave up on may still be in a handler, or on the
	// wire: wait for as many as the server should see.
	ctx, cancel := context.WithTimeout(context.Background(), testutil.SignalTimeout)
	defer cancel()
	ps, err := r.srv.Wait(ctx, r.path, want.recorded)
	if err != nil {
		t.Errorf("waiting for the server: %v", err)
	}
	if r.c.fault.refused {
		ps = saferetrytest.PathStats{}
	}
	if len(ps.Requests) != want.recorded || ps.Commits != want.commits {
		for i, rec := range ps.Requests {
			t.Logf("server request %d: %s, fault %v, effect %v, %d body bytes (whole: %v)",
				i+1, rec.Proto, rec.Fault, rec.Effect, len(rec.Body), rec.BodyRead)
		}
	}
	if len(ps.Requests) != want.recorded {
		t.Errorf("server saw %d requests; want %d", len(ps.Requests), want.recorded)
	}
	for i, rec := range ps.Requests {
		if rec.Key != key {
			t.Errorf("server request %d: key %q; want %q", i+1, rec.Key, key)
		}
		if rec.BodyRead && !bytes.Equal(rec.Body, r.payload) {
			t.Errorf("server request %d: body of %d bytes differs from the caller's %d", i+1, len(rec.Body), len(r.payload))
		}
		if !rec.BodyRead && !bytes.HasPrefix(r.payload, rec.Body) {
			t.Errorf("server request %d: partial body of %d bytes is not a prefix of the caller's", i+1, len(rec.Body))
		}
	}
	if ps.Commits != want.commits {
		t.Errorf("server committed %d times; want %d", ps.Commits, want.commits)
	}
	if m.keyed && ps.Commits > 1 {
		t.Errorf("keyed write committed %d times", ps.Commits)
	}
	if !m.idempotent() && !m.keyed && ps.Commits > 1 {
		t.Errorf("unkeyed %s committed %d times: saferetry duplicated it", m.method, ps.Commits)
	}
}

func checkResponse(t *testing.T, c cell, want cellWant, resp *http.Response, body []byte, readErr error) {
	t.Helper()
	wantStatus := http.StatusOK
	if want.final.kind == answered {
		wantStatus = want.final.status
	}
	if resp.StatusCode != wantStatus {
		t.Errorf("status %d; want %d", resp.StatusCode, wantStatus)
	}
	if got := saferetry.Attempts(resp); got != want.attempts {
		t.Errorf("Attempts = %d; want %d", got, want.attempts)
	}
	if got := saferetry.Stopped(resp); got != want.stop {
		t.Errorf("Stopped = %v; want %v", got, want.stop)
	}
	switch {
	case want.final.kind == cutBody && c.method.method != http.MethodHead:
		if readErr == nil {
			t.Errorf("reading a cut body: %d bytes, no error", len(body))
		}
	case readErr != nil:
		t.Errorf("reading the body: %v", readErr)
	}
	if want.replayed && want.final.kind == served {
		if resp.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("retry of a committed keyed write was not answered from the key store")
		}
	}
}

func checkError(t *testing.T, c cell, want cellWant, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("no error; want one")
	}
	var re *saferetry.RetryError
	typed := errors.As(err, &re)
	if typed != want.typedErr {
		t.Errorf("error %v is a *RetryError: %v; want %v", err, typed, want.typedErr)
	}
	if typed && (re.Attempts != want.attempts || re.Reason != want.stop) {
		t.Errorf("RetryError{Attempts: %d, Reason: %v}; want %d, %v", re.Attempts, re.Reason, want.attempts, want.stop)
	}
	if want.stop == saferetry.StopBodyNotReplayable && !errors.Is(err, saferetry.ErrBodyNotReplayable) {
		t.Errorf("error %v does not match ErrBodyNotReplayable", err)
	}
	if want.final.kind == neverConnected && !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("error %v is not ECONNREFUSED", err)
	}
	if c.fault.attemptTimeout && !errors.Is(err, saferetry.ErrAttemptTimeout) {
		t.Errorf("error %v does not match ErrAttemptTimeout", err)
	}
}
