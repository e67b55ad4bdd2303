package saferetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/saferetry/saferetry/internal/testutil"
)

func TestRequestOptionsOverrideTheStackPerRequest(t *testing.T) {
	s := &script{outcomes: statuses(503)}
	stack := New(s, WithBackoff(0, 0), WithBudget(nil))
	send := func(ctx context.Context, method string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, "http://api.test/", strings.NewReader("x"))
		resp, err := stack.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	tests := []struct {
		name     string
		ctx      context.Context
		method   string
		attempts int
		keyed    bool
	}{
		{"the stack's own options", context.Background(), http.MethodGet, 4, false},
		{"fewer retries for an interactive call", WithRequestOptions(context.Background(), WithMaxRetries(1)), http.MethodGet, 2, false},
		{"none for a health check", WithRequestOptions(context.Background(), WithMaxRetries(0)), http.MethodGet, 1, false},
		{"nested: the inner call wins", WithRequestOptions(WithRequestOptions(context.Background(), WithMaxRetries(1)), WithMaxRetries(2)), http.MethodGet, 3, false},
		{"nested: the outer call's other options stay", WithRequestOptions(WithRequestOptions(context.Background(), WithMaxRetries(1)), WithAttemptTimeout(time.Minute)), http.MethodGet, 2, false},
		{"a strategy of its own", WithRequestOptions(context.Background(), WithStrategy(StrategyFunc(func(Attempt) Retryable { return Done }))), http.MethodGet, 1, false},
		{"keys as usual", context.Background(), http.MethodPost, 4, true},
		{"no key injection for one endpoint", WithRequestOptions(context.Background(), WithKeyMethods()), http.MethodPost, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.attempts()
			resp := send(tt.ctx, tt.method)
			got := s.got[len(s.got)-1]
			if n := s.attempts() - before; n != tt.attempts || (got.key != "") != tt.keyed {
				t.Fatalf("%d attempts, key %q; want %d attempts, keyed %v", n, got.key, tt.attempts, tt.keyed)
			}
			if resp.StatusCode != 503 {
				t.Fatalf("status %d", resp.StatusCode)
			}
		})
	}
}

func TestRequestOptionsFuncChoosesByRequest(t *testing.T) {
	s := &script{outcomes: statuses(503)}
	stack := New(s, WithBackoff(0, 0), WithBudget(nil), WithRequestOptionsFunc(func(r *http.Request) []Option {
		if r.URL.Path == "/healthz" {
			return []Option{WithMaxRetries(0)}
		}
		return nil
	}))
	for _, tt := range []struct {
		path     string
		ctx      context.Context
		attempts int
	}{
		{"/healthz", context.Background(), 1},
		{"/v1/things", context.Background(), 4},
		{"/healthz", WithRequestOptions(context.Background(), WithMaxRetries(2)), 3}, // the caller's context wins
	} {
		before := s.attempts()
		req, _ := http.NewRequestWithContext(tt.ctx, http.MethodGet, "http://api.test"+tt.path, nil)
		resp, err := stack.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if n := s.attempts() - before; n != tt.attempts {
			t.Errorf("%s: %d attempts, want %d", tt.path, n, tt.attempts)
		}
	}
}

func TestStackWideOptionsPanicPerRequest(t *testing.T) {
	stackWide := map[string]Option{
		"WithLogger":       WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		"WithHook":         WithHook(func(Event) {}),
		"WithBudget":       WithBudget(nil),
		"WithKeyStore":     WithKeyStore(&MemoryKeyStore{}),
		"WithKeyHeader":    WithKeyHeader("X-Key"),
		"WithKeyFunc":      WithKeyFunc(func() string { return "k" }),
		"WithQuotedKeys":   WithQuotedKeys(),
		"WithMaxBodyBytes": WithMaxBodyBytes(1),
		"WithRequestOptionsFunc": WithRequestOptionsFunc(func(*http.Request) []Option {
			return nil
		}),
	}
	for name, opt := range stackWide {
		t.Run(name, func(t *testing.T) {
			defer func() {
				msg := fmt.Sprint(recover())
				if !strings.HasPrefix(msg, "saferetry: WithRequestOptions: "+name+" ") {
					t.Fatalf("panic %q; want one naming %s", msg, name)
				}
			}()
			WithRequestOptions(context.Background(), WithMaxRetries(1), opt)
		})
	}
	t.Run("the zero Option", func(t *testing.T) {
		defer func() {
			if msg := fmt.Sprint(recover()); !strings.Contains(msg, "option 0 is the zero Option") {
				t.Fatalf("panic %q", msg)
			}
		}()
		WithRequestOptions(context.Background(), Option{})
	})
}

// Overrides apply to a copy: the stack's own settings are never changed.
func TestRequestOptionsDoNotChangeTheStack(t *testing.T) {
	stack := New(testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
	}))
	before := stack.retries
	ctx := WithRequestOptions(context.Background(), WithMaxRetries(7), WithBackoff(time.Second, time.Minute), WithAttemptTimeout(time.Second))
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://api.test/", nil)
	if _, err := stack.RoundTrip(req); err != nil {
		t.Fatal(err)
	}
	if stack.retries.MaxRetries != before.MaxRetries || stack.retries.Backoff != before.Backoff || stack.retries.AttemptTimeout != before.AttemptTimeout {
		t.Fatal("a request's overrides changed the stack")
	}
}
