package storm

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// BucketWidth is the resolution of a storm's time series: attempts and
// logical requests are counted per 100 ms.
const BucketWidth = 100 * time.Millisecond

// Recorder counts what happens during one configuration's run, by time
// since the run began: attempts the server received (served or rejected),
// the retries among them, attempts rejected locally by a throttle, and
// logical requests started and, by the time they started, succeeded, per
// BucketWidth; and the outcome and latency of each logical request. A
// time past the recorder's span counts in its last bucket; a negative
// time in its first. All methods are safe for concurrent use and allocate
// nothing.
type Recorder struct {
	attempts  []atomic.Int64
	served    []atomic.Int64
	retries   []atomic.Int64
	throttled []atomic.Int64
	started   []atomic.Int64
	okStarted []atomic.Int64 // logical requests started in the bucket that succeeded

	succeeded atomic.Int64
	failed    atomic.Int64
	latency   histogram
}

// NewRecorder returns a Recorder whose buckets cover [0, span).
func NewRecorder(span time.Duration) *Recorder {
	n := buckets(span)
	return &Recorder{
		attempts:  make([]atomic.Int64, n),
		served:    make([]atomic.Int64, n),
		retries:   make([]atomic.Int64, n),
		throttled: make([]atomic.Int64, n),
		started:   make([]atomic.Int64, n),
		okStarted: make([]atomic.Int64, n),
	}
}

// buckets returns how many buckets cover [0, span).
func buckets(span time.Duration) int { return max(int((span+BucketWidth-1)/BucketWidth), 1) }

// bucketAt returns the bucket of n that time at counts in.
func bucketAt(at time.Duration, n int) int { return min(max(int(at/BucketWidth), 0), n-1) }

func (r *Recorder) bucket(at time.Duration) int { return bucketAt(at, len(r.attempts)) }

// Attempt records an attempt that reached the server at time at, and
// whether the server served it (false: it answered 503 at once).
func (r *Recorder) Attempt(at time.Duration, served bool) {
	i := r.bucket(at)
	r.attempts[i].Add(1)
	if served {
		r.served[i].Add(1)
	}
}

// Retry records that the attempt sent at time at (and recorded with
// Attempt) was a retry.
func (r *Recorder) Retry(at time.Duration) { r.retries[r.bucket(at)].Add(1) }

// Throttle records an attempt a throttle rejected locally at time at: it
// never reached the server.
func (r *Recorder) Throttle(at time.Duration) { r.throttled[r.bucket(at)].Add(1) }

// Start records a logical request started at time at.
func (r *Recorder) Start(at time.Duration) {
	r.started[r.bucket(at)].Add(1)
}

// Finish records how a logical request started at time start ended: ok
// if its final response was a success, in which case latency (from its
// start to its final response, retries and waits included) joins the
// latency distribution.
func (r *Recorder) Finish(start time.Duration, ok bool, latency time.Duration) {
	if !ok {
		r.failed.Add(1)
		return
	}
	r.succeeded.Add(1)
	r.okStarted[r.bucket(start)].Add(1)
	r.latency.add(latency)
}

// Series is a snapshot of a Recorder's counts.
type Series struct {
	// Attempts, Served, Retries, Throttled, Started and OKStarted are per
	// BucketWidth from time 0.
	Attempts, Served, Retries, Throttled, Started, OKStarted []int64
	// Succeeded and Failed count logical requests by outcome.
	Succeeded, Failed int64
}

// Series returns a snapshot of the counts. Take it once the run is over:
// counts recorded while it is being taken may or may not be in it.
func (r *Recorder) Series() Series {
	load := func(c []atomic.Int64) []int64 {
		out := make([]int64, len(c))
		for i := range c {
			out[i] = c[i].Load()
		}
		return out
	}
	return Series{
		Attempts:  load(r.attempts),
		Served:    load(r.served),
		Retries:   load(r.retries),
		Throttled: load(r.throttled),
		Started:   load(r.started),
		OKStarted: load(r.okStarted),
		Succeeded: r.succeeded.Load(),
		Failed:    r.failed.Load(),
	}
}

// Quantile returns the q-quantile (0 < q <= 1) of the latencies of
// successful logical requests, within 0.4%, or 0 if there were none.
func (r *Recorder) Quantile(q float64) time.Duration { return r.latency.quantile(q) }

// histogram is a log-linear histogram of durations, in the manner of
// HdrHistogram: values under 2^subBits ns are exact, larger values fall in
// one of 2^subBits buckets per power of two, so a bucket is at most 1/128
// of its values wide. Safe for concurrent use.
type histogram struct {
	counts [histLen]atomic.Int64
}

const (
	subBits = 7
	histLen = (64 - subBits + 1) << subBits
)

func histIndex(v int64) int {
	if v < 1<<subBits {
		return int(max(v, 0))
	}
	shift := bits.Len64(uint64(v)) - subBits - 1
	return (shift+1)<<subBits + int(v>>shift) - 1<<subBits
}

// histValue returns the middle of the values bucket i holds.
func histValue(i int) int64 {
	if i < 1<<subBits {
		return int64(i)
	}
	shift := i>>subBits - 1
	lo := int64(i&(1<<subBits-1)+1<<subBits) << shift
	return lo + (int64(1)<<shift)/2
}

func (h *histogram) add(d time.Duration) { h.counts[histIndex(int64(d))].Add(1) }

func (h *histogram) quantile(q float64) time.Duration {
	var total int64
	for i := range h.counts {
		total += h.counts[i].Load()
	}
	if total == 0 {
		return 0
	}
	rank := max(int64(math.Ceil(q*float64(total))), 1)
	var seen int64
	for i := range h.counts {
		if seen += h.counts[i].Load(); seen >= rank {
			return time.Duration(histValue(i))
		}
	}
	return time.Duration(histValue(len(h.counts) - 1))
}

// tally counts what a Recorder counts, in plain integers, for one
// goroutine: a simulation counts into one and hands it to a Recorder once
// it is over, sparing the locked instruction of an atomic add per count,
// of which a million clients' run makes tens of millions.
type tally struct {
	attempts, served, retries, throttled, started, okStarted []int64
	succeeded, failed                                        int64
	latency                                                  [histLen]int64
}

func newTally(span time.Duration) *tally {
	n := buckets(span)
	return &tally{
		attempts: make([]int64, n), served: make([]int64, n), retries: make([]int64, n),
		throttled: make([]int64, n), started: make([]int64, n), okStarted: make([]int64, n),
	}
}

func (t *tally) bucket(at time.Duration) int { return bucketAt(at, len(t.attempts)) }

// attempt, retry, throttle, start and finish count as Recorder's
// methods of the same names do.

func (t *tally) attempt(at time.Duration, served bool) {
	i := t.bucket(at)
	t.attempts[i]++
	if served {
		t.served[i]++
	}
}

func (t *tally) retry(at time.Duration)    { t.retries[t.bucket(at)]++ }
func (t *tally) throttle(at time.Duration) { t.throttled[t.bucket(at)]++ }
func (t *tally) start(at time.Duration)    { t.started[t.bucket(at)]++ }

func (t *tally) finish(start time.Duration, ok bool, latency time.Duration) {
	if !ok {
		t.failed++
		return
	}
	t.succeeded++
	t.okStarted[t.bucket(start)]++
	t.latency[histIndex(int64(latency))]++
}

// recorder returns a Recorder holding t's counts.
func (t *tally) recorder() *Recorder {
	n := len(t.attempts)
	r := NewRecorder(time.Duration(n) * BucketWidth)
	store := func(dst []atomic.Int64, src []int64) {
		for i, v := range src {
			dst[i].Store(v)
		}
	}
	store(r.attempts, t.attempts)
	store(r.served, t.served)
	store(r.retries, t.retries)
	store(r.throttled, t.throttled)
	store(r.started, t.started)
	store(r.okStarted, t.okStarted)
	store(r.latency.counts[:], t.latency[:])
	r.succeeded.Store(t.succeeded)
	r.failed.Store(t.failed)
	return r
}
