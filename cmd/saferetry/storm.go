package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/saferetry/saferetry/cmd/saferetry/internal/storm"
)

const stormAbout = `Runs a retry storm and compares saferetry configurations side by side: no
retries; 3 retries without jitter and without budget; full jitter without
budget; full jitter with a retry budget; decorrelated jitter with a budget.
Each configuration faces the same three phases: normal load, a full outage
in the middle (the server answers every request 503 at once), and recovery.
Clients start logical requests on their own schedule (an exponentially
distributed think time between starts, whatever happened to the previous
one) and are spread over service instances, each with one saferetry stack
and so one retry budget. The server serves a limited load and answers 503 at
once above it.

-mode live (the default) runs it over real HTTP on 127.0.0.1: one goroutine
per client, one saferetry.New stack per instance, a server with -capacity
requests in service at once, 5ms each. Its budgets have a 1s window (-window)
instead of the default 10s, so that a short outage spans several windows.

-mode sim runs a discrete-event simulation on a virtual clock, with the
library's own Exponential backoff, DefaultStrategy and NewBudget() (true
defaults: 10s window, ratio 0.1, floor 10/s), for up to a million clients;
-capacity is then attempts served per 100ms.

Prints, per configuration, logical requests, success rate, attempts per
logical request overall and during the outage, peak attempts per 100ms,
recovery time and latency; checks that the budget keeps amplification during
the outage within 1 + 0.1 + floor/rate; and writes an SVG chart of attempts
per 100ms over time. Exits with status 1 if a budget exceeded its bound by
more than 5% of the retries the bound allows (random arrivals let a few
more through than the bound, which is exact for evenly spread requests).`

// stormLimits explains the limits on the flags together, for -h.
var stormLimits = fmt.Sprintf(`Every flag is checked, and the chart's file opened, before anything runs.
Besides each flag's own range (below), the clients may start at most %d
logical requests/s live and %d/s simulated (clients/think); a simulated
configuration at most %d (clients x duration / think); and at least %d
must be expected during the outage (clients x outage / think), or its
amplification would be noise or undefined. A value out of bounds is a
usage error: exit status 2.`, liveMaxRate, simMaxRate, simMaxLogical, stormMinOutageLogical)

// stormSettings is a storm's configuration, once the flags are resolved.
type stormSettings struct {
	mode      string
	clients   int
	instances int           // service instances, one stack (one budget) each
	capacity  int           // live: requests in service at once; sim: attempts served per bucket
	think     time.Duration // mean time between the starts of a client's logical requests
	service   time.Duration // time the server takes to serve a request
	phases    storm.Phases
	window    time.Duration // the budgets' window
	seed      uint64
	out       string
}

// rate returns the logical requests started per second, all clients
// together, on average.
func (s stormSettings) rate() float64 { return float64(s.clients) / s.think.Seconds() }

// Defaults of each mode. Live: 200 clients, 50 per instance, 2000 logical
// requests per second in all (500 per budget), a server able to serve
// twice that (20 in service x 5ms = 4000/s). Sim: 100 000 clients, 10 000
// per instance, each starting a request every 10s on average (1000 per
// second per budget), a server able to serve twice the normal load.
const (
	liveClients            = 200
	liveClientsPerInstance = 50
	liveCapacity           = 20
	liveThink              = 100 * time.Millisecond
	liveDuration           = 6 * time.Second
	liveOutage             = 3 * time.Second
	liveWindow             = time.Second
	liveMaxClients         = 5000
	liveMaxDuration        = time.Minute

	simClients            = 100_000
	simClientsPerInstance = 10_000
	simThink              = 10 * time.Second
	simDuration           = 120 * time.Second
	simOutage             = 60 * time.Second
	simMaxClients         = 1_000_000
	simMaxDuration        = 10 * time.Minute
	// simCapacityFactor is the server's capacity relative to the normal
	// load, when -capacity is not given.
	simCapacityFactor = 2

	stormService = 5 * time.Millisecond
)

// Limits on what a storm may be asked to do, so that every run means
// something and ends in reasonable time and memory. STORM.md ("Limits")
// states them with the measurements behind them.
const (
	// liveMaxRate bounds the logical requests live clients start per
	// second, clients/think: 2.5 times the default. Above it, on the
	// 2-core machine STORM.md's runs were made on, the load generator
	// falls behind its schedule (so the phases no longer hold) and memory
	// grows with the requests it has in flight: 270 MB at 10 000/s, 950 MB
	// at 20 000/s. With liveMaxDuration it also bounds a live run to
	// 300 000 logical requests per configuration.
	liveMaxRate = 5000
	// simMaxRate bounds the logical requests simulated clients start per
	// (virtual) second: ten times the default million clients' rate. The
	// simulation's memory grows with the requests in flight, about rate x
	// the 4s a request with three retries can last: 95 MB at this rate.
	simMaxRate = 1_000_000
	// simMaxLogical bounds the logical requests a simulated configuration
	// is expected to start, clients x duration / think: the default
	// million clients make 1.2e7, this leaves a quarter more. Each makes at
	// most 1 + MaxRetries = 4 events, so a configuration processes at most
	// 6e7 events and the whole run (five configurations) about 1.7e8.
	// Measured, the longest run allowed (a million clients, think 1s, 15s
	// of which 14.8s of outage) took 85s and 100 MB, on a machine that
	// takes 29s for the default million clients.
	simMaxLogical = 15_000_000
	// stormMaxInstances bounds -instances: the fleet sizes the budget is
	// designed for reach 10 000 instances, and each simulated instance's
	// Budget costs about 0.7 KB (a million of them, 740 MB).
	stormMaxInstances = 10_000
	// stormMinOutageLogical is the fewest logical requests a storm must be
	// expected to start during the outage. The outage's amplification is
	// attempts over logical requests started then: with none it is
	// undefined (NaN, and the budget's bound infinite), and with few it is
	// noise (a Poisson count of 100 varies by 10%). With 100 expected, the
	// chance that none starts is e^-100.
	stormMinOutageLogical = 100
	// stormMinWindow is the shortest live budget window: the run is
	// measured in 100ms buckets, and a window's tenth (its slot) is then
	// 10ms, above the scheduling noise of a loaded machine.
	stormMinWindow = storm.BucketWidth
)

// simEventLimit is the most events a simulated configuration may process
// when n logical requests are expected: each makes at most 1 + MaxRetries
// events (its first attempt and its retries), and the number of arrivals,
// a Poisson count, exceeds its mean by ten standard deviations with a
// chance under 1e-23. Reaching the limit means the simulation went wrong.
func simEventLimit(n float64) int64 {
	retries := 0
	for _, c := range storm.Configs {
		retries = max(retries, c.MaxRetries)
	}
	return int64(float64(1+retries) * (n + 10*math.Sqrt(n) + 100))
}

// boundTolerance is how far the measured amplification may exceed the
// bound and still pass, as a fraction of the retries the bound allows
// (ratio + floor/rate). The bound is exact for requests spread evenly in
// time: the deterministic tests of cmd/saferetry/internal/storm reach it
// to the retry. With random arrivals the budget lets a few more retries
// through: its window slides a tenth at a time, and whenever a new tenth's
// deposits outnumber those of the tenth that expires, the difference can
// be spent, while a shortfall only delays later retries. Measured, that is under 0.5%
// of the allowed retries with 1000 requests/s per budget and a 10s window
// (sim), and under 2% with 500/s and a 1s window (live); it grows as the
// number of requests per tenth of a window shrinks. stormAbout and
// STORM.md state it as 5%.
const boundTolerance = 0.05

// stormFlags are the storm command's flags as given. A zero value of a
// flag not given stands for the mode's default; a flag given explicitly
// is checked as given, zero included.
type stormFlags struct {
	mode                            string
	clients, instances, capacity    int
	think, duration, outage, window time.Duration
	seed                            uint64
	out                             string
	// set holds the names of the flags given on the command line.
	set map[string]bool
}

// stormCommand is the storm subcommand. Every flag is checked, and the
// chart's file opened, before anything runs: a bad invocation is a usage
// error (exit status 2) at once, never a failure at the end of a run.
func stormCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("saferetry storm", flag.ContinueOnError)
	flags.SetOutput(stderr)
	var f stormFlags
	flags.StringVar(&f.mode, "mode", "live", "live (real HTTP on loopback) or sim (discrete-event simulation)")
	flags.IntVar(&f.clients, "clients", 0, fmt.Sprintf("clients (default %d live, %d sim; at most %d live, %d sim)", liveClients, simClients, liveMaxClients, simMaxClients))
	flags.IntVar(&f.instances, "instances", 0, fmt.Sprintf("service instances the clients are spread over, each with its own stack and budget (default one per %d clients live, %d sim; at most the clients and %d)", liveClientsPerInstance, simClientsPerInstance, stormMaxInstances))
	flags.IntVar(&f.capacity, "capacity", 0, fmt.Sprintf("live: requests the server serves at once, %v each (default %d); sim: attempts it serves per 100ms (default %d x the normal load)", stormService, liveCapacity, simCapacityFactor))
	flags.DurationVar(&f.think, "think", 0, fmt.Sprintf("mean time between the starts of a client's logical requests (default %v live, %v sim); clients/think at most %d/s live, %d/s sim", liveThink, simThink, liveMaxRate, simMaxRate))
	flags.DurationVar(&f.duration, "duration", 0, fmt.Sprintf("length of each configuration's run: normal load, outage and recovery, in steps of 100ms (default %v live, %v sim; at most %v live, %v sim)", liveDuration, simDuration, liveMaxDuration, simMaxDuration))
	flags.DurationVar(&f.outage, "outage", 0, fmt.Sprintf("length of the full outage, in the middle of the run, in steps of 100ms and at least 200ms less than -duration (default %v live, %v sim)", liveOutage, simOutage))
	flags.DurationVar(&f.window, "window", 0, fmt.Sprintf("live only: the budgets' window, %v to -duration (default %v; the simulation uses NewBudget()'s %v)", stormMinWindow, liveWindow, storm.BudgetWindow))
	flags.Uint64Var(&f.seed, "seed", 1, "random seed: the simulation is deterministic for a seed; live mode seeds its clients' think times with it")
	flags.StringVar(&f.out, "out", "storm.svg", `path of the SVG chart to write ("" for none); checked before the run`)
	flags.Usage = func() {
		fmt.Fprintf(flags.Output(), "Usage: saferetry storm [-mode live|sim] [flags]\n\n%s\n\n%s\n\nFlags:\n", stormAbout, stormLimits)
		flags.PrintDefaults()
	}
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	f.set = map[string]bool{}
	flags.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	s, err := resolveStorm(f)
	if err != nil {
		return &usageError{err: err}
	}
	// Last, so that no later usage error leaves a file behind.
	var chart *chartFile
	if s.out != "" {
		if chart, err = openChart(s.out); err != nil {
			return &usageError{err: err}
		}
	}
	return runStorm(ctx, s, chart, stdout, stderr)
}

// resolveStorm applies the mode's defaults to the flags not given, and
// checks every value and their combinations. Its errors name the flags and
// their values.
func resolveStorm(f stormFlags) (stormSettings, error) {
	s := stormSettings{mode: f.mode, service: stormService, seed: f.seed, out: f.out}
	var (
		maxClients, perInstance int
		maxDuration             time.Duration
		maxRate                 float64
		duration, outage        time.Duration
	)
	switch f.mode {
	case "live":
		s.clients, s.capacity, s.think, s.window = liveClients, liveCapacity, liveThink, liveWindow
		duration, outage = liveDuration, liveOutage
		maxClients, perInstance, maxDuration, maxRate = liveMaxClients, liveClientsPerInstance, liveMaxDuration, liveMaxRate
	case "sim":
		if f.set["window"] {
			return s, fmt.Errorf("-window %v: applies to -mode live only: the simulation uses NewBudget()'s defaults", f.window)
		}
		s.clients, s.think, s.window = simClients, simThink, storm.BudgetWindow
		duration, outage = simDuration, simOutage
		maxClients, perInstance, maxDuration, maxRate = simMaxClients, simClientsPerInstance, simMaxDuration, simMaxRate
	default:
		return s, fmt.Errorf("-mode %q: want live or sim", f.mode)
	}
	// flagValue shows a flag and its value, saying whether it is the
	// mode's default, for the messages that name several flags.
	flagValue := func(name string, v any) string {
		if f.set[name] {
			return fmt.Sprintf("-%s %v", name, v)
		}
		return fmt.Sprintf("-%s %v (the default)", name, v)
	}
	pick(f.set["clients"], &s.clients, f.clients)
	pick(f.set["think"], &s.think, f.think)
	pick(f.set["duration"], &duration, f.duration)
	pick(f.set["outage"], &outage, f.outage)
	pick(f.set["window"], &s.window, f.window)
	s.instances = max((s.clients+perInstance-1)/perInstance, 1)
	pick(f.set["instances"], &s.instances, f.instances)

	// Each flag on its own.
	switch {
	case s.clients < 1 || s.clients > maxClients:
		return s, fmt.Errorf("-clients %d: want 1 to %d in %s mode", s.clients, maxClients, f.mode)
	case s.instances < 1 || s.instances > min(s.clients, stormMaxInstances):
		return s, fmt.Errorf("%s: want 1 to the number of clients (%d), and at most %d", flagValue("instances", s.instances), s.clients, stormMaxInstances)
	case s.think <= 0:
		return s, fmt.Errorf("-think %v: want more than zero", s.think)
	case duration <= 0 || duration > maxDuration:
		return s, fmt.Errorf("-duration %v: want more than 0 and at most %v in %s mode", duration, maxDuration, f.mode)
	case duration%storm.BucketWidth != 0:
		return s, fmt.Errorf("-duration %v: want a multiple of %v", duration, storm.BucketWidth)
	case outage <= 0:
		return s, fmt.Errorf("-outage %v: want more than zero", outage)
	case outage%storm.BucketWidth != 0:
		return s, fmt.Errorf("-outage %v: want a multiple of %v", outage, storm.BucketWidth)
	case outage > duration-2*storm.BucketWidth:
		return s, fmt.Errorf("%s: want at least %v less than %s, for some normal load before it and some recovery after it",
			flagValue("outage", outage), 2*storm.BucketWidth, flagValue("duration", duration))
	case f.mode == "live" && (s.window < stormMinWindow || s.window > duration):
		return s, fmt.Errorf("%s: want %v up to %s: a longer window never slides within a run",
			flagValue("window", s.window), stormMinWindow, flagValue("duration", duration))
	}
	if f.mode == "sim" {
		normal := s.rate() * storm.BucketWidth.Seconds()
		s.capacity = max(int(math.Round(simCapacityFactor*normal)), 1)
	}
	pick(f.set["capacity"], &s.capacity, f.capacity)
	if s.capacity < 1 {
		return s, fmt.Errorf("-capacity %d: want at least 1", s.capacity)
	}

	// Together: the load the clients make.
	load := flagValue("clients", s.clients) + " and " + flagValue("think", s.think)
	rate := s.rate()
	if rate > maxRate {
		return s, fmt.Errorf("%s start %s logical requests/s: want at most %.0f/s in %s mode (fewer clients or a longer think time)",
			load, stormCount(rate), maxRate, f.mode)
	}
	if n := rate * duration.Seconds(); f.mode == "sim" && n > simMaxLogical {
		return s, fmt.Errorf("%s start %s logical requests in %s: want at most %d per configuration, so that the run ends within minutes",
			load, stormCount(n), flagValue("duration", duration), simMaxLogical)
	}
	if n := rate * outage.Seconds(); n < stormMinOutageLogical {
		return s, fmt.Errorf("%s start %s logical requests during %s on average: want at least %d, or the outage's amplification is noise or undefined (more clients, a shorter think time or a longer outage)",
			load, stormCount(n), flagValue("outage", outage), stormMinOutageLogical)
	}
	s.phases = storm.Centered(duration, outage)
	return s, nil
}

// stormCount formats an expected number of requests: whole above 100,
// three significant digits below.
func stormCount(n float64) string {
	if n >= 100 {
		return fmt.Sprintf("%.0f", n)
	}
	return fmt.Sprintf("%.3g", n)
}

// pick sets *v to value if the flag was given; otherwise *v keeps its
// default.
func pick[T any](given bool, v *T, value T) {
	if given {
		*v = value
	}
}

// chartFile is the chart's destination, opened before the run so that an
// unwritable -out is a usage error at once, not a failure after the run.
// An existing file is not truncated until the chart is written, so a run
// that fails leaves it as it was; a file the run created is removed.
type chartFile struct {
	f       *os.File
	created bool
}

// openChart opens path for writing the chart, creating it if need be.
func openChart(path string) (*chartFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	if err == nil {
		return &chartFile{f: f, created: true}, nil
	}
	if errors.Is(err, fs.ErrExist) {
		f, err = os.OpenFile(path, os.O_WRONLY, 0)
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is in the message already
		}
		return nil, fmt.Errorf("-out %q: cannot write the chart there: %w", path, err)
	}
	return &chartFile{f: f}, nil
}

// write replaces the file's contents with the chart and closes it. If
// that fails, a file openChart made is removed.
func (c *chartFile) write(chart *storm.Chart) (err error) {
	defer func() {
		if cerr := c.f.Close(); cerr != nil && err == nil {
			err = cerr
		}
		if err != nil && c.created {
			os.Remove(c.f.Name()) // best effort: the error says what went wrong
		}
	}()
	if fi, err := c.f.Stat(); err == nil && fi.Mode().IsRegular() {
		if err := c.f.Truncate(0); err != nil {
			return err
		}
	}
	return chart.WriteSVG(c.f)
}

// discard closes the file unwritten, and removes it if openChart made it.
// It reports nothing: the run's own error is what the caller needs.
func (c *chartFile) discard() {
	c.f.Close()
	if c.created {
		os.Remove(c.f.Name())
	}
}

// stormResult is what one configuration's run produced.
type stormResult struct {
	config  storm.Config
	summary storm.Summary
	series  storm.Series
	// notes are oddities worth printing under the table (live mode:
	// transport errors, arrivals skipped, requests cut at the end).
	notes []string
}

// runStorm runs every configuration, prints the report and writes the
// chart to chart, if not nil. Its error says whether the budget's bound
// held.
func runStorm(ctx context.Context, s stormSettings, chart *chartFile, stdout, stderr io.Writer) (err error) {
	if chart != nil {
		defer func() {
			if chart != nil { // not written
				chart.discard()
			}
		}()
	}
	started := time.Now()
	printStormSetup(stdout, s)
	var results []stormResult
	for _, c := range storm.Configs {
		var (
			res stormResult
			err error
		)
		t0 := time.Now()
		if s.mode == "sim" {
			res, err = simulateStorm(ctx, s, c, stderr)
		} else {
			res, err = runLiveStorm(ctx, s, c)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
		if s.mode == "live" {
			fmt.Fprintf(stderr, "storm: %-13s done in %v\n", c.Name, time.Since(t0).Round(time.Millisecond))
		}
		results = append(results, res)
	}
	failed := printStormReport(stdout, s, results)
	if chart != nil {
		werr := chart.write(stormChart(s, results))
		chart = nil
		if werr != nil {
			return fmt.Errorf("writing the chart: %w", werr)
		}
		fmt.Fprintf(stdout, "\nChart: %s (attempts per 100ms over time, one line per configuration)\n", s.out)
	}
	fmt.Fprintf(stdout, "Ran in %v.\n", time.Since(started).Round(100*time.Millisecond))
	if len(failed) > 0 {
		return fmt.Errorf("the budget's bound was exceeded by %s", strings.Join(failed, ", "))
	}
	return nil
}

// printStormSetup describes the storm about to run.
func printStormSetup(w io.Writer, s stormSettings) {
	ph := s.phases
	rate := s.rate()
	switch s.mode {
	case "live":
		fmt.Fprintf(w, "saferetry storm, live: real HTTP over 127.0.0.1, %d configurations, %v each.\n", len(storm.Configs), ph.End)
		fmt.Fprintf(w, "  clients:  %d goroutines in %d service instances (one saferetry.New stack, so one budget, each),\n", s.clients, s.instances)
		fmt.Fprintf(w, "            each starting a GET every %v on average (~%.0f logical requests/s in all)\n", s.think, rate)
		fmt.Fprintf(w, "  server:   %d requests in service at once, %v each (~%.0f/s); above that, 503 at once\n",
			s.capacity, s.service, float64(s.capacity)/s.service.Seconds())
		fmt.Fprintf(w, "  budgets:  NewBudget(BudgetWindow(%v)): ratio %g, floor %g/s as by default, but a %v window\n",
			s.window, storm.BudgetRatio, storm.BudgetFloor, s.window)
		fmt.Fprintf(w, "            instead of 10s, so that the outage spans %.3g windows in a short run\n", ph.Outage().Seconds()/s.window.Seconds())
	default:
		fmt.Fprintf(w, "saferetry storm, sim: discrete-event simulation on a virtual clock, %d configurations, %v each.\n", len(storm.Configs), ph.End)
		fmt.Fprintf(w, "  clients:  %d in %d service instances (one budget each), each starting a GET every %v\n", s.clients, s.instances, s.think)
		fmt.Fprintf(w, "            on average (~%.0f logical requests/s in all); seed %d\n", rate, s.seed)
		fmt.Fprintf(w, "  server:   serves %d attempts per 100ms (%.3gx the normal load); above that, 503 at once\n",
			s.capacity, float64(s.capacity)/(rate*storm.BucketWidth.Seconds()))
		fmt.Fprintf(w, "  budgets:  NewBudget() defaults: ratio %g, floor %g/s, window %v, on the virtual clock\n",
			storm.BudgetRatio, storm.BudgetFloor, storm.BudgetWindow)
	}
	fmt.Fprintf(w, "  phases:   normal 0-%v, full outage %v-%v (every request 503 at once), recovery to %v\n",
		ph.OutageStart, ph.OutageStart, ph.OutageEnd, ph.End)
	fmt.Fprintf(w, "  retries:  saferetry's defaults (up to 3, backoff 100ms doubling to 10s) unless the configuration says otherwise\n\n")
}

// printStormReport prints the comparison table and the budget check, and
// returns the configurations that exceeded the bound.
func printStormReport(w io.Writer, s stormSettings, results []stormResult) (failed []string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(label string, cell func(r stormResult) string) {
		// Padded by hand: AlignRight right-aligns every column, and the
		// labels read better aligned left.
		fmt.Fprintf(tw, "%-34s\t", label)
		for _, r := range results {
			fmt.Fprintf(tw, "%s\t", cell(r))
		}
		fmt.Fprintln(tw)
	}
	row("", func(r stormResult) string { return r.config.Name })
	row("logical requests", func(r stormResult) string { return fmt.Sprint(r.summary.Logical) })
	row("succeeded", func(r stormResult) string { return stormPercent(r.summary.SuccessRate()) })
	row("attempts per logical request", func(r stormResult) string { return stormRatio(r.summary.Amplification(), 3) })
	row("  during the outage", func(r stormResult) string { return stormRatio(r.summary.OutageAmplification(), 3) })
	row("peak attempts/100ms in the outage", func(r stormResult) string { return fmt.Sprint(r.summary.PeakOutage) })
	row("peak attempts/100ms after it", func(r stormResult) string { return fmt.Sprint(r.summary.PeakAfter) })
	row("recovery to >=95% served", func(r stormResult) string {
		if !r.summary.Recovered {
			return "not in run"
		}
		return r.summary.Recovery.String()
	})
	row("latency p50 of successes", func(r stormResult) string { return stormLatency(r.summary.P50) })
	row("latency p99 of successes", func(r stormResult) string { return stormLatency(r.summary.P99) })
	tw.Flush()

	fmt.Fprintf(w, "\n(attempts: every request the server received, served or rejected; during the outage: attempts it\n")
	fmt.Fprintf(w, "received then over logical requests started then; recovery: from the end of the outage until the\n")
	fmt.Fprintf(w, "server serves >=95%% of its attempts in every 100ms for %v; latency: start to final response)\n", storm.RecoveryHold)
	for _, r := range results {
		for _, n := range r.notes {
			fmt.Fprintf(w, "note: %s: %s\n", r.config.Name, n)
		}
	}

	fmt.Fprintf(w, "\nBudget check: during a full outage of whole budget windows, attempts per logical request\n")
	fmt.Fprintf(w, "must stay within 1 + ratio + floor/rate, rate being logical requests/s per budget then\n")
	fmt.Fprintf(w, "(tolerance: %.0f%% of the retries the bound allows, for random arrivals; see cmd/saferetry/STORM.md):\n", 100*boundTolerance)
	for _, r := range results {
		if !r.config.Budget {
			continue
		}
		if r.summary.OutageLogical == 0 {
			// resolveStorm makes this all but impossible (a chance of
			// e^-stormMinOutageLogical); should it happen, there is nothing
			// to compare, and no bound to exceed.
			fmt.Fprintf(w, "  %-13s no check: no logical request started during the outage\n", r.config.Name)
			continue
		}
		b := storm.BudgetBound(r.summary, s.phases, s.instances, storm.BudgetRatio, storm.BudgetFloor, s.window)
		got := r.summary.OutageAmplification()
		verdict := "PASS"
		switch {
		case b.Holds(got):
		case got <= b.Value+boundTolerance*(b.Value-1):
			verdict = fmt.Sprintf("PASS (over by %.1f%% of the allowed retries, within tolerance)", 100*(got-b.Value)/(b.Value-1))
		default:
			verdict = "FAIL"
			failed = append(failed, r.config.Name)
		}
		fmt.Fprintf(w, "  %-13s measured %.4f, bound %.4f = %s  %s\n", r.config.Name, got, b.Value, b.Formula(), verdict)
	}
	return failed
}

func stormPercent(f float64) string {
	if math.IsNaN(f) {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*f)
}

// stormRatio formats f with prec decimals, or "-" for the ratio of
// nothing to nothing.
func stormRatio(f float64, prec int) string {
	if math.IsNaN(f) {
		return "-"
	}
	return fmt.Sprintf("%.*f", prec, f)
}

func stormLatency(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// stormChart is the chart of attempts per 100ms.
func stormChart(s stormSettings, results []stormResult) *storm.Chart {
	chart := &storm.Chart{
		Phases: s.phases,
		Title:  "saferetry storm: attempts the server received per 100ms",
	}
	if s.mode == "live" {
		chart.Subtitle = fmt.Sprintf("live, 127.0.0.1: %d clients in %d instances, ~%.0f logical requests/s; budgets with a %v window",
			s.clients, s.instances, s.rate(), s.window)
		chart.Capacity = float64(s.capacity) * storm.BucketWidth.Seconds() / s.service.Seconds()
	} else {
		chart.Subtitle = fmt.Sprintf("simulation: %d clients in %d instances, ~%.0f logical requests/s; NewBudget() defaults; seed %d",
			s.clients, s.instances, s.rate(), s.seed)
		chart.Capacity = float64(s.capacity)
	}
	for _, r := range results {
		label := fmt.Sprintf("%s: %s attempts per logical request during the outage", r.config.Label, stormRatio(r.summary.OutageAmplification(), 2))
		chart.Lines = append(chart.Lines, storm.Line{Label: label, Points: r.series.Attempts})
	}
	return chart
}
