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

// slowHeadersConn passes every byte through at once, but a Write that
// carries an HTTP/1 request line or an HTTP/2 HEADERS frame returns only
// once release is closed: the bytes are on the wire while the client
// still waits for its write to return, as with a slow peer, a full
// socket buffer or a large header block.
type slowHeadersConn struct {
	net.Conn
	release <-chan struct{}
	h2      *h2FrameScanner // nil for HTTP/1
}

func (c *slowHeadersConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		return n, err
	}
	headers := strings.HasPrefix(string(p), http.MethodPost+" ")
	if c.h2 != nil {
		headers = c.h2.scan(p)
	}
	if headers {
		<-c.release
	}
	return n, nil
}

// h2FrameScanner follows the frames a client writes, to spot HEADERS.
type h2FrameScanner struct {
	preface int    // preface bytes still to skip
	head    []byte // a frame header being assembled
	skip    int    // payload bytes of the current frame still to skip
}

func newH2FrameScanner() *h2FrameScanner { return &h2FrameScanner{preface: 24} }

// scan consumes p and reports whether it began a HEADERS frame.
func (s *h2FrameScanner) scan(p []byte) bool {
	headers := false
	for len(p) > 0 {
		switch {
		case s.preface > 0:
			n := min(s.preface, len(p))
			s.preface -= n
			p = p[n:]
		case s.skip > 0:
			n := min(s.skip, len(p))
			s.skip -= n
			p = p[n:]
		default:
			n := min(9-len(s.head), len(p))
			s.head = append(s.head, p[:n]...)
			p = p[n:]
			if len(s.head) == 9 {
				s.skip = int(s.head[0])<<16 | int(s.head[1])<<8 | int(s.head[2])
				headers = headers || s.head[3] == 0x1
				s.head = s.head[:0]
			}
		}
	}
	return headers
}

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
				sc := &slowHeadersConn{Conn: conn, release: release}
				if proto == "h2c" {
					sc.h2 = newH2FrameScanner()
				}
				return sc, nil
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
