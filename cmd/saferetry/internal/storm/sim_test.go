package storm

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

// testSim is a small storm with the defaults' shape: 10 000 clients in one
// instance starting 1000 logical requests per second, a server serving
// twice that, and a 60s outage in a 120s run.
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

func config(t testing.TB, name string) Config {
	t.Helper()
	for _, c := range append(Configs, OverloadConfigs...) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no configuration %q", name)
	return Config{}
}

func TestSimulateIsDeterministic(t *testing.T) {
	queue := testSim(0)
	queue.Queue, queue.Timeout, queue.OutageCapacity = true, time.Second, 0.2
	queue.Capacity = 150
	for _, tt := range []struct {
		config string
		p      func(seed uint64) SimParams
	}{
		{"full+budget", testSim},
		{"saferetry+K2", testSim},
		{"aws", testSim},
		{"budget+failsafe", func(seed uint64) SimParams { p := queue; p.Seed = seed; return p }},
		{"naive", func(seed uint64) SimParams { p := queue; p.Seed = seed; return p }},
	} {
		t.Run(tt.config, func(t *testing.T) {
			c := config(t, tt.config)
			run := func(seed uint64) (Series, time.Duration, time.Duration) {
				p := tt.p(seed)
				p.Phases = Centered(20*time.Second, 10*time.Second)
				rec, _, err := Simulate(c, p)
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
		})
	}
}

// TestSimulateAmplification checks the outage scenario's headline
// figures: without retries the outage costs one attempt per logical
// request, with three retries and no budget four, and with the default
// budget at most its bound.
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
			case !c.Budgeted():
				// Requests started in the outage's last 700ms have retries
				// after it: 4 - 1.1s/60s at most.
				if want := 1.0 + float64(c.MaxRetries); got > want || got < want-0.02 {
					t.Errorf("outage amplification %v, want about %v", got, want)
				}
			default:
				// One busy instance: its gate stops retries within a
				// fraction of a second.
				b := BudgetBound(s, p.Phases, p.Instances)
				if got > b.Value || got > 1.01 {
					t.Errorf("outage amplification %v, over the bound %v (%s) or 1.01", got, b.Value, b.Formula())
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

// TestSimulateQueue checks the queueing server against what a FIFO queue
// must do: below capacity every attempt is served within the timeout;
// losing capacity past the load builds a queue whose wait, once over the
// timeout, fails every attempt, and which drains at capacity - load once
// the trigger ends.
func TestSimulateQueue(t *testing.T) {
	p := SimParams{
		Clients: 10_000, Instances: 10, Think: 10 * time.Second, // 1000/s
		Capacity: 200, // 2000/s: load 0.5
		Phases:   Phases{OutageStart: 10 * time.Second, OutageEnd: 14 * time.Second, End: 40 * time.Second},
		// 20% of the capacity is 400/s: the queue grows by 600 attempts a
		// second, 2400 in all, 1.2s of work at full capacity, which then
		// drains at 1000/s of spare capacity: the wait falls by half a
		// second every second.
		OutageCapacity: 0.2, Queue: true, Timeout: time.Second, Seed: 1,
	}
	rec, _, err := Simulate(config(t, "no-retries"), p)
	if err != nil {
		t.Fatal(err)
	}
	s := rec.Series()
	for i := range 100 { // 0-10s
		if g := Goodput(s, i); g != 1 {
			t.Fatalf("bucket %d before the trigger: %.2f of requests succeeded, want all", i, g)
		}
	}
	r := recovery(s, p.Phases)
	// Requests started after the trigger wait the queue's work left:
	// 1.2s at its end, under the 1s timeout 0.4s later.
	if !r.Recovered || r.After < 300*time.Millisecond || r.After > 600*time.Millisecond {
		t.Errorf("recovery %+v, want about 400ms after the trigger", r)
	}
	if Goodput(s, 130) > 0.1 {
		t.Errorf("%.2f of the requests started at 13s succeeded, want almost none: the queue's wait is over the timeout", Goodput(s, 130))
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
		{"outage capacity over 1", func(p *SimParams) { p.OutageCapacity = 1.5 }},
		{"fail rate under 0", func(p *SimParams) { p.FailRate = -0.1 }},
		{"queue without a timeout", func(p *SimParams) { p.Queue = true }},
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

// BenchmarkSimulate times the event loop at the command's largest scale,
// a million clients (100 000 logical requests/s), over 20 s of virtual
// time: the metastable grid's heaviest run, naive retries collapsing a
// queueing server (every attempt times out, so each request stays in
// flight for four attempt timeouts, 400 000 at once), one in which the
// budget lets the server recover, and the outage scenario's instant
// server. Run it with -benchtime=3x: one iteration is seconds.
func BenchmarkSimulate(b *testing.B) {
	m := Metastable{
		Clients: 1_000_000, Instances: 20, Think: 10 * time.Second,
		TriggerAt: 5 * time.Second, Trigger: 3 * time.Second, Duration: 20 * time.Second, Timeout: time.Second, Seed: 1,
	}
	queue := SimParams{
		Clients: m.Clients, Instances: m.Instances, Think: m.Think, Capacity: m.Capacity(0.9),
		Phases: m.Phases(), OutageCapacity: 0.2, Queue: true, Timeout: m.Timeout, Seed: m.Seed,
	}
	instant := SimParams{
		Clients: m.Clients, Instances: 100, Think: m.Think, Capacity: 20_000,
		Service: 5 * time.Millisecond, Phases: Centered(20*time.Second, 10*time.Second), Seed: 1,
	}
	for _, bb := range []struct {
		name, config string
		p            SimParams
	}{
		{"queue/naive", "naive", queue},
		{"queue/saferetry", "saferetry", queue},
		{"instant/full-jitter", "full-jitter", instant},
	} {
		b.Run(bb.name, func(b *testing.B) {
			c := config(b, bb.config)
			b.ReportAllocs()
			var events int64
			for b.Loop() {
				_, stats, err := Simulate(c, bb.p)
				if err != nil {
					b.Fatal(err)
				}
				events += stats.Events
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(events), "ns/event")
		})
	}
}
