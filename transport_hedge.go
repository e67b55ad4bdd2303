package saferetry

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/saferetry/saferetry/internal/bodyreplay"
	"github.com/saferetry/saferetry/internal/overload"
	"github.com/saferetry/saferetry/internal/serverwait"
)

// maxHedgesAllowed bounds WithHedge's maxHedges: a hedge multiplies the
// load of the requests that are slow, and slow is often overloaded.
const maxHedgesAllowed = 5

// hedging reports whether this run sends hedges: hedging is configured,
// and the request may be sent twice at once. Only idempotent or keyed
// requests qualify (every hedge of a keyed request carries the same key,
// so a server that deduplicates applies it once), and only if each hedge
// can read its own replay of the body while the others still send theirs.
func (r *retryRun) hedging() bool {
	if r.t.MaxHedges <= 0 || (r.t.HedgeDelay <= 0 && r.t.HedgeQuantile <= 0) {
		return false
	}
	if !r.keyed && !isIdempotent(r.req.Method) {
		return false
	}
	return !hasBody(r.req) || (r.req.GetBody != nil && bodyreplay.Shareable(r.req.Body))
}

// attemptResult is what one attempt's goroutine hands back.
type attemptResult struct {
	a       Attempt
	cancel  context.CancelFunc // ends the attempt's context
	elapsed time.Duration      // from the send to its return
}

// hedgedRun is the state of a run that may have several attempts in
// flight at once. It is used by one goroutine, the run's; the attempts'
// goroutines only send on results.
type hedgedRun struct {
	retryRun   // a copy: the plain loop's run stays on its caller's stack
	results    chan attemptResult
	inFlight   map[int]context.CancelFunc // attempt number -> its cancel
	hedgesLeft int
	delay      time.Duration // between hedges; 0: no hedge for this run
	timer      *time.Timer   // nil when delay is 0
	retries    int           // sequential retries made (after every attempt in flight failed)
	last       Attempt       // the latest failure kept to hand back, if all fail
	haveLast   bool
}

// hedgedLoop runs a logical request with hedging. It launches the first
// attempt; each time HedgeDelay passes without an answer (or an attempt
// fails while others are still in flight, as gRPC's hedging does), it
// launches another, up to MaxHedges, each withdrawn from the budget. The
// first answer the strategy would not retry wins; the others are
// canceled, drained and closed before the run returns, so no goroutine
// outlives it. When every attempt in flight has failed, the run retries as
// the plain loop does.
func hedgedLoop(run retryRun) (*http.Response, error) {
	h := &hedgedRun{
		retryRun:   run,
		results:    make(chan attemptResult, run.t.MaxHedges+1),
		inFlight:   make(map[int]context.CancelFunc, run.t.MaxHedges+1),
		hedgesLeft: run.t.MaxHedges,
		delay:      run.hedgeDelay(),
	}
	if h.delay > 0 {
		h.timer = time.NewTimer(h.delay)
		defer h.timer.Stop()
	} else {
		h.hedgesLeft = 0 // no delay known yet: the run only builds the host's history
	}
	h.attachRecord()
	defer func() { h.rec.running.Store(false) }() // h.rec may be replaced by then
	if !h.t.Budget.admit(h.req.URL.Host, h.t.Throttle) {
		closeBody(h.req.Body)
		return nil, ErrThrottled
	}
	h.t.Budget.deposit(h.req.URL.Host)
	h.launch(h.req.Body, false)
	for {
		select {
		case res := <-h.results:
			if resp, err, done := h.settle(res); done {
				return resp, err
			}
		case <-h.timerC():
			h.hedge()
		case <-h.ctx.Done():
			h.abandon(nil)
			return nil, h.canceled(nil)
		}
	}
}

// launch sends the next attempt with body on a goroutine of its own.
func (h *hedgedRun) launch(body io.ReadCloser, hedge bool) {
	h.sent++
	n := h.sent
	ctx, cancel := context.WithCancel(h.runCtx)
	req := h.req.WithContext(ctx)
	if n > 1 {
		req = h.attemptRequest(ctx, body, n)
	}
	h.inFlight[n] = cancel
	if hedge {
		h.t.report(h.ctx, Event{Attempt: Attempt{Request: req, Number: n, Keyed: h.keyed}, Hedge: true})
	}
	go func() {
		start := time.Now()
		resp, err := send(h.base, req, h.t.AttemptTimeout)
		h.results <- attemptResult{
			a:       Attempt{Request: req, Response: resp, Err: err, Number: n, Keyed: h.keyed},
			cancel:  cancel,
			elapsed: time.Since(start),
		}
	}()
	if h.hedgesLeft > 0 {
		h.timer.Reset(h.delay)
	}
}

// hedge launches a hedge if one is left and the budget allows it. A budget
// that refuses stops further hedges but cancels nothing in flight.
func (h *hedgedRun) hedge() {
	if h.hedgesLeft <= 0 {
		return
	}
	host := h.req.URL.Host
	if h.t.RateLimitHold && h.t.Budget.heldFor(host) > 0 {
		// The host's quota is exhausted until a reset, learnt since
		// this run began: a hedge would be refused too.
		h.hedgesLeft = 0
		return
	}
	if !h.t.Budget.withdraw(host, overload.Answered) {
		h.hedgesLeft = 0
		return
	}
	if !h.t.Budget.admit(host, h.t.Throttle) {
		h.t.Budget.refund(host)
		h.hedgesLeft = 0
		return
	}
	body, ok := h.nextBody()
	if !ok {
		h.t.Budget.refund(host)
		h.hedgesLeft = 0
		return
	}
	h.hedgesLeft--
	h.launch(body, true)
}

// settle handles one attempt's outcome; done reports that the run is over
// and resp, err are its result.
func (h *hedgedRun) settle(res attemptResult) (resp *http.Response, err error, done bool) {
	a := res.a
	delete(h.inFlight, a.Number)
	if h.ctx.Err() != nil {
		res.cancel()
		discard(a.Response)
		h.abandon(nil)
		return nil, h.canceled(nil), true
	}
	h.t.Budget.record(h.req.URL.Host, !overloaded(a))
	if a.Response != nil {
		h.observe(res.elapsed)
	}
	verdict := h.t.strategy().Classify(a)
	if verdict == Done || verdict == Fatal {
		h.abandon(&a)
		a.Response = keepAliveUntilClosed(a.Response, res.cancel)
		stop := StopNone
		if verdict == Fatal {
			stop = h.refuse(a, StopNotRetryable)
		}
		resp, err = h.finish(a, stop)
		return resp, err, true
	}
	if len(h.inFlight) > 0 {
		h.learnRateLimit(a)
		h.keepFailure(a, res.cancel)
		if toldToWait(a) {
			// The server said the request cannot succeed yet (a 409:
			// its key is still being processed; a 429; a wait
			// announced): any further hedge would only meet the same
			// answer. The run waits for the attempts in flight.
			h.hedgesLeft = 0
			return nil, nil, false
		}
		// A failure while others are in flight sends the next hedge at
		// once (gRPC A6).
		h.hedge()
		return nil, nil, false
	}
	return h.retryAfterAllFailed(a, res.cancel)
}

// keepFailure keeps a as the failure to hand back if every other attempt
// fails too, discarding the one kept before.
func (h *hedgedRun) keepFailure(a Attempt, cancel context.CancelFunc) {
	if h.haveLast {
		discard(h.last.Response)
	}
	a.Response = keepAliveUntilClosed(a.Response, cancel)
	h.last, h.haveLast = a, true
}

// retryAfterAllFailed handles a failure that leaves no attempt in flight:
// the run retries as the plain loop would, or hands the failure back.
func (h *hedgedRun) retryAfterAllFailed(a Attempt, cancel context.CancelFunc) (*http.Response, error, bool) {
	if h.haveLast {
		discard(h.last.Response)
		h.haveLast = false
	}
	a.Response = keepAliveUntilClosed(a.Response, cancel)
	h.retries++
	delay, body, stop := h.planRetry(a, h.retries, h.t.maxRetries())
	if stop != StopNone {
		resp, err := h.finish(a, h.refuse(a, stop))
		return resp, err, true
	}
	h.t.report(h.ctx, Event{Attempt: a, Delay: delay, ServerDirected: h.wait.serverDirected})
	discard(a.Response)
	if !sleep(h.ctx, delay) {
		closeBody(body)
		h.t.Budget.refund(h.req.URL.Host)
		return nil, h.canceled(nil), true
	}
	if a.Response == nil && h.t.Budget.gated(h.req.URL.Host, failureKind(a, false)) {
		closeBody(body)
		h.t.Budget.refund(h.req.URL.Host)
		resp, err := h.finish(a, h.refuse(a, StopBudget))
		return resp, err, true
	}
	h.launch(body, false)
	return nil, nil, false
}

// abandon cancels every attempt still in flight, waits for each to return,
// and drains and closes what they got, so that no goroutine outlives the
// run. winner, if not nil, is the attempt whose response is handed back.
func (h *hedgedRun) abandon(winner *Attempt) {
	for _, cancel := range h.inFlight {
		cancel()
	}
	for i := len(h.inFlight); i > 0; i-- {
		res := <-h.results
		if winner != nil {
			h.observe(res.elapsed) // a lower bound: it was canceled
		}
		discard(res.a.Response)
		res.cancel()
	}
	clear(h.inFlight)
	if h.haveLast {
		discard(h.last.Response)
		h.haveLast = false
	}
}

// hedgeDelay returns how long an attempt may go unanswered before a hedge
// is sent: the host's HedgeQuantile when it is set and known, HedgeDelay
// otherwise; 0 when neither is known.
func (r *retryRun) hedgeDelay() time.Duration {
	if q := r.t.HedgeQuantile; q > 0 && r.t.latency != nil {
		if d, ok := r.t.latency.Quantile(r.req.URL.Host, q); ok {
			return max(d, time.Microsecond)
		}
	}
	return r.t.HedgeDelay
}

// observe adds an attempt's time to the host's history, when the run
// hedges on a quantile of it.
func (h *hedgedRun) observe(d time.Duration) {
	if h.t.HedgeQuantile > 0 && h.t.latency != nil {
		h.t.latency.Observe(h.req.URL.Host, d, time.Now())
	}
}

// timerC is the hedge timer's channel, or nil (never ready) without one.
func (h *hedgedRun) timerC() <-chan time.Time {
	if h.timer == nil {
		return nil
	}
	return h.timer.C
}

// keepAliveUntilClosed ties an attempt's context to its response body: it
// is released when the body is closed or read to the end, so the winner of
// a hedge can be read for as long as the caller likes.
func keepAliveUntilClosed(resp *http.Response, cancel context.CancelFunc) *http.Response {
	if resp == nil {
		cancel()
		return nil
	}
	if resp.Body == nil {
		cancel()
		return resp
	}
	resp.Body = releaseOnDone(resp.Body, cancel)
	return resp
}

// toldToWait reports that a's answer says the request cannot succeed yet:
// a status by which the server asks to be asked again later (409, 429, a
// rate-limit 403, ...) or any announced wait (a 503's Retry-After).
func toldToWait(a Attempt) bool {
	if a.Response == nil {
		return false
	}
	return askedToComeBack(a.Response) || serverwait.Parse(a.Response.Header, time.Now()).Announced
}
