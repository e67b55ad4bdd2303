package saferetry

import (
	"context"
	"net/http"
	"sync/atomic"
)

// runRecord is what the retry layer remembers about one logical request,
// read back by Attempts and Stopped. It travels in the context of the
// requests the layer sends, so a response's Request leads back to it. A
// context outlives its run (a follow-up request is naturally built from
// resp.Request.Context()), so the record also says whether its run is
// still going and which response it handed back: a later request that
// inherits it is neither taken for a nested layer's request nor credited
// with this run's attempts.
type runRecord struct {
	attempts int
	stopped  StopReason
	resp     *http.Response // the response the run handed back, once recorded
	running  atomic.Bool    // the run is in progress: inner layers pass through
}

// runKey is the context key of the runRecord. Its presence also marks the
// request as already under a retry layer, so inner layers pass through.
type runKey struct{}

// runContext carries the record with a single allocation: the context
// value and the record are one object.
type runContext struct {
	context.Context
	rec runRecord
}

// Value implements context.Context.
func (c *runContext) Value(key any) any {
	if key == (runKey{}) {
		return &c.rec
	}
	return c.Context.Value(key)
}

// withRunRecord returns ctx carrying a new record of a run in progress.
func withRunRecord(ctx context.Context) (context.Context, *runRecord) {
	rc := &runContext{Context: ctx, rec: runRecord{attempts: 1}}
	rc.rec.running.Store(true)
	return rc, &rc.rec
}

// runInProgress reports whether ctx belongs to a run that is still going:
// the request is an attempt of an outer retry layer.
func runInProgress(ctx context.Context) bool {
	rec := runRecordFrom(ctx)
	return rec != nil && rec.running.Load()
}

func runRecordFrom(ctx context.Context) *runRecord {
	rec, _ := ctx.Value(runKey{}).(*runRecord)
	return rec
}

// Attempts reports how many attempts the retry layer made for the logical
// request that produced resp, the first included. A response that no retry
// layer handled, or one that succeeded at once, reports 1; nil reports 0.
// Reading it changes nothing about the response.
func Attempts(resp *http.Response) int {
	if resp == nil {
		return 0
	}
	if rec := recordOf(resp); rec != nil {
		return rec.attempts
	}
	return 1
}

// Stopped reports why the retry layer handed resp back instead of trying
// again; StopNone when the response was final by itself.
func Stopped(resp *http.Response) StopReason {
	if rec := recordOf(resp); rec != nil {
		return rec.stopped
	}
	return StopNone
}

// recordOf returns the record of the run that handed resp back, if one
// recorded it.
func recordOf(resp *http.Response) *runRecord {
	if resp == nil || resp.Request == nil {
		return nil
	}
	if rec := runRecordFrom(resp.Request.Context()); rec != nil && rec.resp == resp {
		return rec
	}
	return nil
}
