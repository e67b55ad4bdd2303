package saferetry_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/saferetry/saferetry"
	"github.com/saferetry/saferetry/saferetrytest"
)

// The hedged cells of the fault matrix: the first attempt meets a replica
// that hangs, a hedge races it. For every method that may be hedged and
// every kind of body, over HTTP/1.1 and HTTP/2, the hedge wins, every
// attempt carries the same key and a byte-identical body, and the
// deduplicating server applies a keyed write exactly once.
func TestMatrixHedged(t *testing.T) {
	methods := []struct {
		name, method string
		keyed        bool
	}{
		{"GET", http.MethodGet, false},
		{"PUT", http.MethodPut, false},
		{"DELETE", http.MethodDelete, false},
		{"POST-keyed", http.MethodPost, true},
		{"PATCH-keyed", http.MethodPatch, true},
	}
	bodies := []string{"none", "bytes", "file", "stream"}
	payload := bytes.Repeat([]byte("hedged body "), 300) // 3.6 KB
	for _, proto := range []string{"h1", "h2"} {
		opts := []saferetrytest.Option{saferetrytest.WithTLS()}
		if proto == "h2" {
			opts = append(opts, saferetrytest.WithHTTP2())
		}
		srv := saferetrytest.New(opts...)
		t.Cleanup(srv.Close)
		for _, m := range methods {
			for _, kind := range bodies {
				if kind != "none" && (m.method == http.MethodGet || m.method == http.MethodDelete) {
					continue
				}
				name := proto + "/" + m.name + "/" + kind
				t.Run(name, func(t *testing.T) {
					path := "/" + name
					srv.Script(path, saferetrytest.Fault{Kind: saferetrytest.Hang})
					tr := srv.Transport()
					defer tr.CloseIdleConnections()
					// The attempt timeout only keeps a broken cell from hanging.
					stack := saferetry.New(tr, saferetry.WithHedge(20*time.Millisecond, 1), saferetry.WithAttemptTimeout(10*time.Second))
					req := hedgedRequest(t, m.method, srv.URL()+path, kind, payload)
					resp, err := stack.RoundTrip(req)
					if err != nil {
						t.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					got, err := srv.Wait(context.Background(), path, 2)
					if err != nil {
						t.Fatal(err)
					}
					if resp.StatusCode != http.StatusOK || saferetry.Attempts(resp) != 2 || len(got.Requests) != 2 {
						t.Fatalf("status %d, Attempts %d, server saw %d; want the hedge's 200 after 2 attempts",
							resp.StatusCode, saferetry.Attempts(resp), len(got.Requests))
					}
					first := got.Requests[0]
					for _, r := range got.Requests {
						if r.Key != first.Key || (m.keyed && r.Key == "") {
							t.Fatalf("keys %q and %q; want the same key on every attempt", first.Key, r.Key)
						}
						if r.BodyRead && !bytes.Equal(r.Body, wantBody(kind, payload)) {
							t.Fatalf("attempt sent %d bytes; want the body byte for byte", len(r.Body))
						}
					}
					if m.keyed && got.Commits != 1 {
						t.Fatalf("the keyed write was applied %d times; want once", got.Commits)
					}
				})
			}
		}
	}
}

func wantBody(kind string, payload []byte) []byte {
	if kind == "none" {
		return []byte{}
	}
	return payload
}

// hedgedRequest builds a request with a body of the given kind: none,
// bytes (GetBody set), a file (read by position), or an opaque stream of
// known length (replayed from BodyCache's buffer).
func hedgedRequest(t *testing.T, method, url, kind string, payload []byte) *http.Request {
	t.Helper()
	var body io.Reader
	switch kind {
	case "bytes":
		body = bytes.NewReader(payload)
	case "file":
		path := filepath.Join(t.TempDir(), "body")
		if err := os.WriteFile(path, payload, 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		body = f
	case "stream":
		body = io.MultiReader(bytes.NewReader(payload))
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if kind == "file" || kind == "stream" {
		// A stream of known length within the buffer cap may be hedged
		// (one of unknown length only once read whole).
		req.ContentLength = int64(len(payload))
	}
	return req
}
