package saferetry_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/saferetry/saferetry"
	"github.com/saferetry/saferetry/internal/testutil"
	"github.com/saferetry/saferetry/saferetrytest"
)

// TestCancelMidHedge: the caller cancels while two attempts of a hedged
// request are in flight over the real network, both held by the server
// (which never answers them). RoundTrip returns with the context's error
// (its cause when one is given), as a RetryError that counts both
// attempts, having waited for both attempts to end; the caller's request
// is unmodified and its body closed exactly once; every body net/http
// read is closed; the server's handlers both see the cancellation (a
// hanging handler returns only when its request's context ends or the
// server closes, and the server is still open); nothing was committed;
// and no goroutine is left (verifyNoLeaks).
func TestCancelMidHedge(t *testing.T) {
	verifyNoLeaks(t)
	servers := protocolServers(t)
	errShutdown := errors.New("shutting down")
	cases := []struct {
		method methodCase
		body   bodyKind
		cause  error // passed to the cancel function; nil: plain cancel
	}{
		{matrixMethods[0], bodyNone, nil},          // GET
		{matrixMethods[2], bodyBytes, nil},         // PUT
		{matrixMethods[4], bodyStream, nil},        // POST, keyed
		{matrixMethods[6], bodyFile, errShutdown},  // PATCH, keyed
		{matrixMethods[4], bodyBytes, errShutdown}, // POST, keyed
	}
	for _, proto := range []string{"h1", "h2"} {
		for _, tc := range cases {
			name := proto + "/" + tc.method.name + "/" + tc.body.String()
			if tc.cause != nil {
				name += "/cause"
			}
			t.Run(name, func(t *testing.T) {
				srv := servers[proto]
				path := "/hedge-cancel/" + name
				arrived := make(chan struct{})
				srv.Script(path, saferetrytest.Fault{Kind: saferetrytest.Hang, Count: 2, Arrived: arrived})
				ctx, cancel := context.WithCancelCause(context.Background())
				defer cancel(nil)
				tr := srv.Transport()
				defer tr.CloseIdleConnections()
				base := &tracingBase{base: tr}
				stack := saferetry.New(base, saferetry.WithHedge(20*time.Millisecond, 1))
				payload := payloadFor(name, 8<<10)
				req, caller := newCallerRequest(t, ctx, tc.method.method, srv.URL()+path, tc.body, payload)
				if tc.body == bodyStream {
					// Of known length, so that it may be hedged before it
					// was read whole.
					req.ContentLength = int64(len(payload))
				}
				snap := testutil.Snapshot(req)

				done := roundTripAsync(stack, req)
				testutil.WaitSignal(t, arrived, "the first attempt to hang at the server")
				testutil.WaitSignal(t, arrived, "the hedge to hang at the server")
				cancel(tc.cause)
				r := awaitResult(t, done)
				if r.resp != nil {
					r.resp.Body.Close()
					t.Fatalf("got status %d; want the cancellation", r.resp.StatusCode)
				}
				want := context.Canceled
				if tc.cause != nil {
					want = tc.cause
				}
				var re *saferetry.RetryError
				if !errors.Is(r.err, want) || !errors.As(r.err, &re) || re.Reason != saferetry.StopCanceled || re.Attempts != 2 {
					t.Errorf("err = %v; want a *RetryError{Attempts: 2, Reason: StopCanceled} wrapping %v", r.err, want)
				}
				// tracingBase records an attempt when the base returns it:
				// both had returned when RoundTrip did.
				sent := base.sent()
				if len(sent) != 2 {
					t.Fatalf("%d attempts had returned when RoundTrip did; want both", len(sent))
				}
				snap.Check(t, req)
				base.waitBodiesClosed(t)
				caller.checkClosedOnce(t)

				wctx, wcancel := context.WithTimeout(context.Background(), testutil.SignalTimeout)
				defer wcancel()
				ps, err := srv.Wait(wctx, path, 2)
				if err != nil {
					t.Fatalf("the server's handlers did not see the cancellation: %v", err)
				}
				if ps.Commits != 0 || len(ps.Requests) != 2 {
					t.Fatalf("server saw %d requests, %d commits; want 2, none", len(ps.Requests), ps.Commits)
				}
				first := ps.Requests[0]
				for i, rec := range ps.Requests {
					if rec.Fault != saferetrytest.Hang || rec.Key != first.Key || (tc.method.keyed && rec.Key == "") {
						t.Errorf("request %d: %v, key %q; want Hang and the first's key %q", i+1, rec.Fault, rec.Key, first.Key)
					}
					if want := wantCancelBody(tc.body, payload); !rec.BodyRead || !bytes.Equal(rec.Body, want) {
						t.Errorf("request %d: %d body bytes (whole: %v); want the %d sent", i+1, len(rec.Body), rec.BodyRead, len(want))
					}
				}
			})
		}
	}
}

func wantCancelBody(kind bodyKind, payload []byte) []byte {
	if kind == bodyNone {
		return []byte{}
	}
	return payload
}
