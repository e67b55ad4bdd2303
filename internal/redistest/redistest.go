// Package redistest runs a throwaway redis-server on a loopback port for tests.
package redistest

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"
)

// SkipMessage is why Redis tests skip on a machine without redis-server.
const SkipMessage = "REDIS TESTS SKIPPED: redis-server not installed; .ci/run installs it with apt-get"

var warnOnce sync.Once

// Start runs a redis-server for the test on 127.0.0.1 and a free port,
// persisting nothing, and returns its address. The server is killed, and
// waited for, when the test ends. Without redis-server on PATH the test
// is skipped, loudly: the skip is printed to stderr even without -v.
func Start(tb testing.TB) string {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		warnOnce.Do(func() { fmt.Fprintf(os.Stderr, "\n*** %s ***\n\n", SkipMessage) })
		tb.Skip(SkipMessage)
	}
	var lastErr error
	for range 3 { // another process may take the free port before redis-server does
		addr, err := start(tb, bin)
		if err == nil {
			return addr
		}
		lastErr = err
	}
	tb.Fatal(lastErr)
	return ""
}

func start(tb testing.TB, bin string) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(bin,
		"--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--dir", tb.TempDir(),
		"--daemonize", "no", "--protected-mode", "yes", "--loglevel", "notice")
	ready := &readyWriter{marker: []byte("Ready to accept connections"), ready: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = ready, ready
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("redistest: starting redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() { cmd.Process.Kill(); <-exited }
	select {
	case <-ready.ready:
		tb.Cleanup(stop)
		return "127.0.0.1:" + strconv.Itoa(port), nil
	case <-exited:
		return "", fmt.Errorf("redistest: redis-server exited before it was ready:\n%s", ready.output())
	case <-time.After(30 * time.Second): // a safety net, not the signal
		stop()
		return "", fmt.Errorf("redistest: redis-server not ready after 30s:\n%s", ready.output())
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// readyWriter keeps the first 64 KiB of the server's output and closes
// ready once marker appears in it.
type readyWriter struct {
	marker []byte
	ready  chan struct{}
	mu     sync.Mutex
	buf    bytes.Buffer
	seen   bool
}

func (w *readyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf.Len() < 64<<10 {
		w.buf.Write(p)
	}
	if !w.seen && bytes.Contains(w.buf.Bytes(), w.marker) {
		w.seen = true
		close(w.ready)
	}
	return len(p), nil
}

func (w *readyWriter) output() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// Silent runs a server on 127.0.0.1 that accepts connections and reads
// what is sent, but never answers: a Redis that hangs (paused, swapping,
// behind a dead link). It returns its address and unblock, which closes
// every connection, so that a client stuck reading fails at once; the
// test's cleanup calls it too, and waits for the server to stop.
func Silent(tb testing.TB) (addr string, unblock func()) {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	closed := false
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				c.Close()
				return
			}
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { io.Copy(io.Discard, c) })
		}
	})
	unblock = func() {
		mu.Lock()
		defer mu.Unlock()
		if !closed {
			closed = true
			l.Close()
		}
		for _, c := range conns {
			c.Close()
		}
		conns = nil
	}
	tb.Cleanup(func() { unblock(); wg.Wait() })
	return l.Addr().String(), unblock
}
