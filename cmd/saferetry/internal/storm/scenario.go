package storm

import (
	"context"
	"fmt"
	"time"
)

// Fleet is the fleet scenario: the same load, Clients starting a request
// every Think on average, spread over fleets of different sizes, through
// a full outage of Outage in the middle of a run of Duration, and through
// a healthy run of Healthy in which the server answers FailRate of the
// attempts 503 at random. Each fleet size and configuration is a run of
// its own; every run sees the same arrivals.
type Fleet struct {
	Clients          int
	Think            time.Duration
	Fleets           []int // instance counts, each at most Clients
	Duration, Outage time.Duration
	Healthy          time.Duration
	FailRate         float64
	// Fraction, if above zero, makes the outage partial: the server then
	// serves Fraction of the normal load (and rejects the rest with 503)
	// instead of nothing. Its capacity otherwise is twice the normal load.
	Fraction float64
	Seed     uint64
	Configs  []Config
}

// FleetResult holds a Fleet's summaries, indexed [fleet][config].
type FleetResult struct {
	Outage, Healthy [][]Summary
	// Series are the outage runs' counts for the largest fleet, by
	// configuration, for the chart.
	Series []Series
}

// Phases returns the outage's phases.
func (f Fleet) Phases() Phases { return Centered(f.Duration, f.Outage) }

// Capacity is the server's capacity, attempts per 100 ms: twice the
// normal load.
func (f Fleet) Capacity() int {
	return max(int(2*float64(f.Clients)/f.Think.Seconds()*BucketWidth.Seconds()+0.5), 1)
}

func (f Fleet) params(instances int) SimParams {
	p := SimParams{
		Clients: f.Clients, Instances: instances, Think: f.Think, Capacity: f.Capacity(),
		Service: 5 * time.Millisecond, Phases: f.Phases(), Seed: f.Seed,
	}
	if f.Fraction > 0 {
		p.OutageCapacity = f.Fraction / 2
	}
	return p
}

// Run runs every fleet size and configuration on up to workers
// goroutines (the runs are independent; the results do not depend on the
// number of workers). progress, if set, is called after each run.
func (f Fleet) Run(ctx context.Context, workers int, limit func(SimParams) int64, progress func(string)) (FleetResult, error) {
	res := FleetResult{
		Outage:  make([][]Summary, len(f.Fleets)),
		Healthy: make([][]Summary, len(f.Fleets)),
		Series:  make([]Series, len(f.Configs)),
	}
	var jobs []job
	for i, n := range f.Fleets {
		res.Outage[i] = make([]Summary, len(f.Configs))
		res.Healthy[i] = make([]Summary, len(f.Configs))
		for j, c := range f.Configs {
			p := f.params(n)
			jobs = append(jobs, job{name: fmt.Sprintf("%s, %d instances", c.Name, n), c: c, p: p, done: func(r *Recorder) {
				res.Outage[i][j] = Summarize(r, p.Phases)
				if i == len(f.Fleets)-1 {
					res.Series[j] = r.Series()
				}
			}})
			if f.Healthy > 0 {
				hp := p
				hp.Phases = Phases{OutageStart: f.Healthy, OutageEnd: f.Healthy, End: f.Healthy}
				hp.FailRate = f.FailRate
				hp.Seed = f.Seed + 1
				jobs = append(jobs, job{name: fmt.Sprintf("%s, %d instances, healthy", c.Name, n), c: c, p: hp, done: func(r *Recorder) {
					res.Healthy[i][j] = Summarize(r, hp.Phases)
				}})
			}
		}
	}
	return res, runJobs(ctx, jobs, workers, limit, progress)
}

// Metastable is the metastable scenario: a queueing server (SimParams.Queue)
// at Load of its capacity loses Depth of its capacity for Trigger, from
// TriggerAt, then gets it back; the clients have an attempt timeout of
// Timeout. Each (load, depth) cell of the grid is run for every
// configuration.
type Metastable struct {
	Clients, Instances int
	Think              time.Duration
	Loads, Depths      []float64
	TriggerAt, Trigger time.Duration
	Duration, Timeout  time.Duration
	Seed               uint64
	Configs            []Config
}

// Recovery is how one configuration fared in a metastable cell.
type Recovery struct {
	// Recovered reports whether, after the trigger ended, the share of
	// logical requests that succeed (by the time they started) came back
	// to RecoveredLevel and held for RecoveryHold; After is how long
	// after the trigger's end that began.
	Recovered bool
	After     time.Duration
	// Collapsed reports that fewer than CollapsedLevel of the requests
	// started in each 100 ms from the trigger's end to the end of the run
	// succeeded.
	Collapsed bool
	// Goodput is the share of logical requests started from the
	// trigger's end to the end of the run that succeeded.
	Goodput float64
}

// The levels that define recovery and collapse in a Metastable run.
const (
	RecoveredLevel      = 0.9
	CollapsedLevel      = 0.1
	MetastableHold      = time.Second
	metastableHoldCount = int(MetastableHold / BucketWidth)
)

// MetastableResult holds a Metastable's outcomes, indexed
// [load][depth][config].
type MetastableResult struct {
	Cells [][][]Recovery
	// Series are the runs' counts for the cell closest to the middle of
	// the grid, by configuration, for the chart.
	Series []Series
}

// Phases returns the trigger as an outage's phases.
func (m Metastable) Phases() Phases {
	return Phases{OutageStart: m.TriggerAt, OutageEnd: m.TriggerAt + m.Trigger, End: m.Duration}
}

// Capacity is the server's capacity, attempts per 100 ms, at load.
func (m Metastable) Capacity(load float64) int {
	return max(int(float64(m.Clients)/m.Think.Seconds()*BucketWidth.Seconds()/load+0.5), 1)
}

// ChartCell is the grid cell whose runs are charted: the middle one.
func (m Metastable) ChartCell() (load, depth int) { return len(m.Loads) / 2, len(m.Depths) / 2 }

// Run runs every cell and configuration, as Fleet.Run does.
func (m Metastable) Run(ctx context.Context, workers int, limit func(SimParams) int64, progress func(string)) (MetastableResult, error) {
	res := MetastableResult{Cells: make([][][]Recovery, len(m.Loads)), Series: make([]Series, len(m.Configs))}
	cl, cd := m.ChartCell()
	var jobs []job
	for i, load := range m.Loads {
		res.Cells[i] = make([][]Recovery, len(m.Depths))
		for j, depth := range m.Depths {
			res.Cells[i][j] = make([]Recovery, len(m.Configs))
			for k, c := range m.Configs {
				p := SimParams{
					Clients: m.Clients, Instances: m.Instances, Think: m.Think, Capacity: m.Capacity(load),
					Phases: m.Phases(), OutageCapacity: 1 - depth, Queue: true, Timeout: m.Timeout, Seed: m.Seed,
				}
				jobs = append(jobs, job{name: fmt.Sprintf("%s, load %g, depth %g", c.Name, load, depth), c: c, p: p, done: func(r *Recorder) {
					s := r.Series()
					res.Cells[i][j][k] = recovery(s, p.Phases)
					if i == cl && j == cd {
						res.Series[k] = s
					}
				}})
			}
		}
	}
	return res, runJobs(ctx, jobs, workers, limit, progress)
}

// recovery measures a run's recovery after its trigger (the outage).
func recovery(s Series, p Phases) Recovery {
	from := int(p.OutageEnd / BucketWidth)
	end := min(int(p.End/BucketWidth), len(s.Started))
	var rec Recovery
	var started, ok int64
	collapsed := true
	run := 0
	for i := from; i < end; i++ {
		started += s.Started[i]
		ok += s.OKStarted[i]
		g := Goodput(s, i)
		if g >= CollapsedLevel {
			collapsed = false
		}
		if g < RecoveredLevel {
			run = 0
			continue
		}
		if run++; !rec.Recovered && (run == metastableHoldCount || i == end-1) {
			rec.Recovered = true
			rec.After = time.Duration(i+1-run-from) * BucketWidth
		}
	}
	rec.Collapsed = collapsed
	rec.Goodput = float64(ok) / float64(max(started, 1))
	return rec
}

// Goodput is the share of the logical requests started in bucket i that
// succeeded; 1 for a bucket in which none started.
func Goodput(s Series, i int) float64 {
	if s.Started[i] == 0 {
		return 1
	}
	return float64(s.OKStarted[i]) / float64(s.Started[i])
}

// job is one simulation run of a scenario.
type job struct {
	name string
	c    Config
	p    SimParams
	done func(*Recorder) // called with the run's recorder, one job at a time
}

// runJobs runs jobs on up to workers goroutines; it stops at the first
// error, or when ctx is done.
func runJobs(ctx context.Context, jobs []job, workers int, limit func(SimParams) int64, progress func(string)) error {
	return inParallel(ctx, len(jobs), workers, func(i int) (func(), error) {
		jb := jobs[i]
		p := jb.p
		if limit != nil {
			p.MaxEvents = limit(p)
		}
		t0 := time.Now()
		rec, stats, err := Simulate(jb.c, p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", jb.name, err)
		}
		return func() {
			jb.done(rec)
			if progress != nil {
				progress(fmt.Sprintf("%s: %.1fM events in %v", jb.name, float64(stats.Events)/1e6, time.Since(t0).Round(time.Millisecond)))
			}
		}, nil
	})
}
