package saferetry

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"time"
)

// Event describes an attempt's outcome and what the retry loop does next:
// a retry after Delay, or, when Stopped is set, no retry, and why; or,
// when Hedge is set, a hedge just sent. It is what the hook set by
// WithHook (Transport.Hook) receives and what the logger records.
type Event struct {
	// Attempt is the attempt that just ended: its request (which hooks
	// must not modify, nor read the body of), its response or error, and
	// its number. A hook must not read the response's body.
	Attempt
	// Delay is the wait before the next attempt; zero when Stopped is set.
	Delay time.Duration
	// ServerDirected reports that Delay honours the server's Retry-After.
	ServerDirected bool
	// Stopped is StopNone for a retry that will be made, and otherwise
	// says why it will not (budget, deadline, retries spent, ...). A
	// retry after a failure without a response (an error, an attempt
	// timeout) is asked of the budget's gate again when its wait ends; if
	// the host's later answers closed the gate meanwhile, a second event
	// for the same attempt reports StopBudget.
	Stopped StopReason
	// Hedge reports that Attempt is a hedge just sent while earlier
	// attempts are still in flight (WithHedge); it has no outcome yet.
	Hedge bool
	// Key is the request's idempotency key, if it has one.
	Key string
	// Host is the destination host (and port, if given).
	Host string
}

// report completes ev with the request's key and host and sends it to
// the hook and the logger, if any.
func (t *Transport) report(ctx context.Context, ev Event) {
	if t.Hook == nil && t.Logger == nil {
		return
	}
	ev.Key = keyOf(ev.Request.Header, t.KeyHeader)
	ev.Host = ev.Request.URL.Host
	if t.Hook != nil {
		t.Hook(ev)
	}
	if t.Logger != nil {
		logEvent(ctx, t.Logger, ev)
	}
}

// logEvent writes one structured record. Only these fields are logged:
// never bodies, Authorization or cookie values.
func logEvent(ctx context.Context, logger *slog.Logger, ev Event) {
	attrs := []slog.Attr{
		slog.Int("attempt", ev.Number),
		slog.String("method", ev.Request.Method),
		slog.String("host", ev.Host),
	}
	if ev.Response != nil {
		attrs = append(attrs, slog.Int("status", ev.Response.StatusCode))
	}
	if ev.Err != nil {
		attrs = append(attrs, slog.String("error", errorForLog(ev.Err)))
	}
	if ev.Key != "" {
		attrs = append(attrs, slog.String("key", ev.Key))
	}
	if ev.Hedge {
		logger.LogAttrs(ctx, slog.LevelInfo, "saferetry: hedging", attrs...)
		return
	}
	if ev.Stopped != StopNone {
		attrs = append(attrs, slog.String("reason", ev.Stopped.String()))
		logger.LogAttrs(ctx, slog.LevelWarn, "saferetry: not retrying", attrs...)
		return
	}
	attrs = append(attrs, slog.Duration("delay", ev.Delay), slog.Bool("retry_after", ev.ServerDirected))
	logger.LogAttrs(ctx, slog.LevelInfo, "saferetry: retrying", attrs...)
}

// errorForLog is err's text without the URL a *url.Error quotes: its query
// may carry tokens, and the record already names the host.
func errorForLog(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + ": " + errString(ue.Err)
	}
	return err.Error()
}
