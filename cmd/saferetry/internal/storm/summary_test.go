package storm

import (
	"math"
	"testing"
	"time"

	"github.com/saferetry/saferetry/internal/overload"
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
		r.Finish(0, true, 5*time.Millisecond)
	}
	for range 60 {
		r.Finish(0, false, 0)
	}

	s := Summarize(r, ph)
	want := Summary{
		Logical: 100, Succeeded: 40, Attempts: 220,
		OutageLogical: 30, OutageAttempts: 120,
		PeakOutage: 40, PeakAfter: 20, Normal: 10,
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
		rate    float64
		want    float64
		formula string
	}{
		{"busy", 600_000, 60 * time.Second, 10, 1000, 1 + 0.1 + 1001.0/60000, "1 + 0.1 + (1e+03+1)/60000"},
		{"10/s", 600_000, 60 * time.Second, 1000, 10, 1 + 0.1 + 11.0/600, "1 + 0.1 + (10+1)/600"},
		{"1/s: the allowance", 600_000, 60 * time.Second, 10_000, 1, 1 + 0.1 + 3.0/60, "1 + 0.1 + (2+1)/60"},
		{"a few requests each", 2500, 500 * time.Millisecond, 1000, 5, 1 + 0.1 + 6/2.5, "1 + 0.1 + (5+1)/2.5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ph := Phases{OutageStart: time.Second, OutageEnd: time.Second + tt.outage, End: 2*time.Second + tt.outage}
			b := BudgetBound(Summary{OutageLogical: tt.logical}, ph, tt.budgets)
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

// TestBudgetDefaults checks the constants the bound is computed from
// against saferetry's own configuration.
func TestBudgetDefaults(t *testing.T) {
	p := saferetryConfig.Params()
	if p.Ratio != BudgetRatio || p.Allowance != BudgetAllowance || p.Window != BudgetWindow {
		t.Errorf("saferetry's budget: ratio %v, allowance %v, window %v; the bound assumes %v, %v, %v",
			p.Ratio, p.Allowance, p.Window, BudgetRatio, BudgetAllowance, BudgetWindow)
	}
	if d := overload.Defaults(BudgetRatio); d != p {
		t.Errorf("the simulator's budget %+v, want saferetry's defaults %+v", p, d)
	}
}

// TestBudgetBoundForEvenLoad drives saferetry's budget (one host, the
// library's code) as a storm does, with requests evenly spaced and
// outcomes unrecorded (so the gate stays open and the budget alone is
// measured): one request per millisecond, each retried while the budget
// allows, through a 60s outage after 30s of normal load. The retries made
// during the outage then reach the bound, less what the cap had yet to
// reach after 30s (the average's e^-3, 5% of it), the phase's retry, and
// what is left unspent at the end, under one retry each.
func TestBudgetBoundForEvenLoad(t *testing.T) {
	for _, phase := range []float64{0, 0.5, 0.999} {
		var h overload.Host
		h.Init(saferetryConfig, 0, phase)
		ph := Phases{OutageStart: 30 * time.Second, OutageEnd: 90 * time.Second, End: 120 * time.Second}
		var s Summary
		for now := time.Duration(0); now < ph.End; now += time.Millisecond {
			h.Deposit(saferetryConfig, now)
			if now < ph.OutageStart || now >= ph.OutageEnd {
				continue
			}
			s.OutageLogical++
			s.OutageAttempts++
			for range 3 {
				if !h.Withdraw(saferetryConfig, now, overload.Answered) {
					break
				}
				s.OutageAttempts++
			}
		}
		bound := BudgetBound(s, ph, 1)
		got := s.OutageAmplification()
		if low := bound.Value - (bound.Cap*math.Exp(-3)+3)/bound.N; got > bound.Value || got < low {
			t.Errorf("phase %v: amplification %v, want the bound %v (%s), less up to the phase's retry", phase, got, bound.Value, bound.Formula())
		}
	}
}
