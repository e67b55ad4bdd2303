package storm

import (
	"math"
	"time"

	"github.com/saferetry/saferetry/internal/overload"
)

// control is one service instance's overload control, called in the order
// saferetry's retry loop calls its Budget: admit before every attempt,
// deposit when a logical request's first attempt is sent, withdraw before
// waiting for a retry (refund if the retry is then not made), gated when
// the retry of a timed-out attempt falls due, and outcome once an attempt
// is answered or timed out. accepted is false for an
// overload answer (503, timeout). Times are virtual, since the run's
// start.
type control interface {
	admit(now time.Duration, draw func() float64) bool
	deposit(now time.Duration)
	withdraw(now time.Duration, timedOut bool) (ok bool, cost int32)
	refund(now time.Duration, cost int32)
	outcome(now time.Duration, accepted bool, attempt int32, cost int32)
	gated(now time.Duration) bool
}

// newControl returns the control of configuration c for one instance.
func newControl(c Config, k, phase float64) control {
	var b budgetPart
	switch c.Budget {
	case BudgetNone:
		b = noBudget{}
	case BudgetSaferetry:
		s := &saferetryControl{c: c.overload(), k: k}
		s.h.Init(s.c, 0, phase)
		if c.Throttle == ThrottleSaferetry {
			return s // one overload.Host holds both, as in saferetry.Budget
		}
		s.k = 0
		b = s
	case BudgetFinagle:
		b = newFinagleBudget()
	case BudgetGRPC:
		b = &grpcBudget{tokens: grpcMaxTokens}
	case BudgetAWS:
		b = &awsBudget{tokens: awsQuota}
	}
	switch c.Throttle {
	case ThrottleFailsafe:
		return &composed{b, newWindowThrottle(time.Minute, 20, 1/0.9, 0.9)}
	case ThrottleEnvoy:
		return &composed{b, newWindowThrottle(30*time.Second, 30, 1/0.95, 0.8)}
	case ThrottleSaferetry:
		// A throttle without saferetry's budget: its own host.
		s := &saferetryControl{c: c.overload(), k: k}
		s.h.Init(s.c, 0, phase)
		return &composed{b, throttleOnly{s}}
	}
	return &composed{b, noThrottle{}}
}

// budgetPart and throttlePart are the two halves of a control.
type budgetPart interface {
	deposit(now time.Duration)
	withdraw(now time.Duration, timedOut bool) (bool, int32)
	refund(now time.Duration, cost int32)
	outcome(now time.Duration, accepted bool, attempt int32, cost int32)
	gated(now time.Duration) bool
}

type throttlePart interface {
	admit(now time.Duration, draw func() float64) bool
	outcome(now time.Duration, accepted bool)
}

type composed struct {
	b budgetPart
	t throttlePart
}

func (c *composed) admit(now time.Duration, draw func() float64) bool { return c.t.admit(now, draw) }
func (c *composed) deposit(now time.Duration)                         { c.b.deposit(now) }
func (c *composed) withdraw(now time.Duration, timedOut bool) (bool, int32) {
	return c.b.withdraw(now, timedOut)
}
func (c *composed) refund(now time.Duration, cost int32) { c.b.refund(now, cost) }
func (c *composed) gated(now time.Duration) bool         { return c.b.gated(now) }
func (c *composed) outcome(now time.Duration, accepted bool, attempt, cost int32) {
	c.b.outcome(now, accepted, attempt, cost)
	c.t.outcome(now, accepted)
}

type noBudget struct{}

func (noBudget) deposit(time.Duration)                      {}
func (noBudget) withdraw(time.Duration, bool) (bool, int32) { return true, 0 }
func (noBudget) refund(time.Duration, int32)                {}
func (noBudget) outcome(time.Duration, bool, int32, int32)  {}
func (noBudget) gated(time.Duration) bool                   { return false }

type noThrottle struct{}

func (noThrottle) admit(time.Duration, func() float64) bool { return true }
func (noThrottle) outcome(time.Duration, bool)              {}

// saferetryControl is saferetry.Budget's per-host state, driven on
// virtual time: the library's own code.
type saferetryControl struct {
	h overload.Host
	c *overload.Config
	k float64 // 0: throttling off
}

func (s *saferetryControl) admit(now time.Duration, draw func() float64) bool {
	return s.h.Admit(s.c, now, s.k, draw)
}
func (s *saferetryControl) deposit(now time.Duration) { s.h.Deposit(s.c, now) }
func (s *saferetryControl) withdraw(now time.Duration, timedOut bool) (bool, int32) {
	after := overload.Answered
	if timedOut {
		after = overload.TimedOut
	}
	return s.h.Withdraw(s.c, now, after), 0
}
func (s *saferetryControl) refund(time.Duration, int32) { s.h.Refund(s.c) }
func (s *saferetryControl) gated(now time.Duration) bool {
	return s.h.Gated(s.c, now, overload.TimedOut)
}
func (s *saferetryControl) outcome(now time.Duration, accepted bool, _, _ int32) {
	s.h.Record(s.c, now, accepted)
}

// throttleOnly uses saferetryControl's throttle half.
type throttleOnly struct{ s *saferetryControl }

func (t throttleOnly) admit(now time.Duration, draw func() float64) bool { return t.s.admit(now, draw) }
func (t throttleOnly) outcome(now time.Duration, accepted bool)          { t.s.h.Record(t.s.c, now, accepted) }

// finagleBudget is saferetry's first retry budget, as it was before issue
// 11: a balance of reserve + 0.1 x deposits - withdrawals over a sliding
// window of ten 1 s slots, the reserve (floor 10/s x 10 s) never expiring.
type finagleBudget struct {
	slots   [10]int64 // net units of each of the last ten 1 s slots
	cur     int64     // the newest slot's number
	balance int64     // reserve + sum(slots)
}

const (
	finagleUnit    = 1_000_000
	finagleCredit  = finagleUnit / 10
	finagleReserve = 100 * finagleUnit
)

func newFinagleBudget() *finagleBudget { return &finagleBudget{balance: finagleReserve} }

// slot expires the slots that time now leaves behind and returns now's.
func (f *finagleBudget) slot(now time.Duration) *int64 {
	e := int64(now / time.Second)
	if e > f.cur {
		for i := f.cur + 1; i <= min(e, f.cur+10); i++ {
			f.balance -= f.slots[i%10]
			f.slots[i%10] = 0
		}
		f.cur = e
	}
	return &f.slots[f.cur%10]
}

func (f *finagleBudget) deposit(now time.Duration) {
	*f.slot(now) += finagleCredit
	f.balance += finagleCredit
}

func (f *finagleBudget) withdraw(now time.Duration, _ bool) (bool, int32) {
	s := f.slot(now)
	if f.balance < finagleUnit {
		return false, 0
	}
	*s -= finagleUnit
	f.balance -= finagleUnit
	return true, 0
}

func (f *finagleBudget) refund(now time.Duration, _ int32) {
	*f.slot(now) += finagleUnit
	f.balance += finagleUnit
}

func (f *finagleBudget) outcome(time.Duration, bool, int32, int32) {}
func (f *finagleBudget) gated(time.Duration) bool                  { return false }

// grpcBudget is gRPC's retry throttling (A6): per server, a token count
// in [0, maxTokens] starting full; a failed attempt costs 1, a successful
// one earns tokenRatio; retries stop while the count is at or below half.
type grpcBudget struct{ tokens float64 }

const (
	grpcMaxTokens  = 10
	grpcTokenRatio = 0.1
)

func (g *grpcBudget) deposit(time.Duration) {}
func (g *grpcBudget) withdraw(time.Duration, bool) (bool, int32) {
	return g.tokens > grpcMaxTokens/2, 0
}
func (g *grpcBudget) refund(time.Duration, int32) {}
func (g *grpcBudget) gated(time.Duration) bool    { return false }
func (g *grpcBudget) outcome(_ time.Duration, accepted bool, _, _ int32) {
	if accepted {
		g.tokens = min(g.tokens+grpcTokenRatio, grpcMaxTokens)
	} else {
		g.tokens = max(g.tokens-1, 0)
	}
}

// awsBudget is the AWS SDK for Go v2's retry quota (retry.NewStandard's
// defaults: DefaultRetryRateTokens 500, DefaultRetryCost 5,
// DefaultRetryTimeoutCost 10, DefaultNoRetryIncrement 1). Every
// successful attempt earns 1; a successful retry also refunds its cost.
type awsBudget struct{ tokens int32 }

const (
	awsQuota       = 500
	awsRetryCost   = 5
	awsTimeoutCost = 10
	awsSuccessGain = 1
)

func (a *awsBudget) deposit(time.Duration) {}
func (a *awsBudget) withdraw(_ time.Duration, timedOut bool) (bool, int32) {
	cost := int32(awsRetryCost)
	if timedOut {
		cost = awsTimeoutCost
	}
	if a.tokens < cost {
		return false, 0
	}
	a.tokens -= cost
	return true, cost
}
func (a *awsBudget) refund(_ time.Duration, cost int32) { a.tokens = min(a.tokens+cost, awsQuota) }
func (a *awsBudget) gated(time.Duration) bool           { return false }
func (a *awsBudget) outcome(_ time.Duration, accepted bool, attempt, cost int32) {
	if !accepted {
		return
	}
	gain := int32(awsSuccessGain)
	if attempt > 1 {
		gain += cost
	}
	a.tokens = min(a.tokens+gain, awsQuota)
}

// windowThrottle is the SRE book's rule over a sliding window of buckets
// (failsafe-go's TimedStats, Envoy's per-second history): only attempts
// that got an outcome are counted, and a whole bucket's counts leave the
// window at once.
type windowThrottle struct {
	bucket          time.Duration
	k, maxReject    float64
	execs, succs    []int64 // per bucket, a ring
	head            int64   // the newest bucket's number
	sumExec, sumSuc int64
}

func newWindowThrottle(window time.Duration, buckets int, k, maxReject float64) *windowThrottle {
	return &windowThrottle{
		bucket: window / time.Duration(buckets), k: k, maxReject: maxReject,
		execs: make([]int64, buckets), succs: make([]int64, buckets),
	}
}

func (w *windowThrottle) advance(now time.Duration) int {
	n := int64(len(w.execs))
	h := int64(now / w.bucket)
	if h > w.head {
		for i := w.head + 1; i <= min(h, w.head+n); i++ {
			w.sumExec -= w.execs[i%n]
			w.sumSuc -= w.succs[i%n]
			w.execs[i%n], w.succs[i%n] = 0, 0
		}
		w.head = h
	}
	return int(w.head % n)
}

func (w *windowThrottle) admit(now time.Duration, draw func() float64) bool {
	w.advance(now)
	e, s := float64(w.sumExec), float64(w.sumSuc)
	p := math.Min(math.Max((e-w.k*s)/(e+1), 0), w.maxReject)
	return p == 0 || draw() >= p
}

func (w *windowThrottle) outcome(now time.Duration, accepted bool) {
	i := w.advance(now)
	w.execs[i]++
	w.sumExec++
	if accepted {
		w.succs[i]++
		w.sumSuc++
	}
}
