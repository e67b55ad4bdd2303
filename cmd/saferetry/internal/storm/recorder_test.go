package storm

import (
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	tests := []struct {
		name   string
		values []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"exact small values", []time.Duration{1, 2, 3, 4, 100}, 0.5, 3},
		{"p99 of a hundred", spread(time.Millisecond, 100), 0.99, 99 * time.Millisecond},
		{"p50 of a hundred", spread(time.Millisecond, 100), 0.5, 50 * time.Millisecond},
		{"max", spread(time.Second, 10), 1, 10 * time.Second},
		{"a single value", []time.Duration{5 * time.Millisecond}, 0.01, 5 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h histogram
			for _, v := range tt.values {
				h.add(v)
			}
			got := h.quantile(tt.q)
			if err := math.Abs(float64(got-tt.want)) / math.Max(float64(tt.want), 1); err > 1.0/256 {
				t.Errorf("quantile(%v) = %v, want %v within 1/256", tt.q, got, tt.want)
			}
		})
	}
}

// spread returns step, 2*step, ..., n*step.
func spread(step time.Duration, n int) []time.Duration {
	var out []time.Duration
	for i := 1; i <= n; i++ {
		out = append(out, time.Duration(i)*step)
	}
	return out
}

func TestHistogramIndexIsMonotonicAndTight(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 257, 1000, 1 << 20, 5e6, 1e9, 1e12, math.MaxInt64} {
		i := histIndex(v)
		if i < prev {
			t.Errorf("histIndex(%d) = %d, below the index of a smaller value (%d)", v, i, prev)
		}
		prev = i
		mid := histValue(i)
		if d := math.Abs(float64(mid) - float64(v)); d > float64(v)/128+1 {
			t.Errorf("histValue(histIndex(%d)) = %d, off by more than 1/128", v, mid)
		}
	}
	if n := len(histogram{}.counts); histIndex(math.MaxInt64) >= n {
		t.Errorf("histIndex(MaxInt64) = %d, out of %d counters", histIndex(math.MaxInt64), n)
	}
}

func TestRecorderBuckets(t *testing.T) {
	r := NewRecorder(time.Second) // 10 buckets
	r.Attempt(-time.Second, true) // before the start: first bucket
	r.Attempt(150*time.Millisecond, false)
	r.Attempt(199*time.Millisecond, true)
	r.Attempt(time.Hour, false) // past the span: last bucket
	r.Start(0)
	r.Start(950 * time.Millisecond)
	r.Finish(950*time.Millisecond, true, 7*time.Millisecond)
	r.Finish(0, false, 0)
	r.Retry(120 * time.Millisecond)
	r.Throttle(310 * time.Millisecond)

	s := r.Series()
	if want := []int64{1, 2, 0, 0, 0, 0, 0, 0, 0, 1}; !slices.Equal(s.Attempts, want) {
		t.Errorf("attempts %v, want %v", s.Attempts, want)
	}
	if want := []int64{1, 1, 0, 0, 0, 0, 0, 0, 0, 0}; !slices.Equal(s.Served, want) {
		t.Errorf("served %v, want %v", s.Served, want)
	}
	if want := []int64{1, 0, 0, 0, 0, 0, 0, 0, 0, 1}; !slices.Equal(s.Started, want) {
		t.Errorf("started %v, want %v", s.Started, want)
	}
	if want := []int64{0, 0, 0, 0, 0, 0, 0, 0, 0, 1}; !slices.Equal(s.OKStarted, want) {
		t.Errorf("succeeded by start %v, want %v", s.OKStarted, want)
	}
	if want := []int64{0, 1, 0, 0, 0, 0, 0, 0, 0, 0}; !slices.Equal(s.Retries, want) {
		t.Errorf("retries %v, want %v", s.Retries, want)
	}
	if want := []int64{0, 0, 0, 1, 0, 0, 0, 0, 0, 0}; !slices.Equal(s.Throttled, want) {
		t.Errorf("throttled %v, want %v", s.Throttled, want)
	}
	if s.Succeeded != 1 || s.Failed != 1 {
		t.Errorf("succeeded %d, failed %d; want 1 and 1", s.Succeeded, s.Failed)
	}
	if got := r.Quantile(0.5); got < 6900*time.Microsecond || got > 7100*time.Microsecond {
		t.Errorf("median latency %v, want about 7ms (failures are not latencies)", got)
	}
}

// TestTallyCountsAsRecorder feeds the same counts to a Recorder and to a
// tally, random times and outcomes included, and compares what each
// reports.
func TestTallyCountsAsRecorder(t *testing.T) {
	const span = 3 * time.Second
	r, tl := NewRecorder(span), newTally(span)
	rnd := rand.New(rand.NewPCG(1, 2))
	at := func() time.Duration { return time.Duration(rnd.Int64N(int64(2*span))) - span/2 }
	for range 10_000 {
		a, ok := at(), rnd.IntN(2) == 0
		switch rnd.IntN(5) {
		case 0:
			r.Attempt(a, ok)
			tl.attempt(a, ok)
		case 1:
			r.Retry(a)
			tl.retry(a)
		case 2:
			r.Throttle(a)
			tl.throttle(a)
		case 3:
			r.Start(a)
			tl.start(a)
		case 4:
			latency := time.Duration(rnd.Int64N(int64(time.Minute)))
			r.Finish(a, ok, latency)
			tl.finish(a, ok, latency)
		}
	}
	got := tl.recorder()
	if !reflect.DeepEqual(got.Series(), r.Series()) {
		t.Errorf("a tally's series differ from a Recorder's:\n%+v\n%+v", got.Series(), r.Series())
	}
	for _, q := range []float64{0.01, 0.5, 0.99, 1} {
		if got, want := got.Quantile(q), r.Quantile(q); got != want {
			t.Errorf("quantile %v: tally %v, Recorder %v", q, got, want)
		}
	}
}
