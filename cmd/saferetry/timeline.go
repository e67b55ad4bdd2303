package main

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// timeline prints the demo as it happens, one line per event, stamped
// with the milliseconds since the current scene began and the name of who
// speaks: the caller (the code calling http.Client.Do), saferetry (its
// retry hook and strategy), or the server. The server writes from its
// handlers' goroutines and the others from the caller's, hence the lock.
type timeline struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

// Who speaks on a timeline line.
const (
	whoCaller    = "caller"
	whoSaferetry = "saferetry"
	whoServer    = "server"
)

// scene starts a new scene: a heading, and the clock back to zero.
func (t *timeline) scene(n int, title string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, "\nScene %d: %s\n", n, title)
	t.start = time.Now()
}

// printf writes one line for who.
func (t *timeline) printf(who, format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ms := time.Since(t.start).Milliseconds()
	fmt.Fprintf(t.w, "  +%5dms  %-9s  %s\n", ms, who, fmt.Sprintf(format, args...))
}

// note writes an unstamped line, for context that is not an event.
func (t *timeline) note(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, format+"\n", args...)
}
