package saferetry

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// pipeListener is a net.Listener fed by pipeDialer: connections made of
// net.Pipe, which work inside a synctest bubble.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }

// dial returns the client end of a new pipe whose server end the listener
// accepts, wrapped so the test can make it die silently.
func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &mutableConn{Conn: client, dead: make(chan struct{})}, nil
}

// mutableConn can be turned into a black hole: writes vanish and reads
// never return, as when a NAT entry is dropped or the peer vanishes
// without a FIN. Only Close ends it.
type mutableConn struct {
	net.Conn
	mu     sync.Mutex
	silent bool
	dead   chan struct{}
	once   sync.Once
}

func (c *mutableConn) blackHole() {
	c.mu.Lock()
	c.silent = true
	c.mu.Unlock()
}

func (c *mutableConn) isSilent() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.silent
}

func (c *mutableConn) Read(p []byte) (int, error) {
	if c.isSilent() {
		<-c.dead
		return 0, net.ErrClosed
	}
	return c.Conn.Read(p)
}

func (c *mutableConn) Write(p []byte) (int, error) {
	if c.isSilent() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *mutableConn) Close() error {
	c.once.Do(func() { close(c.dead) })
	return c.Conn.Close()
}

// A connection that dies silently must not swallow the requests sent on
// it: the default base's HTTP/2 health check closes it, and the retry is
// made on a new connection, long before a generous deadline.
func TestDefaultBaseDetectsASilentlyDeadHTTP2Connection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ln := newPipeListener()
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "ok")
		})}
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetUnencryptedHTTP2(true)
		go srv.Serve(ln)
		defer srv.Close()

		base := defaultBase()
		base.Proxy = nil
		base.DialContext = ln.dial
		base.Protocols = new(http.Protocols)
		base.Protocols.SetUnencryptedHTTP2(true)
		defer base.CloseIdleConnections()
		var conns []*mutableConn
		dial := base.DialContext
		base.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err == nil {
				conns = append(conns, c.(*mutableConn))
			}
			return c, err
		}
		client := &http.Client{Transport: New(base, WithBackoff(0, 0))}

		get := func() (*http.Response, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://api.test/", nil)
			resp, err := client.Do(req)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			return resp, err
		}
		if _, err := get(); err != nil {
			t.Fatal(err)
		}
		conns[0].blackHole()
		start := time.Now()
		resp, err := get()
		if err != nil {
			t.Fatalf("after %v: %v; want the retry on a new connection to succeed", time.Since(start), err)
		}
		if len(conns) != 2 || Attempts(resp) != 2 {
			t.Fatalf("%d connections, %d attempts; want the dead one replaced", len(conns), Attempts(resp))
		}
		if waited := time.Since(start); waited > h2PingAfter+h2PingTimeout {
			t.Fatalf("the dead connection was given up after %v; want at most %v", waited, h2PingAfter+h2PingTimeout)
		}
	})
}
