package saferetry_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
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
