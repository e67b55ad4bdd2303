package saferetry

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestInvalidOptionsPanicNamingTheOption(t *testing.T) {
	tests := []struct {
		name string
		opt  func() Option
		want string
	}{
		{"negative retries", func() Option { return WithMaxRetries(-1) }, "WithMaxRetries(-1)"},
		{"negative backoff", func() Option { return WithBackoff(-time.Second, time.Second) }, "WithBackoff(-1s, 1s)"},
		{"inverted backoff", func() Option { return WithBackoff(2*time.Second, time.Second) }, "WithBackoff(2s, 1s): initial must not exceed max"},
		{"unknown jitter", func() Option { return WithJitter(Jitter(42)) }, "WithJitter(42)"},
		{"nil strategy", func() Option { return WithStrategy(nil) }, "WithStrategy(nil)"},
		{"negative body cap", func() Option { return WithMaxBodyBytes(-1) }, "WithMaxBodyBytes(-1)"},
		{"invalid key header", func() Option { return WithKeyHeader("Idempotency Key") }, `WithKeyHeader("Idempotency Key")`},
		{"empty key header", func() Option { return WithKeyHeader("") }, `WithKeyHeader("")`},
		{"invalid key method", func() Option { return WithKeyMethods("POST", "") }, `WithKeyMethods("")`},
		{"nil key func", func() Option { return WithKeyFunc(nil) }, "WithKeyFunc(nil)"},
		{"negative attempt timeout", func() Option { return WithAttemptTimeout(-time.Second) }, "WithAttemptTimeout(-1s)"},
		{"zero Retry-After cap", func() Option { return WithMaxRetryAfter(0) }, "WithMaxRetryAfter(0s)"},
		{"zero option", func() Option { New(nil, WithMaxRetries(1), Option{}); return Option{} }, "New: option 1 is the zero Option"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				msg := fmt.Sprint(recover())
				if !strings.HasPrefix(msg, "saferetry: ") || !strings.Contains(msg, tt.want) {
					t.Fatalf("panic %q; want one naming %q", msg, tt.want)
				}
			}()
			New(nil, tt.opt())
		})
	}
}

func TestValidEdgeOptionsDoNotPanic(t *testing.T) {
	s := New(nil, WithMaxRetries(0), WithBackoff(0, 0), WithMaxBodyBytes(0), WithKeyMethods(),
		WithAttemptTimeout(0), WithBudget(nil), WithLogger(nil), WithJitter(DecorrelatedJitter))
	defer s.CloseIdleConnections()
	if s.retries.maxRetries() != 0 {
		t.Fatalf("WithMaxRetries(0) gave %d retries", s.retries.maxRetries())
	}
	if s.retries.Budget != nil {
		t.Fatal("WithBudget(nil) left a budget")
	}
	if d := New(nil).retries; d.Budget == nil || d.maxRetries() != defaultMaxRetries {
		t.Fatal("New without options must have the default budget and retries")
	}
}
