package saferetry_test

// The fault matrix: every fault the fault server can inject, crossed with
// every method and every kind of request body, over HTTP/1.1 and (a
// subset) HTTP/2. Two rows act on the client's side: a header write held
// past the attempt timeout, its headers already on the wire (over HTTP/1.1
// and HTTP/2 in cleartext), and, for the faults that end in an error, a
// base transport that fires no httptrace hooks, so the stack has no
// evidence that a request was never sent (matrix_conns_test.go). For each
// cell the expected outcome is worked out from DESIGN.md's classification
// table by expectCell (matrix_expect_test.go), written out by hand rather
// than by asking the library's strategy, and the runner
// (matrix_run_test.go) checks:
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
// Each cell has its own connection pool (saferetrytest's Transport returns
// a new one per call), so a fault always meets a fresh connection and
// net/http's own resends of requests on reused connections cannot blur
// what saferetry did.

import (
	"sync"
	"testing"
)

// matrixWorkers is how many cells run at once. Cells mostly wait on
// loopback I/O, so this is set by hand instead of by t.Parallel, which
// -parallel (GOMAXPROCS by default) would hold to 2 on a 2-core runner.
// The cells with an attempt timeout spend it asleep, and run apart, more
// at once.
const (
	matrixWorkers      = 6
	matrixTimedWorkers = 24
)

func TestMatrix(t *testing.T) {
	env := newMatrixEnv(t)
	cells := matrixCells()
	t.Logf("fault matrix: %d cells", len(cells))
	runCells(t, env, cells)
}

// matrixCells crosses the fault rows of each protocol with the methods and
// body kinds, keeping the cells keepCell keeps.
func matrixCells() []cell {
	var cells []cell
	for _, noTrace := range []bool{false, true} {
		for _, proto := range []string{"h1", "h2", "h2c"} {
			for _, f := range matrixFaults(proto) {
				for _, m := range matrixMethods {
					for _, b := range bodyKinds {
						if c := (cell{proto, f, m, b, noTrace}); keepCell(c) {
							cells = append(cells, c)
						}
					}
				}
			}
		}
	}
	return cells
}

// h2Faults are the faults run over HTTP/2 with TLS: those whose shape
// differs from HTTP/1 (resets are RST_STREAM, the pre-read reset is in the
// TLS handshake, the cut is an early END_STREAM) and one of each kind of
// status.
var h2Faults = map[string]bool{
	"reset-before-read": true, "reset-after-headers": true, "reset-after-body": true,
	"reset-mid-response": true, "truncate": true, "hang": true,
	"503x2": true, "429-retry-after-0": true, "409-key-in-progress": true, "422": true,
}

// untracedFaults are the faults run again with a base that fires no
// httptrace hooks: those that fail a request with an error, where the
// evidence that it was never sent decides an unkeyed write's fate.
var untracedFaults = map[string]bool{
	"refused": true, "reset-before-read": true, "reset-after-headers": true,
	"reset-after-body": true, "slow-headers": true,
}

// keepCell says which cells the matrix runs. Every fault runs over
// HTTP/1.1 with every body; HTTP/2 over TLS runs h2Faults; the slow header
// write runs over HTTP/1.1 and HTTP/2 in cleartext (where the frames can
// be seen). Cells that cost an attempt timeout, and those without a trace,
// take a subset of the bodies.
func keepCell(c cell) bool {
	f, b := c.fault, c.body
	switch {
	case f.slowHeaders:
		// No file body (a stream of known length, here like the stream)
		// and no big stream (see slowHeadersOutcome).
		if c.proto == "h2" || b == bodyFile || b == bodyBigStream {
			return false
		}
	case c.proto == "h2c":
		return false
	case c.proto == "h2" && !h2Faults[f.name]:
		return false
	}
	if c.noTrace {
		switch {
		case !untracedFaults[f.name]:
			return false
		case f.slowHeaders:
			return b == bodyNone
		case f.attemptTimeout:
			return false // a hang is a timeout, with or without a trace
		}
		return b == bodyNone || b == bodyBytes || b == bodyStream
	}
	if f.attemptTimeout && !f.slowHeaders {
		// Each hang costs an attempt timeout: a subset.
		if c.proto == "h2" {
			return b == bodyNone || b == bodyBigStream
		}
		return b == bodyNone || b == bodyStream || b == bodyBigStream
	}
	return true
}

// runCells runs the cells matrixWorkers at a time, the timed ones
// matrixTimedWorkers at a time beside them, and those that reset the next
// connection their server accepts one at a time.
func runCells(t *testing.T, env *matrixEnv, cells []cell) {
	var serial, timed, parallel []cell
	for _, c := range cells {
		switch {
		case c.fault.resetConn:
			serial = append(serial, c)
		case c.fault.attemptTimeout:
			timed = append(timed, c)
		default:
			parallel = append(parallel, c)
		}
	}
	// t.Run may be called from several goroutines; each call returns when
	// its cell is done.
	run := func(c cell) { t.Run(c.name(), func(t *testing.T) { env.run(t, c) }) }
	var wg sync.WaitGroup
	feed := func(cells []cell, workers int) {
		work := make(chan cell)
		for range workers {
			wg.Go(func() {
				for c := range work {
					run(c)
				}
			})
		}
		wg.Go(func() {
			for _, c := range cells {
				work <- c
			}
			close(work)
		})
	}
	feed(serial, 1)
	feed(timed, matrixTimedWorkers)
	feed(parallel, matrixWorkers-1)
	wg.Wait()
}
