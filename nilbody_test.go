package saferetry

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/saferetry/saferetry/internal/testutil"
)

// http.Client accepts a response with a nil Body from its Transport (it
// substitutes http.NoBody), so every layer and option must too.
func TestBaseResponseWithNilBody(t *testing.T) {
	stacks := map[string]func(http.RoundTripper) http.RoundTripper{
		"New": func(b http.RoundTripper) http.RoundTripper { return New(b, WithBackoff(0, 0)) },
		"attempt timeout": func(b http.RoundTripper) http.RoundTripper {
			return New(b, WithBackoff(0, 0), WithAttemptTimeout(time.Minute))
		},
		"no key injection":  func(b http.RoundTripper) http.RoundTripper { return New(b, WithBackoff(0, 0), WithKeyMethods()) },
		"no retries":        func(b http.RoundTripper) http.RoundTripper { return New(b, WithMaxRetries(0)) },
		"no budget":         func(b http.RoundTripper) http.RoundTripper { return New(b, WithBackoff(0, 0), WithBudget(nil)) },
		"no body buffering": func(b http.RoundTripper) http.RoundTripper { return New(b, WithBackoff(0, 0), WithMaxBodyBytes(0)) },
		"logger and hook": func(b http.RoundTripper) http.RoundTripper {
			return New(b, WithBackoff(0, 0), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))), WithHook(func(Event) {}))
		},
		"KeyInjector": func(b http.RoundTripper) http.RoundTripper { return &KeyInjector{Base: b} },
		"BodyCache":   func(b http.RoundTripper) http.RoundTripper { return &BodyCache{Base: b} },
		"Transport":   func(b http.RoundTripper) http.RoundTripper { return &Transport{Base: b, Backoff: noWait} },
		"Transport with attempt timeout": func(b http.RoundTripper) http.RoundTripper {
			return &Transport{Base: b, Backoff: noWait, AttemptTimeout: time.Minute}
		},
	}
	requests := map[string]func() *http.Request{
		"GET": func() *http.Request { r, _ := http.NewRequest(http.MethodGet, "http://api.test/", nil); return r },
		"POST": func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, "http://api.test/", bytes.NewReader([]byte("charge")))
			return r
		},
		"named POST": func() *http.Request {
			ctx := WithOperation(context.Background(), "charge/1")
			r, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://api.test/", io.NopCloser(bytes.NewReader([]byte("x"))))
			r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader([]byte("x"))), nil }
			return r
		},
	}
	for name, wrap := range stacks {
		for reqName, newReq := range requests {
			t.Run(name+"/"+reqName, func(t *testing.T) {
				calls := 0
				base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
					calls++
					if r.Body != nil {
						io.Copy(io.Discard, r.Body)
						r.Body.Close()
					}
					status := http.StatusServiceUnavailable
					if calls > 1 {
						status = http.StatusOK
					}
					return &http.Response{StatusCode: status, Header: http.Header{}, Request: r}, nil
				})
				client := &http.Client{Transport: wrap(base)}
				resp, err := client.Do(newReq())
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadAll(resp.Body); err != nil {
					t.Fatal(err)
				}
				if err := resp.Body.Close(); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}
