package testutil

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
)

// recordingTB records the failures reported to it instead of failing.
type recordingTB struct {
	testing.TB
	errors []string
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func TestSnapshotCheckSeesEveryChange(t *testing.T) {
	changes := map[string]func(r *http.Request) *http.Request{
		"nothing":           func(r *http.Request) *http.Request { return r },
		"method":            func(r *http.Request) *http.Request { r.Method = http.MethodPut; return r },
		"URL":               func(r *http.Request) *http.Request { r.URL.Path = "/other"; return r },
		"host":              func(r *http.Request) *http.Request { r.Host = "other.test"; return r },
		"header added":      func(r *http.Request) *http.Request { r.Header.Set("Idempotency-Key", "k"); return r },
		"header value":      func(r *http.Request) *http.Request { r.Header.Set("X-Caller", "other"); return r },
		"content length":    func(r *http.Request) *http.Request { r.ContentLength = 1; return r },
		"transfer encoding": func(r *http.Request) *http.Request { r.TransferEncoding = []string{"chunked"}; return r },
		"body":              func(r *http.Request) *http.Request { r.Body = io.NopCloser(strings.NewReader("")); return r },
		"GetBody":           func(r *http.Request) *http.Request { r.GetBody = nil; return r },
		"context": func(r *http.Request) *http.Request {
			return r.WithContext(context.WithValue(r.Context(), struct{}{}, 1))
		},
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, "http://api.test/charges", strings.NewReader("payload"))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Caller", "test")
			snap := Snapshot(req)
			changed := change(req)
			// WithContext returns another request: check the caller's
			// view, which is the same pointer for every other change.
			if changed != req {
				*req = *changed
			}
			rec := &recordingTB{TB: t}
			snap.Check(rec, req)
			if got := len(rec.errors) > 0; got != (name != "nothing") {
				t.Fatalf("Check reported %q", rec.errors)
			}
		})
	}
}

func TestTrackedBody(t *testing.T) {
	b := NewTrackedBody(io.NopCloser(strings.NewReader("hello")))
	if _, err := io.ReadAll(b); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b.Close()
	b.WaitClosed(t)
	if b.BytesRead() != 5 || !b.ReadToEOF() || b.Closes() != 2 {
		t.Fatalf("read %d, EOF %v, closed %d; want 5, true, 2", b.BytesRead(), b.ReadToEOF(), b.Closes())
	}
	if _, ok := any(b).(io.WriterTo); ok {
		t.Fatal("a TrackedBody must look like an opaque stream")
	}
}

func TestHeadersEqual(t *testing.T) {
	a := http.Header{"A": {"1", "2"}}
	for _, tc := range []struct {
		b    http.Header
		want bool
	}{
		{http.Header{"A": {"1", "2"}}, true},
		{http.Header{"A": {"2", "1"}}, false},
		{http.Header{"A": {"1"}}, false},
		{http.Header{"B": {"1", "2"}}, false},
		{http.Header{"A": {"1", "2"}, "B": nil}, false},
	} {
		if got := HeadersEqual(a, tc.b); got != tc.want {
			t.Errorf("HeadersEqual(%v, %v) = %v; want %v", a, tc.b, got, tc.want)
		}
	}
	if !HeadersEqual(nil, http.Header{}) {
		t.Error("a nil and an empty header differ")
	}
}

// TestSlowHeadersConnHoldsHeaderWrites runs in a synctest bubble, where
// synctest.Wait returns once every goroutine is blocked: a write still
// running then is held, deterministically.
func TestSlowHeadersConnHoldsHeaderWrites(t *testing.T) {
	frame := func(typ byte, payload string) []byte {
		n := len(payload)
		return append([]byte{byte(n >> 16), byte(n >> 8), byte(n), typ, 0, 0, 0, 0, 1}, payload...)
	}
	headers := frame(0x1, "hpack")
	tests := []struct {
		name   string
		h2     bool
		writes [][]byte
		held   []bool // per write
	}{
		{"HTTP/1 request line, then body", false,
			[][]byte{[]byte("POST /charges HTTP/1.1\r\n"), []byte("body bytes")},
			[]bool{true, false}},
		{"HTTP/1 body alone", false, [][]byte{[]byte("GETAWAY with it")}, []bool{false}},
		{"HTTP/2 preface and SETTINGS, HEADERS split, DATA", true,
			[][]byte{append([]byte(http2Preface), frame(0x4, "")...), headers[:4], headers[4:], frame(0x0, "data")},
			[]bool{false, false, true, false}}, // held once the frame header is whole
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				client, server := net.Pipe()
				defer server.Close()
				go io.Copy(io.Discard, server)
				for i, w := range tc.writes {
					release := make(chan struct{})
					c := NewSlowHeadersConn(client, release, tc.h2)
					c.h2 = prev(tc.h2, tc.writes[:i])
					done := make(chan struct{})
					go func() {
						defer close(done)
						c.Write(w)
					}()
					synctest.Wait()
					select {
					case <-done:
						if tc.held[i] {
							t.Fatalf("write %d returned before the release", i)
						}
					default:
						if !tc.held[i] {
							t.Fatalf("write %d held", i)
						}
					}
					close(release)
					<-done
				}
				client.Close()
			})
		})
	}
	t.Run("Close ends the stall", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			client, server := net.Pipe()
			defer server.Close()
			go io.Copy(io.Discard, server)
			c := NewSlowHeadersConn(client, make(chan struct{}), false)
			done := make(chan struct{})
			go func() {
				defer close(done)
				c.Write([]byte("PUT /x HTTP/1.1\r\n"))
			}()
			synctest.Wait()
			select {
			case <-done:
				t.Fatal("the header write was not held")
			default:
			}
			c.Close()
			<-done
		})
	})
}

// prev returns the scanner state after the given writes (nil for HTTP/1).
func prev(h2 bool, writes [][]byte) *h2FrameScanner {
	if !h2 {
		return nil
	}
	s := &h2FrameScanner{preface: len(http2Preface)}
	for _, w := range writes {
		s.scan(w)
	}
	return s
}
