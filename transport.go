package saferetry

import (
	"log/slog"

	"github.com/saferetry/saferetry/internal/latency"
	"net/http"
	"time"
)

// Defaults of a Transport whose fields are left zero.
const (
	defaultMaxRetries    = 3
	defaultMaxRetryAfter = 60 * time.Second
	maxDrainBytes        = 16 << 10 // how much of a discarded body is read to save its connection
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
// drained (at most 16 KiB, for at most 100ms) and closed, so its connection
// returns to the pool; when retries run out, the last response is returned
// unchanged.
//
// A Transport nested inside another saferetry retry layer passes requests
// through without retrying: retries at several layers multiply load.
//
// The zero value is usable: 3 retries, exponential backoff from 100ms to
// 10s with full jitter, DefaultStrategy, Retry-After honoured up to 60s, no
// budget, through a pooled transport shared by the layers whose Base is
// nil. Its fields must not change once it is in use. Safe for concurrent
// use.
type Transport struct {
	// Base sends each attempt. Nil means a pooled transport from
	// go-cleanhttp shared by this package's layers, created on first use
	// (never http.DefaultTransport).
	Base http.RoundTripper
	// MaxRetries is the number of retries after the first attempt. Zero
	// means 3; a negative value disables retries.
	MaxRetries int
	// Backoff computes waits. Nil means Exponential from 100ms to 10s
	// with FullJitter.
	Backoff Backoff
	// Strategy classifies outcomes. Nil means DefaultStrategy.
	Strategy Strategy
	// Budget limits retries per host; nil means no budget (New installs
	// one).
	Budget *Budget
	// MaxRetryAfter is the longest Retry-After the loop waits for; a
	// response asking for more is returned at once. Zero means 60s.
	MaxRetryAfter time.Duration
	// AttemptTimeout bounds each attempt until its response headers
	// arrive; reading the body is not limited. Zero means no bound.
	AttemptTimeout time.Duration
	// KeyHeader is an extra header name that marks a request as keyed,
	// besides Idempotency-Key and X-Idempotency-Key.
	KeyHeader string
	// Logger receives one record per retry and per retry refused. Nil
	// means silent.
	Logger *slog.Logger
	// Hook, if set, receives the same events, for metrics and tracing.
	// It runs on the request's goroutine and must not block.
	Hook func(Event)
	// Throttle is the K of adaptive throttling (WithThrottle): attempts
	// to a host are refused locally with probability max(0, (requests -
	// K*accepts) / (requests + 1)) over its recent attempts, counted by
	// Budget. Zero, or a nil Budget, means no throttling.
	Throttle float64
	// AttemptHeader, if set, names a header sent on every attempt after
	// the first with the attempt's number (2 for the first retry), so an
	// overloaded server can shed retries first. Empty sends none (New
	// sets Retry-Attempt).
	AttemptHeader string
	// HedgeDelay, HedgeQuantile and MaxHedges configure hedging
	// (WithHedge, WithHedgeQuantile): after a delay without an answer,
	// another attempt is sent while the first is still in flight, up to
	// MaxHedges. The delay is the HedgeQuantile of the host's recent
	// times to response headers when it is set and the host has enough
	// history (New keeps that history; a Transport made without New has
	// none), and HedgeDelay otherwise. Zero MaxHedges means no hedging.
	HedgeDelay    time.Duration
	HedgeQuantile float64
	MaxHedges     int
	// RateLimitHold holds a request's first attempt to a host that
	// announced its quota exhausted until a reset, until then, and fails
	// at once with ErrRateLimited a request that cannot wait that long
	// (WithRateLimitHold). The state is kept in Budget: with a nil
	// Budget nothing is held. False means off.
	RateLimitHold bool

	latency *latency.Table // the hosts' recent latencies, for HedgeQuantile
}

var _ http.RoundTripper = (*Transport)(nil)

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := baseOr(t.Base)
	ctx := req.Context()
	if req.URL == nil || runInProgress(ctx) {
		// Nothing to retry, or an outer saferetry layer already retries
		// this request: retrying here too would multiply attempts.
		return base.RoundTrip(req)
	}
	run := retryRun{
		t:    t.withOverrides(ctx),
		base: base,
		req:  req,
		ctx:  ctx,
	}
	run.keyed = keyOf(req.Header, run.t.KeyHeader) != ""
	if err := run.holdFirst(); err != nil {
		closeBody(req.Body)
		return nil, err
	}
	if run.hedging() {
		return hedgedLoop(run)
	}
	resp, err := run.loop()
	if run.rec != nil {
		run.rec.running.Store(false)
	}
	return resp, err
}

// CloseIdleConnections forwards to the base transport.
func (t *Transport) CloseIdleConnections() {
	closeIdleConnections(baseOr(t.Base))
}

func (t *Transport) maxRetries() int {
	switch {
	case t.MaxRetries < 0:
		return 0
	case t.MaxRetries == 0:
		return defaultMaxRetries
	}
	return t.MaxRetries
}

func (t *Transport) backoff() Backoff {
	if t.Backoff == nil {
		return defaultBackoff
	}
	return t.Backoff
}

func (t *Transport) strategy() Strategy {
	if t.Strategy == nil {
		return defaultStrategy
	}
	return t.Strategy
}

// defaultStrategy is DefaultStrategy made an interface value once, so
// that a Transport without a Strategy does not box it per request.
var defaultStrategy Strategy = DefaultStrategy

func (t *Transport) maxRetryAfter() time.Duration {
	if t.MaxRetryAfter <= 0 {
		return defaultMaxRetryAfter
	}
	return t.MaxRetryAfter
}
