package saferetry_test

// The matrix's oracle: what each cell must produce, worked out from
// DESIGN.md's classification table by hand (never by asking the library's
// strategy). The runner (matrix_run_test.go) checks a cell against it.

import (
	"net/http"
	"time"

	"github.com/saferetry/saferetry"
	"github.com/saferetry/saferetry/saferetrytest"
)

const (
	// matrixRetries is the stack's retry limit in the matrix (the default).
	matrixRetries = 3
	// bigBodyCap is the buffering cap of the stacks sending bodyBigStream,
	// smaller than its size, so the body is committed once it is sent.
	bigBodyCap = 64 << 10
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
	neverConnected                    // connection refused: the error's type proves nothing was sent
	neverSent                         // no connection obtained (reset in the TLS handshake): only httptrace proves it
	lostAfterWrite                    // reset, or timed out, once the connection carried the request
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
	script []saferetrytest.Fault // queued on the cell's path
	// refused sends the cell to an address where nothing listens.
	refused bool
	// resetConn resets the cell's first connection before the request is
	// read (saferetrytest.ResetConns), on a server reserved for such cells.
	resetConn bool
	// attemptTimeout gives the stack an attempt timeout, which ends the
	// first attempt (a hang, a held header write).
	attemptTimeout bool
	// slowHeaders holds the first attempt's header write until the
	// attempt has timed out (see slowHeadersOutcome).
	slowHeaders bool
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

// slowHeadersOutcome is what the first attempt of a slow-headers cell
// meets. Its headers reached the server, which does not answer, and the
// attempt timed out while the write that carried them was held: the
// connection was obtained, so for the table it was sent. The server
// commits it only if the whole request went out before the hold. Over
// HTTP/1 net/http writes a request through a 4 KiB buffer, so a request
// with no body or the 2 KiB one goes out whole in the held write, and a
// larger one is cut when the timed-out connection is closed. Over HTTP/2
// the HEADERS frame goes out alone, with END_STREAM when there is no body;
// the body, due after it, never does (the stream is reset instead). (Whether the body was consumed decides
// only big-stream cells, which the slow-headers row leaves out: over
// HTTP/2 the abandoned write may or may not read it.)
func slowHeadersOutcome(proto string, body bodyKind) attemptOutcome {
	whole := body == bodyNone
	return attemptOutcome{kind: lostAfterWrite, recorded: true, processed: whole, consumed: body != bodyNone}
}

func statusFault(name string, fault saferetrytest.Fault, code, times int) matrixFault {
	f := matrixFault{name: name, script: []saferetrytest.Fault{fault}}
	for range times {
		f.first = append(f.first, outStatus(code))
	}
	return f
}

// matrixFaults returns the fault rows of a protocol: over TLS ("h2"), a
// connection reset before the request was read proves more (see DESIGN.md's
// first row).
func matrixFaults(proto string) []matrixFault {
	past := time.Now().Add(-time.Hour).UTC()
	resetBeforeRead := attemptOutcome{kind: lostAfterWrite, consumed: true}
	if proto == "h2" {
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
		{name: "reset-after-headers", script: []saferetrytest.Fault{{Kind: saferetrytest.ResetAfterHeaders}}, first: []attemptOutcome{lost}},
		{name: "reset-after-body", script: []saferetrytest.Fault{{Kind: saferetrytest.ResetAfterCommit}}, first: []attemptOutcome{lostProcessed}},
		{name: "reset-mid-response", hold: true, script: []saferetrytest.Fault{{Kind: saferetrytest.ResetMidResponse}}, first: []attemptOutcome{cut}},
		{name: "truncate", hold: true, script: []saferetrytest.Fault{{Kind: saferetrytest.Truncate}}, first: []attemptOutcome{cut}},
		{name: "hang", attemptTimeout: true, script: []saferetrytest.Fault{{Kind: saferetrytest.Hang}}, first: []attemptOutcome{lost}},
		// The server commits what it received whole and never answers
		// (held until the cell ends, or aborted when the client leaves).
		{name: "slow-headers", attemptTimeout: true, slowHeaders: true, hold: true,
			script: []saferetrytest.Fault{{Kind: saferetrytest.ResetAfterCommit}}},
		statusFault("500x2", saferetrytest.Burst(2, 500), 500, 2),
		statusFault("502x2", saferetrytest.Burst(2, 502), 502, 2),
		statusFault("503x2", saferetrytest.Burst(2, 503), 503, 2),
		statusFault("504x2", saferetrytest.Burst(2, 504), 504, 2),
		statusFault("503x4-past-the-limit", saferetrytest.Burst(matrixRetries+1, 503), 503, matrixRetries+1),
		statusFault("429-retry-after-0", saferetrytest.RetryAfter(429, "0"), 429, 1),
		statusFault("429-retry-after-past-IMF-fixdate", saferetrytest.RetryAfter(429, past.Format(http.TimeFormat)), 429, 1),
		statusFault("429-retry-after-past-asctime", saferetrytest.RetryAfter(429, past.Format(time.ANSIC)), 429, 1),
		statusFault("503-retry-after-0", saferetrytest.RetryAfter(503, "0"), 503, 1),
		statusFault("503-retry-after-past-RFC850", saferetrytest.RetryAfter(503, past.Format("Monday, 02-Jan-06 15:04:05 GMT")), 503, 1),
		statusFault("408", saferetrytest.Burst(1, 408), 408, 1),
		statusFault("409-key-in-progress", saferetrytest.Burst(1, 409), 409, 1),
		statusFault("422", saferetrytest.Burst(1, 422), 422, 1),
	}
}

// tableRetries is DESIGN.md's classification table: may an outcome be
// retried, for this kind of request, when the base transport does (traced)
// or does not fire httptrace hooks?
func tableRetries(o attemptOutcome, m methodCase, traced bool) bool {
	switch o.kind {
	case neverConnected:
		return true // the error's type proves it never reached the server
	case neverSent:
		// Only the trace proves no connection was obtained: without it,
		// the missing evidence is not proof, and an unkeyed write stays.
		return traced || m.replayable()
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
	case neverSent, lostAfterWrite:
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

// expectCell plays the cell's fault through the table.
func expectCell(c cell) cellWant {
	m, body := c.method, c.body
	var w cellWant
	committed := false
	for n := 1; ; n++ {
		o := c.meets(n)
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
		case !tableRetries(o, m, !c.noTrace):
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
	proto  string // "h1", "h2" (over TLS) or "h2c" (HTTP/2 in cleartext)
	fault  matrixFault
	method methodCase
	body   bodyKind
	// noTrace hides httptrace from the base transport: it fires no hooks,
	// so the stack has no evidence that a request was never sent.
	noTrace bool
}

func (c cell) name() string {
	n := c.proto + "/" + c.fault.name + "/" + c.method.name + "/" + c.body.String()
	if c.noTrace {
		n += "/no-trace"
	}
	return n
}

// meets returns what attempt n (from 1) meets.
func (c cell) meets(n int) attemptOutcome {
	if c.fault.slowHeaders && n == 1 {
		return slowHeadersOutcome(c.proto, c.body)
	}
	return c.fault.meets(n)
}
