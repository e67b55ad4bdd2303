package saferetry

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"
)

// Defaults of a Transport whose fields are left zero, and of New.
const (
	DefaultMaxRetries    = 3
	DefaultMaxRetryAfter = 60 * time.Second
	DefaultDrainBytes    = 16 << 10
)

// Transport is the retry loop. For each logical request it sends an
// attempt through Base, asks Strategy whether the outcome is worth
// retrying, asks Backoff (or the server's Retry-After) how long to wait,
// asks Budget whether the host can afford another attempt, and tries
// again, up to MaxRetries times.
//
// Transport never modifies the caller's request. A request with a body is
// retried only if the body can be replayed through GetBody (BodyCache,
// above it in the stack New builds, arranges that). A discarded response is
// drained (up to MaxDrainBytes) and closed, so its connection returns to
// the pool; when retries run out, the last response is returned unchanged.
//
// A Transport nested inside another saferetry retry layer passes requests
// through without retrying: retries at several layers multiply load.
//
// The zero value is usable: default retries, backoff, strategy and Retry-
// After cap, no budget, through a pooled transport of its own. Its fields
// must not change once it is in use. Safe for concurrent use.
type Transport struct {
	// Base sends each attempt. Nil means a pooled transport from
	// go-cleanhttp, created on first use (never http.DefaultTransport).
	Base http.RoundTripper
	// MaxRetries is the number of retries after the first attempt. Zero
	// means DefaultMaxRetries; a negative value disables retries.
	MaxRetries int
	// Backoff computes waits. Nil means Exponential with
	// DefaultInitialBackoff, DefaultMaxBackoff and FullJitter.
	Backoff Backoff
	// Strategy classifies outcomes. Nil means DefaultStrategy.
	Strategy Strategy
	// Budget limits retries per host; nil means no budget (New installs
	// a default one).
	Budget *Budget
	// MaxRetryAfter is the longest Retry-After the loop waits for; a
	// response asking for more is returned at once. Zero means
	// DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// AttemptTimeout bounds each attempt until its response headers
	// arrive; reading the body is not limited. Zero means no bound.
	AttemptTimeout time.Duration
	// MaxDrainBytes is how much of a discarded response body is read so
	// its connection can be reused. Zero means DefaultDrainBytes.
	MaxDrainBytes int64
	// KeyHeader is an extra header name that marks a request as keyed,
	// besides Idempotency-Key and X-Idempotency-Key.
	KeyHeader string
	// Logger receives one record per retry and per retry refused. Nil
	// means silent.
	Logger *slog.Logger
	// OnRetry, if set, is called with the same information, for metrics.
	// It runs on the request's goroutine and must not block.
	OnRetry func(RetryEvent)

	base lazyBase
}

var _ http.RoundTripper = (*Transport)(nil)

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.base.resolve(t.Base)
	ctx := req.Context()
	if req.URL == nil || runInProgress(ctx) {
		// Nothing to retry, or an outer saferetry layer already retries
		// this request: retrying here too would multiply attempts.
		return base.RoundTrip(req)
	}
	run := retryRun{
		t:        t,
		base:     base,
		req:      req,
		ctx:      ctx,
		keyed:    hasKey(req.Header, t.KeyHeader),
		strategy: t.strategy(),
	}
	resp, err := run.loop()
	if run.rec != nil {
		run.rec.running.Store(false)
	}
	return resp, err
}

// CloseIdleConnections forwards to the base transport.
func (t *Transport) CloseIdleConnections() {
	closeIdleConnections(t.base.resolve(t.Base))
}

func (t *Transport) maxRetries() int {
	switch {
	case t.MaxRetries < 0:
		return 0
	case t.MaxRetries == 0:
		return DefaultMaxRetries
	}
	return t.MaxRetries
}

func (t *Transport) backoff() Backoff {
	if t.Backoff == nil {
		return Exponential{Initial: DefaultInitialBackoff, Max: DefaultMaxBackoff}
	}
	return t.Backoff
}

func (t *Transport) strategy() Strategy {
	if t.Strategy == nil {
		return DefaultStrategy
	}
	return t.Strategy
}

func (t *Transport) maxRetryAfter() time.Duration {
	if t.MaxRetryAfter <= 0 {
		return DefaultMaxRetryAfter
	}
	return t.MaxRetryAfter
}

func (t *Transport) drainBytes() int64 {
	if t.MaxDrainBytes <= 0 {
		return DefaultDrainBytes
	}
	return t.MaxDrainBytes
}

// retryRun is the state of one logical request. It lives on the stack of
// RoundTrip; its fields are set once per attempt.
type retryRun struct {
	t        *Transport
	base     http.RoundTripper
	req      *http.Request // the caller's request, never modified
	ctx      context.Context
	keyed    bool
	strategy Strategy

	rec    *runRecord // set once the record travels in a context
	runCtx context.Context
	probe  *sendProbe   // set for requests only "never sent" makes retryable
	wait   waitSchedule // backoff position, restarted by Retry-After
}

func (r *retryRun) loop() (*http.Response, error) {
	t, req := r.t, r.req
	r.prepare()
	host := req.URL.Host
	t.Budget.deposit(host)
	maxRetries := t.maxRetries()
	areq := r.firstRequest()
	for n := 1; ; n++ {
		if r.probe != nil {
			r.probe.reset()
		}
		resp, err := send(r.base, areq, t.AttemptTimeout)
		if err != nil && r.ctx.Err() != nil {
			// The caller gave up: nothing to classify, report or retry.
			return nil, r.canceled(n, err)
		}
		t.Budget.record(host, !overloaded(resp, err))
		a := Attempt{Request: areq, Response: resp, Err: err, Number: n, Keyed: r.keyed}
		if r.probe != nil && err != nil {
			a.NeverSent = r.probe.neverSent()
		}
		switch r.strategy.Classify(a) {
		case Done:
			return r.finish(a, StopNone)
		case Fatal:
			return r.finish(a, r.refuse(a, StopNotRetryable))
		}
		if r.ctx.Err() != nil {
			discard(resp, t.drainBytes())
			return nil, r.canceled(n, nil)
		}
		if n > maxRetries {
			return r.finish(a, r.refuse(a, StopMaxRetries))
		}
		delay, stop := r.wait.next(r.ctx, t, resp)
		if stop != StopNone {
			return r.finish(a, r.refuse(a, stop))
		}
		if !r.mayReplayBody() {
			return r.finish(a, r.refuse(a, StopBodyNotReplayable))
		}
		if !t.Budget.withdraw(host) {
			return r.finish(a, r.refuse(a, StopBudget))
		}
		// Only now, the retry decided, is the body touched: a new replay
		// can end the previous attempt's write loop, and with it the
		// connection the response being handed back is read from.
		body, ok := r.nextBody()
		if !ok {
			t.Budget.refund(host)
			return r.finish(a, r.refuse(a, StopBodyNotReplayable))
		}
		t.report(r.ctx, a, delay, r.wait.serverDirected, StopNone)
		discard(resp, t.drainBytes())
		if !sleep(r.ctx, delay) {
			closeBody(body)
			t.Budget.refund(host)
			return nil, r.canceled(n, nil)
		}
		areq = r.retryRequest(body, n+1)
	}
}

// prepare decides what the run must observe before the first attempt. A
// request that is neither idempotent nor keyed may be retried only with
// proof it was never sent, so it is traced. A base other than a plain
// *http.Transport might contain another saferetry layer, so the request
// is marked for it.
func (r *retryRun) prepare() {
	if !r.keyed && !isIdempotent(r.req.Method) {
		r.probe = newSendProbe()
		r.attachRecord()
		r.runCtx = httptrace.WithClientTrace(r.runCtx, &r.probe.trace)
		return
	}
	if _, plain := r.base.(*http.Transport); !plain {
		r.attachRecord()
	}
}

func (r *retryRun) attachRecord() {
	if r.rec == nil {
		r.runCtx, r.rec = withRunRecord(r.ctx)
	}
}

// firstRequest is the caller's request itself when nothing needs to
// travel in its context: the happy path allocates nothing here.
func (r *retryRun) firstRequest() *http.Request {
	if r.runCtx == nil {
		return r.req
	}
	return r.req.WithContext(r.runCtx)
}

// retryRequest is a shallow copy of the caller's request for attempt n,
// with the replayed body and the run's context.
func (r *retryRun) retryRequest(body io.ReadCloser, n int) *http.Request {
	r.attachRecord()
	r.rec.attempts = n
	next := r.req.WithContext(r.runCtx)
	if body != nil {
		next.Body = body
	}
	return next
}

// mayReplayBody reports whether the request has no body or one it can
// ask for again, without asking.
func (r *retryRun) mayReplayBody() bool {
	return !hasBody(r.req) || r.req.GetBody != nil
}

// nextBody returns a fresh copy of the body for the next attempt; ok is
// false when the request has a body that cannot be replayed.
func (r *retryRun) nextBody() (body io.ReadCloser, ok bool) {
	req := r.req
	if !hasBody(req) {
		return nil, true
	}
	if req.GetBody == nil {
		return nil, false
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, false
	}
	return body, true
}

// refuse reports a retry the loop will not make, and passes stop on.
func (r *retryRun) refuse(a Attempt, stop StopReason) StopReason {
	r.t.report(r.ctx, a, 0, false, stop)
	return stop
}

// finish hands the attempt's outcome back, recording how the run ended.
func (r *retryRun) finish(a Attempt, stop StopReason) (*http.Response, error) {
	if a.Response != nil {
		if a.Number > 1 || stop != StopNone {
			r.record(a, stop)
		}
		return a.Response, nil
	}
	if r.rec != nil {
		r.rec.attempts, r.rec.stopped = a.Number, stop
	}
	if a.Number == 1 && (stop == StopNone || stop == StopNotRetryable || stop == StopMaxRetries) {
		// Final on the first attempt: the error is the base transport's own.
		return nil, a.Err
	}
	return nil, &RetryError{Attempts: a.Number, Reason: stop, Err: a.Err}
}

// record stores the run's outcome where Attempts and Stopped find it: in
// the context of the response's request.
func (r *retryRun) record(a Attempt, stop StopReason) {
	resp := a.Response
	if resp.Request == nil {
		resp.Request = a.Request
	}
	if r.rec == nil || runRecordFrom(resp.Request.Context()) != r.rec {
		// The response does not lead back to the run's record (the base
		// sent a request of its own): give it one.
		if r.rec != nil {
			r.rec.running.Store(false)
		}
		ctx, rec := withRunRecord(resp.Request.Context())
		resp.Request = resp.Request.WithContext(ctx)
		r.rec = rec
	}
	r.rec.attempts, r.rec.stopped, r.rec.resp = a.Number, stop, resp
}

// canceled is the error for a run whose caller's context ended. On the
// first attempt that is the base transport's own error (net/http reports
// the context's cause); later, a RetryError wrapping the cause.
func (r *retryRun) canceled(attempts int, attemptErr error) error {
	if r.rec != nil {
		r.rec.attempts, r.rec.stopped = attempts, StopCanceled
	}
	if attempts == 1 && attemptErr != nil {
		return attemptErr
	}
	return &RetryError{Attempts: attempts, Reason: StopCanceled, Err: context.Cause(r.ctx)}
}

// sendProbe looks for positive evidence that an attempt never reached the
// server: net/http asked for a connection (GetConn) and never got one
// (GotConn), so no byte of the request was written. Both hooks run on
// the goroutine that calls RoundTrip, before any write, over HTTP/1 and
// HTTP/2 alike. The absence of an event proves nothing by itself: a base
// that fires no hook at all leaves gotConnAsked false, and the attempt
// then counts as possibly sent. (WroteHeaders would not do: over HTTP/2
// it fires only after the header write returns, so a canceled attempt
// can have reached the server without it.)
type sendProbe struct {
	asked atomic.Bool // GetConn fired: the base reports to this trace
	got   atomic.Bool // GotConn fired: a connection could carry the request
	trace httptrace.ClientTrace
}

func newSendProbe() *sendProbe {
	p := &sendProbe{}
	p.trace.GetConn = func(string) { p.asked.Store(true) }
	p.trace.GotConn = func(httptrace.GotConnInfo) { p.got.Store(true) }
	return p
}

// reset prepares the probe for another attempt.
func (p *sendProbe) reset() {
	p.asked.Store(false)
	p.got.Store(false)
}

// neverSent reports whether the attempt provably wrote nothing.
func (p *sendProbe) neverSent() bool { return p.asked.Load() && !p.got.Load() }

// drainTime bounds how long a discarded response is read for. Draining
// saves a connection (a round trip, perhaps a TLS handshake); a body that
// has not arrived by then is not worth waiting for, and a body that
// stalls must not hold the retry, or the caller, at all.
const drainTime = 100 * time.Millisecond

// discard drains up to limit bytes of a response that will not be handed
// back, for at most drainTime, and closes it, so its connection can be
// reused. A body known to be longer than limit is closed at once: its
// connection cannot be reused anyway.
func discard(resp *http.Response, limit int64) {
	if resp == nil || resp.Body == nil {
		return
	}
	body := resp.Body
	if resp.ContentLength <= limit {
		// Closing a response body unblocks a read in progress (net/http
		// documents that for its bodies), which ends a stalled drain.
		stop := time.AfterFunc(drainTime, func() { _ = body.Close() })
		_, _ = io.CopyN(io.Discard, body, limit)
		stop.Stop()
	}
	_ = body.Close()
}

func hasBody(req *http.Request) bool { return req.Body != nil && req.Body != http.NoBody }

func closeBody(body io.ReadCloser) {
	if body != nil {
		_ = body.Close()
	}
}
