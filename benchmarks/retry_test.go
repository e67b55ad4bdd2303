package benchmarks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/hashicorp/go-cleanhttp"

	"github.com/saferetry/saferetry/internal/benchserver"
)

// TestContendersRetry keeps the comparison honest: every retrying
// contender, as configured for the benchmarks, must turn 503, 503, 200
// into one 200 after exactly three attempts, for every request shape the
// benchmarks send, each attempt carrying the whole body. A library update
// or a configuration change that stopped a contender from retrying (and so
// made it look cheaper) fails here, in the plain go test that CI runs.
func TestContendersRetry(t *testing.T) {
	srv := benchserver.NewRecording(t)
	shapes := scenarios(t, t.TempDir(), testSizes)
	var seq uint64
	for _, c := range contenders {
		if c.name == bare.name {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			base := cleanhttp.DefaultPooledTransport()
			defer base.CloseIdleConnections()
			rt := c.wrap(base)
			for _, sc := range shapes {
				t.Run(sc.name, func(t *testing.T) {
					if c.name == "rehttp" && sc.bytes > 0 {
						// rehttp rewinds one shared bytes.Reader for each
						// retry while the previous attempt's write loop may
						// still be inside that reader's WriteTo: -race
						// reports it, and about one run in 30 sends the
						// next attempt an empty body ("ContentLength=262144
						// with Body length 0"). The benchmarks never retry
						// a body, so rehttp's figures are not affected.
						t.Skip("rehttp races on the body it replays (see the README)")
					}
					seq++
					req := sc.request(t, srv.URL+"/flaky")
					want := bodyOf(t, sc.request(t, srv.URL))
					req.Header.Set(benchserver.SeqHeader, strconv.FormatUint(seq, 10))
					roundTrip(t, rt, req)

					got := srv.Attempts(seq)
					if len(got) != 3 {
						t.Fatalf("server saw %d attempts, want 3 (503, 503, 200)", len(got))
					}
					for i, a := range got {
						if a.Method != req.Method {
							t.Errorf("attempt %d: method %s, want %s", i+1, a.Method, req.Method)
						}
						if a.Length != int64(len(want)) || a.Sum != sha256.Sum256(want) {
							t.Errorf("attempt %d: body of %d bytes differs from the %d sent", i+1, a.Length, len(want))
						}
						if a.Key != got[0].Key {
							t.Errorf("attempt %d: Idempotency-Key %q, first attempt had %q", i+1, a.Key, got[0].Key)
						}
					}
					if c.name == "saferetry" && req.Method == http.MethodPost && got[0].Key == "" {
						t.Error("saferetry sent a POST without an Idempotency-Key")
					}
				})
			}
		})
	}
}

// TestByHand checks the bare contender's side of the retry benchmark.
func TestByHand(t *testing.T) {
	srv := benchserver.NewRecording(t)
	base := cleanhttp.DefaultPooledTransport()
	defer base.CloseIdleConnections()
	retryOnce(t, base, newRequest(t, http.MethodGet, srv.URL+"/flaky", nil), 1)
	if n := len(srv.Attempts(1)); n != 3 {
		t.Fatalf("server saw %d attempts, want 3", n)
	}
}

// bodyOf reads the body of a request built for comparison only.
func bodyOf(t *testing.T, req *http.Request) []byte {
	t.Helper()
	if req.Body == nil {
		return nil
	}
	defer req.Body.Close()
	b, err := io.ReadAll(req.Body)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(b)
}

// TestFailsafeLeaksWithoutDrain is why newFailsafehttp drains and closes
// the responses it retries. Without that listener, failsafehttp drops each
// 503 unread and unclosed: its connection stays busy, waiting for a read
// that never comes, so every retry dials a new connection, and the old
// ones (two goroutines each) are released only when the request's context
// is canceled; with context.Background, never.
func TestFailsafeLeaksWithoutDrain(t *testing.T) {
	srv := benchserver.New(t)
	base := cleanhttp.DefaultPooledTransport()
	defer base.CloseIdleConnections()
	policy := failsafehttp.NewRetryPolicyBuilder().WithMaxRetries(maxRetries).WithDelay(0).Build()
	rt := failsafehttp.NewRoundTripper(base, policy)

	var conns, reused atomic.Int32
	ctx, cancel := context.WithCancel(httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			conns.Add(1)
			if info.Reused {
				reused.Add(1)
			}
		},
	}))
	defer cancel() // releases the abandoned connections
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/flaky", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(benchserver.SeqHeader, "1")
	roundTrip(t, rt, req)
	if conns.Load() != 3 || reused.Load() != 0 {
		t.Fatalf("%d attempts on %d reused connections; want 3 attempts, each on a new connection, "+
			"as long as failsafehttp leaves retried responses unread", conns.Load(), reused.Load())
	}
}
