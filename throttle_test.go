package saferetry

import (
	"errors"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/saferetry/saferetry/internal/testutil"
)

// Adaptive throttling through the stack: against a host that answers
// only 503s, first attempts start being refused locally, with
// ErrThrottled and nothing sent; against a healthy host, none is.
func TestThrottleThroughTheStack(t *testing.T) {
	for _, tt := range []struct {
		name      string
		status    int
		throttled bool
	}{
		{"overloaded host", http.StatusServiceUnavailable, true},
		{"healthy host", http.StatusOK, false},
		{"a host answering 404s is not overloaded", http.StatusNotFound, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sent := 0
				base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
					sent++
					return &http.Response{StatusCode: tt.status, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
				})
				stack := New(base, WithThrottle(2), WithMaxRetries(0))
				throttled := 0
				const requests = 400
				for range requests {
					resp, err := stack.RoundTrip(get(t, "http://api.test/"))
					switch {
					case errors.Is(err, ErrThrottled):
						throttled++
					case err != nil:
						t.Fatal(err)
					default:
						resp.Body.Close()
					}
					time.Sleep(time.Millisecond)
				}
				if sent+throttled != requests {
					t.Fatalf("%d sent + %d throttled != %d requests: a throttled request was sent", sent, throttled, requests)
				}
				if (throttled > 0) != tt.throttled {
					t.Fatalf("%d of %d requests throttled; want throttling %v", throttled, requests, tt.throttled)
				}
				if tt.throttled && throttled > requests*9/10 {
					t.Fatalf("%d of %d throttled: more than the 0.9 cap lets through", throttled, requests)
				}
			})
		})
	}
}
