// Package latency keeps, per host, a decaying histogram of how long
// attempts took to get their response headers, to hedge after a quantile
// of a host's recent latencies.
package latency

import (
	"math/bits"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// subBits splits each power of two into 2^subBits buckets, so a
	// quantile is known within about 2^-subBits (19%) of its value.
	subBits = 2
	// buckets covers 1ns to 2^40ns (about 18 minutes); longer times land
	// in the last bucket.
	buckets = 41 << subBits
	// halfLife is the number of observations after which older ones
	// weigh half: the histogram follows a host whose latency changes.
	halfLife = 512
	// MinSamples is the fewest observations a host needs before its
	// quantiles are trusted.
	MinSamples = 20
	// idleAfter is how long a host may go unobserved before it is
	// forgotten; sweeps run at most once per sweepEvery.
	idleAfter  = 10 * time.Minute
	sweepEvery = time.Minute
)

// Table holds the histograms of every host observed, forgetting hosts
// idle for ten minutes, so that a client talking to an unbounded number of
// hosts keeps bounded memory (about 700 bytes per host). The zero value
// is ready to use; a Table is safe for concurrent use and must not be
// copied after first use.
type Table struct {
	hosts     sync.Map     // host string -> *histogram
	nextSweep atomic.Int64 // unix nanoseconds at or after which to sweep
}

type histogram struct {
	mu       sync.Mutex
	counts   [buckets]float64
	total    float64
	samples  int   // observations since creation, to MinSamples
	lastSeen int64 // unix nanoseconds, atomically
}

// Observe records that an attempt to host took d to get its response
// headers (or was abandoned after d, which is a lower bound: counting it
// keeps the tail of a host whose slow attempts are all hedged away).
func (t *Table) Observe(host string, d time.Duration, now time.Time) {
	h := t.histogram(host, now)
	atomic.StoreInt64(&h.lastSeen, now.UnixNano())
	h.mu.Lock()
	defer h.mu.Unlock()
	h.samples++
	if h.samples%halfLife == 0 {
		for i := range h.counts {
			h.counts[i] /= 2
		}
		h.total /= 2
	}
	h.counts[bucket(d)]++
	h.total++
}

// Quantile returns the q-quantile of host's recent latencies, the upper
// edge of the bucket it falls in, and false when the host has fewer than
// MinSamples observations.
func (t *Table) Quantile(host string, q float64) (time.Duration, bool) {
	v, ok := t.hosts.Load(host)
	if !ok {
		return 0, false
	}
	h := v.(*histogram)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.samples < MinSamples {
		return 0, false
	}
	want, sum := q*h.total, 0.0
	for i, c := range h.counts {
		sum += c
		if sum >= want {
			return upperEdge(i), true
		}
	}
	return upperEdge(buckets - 1), true
}

func (t *Table) histogram(host string, now time.Time) *histogram {
	if v, ok := t.hosts.Load(host); ok {
		return v.(*histogram)
	}
	t.sweep(now)
	v, _ := t.hosts.LoadOrStore(strings.Clone(host), &histogram{lastSeen: now.UnixNano()})
	return v.(*histogram)
}

// sweep forgets hosts idle for idleAfter, at most once per sweepEvery, on
// the path that adds a host (the only one that makes the table grow).
func (t *Table) sweep(now time.Time) {
	next, ns := t.nextSweep.Load(), now.UnixNano()
	if ns < next || !t.nextSweep.CompareAndSwap(next, ns+int64(sweepEvery)) {
		return
	}
	t.hosts.Range(func(k, v any) bool {
		if ns-atomic.LoadInt64(&v.(*histogram).lastSeen) >= int64(idleAfter) {
			t.hosts.CompareAndDelete(k, v)
		}
		return true
	})
}

// bucket returns d's bucket: its power of two and the next subBits bits.
func bucket(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	n := uint64(d)
	exp := bits.Len64(n) - 1 // n is in [2^exp, 2^(exp+1))
	if exp < subBits {
		return int(n) // small values are exact
	}
	sub := (n >> (exp - subBits)) & (1<<subBits - 1)
	return min(exp<<subBits|int(sub), buckets-1)
}

// upperEdge returns the largest duration in bucket i.
func upperEdge(i int) time.Duration {
	exp, sub := i>>subBits, uint64(i&(1<<subBits-1))
	if exp < subBits {
		return time.Duration(i)
	}
	return time.Duration((1<<subBits|sub+1)<<(exp-subBits) - 1)
}
