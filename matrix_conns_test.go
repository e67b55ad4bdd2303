package saferetry_test

// What sits between a matrix cell's stack and the fault server: the
// connections of the cells with an attempt timeout, dialed before the
// request starts; the held header writes of the slow-headers cells; and a
// base that fires no httptrace hooks for the no-trace cells.

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/saferetry/saferetry/internal/testutil"
)

// cellBase returns what the tracing base sends through: the cell's
// transport, whose connections are dialed ahead for an attempt timeout and
// hold their header writes in a slow-headers cell, and which sees no
// httptrace in a no-trace cell.
func (r *cellRun) cellBase(t *testing.T) http.RoundTripper {
	r.releaseHeaders = func() {}
	var base http.RoundTripper = r.tr
	if r.c.noTrace {
		base = untracedBase{base}
	}
	if !r.c.fault.attemptTimeout {
		return base
	}
	var release chan struct{}
	if r.c.fault.slowHeaders {
		release = make(chan struct{})
	}
	r.dialAhead(t, release)
	if release == nil {
		return base
	}
	held := &heldFirstAttempt{base: base, release: release, settle: func() {
		ctx, cancel := context.WithTimeout(context.Background(), testutil.SignalTimeout)
		defer cancel()
		if _, err := r.srv.Wait(ctx, r.path, 1); err != nil {
			t.Errorf("the first attempt's request: %v", err)
		}
	}}
	r.releaseHeaders = held.end
	return held
}

// cellConns is how many connections a timed cell dials ahead: one for the
// attempt that times out and one for its retry.
const cellConns = 2

// dialAhead dials the connections of a cell with an attempt timeout (and,
// over TLS, completes their handshakes) before its request starts, and
// has the transport take them as it asks for new ones. What a timed cell
// tests then happens within the attempt timeout whatever the load: the
// first attempt puts its request on the wire (a dial or a handshake
// starved of CPU would otherwise time out first, and a write not yet sent
// may be retried), and a retry is answered. With release set, every
// connection holds its header writes until release is closed.
func (r *cellRun) dialAhead(t *testing.T, release chan struct{}) {
	addr := strings.TrimPrefix(strings.TrimPrefix(r.srv.URL(), "http://"), "https://")
	var tlsConfig *tls.Config
	if r.tr.TLSClientConfig != nil {
		tlsConfig = r.tr.TLSClientConfig.Clone()
		tlsConfig.NextProtos = []string{"h2", "http/1.1"}
		tlsConfig.ServerName = "127.0.0.1"
	}
	dial := func(ctx context.Context) (net.Conn, error) {
		if tlsConfig != nil {
			return (&tls.Dialer{Config: tlsConfig}).DialContext(ctx, "tcp", addr)
		}
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	var (
		mu    sync.Mutex
		ahead []net.Conn
	)
	for range cellConns {
		c, err := dial(context.Background())
		if err != nil {
			t.Fatalf("dialing ahead: %v", err)
		}
		ahead = append(ahead, c)
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range ahead {
			c.Close() // never taken
		}
	})
	dialer := func(ctx context.Context, _, _ string) (net.Conn, error) {
		mu.Lock()
		var c net.Conn
		if len(ahead) > 0 {
			c, ahead = ahead[0], ahead[1:]
		}
		mu.Unlock()
		if c == nil {
			var err error
			if c, err = dial(ctx); err != nil {
				return nil, err
			}
		}
		if release != nil {
			return testutil.NewSlowHeadersConn(c, release, r.c.proto == "h2c"), nil
		}
		return c, nil
	}
	if tlsConfig != nil {
		r.tr.DialTLSContext = dialer
	} else {
		r.tr.DialContext = dialer
	}
}

// heldFirstAttempt is the base of a slow-headers cell. Once the first
// attempt has been given up (its header write still held), it ends the
// hold. Before a retry, it waits for the server to finish with the first
// attempt's request: the retry then meets a settled key store (a replay,
// not a 409 for a key still in flight), whatever the machine's speed. It
// does not wait before the stack has judged the first attempt, which must
// not depend on what the abandoned write does once released (over HTTP/2
// it fires httptrace's WroteHeaders then, too late to tell anything).
type heldFirstAttempt struct {
	base     http.RoundTripper
	release  chan struct{}
	settle   func()
	attempts atomic.Int32
	ended    sync.Once
	settled  sync.Once
}

func (h *heldFirstAttempt) RoundTrip(r *http.Request) (*http.Response, error) {
	if h.attempts.Add(1) > 1 {
		h.settled.Do(h.settle)
	}
	resp, err := h.base.RoundTrip(r)
	h.end()
	return resp, err
}

// end ends the hold, if it has not ended.
func (h *heldFirstAttempt) end() { h.ended.Do(func() { close(h.release) }) }

// untracedBase calls its base with a context that hides the request's
// httptrace.ClientTrace: a base that fires no trace hooks, as another HTTP
// stack or a test double would be.
type untracedBase struct{ base http.RoundTripper }

func (b untracedBase) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := b.base.RoundTrip(r.WithContext(untracedContext{r.Context()}))
	if resp != nil {
		resp.Request = r
	}
	return resp, err
}

// untracedContext is its parent without a client trace.
type untracedContext struct{ context.Context }

func (c untracedContext) Value(key any) any {
	v := c.Context.Value(key)
	if _, ok := v.(*httptrace.ClientTrace); ok {
		return nil
	}
	return v
}
