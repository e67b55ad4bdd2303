package overload

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

const (
	// Unit is the fixed-point scale of every count: a retry token, a
	// request and an accepted request each count Unit. Integer arithmetic
	// keeps deposits exact (a ratio of 0.1 credits exactly one retry per
	// ten requests) however many are made; ratios are kept to the nearest
	// 1/Unit.
	Unit = 10_000

	// Tick is the resolution of the clock the averages decay on. A
	// decay step of one tick (1/1000 of Window) is too small to be
	// seen as a step: nothing is released at an instant.
	Tick = 10 * time.Millisecond

	// MaxReject caps the throttle's rejection probability, so that some
	// attempts keep probing an upstream that rejects everything and see
	// when it is back (the Google SRE book's client-side throttling;
	// failsafe-go's adaptive throttler uses the same cap).
	MaxReject = 0.9

	// GateK is the K of the retry gate: retries stop while more than
	// half of a host's recent attempts got overload answers.
	GateK = 2

	// dead marks a host evicted from its Table; its state is no longer
	// used.
	dead = math.MinInt64

	// maxField is the most a packed balance field holds.
	maxField = math.MaxUint32

	// noBaseline is a host's streak until its first accepted answer: far
	// below any Streak, so that overload answers never close the gate of
	// a host that has never been seen to work. Such a host cannot tell a
	// blip from an outage, and a fresh process must be able to spend its
	// allowance on its first request.
	noBaseline = math.MinInt64 / 2
)

// Params are the knobs of the algorithms. saferetry fixes all but Ratio
// (see Defaults); the simulator varies them to show why.
type Params struct {
	// Ratio is the retry a request earns: 0.1 allows retries to be 10%
	// of requests; 0 refuses every retry. saferetry.NewBudget takes [0,
	// 1]; up to 100 is accepted here, for tests that want a budget that
	// never refuses.
	Ratio float64
	// Allowance is c, in retries: what a fresh host starts with, and the
	// least the cap on a host's tokens ever is.
	Allowance float64
	// Window is W, the time constant of the average of the request rate
	// that sets the cap: cap = max(Allowance, Ratio x requests in the
	// last ~Window).
	Window time.Duration
	// Pace, if above zero, paces retries: besides a token, a retry needs
	// a pace credit, of which each request earns Pace x Ratio, held up to
	// max(PaceFloor, Ratio x requests in the last ~PaceBurst). Tokens
	// saved in quiet times are then spent at most Pace times as fast as
	// they are earned, never all at once.
	Pace      float64
	PaceBurst time.Duration
	PaceFloor float64
	// ThrottleWindow is the time constant of the throttle's averages of
	// requests and accepted requests; MinRequests the fewest requests
	// in them before the throttle rejects anything (and the gate
	// closes): fewer are not evidence of overload.
	ThrottleWindow time.Duration
	MinRequests    float64
	// Gate, if set, refuses retries while the host's recent attempts
	// show overload: while the host's last Streak attempts in a row got
	// overload answers, or, once its averages hold at least MinRequests
	// requests, while its last BusyStreak did or a throttle with K =
	// GateK would reject. A streak of 0 is no such rule. Streaks count
	// only after the host's first accepted answer.
	Gate               bool
	Streak, BusyStreak int
	// TimeoutK, if above zero, is the gate's K for the retry of an
	// attempt that timed out, instead of GateK: such a retry is made only
	// while nearly all the host's recent attempts were accepted.
	TimeoutK float64
	// IdleEvict is how long a host whose state is the same as a fresh
	// host's (tokens full, no recent throttle history) stays in a Table
	// unused; MaxIdle is how long any host does.
	IdleEvict, MaxIdle time.Duration
}

// Defaults returns the parameters saferetry uses, for a ratio. The storm
// simulator (cmd/saferetry STORM.md has the tables) chose them:
//
//   - Allowance 2: the least with which an instance sending one request a
//     second loses under 0.1% of its requests to the budget when 2% of
//     attempts fail at random (0.04%; 1.5 loses 0.2%).
//   - Pace 1.5, PaceBurst 50ms: without pacing a busy instance spends
//     its saved tokens within a few hundred milliseconds of an outage's
//     start (the busiest 100ms 1.3-1.5x the bare client's); with a pace
//     of 2, 100ms steps later in an outage reached 1.28x the normal load
//     at 10 requests/s per instance, 1.23x with 1.5.
//   - PaceFloor 5: hedges come in random clusters; with a floor of 2
//     (plus the phase), 2% of the hedges of a client hedging 5% of its
//     requests were refused at any rate below ~1,000 requests/s, enough
//     to leave the p99.9 of the hedging benchmark at the slow attempt's
//     200ms. The streaks below keep a larger floor from feeding an
//     outage: failures in a row close the gate whatever the credits.
//   - Streak 2, BusyStreak 3: an instance too quiet for the averages
//     (one request a second) would otherwise spend its allowance at its
//     first failure in an outage, which at 10,000 instances made 100ms
//     steps 1.37x the normal load (1.32x with a streak of 3); with it,
//     1.13x, and 99.95% of requests still succeed with 2% random
//     failures. A process that has had no accepted answer yet still
//     spends its whole allowance on its first request. On a busy instance three in
//     a row close the gate before the averages do (a queueing server's
//     attempts time out all at once): without it, its first timeouts'
//     retries slowed a metastable recovery by 0.1-0.3s; with two, a busy
//     instance lost 0.05% of its requests to chance streaks with 2%
//     random failures, with three none in the simulator's runs.
//   - TimeoutK 1.1: the retry of an attempt timeout is made only while
//     at least 10 of 11 recent attempts were accepted. A client sending
//     64 KiB writes over one congested HTTP/2 connection with a 300ms
//     attempt timeout (integration's TestCongestedLink) got 415 of 480
//     writes through with the streaks alone, against 434 without
//     retrying, each retry adding its body to the queued link; with it,
//     427 against 430, and 422 against 421-423 with another seed.
//   - ThrottleWindow 250ms, MinRequests 10, Gate: without the gate, a
//     queueing server at 90% load stays collapsed after a 3s trigger
//     (the budget's 10% is enough to keep its queue from draining). With
//     a 2s window the gate closed late (recovery at 90% load and half
//     the capacity lost: 4.1s, against 2.8s) and the throttle let go late
//     (4.3s against 0.8s at 75% load, 80% lost); 250ms recovered fastest
//     and rejected nothing in healthy runs. Ten requests of evidence keep
//     an instance sending under 40 requests a second out of both.
func Defaults(ratio float64) Params {
	return Params{
		Ratio:          ratio,
		Allowance:      2,
		Window:         10 * time.Second,
		Pace:           1.5,
		PaceBurst:      50 * time.Millisecond,
		PaceFloor:      5,
		ThrottleWindow: 250 * time.Millisecond,
		MinRequests:    10,
		Gate:           true,
		Streak:         2,
		BusyStreak:     3,
		TimeoutK:       1.1,
		IdleEvict:      30 * time.Second,
		MaxIdle:        10 * time.Minute,
	}
}

// Config is Params resolved to fixed point. It is immutable and safe for
// concurrent use.
type Config struct {
	p          Params
	credit     int64   // units a deposit earns
	paceCredit int64   // pace units a deposit earns; 0: no pacing
	allowance  int64   // units a fresh host starts with; the token cap's floor
	paceFloor  int64   // units: the pace cap's floor
	paceShift  float64 // PaceBurst / Window: the pace cap's share of earned
	minReqs    int64   // units
	capRate    float64 // ticks / Window: -ln of the cap's decay per tick
	thrRate    float64 // ticks / ThrottleWindow
	// capDecay[n] and thrDecay[n] are the decays over n ticks, for the
	// short gaps that are nearly all of them.
	capDecay, thrDecay [decayTable]float64
	idleEvict          int64 // ticks
	maxIdle            int64 // ticks
	sweepGap           int64 // ticks between sweeps of a Table
}

// NewConfig resolves p. It panics if a value is out of range: Params come
// from code, not from users (saferetry.NewBudget checks the ratio and
// names it in its own panic first).
func NewConfig(p Params) *Config {
	switch {
	case !(p.Ratio >= 0 && p.Ratio <= 100):
		panic(fmt.Sprintf("overload: ratio %v not within [0, 100]", p.Ratio))
	case !(p.Allowance >= 0 && p.Allowance <= 1000):
		panic(fmt.Sprintf("overload: allowance %v not within [0, 1000]", p.Allowance))
	case !(p.Pace >= 0 && p.Pace <= 100) || p.Pace > 0 && p.PaceBurst <= 0:
		panic(fmt.Sprintf("overload: pace %v, burst %v out of range", p.Pace, p.PaceBurst))
	case p.Window < Tick || p.ThrottleWindow < Tick:
		panic(fmt.Sprintf("overload: windows %v and %v must be at least %v", p.Window, p.ThrottleWindow, Tick))
	case !(p.MinRequests >= 0 && p.MinRequests <= 1e6):
		panic(fmt.Sprintf("overload: minimum requests %v out of range", p.MinRequests))
	case p.Streak < 0 || p.Streak > 1000 || p.BusyStreak < 0 || p.BusyStreak > 1000:
		panic(fmt.Sprintf("overload: streaks %d and %d out of range", p.Streak, p.BusyStreak))
	case !(p.TimeoutK == 0 || p.TimeoutK >= 1 && p.TimeoutK <= GateK):
		panic(fmt.Sprintf("overload: timeout K %v not 0 or within [1, %v]", p.TimeoutK, GateK))
	case !(p.PaceFloor >= 0 && p.PaceFloor <= 1000):
		panic(fmt.Sprintf("overload: pace floor %v not within [0, 1000]", p.PaceFloor))
	case p.IdleEvict < Tick || p.MaxIdle < p.IdleEvict:
		panic(fmt.Sprintf("overload: idle times %v and %v out of order", p.IdleEvict, p.MaxIdle))
	}
	c := &Config{
		p:         p,
		credit:    int64(math.Round(p.Ratio * Unit)),
		paceShift: float64(p.PaceBurst) / float64(p.Window),
		minReqs:   int64(math.Round(p.MinRequests * Unit)),
		capRate:   float64(Tick) / float64(p.Window),
		thrRate:   float64(Tick) / float64(p.ThrottleWindow),
		idleEvict: int64(p.IdleEvict / Tick),
		maxIdle:   int64(p.MaxIdle / Tick),
		sweepGap:  max(int64(p.Window/Tick), 1),
	}
	for n := range decayTable {
		c.capDecay[n] = expTicks(int64(n), c.capRate)
		c.thrDecay[n] = expTicks(int64(n), c.thrRate)
	}
	if c.credit > 0 {
		// Nothing to earn means nothing to spend: an allowance alone
		// would be a grant per process, the very thing the cap is
		// designed not to need.
		c.allowance = int64(math.Round(p.Allowance * Unit))
		c.paceFloor = int64(math.Round(p.PaceFloor * Unit))
		c.paceCredit = int64(math.Round(p.Pace * float64(c.credit)))
	}
	return c
}

// Params returns the parameters c was made from.
func (c *Config) Params() Params { return c.p }

// Ticks converts a time since the origin to ticks; a negative time is
// tick 0.
func Ticks(now time.Duration) int64 { return max(int64(now/Tick), 0) }

// Host is one destination's state: the retry budget's tokens (and pace
// credits) and the average that sets their caps, and the throttle's
// averages of requests and accepted requests. Every field is an atomic
// word: operations take no lock, and concurrent ones never grant more
// than the balance holds (the spending is one compare-and-swap of the
// word holding both tokens and pace credits).
//
// The averages are exponentially weighted: each decays by
// exp(-elapsed/window), applied lazily in steps of one Tick by the first
// operation in a new tick. Decay is applied after that operation has
// claimed the tick, so a concurrent operation in the same tick may act on
// counts one tick (at most 1% of Window) too old; that is the only
// inexactness, and it never creates tokens.
type Host struct {
	// tick is the last tick the host was used in, which is also the tick
	// its averages have decayed to; dead once a Table evicted it.
	tick atomic.Int64
	// balance packs the tokens (high 32 bits) and the pace credits (low
	// 32 bits). Either may exceed its cap (when the cap has decayed since
	// it was earned); every reader takes the smaller of the two.
	balance atomic.Uint64
	earned  atomic.Int64  // average of credits: Ratio x requests in ~Window
	reqs    atomic.Int64  // average of attempts answered or rejected, ~ThrottleWindow
	accs    atomic.Int64  // average of accepted attempts, ~ThrottleWindow
	k       atomic.Uint64 // bits of the last K the throttle was asked with
	until   atomic.Int64  // the end of a rate-limit hold, 0 for none: see hold.go
	// streak counts the attempts in a row that got overload answers
	// since the last accepted one; it starts at noBaseline.
	streak atomic.Int64
	// phase, set once by Init, adds a fraction of a token to both caps,
	// at random: see Init.
	phase int64
	name  string // the host's name in its Table, if any
}

func pack(tokens, pace int64) uint64 { return uint64(tokens)<<32 | uint64(pace) }

func unpack(w uint64) (tokens, pace int64) { return int64(w >> 32), int64(w & maxField) }

// Init makes h a fresh host at time now: tokens and pace full, no
// history. It must be called before h is shared.
//
// phase, in [0, 1), is the host's phase: that fraction of a token (and
// of a pace credit) is added to its caps for its whole life. Without it,
// the instances of a fleet that send requests at the same steady rate
// all spend their tokens down to zero at an outage's start, then earn
// their next token at the same instant, and retry in step: bursts of up
// to twice the load, every 1/(ratio x rate) (measured with evenly spaced
// requests: 2.2x at 1 request/s, 1.6x at 10). With it, each is left with
// a different fraction, and they earn in turn. A host spends no more at
// once than without it (the fraction never makes a whole retry on its
// own); over its life the phase adds at most one retry, half of one on
// average.
func (h *Host) Init(c *Config, now time.Duration, phase float64) {
	h.tick.Store(Ticks(now))
	h.phase = 0
	if c.credit > 0 {
		h.phase = min(int64(min(max(phase, 0), 1)*Unit), Unit-1)
	}
	tokens, pace := c.caps(0, h.phase)
	h.balance.Store(pack(tokens, pace))
	h.earned.Store(0)
	h.reqs.Store(0)
	h.accs.Store(0)
	h.k.Store(0)
	h.streak.Store(noBaseline)
}

// touch brings h to tick t, decaying its averages if t is a new tick.
// It reports whether h is still alive (not evicted) and whether this call
// moved it to a new tick. A t older than h's tick counts as h's tick.
func (h *Host) touch(c *Config, t int64) (alive, advanced bool) {
	for {
		old := h.tick.Load()
		switch {
		case old == dead:
			return false, false
		case t <= old:
			return true, false
		case h.tick.CompareAndSwap(old, t):
			h.decay(c, t-old)
			return true, true
		}
	}
}

func (h *Host) decay(c *Config, ticks int64) {
	fe, ft := c.decays(ticks)
	scale(&h.earned, fe)
	scale(&h.reqs, ft)
	scale(&h.accs, ft)
}

// decayTable is how many decays a Config keeps computed.
const decayTable = 64

// decays returns the decays of the cap's and the throttle's averages over
// n ticks.
func (c *Config) decays(n int64) (cap, throttle float64) {
	if n < decayTable {
		return c.capDecay[n], c.thrDecay[n]
	}
	return expTicks(n, c.capRate), expTicks(n, c.thrRate)
}

// expTicks is the decay over n ticks at rate (ticks per time constant).
func expTicks(n int64, rate float64) float64 { return math.Exp(-float64(n) * rate) }

// scale multiplies a by f (0 <= f <= 1) atomically.
func scale(a *atomic.Int64, f float64) {
	for {
		v := a.Load()
		nv := int64(float64(v) * f)
		if nv == v || a.CompareAndSwap(v, nv) {
			return
		}
	}
}

// caps returns the most tokens and pace credits a host of phase phase
// may hold, given its average of credits earned: max(allowance, earned)
// and max(pace floor, earned x PaceBurst/Window), each plus phase.
func (c *Config) caps(earned, phase int64) (tokens, pace int64) {
	tokens = min(max(c.allowance, earned)+phase, maxField)
	if c.paceCredit == 0 {
		return tokens, maxField
	}
	return tokens, min(max(c.paceFloor, int64(float64(earned)*c.paceShift))+phase, maxField)
}

// deposit credits a logical request: Ratio of a retry and Pace x Ratio of
// a pace credit, each up to its cap.
func (h *Host) deposit(c *Config) {
	if c.credit == 0 {
		return
	}
	tokCap, paceCap := c.caps(h.earned.Add(c.credit), h.phase)
	for {
		w := h.balance.Load()
		t, p := unpack(w)
		nt, np := t, p
		if t < tokCap {
			nt = min(t+c.credit, tokCap)
		}
		if p < paceCap && c.paceCredit > 0 {
			np = min(p+c.paceCredit, paceCap)
		}
		// Full already (a cap that shrank is applied when spending).
		if nt == t && np == p || h.balance.CompareAndSwap(w, pack(nt, np)) {
			return
		}
	}
}

// withdraw spends one retry token (and one pace credit) if h holds one
// and, with the gate on, h shows no overload. A host the gate refuses
// forfeits what it saved beyond the allowance: tokens saved in good times
// are for blips, and spent on an overloaded host as it recovers they
// would be a small retry storm.
func (h *Host) withdraw(c *Config, after Failure) bool {
	if h.gated(c, after) {
		return false
	}
	tokCap, paceCap := c.caps(h.earned.Load(), h.phase)
	for {
		w := h.balance.Load()
		t, p := unpack(w)
		t, p = min(t, tokCap), min(p, paceCap)
		if t < Unit || c.paceCredit > 0 && p < Unit {
			return false
		}
		if c.paceCredit > 0 {
			p -= Unit
		}
		if h.balance.CompareAndSwap(w, pack(t-Unit, p)) {
			return true
		}
	}
}

// Failure is what a retry follows, for the gate.
type Failure uint8

const (
	// Answered: an answer, or nothing in particular (a hedge).
	Answered Failure = iota
	// TimedOut: an attempt timeout. Its retry passes the stricter
	// TimeoutK test, of the host's other recent attempts.
	TimedOut
	// ServerDirected: an answer that said when to come back (Retry-After
	// and the like). Streaks do not refuse it: the server asked for it.
	ServerDirected
)

// gated reports whether the gate refuses h's retries now (see
// Params.Gate), for a retry after a failure of kind after. A host whose
// averages show overload forfeits what it saved beyond the allowance; a
// streak alone forfeits nothing, since a busy host meets short ones by
// chance, and neither does the stricter test of a timeout's retry.
func (h *Host) gated(c *Config, after Failure) bool {
	if !c.p.Gate {
		return false
	}
	reqs, streak := h.reqs.Load(), h.streak.Load()
	streaks := after != ServerDirected
	if reqs < c.minReqs {
		return streaks && c.p.Streak > 0 && streak >= int64(c.p.Streak)
	}
	if streaks && c.p.BusyStreak > 0 && streak >= int64(c.p.BusyStreak) {
		return true
	}
	accs := h.accs.Load()
	if RejectProbability(reqs, accs, GateK, c.minReqs) > 0 {
		h.forfeit(c)
		return true
	}
	if after != TimedOut || c.p.TimeoutK <= 0 {
		return false
	}
	// The timeout itself is among the recent attempts: the test is of
	// the others, and needs more than one and a half of them (by their
	// decayed weight) to have been overload answers, so that a busy
	// host's random timeouts, alone in their quarter second, are retried.
	others, otherFails := reqs-Unit, reqs-accs-Unit
	return otherFails > 3*Unit/2 && RejectProbability(others, accs, c.p.TimeoutK, c.minReqs) > 0
}

// forfeit brings h's tokens and pace credits down to their floors.
func (h *Host) forfeit(c *Config) {
	tokCap, paceCap := c.caps(0, h.phase)
	for {
		w := h.balance.Load()
		t, p := unpack(w)
		nt, np := min(t, tokCap), min(p, paceCap)
		if nt == t && np == p || h.balance.CompareAndSwap(w, pack(nt, np)) {
			return
		}
	}
}

// refund gives back what withdraw took for a retry not made.
func (h *Host) refund(c *Config) {
	for {
		w := h.balance.Load()
		t, p := unpack(w)
		t = min(t+Unit, maxField)
		if c.paceCredit > 0 {
			p = min(p+Unit, maxField)
		}
		if h.balance.CompareAndSwap(w, pack(t, p)) {
			return
		}
	}
}

// admit is the throttle's decision on an attempt, with K = k: draw is
// called, once, only if the rejection probability is above zero, and
// must return a uniform number in [0, 1). A rejected attempt counts as a
// request at once; an admitted one counts when record gets its outcome.
// (Counting admitted attempts when they are sent would count those still
// in flight as refused: a fresh host's second concurrent attempt would
// face a rejection probability of one half.)
func (h *Host) admit(c *Config, k float64, draw func() float64) bool {
	if k <= 0 {
		return true
	}
	if bits := math.Float64bits(k); h.k.Load() != bits {
		h.k.Store(bits)
	}
	p := RejectProbability(h.reqs.Load(), h.accs.Load(), k, c.minReqs)
	if p == 0 || draw() >= p {
		return true
	}
	h.reqs.Add(Unit)
	return false
}

// record counts an attempt that got an outcome: a request, and an
// accepted one unless the outcome was an overload answer.
func (h *Host) record(accepted bool) {
	h.reqs.Add(Unit)
	if !accepted {
		h.streak.Add(1)
		return
	}
	h.accs.Add(Unit)
	if h.streak.Load() != 0 {
		h.streak.Store(0)
	}
}

// RejectProbability is the client-side throttling of the Google SRE book
// ("Handling Overload"): max(0, (requests - K*accepts) / (requests + 1)),
// capped at MaxReject, with requests and accepts in Units; 0 with fewer
// than minRequests requests, which are no evidence of overload.
func RejectProbability(requests, accepts int64, k float64, minRequests int64) float64 {
	if k <= 0 || requests < minRequests {
		return 0
	}
	p := (float64(requests) - k*float64(accepts)) / (float64(requests) + Unit)
	return min(max(p, 0), MaxReject)
}

// State is a snapshot of a host, for telemetry.
type State struct {
	Tokens   float64 // retries the budget would grant now
	Reject   float64 // the throttle's rejection probability now, for the last K it was asked with
	Requests float64 // attempts per second (answered or rejected locally), averaged over ~ThrottleWindow
	Accepts  float64 // attempts per second answered other than with an overload answer, likewise
}

// state reads h as of tick t without changing it.
func (h *Host) state(c *Config, t int64) State {
	var fe, ft float64 = 1, 1
	if old := h.tick.Load(); t > old && old != dead {
		fe, ft = c.decays(t - old)
	}
	tokCap, _ := c.caps(int64(float64(h.earned.Load())*fe), h.phase)
	tokens, _ := unpack(h.balance.Load())
	r := float64(h.reqs.Load()) * ft
	a := float64(h.accs.Load()) * ft
	perSecond := 1 / (Unit * c.p.ThrottleWindow.Seconds())
	return State{
		Tokens:   float64(min(tokens, tokCap)) / Unit,
		Reject:   RejectProbability(int64(r), int64(a), math.Float64frombits(h.k.Load()), c.minReqs),
		Requests: r * perSecond,
		Accepts:  a * perSecond,
	}
}

// Deposit, Withdraw, Refund, Admit, Record and State are Host's
// operations at time now, for a Host used on its own (the simulator's
// instances, each with one upstream). A Table calls the same code.

// Deposit credits a logical request's first attempt.
func (h *Host) Deposit(c *Config, now time.Duration) {
	h.touch(c, Ticks(now))
	h.deposit(c)
}

// Withdraw asks for a retry (or a hedge): true spends a token.
// after says what the retry follows.
func (h *Host) Withdraw(c *Config, now time.Duration, after Failure) bool {
	h.touch(c, Ticks(now))
	return h.withdraw(c, after)
}

// Gated reports whether the gate refuses h's retries at time now. A
// retry granted before its wait is asked again when it is due, if the
// failure it follows left no response to hand back (see saferetry's
// retry loop).
func (h *Host) Gated(c *Config, now time.Duration, after Failure) bool {
	h.touch(c, Ticks(now))
	return h.gated(c, after)
}

// Refund returns what Withdraw took for a retry not made.
func (h *Host) Refund(c *Config) { h.refund(c) }

// Admit is the throttle's decision on an attempt (see admit).
func (h *Host) Admit(c *Config, now time.Duration, k float64, draw func() float64) bool {
	if k <= 0 {
		return true
	}
	h.touch(c, Ticks(now))
	return h.admit(c, k, draw)
}

// Record counts an attempt's outcome: accepted unless it was an overload
// answer.
func (h *Host) Record(c *Config, now time.Duration, accepted bool) {
	h.touch(c, Ticks(now))
	h.record(accepted)
}

// State returns h as of time now.
func (h *Host) State(c *Config, now time.Duration) State { return h.state(c, Ticks(now)) }
