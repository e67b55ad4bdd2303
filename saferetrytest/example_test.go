package saferetrytest_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/saferetry/saferetry"
	"github.com/saferetry/saferetry/saferetrytest"
)

// A keyed POST whose connection is cut after the server committed it is
// applied once: the client sends it again with the same Idempotency-Key,
// and the server answers from its key store instead of charging again.
func Example() {
	srv := saferetrytest.New()
	defer srv.Close()
	srv.Script("/charges", saferetrytest.Fault{Kind: saferetrytest.ResetAfterCommit})

	tr := srv.Transport()
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: saferetry.New(tr, saferetry.WithBackoff(0, 0))}
	resp, err := client.Post(srv.URL()+"/charges", "application/json", strings.NewReader(`{"amount":4200}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()

	got, err := srv.Wait(context.Background(), "/charges", 2)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.Status, "replayed:", resp.Header.Get("Idempotent-Replayed"))
	for _, r := range got.Requests {
		fmt.Println(r.Method, r.Fault, r.Effect, "same key:", r.Key == got.Requests[0].Key)
	}
	fmt.Println("charges applied:", got.Commits)
	// Output:
	// 200 OK replayed: true
	// POST ResetAfterCommit Committed same key: true
	// POST Pass Replayed same key: true
	// charges applied: 1
}

// Without a key, the server cannot tell a resent write from a new one: a
// client that sends the POST again after the cut charges twice, and the
// server's record shows it.
func Example_unkeyed() {
	srv := saferetrytest.New()
	defer srv.Close()
	srv.Script("/charges", saferetrytest.Fault{Kind: saferetrytest.ResetAfterCommit})

	tr := srv.Transport()
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	for range 2 { // a naive retry: send again on any error
		resp, err := client.Post(srv.URL()+"/charges", "application/json", strings.NewReader(`{"amount":4200}`))
		if err != nil {
			continue
		}
		resp.Body.Close()
		break
	}
	got, _ := srv.Wait(context.Background(), "/charges", 2)
	fmt.Println("charges applied:", got.Commits)
	// Output:
	// charges applied: 2
}

// A 429 with a Retry-After is waited for: the client sends again only once
// the second the server asked for has passed.
func ExampleRetryAfter() {
	srv := saferetrytest.New()
	defer srv.Close()
	srv.Script("/quota", saferetrytest.RetryAfter(http.StatusTooManyRequests, "1"))

	tr := srv.Transport()
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: saferetry.New(tr)}
	start := time.Now()
	resp, err := client.Get(srv.URL() + "/quota")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	waited := time.Since(start)

	got, _ := srv.Wait(context.Background(), "/quota", 2)
	fmt.Println(resp.Status, "after waiting at least 1s:", waited >= time.Second)
	fmt.Println("requests:", len(got.Requests), "first met:", got.Requests[0].Fault)
	// Output:
	// 200 OK after waiting at least 1s: true
	// requests: 2 first met: Respond
}

// Go's HTTP/2 client resends a stream the server refused by itself, below
// any RoundTripper: one request, two streams, one processed.
func ExampleNewH2Server() {
	srv := saferetrytest.NewH2Server()
	defer srv.Close()
	srv.Script(saferetrytest.H2Fault{Kind: saferetrytest.H2Refuse})

	resp, err := srv.Client().Post(srv.URL()+"/charges", "text/plain", strings.NewReader("pay"))
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	st := srv.Stats()
	fmt.Println(resp.Status, resp.Proto)
	for _, s := range st.Streams {
		fmt.Println("stream", s.ID, s.Kind, "processed:", s.Processed)
	}
	// Output:
	// 200 OK HTTP/2.0
	// stream 1 H2Refuse processed: false
	// stream 3 H2Answer processed: true
}
