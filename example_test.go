package saferetry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/saferetry/saferetry"
)

// A flaky upstream heals quietly: two 503s, then the answer.
func Example() {
	var mu sync.Mutex
	failures := 2
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if failures > 0 {
			failures--
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "balance: 42")
	}))
	defer srv.Close()

	client := saferetry.NewClient(saferetry.WithBackoff(10*time.Millisecond, 100*time.Millisecond))
	defer client.CloseIdleConnections()
	resp, err := client.Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body), "after", saferetry.Attempts(resp), "attempts")
	// Output: 200 balance: 42 after 3 attempts
}

// Every retry of a POST carries the same Idempotency-Key, so the server
// can deduplicate the charge.
func ExampleNew_idempotencyKey() {
	var mu sync.Mutex
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		if len(keys) == 1 {
			http.Error(w, "upstream hiccup", http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()

	client := &http.Client{Transport: saferetry.New(nil, saferetry.WithBackoff(0, 0))}
	defer client.CloseIdleConnections()
	resp, err := client.Post(srv.URL, "application/json", strings.NewReader(`{"amount":100}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, len(keys), "attempts, same key:", keys[0] == keys[1] && keys[0] != "")
	// Output: 201 2 attempts, same key: true
}

// A custom strategy decides what it cares about and falls back to the
// default table for the rest.
func ExampleStrategyFunc() {
	notYet := saferetry.StrategyFunc(func(a saferetry.Attempt) saferetry.Retryable {
		if a.Response != nil && a.Response.StatusCode == http.StatusNotFound {
			return saferetry.Transient // eventually consistent store: retry
		}
		return saferetry.DefaultStrategy.Classify(a)
	})
	req, _ := http.NewRequest(http.MethodGet, "https://api.example.com/objects/7", nil)
	for _, status := range []int{404, 400, 503} {
		a := saferetry.Attempt{Request: req, Response: &http.Response{StatusCode: status, Header: http.Header{}}, Number: 1}
		fmt.Println(status, notYet.Classify(a))
	}
	// Output:
	// 404 transient
	// 400 done
	// 503 transient
}

// The backoff policy is usable on its own.
func ExampleExponential() {
	policy := saferetry.Exponential{Initial: 100 * time.Millisecond, Max: time.Second, Jitter: saferetry.NoJitter}
	for retry := 1; retry <= 5; retry++ {
		fmt.Print(policy.Delay(retry, 0), " ")
	}
	fmt.Println()
	// Output: 100ms 200ms 400ms 800ms 1s
}

// A slow attempt is hedged: after 20ms without an answer a second attempt,
// with the same Idempotency-Key, races the first, and the first answer
// wins. A server that deduplicates by key applies the charge once.
func ExampleWithHedge() {
	var mu sync.Mutex
	applied := map[string]bool{}
	requests := 0
	stuck := make(chan struct{})
	defer close(stuck)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body) // read it all: then the server notices a client that gives up
		mu.Lock()
		requests++
		first := requests == 1
		mu.Unlock()
		if first {
			select { // the first attempt meets a stalled replica
			case <-stuck:
			case <-r.Context().Done():
			}
			return
		}
		mu.Lock()
		applied[r.Header.Get("Idempotency-Key")] = true
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()

	client := saferetry.NewClient(saferetry.WithHedge(20*time.Millisecond, 1))
	defer client.CloseIdleConnections()
	resp, err := client.Post(srv.URL+"/charges", "text/plain", strings.NewReader("amount=100"))
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	fmt.Println(resp.StatusCode, "after", saferetry.Attempts(resp), "attempts; charges applied:", len(applied))
	// Output: 201 after 2 attempts; charges applied: 1
}

// Options of the retry loop can change for one request: here a health
// check that must not be retried, sent through a stack that retries.
func ExampleWithRequestOptions() {
	var mu sync.Mutex
	requests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests++
		mu.Unlock()
		http.Error(w, "warming up", http.StatusServiceUnavailable)
	}))
	defer srv.Close()

	client := saferetry.NewClient(saferetry.WithBackoff(time.Millisecond, time.Millisecond))
	defer client.CloseIdleConnections()
	ctx := saferetry.WithRequestOptions(context.Background(), saferetry.WithMaxRetries(0))
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/healthz", nil)
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	fmt.Println(resp.StatusCode, "after", requests, "request")
	// Output: 503 after 1 request
}

// An SDK builds its own requests, so their context is out of reach: the
// stack chooses options from the request itself.
func ExampleWithRequestOptionsFunc() {
	var mu sync.Mutex
	requests := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests[r.URL.Path]++
		mu.Unlock()
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	defer srv.Close()

	noRetryForHealth := saferetry.WithRequestOptionsFunc(func(r *http.Request) []saferetry.Option {
		if r.URL.Path == "/healthz" {
			return []saferetry.Option{saferetry.WithMaxRetries(0)}
		}
		return nil
	})
	client := saferetry.NewClient(noRetryForHealth, saferetry.WithMaxRetries(2), saferetry.WithBackoff(time.Millisecond, time.Millisecond))
	defer client.CloseIdleConnections()
	for _, path := range []string{"/healthz", "/v1/things"} {
		resp, err := client.Get(srv.URL + path)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	fmt.Println("/healthz:", requests["/healthz"], "request; /v1/things:", requests["/v1/things"], "requests")
	// Output: /healthz: 1 request; /v1/things: 3 requests
}

// GitHub answers a token that spent its 5,000 requests of the hour with a
// 403 saying when they come back. With WithRateLimitHold, the stack sends
// nothing more to that host until then: a request that can wait is held
// until the reset, one that cannot (here the reset is an hour away, past
// the 60s cap on server-directed waits) fails at once, unsent.
func ExampleWithRateLimitHold() {
	var mu sync.Mutex
	requests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests++
		mu.Unlock()
		w.Header().Set("X-RateLimit-Remaining", "0")
		w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10))
		http.Error(w, "API rate limit exceeded", http.StatusForbidden)
	}))
	defer srv.Close()

	client := saferetry.NewClient(saferetry.WithRateLimitHold(true))
	defer client.CloseIdleConnections()
	resp, err := client.Get(srv.URL + "/repos/o/r/issues")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println("first request:", resp.StatusCode)
	_, err = client.Get(srv.URL + "/repos/o/r/pulls")
	fmt.Println("second request rate limited:", errors.Is(err, saferetry.ErrRateLimited))
	mu.Lock()
	defer mu.Unlock()
	fmt.Println("requests the server received:", requests)
	// Output:
	// first request: 403
	// second request rate limited: true
	// requests the server received: 1
}

// An LLM API's 429 names its wait in retry-after-ms (OpenAI's and Azure
// OpenAI's) and in x-ratelimit-reset-requests: saferetry waits the longest
// announced, not its own shorter backoff.
func ExampleWithMaxRetryAfter() {
	var mu sync.Mutex
	var times []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		times = append(times, time.Now())
		first := len(times) == 1
		mu.Unlock()
		if first {
			w.Header().Set("retry-after-ms", "300")
			w.Header().Set("x-ratelimit-reset-requests", "250ms")
			http.Error(w, `{"error":{"type":"rate_limit_exceeded"}}`, http.StatusTooManyRequests)
			return
		}
		fmt.Fprint(w, `{"choices":[]}`)
	}))
	defer srv.Close()

	// Server-directed waits are honoured up to 60s by default; this client
	// takes up to 10s and fails fast beyond.
	client := saferetry.NewClient(saferetry.WithMaxRetryAfter(10 * time.Second))
	defer client.CloseIdleConnections()
	resp, err := client.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m"}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	fmt.Println(resp.StatusCode, "after", saferetry.Attempts(resp), "attempts")
	fmt.Println("waited the announced 300ms:", times[1].Sub(times[0]) >= 300*time.Millisecond)
	// Output:
	// 200 after 2 attempts
	// waited the announced 300ms: true
}
