package storm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/saferetry/saferetry"
)

// This file is the rate-limit scenario: an upstream that refuses requests
// over a quota (429, with the time the quota comes back), and clients whose
// demand exceeds it for a while. It asks one question: should a client that
// was told "nothing left until T" hold its next first attempts to that host
// until T, instead of sending requests bound to fail? It compares saferetry
// as it is (a 429 is retried after the announced wait, other first attempts
// are sent as usual) with variants that hold.

// QuotaKind is how a rate-limited server counts.
type QuotaKind int

const (
	// FixedWindow: Limit requests per Window, windows back to back (GitHub:
	// 5000 an hour per token; most "N per minute" APIs). Every answer
	// carries the remaining count and the window's end as a Unix time in
	// whole seconds (X-RateLimit-Remaining, X-RateLimit-Reset); the client
	// measures the reset against the response's Date, which has whole
	// seconds too, so it never comes back early.
	FixedWindow QuotaKind = iota
	// TokenBucket: Limit tokens, refilled continuously at Limit per Window,
	// one per request (OpenAI's requests per minute). Every answer carries
	// the remaining count and the time until the bucket is full again
	// (x-ratelimit-remaining-requests, x-ratelimit-reset-requests: "the
	// time until the rate limit resets to its initial state"); a 429 also
	// carries retry-after-ms, the time until one token is back.
	// internal/serverwait takes the longest wait announced: the time to
	// full.
	TokenBucket
)

// Quota is a server's limit for one key.
type Quota struct {
	Kind   QuotaKind
	Limit  int
	Window time.Duration
}

func (q Quota) String() string {
	kind := "fixed window"
	if q.Kind == TokenBucket {
		kind = "token bucket"
	}
	return fmt.Sprintf("%d/%v %s", q.Limit, q.Window, kind)
}

// HoldMode is what a client does with a first attempt to a host that has
// announced it has nothing left until a reset.
type HoldMode int

const (
	// HoldNone sends it, as saferetry does today.
	HoldNone HoldMode = iota
	// HoldOnce waits until the reset (plus the upward jitter of a
	// Retry-After wait), then sends it, whatever was learnt meanwhile.
	HoldOnce
	// HoldRecheck waits until the reset (plus jitter), then looks again:
	// if a later reset was announced meanwhile (the quota ran out again),
	// it waits for that one too, as long as its whole hold stays within
	// the cap and the deadline.
	HoldRecheck
)

// HoldVariant is one client behaviour the scenario compares. In every
// variant that holds, a request whose hold would end past its deadline
// (less the 100ms an attempt needs) fails at once, unsent: the issue's
// rule, and saferetry's for every wait.
type HoldVariant struct {
	Name, Label string
	Mode        HoldMode
	// Remaining also learns "exhausted until T" from a successful answer
	// whose remaining count is 0 (the request that took the last unit),
	// not only from a 429.
	Remaining bool
	// RefuseOverCap fails, without sending, a first attempt whose hold
	// would exceed the cap; otherwise it is sent, and the server answers.
	// (A hold past the deadline always fails at once.)
	RefuseOverCap bool
	// Shortest holds until the shortest wait a 429 announces (a token
	// bucket's retry-after-ms, the time to one token) rather than the
	// longest (its time to full).
	Shortest bool
}

// HoldVariants are the behaviours compared, today's first. hold+refuse is
// the rule a library could adopt; the others show what each of its parts
// is worth.
var HoldVariants = []HoldVariant{
	{Name: "today", Label: "saferetry today: a 429 is retried after the announced wait; first attempts are sent"},
	{Name: "hold-once", Label: "first attempts held until the reset a 429 announced, then sent; one over the cap (60s) is sent at once", Mode: HoldOnce},
	{Name: "hold", Label: "as hold-once, but a held request looks again at the reset and holds on if a later one was announced", Mode: HoldRecheck},
	{Name: "hold+refuse", Label: "as hold, and a request whose hold would pass its deadline or the cap fails at once, unsent", Mode: HoldRecheck, RefuseOverCap: true},
	{Name: "+remaining", Label: "as hold+refuse, also learning from a success whose remaining count is 0", Mode: HoldRecheck, RefuseOverCap: true, Remaining: true},
	{Name: "+shortest", Label: "as hold+refuse, holding until the shortest wait a 429 announces, not the longest", Mode: HoldRecheck, RefuseOverCap: true, Shortest: true},
}

// RateLimitParams describe one rate-limit run.
type RateLimitParams struct {
	// Instances are the client processes, each a saferetry stack with the
	// defaults (3 retries, full-jitter backoff 100ms to 10s, a 60s cap on
	// server-directed waits, the default budget) and its own hold state.
	Instances int
	// SharedKey makes every instance use one API key, and so one quota;
	// otherwise each has its own.
	SharedKey bool
	Quota     Quota
	// Demand, logical requests per second from all instances together: Base
	// outside the surge, Surge from SurgeStart to SurgeEnd; arrivals stop
	// at End. Arrivals are a Poisson stream, each to an instance drawn at
	// random.
	Base, Surge          float64
	SurgeStart, SurgeEnd time.Duration
	End                  time.Duration
	Deadline             time.Duration // each logical request's context deadline; 0 for none
	Reject, Serve        time.Duration // time from sending to a 429, and to a success
	// MaxRetryAfter is the clients' cap on a server-directed wait, and so
	// on a hold (WithMaxRetryAfter); zero means the default, 60s.
	MaxRetryAfter time.Duration
	// OtherShare of the requests go to a second quota of the same host
	// (another resource: GitHub's search API beside its core API; another
	// model at OpenAI), limited by Other. The hold state is the host's:
	// Other's requests are held when the first quota ran out.
	OtherShare float64
	Other      Quota
	Seed       uint64
}

// The client's rules, saferetry's defaults.
const (
	rlMaxRetries    = 3
	rlMaxRetryAfter = 60 * time.Second       // WithMaxRetryAfter's default
	rlMinAttempt    = 100 * time.Millisecond // a wait leaving less before the deadline is not started
)

func (p RateLimitParams) maxRetryAfter() time.Duration {
	if p.MaxRetryAfter > 0 {
		return p.MaxRetryAfter
	}
	return rlMaxRetryAfter
}

// RateLimitResult is what one variant's run measured.
type RateLimitResult struct {
	Logical, Succeeded int64
	// SucceededIn1s and SucceededIn10s count the logical requests that
	// succeeded within 1s and 10s of their start.
	SucceededIn1s, SucceededIn10s int64
	Attempts, Rejected, Retries   int64 // attempts sent, answered 429, retries among them
	Refused                       int64 // logical requests failed locally: a hold past the deadline (or cap)
	Held                          int64 // logical requests whose first attempt was held
	latency, hold                 histogram
	// Other* count the second quota's requests alone.
	OtherLogical, OtherSucceeded int64
	otherLatency                 histogram
	// Rejects is the 429s per second, for the chart.
	Rejects []int64
}

// GoodputShare is the share of logical requests that succeeded.
func (r *RateLimitResult) GoodputShare() float64 { return frac(r.Succeeded, r.Logical) }

// In1s and In10s are the shares of logical requests that succeeded within
// 1s and 10s of their start.
func (r *RateLimitResult) In1s() float64  { return frac(r.SucceededIn1s, r.Logical) }
func (r *RateLimitResult) In10s() float64 { return frac(r.SucceededIn10s, r.Logical) }

// RefusedShare is the share of logical requests failed locally, unsent.
func (r *RateLimitResult) RefusedShare() float64 { return frac(r.Refused, r.Logical) }

// HeldShare is the share of logical requests whose first attempt was held.
func (r *RateLimitResult) HeldShare() float64 { return frac(r.Held, r.Logical) }

// RejectedPer100 is the 429s received per 100 logical requests.
func (r *RateLimitResult) RejectedPer100() float64 { return 100 * frac(r.Rejected, r.Logical) }

// AttemptsPerRequest is the attempts sent per logical request.
func (r *RateLimitResult) AttemptsPerRequest() float64 { return frac(r.Attempts, r.Logical) }

// Latency is the q-quantile of the successful requests' latencies.
func (r *RateLimitResult) Latency(q float64) time.Duration { return r.latency.quantile(q) }

// HoldQuantile is the q-quantile of the holds of held requests.
func (r *RateLimitResult) HoldQuantile(q float64) time.Duration { return r.hold.quantile(q) }

// OtherLatency is the q-quantile of the second quota's successful
// requests' latencies.
func (r *RateLimitResult) OtherLatency(q float64) time.Duration { return r.otherLatency.quantile(q) }

// OtherGoodputShare is the share of the second quota's logical requests
// that succeeded.
func (r *RateLimitResult) OtherGoodputShare() float64 { return frac(r.OtherSucceeded, r.OtherLogical) }

func frac(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func (p RateLimitParams) validate() error {
	switch {
	case p.Instances < 1:
		return fmt.Errorf("storm: %d instances, want at least 1", p.Instances)
	case p.Quota.Limit < 1 || p.Quota.Window <= 0:
		return fmt.Errorf("storm: quota %v, want a positive limit and window", p.Quota)
	case p.Base < 0 || p.Surge < 0 || p.Base+p.Surge == 0:
		return fmt.Errorf("storm: demand %g and %g/s, want some", p.Base, p.Surge)
	case p.SurgeStart < 0 || p.SurgeEnd < p.SurgeStart || p.End <= 0:
		return fmt.Errorf("storm: surge %v-%v of %v out of order", p.SurgeStart, p.SurgeEnd, p.End)
	case p.Deadline < 0 || p.Reject <= 0 || p.Serve <= 0:
		return fmt.Errorf("storm: deadline %v, reject %v, serve %v", p.Deadline, p.Reject, p.Serve)
	case !(p.OtherShare >= 0 && p.OtherShare < 1):
		return fmt.Errorf("storm: other share %v, want 0 to less than 1", p.OtherShare)
	case p.OtherShare > 0 && (p.Other.Limit < 1 || p.Other.Window <= 0):
		return fmt.Errorf("storm: other quota %v, want a positive limit and window", p.Other)
	}
	return nil
}

// SimulateRateLimit runs variant v through p. It is deterministic: the same
// p (seed included) and v give the same result, and every variant sees the
// same arrivals.
func SimulateRateLimit(v HoldVariant, p RateLimitParams) (*RateLimitResult, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	// Every attempt here fails with a 429 to a GET; check that saferetry's
	// strategy retries it, as the loop below assumes.
	if !retryable429() {
		return nil, fmt.Errorf("storm: DefaultStrategy does not retry a 429")
	}
	s := &rlSim{
		p: p, v: v,
		res:      &RateLimitResult{Rejects: make([]int64, int((p.End+2*p.maxRetryAfter())/time.Second)+1)},
		arrivals: rand.New(rand.NewPCG(p.Seed, 11)),
		jitter:   rand.New(rand.NewPCG(p.Seed, 12)),
		backoff: saferetry.Exponential{
			Initial: 100 * time.Millisecond, Max: 10 * time.Second, Jitter: saferetry.FullJitter,
		},
	}
	s.backoff.Rand = s.jitter.Int64N
	phases := rand.New(rand.NewPCG(p.Seed, 13))
	s.inst = make([]rlInstance, p.Instances)
	for i := range s.inst {
		s.inst[i].ctl = newControl(budget, 0, phases.Float64())
	}
	keys := p.Instances
	if p.SharedKey {
		keys = 1
	}
	// Each key's windows start at a whole second of their own, as a
	// GitHub window starts with the key's first request.
	offsets := rand.New(rand.NewPCG(p.Seed, 14))
	s.quotas = make([]rlQuota, 2*keys)
	for k := range keys {
		s.quotas[2*k] = newQuota(p.Quota, offsets)
		if p.OtherShare > 0 {
			s.quotas[2*k+1] = newQuota(p.Other, offsets)
		}
	}
	s.run()
	return s.res, nil
}

func retryable429() bool {
	req, _ := http.NewRequest(http.MethodGet, "http://api.example/", nil)
	tooMany := &http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{}, Request: req}
	return saferetry.DefaultStrategy.Classify(saferetry.Attempt{Request: req, Response: tooMany, Number: 1}) == saferetry.Transient
}

// rlQuota is the server's count for one key and quota.
type rlQuota struct {
	q      Quota
	offset time.Duration // FixedWindow: where the windows start
	window int64         // FixedWindow: the current window's index
	used   int
	tokens float64       // TokenBucket: tokens at last
	last   time.Duration // TokenBucket
}

func newQuota(q Quota, r *rand.Rand) rlQuota {
	off := time.Duration(r.Int64N(int64(q.Window/time.Second)+1)) * time.Second
	return rlQuota{q: q, offset: off, window: -1, tokens: float64(q.Limit)}
}

// take serves a request arriving at now, or refuses it. It returns the
// remaining count after it, and the wait the answer announces, as a client
// reading every header with internal/serverwait's rule (the longest) would
// compute it: for a 429 the wait before the quota has something again;
// for a success with nothing left, the wait until the reset.
func (q *rlQuota) take(now time.Duration) (ok bool, remaining int, wait, short time.Duration) {
	switch q.q.Kind {
	case FixedWindow:
		w := int64((now + q.offset) / q.q.Window)
		if w != q.window {
			q.window, q.used = w, 0
		}
		end := time.Duration(w+1)*q.q.Window - q.offset
		// X-RateLimit-Reset is end in whole seconds (windows start on
		// whole seconds); Date is now truncated to the second.
		wait = end - now.Truncate(time.Second)
		if q.used >= q.q.Limit {
			return false, 0, wait, wait
		}
		q.used++
		return true, q.q.Limit - q.used, wait, wait
	default:
		rate := float64(q.q.Limit) / float64(q.q.Window) // tokens per ns
		q.tokens = math.Min(float64(q.q.Limit), q.tokens+float64(now-q.last)*rate)
		q.last = now
		ok = q.tokens >= 1
		if ok {
			q.tokens--
		}
		// x-ratelimit-reset-requests: the time to full, in milliseconds
		// (OpenAI writes "6m0s", "1s", "20ms"); retry-after-ms, the time
		// to one token, is shorter, so the longest is the time to full.
		toFull := time.Duration(math.Ceil((float64(q.q.Limit)-q.tokens)/rate/1e6)) * time.Millisecond
		toOne := time.Duration(math.Ceil(math.Max(1-q.tokens, 0)/rate/1e6)) * time.Millisecond
		return ok, int(q.tokens), toFull, toOne
	}
}

// rlInstance is one client process: its saferetry budget, and what it
// knows of the host's quota.
type rlInstance struct {
	ctl   control
	until time.Duration // the host said it has nothing left until then
}

type rlReq struct {
	start    time.Duration
	instance int32
	other    bool
	attempt  int32
	held     bool
	ok       bool // the answer, once sent
	wait     time.Duration
	short    time.Duration
	rem      int
	sentAt   time.Duration
}

type rlKind uint8

const (
	evFirst  rlKind = iota // a first attempt is due (after a hold, if any)
	evRetry                // a retry is due
	evAnswer               // an attempt's answer arrives
)

type rlEvent struct {
	at   time.Duration
	seq  int64
	id   int32
	kind rlKind
}

func (e rlEvent) before(o rlEvent) bool {
	return e.at < o.at || e.at == o.at && e.seq < o.seq
}

// rlQueue is a binary min-heap of events on (at, seq).
type rlQueue []rlEvent

func (q *rlQueue) push(ev rlEvent) {
	h := append(*q, ev)
	for i := len(h) - 1; i > 0; {
		parent := (i - 1) / 2
		if !h[i].before(h[parent]) {
			break
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
	*q = h
}

func (q *rlQueue) pop() rlEvent {
	h := *q
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for i := 0; ; {
		least, l, r := i, 2*i+1, 2*i+2
		if l < last && h[l].before(h[least]) {
			least = l
		}
		if r < last && h[r].before(h[least]) {
			least = r
		}
		if least == i {
			break
		}
		h[i], h[least] = h[least], h[i]
		i = least
	}
	*q = h
	return top
}

type rlSim struct {
	p        RateLimitParams
	v        HoldVariant
	res      *RateLimitResult
	arrivals *rand.Rand
	jitter   *rand.Rand
	backoff  saferetry.Exponential
	inst     []rlInstance
	quotas   []rlQuota
	reqs     []rlReq
	queue    rlQueue
	seq      int64
	now      time.Duration
}

func (s *rlSim) push(at time.Duration, id int32, kind rlKind) {
	s.seq++
	s.queue.push(rlEvent{at: at, seq: s.seq, id: id, kind: kind})
}

func (s *rlSim) rate(t time.Duration) float64 {
	if t >= s.p.SurgeStart && t < s.p.SurgeEnd {
		return s.p.Surge
	}
	return s.p.Base
}

// nextArrival returns the first arrival after t: a Poisson stream whose
// rate changes at the surge's edges (memoryless, so a draw that crosses an
// edge is redrawn from it).
func (s *rlSim) nextArrival(t time.Duration) time.Duration {
	for t < s.p.End {
		edge := s.p.End
		for _, e := range []time.Duration{s.p.SurgeStart, s.p.SurgeEnd} {
			if e > t && e < edge {
				edge = e
			}
		}
		r := s.rate(t)
		if r <= 0 {
			t = edge
			continue
		}
		next := t + time.Duration(s.arrivals.ExpFloat64()/r*float64(time.Second)) + 1
		if next < edge {
			return next
		}
		t = edge
	}
	return s.p.End
}

func (s *rlSim) run() {
	arrival := s.nextArrival(0)
	for {
		if arrival < s.p.End && (len(s.queue) == 0 || arrival <= s.queue[0].at) {
			s.now = arrival
			arrival = s.nextArrival(arrival)
			s.start()
			continue
		}
		if len(s.queue) == 0 {
			return
		}
		ev := s.queue.pop()
		s.now = ev.at
		switch ev.kind {
		case evFirst:
			s.first(ev.id)
		case evRetry:
			s.res.Retries++
			s.send(ev.id)
		case evAnswer:
			s.answer(ev.id)
		}
	}
}

func (s *rlSim) start() {
	id := int32(len(s.reqs))
	r := rlReq{start: s.now, instance: int32(s.arrivals.IntN(s.p.Instances)), attempt: 1}
	if s.p.OtherShare > 0 && s.arrivals.Float64() < s.p.OtherShare {
		r.other = true
		s.res.OtherLogical++
	}
	s.reqs = append(s.reqs, r)
	s.res.Logical++
	s.first(id)
}

// first is where a first attempt is sent, or held, or refused.
func (s *rlSim) first(id int32) {
	r := &s.reqs[id]
	in := &s.inst[r.instance]
	if s.v.Mode != HoldNone && s.now < in.until && !(s.v.Mode == HoldOnce && r.held) {
		until := in.until
		switch {
		case s.p.Deadline > 0 && until > r.start+s.p.Deadline-rlMinAttempt:
			s.refuse(id)
			return
		case until-r.start > s.p.maxRetryAfter():
			if s.v.RefuseOverCap {
				s.refuse(id)
				return
			}
			// Not held: sent, as today.
		default:
			limit := r.start + s.p.maxRetryAfter()
			if s.p.Deadline > 0 {
				limit = min(limit, r.start+s.p.Deadline-rlMinAttempt)
			}
			wake := min(until+s.upward(until-s.now), limit)
			r.held = true
			s.push(wake, id, evFirst)
			return
		}
	}
	if r.held {
		s.res.Held++
		s.res.hold.add(s.now - r.start)
	}
	s.inst[r.instance].ctl.deposit(s.now)
	s.send(id)
}

func (s *rlSim) refuse(id int32) {
	r := &s.reqs[id]
	s.res.Refused++
	if r.held {
		s.res.Held++
		s.res.hold.add(s.now - r.start)
	}
}

// upward is saferetry's upward jitter on a server-directed wait d:
// U[0, d/10).
func (s *rlSim) upward(d time.Duration) time.Duration {
	if spread := d / 10; spread > 0 {
		return time.Duration(s.jitter.Int64N(int64(spread)))
	}
	return 0
}

func (s *rlSim) quota(r *rlReq) *rlQuota {
	k := int(r.instance)
	if s.p.SharedKey {
		k = 0
	}
	if r.other {
		return &s.quotas[2*k+1]
	}
	return &s.quotas[2*k]
}

func (s *rlSim) send(id int32) {
	r := &s.reqs[id]
	s.res.Attempts++
	r.ok, r.rem, r.wait, r.short = s.quota(r).take(s.now)
	r.sentAt = s.now
	delay := s.p.Serve
	if !r.ok {
		delay = s.p.Reject
		s.res.Rejected++
		s.res.Rejects[min(int(s.now/time.Second), len(s.res.Rejects)-1)]++
	}
	s.push(s.now+delay, id, evAnswer)
}

// answer handles an attempt's answer, as saferetry's loop does: learn,
// record, classify, check the retry limit, the cap, the deadline and the
// budget, wait.
func (s *rlSim) answer(id int32) {
	r := &s.reqs[id]
	in := &s.inst[r.instance]
	// The answer announces a wait measured from now, when it arrives.
	if s.v.Mode != HoldNone && (!r.ok || s.v.Remaining && r.rem == 0) {
		learnt := r.wait
		if s.v.Shortest && !r.ok {
			learnt = r.short
		}
		in.until = max(in.until, s.now+learnt)
	}
	in.ctl.outcome(s.now, r.ok, r.attempt, 0)
	if r.ok {
		lat := s.now - r.start
		s.res.Succeeded++
		s.res.latency.add(lat)
		if lat <= time.Second {
			s.res.SucceededIn1s++
		}
		if lat <= 10*time.Second {
			s.res.SucceededIn10s++
		}
		if r.other {
			s.res.OtherSucceeded++
			s.res.otherLatency.add(lat)
		}
		return
	}
	hint := r.wait
	if int(r.attempt) > rlMaxRetries || hint > s.p.maxRetryAfter() {
		return
	}
	limit := s.p.maxRetryAfter()
	if s.p.Deadline > 0 {
		room := r.start + s.p.Deadline - s.now - rlMinAttempt
		if hint > room {
			return
		}
		limit = min(limit, room)
	}
	if ok, _ := in.ctl.withdraw(s.now, false); !ok {
		return
	}
	r.attempt++
	s.push(s.now+min(hint+s.upward(hint), limit), id, evRetry)
}
