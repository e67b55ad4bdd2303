package saferetry_test

// Cancellation at every point of a request's life: before it is sent,
// while its body is uploading, while the stack waits between attempts, and
// while the caller reads the response. Each case checks that the caller
// gets the context's error promptly, that its request is unmodified and
// its body closed exactly once, and that no goroutine outlives the test.
// Nothing sleeps: each cancellation waits for a signal that the request
// has reached the point under test.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/saferetry/saferetry"
	"github.com/saferetry/saferetry/internal/testutil"
	"github.com/saferetry/saferetry/saferetrytest"
)

// verifyNoLeaks fails the test if goroutines started during it are still
// running once it and its cleanups are done. Call it first, so that its
// cleanup runs after the others (servers closed, pools emptied).
func verifyNoLeaks(t *testing.T) {
	t.Helper()
	existing := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, existing) })
}

// protocolServers starts a fault server per protocol.
func protocolServers(t *testing.T) map[string]*saferetrytest.Server {
	t.Helper()
	servers := map[string]*saferetrytest.Server{
		"h1": saferetrytest.New(),
		"h2": saferetrytest.New(saferetrytest.WithTLS(), saferetrytest.WithHTTP2()),
	}
	for _, s := range servers {
		t.Cleanup(s.Close)
	}
	return servers
}

// waitHandled waits until the server has handled the one request sent to
// path, whose client may have given up on it while the server still held
// it, and returns what path received.
func waitHandled(t *testing.T, srv *saferetrytest.Server, path string) saferetrytest.PathStats {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testutil.SignalTimeout)
	defer cancel()
	ps, err := srv.Wait(ctx, path, 1)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// roundTripAsync runs RoundTrip on its own goroutine.
func roundTripAsync(rt http.RoundTripper, req *http.Request) <-chan roundTripResult {
	done := make(chan roundTripResult, 1)
	go func() {
		resp, err := rt.RoundTrip(req)
		done <- roundTripResult{resp, err}
	}()
	return done
}

type roundTripResult struct {
	resp *http.Response
	err  error
}

// awaitResult waits for RoundTrip to return; a stack that ignores the
// cancellation fails here.
func awaitResult(t *testing.T, done <-chan roundTripResult) roundTripResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(testutil.SignalTimeout):
		t.Fatal("RoundTrip did not return after its context was canceled")
		return roundTripResult{}
	}
}

func TestCancelBeforeSend(t *testing.T) {
	verifyNoLeaks(t)
	srv := saferetrytest.New()
	t.Cleanup(srv.Close)
	cases := []struct {
		method methodCase
		body   bodyKind
	}{
		{matrixMethods[0], bodyNone},   // GET
		{matrixMethods[2], bodyBytes},  // PUT
		{matrixMethods[4], bodyStream}, // POST, keyed
		{matrixMethods[5], bodyFile},   // POST, unkeyed
		{matrixMethods[6], bodyBigStream},
	}
	for _, tc := range cases {
		t.Run(tc.method.name+"/"+tc.body.String(), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			tr := srv.Transport()
			defer tr.CloseIdleConnections()
			base := &tracingBase{base: tr}
			opts := []saferetry.Option{saferetry.WithBackoff(0, 0)}
			if !tc.method.keyed {
				opts = append(opts, saferetry.WithKeyMethods())
			}
			stack := saferetry.New(base, opts...)
			req, caller := newCallerRequest(t, ctx, tc.method.method, srv.URL()+"/before", tc.body, payloadFor(t.Name(), tc.body.size()))
			snap := testutil.Snapshot(req)

			resp, err := stack.RoundTrip(req)
			if resp != nil {
				resp.Body.Close()
				t.Fatalf("got status %d from a canceled request", resp.StatusCode)
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v; want context.Canceled", err)
			}
			if n := len(base.sent()); n != 1 {
				t.Errorf("%d attempts; want 1 (no retry once the context is done)", n)
			}
			snap.Check(t, req)
			base.waitBodiesClosed(t)
			caller.checkClosedOnce(t)
		})
	}
	if st := srv.Stats(); st.Conns != 0 || len(st.Paths) != 0 {
		t.Errorf("server saw %d connections and %d paths; want nothing", st.Conns, len(st.Paths))
	}
}

// producer is a request body fed through a pipe by a goroutine, as a body
// streamed from elsewhere is: it writes its first chunk, says so, and then
// holds the upload open until the request's context ends, when it fails
// the pipe with the context's error (a body that ignored its context would
// hold net/http's write loop, and RoundTrip with it, whatever the layers
// above do).
type producer struct {
	*testutil.TrackedBody
	chunk   []byte
	written chan struct{} // closed once the first chunk was read by the transport
	done    chan struct{} // closed when the producer goroutine has returned
}

func newProducer(ctx context.Context, chunk []byte) *producer {
	pr, pw := io.Pipe()
	p := &producer{
		TrackedBody: testutil.NewTrackedBody(struct{ io.Reader }{pr}), // its Close leaves the pipe to ctx
		chunk:       chunk,
		written:     make(chan struct{}),
		done:        make(chan struct{}),
	}
	go func() {
		defer close(p.done)
		if _, err := pw.Write(chunk); err != nil {
			return // the reader went away
		}
		close(p.written)
		<-ctx.Done()
		pw.CloseWithError(context.Cause(ctx))
	}()
	return p
}

func TestCancelMidUpload(t *testing.T) {
	verifyNoLeaks(t)
	servers := protocolServers(t)
	for _, proto := range []string{"h1", "h2"} {
		for _, m := range []methodCase{matrixMethods[2], matrixMethods[4], matrixMethods[5]} {
			t.Run(proto+"/"+m.name, func(t *testing.T) {
				srv := servers[proto]
				path := "/upload-" + m.name
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				tr := srv.Transport()
				defer tr.CloseIdleConnections()
				base := &tracingBase{base: tr}
				opts := []saferetry.Option{saferetry.WithBackoff(0, 0)}
				if !m.keyed {
					opts = append(opts, saferetry.WithKeyMethods())
				}
				stack := saferetry.New(base, opts...)
				// More than net/http's 4 KiB write buffer, so part of it
				// has reached the server when the producer says so.
				body := newProducer(ctx, payloadFor(t.Name(), 16<<10))
				req, err := http.NewRequestWithContext(ctx, m.method, srv.URL()+path, body)
				if err != nil {
					t.Fatal(err)
				}
				snap := testutil.Snapshot(req)

				done := roundTripAsync(stack, req)
				testutil.WaitSignal(t, body.written, "the first chunk uploaded")
				cancel()
				r := awaitResult(t, done)
				if r.resp != nil {
					r.resp.Body.Close()
					t.Fatalf("got status %d; want the cancellation", r.resp.StatusCode)
				}
				if !errors.Is(r.err, context.Canceled) {
					t.Errorf("err = %v; want context.Canceled", r.err)
				}
				if n := len(base.sent()); n != 1 {
					t.Errorf("%d attempts; want 1", n)
				}
				snap.Check(t, req)
				base.waitBodiesClosed(t)
				testutil.WaitSignal(t, body.Closed(), "the caller's body closed")
				if n := body.Closes(); n != 1 {
					t.Errorf("caller's body closed %d times; want 1", n)
				}
				testutil.WaitSignal(t, body.done, "the producer to return")

				ps := waitHandled(t, srv, path)
				if ps.Commits != 0 {
					t.Errorf("an upload cut short committed %d times", ps.Commits)
				}
				for _, rec := range ps.Requests {
					if rec.BodyRead || !bytes.HasPrefix(body.chunk, rec.Body) {
						t.Errorf("server read %d bytes (whole: %v) of a body cut short", len(rec.Body), rec.BodyRead)
					}
				}
			})
		}
	}
}

func TestCancelMidWait(t *testing.T) {
	verifyNoLeaks(t)
	srv := saferetrytest.New()
	t.Cleanup(srv.Close)
	errShutdown := errors.New("shutting down")
	cases := []struct {
		name   string
		fault  saferetrytest.Fault
		cause  error // passed to the cancel function; nil: plain cancel
		method methodCase
		body   bodyKind
	}{
		{"backoff/GET", saferetrytest.Burst(1, 503), nil, matrixMethods[0], bodyNone},
		{"backoff/POST-keyed", saferetrytest.Burst(1, 503), nil, matrixMethods[4], bodyStream},
		{"retry-after/PUT", saferetrytest.RetryAfter(503, "30"), nil, matrixMethods[2], bodyFile},
		{"retry-after/POST-unkeyed-429", saferetrytest.RetryAfter(429, "30"), nil, matrixMethods[5], bodyBytes},
		{"cause/PATCH-keyed", saferetrytest.Burst(1, 502), errShutdown, matrixMethods[6], bodyStream},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := "/wait-" + tc.method.name
			srv.Script(path, tc.fault)
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			tr := srv.Transport()
			defer tr.CloseIdleConnections()
			base := &tracingBase{base: tr}
			waiting := make(chan saferetry.Event, 1)
			var once sync.Once
			opts := []saferetry.Option{
				// An hour: only the cancellation can end the wait.
				saferetry.WithBackoff(time.Hour, time.Hour),
				saferetry.WithJitter(saferetry.NoJitter),
				saferetry.WithHook(func(ev saferetry.Event) {
					once.Do(func() { waiting <- ev })
				}),
			}
			if !tc.method.keyed {
				opts = append(opts, saferetry.WithKeyMethods())
			}
			stack := saferetry.New(base, opts...)
			req, caller := newCallerRequest(t, ctx, tc.method.method, srv.URL()+path, tc.body, payloadFor(t.Name(), tc.body.size()))
			snap := testutil.Snapshot(req)

			done := roundTripAsync(stack, req)
			var ev saferetry.Event
			select {
			case ev = <-waiting:
			case <-time.After(testutil.SignalTimeout):
				t.Fatal("the stack never decided to retry")
			}
			if ev.Stopped != saferetry.StopNone || ev.Delay < 30*time.Second {
				t.Fatalf("retry event %+v; want a retry after a long wait", ev)
			}
			cancel(tc.cause)
			r := awaitResult(t, done)
			if r.resp != nil {
				r.resp.Body.Close()
				t.Fatalf("got status %d; want the cancellation", r.resp.StatusCode)
			}
			want := context.Canceled
			if tc.cause != nil {
				want = tc.cause // DESIGN.md: report context.Cause
			}
			if !errors.Is(r.err, want) {
				t.Errorf("err = %v; want %v", r.err, want)
			}
			var re *saferetry.RetryError
			if !errors.As(r.err, &re) || re.Reason != saferetry.StopCanceled || re.Attempts != 1 {
				t.Errorf("err = %#v; want a *RetryError{Attempts: 1, Reason: StopCanceled}", r.err)
			}
			attempts := base.sent()
			if len(attempts) != 1 {
				t.Fatalf("%d attempts; want 1", len(attempts))
			}
			if b := attempts[0].respBody; !b.ReadToEOF() || b.Closes() != 1 {
				t.Errorf("discarded response read to EOF %v, closed %d times; want drained and closed once", b.ReadToEOF(), b.Closes())
			}
			snap.Check(t, req)
			base.waitBodiesClosed(t)
			caller.checkClosedOnce(t)
			if n := len(srv.Stats().Paths[path].Requests); n != 1 {
				t.Errorf("server saw %d requests; want 1", n)
			}
		})
	}
}

func TestCancelMidResponse(t *testing.T) {
	verifyNoLeaks(t)
	servers := protocolServers(t)
	for _, proto := range []string{"h1", "h2"} {
		for _, timeout := range []time.Duration{0, time.Minute} {
			for _, m := range []methodCase{matrixMethods[0], matrixMethods[4]} {
				name := proto + "/" + m.name + "/no-attempt-timeout"
				if timeout > 0 {
					name = proto + "/" + m.name + "/attempt-timeout"
				}
				t.Run(name, func(t *testing.T) {
					srv := servers[proto]
					path := "/" + name
					step := make(chan struct{})
					answer := bytes.Repeat([]byte("slow "), 20)
					srv.Script(path, saferetrytest.Fault{Kind: saferetrytest.SlowBody, Body: answer, Chunk: 10, Step: step})
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					tr := srv.Transport()
					defer tr.CloseIdleConnections()
					base := &tracingBase{base: tr}
					opts := []saferetry.Option{saferetry.WithBackoff(0, 0)}
					if timeout > 0 {
						// Bounds the wait for headers only; the body may
						// take as long as it likes, until the cancel.
						opts = append(opts, saferetry.WithAttemptTimeout(timeout))
					}
					stack := saferetry.New(base, opts...)
					req, caller := newCallerRequest(t, ctx, m.method, srv.URL()+path, bodyStream, payloadFor(name, 1<<10))
					snap := testutil.Snapshot(req)

					resp, err := stack.RoundTrip(req)
					if err != nil {
						t.Fatal(err)
					}
					defer resp.Body.Close()
					first := make([]byte, 10)
					if _, err := io.ReadFull(resp.Body, first); err != nil || !bytes.Equal(first, answer[:10]) {
						t.Fatalf("first piece %q, %v", first, err)
					}
					cancel() // the server holds the second piece until a step that never comes
					rest, err := io.ReadAll(resp.Body)
					if !errors.Is(err, context.Canceled) {
						t.Errorf("reading after the cancel: %d bytes, err %v; want context.Canceled", len(rest), err)
					}
					if len(rest) >= len(answer)-10 {
						t.Errorf("read the whole body after the cancel")
					}
					if err := resp.Body.Close(); err != nil {
						t.Errorf("closing the body: %v", err)
					}
					if n := saferetry.Attempts(resp); n != 1 {
						t.Errorf("Attempts = %d; want 1", n)
					}
					snap.Check(t, req)
					base.waitBodiesClosed(t)
					caller.checkClosedOnce(t)
					wantCommits := 0
					if !m.safe() {
						wantCommits = 1
					}
					if ps := waitHandled(t, srv, path); len(ps.Requests) != 1 || ps.Commits != wantCommits {
						t.Errorf("server saw %d requests, %d commits; want 1, %d", len(ps.Requests), ps.Commits, wantCommits)
					}
				})
			}
		}
	}
}
