package storm

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

// testSim is a small storm with the defaults' shape: 10 000 clients in one
// instance starting 1000 logical requests per second, a server serving
// twice that, and a 60s outage in a 120s run (six budget windows).
func testSim(seed uint64) SimParams {
	return SimParams{
		Clients:   10_000,
		Instances: 1,
		Think:     10 * time.Second,
		Capacity:  200,
		Service:   5 * time.Millisecond,
		Phases:    Centered(120*time.Second, 60*time.Second),
		Seed:      seed,
	}
}

func config(t *testing.T, name string) Config {
	t.Helper()
	for _, c := range Configs {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no configuration %q", name)
	return Config{}
}

func TestSimulateIsDeterministic(t *testing.T) {
	c := config(t, "full+budget")
	run := func(seed uint64) (Series, time.Duration, time.Duration) {
		rec, _, err := Simulate(c, testSim(seed))
		if err != nil {
			t.Fatal(err)
		}
		return rec.Series(), rec.Quantile(0.5), rec.Quantile(0.99)
	}
	s1, p50, p99 := run(7)
	s2, p50b, p99b := run(7)
	if !reflect.DeepEqual(s1, s2) || p50 != p50b || p99 != p99b {
		t.Errorf("two runs with seed 7 differ")
	}
	if s3, _, _ := run(8); reflect.DeepEqual(s1.Attempts, s3.Attempts) {
		t.Errorf("seeds 7 and 8 gave the same attempts")
	}
}

// TestSimulateAmplification checks the storm's headline figures: without
// retries the outage costs one attempt per logical request, with three
// retries and no budget four, and with the default budget at most
// 1 + 0.1 + floor/rate (with a small tolerance for random arrivals; the
// exact bound for even arrivals is TestBudgetBoundExactForEvenLoad's).
func TestSimulateAmplification(t *testing.T) {
	p := testSim(1)
	var logical int64
	for _, c := range Configs {
		t.Run(c.Name, func(t *testing.T) {
			rec, _, err := Simulate(c, p)
			if err != nil {
				t.Fatal(err)
			}
			s := Summarize(rec, p.Phases)
			if logical == 0 {
				logical = s.Logical
			} else if s.Logical != logical {
				t.Errorf("%d logical requests, but the first configuration had %d: arrivals should not depend on the configuration", s.Logical, logical)
			}
			got := s.OutageAmplification()
			switch {
			case c.MaxRetries == 0:
				if got != 1 {
					t.Errorf("outage amplification %v, want 1", got)
				}
			case !c.Budget:
				// Requests started in the outage's last 700ms have retries
				// after it: 4 - 1.1s/60s at most.
				if want := 1.0 + float64(c.MaxRetries); got > want || got < want-0.02 {
					t.Errorf("outage amplification %v, want about %v", got, want)
				}
			default:
				b := BudgetBound(s, p.Phases, p.Instances, BudgetRatio, BudgetFloor, BudgetWindow)
				if limit := b.Value + 0.01*(b.Value-1); got > limit {
					t.Errorf("outage amplification %v, over the bound %v (%s) + 1%% of its retries", got, b.Value, b.Formula())
				}
				if got < 1.1 {
					t.Errorf("outage amplification %v: the budget allows more than it spent", got)
				}
			}
			if s.SuccessRate() < 0.45 || s.SuccessRate() > 0.6 {
				t.Errorf("success rate %v: half the run is an outage, want about half", s.SuccessRate())
			}
		})
	}
}

func TestSimulateOutageAfterwards(t *testing.T) {
	// With no budget the backlog of retries meets the server as it
	// recovers, and it takes a while to serve 95% again; with the budget it
	// recovers at once.
	p := testSim(1)
	for _, tt := range []struct {
		name         string
		wantRecovery bool
	}{{"no-jitter", true}, {"full+budget", false}} {
		rec, _, err := Simulate(config(t, tt.name), p)
		if err != nil {
			t.Fatal(err)
		}
		s := Summarize(rec, p.Phases)
		if !s.Recovered {
			t.Errorf("%s: never recovered", tt.name)
		}
		if got := s.Recovery > 0; got != tt.wantRecovery {
			t.Errorf("%s: recovery took %v", tt.name, s.Recovery)
		}
		if tt.wantRecovery && s.PeakAfter <= int64(p.Capacity) {
			t.Errorf("%s: peak after the outage %d, want over the capacity %d", tt.name, s.PeakAfter, p.Capacity)
		}
	}
}

func TestSimulateEventLimit(t *testing.T) {
	p := testSim(1)
	p.MaxEvents = 1000
	_, stats, err := Simulate(config(t, "no-jitter"), p)
	if !errors.Is(err, ErrEventLimit) || stats.Events != 1000 {
		t.Errorf("got %d events and error %v, want 1000 and ErrEventLimit", stats.Events, err)
	}
}

func TestSimulateProgress(t *testing.T) {
	p := testSim(1)
	p.ProgressEvery = 10_000
	var calls int
	var last time.Duration
	p.Progress = func(now time.Duration, events int64) {
		calls++
		if now < last || events != int64(calls)*p.ProgressEvery {
			t.Errorf("progress call %d: at %v with %d events", calls, now, events)
		}
		last = now
	}
	if _, _, err := Simulate(config(t, "no-retries"), p); err != nil {
		t.Fatal(err)
	}
	if calls == 0 {
		t.Errorf("no progress reported")
	}
}

func TestSimParamsValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*SimParams)
	}{
		{"no clients", func(p *SimParams) { p.Clients = 0 }},
		{"more instances than clients", func(p *SimParams) { p.Instances = p.Clients + 1 }},
		{"no think time", func(p *SimParams) { p.Think = 0 }},
		{"negative capacity", func(p *SimParams) { p.Capacity = -1 }},
		{"outage ends before it starts", func(p *SimParams) { p.Phases.OutageEnd = p.Phases.OutageStart - 1 }},
		{"outage past the end", func(p *SimParams) { p.Phases.End = p.Phases.OutageEnd - 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testSim(1)
			tt.change(&p)
			if _, _, err := Simulate(Configs[0], p); err == nil {
				t.Errorf("Simulate accepted %+v", p)
			}
		})
	}
}
