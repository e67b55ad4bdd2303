package saferetry

import (
	"context"
	"log/slog"
	"net/http"
	"time"
)

// RetryEvent describes a retry about to be made, or one refused. It is
// what Transport.OnRetry receives and what the logger records.
type RetryEvent struct {
	// Request is the attempt's request. Hooks must not modify it or read
	// its body.
	Request *http.Request
	// Attempt is the number of the attempt that just failed (1 for the
	// first).
	Attempt int
	// Delay is the wait before the next attempt; zero when Stopped is set.
	Delay time.Duration
	// ServerDirected reports that Delay honours the server's Retry-After.
	ServerDirected bool
	// StatusCode is the failed attempt's status, or 0 for a transport
	// error.
	StatusCode int
	// Err is the failed attempt's transport error, or nil.
	Err error
	// Key is the request's idempotency key, if it has one.
	Key string
	// Host is the destination host (and port, if given).
	Host string
	// Stopped is StopNone for a retry that will be made, and otherwise
	// says why it will not (budget, deadline, retries spent, ...).
	Stopped StopReason
}

// report sends the event to the hook and the logger, if any. Nothing is
// built when neither is set, so the happy path pays nothing.
func (t *Transport) report(ctx context.Context, a Attempt, delay time.Duration, serverDirected bool, stop StopReason) {
	if t.OnRetry == nil && t.Logger == nil {
		return
	}
	ev := RetryEvent{
		Request:        a.Request,
		Attempt:        a.Number,
		Delay:          delay,
		ServerDirected: serverDirected,
		Err:            a.Err,
		Key:            keyOf(a.Request.Header, t.KeyHeader),
		Host:           a.Request.URL.Host,
		Stopped:        stop,
	}
	if a.Response != nil {
		ev.StatusCode = a.Response.StatusCode
	}
	if t.OnRetry != nil {
		t.OnRetry(ev)
	}
	if t.Logger != nil {
		logEvent(ctx, t.Logger, ev)
	}
}

// logEvent writes one structured record. Only these fields are logged:
// never bodies, Authorization or cookie values.
func logEvent(ctx context.Context, logger *slog.Logger, ev RetryEvent) {
	attrs := []slog.Attr{
		slog.Int("attempt", ev.Attempt),
		slog.String("method", ev.Request.Method),
		slog.String("host", ev.Host),
	}
	if ev.StatusCode != 0 {
		attrs = append(attrs, slog.Int("status", ev.StatusCode))
	}
	if ev.Err != nil {
		attrs = append(attrs, slog.String("error", ev.Err.Error()))
	}
	if ev.Key != "" {
		attrs = append(attrs, slog.String("key", ev.Key))
	}
	if ev.Stopped != StopNone {
		attrs = append(attrs, slog.String("reason", ev.Stopped.String()))
		logger.LogAttrs(ctx, slog.LevelWarn, "saferetry: not retrying", attrs...)
		return
	}
	attrs = append(attrs, slog.Duration("delay", ev.Delay), slog.Bool("retry_after", ev.ServerDirected))
	logger.LogAttrs(ctx, slog.LevelInfo, "saferetry: retrying", attrs...)
}

// keyOf returns the request's idempotency key, if any.
func keyOf(h http.Header, extra string) string {
	for _, name := range [...]string{DefaultKeyHeader, altKeyHeader} {
		if v := h[name]; len(v) > 0 && v[0] != "" {
			return v[0]
		}
	}
	if extra != "" {
		if v := h[http.CanonicalHeaderKey(extra)]; len(v) > 0 {
			return v[0]
		}
	}
	return ""
}
