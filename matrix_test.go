package saferetry_test

// The fault matrix: every fault the fault server can inject, crossed with
// every method and every kind of request body, over HTTP/1.1 and (a
// subset) HTTP/2. For each cell the expected outcome is worked out from
// DESIGN.md's classification table by expectCell below, written out by
// hand rather than by asking the library's strategy, and the cell checks:
//
//   - whether the request was retried, how often, and what the caller got
//     (the response, with Attempts and Stopped, or the error);
//   - that every attempt carried the same method, URL, Content-Length, key
//     and byte-identical body (as the server recorded it);
//   - that the deduplicating server committed each keyed write at most
//     once (exactly once when it succeeded), and never committed an
//     unkeyed POST or PATCH twice;
//   - that every discarded response was drained and closed;
//   - that the caller's request was not modified, and its body was closed
//     exactly once.
//
// Each cell has its own connection pool (faultserver's Transport returns a
// new one per call), so a fault always meets a fresh connection and
// net/http's own resends of requests on reused connections cannot blur
// what saferetry did.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/saferetry/saferetry"
	"github.com/saferetry/saferetry/internal/faultserver"
)

const (
	// matrixRetries is the stack's retry limit in the matrix (the default).
	matrixRetries = 3
	// bigBodyCap is the buffering cap of the stacks sending bodyBigStream,
	// smaller than its size, so the body is committed once it is sent.
	bigBodyCap = 64 << 10
	// matrixAttemptTimeout bounds the attempts of the Hang cells. It must
	// be long enough for a healthy attempt on a loaded machine.
	matrixAttemptTimeout = 300 * time.Millisecond
	// matrixWorkers is how many cells run at once. Cells mostly wait on
	// loopback I/O (and the Hang cells on their attempt timeout), so this
	// is set by hand instead of by t.Parallel, which -parallel (GOMAXPROCS
	// by default) would hold to 2 on a 2-core runner.
	matrixWorkers = 6
	// signalTimeout bounds waits for events that must happen promptly; a
	// test that reaches it has already failed.
	signalTimeout = 10 * time.Second
)

// methodCase is one way a caller sends a request.
type methodCase struct {
	name   string
	method string
	keyed  bool // the stack injects an Idempotency-Key (default key methods)
}

var matrixMethods = []methodCase{
	{"GET", http.MethodGet, false},
	{"HEAD", http.MethodHead, false},
	{"PUT", http.MethodPut, false},
	{"DELETE", http.MethodDelete, false},
	{"POST-keyed", http.MethodPost, true},
	{"POST-unkeyed", http.MethodPost, false},
	{"PATCH-keyed", http.MethodPatch, true},
	{"PATCH-unkeyed", http.MethodPatch, false},
}

// idempotent reports RFC 9110 §9.2.2's idempotent methods, of those the
// matrix sends.
func (m methodCase) idempotent() bool {
	switch m.method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// safe reports the methods the fault server commits nothing for.
func (m methodCase) safe() bool { return m.method == http.MethodGet || m.method == http.MethodHead }

// replayable is the table's "idempotent or keyed" column.
func (m methodCase) replayable() bool { return m.idempotent() || m.keyed }

// bodyKind is how the caller hands over the request body.
type bodyKind int

const (
	bodyNone      bodyKind = iota // no body
	bodyBytes                     // bytes.Reader through http.NewRequest: GetBody set
	bodyFile                      // *os.File with its ContentLength: read by position
	bodyStream                    // an opaque reader of unknown length under the default 1 MiB cap
	bodyBigStream                 // an opaque reader of known length over a 64 KiB cap
)

var bodyKinds = []bodyKind{bodyNone, bodyBytes, bodyFile, bodyStream, bodyBigStream}

func (k bodyKind) String() string {
	return [...]string{"none", "bytes", "file", "stream", "big-stream"}[k]
}

func (k bodyKind) size() int {
	return [...]int{0, 2 << 10, 8 << 10, 40 << 10, 100 << 10}[k]
}

// outcomeKind is what one attempt meets, in the terms of DESIGN.md's table.
type outcomeKind int

const (
	served         outcomeKind = iota // 200
	neverConnected                    // connection refused
	neverSent                         // connection reset in the TLS handshake: nothing of the request written
	lostAfterWrite                    // reset, or timed out, after the request was written
	answered                          // a status other than 200
	cutBody                           // 200 whose body is cut short (reset or truncated)
)

// attemptOutcome is what one attempt meets and what the server does.
type attemptOutcome struct {
	kind      outcomeKind
	status    int  // for answered
	recorded  bool // the server saw the request
	processed bool // the server acted on it: a write commits (or, keyed, replays)
	consumed  bool // the client read the request body to send it
}

var (
	outServed  = attemptOutcome{kind: served, recorded: true, processed: true, consumed: true}
	outRefused = attemptOutcome{kind: neverConnected}
)

func outStatus(code int) attemptOutcome {
	return attemptOutcome{kind: answered, status: code, recorded: true, consumed: true}
}

// matrixFault is one row of faults.
type matrixFault struct {
	name   string
	script []faultserver.Fault // queued on the cell's path
	// refused sends the cell to an address where nothing listens.
	refused bool
	// resetConn resets the cell's first connection before the request is
	// read (faultserver.ResetConns), on a server reserved for such cells.
	resetConn bool
	// hang needs the attempt timeout.
	hang bool
	// hold holds the cut of the response until the stack has handed the
	// response back, so the client has the headers before the cut.
	hold bool
	// first lists what the first attempts meet; later ones are served.
	first []attemptOutcome
	// every, when set, is what every attempt meets.
	every *attemptOutcome
}

// meets returns what attempt n (from 1) meets.
func (f matrixFault) meets(n int) attemptOutcome {
	switch {
	case f.every != nil:
		return *f.every
	case n <= len(f.first):
		return f.first[n-1]
	}
	return outServed
}

func statusFault(name string, fault faultserver.Fault, code, times int) matrixFault {
	f := matrixFault{name: name, script: []faultserver.Fault{fault}}
	for range times {
		f.first = append(f.first, outStatus(code))
	}
	return f
}

// matrixFaults returns the fault rows; overTLS changes what a connection
// reset before the request was read proves (see DESIGN.md's first row).
func matrixFaults(overTLS bool) []matrixFault {
	past := time.Now().Add(-time.Hour).UTC()
	resetBeforeRead := attemptOutcome{kind: lostAfterWrite, consumed: true}
	if overTLS {
		// The reset comes in the TLS handshake: nothing of the request
		// was written, so even an unkeyed POST may be retried, and its
		// body was not read.
		resetBeforeRead = attemptOutcome{kind: neverSent}
	}
	lost := attemptOutcome{kind: lostAfterWrite, recorded: true, consumed: true}
	lostProcessed := lost
	lostProcessed.processed = true
	cut := attemptOutcome{kind: cutBody, recorded: true, processed: true, consumed: true}
	return []matrixFault{
		{name: "refused", refused: true, every: &outRefused},
		{name: "reset-before-read", resetConn: true, first: []attemptOutcome{resetBeforeRead}},
		{name: "reset-after-headers", script: []faultserver.Fault{{Kind: faultserver.ResetAfterHeaders}}, first: []attemptOutcome{lost}},
		{name: "reset-after-body", script: []faultserver.Fault{{Kind: faultserver.ResetAfterBody}}, first: []attemptOutcome{lostProcessed}},
		{name: "reset-mid-response", hold: true, script: []faultserver.Fault{{Kind: faultserver.ResetMidResponse}}, first: []attemptOutcome{cut}},
		{name: "truncate", hold: true, script: []faultserver.Fault{{Kind: faultserver.Truncate}}, first: []attemptOutcome{cut}},
		{name: "hang", hang: true, script: []faultserver.Fault{{Kind: faultserver.Hang}}, first: []attemptOutcome{lost}},
		statusFault("500x2", faultserver.Burst(2, 500), 500, 2),
		statusFault("502x2", faultserver.Burst(2, 502), 502, 2),
		statusFault("503x2", faultserver.Burst(2, 503), 503, 2),
		statusFault("504x2", faultserver.Burst(2, 504), 504, 2),
		statusFault("503x4-past-the-limit", faultserver.Burst(matrixRetries+1, 503), 503, matrixRetries+1),
		statusFault("429-retry-after-0", faultserver.WithRetryAfter(429, "0"), 429, 1),
		statusFault("429-retry-after-past-IMF-fixdate", faultserver.WithRetryAfter(429, past.Format(http.TimeFormat)), 429, 1),
		statusFault("429-retry-after-past-asctime", faultserver.WithRetryAfter(429, past.Format(time.ANSIC)), 429, 1),
		statusFault("503-retry-after-0", faultserver.WithRetryAfter(503, "0"), 503, 1),
		statusFault("503-retry-after-past-RFC850", faultserver.WithRetryAfter(503, past.Format("Monday, 02-Jan-06 15:04:05 GMT")), 503, 1),
		statusFault("408", faultserver.Burst(1, 408), 408, 1),
		statusFault("409-key-in-progress", faultserver.Burst(1, 409), 409, 1),
		statusFault("422", faultserver.Burst(1, 422), 422, 1),
	}
}

// tableRetries is DESIGN.md's classification table: may an outcome be
// retried, for this kind of request?
func tableRetries(o attemptOutcome, m methodCase) bool {
	switch o.kind {
	case neverConnected, neverSent:
		return true // provably never reached the server: safe for any method
	case lostAfterWrite:
		return m.replayable()
	case answered:
		switch o.status {
		case 408, 429:
			return true // the server says it did not process the request
		case 409:
			return m.keyed // the same key is still in progress
		case 500, 502, 503, 504:
			return m.replayable()
		}
	}
	return false // served, cut (the response is handed back), other statuses
}

// tableStopsUnsafe reports the outcomes the table refuses to retry because
// retrying might duplicate the request (StopNotRetryable), as opposed to
// answers that retrying cannot change (StopNone).
func tableStopsUnsafe(o attemptOutcome) bool {
	switch o.kind {
	case lostAfterWrite:
		return true
	case answered:
		switch o.status {
		case 500, 502, 503, 504:
			return true
		}
	}
	return false
}

// cellWant is what a cell must produce.
type cellWant struct {
	attempts int
	final    attemptOutcome // what the last attempt met
	stop     saferetry.StopReason
	typedErr bool // an error is a *saferetry.RetryError (else the base's own)
	recorded int  // requests the server saw
	commits  int  // side effects the server committed
	replayed bool // the answer is the stored one of an earlier commit
}

// expectCell plays the fault's script through the table.
func expectCell(f matrixFault, m methodCase, body bodyKind) cellWant {
	var w cellWant
	committed := false
	for n := 1; ; n++ {
		o := f.meets(n)
		w.attempts, w.final = n, o
		if o.recorded {
			w.recorded++
		}
		if o.processed && !m.safe() {
			// The fault server deduplicates keyed writes and commits
			// every unkeyed one.
			if m.keyed && committed {
				w.replayed = true
			} else {
				w.commits++
			}
			committed = true
		}
		switch {
		case o.kind == served || o.kind == cutBody:
			w.stop = saferetry.StopNone
		case !tableRetries(o, m):
			if tableStopsUnsafe(o) {
				w.stop = saferetry.StopNotRetryable
			}
		case n > matrixRetries:
			w.stop = saferetry.StopMaxRetries
		case body == bodyBigStream && o.consumed:
			// Over the cap, the body was sent once and not kept.
			w.stop = saferetry.StopBodyNotReplayable
		default:
			continue // retried
		}
		// DESIGN.md: an error final on the first attempt is the base
		// transport's own; after a retry, or when a retry was refused
		// for the body, it is a *RetryError.
		w.typedErr = n > 1 || w.stop == saferetry.StopBodyNotReplayable
		return w
	}
}

func (w cellWant) isResponse() bool {
	return w.final.kind == served || w.final.kind == cutBody || w.final.kind == answered
}

// cell is one point of the matrix.
type cell struct {
	proto  string // "h1" or "h2"
	fault  matrixFault
	method methodCase
	body   bodyKind
}

func (c cell) name() string {
	return c.proto + "/" + c.fault.name + "/" + c.method.name + "/" + c.body.String()
}

// matrixEnv holds the servers of the cells: one per protocol and fault
// row, each cell with a path of its own. One server for everything would
// do, but Server.Stats copies every path it holds (bodies included), which
// would make the matrix quadratic. ResetConns acts on the next connection
// whoever opens it, so the cells of the reset-before-read rows run one at
// a time.
type matrixEnv struct {
	refusedURL string
	// sessions lets the HTTP/2 cells resume TLS sessions: each cell has a
	// fresh pool, and full handshakes under -race dominate their cost.
	sessions tls.ClientSessionCache

	mu      sync.Mutex
	servers map[string]*faultserver.Server
}

func newMatrixEnv(t *testing.T) *matrixEnv {
	t.Helper()
	refused, err := faultserver.RefusedURL()
	if err != nil {
		t.Fatal(err)
	}
	env := &matrixEnv{
		refusedURL: refused,
		sessions:   tls.NewLRUClientSessionCache(64),
		servers:    make(map[string]*faultserver.Server),
	}
	t.Cleanup(func() {
		for _, s := range env.servers {
			s.Close()
		}
	})
	return env
}

// server returns the server of the cell's protocol and fault row.
func (env *matrixEnv) server(c cell) *faultserver.Server {
	env.mu.Lock()
	defer env.mu.Unlock()
	name := c.proto + "/" + c.fault.name
	s := env.servers[name]
	if s == nil {
		var opts []faultserver.Option
		if c.proto == "h2" {
			opts = append(opts, faultserver.WithHTTP2())
		}
		s = faultserver.New(opts...)
		env.servers[name] = s
	}
	return s
}

func TestMatrix(t *testing.T) {
	env := newMatrixEnv(t)
	var cells []cell
	for _, f := range matrixFaults(false) {
		for _, m := range matrixMethods {
			for _, b := range bodyKinds {
				if f.hang && b != bodyNone && b != bodyStream && b != bodyBigStream {
					continue // each costs an attempt timeout: a subset
				}
				cells = append(cells, cell{"h1", f, m, b})
			}
		}
	}
	// HTTP/2: the faults whose shape differs from HTTP/1 (resets are
	// RST_STREAM, the pre-read reset is in the TLS handshake, the cut is
	// an early END_STREAM) and one of each kind of status.
	h2Faults := map[string]bool{
		"reset-before-read": true, "reset-after-headers": true, "reset-after-body": true,
		"reset-mid-response": true, "truncate": true, "hang": true,
		"503x2": true, "429-retry-after-0": true, "409-key-in-progress": true, "422": true,
	}
	for _, f := range matrixFaults(true) {
		if !h2Faults[f.name] {
			continue
		}
		for _, m := range matrixMethods {
			for _, b := range bodyKinds {
				if f.hang && b != bodyNone && b != bodyBigStream {
					continue
				}
				cells = append(cells, cell{"h2", f, m, b})
			}
		}
	}
	t.Logf("fault matrix: %d cells", len(cells))

	var serial, parallel []cell
	for _, c := range cells {
		if c.fault.resetConn {
			serial = append(serial, c)
		} else {
			parallel = append(parallel, c)
		}
	}
	// t.Run may be called from several goroutines; each call returns when
	// its cell is done.
	work := make(chan cell)
	var wg sync.WaitGroup
	for range matrixWorkers - 1 {
		wg.Go(func() {
			for c := range work {
				t.Run(c.name(), func(t *testing.T) { env.run(t, c) })
			}
		})
	}
	wg.Go(func() {
		for _, c := range serial {
			t.Run(c.name(), func(t *testing.T) { env.run(t, c) })
		}
	})
	for _, c := range parallel {
		work <- c
	}
	close(work)
	wg.Wait()
}

// run sends the cell's request and checks everything listed at the top.
func (env *matrixEnv) run(t *testing.T, c cell) {
	want := expectCell(c.fault, c.method, c.body)
	srv := env.server(c)
	path := "/" + strings.ReplaceAll(c.name(), "/", "_")
	url := srv.URL() + path
	if c.fault.refused {
		url = env.refusedURL + path
	}
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseCut := func() { releaseOnce.Do(func() { close(release) }) }
	defer releaseCut()
	for _, f := range c.fault.script {
		if c.fault.hold {
			f.Release = release
		}
		srv.Script(path, f)
	}
	if c.fault.resetConn {
		srv.ResetConns(1)
	}

	tr := srv.Transport()
	if tr.TLSClientConfig != nil {
		tr.TLSClientConfig.ClientSessionCache = env.sessions
	}
	defer tr.CloseIdleConnections()
	base := &tracingBase{base: tr}
	opts := []saferetry.Option{
		saferetry.WithBackoff(0, 0),
		saferetry.WithBudget(nil),
		saferetry.WithMaxRetries(matrixRetries),
	}
	if !c.method.keyed {
		opts = append(opts, saferetry.WithKeyMethods())
	}
	if c.body == bodyBigStream {
		opts = append(opts, saferetry.WithMaxBodyBytes(bigBodyCap))
	}
	if c.fault.hang {
		opts = append(opts, saferetry.WithAttemptTimeout(matrixAttemptTimeout))
	}
	stack := saferetry.New(base, opts...)

	payload := payloadFor(c.name(), c.body.size())
	req, caller := newCallerRequest(t, context.Background(), c.method.method, url, c.body, payload)
	snap := snapshotRequest(req)

	resp, err := stack.RoundTrip(req)
	releaseCut()

	// What the caller got.
	if want.isResponse() {
		if err != nil {
			t.Fatalf("RoundTrip error %v; want a response (%+v)", err, want)
		}
		body, readErr := io.ReadAll(resp.Body)
		if cerr := resp.Body.Close(); cerr != nil {
			t.Errorf("closing the response body: %v", cerr)
		}
		checkResponse(t, c, want, resp, body, readErr)
	} else {
		if resp != nil {
			resp.Body.Close()
			t.Fatalf("got status %d; want an error (%+v)", resp.StatusCode, want)
		}
		checkError(t, c, want, err)
	}
	snap.check(t, req)

	// Every attempt, as the stack handed it to the base transport.
	attempts := base.sent()
	if len(attempts) != want.attempts {
		t.Errorf("%d attempts; want %d", len(attempts), want.attempts)
	}
	key := ""
	for i, a := range attempts {
		if i == 0 {
			key = a.key
		}
		if a.method != req.Method || a.url != req.URL.String() || a.contentLength != req.ContentLength || a.key != key {
			t.Errorf("attempt %d: %s %s length %d key %q; want %s %s length %d key %q",
				i+1, a.method, a.url, a.contentLength, a.key, req.Method, req.URL, req.ContentLength, key)
		}
	}
	if c.method.keyed && key == "" {
		t.Errorf("no Idempotency-Key on a keyed %s", c.method.method)
	}
	if !c.method.keyed && key != "" {
		t.Errorf("Idempotency-Key %q on an unkeyed request", key)
	}

	// Every discarded response drained and closed; every attempt body and
	// the caller's body closed (net/http may close request bodies after
	// RoundTrip returns, so wait for them).
	for i, a := range attempts {
		if a.resp != nil && a.resp != resp {
			if !a.respBody.eof.Load() || a.respBody.closes.Load() != 1 {
				t.Errorf("attempt %d: discarded response read to EOF %v, closed %d times; want drained and closed once",
					i+1, a.respBody.eof.Load(), a.respBody.closes.Load())
			}
		}
	}
	base.waitBodiesClosed(t)
	caller.checkClosedOnce(t)

	// What the server saw.
	tr.CloseIdleConnections()
	ps := srv.Stats().Paths[path]
	if c.fault.refused {
		ps = faultserver.PathStats{}
	}
	if len(ps.Requests) != want.recorded {
		t.Errorf("server saw %d requests; want %d", len(ps.Requests), want.recorded)
	}
	for i, r := range ps.Requests {
		if r.Key != key {
			t.Errorf("server request %d: key %q; want %q", i+1, r.Key, key)
		}
		if r.BodyRead && !bytes.Equal(r.Body, payload) {
			t.Errorf("server request %d: body of %d bytes differs from the caller's %d", i+1, len(r.Body), len(payload))
		}
		if !r.BodyRead && !bytes.HasPrefix(payload, r.Body) {
			t.Errorf("server request %d: partial body of %d bytes is not a prefix of the caller's", i+1, len(r.Body))
		}
	}
	if ps.Commits != want.commits {
		t.Errorf("server committed %d times; want %d", ps.Commits, want.commits)
	}
	if c.method.keyed && ps.Commits > 1 {
		t.Errorf("keyed write committed %d times", ps.Commits)
	}
	if !c.method.idempotent() && !c.method.keyed && ps.Commits > 1 {
		t.Errorf("unkeyed %s committed %d times: saferetry duplicated it", c.method.method, ps.Commits)
	}
}

func checkResponse(t *testing.T, c cell, want cellWant, resp *http.Response, body []byte, readErr error) {
	t.Helper()
	wantStatus := http.StatusOK
	if want.final.kind == answered {
		wantStatus = want.final.status
	}
	if resp.StatusCode != wantStatus {
		t.Errorf("status %d; want %d", resp.StatusCode, wantStatus)
	}
	if got := saferetry.Attempts(resp); got != want.attempts {
		t.Errorf("Attempts = %d; want %d", got, want.attempts)
	}
	if got := saferetry.Stopped(resp); got != want.stop {
		t.Errorf("Stopped = %v; want %v", got, want.stop)
	}
	switch {
	case want.final.kind == cutBody && c.method.method != http.MethodHead:
		if readErr == nil {
			t.Errorf("reading a cut body: %d bytes, no error", len(body))
		}
	case readErr != nil:
		t.Errorf("reading the body: %v", readErr)
	}
	if want.replayed && want.final.kind == served {
		if resp.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("retry of a committed keyed write was not answered from the key store")
		}
	}
}

func checkError(t *testing.T, c cell, want cellWant, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("no error; want one")
	}
	var re *saferetry.RetryError
	typed := errors.As(err, &re)
	if typed != want.typedErr {
		t.Errorf("error %v is a *RetryError: %v; want %v", err, typed, want.typedErr)
	}
	if typed && (re.Attempts != want.attempts || re.Reason != want.stop) {
		t.Errorf("RetryError{Attempts: %d, Reason: %v}; want %d, %v", re.Attempts, re.Reason, want.attempts, want.stop)
	}
	if want.stop == saferetry.StopBodyNotReplayable && !errors.Is(err, saferetry.ErrBodyNotReplayable) {
		t.Errorf("error %v does not match ErrBodyNotReplayable", err)
	}
	if want.final.kind == neverConnected && !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("error %v is not ECONNREFUSED", err)
	}
	if c.fault.hang && !errors.Is(err, saferetry.ErrAttemptTimeout) {
		t.Errorf("error %v does not match ErrAttemptTimeout", err)
	}
}

// payloadFor returns n pseudo-random bytes, different for every cell.
func payloadFor(name string, n int) []byte {
	p := make([]byte, n)
	rand.NewChaCha8(sha256.Sum256([]byte(name))).Read(p)
	return p
}

// callerBody keeps what is needed to check that the caller's body was
// closed exactly once.
type callerBody struct {
	counted *countingBody // nil for no body and for the file
	file    *os.File
}

// countingBody is a request body that exposes only Read and Close (no
// ReaderAt, Seek or WriterTo: an opaque stream) and counts its closes.
type countingBody struct {
	r      io.Reader
	closes atomic.Int32
	done   chan struct{}
}

func newCountingBody(r io.Reader) *countingBody {
	return &countingBody{r: r, done: make(chan struct{})}
}

func (b *countingBody) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b *countingBody) Close() error {
	if b.closes.Add(1) == 1 {
		close(b.done)
	}
	return nil
}

// newCallerRequest builds the caller's request with a body of the given
// kind holding payload.
func newCallerRequest(t *testing.T, ctx context.Context, method, url string, kind bodyKind, payload []byte) (*http.Request, callerBody) {
	t.Helper()
	var (
		body   io.Reader
		caller callerBody
	)
	switch kind {
	case bodyBytes:
		body = bytes.NewReader(payload)
	case bodyFile:
		name := filepath.Join(t.TempDir(), "body")
		if err := os.WriteFile(name, payload, 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		body, caller.file = f, f
	case bodyStream, bodyBigStream:
		caller.counted = newCountingBody(bytes.NewReader(payload))
		body = caller.counted
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	switch kind {
	case bodyBytes:
		// Keep GetBody (the replay path under test); count the closes
		// of the body itself.
		caller.counted = newCountingBody(req.Body)
		req.Body = caller.counted
	case bodyFile, bodyBigStream:
		req.ContentLength = int64(len(payload))
	}
	req.Header.Set("X-Caller", "matrix")
	return req, caller
}

// checkClosedOnce waits for the caller's body to be closed, then checks it
// was closed exactly once. A file is checked by closing it again, which
// fails if the stack closed it.
func (c callerBody) checkClosedOnce(t *testing.T) {
	t.Helper()
	switch {
	case c.counted != nil:
		waitSignal(t, c.counted.done, "the caller's body closed")
		if n := c.counted.closes.Load(); n != 1 {
			t.Errorf("caller's body closed %d times; want 1", n)
		}
	case c.file != nil:
		if err := c.file.Close(); !errors.Is(err, os.ErrClosed) {
			t.Errorf("caller's file was not closed by the stack (closing it again: %v)", err)
		}
	}
}

func waitSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(signalTimeout):
		t.Fatalf("gave up waiting for %s", what)
	}
}

// requestSnapshot is what the caller can observe of its request.
type requestSnapshot struct {
	method        string
	url           string
	host          string
	header        http.Header
	contentLength int64
	body          io.ReadCloser
	getBodyNil    bool
	ctx           context.Context
}

func snapshotRequest(r *http.Request) requestSnapshot {
	return requestSnapshot{
		method:        r.Method,
		url:           r.URL.String(),
		host:          r.Host,
		header:        r.Header.Clone(),
		contentLength: r.ContentLength,
		body:          r.Body,
		getBodyNil:    r.GetBody == nil,
		ctx:           r.Context(),
	}
}

func (s requestSnapshot) check(t *testing.T, r *http.Request) {
	t.Helper()
	now := snapshotRequest(r)
	if now.method != s.method || now.url != s.url || now.host != s.host ||
		now.contentLength != s.contentLength || now.body != s.body ||
		now.getBodyNil != s.getBodyNil || now.ctx != s.ctx {
		t.Errorf("caller's request modified: %+v -> %+v", s, now)
	}
	if !headersEqual(now.header, s.header) {
		t.Errorf("caller's header modified: %v -> %v", s.header, now.header)
	}
}

func headersEqual(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok || len(va) != len(vb) {
			return false
		}
		for i := range va {
			if va[i] != vb[i] {
				return false
			}
		}
	}
	return true
}

// tracingBase sits between the stack and the real transport. It records
// each attempt as the stack sent it; wraps the attempt's body, and every
// body net/http gets from GetBody, to learn when net/http closed them; and
// wraps each response body to learn whether the stack drained and closed
// the ones it discarded.
type tracingBase struct {
	base http.RoundTripper

	mu       sync.Mutex
	attempts []*sentAttempt
	bodies   []*closeSignal
}

type sentAttempt struct {
	method, url   string
	key           string
	contentLength int64
	resp          *http.Response
	respBody      *trackedBody
}

func (b *tracingBase) RoundTrip(req *http.Request) (*http.Response, error) {
	a := &sentAttempt{
		method:        req.Method,
		url:           req.URL.String(),
		key:           req.Header.Get("Idempotency-Key"),
		contentLength: req.ContentLength,
	}
	if req.Body != nil && req.Body != http.NoBody {
		r2 := *req // a RoundTripper must not modify its request
		r2.Body = b.watch(req.Body)
		if getBody := req.GetBody; getBody != nil {
			r2.GetBody = func() (io.ReadCloser, error) {
				rc, err := getBody()
				if err != nil {
					return nil, err
				}
				return b.watch(rc), nil
			}
		}
		req = &r2
	}
	resp, err := b.base.RoundTrip(req)
	if resp != nil {
		a.respBody = &trackedBody{rc: resp.Body}
		resp.Body = a.respBody
		a.resp = resp
	}
	b.mu.Lock()
	b.attempts = append(b.attempts, a)
	b.mu.Unlock()
	return resp, err
}

func (b *tracingBase) watch(rc io.ReadCloser) io.ReadCloser {
	cs := &closeSignal{ReadCloser: rc, done: make(chan struct{})}
	b.mu.Lock()
	b.bodies = append(b.bodies, cs)
	b.mu.Unlock()
	return cs
}

func (b *tracingBase) CloseIdleConnections() {
	if c, ok := b.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (b *tracingBase) sent() []*sentAttempt {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*sentAttempt(nil), b.attempts...)
}

// waitBodiesClosed waits until net/http has closed every request body it
// read from (it may do so after RoundTrip returned). A body it asked
// GetBody for and never read is not waited for: net/http drops some of
// those without closing them.
func (b *tracingBase) waitBodiesClosed(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	bodies := append([]*closeSignal(nil), b.bodies...)
	b.mu.Unlock()
	for i, cs := range bodies {
		if cs.used.Load() {
			waitSignal(t, cs.done, fmt.Sprintf("request body %d closed by net/http", i+1))
		}
	}
}

// closeSignal records whether the body it wraps was read, and closes done
// once it has been closed.
type closeSignal struct {
	io.ReadCloser
	used atomic.Bool
	once sync.Once
	done chan struct{}
}

func (c *closeSignal) Read(p []byte) (int, error) {
	c.used.Store(true)
	return c.ReadCloser.Read(p)
}

func (c *closeSignal) Close() error {
	err := c.ReadCloser.Close()
	c.once.Do(func() { close(c.done) })
	return err
}

// trackedBody records whether a response body was read to EOF and how
// often it was closed.
type trackedBody struct {
	rc     io.ReadCloser
	eof    atomic.Bool
	closes atomic.Int32
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof.Store(true)
	}
	return n, err
}

func (b *trackedBody) Close() error {
	b.closes.Add(1)
	return b.rc.Close()
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
	srv := faultserver.NewH2()
	defer srv.Close()
	faults := []struct {
		name  string
		fault faultserver.H2Fault
		conns int // connections the request needs
	}{
		{"REFUSED_STREAM", faultserver.H2Fault{Kind: faultserver.H2Refuse}, 1},
		{"GOAWAY", faultserver.H2Fault{Kind: faultserver.H2GoAway, Code: faultserver.ErrCodeNo}, 2},
	}
	// The raw server's script is shared by every connection, so the
	// cases run one at a time.
	for _, f := range faults {
		for _, m := range matrixMethods {
			for _, kind := range []bodyKind{bodyNone, bodyBytes, bodyFile, bodyStream} {
				name := f.name + "/" + m.name + "/" + kind.String()
				t.Run(name, func(t *testing.T) {
					before := srv.Stats()
					answer := faultserver.H2Fault{Kind: faultserver.H2Answer}
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
					payload := payloadFor(name, kind.size())
					req, caller := newCallerRequest(t, context.Background(), m.method, srv.URL()+"/h2", kind, payload)
					snap := snapshotRequest(req)

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
					snap.check(t, req)
					attempts := base.sent()
					if len(attempts) != 1 {
						t.Fatalf("%d attempts reached the base transport; want 1", len(attempts))
					}
					if hasKey := attempts[0].key != ""; hasKey != m.keyed {
						t.Errorf("attempt key %q; keyed %v", attempts[0].key, m.keyed)
					}
					base.waitBodiesClosed(t)
					after := srv.Stats()
					streams := after.Streams[len(before.Streams):]
					if len(streams) != 2 || after.Conns-before.Conns != f.conns {
						t.Fatalf("server saw %d streams on %d connections; want 2 on %d: %+v",
							len(streams), after.Conns-before.Conns, f.conns, streams)
					}
					if streams[0].Processed || !streams[1].Processed {
						t.Errorf("processed: %v, %v; want only the second stream", streams[0].Processed, streams[1].Processed)
					}
					if !bytes.Equal(streams[1].Body, payload) {
						t.Errorf("processed stream's body: %d bytes, differs from the caller's %d", len(streams[1].Body), len(payload))
					}
					caller.checkClosedOnce(t)
				})
			}
		}
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
			cache := &saferetry.BodyCache{Base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
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
				if n := caller.counted.closes.Load(); n != 1 {
					t.Errorf("caller's body closed %d times; want 1", n)
				}
			default:
				caller.checkClosedOnce(t)
			}
		})
	}
}

// roundTripFunc adapts a function to http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
