package saferetry

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrBudgetExhausted is reported (test it with errors.Is) when a retry was
// not made because the retry budget had nothing left to spend for the
// request's host. The caller still gets the last real response or error;
// this sentinel only says why retrying stopped.
var ErrBudgetExhausted = errors.New("saferetry: retry budget exhausted")

const (
	// budgetSlots is how many time slots the sliding window is cut into.
	// Deposits and withdrawals expire a slot at a time, so an entry counts
	// for at least window*(budgetSlots-1)/budgetSlots and at most window.
	budgetSlots = 10

	// budgetUnit is the fixed-point scale: one retry is budgetUnit units, a
	// deposit is ratio*budgetUnit units rounded to the nearest unit. All
	// accounting is in int64 units, so no error accumulates however many
	// deposits are made, and a ratio of 0.1 credits exactly one retry per
	// ten deposits.
	budgetUnit = 1_000_000

	// budgetMaxReserve caps the reserve (about 1.15e12 retries) so that a
	// huge floor, meant as "unlimited", cannot overflow the int64 balance.
	budgetMaxReserve = 1 << 60
)

// Budget limits retries to a fraction of the requests sent, per destination
// host, so that a client facing a failing upstream adds a bounded extra load
// instead of multiplying its traffic by (1 + retries). It is the retry
// budget of Finagle (com.twitter.finagle.service.RetryBudget) and of tower
// (tower::retry::budget::TpsBudget), and the per-client ratio the Google SRE
// book recommends (chapter "Handling Overload": retries at most 10% of
// requests).
//
// Every logical request calls [Budget.Deposit] once, for its first attempt;
// every retry calls [Budget.Withdraw] before waiting and is made only if it
// returns true. For each host (the request's URL.Host, for example
// "api.example.com:443") the budget keeps a balance over a sliding window:
//
//	reserve + ratio*deposits - withdrawals
//
// where deposits and withdrawals are those made within the window and
// reserve = floor*window (in retries; 100 with the defaults). A retry is
// allowed while the balance is at least 1, and costs 1. A host seen for the
// first time starts with the whole reserve, so a fresh or quiet client can
// still retry; the reserve never expires, the deposits and withdrawals do.
// Under a full outage, with requests arriving at a steady rate R per second,
// this allows ratio*R + floor retries per second: each logical request costs
// about 1 + ratio + floor/R attempts (1.1 + 10/R with the defaults), instead
// of 1 + MaxRetries.
//
// The window is cut into 10 slots; deposits and withdrawals expire a slot at
// a time, so each counts for at least nine tenths of the window and at
// most the whole of it.
//
// Hosts that have been idle for a whole window are forgotten (their state is
// then the same as a fresh host's), so a process that talks to an unbounded
// number of hosts over its life does not accumulate memory.
//
// A Budget is safe for concurrent use by any number of goroutines, and may be
// shared by several transports so that they spend from the same per-host
// allowance. Deposit and Withdraw take no global lock and, for a host already
// seen, allocate nothing. The zero value is a budget with the defaults, as
// NewBudget() returns; a nil *Budget is a budget that is switched off (it
// allows every retry). A Budget must not be copied after first use.
type Budget struct {
	once sync.Once

	// Set once, by init, before any other use.
	now      func() time.Time // nil: the system's monotonic clock, read by time.Since
	origin   time.Time        // the clock's reading at init: epoch 0 starts here
	slotLen  time.Duration    // window / budgetSlots, at least 1ns
	credit   int64            // units per Deposit
	reserve  int64            // units a fresh host starts with
	disabled bool             // ratio and reserve too small to ever allow a retry

	hosts     sync.Map     // host string -> *hostBucket
	nextSweep atomic.Int64 // epoch at or after which idle hosts are swept
}

// hostBucket is one host's balance. Times are counted in epochs: the
// number of whole slots since Budget.origin. slots[e%budgetSlots] holds the
// net units (credits minus withdrawals) of epoch e, for the budgetSlots
// epochs up to cur; balance is always reserve plus the sum of slots, so a
// Withdraw reads one word instead of ten.
//
// Ordering that keeps balance and slots consistent without a lock on the
// hot path:
//   - Deposit adds to its slot first, then to balance; Withdraw takes from
//     balance first (a CAS loop that never lets it fall below zero), then
//     from its slot. Either way balance is at most reserve+sum(slots) while
//     an operation is half done, so a concurrent Withdraw can only be
//     refused spuriously, never granted spuriously.
//   - advance expires slots (swap to zero, then subtract from balance) under
//     mu and publishes the new cur only after that, so an operation that
//     reads the new epoch always sees the expired balance; operations still
//     using the previous epoch act as if they had happened just before it.
//
// The one inexact case: a caller that read the clock a whole window before
// it reaches the bucket (preempted for that long) can still find the
// bucket's old epoch current and act on it after a sweep has evicted it.
// Its deposit or withdrawal is then lost with the bucket, which can let
// one extra retry through per caller so delayed.
type hostBucket struct {
	balance atomic.Int64
	cur     atomic.Int64
	slots   [budgetSlots]atomic.Int64

	mu   sync.Mutex // serialises advance and eviction
	dead bool       // guarded by mu: evicted, no longer in Budget.hosts
}

// budgetConfig is what BudgetOption functions set.
type budgetConfig struct {
	ratio  float64
	window time.Duration
	floor  float64
	now    func() time.Time
}

// BudgetOption configures a Budget made by NewBudget. An option given an
// invalid value makes NewBudget panic with a message naming the option and
// the value, as regexp.MustCompile does: a budget is configured once, by the
// programmer, and a mistake should stop the program at start-up rather than
// surface as odd retry behaviour under load.
type BudgetOption func(*budgetConfig)

// BudgetRatio sets the fraction of a retry that each logical request earns:
// 0.1 (the default, Google SRE's per-client figure) allows one retry per ten
// requests, 1 allows one retry per request, 0 allows only the floor. r must
// be within [0, 1]. The credit is kept to the nearest millionth of a retry.
func BudgetRatio(r float64) BudgetOption {
	return func(c *budgetConfig) {
		if !(r >= 0 && r <= 1) { // also rejects NaN
			panic(fmt.Sprintf("saferetry: BudgetRatio(%v): ratio must be within [0, 1]", r))
		}
		c.ratio = r
	}
}

// BudgetWindow sets how long deposits and withdrawals count: 10 seconds by
// default, as in Finagle and tower. A longer window smooths bursts but
// recovers more slowly after an outage; it also scales the reserve, which is
// floor*window. d must be greater than zero. The window is kept as 10 slots
// of d/10 each (at least 1ns).
func BudgetWindow(d time.Duration) BudgetOption {
	return func(c *budgetConfig) {
		if d <= 0 {
			panic(fmt.Sprintf("saferetry: BudgetWindow(%v): window must be greater than zero", d))
		}
		c.window = d
	}
}

// BudgetMinRetriesPerSecond sets the floor: retries per second allowed for a
// host however few requests it receives, so that a client with little
// traffic can still retry. The default is 10. It takes effect as a reserve
// of n*window retries that every host starts with and that never expires,
// which also bounds the extra load of a quiet client to n retries per
// second. n must be finite and not negative; 0 means retries are earned by
// traffic alone.
func BudgetMinRetriesPerSecond(n float64) BudgetOption {
	return func(c *budgetConfig) {
		if !(n >= 0) || math.IsInf(n, 1) { // also rejects NaN
			panic(fmt.Sprintf("saferetry: BudgetMinRetriesPerSecond(%v): floor must be finite and >= 0", n))
		}
		c.floor = n
	}
}

// BudgetClock sets the function the budget reads the time from: time.Now
// by default. Tests and discrete-event simulators pass a virtual clock. The
// budget measures time from the clock's reading when NewBudget is called; a
// reading that goes back (earlier than one already used for the same host,
// or than that first reading) counts as the latest time already used. now
// must not be nil, and must be safe for concurrent use if the Budget is
// used concurrently.
func BudgetClock(now func() time.Time) BudgetOption {
	return func(c *budgetConfig) {
		if now == nil {
			panic("saferetry: BudgetClock(nil): clock must not be nil")
		}
		c.now = now
	}
}

// NewBudget returns a retry budget with the given options, defaults being a
// ratio of 0.1, a window of 10 seconds and a floor of 10 retries per second
// (a reserve of 100 retries per host). It panics if an option's value is
// invalid. Nil options are ignored.
func NewBudget(opts ...BudgetOption) *Budget {
	c := defaultBudgetConfig()
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	b := new(Budget)
	b.once.Do(func() { b.init(c) })
	return b
}

func defaultBudgetConfig() budgetConfig {
	return budgetConfig{ratio: 0.1, window: 10 * time.Second, floor: 10}
}

// init resolves a configuration into the budget's fixed-point settings.
func (b *Budget) init(c budgetConfig) {
	b.now = c.now
	if c.now == nil {
		b.origin = time.Now()
	} else {
		b.origin = c.now()
	}
	b.slotLen = max(c.window/budgetSlots, 1)
	b.credit = int64(math.Round(c.ratio * budgetUnit))
	reserve := math.Round(c.floor * c.window.Seconds() * budgetUnit)
	b.reserve = int64(min(reserve, budgetMaxReserve))
	b.disabled = b.credit == 0 && b.reserve < budgetUnit
	b.nextSweep.Store(budgetSlots)
}

// initDefault makes the zero Budget behave as NewBudget().
func (b *Budget) initDefault() { b.init(defaultBudgetConfig()) }

// Deposit records that a logical request is being sent to host (its first
// attempt), which credits ratio of a retry to the host's budget for one
// window. Call it once per logical request, not once per attempt. On a nil
// Budget it does nothing. It is safe for concurrent use.
func (b *Budget) Deposit(host string) {
	if b == nil {
		return
	}
	b.once.Do(b.initDefault)
	if b.credit == 0 {
		return
	}
	e := b.epoch()
	for {
		k := b.bucket(host, e)
		if s := k.slot(b, e); s != nil {
			s.Add(b.credit)
			k.balance.Add(b.credit)
			return
		}
		// k was evicted while we held it; the next lookup makes a new one.
	}
}

// Withdraw asks for one retry to host. If the host's balance allows a retry
// it spends one and returns true; otherwise it spends nothing and returns
// false, and the retry must not be made. Call it before waiting out the
// backoff, so that a refused retry is not waited for. On a nil Budget it
// returns true. It is safe for concurrent use: the check and the spending
// are one atomic step, so concurrent callers never spend more than the
// balance holds.
func (b *Budget) Withdraw(host string) bool {
	if b == nil {
		return true
	}
	b.once.Do(b.initDefault)
	if b.disabled {
		return false
	}
	e := b.epoch()
	for {
		k := b.bucket(host, e)
		s := k.slot(b, e)
		if s == nil {
			continue // k was evicted while we held it
		}
		for {
			v := k.balance.Load()
			if v < budgetUnit {
				return false
			}
			if k.balance.CompareAndSwap(v, v-budgetUnit) {
				break
			}
		}
		s.Add(-budgetUnit)
		return true
	}
}

// refund gives back a retry that Withdraw granted but that was not made
// (the body could not be replayed after all, or the caller gave up during
// the wait), so an aborted retry does not cost other requests one.
func (b *Budget) refund(host string) {
	if b == nil {
		return
	}
	e := b.epoch()
	for {
		k := b.bucket(host, e)
		if s := k.slot(b, e); s != nil {
			s.Add(budgetUnit)
			k.balance.Add(budgetUnit)
			return
		}
	}
}

// epoch returns the number of whole slots between the budget's origin and
// now; a clock reading before the origin counts as epoch 0.
func (b *Budget) epoch() int64 {
	var d time.Duration
	if b.now == nil {
		// time.Since reads only the monotonic clock: about half the cost
		// of time.Now().Sub on the hot path of every request.
		d = time.Since(b.origin)
	} else {
		d = b.now().Sub(b.origin)
	}
	if d < 0 {
		return 0
	}
	return int64(d / b.slotLen)
}

// bucket returns host's bucket, making it if host has not been seen (or was
// evicted).
func (b *Budget) bucket(host string, e int64) *hostBucket {
	if v, ok := b.hosts.Load(host); ok {
		return v.(*hostBucket)
	}
	return b.addBucket(host, e)
}

// addBucket is the slow path of bucket. It is also where idle hosts are
// swept, because a new host is what makes the map grow.
func (b *Budget) addBucket(host string, e int64) *hostBucket {
	b.maybeSweep(e)
	k := new(hostBucket)
	k.cur.Store(e)
	k.balance.Store(b.reserve)
	// Clone the key so that the map does not pin a larger string the host
	// may have been sliced from.
	v, _ := b.hosts.LoadOrStore(strings.Clone(host), k)
	return v.(*hostBucket)
}

// slot returns the counter for epoch e, first expiring the slots that e
// leaves behind. An e older than the bucket's newest epoch (a clock that went
// backwards, or a caller that read the clock before another advanced the
// bucket) is counted in the newest epoch. slot returns nil if the bucket was
// evicted.
func (k *hostBucket) slot(b *Budget, e int64) *atomic.Int64 {
	cur := k.cur.Load()
	if e > cur {
		var ok bool
		if cur, ok = k.advance(e); !ok {
			return nil
		}
		b.maybeSweep(e) // not under k.mu: the sweep locks buckets itself
	}
	return &k.slots[cur%budgetSlots]
}

// advance moves the bucket's newest epoch to e (if e is newer), expiring
// the slots of epochs that fall out of the window. It reports false if the
// bucket has been evicted. When two goroutines advance at once, the second
// finds the work done and only reads the new epoch.
func (k *hostBucket) advance(e int64) (int64, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.dead {
		return 0, false
	}
	cur := k.cur.Load()
	if e <= cur {
		return cur, true
	}
	// Epochs cur+1..e reuse the slots of cur+1-budgetSlots..e-budgetSlots,
	// which have left the window; after a gap of a whole window or more,
	// every slot has.
	n := min(e-cur, budgetSlots)
	for i := int64(1); i <= n; i++ {
		if v := k.slots[(cur+i)%budgetSlots].Swap(0); v != 0 {
			k.balance.Add(-v)
		}
	}
	k.cur.Store(e) // publish only once balance no longer counts expired slots
	return e, true
}

// maybeSweep evicts hosts idle for a whole window, at most once per window,
// in the goroutine of whichever caller first notices a sweep is due. An
// idle host's slots have all expired, so forgetting it loses nothing: if it
// comes back it gets a fresh bucket in exactly the state the old one had.
// The sweep costs O(hosts) once per window, on the slow path only (a new
// host, or a host's first call in a new slot).
func (b *Budget) maybeSweep(e int64) {
	next := b.nextSweep.Load()
	if e < next || !b.nextSweep.CompareAndSwap(next, e+budgetSlots) {
		return
	}
	b.hosts.Range(func(key, v any) bool {
		if k := v.(*hostBucket); e-k.cur.Load() >= budgetSlots {
			k.evictIfIdle(b, key, e)
		}
		return true
	})
}

// evictIfIdle removes k from b.hosts if it is still idle at epoch e. Under
// k.mu, so that a concurrent advance either sees it dead (and looks the host
// up again) or has already made it not idle.
func (k *hostBucket) evictIfIdle(b *Budget, key any, e int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.dead || e-k.cur.Load() < budgetSlots {
		return
	}
	k.dead = true
	b.hosts.CompareAndDelete(key, k)
}
