// Package testutil holds the helpers that saferetry's tests share across
// packages and modules, so that each exists once.
package testutil

import (
	"net/http"
	"slices"
	"testing"
	"time"
)

// SignalTimeout bounds a wait for an event that must happen promptly. It
// only turns a hang into a failure: a test that reaches it has already
// failed, and none waits for it to pass.
const SignalTimeout = 10 * time.Second

// WaitSignal waits for ch to be closed or to yield a value, and fails the
// test after SignalTimeout, naming what it waited for.
func WaitSignal(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	timer := time.NewTimer(SignalTimeout)
	defer timer.Stop()
	select {
	case <-ch:
	case <-timer.C:
		t.Fatalf("gave up waiting for %s", what)
	}
}

// RoundTripFunc adapts a function to http.RoundTripper, for fake base
// transports.
type RoundTripFunc func(*http.Request) (*http.Response, error)

// RoundTrip calls f(r).
func (f RoundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

var _ http.RoundTripper = RoundTripFunc(nil)

// HeadersEqual reports whether a and b hold the same names with the same
// values in the same order. A nil and an empty header are equal.
func HeadersEqual(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok || !slices.Equal(va, vb) {
			return false
		}
	}
	return true
}
