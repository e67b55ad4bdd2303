package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/saferetry/saferetry"
	"github.com/saferetry/saferetry/cmd/saferetry/internal/payments"
)

const demoAbout = `Starts a deliberately flaky payments API on 127.0.0.1 and drives a client
built with saferetry.NewClient through five scenes: 503s healed by backoff,
a 429 whose Retry-After is honoured, a connection cut after a charge was
committed (retried under the same Idempotency-Key, charged once), the same
cut without a key (not retried, charged once), and a POST hedged past a
stalled server under the same Idempotency-Key (charged once). Prints a
timeline and a summary, and fails if anything diverged from what saferetry
promises.`

// Backoff bounds of the demo's clients: small, so the demo takes seconds.
const (
	demoInitialBackoff = 50 * time.Millisecond
	demoMaxBackoff     = time.Second
	// demoRetryAfter is what the rate-limited scene's server asks for.
	demoRetryAfter = time.Second
	// demoHedgeDelay is how long the hedged scene's client waits for an
	// answer before it sends a hedge.
	demoHedgeDelay = 50 * time.Millisecond
	// demoTimeout bounds the whole demo, so a bug cannot hang it.
	demoTimeout = 30 * time.Second
)

// demoCommand is the demo subcommand.
func demoCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("saferetry demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quiet := fs.Bool("quiet", false, "print only the summary, not the timeline")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: saferetry demo [-quiet]\n\n%s\n\nFlags:\n", demoAbout)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	_, err := runDemo(ctx, stdout, *quiet)
	return err
}

// sceneReport is what one scene observed, from both ends of the wire.
type sceneReport struct {
	Title        string
	Method, Path string
	// WantAttempts is how many attempts saferetry should make.
	WantAttempts int
	// Attempts is how many it made: saferetry.Attempts(resp), or for an
	// error the attempts a *saferetry.RetryError reports (1 for an error
	// saferetry returned as the base transport gave it).
	Attempts int
	// Status is the final response's status, 0 when the caller got Err.
	Status int
	Err    error
	Body   []byte
	Header http.Header
	// Retries are the events saferetry's hook reported.
	Retries []saferetry.Event
	// Verdicts are the strategy's verdicts, one per attempt.
	Verdicts []saferetry.Retryable
	// ServerSaw are the requests the server received during the scene.
	ServerSaw []payments.Request
}

// outcome describes how the logical request ended, for the caller.
func (s *sceneReport) outcome() string {
	if s.Err != nil {
		return "error: " + describeErr(s.Err)
	}
	return statusText(s.Status)
}

// demoReport is what the whole demo observed, and what diverged.
type demoReport struct {
	Scenes         []sceneReport
	ChargesPerCard map[string]int
	WantCharges    map[string]int
	Failures       []string
}

// demo is the state shared by the scenes.
type demo struct {
	tl       *timeline
	api      *payments.API
	url      string
	failures []string
}

// expect records a failure unless ok.
func (d *demo) expect(ok bool, format string, args ...any) {
	if !ok {
		d.failures = append(d.failures, fmt.Sprintf(format, args...))
	}
}

// runDemo runs every scene against a fresh API and server, writes the
// timeline (unless quiet) and the summary to out, and returns what it
// observed. The error says what diverged from expectations, if anything.
func runDemo(ctx context.Context, out io.Writer, quiet bool) (report *demoReport, err error) {
	ctx, cancel := context.WithTimeout(ctx, demoTimeout)
	defer cancel()

	tl := &timeline{w: out, start: time.Now()}
	if quiet {
		tl.w = io.Discard
	}
	api := payments.New(func(ev payments.Event) { tl.printf(whoServer, "%s", ev.Msg) })
	srv, err := payments.Start(api)
	if err != nil {
		return nil, err
	}
	defer func() {
		// The caller's context may be done (interrupted); shutting down
		// still deserves a moment.
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if cerr := srv.Close(closeCtx); cerr != nil && err == nil {
			err = fmt.Errorf("shutting down the payments API: %w", cerr)
		}
	}()

	tl.note("saferetry demo: a flaky payments API on %s, and a client per scene built with", srv.URL)
	tl.note("saferetry.NewClient(WithBackoff(%v, %v), WithHook(...), ...): full jitter, default strategy.", demoInitialBackoff, demoMaxBackoff)

	d := &demo{tl: tl, api: api, url: srv.URL}
	report = &demoReport{WantCharges: map[string]int{"card_alice": 1, "card_bob": 1, "card_carol": 1}}
	scenes := []func(context.Context, *sceneReport){
		d.sceneBackoff,
		d.sceneRetryAfter,
		d.sceneCutWithKey,
		d.sceneCutWithoutKey,
		d.sceneHedge,
	}
	for i, run := range scenes {
		if ctx.Err() != nil {
			return report, context.Cause(ctx)
		}
		var sc sceneReport
		run(ctx, &sc)
		d.checkAttempts(i+1, &sc)
		report.Scenes = append(report.Scenes, sc)
	}
	if ctx.Err() != nil {
		return report, context.Cause(ctx)
	}

	report.ChargesPerCard = api.ChargesPerCard()
	for card, want := range report.WantCharges {
		got := report.ChargesPerCard[card]
		d.expect(got == want, "%s was charged %d time(s), want %d", card, got, want)
	}
	d.expect(len(api.Charges()) == len(report.WantCharges),
		"the API committed %d charges, want %d", len(api.Charges()), len(report.WantCharges))
	report.Failures = d.failures
	printSummary(out, report, len(api.Requests()))
	switch n := len(report.Failures); {
	case n == 1:
		return report, fmt.Errorf("an expectation was not met: %s", report.Failures[0])
	case n > 1:
		return report, fmt.Errorf("%d expectations were not met, the first: %s (see the summary)", n, report.Failures[0])
	}
	return report, nil
}

// checkAttempts compares what saferetry counted with what the server saw.
// They differ if anything else resent a request behind saferetry's back.
func (d *demo) checkAttempts(n int, sc *sceneReport) {
	d.expect(sc.Attempts == sc.WantAttempts, "scene %d: saferetry made %d attempt(s), want %d", n, sc.Attempts, sc.WantAttempts)
	d.expect(len(sc.ServerSaw) == sc.WantAttempts, "scene %d: the server received %d attempt(s), want %d", n, len(sc.ServerSaw), sc.WantAttempts)
}

// sceneBackoff: two 503s without Retry-After, healed by backoff.
func (d *demo) sceneBackoff(ctx context.Context, sc *sceneReport) {
	*sc = sceneReport{
		Title:  "GET /v1/balance answers 503 twice, then 200: backoff heals it",
		Method: http.MethodGet, Path: "/v1/balance", WantAttempts: 3,
	}
	d.api.Script("GET /v1/balance", payments.Status(http.StatusServiceUnavailable, ""), payments.Status(http.StatusServiceUnavailable, ""))
	d.tl.scene(1, sc.Title)
	d.send(ctx, sc, nil)

	d.expect(sc.Err == nil && sc.Status == http.StatusOK, "scene 1: got %s, want 200 OK", sc.outcome())
	d.expect(len(sc.Retries) == 2, "scene 1: saferetry reported %d retries, want 2", len(sc.Retries))
	for i, ev := range sc.Retries {
		limit := backoffLimit(i + 1)
		d.expect(ev.Stopped == saferetry.StopNone && ev.StatusCode() == http.StatusServiceUnavailable && !ev.ServerDirected,
			"scene 1: retry %d: want a backoff retry after a 503, got status %d, stopped %q, Retry-After %t", i+1, ev.StatusCode(), ev.Stopped, ev.ServerDirected)
		d.expect(ev.Delay >= 0 && ev.Delay < limit, "scene 1: retry %d waited %v, want under %v", i+1, ev.Delay, limit)
	}
}

// sceneRetryAfter: a 429 with Retry-After: 1, honoured.
func (d *demo) sceneRetryAfter(ctx context.Context, sc *sceneReport) {
	*sc = sceneReport{
		Title:  "GET /v1/charges answers 429 with Retry-After: 1, then 200: the wait is honoured",
		Method: http.MethodGet, Path: "/v1/charges", WantAttempts: 2,
	}
	d.api.Script("GET /v1/charges", payments.Status(http.StatusTooManyRequests, "1"))
	d.tl.scene(2, sc.Title)
	d.send(ctx, sc, nil)

	d.expect(sc.Err == nil && sc.Status == http.StatusOK, "scene 2: got %s, want 200 OK", sc.outcome())
	if !d.expectOne(2, sc) {
		return
	}
	ev := sc.Retries[0]
	maxWait := demoRetryAfter + demoRetryAfter/10
	d.expect(ev.StatusCode() == http.StatusTooManyRequests && ev.ServerDirected,
		"scene 2: want a retry directed by the 429's Retry-After, got status %d, Retry-After %t", ev.StatusCode(), ev.ServerDirected)
	d.expect(ev.Delay >= demoRetryAfter && ev.Delay <= maxWait,
		"scene 2: saferetry waited %v, want between %v and %v (Retry-After plus at most 10%%)", ev.Delay, demoRetryAfter, maxWait)
	if len(sc.ServerSaw) == 2 {
		gap := sc.ServerSaw[1].At.Sub(sc.ServerSaw[0].At)
		d.tl.note("  The server received the retry %v after the first attempt; it had asked for %v.", gap.Round(time.Millisecond), demoRetryAfter)
		d.expect(gap >= demoRetryAfter, "scene 2: the retry reached the server %v after the first attempt, before the %v it asked for", gap, demoRetryAfter)
	}
}

// sceneCutWithKey: a charge committed, its answer lost to a reset
// connection, and the retry deduplicated by the key KeyInjector added.
func (d *demo) sceneCutWithKey(ctx context.Context, sc *sceneReport) {
	*sc = sceneReport{
		Title:  "POST /v1/charges, connection cut after the charge was committed; KeyInjector keys it",
		Method: http.MethodPost, Path: "/v1/charges", WantAttempts: 2,
	}
	d.api.Script("POST /v1/charges", payments.CutAfterCommit())
	d.tl.scene(3, sc.Title)
	req := d.send(ctx, sc, []byte(`{"amount":4200,"currency":"eur","card":"card_alice"}`))

	d.expect(sc.Err == nil && sc.Status == http.StatusCreated, "scene 3: got %s, want 201 Created", sc.outcome())
	d.expect(req.Header.Get(payments.KeyHeader) == "", "scene 3: the caller's request was modified: it now has an Idempotency-Key")
	if len(sc.ServerSaw) == 2 {
		first, second := sc.ServerSaw[0], sc.ServerSaw[1]
		d.expect(first.Key != "", "scene 3: the first attempt reached the server without an Idempotency-Key")
		d.expect(second.Key == first.Key, "scene 3: the key changed between attempts: %q, then %q", first.Key, second.Key)
		d.expect(first.Status == 0, "scene 3: the first attempt was answered %d, want the connection cut", first.Status)
		d.expect(second.Replayed, "scene 3: the retry was not answered from the stored response")
		if d.expectOne(3, sc) {
			d.expect(sc.Retries[0].Key == first.Key, "scene 3: saferetry reported key %q, the server saw %q", sc.Retries[0].Key, first.Key)
		}
	}
	var charge payments.Charge
	if sc.Err == nil && json.Unmarshal(sc.Body, &charge) == nil {
		committed := d.api.Charges()
		d.expect(len(committed) > 0 && committed[len(committed)-1].ID == charge.ID,
			"scene 3: the caller got charge %q, which is not the one committed", charge.ID)
		d.expect(sc.Header.Get(payments.ReplayedHeader) == "true", "scene 3: the response lacks %s: true", payments.ReplayedHeader)
	}
}

// sceneCutWithoutKey: the same cut, for a POST saferetry may not key. It
// must not be retried: the server may have processed it (and here did).
func (d *demo) sceneCutWithoutKey(ctx context.Context, sc *sceneReport) {
	*sc = sceneReport{
		Title:  "the same cut, with key injection off (WithKeyMethods()): the unkeyed POST is not retried",
		Method: http.MethodPost, Path: "/v1/charges", WantAttempts: 1,
	}
	d.api.Script("POST /v1/charges", payments.CutAfterCommit())
	d.tl.scene(4, sc.Title)
	d.send(ctx, sc, []byte(`{"amount":1999,"currency":"eur","card":"card_bob"}`), saferetry.WithKeyMethods())

	d.expect(sc.Err != nil, "scene 4: got %s, want the connection error", sc.outcome())
	d.expect(slices.Equal(sc.Verdicts, []saferetry.Retryable{saferetry.Fatal}),
		"scene 4: the strategy's verdicts were %v, want [fatal]", sc.Verdicts)
	d.expect(len(sc.Retries) == 1 && sc.Retries[0].Stopped == saferetry.StopNotRetryable,
		"scene 4: saferetry reported %d event(s), want one refusal (not retryable)", len(sc.Retries))
	for _, r := range sc.ServerSaw {
		d.expect(r.Key == "", "scene 4: the request carried Idempotency-Key %q, want none", r.Key)
	}
	if sc.Err != nil {
		d.tl.printf(whoCaller, "the charge may or may not exist: look it up before charging again")
	}
}

// sceneHedge: a POST whose first attempt stalls at the server, hedged
// under the same key. The hedge is safe because it is the same logical
// request: whichever attempts the server processes, it commits one charge.
func (d *demo) sceneHedge(ctx context.Context, sc *sceneReport) {
	*sc = sceneReport{
		Title:  fmt.Sprintf("POST /v1/charges stalls at the server; WithHedge(%v, 1) hedges it under the same key", demoHedgeDelay),
		Method: http.MethodPost, Path: "/v1/charges", WantAttempts: 2,
	}
	d.api.Script("POST /v1/charges", payments.Stall())
	d.tl.scene(5, sc.Title)
	d.send(ctx, sc, []byte(`{"amount":3100,"currency":"eur","card":"card_carol"}`), saferetry.WithHedge(demoHedgeDelay, 1))

	d.expect(sc.Err == nil && sc.Status == http.StatusCreated, "scene 5: got %s, want 201 Created", sc.outcome())
	hedges := 0
	for _, ev := range sc.Retries {
		if ev.Hedge {
			hedges++
		}
	}
	d.expect(hedges == 1 && len(sc.Retries) == 1, "scene 5: saferetry reported %d event(s), %d of them hedges; want one hedge", len(sc.Retries), hedges)
	if len(sc.ServerSaw) != 2 {
		return
	}
	first, second := sc.ServerSaw[0], sc.ServerSaw[1]
	d.expect(first.Key != "", "scene 5: the first attempt reached the server without an Idempotency-Key")
	d.expect(second.Key == first.Key, "scene 5: the hedge carried another key: %q, then %q", first.Key, second.Key)
	if len(sc.Retries) == 1 {
		d.expect(sc.Retries[0].Key == first.Key, "scene 5: saferetry reported key %q, the server saw %q", sc.Retries[0].Key, first.Key)
	}
	// Either attempt may reach the server first and stall; the other is
	// the one served.
	stalled, served := first, second
	if second.Fault == payments.Stall() {
		stalled, served = second, first
	}
	d.expect(stalled.Fault == payments.Stall() && stalled.Status == 0,
		"scene 5: no attempt stalled until the client gave up: %+v", sc.ServerSaw)
	d.expect(served.Status == http.StatusCreated && !served.Replayed,
		"scene 5: the served attempt was answered %d (replayed %t), want a fresh 201", served.Status, served.Replayed)
	d.tl.note("  The server received 2 attempts, both with Idempotency-Key %s:", first.Key)
	d.tl.note("  the one that stalled was abandoned without a charge; the other committed the charge, once.")
}

// expectOne checks that scene n reported exactly one retry event.
func (d *demo) expectOne(n int, sc *sceneReport) bool {
	d.expect(len(sc.Retries) == 1, "scene %d: saferetry reported %d retry event(s), want 1", n, len(sc.Retries))
	return len(sc.Retries) == 1
}

// send makes sc's logical request, with body if not nil, through a fresh
// client built with opts on top of the demo's own, and records what both
// ends saw. It returns the request as the caller built it.
//
// Each scene has a client, and so a connection pool, of its own. net/http
// itself resends a request carrying an Idempotency-Key (with a rewindable
// body) when a reused connection fails before the first response byte,
// even after the request was written, invisibly to saferetry. On a fresh
// connection it never does, so every resend in the timeline is saferetry's,
// and counted.
func (d *demo) send(ctx context.Context, sc *sceneReport, body []byte, opts ...saferetry.Option) *http.Request {
	client := saferetry.NewClient(append(d.options(sc), opts...)...)
	defer client.CloseIdleConnections()

	var reqBody io.Reader
	if body != nil {
		reqBody = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, sc.Method, d.url+sc.Path, reqBody)
	if err != nil {
		panic("saferetry demo: building a request: " + err.Error()) // the demo's own constants
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		d.tl.printf(whoCaller, "%s %s %s, %s", sc.Method, sc.Path, body, describeKey(req.Header.Get(payments.KeyHeader)))
	} else {
		d.tl.printf(whoCaller, "%s %s", sc.Method, sc.Path)
	}

	seen := len(d.api.Requests())
	resp, err := client.Do(req)
	// An attempt saferetry gave up on (a losing hedge) may still be in a
	// handler until the server notices; wait, so the timeline and
	// ServerSaw tell the server's whole story before the caller's result.
	if werr := d.api.Wait(ctx); werr != nil && err == nil {
		err = werr
		resp.Body.Close()
	}
	if err != nil {
		sc.Err = err
		sc.Attempts = 1
		var rerr *saferetry.RetryError
		if errors.As(err, &rerr) {
			sc.Attempts = rerr.Attempts
		}
		d.tl.printf(whoCaller, "got an error after %s: %s", plural(sc.Attempts, "attempt"), describeErr(err))
	} else {
		sc.Status, sc.Header = resp.StatusCode, resp.Header
		sc.Attempts = saferetry.Attempts(resp)
		sc.Body, err = io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if err != nil {
			sc.Err = fmt.Errorf("reading the response body: %w", err)
		}
		d.tl.printf(whoCaller, "got %s after %s: %s", statusText(sc.Status), plural(sc.Attempts, "attempt"), sc.Body)
	}
	sc.ServerSaw = d.api.Requests()[seen:]
	return req
}

// options are the demo's client options, which record what saferetry
// reports about sc's request and put it on the timeline. The hook and the
// strategy run on the caller's goroutine, one logical request per client,
// so sc needs no lock.
func (d *demo) options(sc *sceneReport) []saferetry.Option {
	backoffRetries := 0
	onRetry := func(ev saferetry.Event) {
		sc.Retries = append(sc.Retries, ev)
		if ev.Hedge {
			d.tl.printf(whoSaferetry, "no answer after %v: hedging with attempt %d, same %s, same body",
				demoHedgeDelay, ev.Number, describeKey(ev.Key))
			return
		}
		got := outcomeText(ev.StatusCode(), ev.Err)
		key := ""
		if ev.Key != "" {
			key = ", resending Idempotency-Key " + ev.Key
		}
		switch {
		case ev.Stopped == saferetry.StopNotRetryable:
			why := "the strategy judges it unsafe or useless to retry"
			if ev.Key == "" && ev.Request.Method == http.MethodPost {
				why = "a POST without an Idempotency-Key that reached the server may have been processed"
			}
			d.tl.printf(whoSaferetry, "attempt %d %s: not retrying: %s", ev.Number, got, why)
		case ev.Stopped != saferetry.StopNone:
			d.tl.printf(whoSaferetry, "attempt %d %s: not retrying (%s)", ev.Number, got, ev.Stopped)
		case ev.ServerDirected:
			backoffRetries = 0 // the backoff starts over after a server-directed wait
			d.tl.printf(whoSaferetry, "attempt %d %s: retrying in %v (Retry-After honoured, +%.1f%% jitter)%s",
				ev.Number, got, ev.Delay.Round(time.Millisecond), jitterPercent(ev.Delay), key)
		default:
			backoffRetries++
			d.tl.printf(whoSaferetry, "attempt %d %s: retrying in %v (backoff, drawn from [0, %v))%s",
				ev.Number, got, ev.Delay.Round(time.Millisecond), backoffLimit(backoffRetries), key)
		}
	}
	// The default strategy, watched, so the report can show its verdicts.
	strategy := saferetry.StrategyFunc(func(a saferetry.Attempt) saferetry.Retryable {
		v := saferetry.DefaultStrategy.Classify(a)
		sc.Verdicts = append(sc.Verdicts, v)
		return v
	})
	return []saferetry.Option{
		saferetry.WithBackoff(demoInitialBackoff, demoMaxBackoff),
		saferetry.WithJitter(saferetry.FullJitter), // the default, pinned: the timeline describes it
		saferetry.WithHook(onRetry),
		saferetry.WithStrategy(strategy),
	}
}

// backoffLimit is the bound of the full-jitter wait before the n-th
// backoff retry: min(max, initial * 2^(n-1)).
func backoffLimit(n int) time.Duration {
	return saferetry.Exponential{Initial: demoInitialBackoff, Max: demoMaxBackoff, Jitter: saferetry.NoJitter}.Delay(n, 0)
}

// jitterPercent is how much longer than the demo's Retry-After d is.
func jitterPercent(d time.Duration) float64 {
	return 100 * float64(d-demoRetryAfter) / float64(demoRetryAfter)
}

// printSummary writes the summary and the verdict.
func printSummary(out io.Writer, r *demoReport, serverAttempts int) {
	fmt.Fprintf(out, "\nSummary\n")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  scene\trequest\tattempts\toutcome\n")
	attempts := 0
	for i, sc := range r.Scenes {
		attempts += sc.Attempts
		fmt.Fprintf(tw, "  %d\t%s %s\t%d (want %d)\t%s\n", i+1, sc.Method, sc.Path, sc.Attempts, sc.WantAttempts, sc.outcome())
	}
	tw.Flush()
	fmt.Fprintf(out, "  logical requests: %d; attempts made by saferetry: %d; attempts the server received: %d\n",
		len(r.Scenes), attempts, serverAttempts)
	fmt.Fprintf(out, "  charges committed:")
	for i, card := range slices.Sorted(maps.Keys(r.WantCharges)) {
		sep := ","
		if i == 0 {
			sep = ""
		}
		fmt.Fprintf(out, "%s %s %d (want %d)", sep, card, r.ChargesPerCard[card], r.WantCharges[card])
	}
	fmt.Fprintln(out)
	if len(r.Failures) == 0 {
		fmt.Fprintf(out, "OK: every scene went as expected, and no card was charged twice.\n")
		return
	}
	fmt.Fprintf(out, "FAILED: %d expectation(s) not met:\n", len(r.Failures))
	for _, f := range r.Failures {
		fmt.Fprintf(out, "  - %s\n", f)
	}
}

// outcomeText describes an attempt's outcome: its status or its error.
func outcomeText(status int, err error) string {
	if err != nil {
		return "failed: " + describeErr(err)
	}
	return "got " + statusText(status)
}

// describeErr names the transport failures the demo provokes, which
// net/http reports with addresses and ports that change on every run.
func describeErr(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset by the server"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the server"
	}
	return err.Error()
}

func describeKey(key string) string {
	if key == "" {
		return "no Idempotency-Key"
	}
	return "Idempotency-Key " + key
}

func statusText(code int) string { return fmt.Sprintf("%d %s", code, http.StatusText(code)) }

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
