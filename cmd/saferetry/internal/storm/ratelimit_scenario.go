package storm

import (
	"context"
	"fmt"
	"time"
)

// RateLimitCell is one upstream and load of the rate-limit scenario, run
// for every HoldVariant.
type RateLimitCell struct {
	Name   string // short, for the tables
	Label  string // what it models
	Params RateLimitParams
}

// RateLimitCells is the rate-limit scenario's grid: fixed windows of 10s,
// a minute and an hour (GitHub's), a token bucket (OpenAI's requests per
// minute), surges of 1.2 to 5 times the quota and one that does not end,
// one instance or ten sharing a key, with and without a deadline, and a
// host with two quotas. Every cell sees the same seed.
func RateLimitCells(seed uint64) []RateLimitCell {
	minute := Quota{Kind: FixedWindow, Limit: 600, Window: time.Minute}
	// The base cell: 10/s of quota; demand at half of it, then at twice
	// it for three windows, then at half again.
	base := RateLimitParams{
		Instances: 1, Quota: minute,
		Base: 5, Surge: 20, SurgeStart: 2 * time.Minute, SurgeEnd: 5 * time.Minute, End: 10 * time.Minute,
		Reject: 50 * time.Millisecond, Serve: 200 * time.Millisecond, Seed: seed,
	}
	cell := func(name, label string, f func(p *RateLimitParams)) RateLimitCell {
		p := base
		f(&p)
		return RateLimitCell{Name: name, Label: label, Params: p}
	}
	const dl = 10 * time.Second
	bucket := Quota{Kind: TokenBucket, Limit: 600, Window: time.Minute}
	hour := Quota{Kind: FixedWindow, Limit: 5000, Window: time.Hour}
	github := func(p *RateLimitParams) {
		// 5000/h; half of it, then twice it for an hour.
		p.Quota, p.Base, p.Surge = hour, 0.7, 2.8
		p.SurgeStart, p.SurgeEnd, p.End = 10*time.Minute, 70*time.Minute, 150*time.Minute
	}
	two := func(p *RateLimitParams) {
		// 30/min (a search API) and, for 80% of the requests, a quota
		// they never exhaust; the first quota's share of demand is 0.4
		// and 1/s, 0.8 and 2 times its quota.
		p.Quota, p.Other, p.OtherShare = Quota{Kind: FixedWindow, Limit: 30, Window: time.Minute}, Quota{Kind: FixedWindow, Limit: 50_000, Window: time.Minute}, 0.8
		p.Base, p.Surge = 2, 5
	}
	return []RateLimitCell{
		cell("fw-2x", "600/min fixed window, demand 2x for 3 min, no deadline", func(*RateLimitParams) {}),
		cell("fw-2x-dl", "600/min fixed window, demand 2x for 3 min, each request with a 10s deadline", func(p *RateLimitParams) { p.Deadline = dl }),
		cell("fw-1.2x", "600/min fixed window, demand 1.2x for 3 min", func(p *RateLimitParams) { p.Surge = 12 }),
		cell("fw-5x", "600/min fixed window, demand 5x for 3 min", func(p *RateLimitParams) { p.Surge = 50 }),
		cell("fw-5x-dl", "the same, 10s deadline", func(p *RateLimitParams) { p.Surge = 50; p.Deadline = dl }),
		cell("fw-always", "600/min fixed window, demand 2x throughout", func(p *RateLimitParams) { p.SurgeStart, p.SurgeEnd = 0, p.End }),
		cell("fw-10s-dl", "100/10s fixed window, demand 2x for 3 min, 10s deadline", func(p *RateLimitParams) {
			p.Quota = Quota{Kind: FixedWindow, Limit: 100, Window: 10 * time.Second}
			p.Deadline = dl
		}),
		cell("shared-10", "10 instances sharing one 600/min key, demand 2x", func(p *RateLimitParams) { p.Instances, p.SharedKey = 10, true }),
		cell("shared-10-dl", "the same, 10s deadline", func(p *RateLimitParams) { p.Instances, p.SharedKey, p.Deadline = 10, true, dl }),
		cell("github", "5000/h fixed window (GitHub), demand 2x for 1h, no deadline", github),
		cell("github-dl", "the same, 30s deadline", func(p *RateLimitParams) {
			github(p)
			p.Deadline = 30 * time.Second
		}),
		cell("github-cap1h", "the same, no deadline, WithMaxRetryAfter(1h)", func(p *RateLimitParams) {
			github(p)
			p.MaxRetryAfter = time.Hour
		}),
		cell("tb-2x", "600/min token bucket (OpenAI), demand 2x for 3 min", func(p *RateLimitParams) { p.Quota = bucket }),
		cell("tb-2x-dl", "the same, 10s deadline", func(p *RateLimitParams) { p.Quota, p.Deadline = bucket, dl }),
		cell("tb-5x", "600/min token bucket, demand 5x for 3 min", func(p *RateLimitParams) { p.Quota, p.Surge = bucket, 50 }),
		cell("two-quotas", "30/min quota at 2x, 80% of requests to another quota of the host", two),
		cell("two-quotas-dl", "the same, 10s deadline", func(p *RateLimitParams) { two(p); p.Deadline = dl }),
	}
}

// RunRateLimit runs every cell for every variant on up to workers
// goroutines (zero: GOMAXPROCS) and returns the results, indexed
// [cell][variant]. The results do not depend on workers.
func RunRateLimit(ctx context.Context, cells []RateLimitCell, variants []HoldVariant, workers int) ([][]*RateLimitResult, error) {
	res := make([][]*RateLimitResult, len(cells))
	type job struct{ i, j int }
	var jobs []job
	for i := range cells {
		res[i] = make([]*RateLimitResult, len(variants))
		for j := range variants {
			jobs = append(jobs, job{i, j})
		}
	}
	err := inParallel(ctx, len(jobs), workers, func(k int) (func(), error) {
		jb := jobs[k]
		r, err := SimulateRateLimit(variants[jb.j], cells[jb.i].Params)
		if err != nil {
			return nil, fmt.Errorf("%s, %s: %w", cells[jb.i].Name, variants[jb.j].Name, err)
		}
		return func() { res[jb.i][jb.j] = r }, nil
	})
	return res, err
}

// RateLimitChart charts the 429s per second of cell c's runs, one line per
// variant, with the surge shaded.
func RateLimitChart(c RateLimitCell, variants []HoldVariant, results []*RateLimitResult) *Chart {
	p := c.Params
	ch := &Chart{
		Title:    "Rate limit: 429s received per second (" + c.Name + ")",
		Subtitle: c.Label,
		Phases:   Phases{OutageStart: p.SurgeStart, OutageEnd: p.SurgeEnd, End: p.End},
		Shade:    fmt.Sprintf("demand %gx the quota", p.Surge/(float64(p.Quota.Limit)/p.Quota.Window.Seconds())),
		YLabel:   "429s received per second",
	}
	perSecond := int(time.Second / BucketWidth)
	for j, v := range variants {
		r := results[j]
		pts := make([]float64, int(p.End/BucketWidth))
		for i := range pts {
			pts[i] = float64(r.Rejects[min(i/perSecond, len(r.Rejects)-1)])
		}
		ch.Lines = append(ch.Lines, Line{Label: v.Name + ": " + v.Label, Points: pts})
	}
	return ch
}
