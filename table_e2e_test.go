package saferetry

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Every status row of the classification table, end to end: a real
// server answers the status once and then 200, and the number of requests
// it sees says whether the stack retried.
func TestClassificationTableStatusesEndToEnd(t *testing.T) {
	type row struct {
		status              int
		retryAfter          string
		replayable, unkeyed bool // retried?
		keyedOnly           bool // retried only when keyed (409)
	}
	rows := []row{
		{status: 408, replayable: true, unkeyed: true},
		{status: 429, retryAfter: "0", replayable: true, unkeyed: true},
		{status: 413, retryAfter: "0", replayable: true, unkeyed: true},
		{status: 413},
		{status: 409, keyedOnly: true},
		{status: 500, replayable: true},
		{status: 502, replayable: true},
		{status: 503, replayable: true},
		{status: 504, replayable: true},
		{status: 422},
		{status: 400},
		{status: 404},
		{status: 501},
		{status: 505},
		{status: 302},
		{status: 200},
	}
	type request struct {
		name   string
		method string
		keyed  bool // carries the caller's own key
		inject bool // the stack injects one
	}
	requests := []request{
		{"GET", "GET", false, false},
		{"PUT", "PUT", false, false},
		{"DELETE", "DELETE", false, false},
		{"POST keyed by the stack", "POST", false, true},
		{"PATCH keyed by the caller", "PATCH", true, false},
		{"POST unkeyed", "POST", false, false},
		{"PATCH unkeyed", "PATCH", false, false},
	}
	var mu sync.Mutex
	var script []int
	var retryAfter string
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, r.Header.Get("Idempotency-Key")+"|"+string(body))
		status := 200
		if len(script) > 0 {
			status, script = script[0], script[1:]
		}
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		if status == 302 {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	withKey := New(srv.Client().Transport, WithBackoff(0, 0), WithBudget(nil))
	withoutKey := New(srv.Client().Transport, WithBackoff(0, 0), WithBudget(nil), WithKeyMethods())
	for _, rw := range rows {
		for _, rq := range requests {
			t.Run(fmt.Sprintf("%d/%s", rw.status, rq.name), func(t *testing.T) {
				mu.Lock()
				script, retryAfter, seen = []int{rw.status}, rw.retryAfter, nil
				mu.Unlock()
				stack := withoutKey
				if rq.inject {
					stack = withKey
				}
				req, _ := http.NewRequest(rq.method, srv.URL+"/r", strings.NewReader("body-"+rq.name))
				if rq.keyed {
					req.Header.Set("Idempotency-Key", "caller-key")
				}
				resp, err := stack.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				replayable := isIdempotent(rq.method) || rq.keyed || rq.inject
				keyed := rq.keyed || rq.inject
				want := rw.unkeyed
				switch {
				case rw.keyedOnly:
					want = keyed
				case replayable:
					want = rw.replayable
				}
				wantRequests := 1
				if want {
					wantRequests = 2
				}
				mu.Lock()
				defer mu.Unlock()
				if len(seen) != wantRequests {
					t.Fatalf("server saw %d requests, want %d", len(seen), wantRequests)
				}
				if len(seen) == 2 && seen[0] != seen[1] {
					t.Fatalf("attempts differ: %q vs %q", seen[0], seen[1])
				}
			})
		}
	}
}
