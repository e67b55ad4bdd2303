package saferetryotel

import (
	"context"
	"errors"

	"github.com/saferetry/saferetry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Span event names, on the span of the logical request's context.
const (
	eventRetry = "saferetry.retry" // an attempt failed and another will follow after a wait
	eventHedge = "saferetry.hedge" // a hedge was sent while earlier attempts were in flight
	eventStop  = "saferetry.stop"  // the loop handed an outcome back without the retry it wanted
)

// hook is the stack's saferetry hook: it counts the event on the logical
// request's call, adds it to the caller's span, then calls Config.Hook.
func (tel *telemetry) hook(ev saferetry.Event) {
	if c := callFrom(ev.Request.Context()); c != nil {
		switch {
		case ev.Hedge:
			c.hedges++
			tel.addEvent(c, eventHedge, keyAttempt.Int(ev.Number))
		case ev.Stopped != saferetry.StopNone:
			c.stop, c.stopped = ev.Stopped, true
			if c.parent.IsRecording() {
				tel.addEvent(c, eventStop, outcomeAttrs(
					[]attribute.KeyValue{keyAttempt.Int(ev.Number), keyStopReason.String(stopName(ev.Stopped))},
					ev.Attempt)...)
			}
		default:
			c.retries++
			c.delay += ev.Delay
			if c.parent.IsRecording() {
				tel.addEvent(c, eventRetry, outcomeAttrs(
					[]attribute.KeyValue{
						keyAttempt.Int(ev.Number),
						keyDelay.Float64(ev.Delay.Seconds()),
						keyServerDirected.Bool(ev.ServerDirected),
					},
					ev.Attempt)...)
			}
		}
	}
	if tel.userHook != nil {
		tel.userHook(ev)
	}
}

// outcomeAttrs appends what the attempt got: its status, or its error's
// type (never its message).
func outcomeAttrs(kvs []attribute.KeyValue, a saferetry.Attempt) []attribute.KeyValue {
	if a.Response != nil {
		return append(kvs, keyStatusCode.Int(a.Response.StatusCode))
	}
	if a.Err != nil {
		return append(kvs, keyErrorType.String(errorType(a.Err)))
	}
	return kvs
}

func (tel *telemetry) addEvent(c *call, name string, kvs ...attribute.KeyValue) {
	if c.parent.IsRecording() {
		c.parent.AddEvent(name, trace.WithAttributes(kvs...))
	}
}

// finish completes the logical request once the stack returned: a stop
// the hook never saw (the caller canceled, which the loop does not report)
// gets its event, and the call's metrics are recorded.
func (tel *telemetry) finish(c *call, ctx context.Context, err error) {
	if !c.stopped && err != nil {
		if stop, ok := unreportedStop(ctx, err); ok {
			c.stop, c.stopped = stop, true
			tel.addEvent(c, eventStop,
				keyAttempt.Int(int(c.attempts.Load())),
				keyStopReason.String(stopName(stop)),
				keyErrorType.String(errorType(err)))
		}
	}
	tel.record(ctx, c)
}

// unreportedStop returns why a run that ended in err stopped, when its
// hook said nothing: the reason a *saferetry.RetryError carries, the
// stop a newer sentinel error names (see newerStopOf), or
// StopCanceled for the context's own error on the first attempt (the loop
// hands that back as it is).
func unreportedStop(ctx context.Context, err error) (saferetry.StopReason, bool) {
	var re *saferetry.RetryError
	if errors.As(err, &re) && re.Reason != saferetry.StopNone {
		return re.Reason, true
	}
	if stop, ok := newerStopOf(err); ok {
		return stop, true
	}
	if ctx.Err() != nil {
		return saferetry.StopCanceled, true
	}
	return saferetry.StopNone, false
}
