package latency

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBucketsCoverEveryDuration(t *testing.T) {
	for _, d := range []time.Duration{1, 3, 4, 7, 1000, time.Millisecond, 1234567, time.Second, time.Hour, 1 << 62} {
		i := bucket(d)
		if i < 0 || i >= buckets {
			t.Fatalf("bucket(%v) = %d", d, i)
		}
		if d < 1<<40 && upperEdge(i) < d {
			t.Fatalf("%v in bucket %d whose upper edge is %v", d, i, upperEdge(i))
		}
		if d < 1<<40 && bucket(upperEdge(i)) != i {
			t.Fatalf("bucket %d's upper edge %v lands in bucket %d", i, upperEdge(i), bucket(upperEdge(i)))
		}
		if d >= 4 && d < 1<<40 && float64(upperEdge(i)) > 1.26*float64(d) {
			t.Fatalf("%v reported as %v: more than 25%% off", d, upperEdge(i))
		}
	}
}

func TestQuantileOfALongTail(t *testing.T) {
	var tb Table
	now := time.Unix(1e9, 0)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		d := time.Millisecond + time.Duration(rng.Int64N(int64(200*time.Microsecond)))
		if rng.Float64() < 0.05 {
			d = 200 * time.Millisecond
		}
		tb.Observe("api.test", d, now)
	}
	p90, ok := tb.Quantile("api.test", 0.9)
	if !ok || p90 < time.Millisecond || p90 > 1500*time.Microsecond {
		t.Fatalf("p90 = %v, %v; want about 1.2ms", p90, ok)
	}
	p99, _ := tb.Quantile("api.test", 0.99)
	if p99 < 200*time.Millisecond || p99 > 250*time.Millisecond {
		t.Fatalf("p99 = %v; want about 200ms", p99)
	}
}

func TestTooFewSamplesAreNotTrusted(t *testing.T) {
	var tb Table
	now := time.Unix(1e9, 0)
	if _, ok := tb.Quantile("api.test", 0.5); ok {
		t.Fatal("a host never seen has a quantile")
	}
	for range MinSamples - 1 {
		tb.Observe("api.test", time.Millisecond, now)
	}
	if _, ok := tb.Quantile("api.test", 0.5); ok {
		t.Fatal("trusted too few samples")
	}
	tb.Observe("api.test", time.Millisecond, now)
	if _, ok := tb.Quantile("api.test", 0.5); !ok {
		t.Fatal("enough samples not trusted")
	}
}

// The histogram follows a host whose latency changed.
func TestOldObservationsFade(t *testing.T) {
	var tb Table
	now := time.Unix(1e9, 0)
	for range 4 * halfLife {
		tb.Observe("api.test", 100*time.Millisecond, now)
	}
	for range 4 * halfLife {
		tb.Observe("api.test", time.Millisecond, now)
	}
	if p50, _ := tb.Quantile("api.test", 0.5); p50 > 2*time.Millisecond {
		t.Fatalf("p50 = %v after the host got fast; want about 1ms", p50)
	}
}

func TestIdleHostsAreForgotten(t *testing.T) {
	var tb Table
	start := time.Unix(1e9, 0)
	for i := range 1000 {
		tb.Observe(string(rune('a'+i%26))+"."+string(rune('a'+i/26))+".test", time.Millisecond, start)
	}
	later := start.Add(idleAfter + sweepEvery)
	tb.Observe("new.test", time.Millisecond, later)
	n := 0
	tb.hosts.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Fatalf("%d hosts kept after they were idle; want only the new one", n)
	}
}

func TestConcurrentUse(t *testing.T) {
	var tb Table
	var wg sync.WaitGroup
	now := time.Unix(1e9, 0)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				tb.Observe("api.test", time.Duration(g*1000+i)*time.Microsecond, now)
				tb.Quantile("api.test", 0.9)
			}
		}()
	}
	wg.Wait()
}
