// Package stalltest checks that a store call gives up when its context's deadline passes, for tests that stall the store.
package stalltest

import (
	"context"
	"testing"
	"time"
)

const (
	// deadline is how long the call is given.
	deadline = 100 * time.Millisecond
	// limit is how long after its start the call must have returned: far
	// beyond the deadline, for a loaded machine running -race, and far
	// short of the stall (which lasts until unblock).
	limit = 5 * time.Second
)

// ReturnsByDeadline calls call with a context whose deadline is 100 ms
// away, while the store it calls is stalled, and checks that it returns
// an error soon after (which error depends on the driver: the context's,
// or a network timeout when the driver turns the deadline into one). If it is still blocked after a few
// seconds, ReturnsByDeadline ends the stall with unblock, waits for the
// call to return, and fails the test.
func ReturnsByDeadline(t *testing.T, call func(context.Context) error, unblock func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- call(ctx) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("returned no error after %v, from a stalled store", time.Since(start))
		}
	case <-time.After(limit): // the failure being tested for, not a wait for an event
		unblock()
		err := <-done
		t.Fatalf("still blocked %v after a %v deadline (returned %v once the stall ended): the store ignores its context", limit, deadline, err)
	}
}
