package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/saferetry/saferetry/cmd/saferetry/internal/storm"
)

// simulateStorm simulates configuration c, printing progress to stderr
// when the run is long.
func simulateStorm(ctx context.Context, s stormSettings, c storm.Config, stderr io.Writer) (stormResult, error) {
	if err := ctx.Err(); err != nil {
		return stormResult{}, context.Cause(ctx)
	}
	if c.Budget != storm.BudgetNone && c.Budget != storm.BudgetSaferetry {
		return stormResult{}, fmt.Errorf("the outage scenario compares saferetry's configurations only")
	}
	t0 := time.Now()
	rec, stats, err := storm.Simulate(c, storm.SimParams{
		Clients:   s.clients,
		Instances: s.instances,
		Think:     s.think,
		Capacity:  s.capacity,
		Service:   s.service,
		Phases:    s.phases,
		Seed:      s.seed,
		MaxEvents: simEventLimit(s.rate() * s.phases.End.Seconds()),
		Progress: func(now time.Duration, events int64) {
			fmt.Fprintf(stderr, "storm: %-13s %5.1fs of %v simulated, %.1fM events, %v\n",
				c.Name, now.Seconds(), s.phases.End, float64(events)/1e6, time.Since(t0).Round(time.Millisecond))
		},
	})
	if err != nil {
		return stormResult{}, err
	}
	res := stormResult{config: c, summary: storm.Summarize(rec, s.phases), series: rec.Series()}
	fmt.Fprintf(stderr, "storm: %-13s %.1fM events in %v\n", c.Name, float64(stats.Events)/1e6, time.Since(t0).Round(time.Millisecond))
	return res, nil
}
