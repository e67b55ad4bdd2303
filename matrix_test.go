package saferetry_test

// The fault matrix: every fault the fault server can inject, crossed with
// every method and every kind of request body, over HTTP/1.1 and (a
// subset) HTTP/2. For each cell the expected outcome is worked out from
// DESIGN.md's classification table by expectCell (matrix_expect_test.go),
// written out by hand rather than by asking the library's strategy, and
// the runner (matrix_run_test.go) checks:
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
// loopback I/O (and the Hang cells on their attempt timeout), so this is
// set by hand instead of by t.Parallel, which -parallel (GOMAXPROCS by
// default) would hold to 2 on a 2-core runner.
const matrixWorkers = 6

func TestMatrix(t *testing.T) {
	env := newMatrixEnv(t)
	cells := matrixCells()
	t.Logf("fault matrix: %d cells", len(cells))
	runCells(t, env, cells)
}

// matrixCells crosses the fault rows with the methods and body kinds.
func matrixCells() []cell {
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
	return cells
}

// runCells runs the cells matrixWorkers at a time, except those that
// reset the next connection their server accepts, which run one at a time.
func runCells(t *testing.T, env *matrixEnv, cells []cell) {
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
