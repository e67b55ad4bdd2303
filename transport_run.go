package saferetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/saferetry/saferetry/internal/bodyreplay"
)

// retryRun is the state of one logical request. It lives on the stack of
// RoundTrip; its fields are set once per attempt.
type retryRun struct {
	t     *Transport // the transport, or its copy with the request's overrides
	base  http.RoundTripper
	req   *http.Request // the caller's request, never modified
	ctx   context.Context
	keyed bool
	sent  int // attempts sent so far

	rec    *runRecord // set once the record travels in a context
	runCtx context.Context
	probe  *sendProbe   // set for requests only "never sent" makes retryable
	wait   waitSchedule // backoff position, restarted by Retry-After
}

func (r *retryRun) loop() (*http.Response, error) {
	t, req := r.t, r.req
	r.prepare()
	host := req.URL.Host
	if !t.Budget.admit(host, t.Throttle) {
		closeBody(req.Body)
		return nil, ErrThrottled
	}
	t.Budget.deposit(host)
	strategy, maxRetries := t.strategy(), t.maxRetries()
	areq := r.firstRequest()
	for n := 1; ; n++ {
		r.sent = n
		a, canceled := r.attempt(areq, n)
		if canceled {
			return nil, r.canceled(a.Err)
		}
		switch strategy.Classify(a) {
		case Done:
			return r.finish(a, StopNone)
		case Fatal:
			return r.finish(a, r.refuse(a, StopNotRetryable))
		}
		if r.ctx.Err() != nil {
			discard(a.Response)
			return nil, r.canceled(nil)
		}
		delay, body, stop := r.planRetry(a, n, maxRetries)
		if stop != StopNone {
			return r.finish(a, r.refuse(a, stop))
		}
		t.report(r.ctx, Event{Attempt: a, Delay: delay, ServerDirected: r.wait.serverDirected})
		discard(a.Response)
		bodyreplay.Retire(a.Request.Body) // the attempt is over: so is its upload
		if !sleep(r.ctx, delay) {
			closeBody(body)
			t.Budget.refund(host)
			return nil, r.canceled(nil)
		}
		if a.Response == nil && t.Budget.gated(host, failureKind(a, false)) {
			closeBody(body)
			t.Budget.refund(host)
			return r.finish(a, r.refuse(a, StopBudget))
		}
		areq = r.retryRequest(body)
	}
}

// planRetry decides whether a, which failed after n-1 retries, is
// retried: the retry limit, the wait, the body and the budget, in that
// order. It returns the wait and the body of the next attempt, or why
// there is none. The body is touched only once the retry is certain: the
// previous attempt's write loop may still be sending it to a server that
// answered early, and the response handed back, if there is no retry, is
// read from that connection.
func (r *retryRun) planRetry(a Attempt, n, maxRetries int) (time.Duration, io.ReadCloser, StopReason) {
	t, host := r.t, r.req.URL.Host
	r.learnRateLimit(a)
	if n > maxRetries {
		return 0, nil, StopMaxRetries
	}
	delay, stop := r.wait.next(r.ctx, a.Response, t.backoff(), t.maxRetryAfter())
	if stop != StopNone {
		return 0, nil, stop
	}
	if !r.mayReplayBody() {
		return 0, nil, StopBodyNotReplayable
	}
	if !t.Budget.withdraw(host, failureKind(a, r.wait.serverDirected)) {
		return 0, nil, StopBudget
	}
	if !t.Budget.admit(host, t.Throttle) {
		t.Budget.refund(host)
		return 0, nil, StopThrottled
	}
	body, ok := r.nextBody()
	if !ok {
		t.Budget.refund(host)
		return 0, nil, StopBodyNotReplayable
	}
	return delay, body, StopNone
}

// attempt sends attempt n and describes its outcome. canceled reports
// that the caller gave up meanwhile: there is nothing to classify, report
// or retry, and a.Err is the attempt's own error.
func (r *retryRun) attempt(req *http.Request, n int) (a Attempt, canceled bool) {
	if r.probe != nil {
		r.probe.reset()
	}
	resp, err := send(r.base, req, r.attemptTimeout(n))
	a = Attempt{Request: req, Response: resp, Err: err, Number: n, Keyed: r.keyed}
	if err != nil && r.ctx.Err() != nil {
		return a, true
	}
	r.t.Budget.record(r.req.URL.Host, !overloaded(a))
	if r.probe != nil && err != nil {
		a.NeverSent = r.probe.neverSent()
	}
	return a, false
}

// attemptTimeout returns attempt n's bound until its response headers.
// The first attempt gets AttemptTimeout as configured, so a slow call that
// works with one attempt keeps working. A later attempt, when the time
// left before the deadline is less than the attempts that may still
// follow would need, gets an equal share of it, so the last one is not
// starved; but never less than minAttemptTime, the floor the waits keep
// too.
func (r *retryRun) attemptTimeout(n int) time.Duration {
	d := r.t.AttemptTimeout
	deadline, ok := r.ctx.Deadline()
	if d <= 0 || n == 1 || !ok {
		return d
	}
	left := time.Until(deadline)
	attempts := time.Duration(max(r.t.maxRetries()-n+2, 1)) // this one and those that may follow
	if share := left / attempts; share < d {
		d = max(share, minAttemptTime)
	}
	return d
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

// retryRequest is a shallow copy of the caller's request for a retry,
// with the replayed body and the run's context.
func (r *retryRun) retryRequest(body io.ReadCloser) *http.Request {
	r.attachRecord()
	return r.attemptRequest(r.runCtx, body, r.sent+1)
}

// attemptRequest is a shallow copy of the caller's request for attempt
// n > 1, with ctx, body (if any) and, when the transport names one, the
// attempt header: an overloaded server can shed retries first.
func (r *retryRun) attemptRequest(ctx context.Context, body io.ReadCloser, n int) *http.Request {
	next := r.req.WithContext(ctx)
	if body != nil {
		next.Body = body
	}
	if name := r.t.AttemptHeader; name != "" {
		next.Header = r.req.Header.Clone()
		if next.Header == nil {
			next.Header = make(http.Header, 1)
		}
		next.Header[http.CanonicalHeaderKey(name)] = []string{strconv.Itoa(n)}
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
	r.t.report(r.ctx, Event{Attempt: a, Stopped: stop})
	return stop
}

// finish hands the attempt's outcome back, recording how the run ended.
func (r *retryRun) finish(a Attempt, stop StopReason) (*http.Response, error) {
	if a.Response != nil {
		if r.sent > 1 || stop != StopNone {
			r.record(a.Response, a.Request, stop)
		}
		return a.Response, nil
	}
	if r.sent == 1 && (stop == StopNone || stop == StopNotRetryable || stop == StopMaxRetries) {
		// Final on the first attempt: the error is the base transport's own.
		return nil, a.Err
	}
	return nil, &RetryError{Attempts: r.sent, Reason: stop, Err: a.Err}
}

// record stores the run's outcome where Attempts and Stopped find it: in
// the context of the response's request. It is the one place the record
// is written.
func (r *retryRun) record(resp *http.Response, sent *http.Request, stop StopReason) {
	if resp.Request == nil {
		resp.Request = sent
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
	r.rec.attempts, r.rec.stopped, r.rec.resp = r.sent, stop, resp
}

// canceled is the error for a run whose caller's context ended. On the
// first attempt that is the base transport's own error (net/http reports
// the context's cause); later, a RetryError wrapping the cause.
func (r *retryRun) canceled(attemptErr error) error {
	if r.sent == 1 && attemptErr != nil {
		return attemptErr
	}
	return &RetryError{Attempts: r.sent, Reason: StopCanceled, Err: context.Cause(r.ctx)}
}

// sendProbe looks for positive evidence that an attempt never reached the
// server: net/http asked for a connection (GetConn) and never got one
// (GotConn), so no byte of the request was written. Both hooks run on
// the goroutine that calls RoundTrip, before any write, over HTTP/1 and
// HTTP/2 alike. The absence of an event proves nothing by itself: a base
// that fires no hook at all leaves asked false, and the attempt then
// counts as possibly sent. (WroteHeaders would not do: over HTTP/2 it
// fires only after the header write returns, so a canceled attempt can
// have reached the server without it.)
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
