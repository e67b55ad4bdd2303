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
	// PeakOutage and PeakAfter are the most attempts the server received in
	// one 100 ms bucket during the outage, and from its end to the end of
	// the run.
	PeakOutage, PeakAfter int64
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
	sum := Summary{Succeeded: s.Succeeded, P50: r.Quantile(0.5), P99: r.Quantile(0.99)}
	for i, a := range s.Attempts {
		sum.Attempts += a
		sum.Logical += s.Started[i]
		switch {
		case i >= outStart && i < outEnd:
			sum.OutageAttempts += a
			sum.OutageLogical += s.Started[i]
			sum.PeakOutage = max(sum.PeakOutage, a)
		case i >= outEnd:
			sum.PeakAfter = max(sum.PeakAfter, a)
		}
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

// Bound is the most attempts per logical request that a retry budget
// allows during a full outage: the budget refuses a retry unless the
// retries of the last window stay within floor*window plus ratio times the
// window's logical requests. Over an outage of a whole number of windows,
// with Rate logical requests per second per budget, that is
//
//	1 + ratio + floor/Rate
//
// attempts per logical request. An outage of a fractional number of windows
// is bounded through the whole windows that cover it, which lets in credit
// earned before the outage: the bound is then (ratio + floor/Rate) times
// windows*window/outage, plus 1.
type Bound struct {
	Rate    float64       // logical requests per second per budget during the outage
	Ratio   float64       // the budget's ratio
	Floor   float64       // the budget's floor, retries per second
	Window  time.Duration // the budget's window
	Windows int           // whole windows covering the outage
	Outage  time.Duration // the outage's length
	Value   float64       // the bound
}

// BudgetBound computes the bound for s, the summary of a configuration with
// a budget (ratio, floor, window) in each of budgets service instances.
func BudgetBound(s Summary, p Phases, budgets int, ratio, floor float64, window time.Duration) Bound {
	outage := p.Outage()
	b := Bound{
		Rate:    float64(s.OutageLogical) / outage.Seconds() / float64(budgets),
		Ratio:   ratio,
		Floor:   floor,
		Window:  window,
		Windows: int((outage + window - 1) / window),
		Outage:  outage,
	}
	cover := float64(b.Windows) * window.Seconds() / outage.Seconds()
	b.Value = 1 + (ratio+floor/b.Rate)*cover
	return b
}

// Holds reports whether amplification a is within the bound.
func (b Bound) Holds(a float64) bool { return a <= b.Value }

// Formula returns how the bound was computed, for the report.
func (b Bound) Formula() string {
	// Whole requests per second where that is precise enough; a rate
	// under 100/s keeps three significant digits, so that a low rate does
	// not print as a division by 0.
	rate := fmt.Sprintf("%.0f", b.Rate)
	if b.Rate < 100 {
		rate = fmt.Sprintf("%.3g", b.Rate)
	}
	if time.Duration(b.Windows)*b.Window == b.Outage {
		return fmt.Sprintf("1 + %g + %g/%s", b.Ratio, b.Floor, rate)
	}
	return fmt.Sprintf("1 + (%g + %g/%s) x %d windows/outage", b.Ratio, b.Floor, rate, b.Windows)
}
