package saferetry_test

// What the matrix, the HTTP/2 resend tests and the cancellation tests use
// to build a caller's request and watch what the stack did with it.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/saferetry/saferetry/internal/testutil"
)

// payloadFor returns n pseudo-random bytes, different for every cell.
func payloadFor(name string, n int) []byte {
	p := make([]byte, n)
	rand.NewChaCha8(sha256.Sum256([]byte(name))).Read(p)
	return p
}

// callerBody keeps what is needed to check that the caller's body was
// closed exactly once.
type callerBody struct {
	counted *testutil.TrackedBody // nil for no body and for the file
	file    *os.File
}

// newCallerRequest builds the caller's request with a body of the given
// kind holding payload. The stream kinds are a TrackedBody: an opaque
// stream (Read and Close only) that counts its closes.
func newCallerRequest(t *testing.T, ctx context.Context, method, url string, kind bodyKind, payload []byte) (*http.Request, callerBody) {
	t.Helper()
	var (
		body   io.Reader
		caller callerBody
	)
	switch kind {
	case bodyBytes:
		body = bytes.NewReader(payload)
	case bodyFile:
		name := filepath.Join(t.TempDir(), "body")
		if err := os.WriteFile(name, payload, 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		body, caller.file = f, f
	case bodyStream, bodyBigStream:
		caller.counted = testutil.NewTrackedBody(bytes.NewReader(payload))
		body = caller.counted
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	switch kind {
	case bodyBytes:
		// Keep GetBody (the replay path under test); count the closes
		// of the body itself.
		caller.counted = testutil.NewTrackedBody(req.Body)
		req.Body = caller.counted
	case bodyFile, bodyBigStream:
		req.ContentLength = int64(len(payload))
	}
	req.Header.Set("X-Caller", "matrix")
	return req, caller
}

// checkClosedOnce waits for the caller's body to be closed, then checks it
// was closed exactly once. A file is checked by closing it again, which
// fails if the stack closed it.
func (c callerBody) checkClosedOnce(t *testing.T) {
	t.Helper()
	switch {
	case c.counted != nil:
		testutil.WaitSignal(t, c.counted.Closed(), "the caller's body closed")
		if n := c.counted.Closes(); n != 1 {
			t.Errorf("caller's body closed %d times; want 1", n)
		}
	case c.file != nil:
		if err := c.file.Close(); !errors.Is(err, os.ErrClosed) {
			t.Errorf("caller's file was not closed by the stack (closing it again: %v)", err)
		}
	}
}

// tracingBase sits between the stack and the real transport. It records
// each attempt as the stack sent it; wraps the attempt's body, and every
// body net/http gets from GetBody, to learn when net/http closed them; and
// wraps each response body to learn whether the stack drained and closed
// the ones it discarded.
type tracingBase struct {
	base http.RoundTripper

	mu       sync.Mutex
	attempts []*sentAttempt
	bodies   []*closeSignal
}

type sentAttempt struct {
	method, url   string
	key           string
	contentLength int64
	resp          *http.Response
	respBody      *testutil.TrackedBody
}

func (b *tracingBase) RoundTrip(req *http.Request) (*http.Response, error) {
	a := &sentAttempt{
		method:        req.Method,
		url:           req.URL.String(),
		key:           req.Header.Get("Idempotency-Key"),
		contentLength: req.ContentLength,
	}
	if req.Body != nil && req.Body != http.NoBody {
		r2 := *req // a RoundTripper must not modify its request
		r2.Body = b.watch(req.Body)
		if getBody := req.GetBody; getBody != nil {
			r2.GetBody = func() (io.ReadCloser, error) {
				rc, err := getBody()
				if err != nil {
					return nil, err
				}
				return b.watch(rc), nil
			}
		}
		req = &r2
	}
	resp, err := b.base.RoundTrip(req)
	if resp != nil {
		a.respBody = testutil.NewTrackedBody(resp.Body)
		resp.Body = a.respBody
		a.resp = resp
	}
	b.mu.Lock()
	b.attempts = append(b.attempts, a)
	b.mu.Unlock()
	return resp, err
}

func (b *tracingBase) watch(rc io.ReadCloser) io.ReadCloser {
	cs := &closeSignal{ReadCloser: rc, done: make(chan struct{})}
	b.mu.Lock()
	b.bodies = append(b.bodies, cs)
	b.mu.Unlock()
	return cs
}

func (b *tracingBase) CloseIdleConnections() {
	if c, ok := b.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (b *tracingBase) sent() []*sentAttempt {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*sentAttempt(nil), b.attempts...)
}

// waitBodiesClosed waits until net/http has closed every request body it
// read from (it may do so after RoundTrip returned). A body it asked
// GetBody for and never read is not waited for: net/http drops some of
// those without closing them.
func (b *tracingBase) waitBodiesClosed(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	bodies := append([]*closeSignal(nil), b.bodies...)
	b.mu.Unlock()
	for i, cs := range bodies {
		if cs.used.Load() {
			testutil.WaitSignal(t, cs.done, fmt.Sprintf("request body %d closed by net/http", i+1))
		}
	}
}

// closeSignal records whether the body it wraps was read, and closes done
// once it has been closed.
type closeSignal struct {
	io.ReadCloser
	used atomic.Bool
	once sync.Once
	done chan struct{}
}

func (c *closeSignal) Read(p []byte) (int, error) {
	c.used.Store(true)
	return c.ReadCloser.Read(p)
}

func (c *closeSignal) Close() error {
	err := c.ReadCloser.Close()
	c.once.Do(func() { close(c.done) })
	return err
}
