package saferetry

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/saferetry/saferetry/internal/testutil"
)

// An unkeyed write may be retried only on positive evidence that nothing
// of it reached the server. These tests build the cases where the old
// inference ("no WroteHeaders event, so never sent") was wrong.

// hitCounter is a handler that counts the POSTs it received.
type hitCounter struct{ posts atomic.Int32 }

func (h *hitCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	if r.Method == http.MethodPost {
		h.posts.Add(1)
	}
	w.WriteHeader(http.StatusOK)
}

// releasingBase closes release once its base's RoundTrip has returned: the
// slow header write completes only after the attempt was given up.
type releasingBase struct {
	base     http.RoundTripper
	release  chan struct{}
	once     sync.Once
	attempts atomic.Int32
}

func (b *releasingBase) RoundTrip(r *http.Request) (*http.Response, error) {
	b.attempts.Add(1)
	resp, err := b.base.RoundTrip(r)
	b.once.Do(func() { close(b.release) })
	return resp, err
}

func TestUnkeyedPostCanceledDuringASlowHeaderWriteIsNotResent(t *testing.T) {
	for _, proto := range []string{"HTTP/1.1", "h2c"} {
		t.Run(proto, func(t *testing.T) {
			hits := &hitCounter{}
			srv := httptest.NewUnstartedServer(hits)
			release := make(chan struct{})
			base := &http.Transport{}
			if proto == "h2c" {
				srv.Config.Protocols = new(http.Protocols)
				srv.Config.Protocols.SetUnencryptedHTTP2(true)
				base.Protocols = new(http.Protocols)
				base.Protocols.SetUnencryptedHTTP2(true)
			}
			srv.Start()
			base.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return testutil.NewSlowHeadersConn(conn, release, proto == "h2c"), nil
			}
			rb := &releasingBase{base: base, release: release}
			stack := New(rb, WithKeyMethods(), WithBackoff(0, 0), WithAttemptTimeout(100*time.Millisecond), WithBudget(nil))
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/charges", nil)
			resp, err := stack.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
			base.CloseIdleConnections()
			srv.Close() // waits for the handlers of every request that arrived
			if n := rb.attempts.Load(); n != 1 {
				t.Errorf("%d attempts sent; want 1: the POST may have reached the server", n)
			}
			if n := hits.posts.Load(); n != 1 {
				t.Errorf("the server ran the POST %d times; want 1", n)
			}
			if err != nil && !errors.Is(err, ErrAttemptTimeout) {
				t.Errorf("err = %v; want the attempt timeout", err)
			}
		})
	}
}

// A base that fires no httptrace hook (another HTTP stack, a test double,
// a wrapper that drops the trace) gives no evidence either way: an unkeyed
// write it failed is not retried, unless its error itself proves no
// connection was made.
func TestBaseWithoutTraceHooksFailsClosed(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	tests := []struct {
		name     string
		err      error
		attempts int
	}{
		{"an untyped error", errors.New("stack: stream broken"), 1},
		{"a reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, 1},
		{"a refused dial", refused, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var attempts int
			base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				attempts++
				if r.Body != nil {
					r.Body.Close()
				}
				return nil, tt.err
			})
			stack := New(base, WithKeyMethods(), WithBackoff(0, 0), WithBudget(nil))
			req, _ := http.NewRequest(http.MethodPost, "http://api.test/charges", strings.NewReader("charge"))
			_, err := stack.RoundTrip(req)
			if !errors.Is(err, tt.err) || attempts != tt.attempts {
				t.Fatalf("err %v after %d attempts; want %v after %d", err, attempts, tt.err, tt.attempts)
			}
		})
	}
}
