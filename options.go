package saferetry

import (
	"fmt"
	"log/slog"
	"time"
)

// Option configures the stack New builds. Invalid values are programmer
// errors: New panics with a message naming the option and the value, as
// regexp.MustCompile does, rather than failing later at request time.
type Option func(*config)

// config collects the options before New assembles the layers.
type config struct {
	maxRetries     int
	backoff        Exponential
	strategy       Strategy
	budget         *Budget
	maxBodyBytes   int64
	keyHeader      string
	keyMethods     []string
	keyFunc        func() string
	quotedKeys     bool
	keyStore       KeyStore
	attemptTimeout time.Duration
	maxRetryAfter  time.Duration
	logger         *slog.Logger
	onRetry        func(RetryEvent)
}

func defaultConfig() config {
	return config{
		maxRetries:    DefaultMaxRetries,
		backoff:       Exponential{Initial: DefaultInitialBackoff, Max: DefaultMaxBackoff, Jitter: FullJitter},
		strategy:      DefaultStrategy,
		budget:        new(Budget),
		maxBodyBytes:  DefaultMaxBodyBytes,
		keyHeader:     DefaultKeyHeader,
		maxRetryAfter: DefaultMaxRetryAfter,
	}
}

func invalid(option string, value any, why string) {
	panic(fmt.Sprintf("saferetry: %s(%v): %s", option, value, why))
}

// WithMaxRetries sets how many retries follow the first attempt (default
// 3, so 4 attempts). Zero disables retrying; negative values panic.
func WithMaxRetries(n int) Option {
	if n < 0 {
		invalid("WithMaxRetries", n, "must not be negative")
	}
	return func(c *config) { c.maxRetries = n }
}

// WithBackoff sets the exponential backoff bounds (default 100ms and 10s):
// the wait before retry n is at most min(max, initial*2^(n-1)). (0, 0)
// retries without waiting. Negative values or initial > max panic.
func WithBackoff(initial, max time.Duration) Option {
	if initial < 0 || max < 0 {
		invalid("WithBackoff", fmt.Sprintf("%v, %v", initial, max), "durations must not be negative")
	}
	if initial > max {
		invalid("WithBackoff", fmt.Sprintf("%v, %v", initial, max), "initial must not exceed max")
	}
	return func(c *config) { c.backoff.Initial, c.backoff.Max = initial, max }
}

// WithJitter sets how backoff waits are randomised (default FullJitter).
func WithJitter(j Jitter) Option {
	if !j.valid() {
		invalid("WithJitter", int(j), "unknown jitter")
	}
	return func(c *config) { c.backoff.Jitter = j }
}

// WithStrategy sets the outcome classifier (default DefaultStrategy). A
// nil strategy panics.
func WithStrategy(s Strategy) Option {
	if s == nil {
		invalid("WithStrategy", "nil", "strategy must not be nil")
	}
	return func(c *config) { c.strategy = s }
}

// WithBudget sets the retry budget. Each New has a budget of its own by
// default (a zero Budget: ratio 0.1); pass one *Budget to several New
// calls to share it, or nil to turn budgeting off.
func WithBudget(b *Budget) Option {
	return func(c *config) { c.budget = b }
}

// WithMaxBodyBytes sets the most bytes of a non-replayable body buffered
// for retries (default 1 MiB). A larger body is sent once, unmodified, and
// not retried after it was read. Zero buffers nothing; negative panics.
func WithMaxBodyBytes(n int64) Option {
	if n < 0 {
		invalid("WithMaxBodyBytes", n, "must not be negative")
	}
	return func(c *config) { c.maxBodyBytes = n }
}

// WithKeyHeader sets the header the idempotency key is sent in (default
// Idempotency-Key). Requests carrying it are treated as keyed. The name
// must be a valid HTTP token.
func WithKeyHeader(name string) Option {
	if !validHeaderName(name) {
		invalid("WithKeyHeader", fmt.Sprintf("%q", name), "not a valid header name")
	}
	return func(c *config) { c.keyHeader = name }
}

// WithKeyMethods sets which methods get an idempotency key (default POST
// and PATCH). Called with no methods, no key is injected.
func WithKeyMethods(methods ...string) Option {
	for _, m := range methods {
		if !validHeaderName(m) {
			invalid("WithKeyMethods", fmt.Sprintf("%q", m), "not a valid method")
		}
	}
	keyed := append(make([]string, 0, len(methods)), methods...)
	return func(c *config) { c.keyMethods = keyed }
}

// WithKeyFunc sets the function that makes idempotency keys (default: a
// random UUID v4). Its keys must be visible ASCII without quotes, at most
// MaxKeyLength bytes; a bad key fails its request with ErrInvalidKey.
func WithKeyFunc(newKey func() string) Option {
	if newKey == nil {
		invalid("WithKeyFunc", "nil", "key function must not be nil")
	}
	return func(c *config) { c.keyFunc = newKey }
}

// WithQuotedKeys sends keys as structured-field strings ("..."), as
// draft-ietf-httpapi-idempotency-key-header §2.1 specifies. The default is
// the bare key, which Stripe and most deployed APIs expect.
func WithQuotedKeys() Option {
	return func(c *config) { c.quotedKeys = true }
}

// WithKeyStore sets where the idempotency keys of named operations
// (WithOperation) are recorded (default: a MemoryKeyStore of the stack's
// own, with its defaults, which survives no restart). A nil store panics.
func WithKeyStore(s KeyStore) Option {
	if s == nil {
		invalid("WithKeyStore", "nil", "store must not be nil")
	}
	return func(c *config) { c.keyStore = s }
}

// WithAttemptTimeout bounds each attempt until its response headers
// arrive (default: no bound; LLM and streaming APIs legitimately take long
// to answer). Reading the body is not bounded. Negative values panic.
func WithAttemptTimeout(d time.Duration) Option {
	if d < 0 {
		invalid("WithAttemptTimeout", d, "must not be negative")
	}
	return func(c *config) { c.attemptTimeout = d }
}

// WithMaxRetryAfter caps the Retry-After the stack waits for (default
// 60s); a response asking for longer is returned at once. It must be
// positive.
func WithMaxRetryAfter(d time.Duration) Option {
	if d <= 0 {
		invalid("WithMaxRetryAfter", d, "must be positive")
	}
	return func(c *config) { c.maxRetryAfter = d }
}

// WithLogger logs one structured record per retry and per retry refused
// (default: silent). Bodies, Authorization and cookies are never logged.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// WithOnRetry sets a hook called once per retry and per retry refused,
// for metrics. It runs on the request's goroutine and must not block.
func WithOnRetry(hook func(RetryEvent)) Option {
	return func(c *config) { c.onRetry = hook }
}
