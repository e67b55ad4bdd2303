package saferetry

import (
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/saferetry/saferetry/internal/overload"
)

// ErrBudgetExhausted is reported (test it with errors.Is) when a retry was
// not made because the retry budget had nothing left to spend for the
// request's host. The caller still gets the last real response or error;
// this sentinel only says why retrying stopped.
var ErrBudgetExhausted = errors.New("saferetry: retry budget exhausted")

// defaultBudgetRatio is the ratio of the zero Budget, and of the budget
// New installs: retries may add 10% to a host's requests (the Google SRE
// book's per-client figure, "Handling Overload").
const defaultBudgetRatio = 0.1

// Budget is a client's overload control for each destination host (the
// request's URL.Host, for example "api.example.com:443"): a retry budget,
// so that a client facing a failing upstream adds a bounded extra load
// instead of multiplying its traffic by 1 + retries, and the state of
// adaptive client-side throttling. Transports that share a Budget share
// both. Its design and the evidence for each constant are in
// cmd/saferetry/STORM.md (saferetry storm -mode sim -scenario fleet,
// partial, metastable).
//
// # Retry budget
//
// Each host has a balance of retry tokens. A logical request earns ratio
// of a token when its first attempt is sent; a retry (or a hedge) spends
// one before it waits, and is not made if less than one is left; a retry
// granted but not made gets its token back. The balance is capped at
//
//	cap = max(c, ratio·λ·W)
//
// where c = 2 is a starting allowance, λ the host's recent rate of logical
// requests and W = 10s: λ·W is the number of requests of the last ten
// seconds or so, an exponentially weighted average that decays
// continuously. A host starts full, so a fresh process (a cron job, a
// one-shot command) can retry its first request, twice; a busy client can
// retry a short blip, up to 10% of its last ten seconds of traffic; a
// quiet one is held to c. Nothing is granted for time passing: tokens are
// only earned by requests.
//
// Why the bound holds at any fleet size: during an outage in which one
// client sends N logical requests, all failing, its retries are at most
// the tokens it held when the outage began plus those it earned during
// it, cap + ratio·N. Attempts per logical request are therefore at most
//
//	1 + ratio + cap/N
//
// where, for an outage of length T at a steady rate (N = λT), cap/N =
// max(c/N, ratio·W/T): 1 + 0.1 + 2/60 = 1.133 for a 60s outage at one
// request per second, 1.117 at 10 or 1000 requests per second. Every term
// is per client, so a fleet of 10,000 instances obeys the same bound as
// one. (Each host's cap also carries a random fraction of a token, its
// phase, so that the instances of a fleet do not earn their next retry in
// the same instant; it adds less than one retry to c, half of one on
// average.) No bound of this form holds for clients that send about one
// request each (a fleet of one-request processes, N near 1): each may
// spend its allowance. That is the price of letting a fresh process retry
// at all, and it is paid once per process, not per second.
//
// Three rules keep what the bound allows from arriving at the wrong time,
// and in a real outage make far less of it arrive:
//
//   - Pacing. A retry also needs a pace credit; each request earns 1.5 x
//     ratio of one, held up to max(5, ratio x the requests of the last
//     50ms). Tokens saved in quiet times are spent at most 1.5 times as
//     fast as they are earned, never all at an outage's first instant;
//     the floor of 5 lets hedges, which come in random clusters, through.
//   - The gate. While more than half of the host's recent attempts (the
//     last quarter second or so, and at least 10 of them) got overload
//     answers, no retry is made, and the tokens saved beyond c are
//     forfeited: retrying into an overloaded host only deepens its
//     queue, and saved tokens spent as it recovers would be a retry storm
//     of their own. Overload answers in a row close it too, until an
//     attempt is accepted: two for a client too quiet for the averages
//     (its only evidence), three for a busy one (whose attempts to a
//     queueing server time out all at once, before the averages move).
//     Streaks count only once the host has been seen to work: a fresh
//     process spends its allowance. With the gate, a quiet client's
//     outage costs one retry, not cap + ratio·N: the bound above is what
//     holds when the failures are not in a row. A retry after a failure
//     with no response to hand back (an attempt timeout, a refused
//     connection) is asked of the gate again when its wait ends. The
//     retry of an attempt timeout passes a stricter gate: it is refused
//     unless at least 10 of 11 recent attempts were accepted (its sent
//     attempt's work goes on without it; see withdraw).
//   - Nothing frees a window's allowance at one instant: there is no
//     window. Every average decays continuously, in steps of 10ms.
//
// # Throttling
//
// When throttling is on (the stack's K > 0), every attempt, first or
// retry, is first offered to the host's throttle, which rejects it
// locally with probability
//
//	max(0, (requests - K·accepts) / (requests + 1)), at most 0.9
//
// (the Google SRE book's client-side throttling), where requests are the
// attempts that got an outcome or were rejected, and accepts those that
// got an answer other than an overload one (429, 503, a refused
// connection, an attempt timeout), both averaged over the last quarter
// second or so; with fewer than 10 requests there, nothing is rejected. A
// client thus stops sending what an overloaded host would refuse anyway,
// first attempts included, and keeps probing with at least one attempt in
// ten. The short window lets it go within a second once the host answers
// again.
//
// # Memory, concurrency, zero value
//
// A host's state is a few words: about 205 bytes with its map entry and a
// 30-byte name, measured with 200,000 hosts. A host idle for 30 seconds
// whose state is that of a fresh host (tokens full, no recent throttle
// history) is forgotten, and so is any host idle for 10 minutes, so a
// client that talks to an unbounded number of hosts (a webhook sender)
// keeps bounded memory. A forgotten host comes back as a fresh one: with
// the allowance, and with no baseline for the streaks, so its first
// request may spend the allowance again. A client that sends a host a
// request every 30 seconds or less often is thus, for the budget, a
// process of one request (at most c retries per 10 minutes of silence for
// a host refused retries). A streak does not age otherwise: a quiet host
// whose last attempts got overload answers is refused retries until one
// of its first attempts is accepted.
//
// A Budget is safe for concurrent use by any number of goroutines and
// transports. Its per-host operations take no lock and, for a host already
// known, allocate nothing. The zero value is a budget with ratio 0.1, as
// NewBudget(0.1) returns; a nil *Budget is overload control switched off:
// every retry and every attempt is allowed and nothing is recorded. A
// Budget must not be copied after first use.
type Budget struct {
	once   sync.Once
	origin time.Time // the monotonic clock's reading at first use: time 0
	table  overload.Table
}

// defaultOverload is the configuration of every budget with the default
// ratio, shared: it is immutable.
var defaultOverload = overload.NewConfig(overload.Defaults(defaultBudgetRatio))

// NewBudget returns a budget whose requests each earn ratio of a retry
// (0.1, the default, allows retries to add 10% to a host's requests; 1,
// one retry per request; 0 refuses every retry). The ratio is kept to
// the nearest 1/10,000. It panics,
// naming the value, if ratio is not within [0, 1]: a budget is configured
// once, by the programmer, and a mistake should stop the program at start
// rather than surface as odd retry behaviour under load.
func NewBudget(ratio float64) *Budget {
	if !(ratio >= 0 && ratio <= 1) { // also rejects NaN
		panic(fmt.Sprintf("saferetry: NewBudget(%v): ratio must be within [0, 1]", ratio))
	}
	c := defaultOverload
	if ratio != defaultBudgetRatio {
		c = overload.NewConfig(overload.Defaults(ratio))
	}
	b := new(Budget)
	b.once.Do(func() { b.init(c) })
	return b
}

func (b *Budget) init(c *overload.Config) {
	b.origin = time.Now()
	b.table.Init(c)
}

// now returns the time since the budget's first use on the monotonic
// clock (time.Since reads only the monotonic clock: half the cost of
// time.Now().Sub on the path of every request).
func (b *Budget) now() time.Duration {
	b.once.Do(func() { b.init(defaultOverload) })
	return time.Since(b.origin)
}

// deposit records a logical request's first attempt to host, earning
// ratio of a retry. Call it once per logical request, when its first
// attempt is sent (after admit let it through).
func (b *Budget) deposit(host string) {
	if b == nil {
		return
	}
	b.table.Deposit(host, b.now())
}

// withdraw asks for a retry or a hedge to host, before waiting for it: it
// spends a token and returns true, or spends nothing and returns false,
// and the retry must not be made. The check and the spending are one
// atomic step: concurrent callers never spend more than the balance.
//
// after says what the retry follows. A server-directed retry (after a
// Retry-After or the like) is not refused for a streak of overload
// answers: the server asked for it. The retry of an attempt timeout is
// refused when more than one of the host's other recent attempts, and more
// than 1 in 11 of them, got overload answers. A timed-out attempt was sent, and its work goes
// on without it (a server's queue, or bytes already on a congested link);
// its retry doubles that work, and is only worth it for an attempt that
// was unlucky alone.
func (b *Budget) withdraw(host string, after overload.Failure) bool {
	if b == nil {
		return true
	}
	return b.table.Withdraw(host, b.now(), after)
}

// gated reports whether the gate now refuses retries to host. The retry
// loop asks it again when a granted retry falls due, if the failure it
// follows left no response to hand back: a queueing server's attempts
// time out all at once, and the retries granted at the first timeouts
// would otherwise join its queue after more had shown the overload.
// (After a response, the retry is settled before the wait, because the
// response is released during it.)
func (b *Budget) gated(host string, after overload.Failure) bool {
	if b == nil {
		return false
	}
	return b.table.Gated(host, b.now(), after)
}

// refund gives back a token withdraw granted for a retry that was not made
// (the body could not be replayed, the caller gave up during the wait,
// the throttle rejected it), so an aborted retry costs no one else one.
func (b *Budget) refund(host string) {
	if b == nil {
		return
	}
	b.table.Refund(host, b.now())
}

// admit is the throttle's decision for an attempt to host, any attempt,
// first or retry, made just before it is sent: false means reject it
// locally (it is then never sent, and counts as a request the throttle
// refused). k <= 0 means throttling off: admit returns true at once. An
// attempt admit let through counts as a request when record gets its
// outcome, not before: counted when sent, attempts still in flight would
// look refused, and a fresh host's second concurrent attempt would face a
// rejection probability of one half.
func (b *Budget) admit(host string, k float64) bool {
	if b == nil || k <= 0 {
		return true
	}
	// rand.Float64 is drawn only when the rejection probability is above
	// zero: a healthy host costs no random number.
	return b.table.Admit(host, b.now(), k, rand.Float64)
}

// record counts an attempt to host that got an outcome, as a request, and
// as an accepted one unless accepted is false: false only for an overload
// outcome (429, 503, a refused connection, an attempt timeout); the
// caller decides which. An attempt that got no outcome (a canceled hedge,
// a caller that gave up) is recorded neither way. It records whatever the
// throttle's K, so that Hosts reports the rates with throttling off too.
func (b *Budget) record(host string, accepted bool) {
	if b == nil {
		return
	}
	// Without reading the clock, which costs as much as the rest: the
	// request's deposit has just brought the host's time up to date.
	if !b.table.RecordLatest(host, accepted) {
		b.table.Record(host, b.now(), accepted)
	}
}

// HostState is a snapshot of a Budget's state for one host, for telemetry.
type HostState struct {
	// RetryTokens is the number of retries the budget holds for the host
	// (it may be fractional; a retry needs at least 1). Pacing may spread
	// them out, and the gate may refuse them while the host is
	// overloaded.
	RetryTokens float64
	// RejectProbability is the probability, from 0 to 0.9, with which
	// the throttle would reject the host's next attempt, for the K it was
	// last used with; 0 if throttling has not been used for the host.
	RejectProbability float64
	// Requests is the rate, in attempts per second, of attempts to the
	// host that got an outcome or were rejected by the throttle,
	// exponentially averaged over the last quarter second or so.
	Requests float64
	// Accepts is the rate, in attempts per second, of attempts that got
	// an answer other than an overload one, averaged likewise.
	Accepts float64
}

// Hosts iterates over the hosts the budget currently tracks and their
// state. It is safe to call concurrently with requests; a host added or
// forgotten meanwhile may or may not be seen. A nil Budget tracks none.
func (b *Budget) Hosts() iter.Seq2[string, HostState] {
	return func(yield func(string, HostState) bool) {
		if b == nil {
			return
		}
		for host, s := range b.table.All(b.now()) {
			hs := HostState{RetryTokens: s.Tokens, RejectProbability: s.Reject, Requests: s.Requests, Accepts: s.Accepts}
			if !yield(host, hs) {
				return
			}
		}
	}
}
