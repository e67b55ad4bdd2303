package testutil

import (
	"net"
	"net/http"
	"strings"
	"sync"
)

// SlowHeadersConn is a client connection whose header writes stall: every
// byte goes through at once, but a Write that begins an HTTP/1 request
// (its request line) or carries an HTTP/2 HEADERS frame returns only once
// Release is closed. The request's headers are then on the wire, and may
// have reached the server, while the client still waits for its write to
// return: what a slow peer, a full socket buffer or a large header block
// do. A client that gives up on the request during the stall must treat it
// as possibly sent. Closing the connection also ends the stall, as it ends
// a write stuck in the kernel (net/http's HTTP/1 transport waits for its
// write loop before it returns a canceled request's error, and closes the
// connection to end it).
//
// Writes must come from one goroutine at a time, as net/http's do; Close
// may be called concurrently with them.
type SlowHeadersConn struct {
	net.Conn
	release   <-chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
	h2        *h2FrameScanner // nil for HTTP/1
}

// NewSlowHeadersConn wraps conn, holding its header writes until release
// is closed (a closed release holds nothing). With h2 the connection
// carries HTTP/2 in cleartext (h2c with prior knowledge, which begins with
// the client preface); otherwise HTTP/1.
func NewSlowHeadersConn(conn net.Conn, release <-chan struct{}, h2 bool) *SlowHeadersConn {
	c := &SlowHeadersConn{Conn: conn, release: release, closed: make(chan struct{})}
	if h2 {
		c.h2 = &h2FrameScanner{preface: len(http2Preface)}
	}
	return c
}

// Write writes p, then waits for release if p began a request's headers.
func (c *SlowHeadersConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		return n, err
	}
	var headers bool
	if c.h2 != nil {
		headers = c.h2.scan(p)
	} else {
		headers = isRequestLine(p)
	}
	if headers {
		select {
		case <-c.release:
		case <-c.closed:
		}
	}
	return n, nil
}

// Close closes the connection and ends a stalled Write.
func (c *SlowHeadersConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// http2Preface is the client connection preface (RFC 9113 §3.4).
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// requestMethods are the methods isRequestLine recognises.
var requestMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions, http.MethodTrace,
}

// isRequestLine reports whether p begins with a request line's method and
// space. net/http writes each request from the start of a buffer, so a
// request line always begins a Write; a body could begin with the same
// bytes only by chance.
func isRequestLine(p []byte) bool {
	for _, m := range requestMethods {
		if len(p) > len(m) && p[len(m)] == ' ' && strings.HasPrefix(string(p[:len(m)]), m) {
			return true
		}
	}
	return false
}

// h2FrameScanner follows the frames a client writes, to spot HEADERS.
type h2FrameScanner struct {
	preface int    // preface bytes still to skip
	head    []byte // a frame header being assembled
	skip    int    // payload bytes of the current frame still to skip
}

// frameHeaders is the HEADERS frame type (RFC 9113 §6.2).
const frameHeaders = 0x1

// scan consumes p and reports whether a HEADERS frame began in it.
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
				headers = headers || s.head[3] == frameHeaders
				s.head = s.head[:0]
			}
		}
	}
	return headers
}
