package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"

	"github.com/saferetry/saferetry"
)

// doTestOptions are appended to the stack's options; tests use them to
// make the budget refuse.
var doTestOptions []saferetry.Option

// localRefusals are the errors by which saferetry reports that it refused
// to send a request itself, rather than that sending failed. With nothing
// sent, they end do with exit status 5.
var localRefusals = []error{saferetry.ErrBudgetExhausted, saferetry.ErrThrottled}

// send opens the store, sends the request through saferetry's default
// stack and writes the response out. Its error carries the exit status.
func (d *doRequest) send(ctx context.Context, stdout, stderr io.Writer) error {
	// One logical request per process: a budget has no history to bound
	// here (saferetry's docs: no bound holds for one-request processes),
	// and its starting allowance, 2 retries, would only cap --retries.
	opts := []saferetry.Option{saferetry.WithAttemptTimeout(d.attemptTimeout), saferetry.WithBudget(nil)}
	if d.retries >= 0 {
		opts = append(opts, saferetry.WithMaxRetries(d.retries))
	}
	if d.operation != "" {
		store, closeStore, err := d.store.open()
		if err != nil {
			return err
		}
		defer closeStore()
		// The request's own method is keyed: --operation promises a key
		// whatever the method (PUT and DELETE included).
		opts = append(opts, saferetry.WithKeyStore(store), saferetry.WithKeyMethods(d.method))
		ctx = saferetry.WithOperation(ctx, d.operation)
	}
	if d.verbose {
		v := &verbose{w: stderr}
		opts = append(opts, saferetry.WithStrategy(v.strategy()), saferetry.WithHook(v.retry))
		v.request(d)
	}
	opts = append(opts, doTestOptions...)

	if d.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.timeout)
		defer cancel()
	}
	var ev sendEvidence
	ctx = httptrace.WithClientTrace(ctx, ev.trace())

	var body io.Reader
	if d.hasData {
		body = bytes.NewReader(d.data) // replayable: http.NewRequest sets GetBody
	}
	req, err := http.NewRequestWithContext(ctx, d.method, d.url.String(), body)
	if err != nil {
		return usagef("%v", err) // parseDo checked the method and URL; kept for safety
	}
	if d.hasData {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i, h := range d.headers {
		if !hasField(d.headers[:i], h.name) {
			req.Header.Del(h.name) // a -H replaces the default, as in curl
		}
		req.Header.Add(h.name, h.value)
	}
	if d.host != "" {
		req.Host = d.host
	}
	if u := d.url.User; u != nil && req.Header.Get("Authorization") == "" {
		// What http.Client does and RoundTrip does not.
		pw, _ := u.Password()
		req.SetBasicAuth(u.Username(), pw)
	}

	stack := saferetry.New(nil, opts...)
	defer stack.CloseIdleConnections()
	resp, err := stack.RoundTrip(req)
	if err != nil {
		return d.failed(err, &ev)
	}
	defer resp.Body.Close()
	attempts := saferetry.Attempts(resp)

	if d.fail && resp.StatusCode >= 400 {
		return &exitError{status: 1, err: fmt.Errorf("the server answered %s (%s)", resp.Status, plural(attempts, "attempt"))}
	}
	out := &errWriter{w: stdout}
	if d.include {
		fmt.Fprintf(out, "%s %s\r\n", resp.Proto, resp.Status)
		resp.Header.Write(out)
		io.WriteString(out, "\r\n")
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		if out.err != nil {
			return &exitError{status: 1, err: fmt.Errorf("writing the response: %w", out.err)}
		}
		return &exitError{status: 4, err: fmt.Errorf("reading the response body after the server answered %s: %w; the request reached the server: %s",
			resp.Status, err, d.rerunAdvice())}
	}
	if out.err != nil {
		return &exitError{status: 1, err: fmt.Errorf("writing the response: %w", out.err)}
	}
	return nil
}

// failed maps a transport error to its exit status and message.
func (d *doRequest) failed(err error, ev *sendEvidence) error {
	var oerr *saferetry.OperationError
	if errors.As(err, &oerr) {
		if errors.Is(err, saferetry.ErrOperationDone) || errors.Is(err, saferetry.ErrFingerprintMismatch) {
			return usagef("%v; nothing was sent (to write again on purpose, name a new --operation)", err)
		}
		return &exitError{status: 3, err: fmt.Errorf("%w; nothing was sent: safe to run again", err)}
	}
	switch ev.verdict(err) {
	case refused:
		return &exitError{status: 5, err: fmt.Errorf("%w; saferetry refused to send it and nothing was sent: safe to run again, later", err)}
	case neverSent:
		return &exitError{status: 3, err: fmt.Errorf("%w; the request never reached the server: safe to run again", err)}
	}
	return &exitError{status: 4, err: fmt.Errorf("%w; the request may have reached the server: %s", err, d.rerunAdvice())}
}

// rerunAdvice says whether running the request again is safe, after it
// may have reached the server.
func (d *doRequest) rerunAdvice() string {
	switch {
	case d.operation != "":
		return "safe to run again with the same --operation and --store (the server deduplicates it by key)"
	case isIdempotent(d.method):
		return "safe to run again, " + d.method + " is idempotent"
	}
	return "do not simply run it again, the write may have happened (--operation makes reruns safe)"
}

func isIdempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

func hasField(fields []headerField, name string) bool {
	for _, f := range fields {
		if http.CanonicalHeaderKey(f.name) == http.CanonicalHeaderKey(name) {
			return true
		}
	}
	return false
}

// sendVerdict is what a failed run's evidence proves.
type sendVerdict int

const (
	maybeSent sendVerdict = iota // no proof either way: it may have reached the server
	neverSent                    // no byte of any attempt reached the server
	refused                      // and saferetry itself refused to go on
)

// sendEvidence watches every attempt of one run, through an
// httptrace.ClientTrace on the request's context (hooks compose:
// saferetry's own trace, added below it, fires as well). It looks for
// positive proof that nothing was sent, the same proof saferetry itself
// demands before retrying an unkeyed write: net/http asked for a
// connection (GetConn) and never got one (GotConn), so it wrote nothing;
// or an error whose type says no connection was made. The absence of an
// event proves nothing by itself.
type sendEvidence struct {
	asked atomic.Bool // some attempt asked for a connection
	got   atomic.Bool // some attempt got one, and so may have written
}

func (e *sendEvidence) trace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		GetConn: func(string) { e.asked.Store(true) },
		GotConn: func(httptrace.GotConnInfo) { e.got.Store(true) },
	}
}

// verdict judges a run that ended with err. Any attempt that got a
// connection may have reached the server, whatever came after it.
func (e *sendEvidence) verdict(err error) sendVerdict {
	if e.got.Load() {
		return maybeSent
	}
	for _, r := range localRefusals {
		if errors.Is(err, r) {
			return refused
		}
	}
	if e.asked.Load() || dialFailed(err) {
		return neverSent
	}
	return maybeSent
}

// dialFailed reports whether err's type proves no connection was made: a
// DNS failure or a failed dial (refused, unreachable, timed out).
func dialFailed(err error) bool {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "dial"
}

// errWriter remembers the first write error, to tell a failed write to
// stdout from a failed read of the response body.
type errWriter struct {
	w   io.Writer
	err error
}

func (w *errWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.w.Write(p)
	w.err = err
	return n, err
}

// verbose writes -v's lines to stderr: the request, each attempt's
// outcome, each retry and why retrying stopped. It never writes a header
// value (Authorization, cookies), a body, or the URL's path and query.
// Its hooks run on the request's goroutine, one at a time.
type verbose struct {
	w io.Writer
}

func (v *verbose) printf(format string, args ...any) {
	fmt.Fprintf(v.w, "* "+format+"\n", args...)
}

func (v *verbose) request(d *doRequest) {
	u := d.url
	target := u.Scheme + "://" + u.Host
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		target += "/…"
	}
	what := fmt.Sprintf("%s %s", d.method, target)
	if d.hasData {
		what += fmt.Sprintf(", %d bytes of data", len(d.data))
	}
	if d.operation != "" {
		what += fmt.Sprintf(", operation %q, keys in %s", d.operation, d.store)
	}
	v.printf("%s", what)
}

// strategy is saferetry's default strategy, watched: it reports each
// attempt's outcome and changes nothing.
func (v *verbose) strategy() saferetry.Strategy {
	return saferetry.StrategyFunc(func(a saferetry.Attempt) saferetry.Retryable {
		key := ""
		if a.Request != nil {
			if k := a.Request.Header.Get("Idempotency-Key"); k != "" {
				key = " (" + "Idempotency-Key" + " " + k + ")"
			}
		}
		if a.Err != nil {
			v.printf("attempt %d%s: failed: %v", a.Number, key, a.Err)
		} else {
			v.printf("attempt %d%s: %s", a.Number, key, a.Response.Status)
		}
		return saferetry.DefaultStrategy.Classify(a)
	})
}

// retry reports a retry about to be made, or refused.
func (v *verbose) retry(ev saferetry.Event) {
	switch {
	case ev.Hedge:
		v.printf("hedging: attempt %d sent while another is in flight", ev.Number)
	case ev.Stopped != saferetry.StopNone:
		v.printf("not retrying: %s", ev.Stopped)
	case ev.ServerDirected:
		v.printf("retrying in %v, as the server's Retry-After asks", ev.Delay.Round(time.Millisecond))
	default:
		v.printf("retrying in %v (backoff)", ev.Delay.Round(time.Millisecond))
	}
}
