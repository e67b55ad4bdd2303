package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/saferetry/saferetry/cmd/saferetry/internal/storm"
)

func TestStormRateLimit(t *testing.T) {
	t.Parallel()
	var reports []string
	for i := range 2 {
		svg := filepath.Join(t.TempDir(), "chart.svg")
		code, out, errOut := runStormArgs(t, "-mode", "sim", "-scenario", "ratelimit", "-seed", "1", "-out", svg)
		if code != 0 {
			t.Fatalf("exit status %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		for _, c := range storm.RateLimitCells(1) {
			if !strings.Contains(out, c.Name+": "+c.Label) {
				t.Errorf("the report lacks the cell %s", c.Name)
			}
		}
		for _, v := range storm.HoldVariants {
			if !strings.Contains(out, v.Name+"  ") {
				t.Errorf("the report lacks the variant %s", v.Name)
			}
		}
		// The summary's verdicts, seed 1: STORM.md quotes them.
		for _, want := range []string{
			"Summary, hold+refuse against today",
			"Fewer 429s at equal goodput in 6 of 17 cells.",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("the report lacks %q:\n%s", want, out)
			}
		}
		for cell, verdict := range map[string]string{
			"fw-2x-dl": "yes", "github": "yes", "fw-2x": "no: successes later",
			"tb-2x-dl": "no: goodput lost", "two-quotas-dl": "no: goodput lost",
		} {
			row := regexp.MustCompile(`(?m)^ *` + regexp.QuoteMeta(cell) + ` .*  ` + regexp.QuoteMeta(verdict) + `$`)
			if !row.MatchString(out) {
				t.Errorf("the summary does not say %q for %s", verdict, cell)
			}
		}
		if strings.Contains(out, "NaN") || strings.Contains(out, "Inf") {
			t.Errorf("the report has NaN or Inf:\n%s", out)
		}
		if i == 0 {
			checkChartLines(t, svg, 4)
		}
		out = strings.ReplaceAll(out, svg, "chart.svg")
		reports = append(reports, regexp.MustCompile(`Ran in .*`).ReplaceAllString(out, ""))
	}
	if reports[0] != reports[1] {
		t.Errorf("two runs with seed 1 printed different reports:\n%s\n%s", reports[0], reports[1])
	}
}

func TestStormRateLimitRejectsFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-scenario", "ratelimit"}, "-scenario ratelimit: simulated only (-mode sim)"},
		{[]string{"-mode", "sim", "-scenario", "ratelimit", "-clients", "10"}, "-clients: does not apply to -scenario ratelimit"},
		{[]string{"-mode", "sim", "-scenario", "ratelimit", "-duration", "1m"}, "-duration: does not apply to -scenario ratelimit"},
		{[]string{"-mode", "sim", "-scenario", "ratelimit", "-instances", "3"}, "-instances: does not apply to -scenario ratelimit"},
	} {
		code, out, errOut := runStormCanceled(t, append(tt.args, "-out", "")...)
		if code != 2 || !strings.Contains(errOut, tt.want) || out != "" {
			t.Errorf("%v: exit status %d, stdout %q, stderr %q; want 2 and %q", tt.args, code, out, errOut, tt.want)
		}
	}
}
