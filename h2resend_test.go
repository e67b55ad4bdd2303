package saferetry_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/saferetry/saferetry"
	"github.com/saferetry/saferetry/internal/testutil"
	"github.com/saferetry/saferetry/saferetrytest"
)

// h2ResendFault is a stream fault Go's HTTP/2 client resends by itself.
type h2ResendFault struct {
	name  string
	fault saferetrytest.H2Fault
	conns int // connections the request needs
}

// TestH2RefusedStreamAndGoAway sends every method, with and without a
// body, into one REFUSED_STREAM or one GOAWAY whose last stream id is
// below the request's stream: both prove the stream was not processed
// (RFC 9113 §8.7), so any method may be resent. Go's HTTP/2 client resends
// such streams itself (REFUSED_STREAM at once the first time, GOAWAY on a
// new connection), inside what saferetry sees as one attempt, and only
// when it can rewind the body: BodyCache's GetBody is what lets it rewind
// an opaque stream. The raw server records every stream, so the test sees
// that exactly one was processed, with the caller's body byte for byte.
// (It does not decode headers; the key is checked on the one attempt the
// stack made, which net/http resends unchanged.)
func TestH2RefusedStreamAndGoAway(t *testing.T) {
	srv := saferetrytest.NewH2Server()
	defer srv.Close()
	faults := []h2ResendFault{
		{"REFUSED_STREAM", saferetrytest.H2Fault{Kind: saferetrytest.H2Refuse}, 1},
		{"GOAWAY", saferetrytest.H2Fault{Kind: saferetrytest.H2GoAway, Code: saferetrytest.ErrCodeNo}, 2},
	}
	// The raw server's script is shared by every connection, so the
	// cases run one at a time.
	for _, f := range faults {
		for _, m := range matrixMethods {
			for _, kind := range []bodyKind{bodyNone, bodyBytes, bodyFile, bodyStream} {
				name := f.name + "/" + m.name + "/" + kind.String()
				t.Run(name, func(t *testing.T) { testH2Resend(t, srv, f, m, kind) })
			}
		}
	}
}

func testH2Resend(t *testing.T, srv *saferetrytest.H2Server, f h2ResendFault, m methodCase, kind bodyKind) {
	before := srv.Stats()
	answer := saferetrytest.H2Fault{Kind: saferetrytest.H2Answer}
	if m.method == http.MethodHead {
		answer.Body = []byte{} // no DATA: Go's client rejects it on HEAD
	}
	srv.Script(f.fault, answer)
	tr := srv.Transport()
	defer tr.CloseIdleConnections()
	base := &tracingBase{base: tr}
	opts := []saferetry.Option{saferetry.WithBackoff(0, 0), saferetry.WithBudget(nil)}
	if !m.keyed {
		opts = append(opts, saferetry.WithKeyMethods())
	}
	stack := saferetry.New(base, opts...)
	payload := payloadFor(f.name+"/"+m.name+"/"+kind.String(), kind.size())
	req, caller := newCallerRequest(t, context.Background(), m.method, srv.URL()+"/h2", kind, payload)
	snap := testutil.Snapshot(req)

	resp, err := stack.RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	_, readErr := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || readErr != nil {
		t.Fatalf("status %d, reading the body: %v; want 200", resp.StatusCode, readErr)
	}
	if n := saferetry.Attempts(resp); n != 1 {
		t.Errorf("Attempts = %d; want 1 (net/http resent the stream itself)", n)
	}
	snap.Check(t, req)
	attempts := base.sent()
	if len(attempts) != 1 {
		t.Fatalf("%d attempts reached the base transport; want 1", len(attempts))
	}
	if hasKey := attempts[0].key != ""; hasKey != m.keyed {
		t.Errorf("attempt key %q; keyed %v", attempts[0].key, m.keyed)
	}
	base.waitBodiesClosed(t)
	checkH2Streams(t, before, srv.Stats(), f.conns, payload)
	caller.checkClosedOnce(t)
}

// checkH2Streams checks that the request took two streams on the given
// number of connections, and that only the second was processed, with the
// caller's payload. It counts the connections that carried the streams,
// not all those the server accepted meanwhile: after a GOAWAY, net/http
// may still be dialing for the previous case.
func checkH2Streams(t *testing.T, before, after saferetrytest.H2Stats, conns int, payload []byte) {
	t.Helper()
	streams := after.Streams[len(before.Streams):]
	used := make(map[int]bool)
	var seen []string
	for _, st := range streams {
		used[st.Conn] = true
		seen = append(seen, fmt.Sprintf("conn %d stream %d %v processed %v (%d body bytes)",
			st.Conn, st.ID, st.Kind, st.Processed, len(st.Body)))
	}
	if len(streams) != 2 || len(used) != conns {
		t.Fatalf("server saw %d streams on %d connections; want 2 on %d: %s",
			len(streams), len(used), conns, strings.Join(seen, "; "))
	}
	if streams[0].Processed || !streams[1].Processed {
		t.Errorf("processed: %v, %v; want only the second stream", streams[0].Processed, streams[1].Processed)
	}
	if !bytes.Equal(streams[1].Body, payload) {
		t.Errorf("processed stream's body: %d bytes, differs from the caller's %d", len(streams[1].Body), len(payload))
	}
}

// TestBodyCacheClosesCallerBodyWhenReplayDropped plays what net/http does
// when an HTTP/2 server sends GOAWAY before processing a stream: it asks
// GetBody for a body twice (once in its HTTP/2 layer, whose retry request
// it then drops because the connection is gone, and once in
// http.Transport's rewind), and closes only the body it sends. The caller's
// body must still be closed exactly once.
func TestBodyCacheClosesCallerBodyWhenReplayDropped(t *testing.T) {
	payload := payloadFor(t.Name(), 1000)
	for _, kind := range []bodyKind{bodyFile, bodyStream} {
		t.Run(kind.String(), func(t *testing.T) {
			req, caller := newCallerRequest(t, context.Background(), http.MethodPut, "http://api.test/", kind, payload)
			cache := &saferetry.BodyCache{Base: testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				io.Copy(io.Discard, r.Body)
				r.Body.Close()
				if _, err := r.GetBody(); err != nil { // dropped, never closed
					return nil, err
				}
				again, err := r.GetBody()
				if err != nil {
					return nil, err
				}
				sent, _ := io.ReadAll(again)
				again.Close()
				if !bytes.Equal(sent, payload) {
					t.Errorf("replayed body differs")
				}
				return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: r}, nil
			})}
			resp, err := cache.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			// Everything above ran on this goroutine: the body is closed
			// by now or never.
			switch {
			case caller.counted != nil:
				if n := caller.counted.Closes(); n != 1 {
					t.Errorf("caller's body closed %d times; want 1", n)
				}
			default:
				caller.checkClosedOnce(t)
			}
		})
	}
}
