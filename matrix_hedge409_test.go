package saferetry_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/saferetry/saferetry"
	"github.com/saferetry/saferetry/internal/testutil"
	"github.com/saferetry/saferetry/saferetrytest"
)

// The hedged cells where the hedge meets a 409: the first attempt of a
// keyed write is slow but alive at the deduplicating server (its key is in
// flight there), and a hedge with the same key arrives meanwhile and gets
// 409 Conflict from saferetrytest's own deduplication (draft-ietf-httpapi-
// idempotency-key-header §2.7), not from a script. Issue 12: such a 409 is
// not a win, does not start another hedge, and the run keeps waiting for
// the attempts in flight.

// hedgeAfterConflictFixed records whether the library has stopped sending
// hedges after a hedge's 409. Until it has (see the report on branch
// hedge409: settle skips its own hedge on a 409, but the hedge timer stays
// armed with hedges left, so with WithHedge(d, n>=2) a hedge goes out
// every d after the 409, each meeting another 409), the tests that see
// such a hedge skip, naming the bug, instead of failing; every other
// assertion of theirs still runs. Set it to true with the fix: a hedge
// after a 409 then fails them.
const hedgeAfterConflictFixed = true

// skipIfHedgeAfterConflict fails, or skips while the bug is known, when
// hedges were sent after the first 409.
func skipIfHedgeAfterConflict(t *testing.T, after int) {
	t.Helper()
	if after == 0 {
		return
	}
	msg := fmt.Sprintf("%d hedge(s) sent after a hedge got 409; want none: the 409 proves the original is in flight at the server", after)
	if hedgeAfterConflictFixed {
		t.Fatal(msg)
	}
	t.Skip("known bug (transport_hedge.go: the hedge timer stays armed after a 409): " + msg)
}

// TestHedgeConflictStopsHedging checks on a virtual clock, exactly, that a
// 409 answering a hedge stops the hedging whatever maxHedges is: the
// first attempt answers 201 at 100ms; every other attempt gets 409 1ms
// after it is sent, as from a server still processing the first. The
// first hedge goes out at 10ms; no other should, and the caller gets the
// original's 201 at 100ms.
func TestHedgeConflictStopsHedging(t *testing.T) {
	for maxHedges := 1; maxHedges <= 5; maxHedges++ {
		t.Run("maxHedges="+strconv.Itoa(maxHedges), func(t *testing.T) {
			var sent, attempts int32
			synctest.Test(t, func(t *testing.T) {
				var n atomic.Int32
				base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
					body, _ := io.ReadAll(r.Body)
					r.Body.Close()
					status, after := http.StatusCreated, 100*time.Millisecond
					if n.Add(1) > 1 {
						status, after = http.StatusConflict, time.Millisecond
					}
					if string(body) != "amount=100" {
						return nil, fmt.Errorf("body %q", body)
					}
					timer := time.NewTimer(after)
					defer timer.Stop()
					select {
					case <-timer.C:
						return &http.Response{StatusCode: status, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(nil)), Request: r}, nil
					case <-r.Context().Done():
						return nil, r.Context().Err()
					}
				})
				req, _ := http.NewRequest(http.MethodPost, "http://api.test/charges", bytes.NewReader([]byte("amount=100")))
				start := time.Now()
				resp, err := saferetry.New(base, saferetry.WithHedge(10*time.Millisecond, maxHedges), saferetry.WithBudget(nil)).RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if took := time.Since(start); resp.StatusCode != http.StatusCreated || took != 100*time.Millisecond {
					t.Fatalf("status %d after %v; want the original's 201 at 100ms", resp.StatusCode, took)
				}
				sent, attempts = n.Load(), int32(saferetry.Attempts(resp))
			})
			skipIfHedgeAfterConflict(t, int(sent)-2)
			if sent != 2 || attempts != 2 {
				t.Fatalf("%d attempts sent, Attempts %d; want 2", sent, attempts)
			}
		})
	}
}

// conflictCell is one real-network cell: a keyed write whose original
// holds its key at the server while a hedge gets 409, then either commits
// (fail == nil) or fails before committing.
type conflictCell struct {
	proto     string // "h1" or "h2", both over TLS
	method    string
	body      string // a body kind of hedgedRequest
	maxHedges int
	fail      *saferetrytest.Fault // nil: the original succeeds
}

func (c conflictCell) name() string {
	n := fmt.Sprintf("%s/%s/%s/maxHedges=%d", c.proto, c.method, c.body, c.maxHedges)
	switch {
	case c.fail == nil:
	case c.fail.Status != 0:
		n += "/then-" + strconv.Itoa(c.fail.Status)
	default:
		n += "/then-reset"
	}
	return n
}

// TestMatrixHedgedConflict: the original is slow but alive and succeeds.
// For keyed POST and PATCH, every kind of body, over HTTP/1.1 and HTTP/2,
// with one hedge and with three allowed: the caller gets the original's
// 200 and body byte for byte (not a replay), the write is applied once,
// the server saw exactly two attempts with the same key and the same body
// (the original, committed, and the hedge, answered 409), and no hedge
// went out after the 409.
func TestMatrixHedgedConflict(t *testing.T) {
	for _, proto := range []string{"h1", "h2"} {
		for _, method := range []string{http.MethodPost, http.MethodPatch} {
			for _, body := range []string{"none", "bytes", "file", "stream"} {
				for _, maxHedges := range []int{1, 3} {
					c := conflictCell{proto: proto, method: method, body: body, maxHedges: maxHedges}
					t.Run(c.name(), func(t *testing.T) { runConflictCell(t, c) })
				}
			}
		}
	}
}

// TestMatrixHedgedConflictThenFailure: the hedge gets 409 while the
// original holds its key, then the original fails before the server
// applied it (its connection or stream reset, or a 503), and the server
// frees the key. The 409 said only that the original was in flight; once
// it failed, no attempt is in flight and nothing was applied, so the run
// must retry as after any transient failure of a keyed write: with the
// same key and body, within the (default) budget. The retry commits: the
// caller gets its 200, the write is applied exactly once, and the server
// saw three attempts, each with the same key and body.
func TestMatrixHedgedConflictThenFailure(t *testing.T) {
	fails := []saferetrytest.Fault{
		{Kind: saferetrytest.FailBeforeCommit},                                        // a reset
		{Kind: saferetrytest.FailBeforeCommit, Status: http.StatusServiceUnavailable}, // a 503
	}
	for _, proto := range []string{"h1", "h2"} {
		for _, method := range []string{http.MethodPost, http.MethodPatch} {
			for _, body := range []string{"none", "bytes", "file", "stream"} {
				for _, f := range fails {
					// One hedge: with more, the retry could be hedged in
					// turn if it were slower than the hedge delay.
					c := conflictCell{proto: proto, method: method, body: body, maxHedges: 1, fail: &f}
					t.Run(c.name(), func(t *testing.T) { runConflictCell(t, c) })
				}
			}
		}
	}
}

func runConflictCell(t *testing.T, c conflictCell) {
	verifyNoLeaks(t)
	opts := []saferetrytest.Option{saferetrytest.WithTLS()}
	if c.proto == "h2" {
		opts = append(opts, saferetrytest.WithHTTP2())
	}
	srv := saferetrytest.New(opts...)
	t.Cleanup(srv.Close)
	tr := srv.Transport()
	t.Cleanup(tr.CloseIdleConnections)
	const path = "/charges"
	payload := bytes.Repeat([]byte("conflicted body "), 250) // 4 KB

	// The original holds its key in flight at the server until release.
	arrived, release := make(chan struct{}), make(chan struct{})
	f := saferetrytest.Fault{Kind: saferetrytest.Pass}
	if c.fail != nil {
		f = *c.fail
	}
	f.Arrived, f.Release = arrived, release
	srv.Script(path, f)

	// A hedge goes out only once the original holds its key at the
	// server, so the server answers it 409 however fast either travels.
	held := make(chan struct{})
	var calls atomic.Int32
	base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		if calls.Add(1) > 1 {
			select {
			case <-held:
			case <-r.Context().Done():
				if r.Body != nil {
					r.Body.Close()
				}
				return nil, r.Context().Err()
			}
		}
		return tr.RoundTrip(r)
	})

	// hedges counts the hedges sent (the hook runs on the run's goroutine
	// as each goes out); hedgesAt409, those sent when the first 409 was
	// classified, on the same goroutine, so that any sent later came
	// after the client knew of the 409. lateHedge signals the first such.
	delay := 20 * time.Millisecond
	if c.maxHedges > 1 {
		// Long enough that the hedge's 409 comes back before a second
		// hedge is due; on a machine too slow for that, the cell says so.
		delay = 100 * time.Millisecond
	}
	var hedges, hedgesAt409 atomic.Int32
	var seen409 atomic.Bool
	conflict, lateHedge := make(chan struct{}), make(chan struct{}, 1)
	strategy := saferetry.StrategyFunc(func(a saferetry.Attempt) saferetry.Retryable {
		if a.StatusCode() == http.StatusConflict && !seen409.Load() {
			hedgesAt409.Store(hedges.Load())
			seen409.Store(true)
			close(conflict)
		}
		return saferetry.DefaultStrategy.Classify(a)
	})
	stack := saferetry.New(base,
		saferetry.WithHedge(delay, c.maxHedges),
		saferetry.WithStrategy(strategy),
		saferetry.WithHook(func(ev saferetry.Event) {
			if !ev.Hedge {
				return
			}
			hedges.Add(1)
			if seen409.Load() {
				select {
				case lateHedge <- struct{}{}:
				default:
				}
			}
		}))

	ctx, cancel := context.WithCancel(t.Context())
	req := hedgedRequest(t, c.method, srv.URL()+path, c.body, payload).WithContext(ctx)
	done := roundTripAsync(stack, req)
	returned := false
	t.Cleanup(func() {
		// If the cell failed before RoundTrip returned, end it first.
		cancel()
		if !returned {
			if r := <-done; r.resp != nil {
				r.resp.Body.Close()
			}
		}
	})

	testutil.WaitSignal(t, arrived, "the original to hold its key at the server")
	close(held)
	testutil.WaitSignal(t, conflict, "the hedge's 409 to reach the client")
	if c.maxHedges > 1 {
		// The original stays held while the run could still send a hedge
		// after the 409: its hedge timer, armed before the 409 came back,
		// expires within one delay, and a run that still hedges then has
		// nothing else to do but send it. A second delay is slack for a
		// loaded machine. This waits for time to pass (the timer's), and
		// ends at once if a hedge goes out.
		grace := time.NewTimer(2 * delay)
		select {
		case <-lateHedge:
		case <-grace.C:
		}
		grace.Stop()
	}
	close(release)
	res := awaitResult(t, done)
	returned = true
	if res.err != nil {
		t.Fatal(res.err)
	}
	got, err := io.ReadAll(res.resp.Body)
	res.resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}

	after := int(hedges.Load() - hedgesAt409.Load())
	skipIfHedgeAfterConflict(t, after)
	if n := hedgesAt409.Load(); n != 1 {
		t.Skipf("%d hedges were sent before the first 409 came back (the hedge delay passed twice before it did); the machine was too slow for this cell to test anything", n)
	}

	// Exactly what the committing attempt's answer was: its status, its
	// commit number and its body byte for byte, not a replay.
	wantAttempts, wantEffects := 2, []saferetrytest.Effect{saferetrytest.Committed, saferetrytest.InProgress}
	if c.fail != nil {
		wantAttempts, wantEffects = 3, []saferetrytest.Effect{saferetrytest.NoEffect, saferetrytest.InProgress, saferetrytest.Committed}
	}
	wantResp := fmt.Sprintf("committed %s %s #1\n", c.method, path)
	if res.resp.StatusCode != http.StatusOK || string(got) != wantResp ||
		res.resp.Header.Get("X-Commit") != "1" || res.resp.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("got %d %q (X-Commit %q, replayed %q); want 200 %q, the first commit's own answer",
			res.resp.StatusCode, got, res.resp.Header.Get("X-Commit"), res.resp.Header.Get("Idempotent-Replayed"), wantResp)
	}
	if n := saferetry.Attempts(res.resp); n != wantAttempts || int(calls.Load()) != wantAttempts {
		t.Fatalf("Attempts %d, %d sent; want %d", n, calls.Load(), wantAttempts)
	}

	stats, err := srv.Wait(t.Context(), path, wantAttempts)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Commits != 1 || len(stats.Requests) != wantAttempts {
		t.Fatalf("server: %d commits, %d requests; want 1 and %d", stats.Commits, len(stats.Requests), wantAttempts)
	}
	key := stats.Requests[0].Key
	for i, r := range stats.Requests {
		if r.Effect != wantEffects[i] {
			t.Errorf("request %d: %v; want %v", i+1, r.Effect, wantEffects[i])
		}
		if key == "" || r.Key != key {
			t.Errorf("request %d: key %q; want the original's %q on every attempt", i+1, r.Key, key)
		}
		if !r.BodyRead || !bytes.Equal(r.Body, wantBody(c.body, payload)) {
			t.Errorf("request %d: %d body bytes (whole: %v); want the %d sent, byte for byte", i+1, len(r.Body), r.BodyRead, len(wantBody(c.body, payload)))
		}
	}
}
