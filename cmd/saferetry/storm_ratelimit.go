package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/saferetry/saferetry/cmd/saferetry/internal/storm"
)

// resolveRateLimit checks the flags of the ratelimit scenario: its grid is
// fixed (storm.RateLimitCells), so it takes -seed and -out only.
func resolveRateLimit(f stormFlags, s stormSettings) (stormSettings, error) {
	for _, name := range []string{"clients", "think", "duration"} {
		if f.set[name] {
			return s, fmt.Errorf("-%s: does not apply to -scenario ratelimit", name)
		}
	}
	return s, nil
}

// rateLimitChartCell is the cell whose 429s are charted.
const rateLimitChartCell = "fw-2x-dl"

// runRateLimit runs the ratelimit scenario, prints one table per cell and
// returns the chart.
func runRateLimit(ctx context.Context, s stormSettings, stdout, stderr io.Writer) (*storm.Chart, error) {
	cells := storm.RateLimitCells(s.seed)
	variants := storm.HoldVariants
	fmt.Fprintf(stdout, "saferetry storm, sim, -scenario ratelimit: a rate-limited upstream; seed %d\n", s.seed)
	fmt.Fprintf(stdout, "  server:  a quota per API key; over it, 429 with the remaining count (0) and the reset (GitHub's\n")
	fmt.Fprintf(stdout, "           X-RateLimit-Remaining/-Reset; OpenAI's x-ratelimit-remaining/-reset-requests and\n")
	fmt.Fprintf(stdout, "           retry-after-ms); a 429 takes 50ms, a success 200ms\n")
	fmt.Fprintf(stdout, "  clients: saferetry's defaults (3 retries, a 429 retried after the announced wait if at most\n")
	fmt.Fprintf(stdout, "           60s and within the deadline, the default budget); Poisson arrivals\n")
	fmt.Fprintf(stdout, "  variants:\n")
	for _, v := range variants {
		fmt.Fprintf(stdout, "    %-12s %s\n", v.Name, v.Label)
	}
	fmt.Fprintf(stdout, "  columns: ok = logical requests that succeeded; in 1s, in 10s = that succeeded within 1s,\n")
	fmt.Fprintf(stdout, "           10s of their start; 429s per 100 logical requests; attempts per logical request;\n")
	fmt.Fprintf(stdout, "           refused = failed at once, unsent; held = first attempt held, and the hold's p50\n")
	fmt.Fprintf(stdout, "           and p99; p99 = latency of the successes; other = the second quota's requests\n\n")
	t0 := time.Now()
	res, err := storm.RunRateLimit(ctx, cells, variants, 0)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stderr, "storm: ratelimit: %d runs in %v\n", len(cells)*len(variants), time.Since(t0).Round(time.Millisecond))
	var chart *storm.Chart
	for i, c := range cells {
		printRateLimitCell(stdout, c, variants, res[i])
		if c.Name == rateLimitChartCell {
			chart = storm.RateLimitChart(c, variants[:4], res[i][:4])
		}
	}
	printRateLimitSummary(stdout, cells, variants, res)
	return chart, nil
}

// The variants the summary compares, and how much goodput may differ and
// still count as equal: the runs' own noise, between seeds, is under a
// point.
const (
	rateLimitToday     = "today"
	rateLimitCandidate = "hold+refuse"
	rateLimitEqual     = 0.01
)

// printRateLimitSummary prints, per cell, today against the candidate
// rule: whether it received fewer 429s at equal goodput (the issue's
// condition for keeping it).
func printRateLimitSummary(w io.Writer, cells []storm.RateLimitCell, variants []storm.HoldVariant, res [][]*storm.RateLimitResult) {
	ti, hi := -1, -1
	for j, v := range variants {
		switch v.Name {
		case rateLimitToday:
			ti = j
		case rateLimitCandidate:
			hi = j
		}
	}
	if ti < 0 || hi < 0 {
		return
	}
	fmt.Fprintf(w, "Summary, %s against %s: fewer 429s at equal goodput (ok and in 10s, each within %g point)?\n", rateLimitCandidate, rateLimitToday, 100*rateLimitEqual)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "cell\t429s/100\tok\tin 10s\tin 1s\tverdict\t\n")
	pct := func(v float64) string { return fmt.Sprintf("%.1f%%", 100*v) }
	kept := 0
	for i, c := range cells {
		t, h := res[i][ti], res[i][hi]
		verdict := rateLimitVerdict(t, h)
		if verdict == "yes" {
			kept++
		}
		fmt.Fprintf(tw, "%s\t%.1f -> %.1f\t%s -> %s\t%s -> %s\t%s -> %s\t%s\t\n", c.Name,
			t.RejectedPer100(), h.RejectedPer100(), pct(t.GoodputShare()), pct(h.GoodputShare()),
			pct(t.In10s()), pct(h.In10s()), pct(t.In1s()), pct(h.In1s()), verdict)
	}
	tw.Flush()
	fmt.Fprintf(w, "Fewer 429s at equal goodput in %d of %d cells.\n", kept, len(cells))
}

// rateLimitVerdict says whether hold received fewer 429s than today at
// equal goodput, counting both the requests that succeeded and those that
// succeeded within 10s; and if not, why.
func rateLimitVerdict(today, hold *storm.RateLimitResult) string {
	switch {
	case hold.Rejected >= today.Rejected:
		return "no: as many 429s"
	case hold.GoodputShare() < today.GoodputShare()-rateLimitEqual:
		return "no: goodput lost"
	case hold.In10s() < today.In10s()-rateLimitEqual:
		return "no: successes later"
	}
	return "yes"
}

func printRateLimitCell(w io.Writer, c storm.RateLimitCell, variants []storm.HoldVariant, res []*storm.RateLimitResult) {
	fmt.Fprintf(w, "%s: %s\n", c.Name, c.Label)
	other := c.Params.OtherShare > 0
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "variant\tok\tin 1s\tin 10s\t429s/100\tattempts\trefused\theld\thold p50\thold p99\tp99\t")
	if other {
		fmt.Fprintf(tw, "other ok\tother p99\t")
	}
	fmt.Fprintln(tw)
	pct := func(v float64) string { return fmt.Sprintf("%.1f%%", 100*v) }
	for j, v := range variants {
		r := res[j]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1f\t%.3f\t%s\t%s\t%v\t%v\t%v\t", v.Name, pct(r.GoodputShare()), pct(r.In1s()), pct(r.In10s()),
			r.RejectedPer100(), r.AttemptsPerRequest(), pct(r.RefusedShare()), pct(r.HeldShare()),
			roundLatency(r.HoldQuantile(0.5)), roundLatency(r.HoldQuantile(0.99)), roundLatency(r.Latency(0.99)))
		if other {
			fmt.Fprintf(tw, "%s\t%v\t", pct(r.OtherGoodputShare()), roundLatency(r.OtherLatency(0.99)))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Fprintln(w)
}

// roundLatency keeps two or three significant digits.
func roundLatency(d time.Duration) time.Duration {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}
