package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/saferetry/saferetry/cmd/saferetry/internal/storm"
)

// The targets of issue 11, checked on saferetry's default configuration.
const (
	targetAmplification = 1.15  // attempts per logical request during a full outage
	targetLateStep      = 1.3   // busiest 100ms from 2s into the outage, over the normal
	targetHealthy       = 0.999 // logical requests that succeed with 2% random failures
	targetPartialSlack  = 0.02  // retries per logical request over the budget's, partial outage
)

// defaultConfig is the name of saferetry's default configuration in the
// scenarios' tables; throttledConfig is the same with throttling on.
const (
	defaultConfig   = "saferetry"
	throttledConfig = "saferetry+K2"
)

// simLimit is the event limit of a scenario's run.
func simLimit(p storm.SimParams) int64 {
	return simEventLimit(float64(p.Clients) / p.Think.Seconds() * p.Phases.End.Seconds())
}

func progress(stderr io.Writer, name string) func(string) {
	return func(line string) { fmt.Fprintf(stderr, "storm: %s: %s\n", name, line) }
}

// runFleet runs the fleet or partial scenario, prints its report and
// returns the configurations that broke the budget's bound, and the chart.
func runFleet(ctx context.Context, s stormSettings, stdout, stderr io.Writer) ([]string, *storm.Chart, error) {
	f := storm.Fleet{
		Clients: s.clients, Think: s.think, Fleets: s.fleets,
		Duration: s.phases.End, Outage: s.phases.Outage(),
		Healthy: s.healthy, FailRate: s.failRate, Fraction: s.fraction,
		Seed: s.seed, Configs: storm.OverloadConfigs,
	}
	printScenarioSetup(stdout, s, f.Configs)
	res, err := f.Run(ctx, 0, simLimit, progress(stderr, s.scenario))
	if err != nil {
		return nil, nil, err
	}
	var failed []string
	if s.scenario == "fleet" {
		failed = printFleetReport(stdout, s, f, res)
	} else {
		failed = printPartialReport(stdout, s, f, res)
	}
	return failed, fleetChart(s, f, res), nil
}

func printScenarioSetup(w io.Writer, s stormSettings, configs []storm.Config) {
	rate := s.rate()
	switch s.scenario {
	case "fleet", "partial":
		fmt.Fprintf(w, "saferetry storm, sim, -scenario %s: %d clients, each starting a GET every %v on average (~%.0f logical\n",
			s.scenario, s.clients, s.think, rate)
		fmt.Fprintf(w, "  requests/s in all), spread over %s instances (one overload control each); seed %d\n", joinInts(s.fleets), s.seed)
		if s.scenario == "fleet" {
			fmt.Fprintf(w, "  server:  serves twice the normal load, 503 at once above it; full outage %v-%v of a %v run\n",
				s.phases.OutageStart, s.phases.OutageEnd, s.phases.End)
			if s.healthy > 0 {
				fmt.Fprintf(w, "  healthy: a %v run in which the server answers %g%% of attempts 503 at random\n", s.healthy, 100*s.failRate)
			}
		} else {
			fmt.Fprintf(w, "  server:  serves twice the normal load, but only %g%% of it from %v to %v (of a %v run); 503 at once above\n",
				100*s.fraction, s.phases.OutageStart, s.phases.OutageEnd, s.phases.End)
		}
	case "metastable":
		fmt.Fprintf(w, "saferetry storm, sim, -scenario metastable: %d clients in %d instances, each starting a GET every %v\n",
			s.clients, s.instances, s.think)
		fmt.Fprintf(w, "  on average (~%.0f logical requests/s in all); seed %d\n", rate, s.seed)
		fmt.Fprintf(w, "  server:  one FIFO queue of unbounded length; it does the work of every attempt it queued, even\n")
		fmt.Fprintf(w, "           once its client gave up; clients give up an attempt after %v (an attempt timeout)\n", s.timeout)
		fmt.Fprintf(w, "  trigger: at load L of its capacity, the server loses D of it from %v to %v, then gets it back;\n", s.phases.OutageStart, s.phases.OutageEnd)
		fmt.Fprintf(w, "           L in %s, D in %s; the run ends at %v\n", formatList(s.loads), formatList(s.depths), s.phases.End)
	}
	fmt.Fprintf(w, "  retries: up to 3, backoff 100ms doubling to 10s with full jitter, unless none\n")
	fmt.Fprintf(w, "  configurations:\n")
	for _, c := range configs {
		fmt.Fprintf(w, "    %-16s %s\n", c.Name, c.Label)
	}
	fmt.Fprintln(w)
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	switch len(s) {
	case 1:
		return s[0]
	case 2:
		return s[0] + " and " + s[1]
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// fleetTable prints one table: a row per fleet size, a column per
// configuration, each cell cell(i, j) for fleet i and configuration j.
func fleetTable(w io.Writer, title string, s stormSettings, configs []storm.Config, cell func(i, j int) string) {
	fmt.Fprintf(w, "%s\n", title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "instances\trate each\t")
	for _, c := range configs {
		fmt.Fprintf(tw, "%s\t", c.Name)
	}
	fmt.Fprintln(tw)
	for i, n := range s.fleets {
		fmt.Fprintf(tw, "%d\t%s/s\t", n, stormCount(s.rate()/float64(n)))
		for j := range configs {
			fmt.Fprintf(tw, "%s\t", cell(i, j))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Fprintln(w)
}

func configIndex(configs []storm.Config, name string) int {
	for i, c := range configs {
		if c.Name == name {
			return i
		}
	}
	return -1
}

func printFleetReport(w io.Writer, s stormSettings, f storm.Fleet, res storm.FleetResult) (failed []string) {
	cs := f.Configs
	fleetTable(w, fmt.Sprintf("Attempts per logical request during the outage (target for %s: at most %g at every fleet size):", defaultConfig, targetAmplification),
		s, cs, func(i, j int) string { return stormRatio(res.Outage[i][j].OutageAmplification(), 3) })
	fleetTable(w, fmt.Sprintf("Busiest 100ms from %v into the outage to its end, over the normal attempts per 100ms (target: at most %g):", storm.PeakLateFrom, targetLateStep),
		s, cs, func(i, j int) string { return stormRatio(res.Outage[i][j].PeakLateRatio(), 2) })
	if s.healthy > 0 {
		title := fmt.Sprintf("Logical requests that succeed in the healthy run, %g%% of attempts failing at random", 100*s.failRate)
		if s.failRate <= fleetFailRate {
			title += fmt.Sprintf(" (target: at least %g%%)", 100*targetHealthy)
		}
		fleetTable(w, title+":", s, cs, func(i, j int) string { return fmt.Sprintf("%.2f%%", 100*res.Healthy[i][j].SuccessRate()) })
	}
	fleetTable(w, "Logical requests that succeed over the outage run (half of it is the outage):",
		s, cs, func(i, j int) string { return stormPercent(res.Outage[i][j].SuccessRate()) })

	failed = printBudgetChecks(w, s, f, res)

	d := configIndex(cs, defaultConfig)
	fmt.Fprintf(w, "\nTargets (%s, the default):\n", defaultConfig)
	var worstAmp, worstLate float64
	worstHealthy := 1.0
	lateAt := ""
	for i, n := range s.fleets {
		worstAmp = max(worstAmp, res.Outage[i][d].OutageAmplification())
		if l := res.Outage[i][d].PeakLateRatio(); l > worstLate {
			worstLate, lateAt = l, fmt.Sprintf("%d instances", n)
		}
		if s.healthy > 0 {
			worstHealthy = min(worstHealthy, res.Healthy[i][d].SuccessRate())
		}
	}
	verdict := func(ok bool) string {
		if ok {
			return "PASS"
		}
		return "MISS"
	}
	fmt.Fprintf(w, "  attempts per logical request during the outage at most %g: %s (highest %.3f)\n", targetAmplification, verdict(worstAmp <= targetAmplification), worstAmp)
	fmt.Fprintf(w, "  no 100ms step from %v into the outage above %gx the normal: %s (highest %.2fx, %s)\n", storm.PeakLateFrom, targetLateStep, verdict(worstLate <= targetLateStep), worstLate, lateAt)
	if s.healthy > 0 && s.failRate <= fleetFailRate {
		fmt.Fprintf(w, "  at least %g%% of logical requests succeed with %g%% random failures: %s (lowest %.3f%%)\n", 100*targetHealthy, 100*s.failRate, verdict(worstHealthy >= targetHealthy), 100*worstHealthy)
	}
	return failed
}

// printBudgetChecks checks every configuration with saferetry's budget
// against the bound, per fleet size.
func printBudgetChecks(w io.Writer, s stormSettings, f storm.Fleet, res storm.FleetResult) (failed []string) {
	fmt.Fprintf(w, "Budget check: during the outage, attempts per logical request within 1 + ratio + (cap+1)/N per\n")
	fmt.Fprintf(w, "instance, N its requests then, cap its tokens at the outage's start (tolerance: %.0f%% of the\n", 100*boundTolerance)
	fmt.Fprintf(w, "retries the bound allows, for random arrivals):\n")
	for j, c := range f.Configs {
		if c.Budget != storm.BudgetSaferetry {
			continue
		}
		for i, n := range s.fleets {
			v, ok := budgetVerdict(res.Outage[i][j], f.Phases(), n)
			if !ok {
				failed = append(failed, fmt.Sprintf("%s at %d instances", c.Name, n))
			}
			fmt.Fprintf(w, "  %-16s %5d instances: %s\n", c.Name, n, v)
		}
	}
	return failed
}

func printPartialReport(w io.Writer, s stormSettings, f storm.Fleet, res storm.FleetResult) (failed []string) {
	cs := f.Configs
	fleetTable(w, "Retries per logical request during the partial outage:",
		s, cs, func(i, j int) string { return stormRatio(res.Outage[i][j].OutageRetryRatio(), 3) })
	fleetTable(w, "Attempts per logical request during it (the server received; rejected locally not included):",
		s, cs, func(i, j int) string { return stormRatio(res.Outage[i][j].OutageAmplification(), 3) })
	fleetTable(w, fmt.Sprintf("Logical requests started during it that succeeded (the server serves %g%% of the normal load):", 100*s.fraction),
		s, cs, func(i, j int) string { return stormPercent(res.Outage[i][j].OutageSuccessRate()) })
	failed = printBudgetPartial(w, s, f, res)
	return failed
}

// printBudgetPartial checks the partial outage's target: retries within
// the budget's ratio plus its cap over N, give or take 2 points.
func printBudgetPartial(w io.Writer, s stormSettings, f storm.Fleet, res storm.FleetResult) []string {
	d := configIndex(f.Configs, defaultConfig)
	fmt.Fprintf(w, "Target (%s, the default): retries per logical request during the partial outage within\n", defaultConfig)
	fmt.Fprintf(w, "0.1 + (cap+1)/N, give or take %g:\n", targetPartialSlack)
	for i, n := range s.fleets {
		sum := res.Outage[i][d]
		b := storm.BudgetBound(sum, f.Phases(), n)
		got := sum.OutageRetryRatio()
		limit := b.Value - 1 + targetPartialSlack
		v := "PASS"
		if got > limit {
			v = "MISS"
		}
		fmt.Fprintf(w, "  %5d instances: %.3f retries per request, at most %.3f: %s", n, got, limit, v)
		if got < BudgetRatioLow {
			fmt.Fprintf(w, " (below 0.1 - %g: the gate stopped retries into a host refusing half its attempts)", targetPartialSlack)
		}
		fmt.Fprintln(w)
	}
	return nil
}

// BudgetRatioLow is the partial outage's lower side: the ratio, less the
// slack.
const BudgetRatioLow = storm.BudgetRatio - targetPartialSlack

// fleetChart charts the outage runs of the largest fleet.
func fleetChart(s stormSettings, f storm.Fleet, res storm.FleetResult) *storm.Chart {
	n := s.fleets[len(s.fleets)-1]
	chart := &storm.Chart{
		Phases:   f.Phases(),
		Title:    fmt.Sprintf("saferetry storm -scenario %s: attempts the server received per 100ms", s.scenario),
		Subtitle: fmt.Sprintf("simulation: %d clients in %d instances (~%s logical requests/s each); seed %d", s.clients, n, stormCount(s.rate()/float64(n)), s.seed),
		Capacity: float64(f.Capacity()),
	}
	if s.scenario == "partial" {
		chart.Shade = fmt.Sprintf("partial outage: the server serves %g%% of the normal load", 100*s.fraction)
		chart.Capacity = 0
	}
	for j, c := range f.Configs {
		sum := res.Outage[len(res.Outage)-1][j]
		label := fmt.Sprintf("%s: %s", c.Name, c.Label)
		if s.scenario == "fleet" {
			label += fmt.Sprintf(" (%s attempts per request in the outage)", stormRatio(sum.OutageAmplification(), 2))
		} else {
			label += fmt.Sprintf(" (%s retries per request in the outage)", stormRatio(sum.OutageRetryRatio(), 2))
		}
		chart.Lines = append(chart.Lines, storm.Line{Label: label, Points: storm.Counts(res.Series[j].Attempts)})
	}
	return chart
}

// runMetastable runs the metastable scenario, prints its report and
// returns the chart.
func runMetastable(ctx context.Context, s stormSettings, stdout, stderr io.Writer) (*storm.Chart, error) {
	m := storm.Metastable{
		Clients: s.clients, Instances: s.instances, Think: s.think,
		Loads: s.loads, Depths: s.depths,
		TriggerAt: s.phases.OutageStart, Trigger: s.trigger, Duration: s.phases.End, Timeout: s.timeout,
		Seed: s.seed, Configs: storm.OverloadConfigs,
	}
	printScenarioSetup(stdout, s, m.Configs)
	res, err := m.Run(ctx, 0, simLimit, progress(stderr, s.scenario))
	if err != nil {
		return nil, err
	}
	printMetastableReport(stdout, s, m, res)
	return metastableChart(s, m, res), nil
}

func recoveryCell(r storm.Recovery) string {
	switch {
	case r.Collapsed:
		return fmt.Sprintf("collapsed (%.0f%%)", 100*r.Goodput)
	case !r.Recovered:
		return fmt.Sprintf("not in run (%.0f%%)", 100*r.Goodput)
	}
	return fmt.Sprintf("%.1fs (%.0f%%)", r.After.Seconds(), 100*r.Goodput)
}

func printMetastableReport(w io.Writer, s stormSettings, m storm.Metastable, res storm.MetastableResult) {
	fmt.Fprintf(w, "Recovery after the trigger: the time from its end until at least %g%% of the logical requests started\n", 100*storm.RecoveredLevel)
	fmt.Fprintf(w, "in every 100ms succeed, for %v; \"collapsed\": under %g%% in every 100ms until the end of the run. In\n", storm.MetastableHold, 100*storm.CollapsedLevel)
	fmt.Fprintf(w, "brackets, the share of the logical requests started after the trigger that succeeded.\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "load\tlost\t")
	for _, c := range m.Configs {
		fmt.Fprintf(tw, "%s\t", c.Name)
	}
	fmt.Fprintln(tw)
	for i, load := range m.Loads {
		for j, depth := range m.Depths {
			fmt.Fprintf(tw, "%g%%\t%g%%\t", 100*load, 100*depth)
			for k := range m.Configs {
				fmt.Fprintf(tw, "%s\t", recoveryCell(res.Cells[i][j][k]))
			}
			fmt.Fprintln(tw)
		}
	}
	tw.Flush()

	none := configIndex(m.Configs, "no-retries")
	naive := configIndex(m.Configs, "naive")
	d := configIndex(m.Configs, defaultConfig)
	th := configIndex(m.Configs, throttledConfig)
	// after is how long a configuration took to recover: the whole rest
	// of the run if it did not.
	after := func(r storm.Recovery) time.Duration {
		if r.Recovered {
			return r.After
		}
		return m.Duration - m.TriggerAt - m.Trigger
	}
	var (
		triggered, naiveCollapsed int
		slower, faster, notFaster []string
	)
	for i, load := range m.Loads {
		for j, depth := range m.Depths {
			cell := res.Cells[i][j]
			name := fmt.Sprintf("%g%%/%g%%", 100*load, 100*depth)
			base := after(cell[none])
			if base > 0 {
				triggered++
				if cell[naive].Collapsed {
					naiveCollapsed++
				}
			}
			if got := after(cell[d]); got > base {
				slower = append(slower, fmt.Sprintf("%s by %.1fs", name, (got-base).Seconds()))
			}
			switch got := after(cell[th]); {
			case got < base:
				faster = append(faster, name)
			case base > 0 || got > base:
				notFaster = append(notFaster, fmt.Sprintf("%s (%.1fs against %.1fs)", name, got.Seconds(), base.Seconds()))
			}
		}
	}
	fmt.Fprintf(w, "\nTargets (load/lost cells in which the client that never retries took time to recover: %d of %d):\n", triggered, len(m.Loads)*len(m.Depths))
	fmt.Fprintf(w, "  naive retries stay collapsed: %d of those %d\n", naiveCollapsed, triggered)
	if len(slower) == 0 {
		fmt.Fprintf(w, "  %s recovers no slower than no-retries: PASS in every cell\n", defaultConfig)
	} else {
		fmt.Fprintf(w, "  %s recovers no slower than no-retries: MISS in %s\n", defaultConfig, strings.Join(slower, ", "))
	}
	fmt.Fprintf(w, "  %s recovers faster than no-retries: in %d cells", throttledConfig, len(faster))
	if len(notFaster) > 0 {
		fmt.Fprintf(w, "; not in %s", strings.Join(notFaster, ", "))
	}
	fmt.Fprintln(w)
}

// metastableChart charts the share of requests that succeed, by start
// time, in the grid's middle cell.
func metastableChart(s stormSettings, m storm.Metastable, res storm.MetastableResult) *storm.Chart {
	li, di := m.ChartCell()
	load, depth := m.Loads[li], m.Depths[di]
	chart := &storm.Chart{
		Phases:   m.Phases(),
		Title:    "saferetry storm -scenario metastable: requests that succeed, by start time",
		Subtitle: fmt.Sprintf("simulation: a FIFO server at %g%% load loses %g%% of its capacity for %v; %d clients in %d instances, %v attempt timeout; seed %d", 100*load, 100*depth, m.Trigger, s.clients, s.instances, m.Timeout, s.seed),
		Shade:    "trigger",
		YLabel:   "logical requests started that succeed (%)",
		Percent:  true,
	}
	for k, c := range m.Configs {
		series := res.Series[k]
		pts := make([]float64, len(series.Started))
		for i := range pts {
			pts[i] = storm.Goodput(series, i)
		}
		r := res.Cells[li][di][k]
		chart.Lines = append(chart.Lines, storm.Line{Label: fmt.Sprintf("%s: %s (recovery %s)", c.Name, c.Label, recoveryCell(r)), Points: pts})
	}
	return chart
}
