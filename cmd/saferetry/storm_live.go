package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/saferetry/saferetry"
	"github.com/saferetry/saferetry/cmd/saferetry/internal/storm"
)

const (
	// liveDrain bounds how long logical requests still in flight when
	// arrivals stop may take to finish; any left then are canceled and
	// counted as failed. With the default backoff a request's waits add up
	// to at most 3.9s (decorrelated jitter).
	liveDrain = 5 * time.Second
	// liveMaxInFlight bounds each client's concurrent logical requests:
	// clients do not wait for one request to end before starting the next
	// (an open load), but a client that reaches this many in flight skips
	// its arrivals until one ends. Each skip is reported.
	liveMaxInFlight = 64
	// liveConns bounds each instance's connections to the server.
	liveConns = 64
)

// stormServer is the live storm's upstream: it serves up to capacity
// requests at once, each taking service, and answers 503 at once to any
// request above that and to every request during the outage. It counts
// every request it receives, by time since start, in rec.
type stormServer struct {
	start     time.Time
	phases    storm.Phases
	capacity  int64
	service   time.Duration
	rec       *storm.Recorder
	inService atomic.Int64
}

func (s *stormServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Since(s.start)
	if at >= s.phases.OutageStart && at < s.phases.OutageEnd {
		s.reject(w, at)
		return
	}
	if s.inService.Add(1) > s.capacity {
		s.inService.Add(-1)
		s.reject(w, at)
		return
	}
	defer s.inService.Add(-1)
	s.rec.Attempt(at, true)
	timer := time.NewTimer(s.service)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-r.Context().Done():
		return
	}
	w.WriteHeader(http.StatusOK)
}

// reject answers 503 without Retry-After, so the clients' own backoff
// decides when they come back.
func (s *stormServer) reject(w http.ResponseWriter, at time.Duration) {
	s.rec.Attempt(at, false)
	w.WriteHeader(http.StatusServiceUnavailable)
}

// liveRun is one configuration's live run.
type liveRun struct {
	s     stormSettings
	rec   *storm.Recorder
	start time.Time
	url   string

	transportErrors atomic.Int64 // logical requests that ended in an error
	skipped         atomic.Int64 // arrivals skipped at liveMaxInFlight
}

// runLiveStorm runs configuration c over loopback HTTP: a fresh server,
// s.instances saferetry stacks built with New and the configuration's
// options, and s.clients goroutines starting logical requests through them
// until s.phases.End.
func runLiveStorm(ctx context.Context, s stormSettings, c storm.Config) (res stormResult, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	// One stack, and so one budget, per instance.
	clients := make([]*http.Client, s.instances)
	for i := range clients {
		clients[i] = &http.Client{Transport: saferetry.New(liveBase(), liveOptions(c)...)}
	}
	run := &liveRun{s: s, rec: storm.NewRecorder(s.phases.End + liveDrain), url: "http://" + ln.Addr().String() + "/", start: time.Now()}
	srv := &http.Server{
		Handler: &stormServer{
			start: run.start, phases: s.phases, capacity: int64(s.capacity), service: s.service, rec: run.rec,
		},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		for _, cl := range clients {
			cl.CloseIdleConnections()
		}
		shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if serr := srv.Shutdown(shutCtx); serr != nil && err == nil {
			err = fmt.Errorf("shutting down the storm server: %w", serr)
		}
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
	}()

	requests, cancelRequests := context.WithDeadline(ctx, run.start.Add(s.phases.End+liveDrain))
	defer cancelRequests()

	var wg sync.WaitGroup
	for i := range s.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run.client(ctx, requests, clients[i%s.instances], rand.New(rand.NewPCG(s.seed, uint64(i))), &wg)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, context.Cause(ctx)
	}

	res = stormResult{config: c, summary: storm.Summarize(run.rec, s.phases), series: run.rec.Series()}
	if n := run.transportErrors.Load(); n > 0 {
		res.notes = append(res.notes, fmt.Sprintf("%d logical requests ended in a transport error (counted as failed)", n))
	}
	if n := run.skipped.Load(); n > 0 {
		res.notes = append(res.notes, fmt.Sprintf("%d arrivals skipped: their client had %d logical requests in flight", n, liveMaxInFlight))
	}
	return res, nil
}

// liveOptions are the saferetry options of configuration c: New's own
// budget (the default) for the budgeted ones, none for the others.
func liveOptions(c storm.Config) []saferetry.Option {
	opts := []saferetry.Option{saferetry.WithMaxRetries(c.MaxRetries), saferetry.WithJitter(c.Jitter)}
	if c.Budgeted() {
		return opts
	}
	return append(opts, saferetry.WithBudget(nil))
}

// liveBase is an instance's base transport: pooled like go-cleanhttp's,
// but with up to liveConns connections to the server, all kept idle
// between requests (cleanhttp keeps GOMAXPROCS+1 idle per host and opens
// as many as requests need). Without that limit, retries that come back in
// step (no jitter) each open a connection at once: thousands within
// milliseconds, more than the kernel's accept queue holds, and the dropped
// SYNs are sent again a second later, which shifts attempts out of the
// outage and distorts the measurement. A production client would bound
// its connections too.
func liveBase() *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxConnsPerHost:     liveConns,
		MaxIdleConnsPerHost: liveConns,
		IdleConnTimeout:     30 * time.Second,
	}
}

// client starts logical requests through hc at exponentially distributed
// intervals of mean s.think, until s.phases.End or until ctx is done; each
// runs in its own goroutine, counted in wg, under the requests context.
// The schedule is kept in times since r.start, so a client the scheduler
// delayed catches up rather than losing arrivals, and every configuration
// sees the same arrivals for a seed.
func (r *liveRun) client(ctx, requests context.Context, hc *http.Client, rng *rand.Rand, wg *sync.WaitGroup) {
	think := func() time.Duration { return time.Duration(rng.ExpFloat64() * float64(r.s.think)) }
	var inFlight atomic.Int32
	next := think() // the next arrival, since r.start
	timer := time.NewTimer(time.Until(r.start.Add(next)))
	defer timer.Stop()
	for next < r.s.phases.End {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if inFlight.Load() >= liveMaxInFlight {
			r.skipped.Add(1)
		} else {
			inFlight.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer inFlight.Add(-1)
				r.logical(requests, hc)
			}()
		}
		next += think()
		timer.Reset(time.Until(r.start.Add(next)))
	}
}

// logical sends one logical request and records its outcome.
func (r *liveRun) logical(ctx context.Context, hc *http.Client) {
	t0 := time.Now()
	start := t0.Sub(r.start)
	r.rec.Start(start)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		r.transportErrors.Add(1)
		r.rec.Finish(start, false, 0)
		return
	}
	resp, err := hc.Do(req)
	if err != nil {
		r.transportErrors.Add(1)
		r.rec.Finish(start, false, 0)
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	r.rec.Finish(start, resp.StatusCode == http.StatusOK, time.Since(t0))
}
