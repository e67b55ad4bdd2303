package storm

import (
	"fmt"
	"math"
	"time"
)

// Phases are the times, from the start of a run, at which the full outage
// begins and ends, and at which clients stop starting logical requests.
// Before OutageStart the server works normally; during [OutageStart,
// OutageEnd) it answers every request 503 at once; after it, it recovers at
// full capacity. Times should be multiples of BucketWidth.
type Phases struct {
	OutageStart, OutageEnd, End time.Duration
}

// Outage returns how long the outage lasts.
func (p Phases) Outage() time.Duration { return p.OutageEnd - p.OutageStart }

// Centered returns the phases of a run of length total with an outage of
// length outage in its middle, rounded to whole buckets.
func Centered(total, outage time.Duration) Phases {
	start := (total - outage) / 2 / BucketWidth * BucketWidth
	return Phases{OutageStart: start, OutageEnd: start + outage, End: total}
}

// RecoveryLevel and RecoveryHold define recovery: the server has recovered
// once it serves at least RecoveryLevel of the attempts it receives in
// every 100 ms bucket for RecoveryHold (or until the run's end, if sooner).
const (
	RecoveryLevel = 0.95
	RecoveryHold  = 500 * time.Millisecond
)

// Summary is one configuration's line of the comparison.
type Summary struct {
	// Logical is the number of logical requests started; Succeeded of
	// them ended in a success (after retries, if any).
	Logical, Succeeded int64
	// Attempts is every attempt the server received, served or rejected.
	Attempts int64
	// OutageLogical and OutageAttempts are the logical requests started,
	// and the attempts the server received, during the outage.
	OutageLogical, OutageAttempts int64
	// OutageRetries are the retries among OutageAttempts;
	// OutageSucceeded the logical requests started during the outage that
	// succeeded (at any time).
	OutageRetries, OutageSucceeded int64
	// Throttled is the number of attempts a throttle rejected locally.
	Throttled int64
	// PeakOutage and PeakAfter are the most attempts the server received in
	// one 100 ms bucket during the outage, and from its end to the end of
	// the run. PeakLate is the most in one bucket from PeakLateFrom into
	// the outage to its end: the outage's start is exempt, where what a
	// budget saved is spent.
	PeakOutage, PeakAfter, PeakLate int64
	// Normal is the mean number of attempts per 100 ms bucket before the
	// outage.
	Normal float64
	// Recovery is the time from the end of the outage to the start of the
	// first bucket from which the server served at least RecoveryLevel of
	// its attempts for RecoveryHold. Recovered is false if that never
	// happened before the end of the run.
	Recovery  time.Duration
	Recovered bool
	// P50 and P99 are latencies of successful logical requests, from their
	// start to their final response.
	P50, P99 time.Duration
}

// SuccessRate is the fraction of logical requests that succeeded.
func (s Summary) SuccessRate() float64 { return ratio(s.Succeeded, s.Logical) }

// Amplification is attempts per logical request over the whole run.
func (s Summary) Amplification() float64 { return ratio(s.Attempts, s.Logical) }

// OutageAmplification is attempts per logical request during the outage:
// the attempts the server received during it, over the logical requests
// started during it. It is the load the outage costs the server, relative
// to the load it would have had.
func (s Summary) OutageAmplification() float64 { return ratio(s.OutageAttempts, s.OutageLogical) }

// OutageRetryRatio is retries per logical request during the outage.
func (s Summary) OutageRetryRatio() float64 { return ratio(s.OutageRetries, s.OutageLogical) }

// OutageSuccessRate is the fraction of the logical requests started
// during the outage that succeeded.
func (s Summary) OutageSuccessRate() float64 { return ratio(s.OutageSucceeded, s.OutageLogical) }

// PeakLateRatio is PeakLate relative to the normal load.
func (s Summary) PeakLateRatio() float64 {
	if s.Normal == 0 {
		return math.NaN()
	}
	return float64(s.PeakLate) / s.Normal
}

// PeakLateFrom is how far into the outage PeakLate starts counting.
const PeakLateFrom = 2 * time.Second

func ratio(a, b int64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

// Summarize computes a configuration's Summary from what r recorded during
// a run with phases p.
func Summarize(r *Recorder, p Phases) Summary {
	s := r.Series()
	outStart, outEnd := int(p.OutageStart/BucketWidth), int(p.OutageEnd/BucketWidth)
	end := min(int((p.End+BucketWidth-1)/BucketWidth), len(s.Attempts))
	lateStart := int((p.OutageStart + PeakLateFrom) / BucketWidth)
	sum := Summary{Succeeded: s.Succeeded, P50: r.Quantile(0.5), P99: r.Quantile(0.99)}
	var before int64
	for i, a := range s.Attempts {
		sum.Attempts += a
		sum.Logical += s.Started[i]
		sum.Throttled += s.Throttled[i]
		switch {
		case i < outStart:
			before += a
		case i >= outStart && i < outEnd:
			sum.OutageAttempts += a
			sum.OutageRetries += s.Retries[i]
			sum.OutageLogical += s.Started[i]
			sum.OutageSucceeded += s.OKStarted[i]
			sum.PeakOutage = max(sum.PeakOutage, a)
			if i >= lateStart {
				sum.PeakLate = max(sum.PeakLate, a)
			}
		case i >= outEnd:
			sum.PeakAfter = max(sum.PeakAfter, a)
		}
	}
	if outStart > 0 {
		sum.Normal = float64(before) / float64(outStart)
	}
	hold := int(RecoveryHold / BucketWidth)
	healthy := func(i int) bool {
		return s.Attempts[i] == 0 || float64(s.Served[i]) >= RecoveryLevel*float64(s.Attempts[i])
	}
	run := 0 // healthy buckets in a row, ending at i
	for i := outEnd; i < end; i++ {
		if !healthy(i) {
			run = 0
			continue
		}
		if run++; run == hold || i == end-1 {
			sum.Recovery = time.Duration(i+1-run-outEnd) * BucketWidth
			sum.Recovered = true
			break
		}
	}
	return sum
}

// Bound is the most attempts per logical request that saferetry's retry
// budget allows during a full outage, for one budget (one instance) that
// sends N logical requests during it, all failing: its retries are at
// most the tokens it held when the outage began (its cap: max(c, ratio x
// the requests of its last ~W), W = BudgetWindow, plus its phase, less
// than one token) plus those the outage's requests earn, ratio x N. So
//
//	attempts per logical request <= 1 + ratio + (cap + 1)/N
//
// with cap = max(c, ratio x Rate x W) for a steady rate of Rate requests
// per second per budget. The bound is per budget: the number of instances
// enters only through the rate each one sees.
type Bound struct {
	Rate  float64 // logical requests per second per budget during the outage
	N     float64 // logical requests per budget during the outage
	Cap   float64 // the budget's cap at the outage's start, without the phase, in retries
	Ratio float64 // the budget's ratio
	Value float64 // the bound
}

// BudgetBound computes the bound for s, the summary of a configuration
// with saferetry's budget in each of budgets service instances, from the
// rate of logical requests during the outage (the load is open: the same
// before it).
func BudgetBound(s Summary, p Phases, budgets int) Bound {
	b := Bound{Rate: float64(s.OutageLogical) / p.Outage().Seconds() / float64(budgets), Ratio: BudgetRatio}
	b.N = b.Rate * p.Outage().Seconds()
	b.Cap = max(BudgetAllowance, BudgetRatio*b.Rate*BudgetWindow.Seconds())
	b.Value = 1 + BudgetRatio + (b.Cap+1)/b.N
	return b
}

// Holds reports whether amplification a is within the bound.
func (b Bound) Holds(a float64) bool { return a <= b.Value }

// Formula returns how the bound was computed, for the report.
func (b Bound) Formula() string {
	// Whole requests where that is precise enough; fewer than 100 keep
	// three significant digits, so that a small N does not print as a
	// division by 0.
	n := fmt.Sprintf("%.0f", b.N)
	if b.N < 100 {
		n = fmt.Sprintf("%.3g", b.N)
	}
	return fmt.Sprintf("1 + %g + (%.3g+1)/%s", b.Ratio, b.Cap, n)
}
