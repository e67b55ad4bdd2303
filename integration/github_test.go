package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/google/go-github/v92/github"
	"github.com/saferetry/saferetry"
)

// newGitHubClient returns a go-github client whose http.Client uses
// transport, pointed at the fake's URL instead of api.github.com.
func newGitHubClient(t *testing.T, transport http.RoundTripper, url string) *github.Client {
	t.Helper()
	base := url + "/"
	client, err := github.NewClient(
		github.WithHTTPClient(&http.Client{Transport: transport}),
		github.WithURLs(&base, &base),
	)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// gitHubAnswer fails the first len(failures) requests with those statuses,
// then answers with body as JSON.
func gitHubAnswer(body string, failures ...int) answer {
	return func(w http.ResponseWriter, _ *http.Request, n int, _ seenRequest) {
		w.Header().Set("Content-Type", "application/json")
		if n <= len(failures) {
			w.WriteHeader(failures[n-1])
			_, _ = io.WriteString(w, `{"message":"Server Error"}`)
			return
		}
		_, _ = io.WriteString(w, body)
	}
}

// TestGitHubSwapIn: go-github takes any *http.Client, so saferetry goes in
// as its Transport, with nothing to configure on the go-github side (it
// has no retry loop of its own). Reads that meet 502 and 503 are retried
// and the call succeeds; the fake sees exactly one attempt per failure
// plus the success.
func TestGitHubSwapIn(t *testing.T) {
	t.Run("Users.Get after 502, 503", func(t *testing.T) {
		api := newFakeAPI(t, gitHubAnswer(`{"login":"octocat","id":583231}`, http.StatusBadGateway, http.StatusServiceUnavailable))
		gh := newGitHubClient(t, newStack(t, newBase(t)), api.URL)

		user, resp, err := gh.Users.Get(context.Background(), "octocat")
		if err != nil {
			t.Fatal(err)
		}
		if user.GetLogin() != "octocat" || user.GetID() != 583231 {
			t.Errorf("user %q/%d, want octocat/583231", user.GetLogin(), user.GetID())
		}
		seen := api.requests()
		if len(seen) != 3 {
			t.Errorf("fake saw %d attempts, want 3 (2 failures + 1 success)", len(seen))
		}
		for i, r := range seen {
			if r.Method != http.MethodGet || r.Path != "/users/octocat" {
				t.Errorf("attempt %d: %s %s, want GET /users/octocat", i+1, r.Method, r.Path)
			}
			if k := r.Header.Get("Idempotency-Key"); k != "" {
				t.Errorf("attempt %d: a GET got an Idempotency-Key %q", i+1, k)
			}
		}
		if got := saferetry.Attempts(resp.Response); got != 3 {
			t.Errorf("saferetry.Attempts = %d, want 3", got)
		}
	})

	t.Run("Repositories.Get, 503 until retries run out", func(t *testing.T) {
		api := newFakeAPI(t, always(http.StatusServiceUnavailable))
		gh := newGitHubClient(t, newStack(t, newBase(t), saferetry.WithMaxRetries(2)), api.URL)

		_, resp, err := gh.Repositories.Get(context.Background(), "saferetry", "saferetry")
		var ghErr *github.ErrorResponse
		if !errors.As(err, &ghErr) || ghErr.Response.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("error %v, want a *github.ErrorResponse for the last 503", err)
		}
		if got := len(api.requests()); got != 3 {
			t.Errorf("fake saw %d attempts, want 3 (1 + 2 retries)", got)
		}
		if got, stop := saferetry.Attempts(resp.Response), saferetry.Stopped(resp.Response); got != 3 || stop != saferetry.StopMaxRetries {
			t.Errorf("Attempts, Stopped = %d, %v; want 3, %v", got, stop, saferetry.StopMaxRetries)
		}
	})
}

// TestGitHubWritesAndInjectedKeys: saferetry keys POSTs and then treats
// them as safe to retry, which is only true of a server that deduplicates
// by Idempotency-Key. This fake behaves like an API that ignores the
// header (GitHub's REST API documents no such header): it creates the
// issue, then its gateway answers 502. With saferetry's defaults the
// retry creates a second issue; with WithKeyMethods() (no injected keys)
// the unkeyed POST is not retried after it reached the server, and the
// caller sees the 502 with one issue created.
func TestGitHubWritesAndInjectedKeys(t *testing.T) {
	cases := []struct {
		name         string
		opts         []saferetry.Option
		wantAttempts int
		wantCreated  int32
		wantErr      bool
	}{
		{"default options: injected key, retried, duplicated", nil, 2, 2, false},
		{"WithKeyMethods(): unkeyed, not retried", []saferetry.Option{saferetry.WithKeyMethods()}, 1, 1, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var created atomic.Int32
			api := newFakeAPI(t, func(w http.ResponseWriter, _ *http.Request, n int, _ seenRequest) {
				id := created.Add(1) // the side effect, whatever the key
				w.Header().Set("Content-Type", "application/json")
				if n == 1 {
					w.WriteHeader(http.StatusBadGateway)
					_, _ = io.WriteString(w, `{"message":"Bad Gateway"}`)
					return
				}
				w.WriteHeader(http.StatusCreated)
				fmt.Fprintf(w, `{"number":%d,"title":"flaky"}`, id)
			})
			gh := newGitHubClient(t, newStack(t, newBase(t), tc.opts...), api.URL)

			_, _, err := gh.Issues.Create(context.Background(), "saferetry", "saferetry", github.CreateIssueRequest{Title: "flaky"})
			if (err != nil) != tc.wantErr {
				t.Errorf("error %v, want error: %v", err, tc.wantErr)
			}
			if got := len(api.requests()); got != tc.wantAttempts {
				t.Errorf("fake saw %d attempts, want %d", got, tc.wantAttempts)
			}
			if got := created.Load(); got != tc.wantCreated {
				t.Errorf("%d issues created, want %d", got, tc.wantCreated)
			}
		})
	}
}

// TestGitHubDroppedConnectionOnReusedConnection: the injected key also
// switches on net/http's own resend. The fake (which, like GitHub, ignores
// Idempotency-Key) creates the issue and then drops the keep-alive
// connection the POST arrived on. With saferetry's defaults the POST
// carries a key, so net/http's Transport treats it as replayable and
// resends it by itself, inside what saferetry counts as one attempt: two
// issues, Attempts 1, no retry reported. With WithKeyMethods() neither
// net/http nor saferetry resends the unkeyed POST once it was written: one
// issue, and the caller gets the error (saferetry's hook reports the
// refusal: not retryable).
func TestGitHubDroppedConnectionOnReusedConnection(t *testing.T) {
	cases := []struct {
		name        string
		opts        []saferetry.Option
		wantPosts   int
		wantCreated int32
		wantErr     bool
		wantRefused saferetry.StopReason
	}{
		{"default options: resent by net/http", nil, 2, 2, false, saferetry.StopNone},
		{"WithKeyMethods(): not resent", []saferetry.Option{saferetry.WithKeyMethods()}, 1, 1, true, saferetry.StopNotRetryable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var created, posts atomic.Int32
			api := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, _ int, _ seenRequest) {
				w.Header().Set("Content-Type", "application/json")
				if r.Method == http.MethodGet {
					_, _ = io.WriteString(w, `{"login":"octocat"}`)
					return
				}
				id := created.Add(1)
				if posts.Add(1) == 1 {
					cutConnection(t, w)
					return
				}
				w.WriteHeader(http.StatusCreated)
				fmt.Fprintf(w, `{"number":%d,"title":"flaky"}`, id)
			})
			var retries atomic.Int32
			var refused atomic.Int64 // the StopReason of a retry refused
			hook := saferetry.WithHook(func(ev saferetry.Event) {
				if ev.Stopped == saferetry.StopNone {
					retries.Add(1)
				} else {
					refused.Store(int64(ev.Stopped))
				}
			})
			opts := append([]saferetry.Option{hook}, tc.opts...)
			gh := newGitHubClient(t, newStack(t, newBase(t), opts...), api.URL)

			// Leave one keep-alive connection idle in the pool.
			if _, _, err := gh.Users.Get(context.Background(), "octocat"); err != nil {
				t.Fatal(err)
			}
			_, resp, err := gh.Issues.Create(context.Background(), "saferetry", "saferetry", github.CreateIssueRequest{Title: "flaky"})
			if (err != nil) != tc.wantErr {
				t.Errorf("error %v, want error: %v", err, tc.wantErr)
			}
			if got := posts.Load(); int(got) != tc.wantPosts {
				t.Errorf("fake saw %d POSTs, want %d", got, tc.wantPosts)
			}
			if got := created.Load(); got != tc.wantCreated {
				t.Errorf("%d issues created, want %d", got, tc.wantCreated)
			}
			if got := retries.Load(); got != 0 {
				t.Errorf("saferetry reported %d retries, want 0", got)
			}
			if got := saferetry.StopReason(refused.Load()); got != tc.wantRefused {
				t.Errorf("retry refused with %v, want %v", got, tc.wantRefused)
			}
			if err == nil {
				if got := saferetry.Attempts(resp.Response); got != 1 {
					t.Errorf("saferetry.Attempts = %d, want 1", got)
				}
			}
		})
	}
}
