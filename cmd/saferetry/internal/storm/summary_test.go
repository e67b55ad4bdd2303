package storm

import (
	"math"
	"testing"
	"time"

	"github.com/saferetry/saferetry"
)

func TestCentered(t *testing.T) {
	tests := []struct {
		total, outage time.Duration
		want          Phases
	}{
		{6 * time.Second, 3 * time.Second, Phases{1500 * time.Millisecond, 4500 * time.Millisecond, 6 * time.Second}},
		{120 * time.Second, 60 * time.Second, Phases{30 * time.Second, 90 * time.Second, 120 * time.Second}},
		{1500 * time.Millisecond, 400 * time.Millisecond, Phases{500 * time.Millisecond, 900 * time.Millisecond, 1500 * time.Millisecond}},
	}
	for _, tt := range tests {
		if got := Centered(tt.total, tt.outage); got != tt.want {
			t.Errorf("Centered(%v, %v) = %+v, want %+v", tt.total, tt.outage, got, tt.want)
		}
	}
}

// fill records a synthetic run, one bucket per element: started logical
// requests, attempts and served attempts.
func fill(r *Recorder, started, attempts, served []int64) {
	for i := range attempts {
		at := time.Duration(i) * BucketWidth
		for range started[i] {
			r.Start(at)
		}
		for n := range attempts[i] {
			r.Attempt(at, n < served[i])
		}
	}
}

func TestSummarize(t *testing.T) {
	// 1s run, outage in buckets 3-5 (300ms-600ms), ten logical requests a
	// bucket. The outage quadruples the attempts; after it the server
	// serves 5/10, then 19/20 (95%: healthy) for the rest of the run.
	ph := Phases{OutageStart: 300 * time.Millisecond, OutageEnd: 600 * time.Millisecond, End: time.Second}
	started := []int64{10, 10, 10, 10, 10, 10, 10, 10, 10, 10}
	attempts := []int64{10, 10, 10, 40, 40, 40, 10, 20, 20, 20}
	served := []int64{10, 10, 10, 0, 0, 0, 5, 19, 19, 19}
	r := NewRecorder(ph.End)
	fill(r, started, attempts, served)
	for range 40 {
		r.Finish(true, 5*time.Millisecond)
	}
	for range 60 {
		r.Finish(false, 0)
	}

	s := Summarize(r, ph)
	want := Summary{
		Logical: 100, Succeeded: 40, Attempts: 220,
		OutageLogical: 30, OutageAttempts: 120,
		PeakOutage: 40, PeakAfter: 20,
		Recovery: 100 * time.Millisecond, Recovered: true, // 3 healthy buckets, to the end of the run
	}
	s.P50, s.P99 = 0, 0
	if s != want {
		t.Errorf("Summarize:\n got %+v\nwant %+v", s, want)
	}
	if got := s.OutageAmplification(); got != 4 {
		t.Errorf("outage amplification %v, want 4", got)
	}
	if got := s.SuccessRate(); got != 0.4 {
		t.Errorf("success rate %v, want 0.4", got)
	}
}

func TestSummarizeRecovery(t *testing.T) {
	ph := Phases{OutageStart: 100 * time.Millisecond, OutageEnd: 200 * time.Millisecond, End: 1500 * time.Millisecond}
	tests := []struct {
		name      string
		served    []int64 // of 100 attempts per bucket, from bucket 2
		want      time.Duration
		recovered bool
	}{
		{"at once", []int64{100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100}, 0, true},
		{"after two bad buckets", []int64{50, 90, 95, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100}, 200 * time.Millisecond, true},
		{"four healthy buckets are not enough", []int64{50, 100, 100, 100, 100, 94, 100, 100, 100, 100, 100, 100, 100}, 600 * time.Millisecond, true},
		{"never", []int64{50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 94}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			attempts := make([]int64, 15)
			served := make([]int64, 15)
			for i, v := range tt.served {
				attempts[i+2], served[i+2] = 100, v
			}
			r := NewRecorder(ph.End)
			fill(r, make([]int64, 15), attempts, served)
			s := Summarize(r, ph)
			if s.Recovered != tt.recovered || s.Recovery != tt.want {
				t.Errorf("recovery %v (recovered %t), want %v (%t)", s.Recovery, s.Recovered, tt.want, tt.recovered)
			}
		})
	}
}

func TestBudgetBound(t *testing.T) {
	tests := []struct {
		name    string
		logical int64
		outage  time.Duration
		budgets int
		window  time.Duration
		rate    float64
		want    float64
		formula string
	}{
		{"whole windows", 600_000, 60 * time.Second, 10, 10 * time.Second, 1000, 1.11, "1 + 0.1 + 10/1000"},
		{"one budget", 1500, 3 * time.Second, 1, time.Second, 500, 1.12, "1 + 0.1 + 10/500"},
		{"part of a window", 1500, 3 * time.Second, 1, 2 * time.Second, 500, 1 + 0.12*4.0/3, "1 + (0.1 + 10/500) x 2 windows/outage"},
		{"under one request per second per budget", 300, 60 * time.Second, 1000, 10 * time.Second, 0.005, 1 + 0.1 + 2000, "1 + 0.1 + 10/0.005"},
		{"a few requests per second", 2500, 500 * time.Millisecond, 1000, 10 * time.Second, 5, 1 + (0.1+2)*20, "1 + (0.1 + 10/5) x 1 windows/outage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ph := Phases{OutageStart: time.Second, OutageEnd: time.Second + tt.outage, End: 2*time.Second + tt.outage}
			b := BudgetBound(Summary{OutageLogical: tt.logical}, ph, tt.budgets, BudgetRatio, BudgetFloor, tt.window)
			if math.Abs(b.Rate-tt.rate) > 1e-9 || math.Abs(b.Value-tt.want) > 1e-9 {
				t.Errorf("rate %v, bound %v; want %v, %v", b.Rate, b.Value, tt.rate, tt.want)
			}
			if got := b.Formula(); got != tt.formula {
				t.Errorf("formula %q, want %q", got, tt.formula)
			}
			if !b.Holds(tt.want) || b.Holds(tt.want+0.001) {
				t.Errorf("Holds is not a comparison with %v", b.Value)
			}
		})
	}
}

// virtualClock is a clock for a Budget that moves only when told.
type virtualClock struct{ now time.Duration }

func (c *virtualClock) Now() time.Time { return time.Unix(0, 0).Add(c.now) }

// TestBudgetDefaults checks the constants the bound is computed from
// against a real default Budget: a fresh host may retry floor*window
// times, each ten requests earn one more retry, and spent retries come back
// after a window.
func TestBudgetDefaults(t *testing.T) {
	clock := &virtualClock{}
	b := saferetry.NewBudget(saferetry.BudgetClock(clock.Now))
	withdrawAll := func() int {
		n := 0
		for b.Withdraw("h") {
			n++
		}
		return n
	}
	if got, want := withdrawAll(), int(BudgetFloor*BudgetWindow.Seconds()); got != want {
		t.Fatalf("a fresh budget allowed %d retries, want floor x window = %d", got, want)
	}
	for range int(1 / BudgetRatio) {
		b.Deposit("h")
	}
	if got := withdrawAll(); got != 1 {
		t.Fatalf("%v deposits earned %d retries, want 1", 1/BudgetRatio, got)
	}
	clock.now = BudgetWindow
	if got, want := withdrawAll(), int(BudgetFloor*BudgetWindow.Seconds()); got != want {
		t.Errorf("a window later the budget allowed %d retries, want the reserve again, %d", got, want)
	}
}

// TestBudgetBoundExactForEvenLoad drives a default Budget as a storm does,
// but with requests evenly spaced: one every millisecond, each retried
// while the budget allows, through a 60s outage after 30s of normal load.
// The retries made during the outage then reach the bound exactly.
func TestBudgetBoundExactForEvenLoad(t *testing.T) {
	clock := &virtualClock{}
	b := saferetry.NewBudget(saferetry.BudgetClock(clock.Now))
	ph := Phases{OutageStart: 30 * time.Second, OutageEnd: 90 * time.Second, End: 120 * time.Second}
	var s Summary
	for clock.now = 0; clock.now < ph.End; clock.now += time.Millisecond {
		b.Deposit("h")
		if clock.now < ph.OutageStart || clock.now >= ph.OutageEnd {
			continue
		}
		s.OutageLogical++
		s.OutageAttempts++
		for b.Withdraw("h") {
			s.OutageAttempts++
		}
	}
	bound := BudgetBound(s, ph, 1, BudgetRatio, BudgetFloor, BudgetWindow)
	if got := s.OutageAmplification(); math.Abs(got-bound.Value) > 1e-9 {
		t.Errorf("amplification %v, want the bound %v (%s) exactly", got, bound.Value, bound.Formula())
	}
}
