package saferetry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/uuid"
	"github.com/saferetry/saferetry/internal/testutil"
)

// spyStore is a KeyStore that counts its calls and can be told to fail.
type spyStore struct {
	MemoryKeyStore
	begins, finishes atomic.Int32
	beginErr         error
	finished         chan int // receives each Finish's status, if set
}

func (s *spyStore) Begin(ctx context.Context, op string, fp Fingerprint, key string) (string, error) {
	s.begins.Add(1)
	if s.beginErr != nil {
		return "", s.beginErr
	}
	return s.MemoryKeyStore.Begin(ctx, op, fp, key)
}

func (s *spyStore) Finish(ctx context.Context, op, key string, status int) error {
	s.finishes.Add(1)
	if s.finished != nil {
		s.finished <- status
	}
	return s.MemoryKeyStore.Finish(ctx, op, key, status)
}

func namedPost(t testing.TB, ctx context.Context, url, op, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(WithOperation(ctx, op), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestOperationContext(t *testing.T) {
	ctx := context.Background()
	if op, ok := operationFrom(ctx); ok || op != "" {
		t.Fatalf("background names %q, %v", op, ok)
	}
	ctx = WithOperation(ctx, "webhook/4711")
	if op, ok := operationFrom(ctx); !ok || op != "webhook/4711" {
		t.Fatalf("got %q, %v", op, ok)
	}
	if op, ok := operationFrom(WithOperation(ctx, "")); ok || op != "" {
		t.Fatalf("the empty name must name nothing, got %q, %v", op, ok)
	}
}

// Two stacks sharing one store stand for a process and its successor
// after a restart: the second sends the operation with the first's key.
func TestNamedOperationKeepsItsKeyAcrossStacks(t *testing.T) {
	srv := newRecordingServer(t, http.StatusServiceUnavailable, http.StatusCreated)
	store := &MemoryKeyStore{TTL: time.Hour}
	send := func(body string) (*http.Response, error) {
		stack := New(nil, WithKeyStore(store), WithMaxRetries(0))
		defer stack.CloseIdleConnections()
		resp, err := stack.RoundTrip(namedPost(t, context.Background(), srv.URL, "charge/order-1001", body))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}

	resp, err := send(`{"amount":4200}`)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("first process: %v, %v", resp, err)
	}
	pending, err := store.Pending(context.Background())
	if err != nil || len(pending) != 1 || pending[0].Operation != "charge/order-1001" {
		t.Fatalf("after a 503 the operation must be pending: %+v, %v", pending, err)
	}
	first := srv.received()[0].key
	if pending[0].Key != first {
		t.Fatalf("pending key %q, sent %q", pending[0].Key, first)
	}
	if want := fingerprint("POST", srv.URL, `{"amount":4200}`); pending[0].Fingerprint != want {
		t.Fatalf("fingerprint %v, want %v", pending[0].Fingerprint, want)
	}

	resp, err = send(`{"amount":4200}`)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("second process: %v, %v", resp, err)
	}
	got := srv.received()
	if len(got) != 2 || got[1].key != first {
		t.Fatalf("keys %q then %q, want the same", got[0].key, got[len(got)-1].key)
	}
	if pending, _ := store.Pending(context.Background()); len(pending) != 0 {
		t.Fatalf("a 201 finishes the operation, still pending: %+v", pending)
	}

	_, err = send(`{"amount":4200}`)
	var opErr *OperationError
	if !errors.Is(err, ErrOperationDone) || !errors.As(err, &opErr) || opErr.Operation != "charge/order-1001" {
		t.Fatalf("a finished operation sent again: %v, want an *OperationError with ErrOperationDone", err)
	}
	if n := len(srv.received()); n != 2 {
		t.Fatalf("a finished operation was sent again (%d requests)", n)
	}
}

func TestNamedOperationRefusesAnotherRequest(t *testing.T) {
	const url = "http://api.test/charges"
	tests := []struct {
		name, method, url, body string
		finishFirst             bool
		says                    string // how the error tells what differs
	}{
		{name: "other body", method: "POST", url: url, body: `{"amount":1}`, says: "begun with a different body"},
		{name: "other URL", method: "POST", url: url + "?x=1", body: `{"amount":4200}`, says: "begun with a different URL"},
		{name: "other method", method: "PATCH", url: url, body: `{"amount":4200}`, says: "begun with method POST, now PATCH"},
		{name: "other body of a done operation", method: "POST", url: url, body: `{"amount":1}`, finishFirst: true, says: "a different body"},
		{name: "other everything", method: "PATCH", url: url + "?x=1", body: `{"amount":1}`, says: "begun with method POST, now PATCH; a different URL; a different body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sent := 0
			status := http.StatusServiceUnavailable
			if tt.finishFirst {
				status = http.StatusOK
			}
			k := &KeyInjector{Methods: []string{"POST", "PATCH"}, Base: testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				sent++
				return &http.Response{StatusCode: status, Body: http.NoBody, Request: r}, nil
			})}
			if _, err := k.RoundTrip(namedPost(t, context.Background(), url, "op", `{"amount":4200}`)); err != nil {
				t.Fatal(err)
			}
			body := &countingCloser{Reader: *strings.NewReader(tt.body)}
			req, _ := http.NewRequestWithContext(WithOperation(context.Background(), "op"), tt.method, tt.url, body)
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(tt.body)), nil }
			_, err := k.RoundTrip(req)
			var opErr *OperationError
			if !errors.Is(err, ErrFingerprintMismatch) || !errors.As(err, &opErr) || opErr.Operation != "op" {
				t.Fatalf("err %v, want an *OperationError with ErrFingerprintMismatch", err)
			}
			if sent != 1 || body.closed != 1 {
				t.Fatalf("sent %d requests, body closed %d times; want 1 and 1", sent, body.closed)
			}
			if msg := err.Error(); !strings.Contains(msg, `operation "op"`) || strings.Contains(msg, "saferetry: saferetry") ||
				!strings.Contains(msg, tt.says) || strings.Contains(msg, "sha256") {
				t.Fatalf("unclear message: %v; want it to say %q, without digests", err, tt.says)
			}
		})
	}
}

func TestNamedOperationFinishesOnFinalOutcomes(t *testing.T) {
	retryAfter := http.Header{"Retry-After": {"1"}}
	tests := []struct {
		status   int
		header   http.Header
		err      error
		finished bool
	}{
		{status: 200, finished: true},
		{status: 201, finished: true},
		{status: 204, finished: true},
		{status: 400, finished: true},
		{status: 404, finished: true},
		{status: 413, finished: true},
		{status: 422, finished: true},
		{status: 413, header: retryAfter},
		{status: 408},
		{status: 409},
		{status: 429, header: retryAfter},
		{status: 500},
		{status: 502},
		{status: 503},
		{status: 303, finished: true},
		{status: 301},
		{status: 302},
		{status: 307},
		{status: 308},
		{err: errors.New("connection reset")},
	}
	for _, tt := range tests {
		name := fmt.Sprint(tt.status, " ", tt.header)
		if tt.err != nil {
			name = "transport error"
		}
		t.Run(name, func(t *testing.T) {
			store := &spyStore{}
			k := &KeyInjector{Store: store, Base: testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				if tt.err != nil {
					return nil, tt.err
				}
				return &http.Response{StatusCode: tt.status, Header: tt.header, Body: http.NoBody, Request: r}, nil
			})}
			resp, err := k.RoundTrip(namedPost(t, context.Background(), "http://api.test/", "op", "x"))
			if !errors.Is(err, tt.err) || (err == nil && resp.StatusCode != tt.status) {
				t.Fatalf("outcome changed: %v, %v", resp, err)
			}
			pending, _ := store.Pending(context.Background())
			if tt.finished != (len(pending) == 0) || tt.finished != (store.finishes.Load() == 1) {
				t.Fatalf("pending %v, finish called %d times; want finished=%v", pending, store.finishes.Load(), tt.finished)
			}
		})
	}
}

// stallingStore is a store whose Finish blocks until its context is done
// (or, if the context never ends, an hour passes): a Redis that stopped
// answering, a SQLite file another process keeps locked.
type stallingStore struct {
	MemoryKeyStore
	finishErr error // what the last Finish's context ended with
}

func (s *stallingStore) Finish(ctx context.Context, op, key string, status int) error {
	select {
	case <-ctx.Done():
		s.finishErr = context.Cause(ctx)
		return s.finishErr
	case <-time.After(time.Hour):
		return s.MemoryKeyStore.Finish(ctx, op, key, status)
	}
}

// A store that stalls in Finish holds a final response back for
// finishTimeout at most, whatever the caller's deadline, and leaves the
// operation pending (safe: the next send reuses its key).
func TestStalledFinishDoesNotHoldTheResponse(t *testing.T) {
	for _, deadline := range []time.Duration{0, 300 * time.Millisecond, time.Minute} {
		t.Run(fmt.Sprint("caller deadline ", deadline), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := &stallingStore{}
				k := &KeyInjector{Store: store, Base: testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
					return &http.Response{StatusCode: http.StatusCreated, Body: http.NoBody, Request: r}, nil
				})}
				ctx := context.Background()
				if deadline > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, deadline)
					defer cancel()
				}
				start := time.Now()
				resp, err := k.RoundTrip(namedPost(t, ctx, "http://api.test/", "op", "x"))
				if err != nil || resp.StatusCode != http.StatusCreated {
					t.Fatalf("%v, %v; want the 201", resp, err)
				}
				if held := time.Since(start); held != finishTimeout {
					t.Fatalf("the response was held %v; want finishTimeout, %v", held, finishTimeout)
				}
				if !errors.Is(store.finishErr, context.DeadlineExceeded) {
					t.Fatalf("Finish's context ended with %v; want its own deadline", store.finishErr)
				}
				if p, _ := store.Pending(context.Background()); len(p) != 1 {
					t.Fatalf("pending %+v; a Finish that timed out leaves the operation pending", p)
				}
			})
		})
	}
}

// Begin runs before anything is sent, under the caller's context: a store
// that stalls there costs the caller its deadline, no more, and nothing
// is sent.
func TestStalledBeginEndsAtTheCallersDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sent := false
		k := &KeyInjector{Store: stallingBegin{}, Base: testutil.RoundTripFunc(func(*http.Request) (*http.Response, error) {
			sent = true
			return nil, errors.New("sent")
		})}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := k.RoundTrip(namedPost(t, ctx, "http://api.test/", "op", "x"))
		var opErr *OperationError
		if !errors.As(err, &opErr) || !errors.Is(err, context.DeadlineExceeded) || sent {
			t.Fatalf("err %v, sent %v; want an *OperationError at the deadline, nothing sent", err, sent)
		}
		if waited := time.Since(start); waited != 300*time.Millisecond {
			t.Fatalf("Begin held the caller %v past a 300ms deadline", waited)
		}
	})
}

// stallingBegin is a store whose Begin blocks until its context is done.
type stallingBegin struct{ KeyStore }

func (stallingBegin) Begin(ctx context.Context, _ string, _ Fingerprint, _ string) (string, error) {
	<-ctx.Done()
	return "", ctx.Err()
}

// A caller that gives up as soon as the answer is in does not cost the
// operation its done mark: Finish is detached from the caller's
// cancellation.
func TestFinishSurvivesTheCallersCancellation(t *testing.T) {
	store := &ctxCheckingStore{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := &KeyInjector{Store: store, Base: testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		cancel() // the caller cancels the moment the answer arrives
		return &http.Response{StatusCode: http.StatusCreated, Body: http.NoBody, Request: r}, nil
	})}
	if _, err := k.RoundTrip(namedPost(t, ctx, "http://api.test/", "op", "x")); err != nil {
		t.Fatal(err)
	}
	if p, _ := store.Pending(context.Background()); len(p) != 0 {
		t.Fatalf("pending %+v; the caller's cancellation must not stop Finish", p)
	}
}

// ctxCheckingStore fails Finish when its context is already done, as a
// store doing I/O would.
type ctxCheckingStore struct{ MemoryKeyStore }

func (s *ctxCheckingStore) Finish(ctx context.Context, op, key string, status int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.MemoryKeyStore.Finish(ctx, op, key, status)
}

// A done operation is kept, so that a late repeat is refused rather than
// sent under a new key, until its TTL; then it is forgotten and pruned.
func TestMemoryKeyStoreTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := &MemoryKeyStore{TTL: time.Hour}
		fp := fingerprint("POST", "http://api.test/", "")
		if k, err := s.Begin(ctx, "pending", fp, "k1"); k != "k1" || err != nil {
			t.Fatalf("%q, %v", k, err)
		}
		time.Sleep(30 * time.Minute)
		if k, _ := s.Begin(ctx, "done", fp, "d1"); k != "d1" {
			t.Fatal(k)
		}
		s.Finish(ctx, "done", "d1", 201)
		time.Sleep(29 * time.Minute)
		if k, err := s.Begin(ctx, "pending", fp, "k2"); k != "k1" || err != nil {
			t.Fatalf("59m in: %q, %v; want the first key", k, err)
		}
		time.Sleep(time.Minute)
		if k, err := s.Begin(ctx, "pending", fp, "k3"); k != "k3" || err != nil {
			t.Fatalf("an hour in: %q, %v; want the operation forgotten", k, err)
		}
		if _, err := s.Begin(ctx, "done", fp, "d2"); !errors.Is(err, ErrOperationDone) || !strings.Contains(err.Error(), "201") {
			t.Fatalf("a done operation within its TTL: %v", err)
		}
		time.Sleep(30 * time.Minute)
		if k, err := s.Begin(ctx, "done", fp, "d3"); k != "d3" || err != nil {
			t.Fatalf("a done operation past its TTL: %q, %v; want it begun anew", k, err)
		}
		s.Finish(ctx, "done", "d1", 200) // the old instance's key: ignored
		if p, _ := s.Pending(ctx); len(p) != 2 {
			t.Fatalf("pending %+v, want both operations", p)
		}
		time.Sleep(2 * time.Hour)
		if p, _ := s.Pending(ctx); len(p) != 0 {
			t.Fatalf("expired operations listed: %+v", p)
		}
		if n := s.size(); n != 0 {
			t.Fatalf("%d expired operations kept", n)
		}
	})
}

// At capacity, a new operation evicts the finished operation that finished
// first; a rerun of an evicted operation is a new operation, with a new
// key; pending operations are never evicted: with only those, Begin
// refuses new ones with ErrKeyStoreFull, and still resumes known ones.
func TestMemoryKeyStoreCapacity(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := &MemoryKeyStore{MaxOperations: 3}
		fp := fingerprint("POST", "http://api.test/", "")
		begin := func(op, candidate string) (string, error) {
			t.Helper()
			time.Sleep(time.Second) // distinct creation times
			key, err := s.Begin(ctx, op, fp, candidate)
			if n := s.size(); n > 3 {
				t.Fatalf("%d operations kept, MaxOperations is 3", n)
			}
			return key, err
		}
		for _, op := range []string{"a", "b", "c"} {
			begin(op, op+"1")
		}
		s.Finish(ctx, "b", "b1", 201)
		s.Finish(ctx, "a", "a1", 201)
		if key, err := begin("d", "d1"); key != "d1" || err != nil {
			t.Fatalf("d at capacity: %q, %v; want b (finished first) evicted for it", key, err)
		}
		if _, err := begin("a", "a2"); !errors.Is(err, ErrOperationDone) {
			t.Fatalf("a: %v; want it still known, and done", err)
		}
		if key, err := begin("b", "b2"); key != "b2" || err != nil {
			t.Fatalf("b, evicted: %q, %v; want it begun anew with a new key (evicting a)", key, err)
		}
		_, err := begin("e", "e1")
		if !errors.Is(err, ErrKeyStoreFull) || !strings.Contains(err.Error(), "3") {
			t.Fatalf("e with 3 pending: %v; want ErrKeyStoreFull naming the capacity", err)
		}
		if key, err := begin("c", "c2"); key != "c1" || err != nil {
			t.Fatalf("c, pending, at capacity: %q, %v; want it resumed", key, err)
		}
		var names []string
		p, _ := s.Pending(ctx)
		for _, r := range p {
			names = append(names, r.Operation+"="+r.Key)
		}
		if got := strings.Join(names, " "); got != "c=c1 d=d1 b=b2" {
			t.Fatalf("pending %s; want c=c1 d=d1 b=b2, no pending operation forgotten", got)
		}
		s.Finish(ctx, "d", "d1", 200)
		if key, err := begin("e", "e2"); key != "e2" || err != nil {
			t.Fatalf("e once d finished: %q, %v", key, err)
		}
	})
}

// The memory a full MemoryKeyStore holds, per operation, with 20-byte
// names and UUID keys: the figure MemoryKeyStore's documentation gives
// (about 285 bytes), checked against a loose bound.
func TestMemoryKeyStoreCost(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a store of 100,000 operations")
	}
	const n = defaultMaxOperations
	ctx := context.Background()
	fp := fingerprint("POST", "https://api.test/v1/charges", "{}")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := &MemoryKeyStore{}
	for i := range n {
		if _, err := s.Begin(ctx, fmt.Sprintf("charge/order-%07d", i), fp, newUUID()); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perOp := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%d operations: %.0f bytes each, %.1f MB in all", n, perOp, perOp*n/1e6)
	if perOp > 400 {
		t.Errorf("%.0f bytes per operation; the documentation says about 285", perOp)
	}
	if _, err := s.Begin(ctx, "one more", fp, newUUID()); !errors.Is(err, ErrKeyStoreFull) {
		t.Fatalf("one more than the default MaxOperations: %v; want ErrKeyStoreFull", err)
	}
	runtime.KeepAlive(s)
}

// Expiry frees room as eviction does, pending operations included.
func TestMemoryKeyStoreTTLFreesCapacity(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := &MemoryKeyStore{TTL: time.Hour, MaxOperations: 1}
		fp := fingerprint("POST", "http://api.test/", "")
		s.Begin(ctx, "a", fp, "a1")
		if _, err := s.Begin(ctx, "b", fp, "b1"); !errors.Is(err, ErrKeyStoreFull) {
			t.Fatalf("b: %v; want ErrKeyStoreFull", err)
		}
		time.Sleep(time.Hour)
		if key, err := s.Begin(ctx, "b", fp, "b1"); key != "b1" || err != nil {
			t.Fatalf("b once a expired: %q, %v", key, err)
		}
		if n := s.size(); n != 1 {
			t.Fatalf("%d operations kept, want 1", n)
		}
	})
}

// A store full of pending operations refuses a new one end to end: the
// caller gets an *OperationError wrapping ErrKeyStoreFull, nothing is
// sent, the body is closed.
func TestKeyStoreFullSendsNothing(t *testing.T) {
	srv := newRecordingServer(t, http.StatusServiceUnavailable, http.StatusServiceUnavailable, http.StatusCreated)
	stack := New(nil, WithKeyStore(&MemoryKeyStore{MaxOperations: 2}), WithMaxRetries(0))
	defer stack.CloseIdleConnections()
	for _, op := range []string{"a", "b"} {
		resp, err := stack.RoundTrip(namedPost(t, context.Background(), srv.URL, op, op))
		if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("%s: %v, %v", op, resp, err)
		}
		resp.Body.Close()
	}
	closed := 0
	req := namedPost(t, context.Background(), srv.URL, "c", "c")
	req.Body = opBodyCloser{req.Body, &closed}
	_, err := stack.RoundTrip(req)
	var opErr *OperationError
	if !errors.Is(err, ErrKeyStoreFull) || !errors.As(err, &opErr) || opErr.Operation != "c" {
		t.Fatalf("err %v; want an *OperationError for c wrapping ErrKeyStoreFull", err)
	}
	if n := len(srv.received()); n != 2 || closed != 1 {
		t.Fatalf("%d requests reached the server, body closed %d times; want 2 and 1", n, closed)
	}
}

// size is how many operations s keeps. It panics if its lists do not
// hold each of them exactly once (byFinish: the finished ones), linked
// both ways.
func (s *MemoryKeyStore) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for l, want := range [2]func(*memoryRecord) bool{
		byAge:    func(*memoryRecord) bool { return true },
		byFinish: (*memoryRecord).Finished,
	} {
		seen := 0
		var prev *memoryRecord
		for r := s.lists[l].head; r != nil; prev, r = r, r.links[l].next {
			if r.links[l].prev != prev || s.ops[r.Operation] != r || !want(r) {
				panic(fmt.Sprintf("list %d: %q is misplaced", l, r.Operation))
			}
			seen++
		}
		if s.lists[l].tail != prev {
			panic(fmt.Sprintf("list %d: tail is not the last record", l))
		}
		expected := 0
		for _, r := range s.ops {
			if want(r) {
				expected++
			}
		}
		if seen != expected {
			panic(fmt.Sprintf("list %d holds %d records, want %d", l, seen, expected))
		}
	}
	return len(s.ops)
}

func TestMemoryKeyStorePendingOldestFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		var s MemoryKeyStore // the zero value is usable
		fp := fingerprint("POST", "http://api.test/", "")
		for _, op := range []string{"c", "a", "b", "done"} {
			s.Begin(ctx, op, fp, "key-"+op)
			time.Sleep(time.Second)
		}
		s.Finish(ctx, "done", "key-done", 200)
		s.Finish(ctx, "b", "not-b's-key", 200)
		p, err := s.Pending(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range p {
			got = append(got, r.Operation+"="+r.Key)
			if r.Fingerprint != fp || r.Finished() {
				t.Fatalf("record %+v", r)
			}
		}
		if strings.Join(got, " ") != "c=key-c a=key-a b=key-b" {
			t.Fatalf("pending %v, want c, a, b in the order they began", got)
		}
	})
}

func TestNamedOperationLeavesTheRequestUntouched(t *testing.T) {
	for _, status := range []int{http.StatusCreated, http.StatusServiceUnavailable} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			srv := newRecordingServer(t, status)
			stack := New(nil, WithMaxRetries(0))
			defer stack.CloseIdleConnections()
			ctx := WithOperation(context.Background(), "op")
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/charges?a=1", bytes.NewReader([]byte("payload")))
			req.Header.Set("Content-Type", "text/plain")
			before := testutil.Snapshot(req)
			resp, err := stack.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			before.Check(t, req)
			got := srv.received()
			if len(got) != 1 || got[0].body != "payload" || got[0].key == "" {
				t.Fatalf("server got %+v", got)
			}
		})
	}
}

func TestNamedOperationBodies(t *testing.T) {
	tests := []struct {
		name    string
		body    func() (io.Reader, func(*http.Request))
		refused bool
	}{
		{name: "no body", body: func() (io.Reader, func(*http.Request)) { return nil, nil }},
		{name: "NoBody", body: func() (io.Reader, func(*http.Request)) { return http.NoBody, nil }},
		{name: "bytes.Buffer", body: func() (io.Reader, func(*http.Request)) { return bytes.NewBufferString("payload"), nil }},
		{name: "custom GetBody without WriteTo", body: func() (io.Reader, func(*http.Request)) {
			return strings.NewReader("payload"), func(r *http.Request) {
				r.GetBody = func() (io.ReadCloser, error) {
					return io.NopCloser(io.LimitReader(strings.NewReader("payload"), 1<<20)), nil
				}
			}
		}},
		{name: "no GetBody", refused: true, body: func() (io.Reader, func(*http.Request)) {
			return io.MultiReader(strings.NewReader("payload")), nil
		}},
		{name: "GetBody fails", refused: true, body: func() (io.Reader, func(*http.Request)) {
			return strings.NewReader("payload"), func(r *http.Request) {
				r.GetBody = func() (io.ReadCloser, error) { return nil, errors.New("gone") }
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sent []string
			k := &KeyInjector{Base: testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				b := []byte{}
				if r.Body != nil {
					b, _ = io.ReadAll(r.Body)
					r.Body.Close()
				}
				sent = append(sent, string(b))
				return &http.Response{StatusCode: 503, Body: http.NoBody, Request: r}, nil
			})}
			r, fix := tt.body()
			req, _ := http.NewRequestWithContext(WithOperation(context.Background(), "op"), http.MethodPost, "http://api.test/", r)
			if fix != nil {
				fix(req)
			}
			closed := 0
			if req.Body != nil && req.Body != http.NoBody {
				req.Body = opBodyCloser{req.Body, &closed}
			}
			_, err := k.RoundTrip(req)
			if tt.refused {
				var opErr *OperationError
				if !errors.As(err, &opErr) || len(sent) != 0 || closed != 1 {
					t.Fatalf("err %v, sent %q, closed %d; want an *OperationError, nothing sent, body closed", err, sent, closed)
				}
				if tt.name == "no GetBody" && !errors.Is(err, ErrBodyNotReplayable) {
					t.Fatalf("err %v, want ErrBodyNotReplayable", err)
				}
				return
			}
			if err != nil || len(sent) != 1 {
				t.Fatalf("err %v, sent %q", err, sent)
			}
			p, _ := k.store().Pending(context.Background())
			want := emptyBodySHA256
			if sent[0] != "" {
				want = sha256.Sum256([]byte(sent[0]))
			}
			if len(p) != 1 || p[0].Fingerprint.BodySHA256 != want {
				t.Fatalf("fingerprint of %q: %+v", sent[0], p)
			}
		})
	}
}

type opBodyCloser struct {
	io.Reader
	n *int
}

func (c opBodyCloser) Close() error { *c.n++; return nil }

func TestNamedOperationStoreFailureSendsNothing(t *testing.T) {
	down := errors.New("store down")
	sent := false
	k := &KeyInjector{Store: &spyStore{beginErr: down}, Base: testutil.RoundTripFunc(func(*http.Request) (*http.Response, error) {
		sent = true
		return nil, nil
	})}
	closed := 0
	req := namedPost(t, context.Background(), "http://api.test/", "op", "x")
	req.Body = opBodyCloser{req.Body, &closed}
	_, err := k.RoundTrip(req)
	if !errors.Is(err, down) || sent || closed != 1 {
		t.Fatalf("err %v, sent %v, closed %d", err, sent, closed)
	}
	k.Store = &spyStore{}
	k.NewKey = func() string { return "bad key" }
	if _, err := k.RoundTrip(namedPost(t, context.Background(), "http://api.test/", "op", "x")); !errors.Is(err, ErrInvalidKey) || sent {
		t.Fatalf("a bad candidate key: %v, sent %v", err, sent)
	}
}

// Requests that name no operation, or that would get no key anyway,
// never touch the store.
func TestStoreOnlyForNamedKeyedRequests(t *testing.T) {
	store := &spyStore{}
	var keys []string
	k := &KeyInjector{Store: store, Base: testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		keys = append(keys, r.Header.Get(defaultKeyHeader))
		return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
	})}
	named := WithOperation(context.Background(), "op")
	unnamedPost, _ := http.NewRequest(http.MethodPost, "http://api.test/", strings.NewReader("x"))
	namedGet, _ := http.NewRequestWithContext(named, http.MethodGet, "http://api.test/", nil)
	callerKeyed, _ := http.NewRequestWithContext(named, http.MethodPost, "http://api.test/", strings.NewReader("x"))
	callerKeyed.Header.Set("X-Idempotency-Key", "mine")
	for _, req := range []*http.Request{unnamedPost, namedGet, callerKeyed} {
		if _, err := k.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
	}
	if store.begins.Load() != 0 || store.finishes.Load() != 0 {
		t.Fatalf("store touched: %d begins, %d finishes", store.begins.Load(), store.finishes.Load())
	}
	if _, err := uuid.Parse(keys[0]); err != nil || keys[1] != "" || keys[2] != "" {
		t.Fatalf("keys sent %q", keys)
	}
}

func TestNamedOperationQuotedKey(t *testing.T) {
	var sent []string
	k := &KeyInjector{Quoted: true, NewKey: func() string { return "k-1" }, Base: testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent = append(sent, r.Header.Get(defaultKeyHeader))
		return &http.Response{StatusCode: 503, Body: http.NoBody, Request: r}, nil
	})}
	for range 2 {
		k.RoundTrip(namedPost(t, context.Background(), "http://api.test/", "op", "x"))
	}
	p, _ := k.store().Pending(context.Background())
	if len(sent) != 2 || sent[0] != `"k-1"` || sent[1] != `"k-1"` || p[0].Key != "k-1" {
		t.Fatalf("sent %q, recorded %+v; want the quoted key sent, the bare key recorded", sent, p)
	}
}

// A 307 redirect resends the same write elsewhere: it is the same
// operation, with the same key.
func TestNamedOperationFollowsRedirectWithItsKey(t *testing.T) {
	var mu sync.Mutex
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		keys = append(keys, r.URL.Path+" "+r.Header.Get(defaultKeyHeader))
		mu.Unlock()
		if r.URL.Path == "/old" {
			http.Redirect(w, r, "/new", http.StatusTemporaryRedirect)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	store := &MemoryKeyStore{}
	client := &http.Client{Transport: New(nil, WithKeyStore(store))}
	defer client.CloseIdleConnections()
	resp, err := client.Do(namedPost(t, context.Background(), srv.URL+"/old", "op", "x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(keys) != 2 || strings.Fields(keys[0])[1] != strings.Fields(keys[1])[1] || resp.StatusCode != 201 {
		t.Fatalf("requests %q, status %d; want /old and /new with one key", keys, resp.StatusCode)
	}
	if p, _ := store.Pending(context.Background()); len(p) != 0 {
		t.Fatalf("still pending after the redirect's 201: %+v", p)
	}
}

// A 303 See Other answering a POST says the write was accepted and its
// result is elsewhere: the operation is done, and the client's GET of the
// result, which asks for no key, changes nothing.
func TestNamedOperationDoneOnSeeOther(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.Path)
		mu.Unlock()
		if r.Method == http.MethodPost {
			http.Redirect(w, r, "/charges/ch_1", http.StatusSeeOther)
			return
		}
		io.WriteString(w, "ch_1")
	}))
	defer srv.Close()
	store := &MemoryKeyStore{}
	client := &http.Client{Transport: New(nil, WithKeyStore(store))}
	defer client.CloseIdleConnections()
	resp, err := client.Do(namedPost(t, context.Background(), srv.URL+"/charges", "charge/order-1001", "x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(got) != 2 || got[1] != "GET /charges/ch_1" {
		t.Fatalf("status %d, requests %q; want the 303 followed", resp.StatusCode, got)
	}
	if p, err := store.Pending(context.Background()); len(p) != 0 || err != nil {
		t.Fatalf("pending after a 303: %+v, %v; want none", p, err)
	}
	_, err = client.Do(namedPost(t, context.Background(), srv.URL+"/charges", "charge/order-1001", "x"))
	if !errors.Is(err, ErrOperationDone) || !strings.Contains(err.Error(), "303") {
		t.Fatalf("rerun after a 303: %v; want ErrOperationDone with status 303", err)
	}
	if len(got) != 2 {
		t.Fatalf("the rerun was sent: %q", got)
	}
}

// Many goroutines sending a few operations through one stack, with
// Pending read alongside: each operation is sent with one key only.
func TestNamedOperationsConcurrently(t *testing.T) {
	var mu sync.Mutex
	keys := map[string]map[string]bool{}
	var calls atomic.Int32
	base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		op, _ := operationFrom(r.Context())
		mu.Lock()
		if keys[op] == nil {
			keys[op] = map[string]bool{}
		}
		keys[op][r.Header.Get(defaultKeyHeader)] = true
		mu.Unlock()
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
		if calls.Add(1)%3 != 0 {
			return &http.Response{StatusCode: 503, Body: http.NoBody, Request: r}, nil
		}
		return &http.Response{StatusCode: 201, Body: http.NoBody, Request: r}, nil
	})
	store := &MemoryKeyStore{TTL: time.Hour}
	stacks := []*Stack{
		New(base, WithKeyStore(store), WithBackoff(0, 0), WithBudget(nil)),
		New(base, WithKeyStore(store), WithBackoff(0, 0), WithBudget(nil)),
	}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 20 {
				op := fmt.Sprint("op-", i%5)
				resp, err := stacks[g%2].RoundTrip(namedPost(t, context.Background(), "http://api.test/", op, op))
				if err == nil {
					resp.Body.Close()
				} else if !errors.Is(err, ErrOperationDone) {
					t.Error(err)
				}
				if _, err := store.Pending(context.Background()); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if len(keys) != 5 {
		t.Fatalf("%d operations seen, want 5", len(keys))
	}
	for op, ks := range keys {
		if len(ks) != 1 {
			t.Errorf("%s sent with %d keys", op, len(ks))
		}
	}
}

// fingerprint is the fingerprint of a request with the given method, URL
// (as url.URL.Redacted writes it) and body.
func fingerprint(method, url, body string) Fingerprint {
	return Fingerprint{Method: method, URLSHA256: sha256.Sum256([]byte(url)), BodySHA256: sha256.Sum256([]byte(body))}
}

func TestFingerprintText(t *testing.T) {
	fp := fingerprint("POST", "https://api.test/charges?token=s3cr3t", "x")
	text, err := fp.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	want := "POST sha256:" + hex.EncodeToString(fp.URLSHA256[:]) + " sha256:" + hex.EncodeToString(fp.BodySHA256[:])
	if string(text) != want || fp.String() != want {
		t.Fatalf("text %q, String %q; want %q", text, fp, want)
	}
	var back Fingerprint
	if err := back.UnmarshalText(text); err != nil || back != fp {
		t.Fatalf("%s: %+v, %v", text, back, err)
	}
	digest := "sha256:" + strings.Repeat("0", 64)
	for _, bad := range []string{
		"", "POST", "POST " + digest, "POST " + digest + " " + digest + " " + digest, " " + digest + " " + digest,
		"P T " + digest + " " + digest, "POST https://api.test/ " + digest, // the form before the URL's digest
		"POST " + digest + " sha256:00", "POST md5:" + strings.Repeat("0", 64) + " " + digest,
		"POST " + digest + " sha256:" + strings.Repeat("g", 64),
	} {
		if err := back.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if _, err := (Fingerprint{Method: "P T"}).MarshalText(); err == nil {
		t.Error("a method that is not a token was marshalled")
	}
}

// A fingerprint keeps every byte of the URL, through any encoding a store
// uses, and none of its secrets: a URL with a byte that is not UTF-8 (which
// url.Parse accepts) differs from the same URL with U+FFFD in its place,
// as JSON would write it; a query-string token is not in the text; a
// password is redacted before the digest.
func TestFingerprintOfURLs(t *testing.T) {
	of := func(url string) Fingerprint {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		fp, err := fingerprintOf(req)
		if err != nil {
			t.Fatal(err)
		}
		return fp
	}
	latin1, replaced := of("https://api.test/search?q=caf\xe9"), of("https://api.test/search?q=caf\ufffd")
	if latin1 == replaced {
		t.Fatal("a URL's invalid UTF-8 and its U+FFFD replacement fingerprint alike")
	}
	for _, fp := range []Fingerprint{latin1, replaced} {
		j, err := json.Marshal(fp)
		if err != nil {
			t.Fatal(err)
		}
		var back Fingerprint
		if err := json.Unmarshal(j, &back); err != nil || back != fp {
			t.Fatalf("through JSON %s: %v, %v; want %v", j, back, err, fp)
		}
	}
	if fp := of("https://api.test/charges?token=s3cr3t"); strings.Contains(fp.String(), "s3cr3t") || strings.Contains(fp.String(), "api.test") {
		t.Fatalf("URL text kept in %s", fp)
	}
	if of("https://user:one@api.test/") != of("https://user:two@api.test/") {
		t.Fatal("the password counts in the fingerprint; it must be redacted first")
	}
	if of("https://api.test/a") == of("https://api.test/b") {
		t.Fatal("two URLs fingerprint alike")
	}
}

func TestWithKeyStoreNilPanics(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "WithKeyStore") {
			t.Fatalf("panic %v, want one naming WithKeyStore", r)
		}
	}()
	WithKeyStore(nil)
}

// The store adds nothing to a request that names no operation: an
// unnamed POST allocates what a hand-written key injection does (the key,
// the header clone, the request copy), and a GET allocates nothing.
func TestUnnamedRequestsAllocateNothingMore(t *testing.T) {
	resp := &http.Response{StatusCode: 200, Body: http.NoBody}
	base := testutil.RoundTripFunc(func(*http.Request) (*http.Response, error) { return resp, nil })
	k := &KeyInjector{Base: base, Store: &MemoryKeyStore{}}
	post, _ := http.NewRequest(http.MethodPost, "http://api.test/", nil)
	post.Header.Set("Content-Type", "application/json")
	get, _ := http.NewRequest(http.MethodGet, "http://api.test/", nil)

	var sink *http.Request
	byHand := testing.AllocsPerRun(100, func() {
		r := *post
		r.Header = post.Header.Clone()
		r.Header[defaultKeyHeader] = []string{uuid.NewString()}
		sink = &r
	})
	_ = sink
	injected := testing.AllocsPerRun(100, func() { k.RoundTrip(post) })
	t.Logf("unnamed POST: %v allocations (by hand %v)", injected, byHand)
	if injected > byHand {
		t.Errorf("unnamed POST: %v allocations, key injection by hand takes %v", injected, byHand)
	}
	if n := testing.AllocsPerRun(100, func() { k.RoundTrip(get) }); n != 0 {
		t.Errorf("GET: %v allocations, want 0", n)
	}
}

// BenchmarkMemoryKeyStoreAtCapacity measures Begin and Finish on a full
// store, each Begin evicting the finished operation that finished first,
// behind half the capacity of pending operations that eviction must not
// scan: the cost must not grow with MaxOperations.
func BenchmarkMemoryKeyStoreAtCapacity(b *testing.B) {
	for _, limit := range []int{1_000, 100_000} {
		b.Run(fmt.Sprint(limit), func(b *testing.B) {
			ctx := context.Background()
			fp := fingerprint("POST", "https://api.test/", "")
			s := &MemoryKeyStore{MaxOperations: limit}
			for i := range limit {
				op := fmt.Sprint("op-", i)
				s.Begin(ctx, op, fp, "k")
				if i >= limit/2 {
					s.Finish(ctx, op, "k", 201)
				}
			}
			names := make([]string, 1<<16) // more than the finished operations kept: a name recurs only once evicted
			for i := range names {
				names[i] = fmt.Sprint("new-", i)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				op := names[i%len(names)]
				i++
				if _, err := s.Begin(ctx, op, fp, "k"); err != nil {
					b.Fatal(err)
				}
				s.Finish(ctx, op, "k", 201)
			}
		})
	}
}

// BenchmarkKeyInjectorOperation measures what naming an operation costs
// KeyInjector alone (fingerprint, MemoryKeyStore Begin and Finish), over a
// base that answers at once.
func BenchmarkKeyInjectorOperation(b *testing.B) {
	base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 201, Body: http.NoBody, Request: r}, nil
	})
	body := bytes.Repeat([]byte("x"), 1024)
	for _, named := range []bool{false, true} {
		name := "unnamed"
		if named {
			name = "named-memory"
		}
		b.Run(name, func(b *testing.B) {
			k := &KeyInjector{Base: base}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				ctx := context.Background()
				if named {
					ctx = WithOperation(ctx, "op-"+fmt.Sprint(i))
					i++
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://api.test/", bytes.NewReader(body))
				k.RoundTrip(req)
			}
		})
	}
}
