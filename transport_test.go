package saferetry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/saferetry/saferetry/internal/testutil"
)

// noWait retries at once, so tests measure the machinery, not sleeping.
var noWait = Exponential{}

func get(t *testing.T, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestRetriesTransientStatusesUntilSuccess(t *testing.T) {
	srv := newRecordingServer(t, 503, 502, 200)
	tr := &Transport{Base: srv.Client().Transport, Backoff: noWait}
	resp, err := tr.RoundTrip(get(t, srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "OK" {
		t.Fatalf("got %d %q, want 200 OK", resp.StatusCode, body)
	}
	if n := len(srv.received()); n != 3 {
		t.Fatalf("server saw %d requests, want 3", n)
	}
	if n, why := Attempts(resp), Stopped(resp); n != 3 || why != StopNone {
		t.Fatalf("Attempts, Stopped = %d, %v; want 3, none", n, why)
	}
}

func TestReturnsLastResponseUnchangedWhenRetriesRunOut(t *testing.T) {
	s := &script{outcomes: []outcome{
		{status: 503, body: "first"},
		{status: 503, body: "second"},
		{status: 503, body: "last", header: http.Header{"X-Upstream": {"db"}}},
	}}
	tr := &Transport{Base: s, MaxRetries: 2, Backoff: noWait}
	resp, err := tr.RoundTrip(get(t, "http://api.test/"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || string(body) != "last" || resp.Header.Get("X-Upstream") != "db" {
		t.Fatalf("got %d %q %v; want the last 503 unchanged", resp.StatusCode, body, resp.Header)
	}
	if Attempts(resp) != 3 || Stopped(resp) != StopMaxRetries {
		t.Fatalf("Attempts, Stopped = %d, %v; want 3, max retries", Attempts(resp), Stopped(resp))
	}
	for i, want := range []string{"first", "second"} {
		b := s.bodies[i]
		if b.Closes() != 1 || b.BytesRead() != int64(len(want)) {
			t.Errorf("discarded response %d: closed %d times, read %d bytes; want drained and closed once", i+1, b.Closes(), b.BytesRead())
		}
	}
}

func TestDiscardedResponsesAreDrainedBoundedAndClosed(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	s := &script{outcomes: []outcome{
		{status: 503, body: "small"},
		{status: 503, body: big, unsized: true},
		{status: 503, body: big},
		{status: 200, body: "ok"},
	}}
	tr := &Transport{Base: s, Backoff: noWait}
	resp, err := tr.RoundTrip(get(t, "http://api.test/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	tests := []struct {
		name string
		body *testutil.TrackedBody
		read int64
	}{
		{"small body", s.bodies[0], 5},
		{"large body of unknown length", s.bodies[1], maxDrainBytes},
		{"body announced larger than the drain limit", s.bodies[2], 0},
	}
	for _, tt := range tests {
		if tt.body.BytesRead() != tt.read || tt.body.Closes() != 1 {
			t.Errorf("%s: read %d, closed %d; want %d read and closed once", tt.name, tt.body.BytesRead(), tt.body.Closes(), tt.read)
		}
	}
}

// A discarded response whose body stalls must not hold the retry: the
// drain is bounded in time as well as in bytes.
func TestStalledDiscardedBodyDoesNotHoldTheRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stalled, pw := io.Pipe()
		defer pw.Close()
		go pw.Write([]byte("oops")) // 4 of the 100 bytes announced, then silence
		calls := 0
		base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			calls++
			if calls == 1 {
				return &http.Response{StatusCode: 503, Body: stalled, ContentLength: 100, Request: r}, nil
			}
			return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
		})
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://api.test/", nil)
		start := time.Now()
		resp, err := (&Transport{Base: base, Backoff: noWait}).RoundTrip(req)
		if err != nil {
			t.Fatalf("err %v after %v; want the retry's 200", err, time.Since(start))
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || time.Since(start) != drainTime {
			t.Fatalf("status %d after %v; want 200 after the drain's %v", resp.StatusCode, time.Since(start), drainTime)
		}
	})
}

func TestFirstSuccessIsPassedThroughUntouched(t *testing.T) {
	s := &script{outcomes: statuses(200)}
	tr := &Transport{Base: s}
	req := get(t, "http://api.test/")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if Attempts(resp) != 1 || Stopped(resp) != StopNone {
		t.Fatalf("Attempts, Stopped = %d, %v", Attempts(resp), Stopped(resp))
	}
}

func TestTypedErrorAfterRetries(t *testing.T) {
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	s := &script{outcomes: []outcome{{err: reset}}}
	tr := &Transport{Base: s, MaxRetries: 2, Backoff: noWait}
	resp, err := tr.RoundTrip(get(t, "http://api.test/"))
	if resp != nil {
		t.Fatal("want no response")
	}
	var re *RetryError
	if !errors.As(err, &re) || re.Attempts != 3 || re.Reason != StopMaxRetries {
		t.Fatalf("err = %v; want *RetryError with 3 attempts, max retries", err)
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("err %v does not unwrap to ECONNRESET", err)
	}
	if s.attempts() != 3 {
		t.Fatalf("%d attempts, want 3", s.attempts())
	}
}

func TestErrorFinalOnFirstAttemptIsReturnedAsIs(t *testing.T) {
	wrapped := &tlsVerifyError{Err: errors.New("x509: certificate signed by unknown authority")}
	s := &script{outcomes: []outcome{{err: wrapped}}}
	tr := &Transport{Base: s, Backoff: noWait}
	_, err := tr.RoundTrip(get(t, "https://api.test/"))
	if err != error(wrapped) {
		t.Fatalf("err = %#v; want the base transport's error itself", err)
	}
	if s.attempts() != 1 {
		t.Fatalf("%d attempts, want 1", s.attempts())
	}
}

func TestUnkeyedPostIsNotRetriedAfterItMayHaveBeenProcessed(t *testing.T) {
	srv := newRecordingServer(t, 500, 200)
	tr := &Transport{Base: srv.Client().Transport, Backoff: noWait}
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("charge"))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 || len(srv.received()) != 1 {
		t.Fatalf("status %d after %d requests; want the 500 after 1", resp.StatusCode, len(srv.received()))
	}
	if Stopped(resp) != StopNotRetryable {
		t.Fatalf("Stopped = %v", Stopped(resp))
	}
}

func TestUnkeyedPostIsRetriedWhenTheConnectionWasRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: every dial is refused
	var attempts int
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	tr := &Transport{Base: base, Backoff: noWait, Hook: func(ev Event) {
		if ev.Stopped == StopNone {
			attempts++
		}
	}}
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/charges", strings.NewReader("charge"))
	_, err = tr.RoundTrip(req)
	var re *RetryError
	if !errors.As(err, &re) || re.Attempts != 4 || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("err = %v; want a RetryError after 4 refused attempts", err)
	}
	if attempts != 3 {
		t.Fatalf("%d retries reported, want 3", attempts)
	}
}

// A server that commits the write and then cuts the connection: the
// classic duplicated payment. Unkeyed, it must not be retried; keyed, it
// is, with the same key and the same body.
func TestConnectionCutAfterTheServerCommitted(t *testing.T) {
	for _, keyed := range []bool{false, true} {
		t.Run(map[bool]string{false: "unkeyed", true: "keyed"}[keyed], func(t *testing.T) {
			var mu sync.Mutex
			var seen []received
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				mu.Lock()
				seen = append(seen, received{key: r.Header.Get("Idempotency-Key"), body: string(body)})
				first := len(seen) == 1
				mu.Unlock()
				if first {
					conn, _, _ := w.(http.Hijacker).Hijack()
					conn.(*net.TCPConn).SetLinger(0)
					conn.Close()
					return
				}
				io.WriteString(w, "charged")
			}))
			defer srv.Close()
			base := srv.Client().Transport.(*http.Transport)
			var opts []Option
			if !keyed {
				opts = append(opts, WithKeyMethods())
			}
			client := &http.Client{Transport: New(base, append(opts, WithBackoff(0, 0))...)}
			resp, err := client.Post(srv.URL, "text/plain", strings.NewReader("card=4242&amount=100"))
			mu.Lock()
			defer mu.Unlock()
			if !keyed {
				if err == nil {
					resp.Body.Close()
					t.Fatal("want an error: the unkeyed POST may have been processed")
				}
				if len(seen) != 1 {
					t.Fatalf("server saw %d requests, want 1", len(seen))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if len(seen) != 2 || seen[0] != seen[1] || seen[0].key == "" || seen[0].body != "card=4242&amount=100" {
				t.Fatalf("server saw %+v; want two identical keyed requests", seen)
			}
		})
	}
}

func TestKeyedPostIsRetriedWithTheSameKeyAndBody(t *testing.T) {
	srv := newRecordingServer(t, 503, 500, 201)
	client := &http.Client{Transport: New(srv.Client().Transport, WithBackoff(0, 0))}
	payload := `{"amount":100,"currency":"eur"}`
	resp, err := client.Post(srv.URL, "application/json", strings.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := srv.received()
	if len(got) != 3 {
		t.Fatalf("server saw %d requests, want 3", len(got))
	}
	for i, r := range got {
		if r.key != got[0].key || r.key == "" || r.body != payload {
			t.Fatalf("attempt %d: key %q body %q; want key %q and body %q", i+1, r.key, r.body, got[0].key, payload)
		}
	}
	if Attempts(resp) != 3 {
		t.Fatalf("Attempts = %d", Attempts(resp))
	}
}

func TestRequestWithUnreplayableBodyIsNotRetried(t *testing.T) {
	s := &script{outcomes: statuses(503, 200)}
	tr := &Transport{Base: s, Backoff: noWait}
	req, _ := http.NewRequest(http.MethodPut, "http://api.test/", io.NopCloser(strings.NewReader("data")))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || Stopped(resp) != StopBodyNotReplayable || s.attempts() != 1 {
		t.Fatalf("status %d, stopped %v, attempts %d", resp.StatusCode, Stopped(resp), s.attempts())
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		retryAfter func(now time.Time) string
		cap        time.Duration
		deadline   time.Duration
		wantWait   time.Duration // lower bound; the upper is +10%
		wantStop   StopReason    // when the response is returned at once
	}{
		{name: "429 seconds", status: 429, retryAfter: secs("2"), wantWait: 2 * time.Second},
		{name: "503 seconds", status: 503, retryAfter: secs("3"), wantWait: 3 * time.Second},
		{name: "413 seconds", status: 413, retryAfter: secs("1"), wantWait: time.Second},
		{name: "429 IMF-fixdate", status: 429, retryAfter: date(http.TimeFormat, 5*time.Second), wantWait: 5 * time.Second},
		{name: "429 RFC 850", status: 429, retryAfter: date("Monday, 02-Jan-06 15:04:05 GMT", 4*time.Second), wantWait: 4 * time.Second},
		{name: "429 asctime", status: 429, retryAfter: date(time.ANSIC, 6*time.Second), wantWait: 6 * time.Second},
		{name: "date in the past means now", status: 429, retryAfter: date(http.TimeFormat, -time.Hour), wantWait: 0},
		{name: "over the cap returns at once", status: 429, retryAfter: secs("120"), wantStop: StopRetryAfterTooLong},
		{name: "custom cap", status: 503, retryAfter: secs("10"), cap: 5 * time.Second, wantStop: StopRetryAfterTooLong},
		{name: "past the deadline returns at once", status: 429, retryAfter: secs("5"), deadline: 3 * time.Second, wantStop: StopDeadline},
		{name: "jitter trimmed to leave the next attempt its time", status: 429, retryAfter: secs("10"), deadline: 10*time.Second + minAttemptTime + time.Millisecond, wantWait: 10 * time.Second},
		{name: "a wait leaving too little time is not started", status: 429, retryAfter: secs("1"), deadline: 1030 * time.Millisecond, wantStop: StopDeadline},
		{name: "a wait leaving exactly the minimum is made", status: 429, retryAfter: secs("1"), deadline: time.Second + minAttemptTime, wantWait: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var times []time.Time
				base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
					times = append(times, time.Now())
					if len(times) == 1 {
						return &http.Response{StatusCode: tt.status, Header: http.Header{"Retry-After": {tt.retryAfter(time.Now())}}, Body: http.NoBody, Request: r}, nil
					}
					return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
				})
				tr := &Transport{Base: base, MaxRetryAfter: tt.cap, Backoff: Exponential{Initial: time.Hour, Max: time.Hour}}
				ctx := context.Background()
				if tt.deadline > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.deadline)
					defer cancel()
				}
				start := time.Now()
				resp, err := tr.RoundTrip(get(t, "http://api.test/").WithContext(ctx))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if tt.wantStop != StopNone {
					if resp.StatusCode != tt.status || len(times) != 1 || time.Since(start) != 0 || Stopped(resp) != tt.wantStop {
						t.Fatalf("got %d after %d attempts and %v, stopped %v; want the %d at once, stopped %v",
							resp.StatusCode, len(times), time.Since(start), Stopped(resp), tt.status, tt.wantStop)
					}
					return
				}
				if len(times) != 2 {
					t.Fatalf("%d attempts, want 2", len(times))
				}
				wait := times[1].Sub(times[0])
				if wait < tt.wantWait || wait > tt.wantWait+tt.wantWait/10 {
					t.Fatalf("waited %v; want within [%v, %v]", wait, tt.wantWait, tt.wantWait+tt.wantWait/10)
				}
				if tt.deadline > 0 && time.Since(start) > tt.deadline {
					t.Fatalf("waited past the deadline: %v", time.Since(start))
				}
			})
		})
	}
}

func secs(s string) func(time.Time) string { return func(time.Time) string { return s } }

func date(layout string, offset time.Duration) func(time.Time) string {
	return func(now time.Time) string { return now.Add(offset).UTC().Format(layout) }
}

func TestGarbageRetryAfterFallsBackToBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var times []time.Time
		base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			times = append(times, time.Now())
			status := 503
			if len(times) == 2 {
				status = 200
			}
			return &http.Response{StatusCode: status, Header: http.Header{"Retry-After": {"soon"}}, Body: http.NoBody}, nil
		})
		tr := &Transport{Base: base, Backoff: Exponential{Initial: 250 * time.Millisecond, Max: time.Second, Jitter: NoJitter}}
		resp, err := tr.RoundTrip(get(t, "http://api.test/"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if wait := times[1].Sub(times[0]); wait != 250*time.Millisecond {
			t.Fatalf("waited %v, want the backoff's 250ms", wait)
		}
	})
}

// After a wait the server directed, backoff starts again from Initial
// (gRPC A6) rather than continuing to grow.
func TestBackoffRestartsAfterServerDirectedWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{outcomes: []outcome{
			{status: 503}, {status: 503},
			{status: 429, header: http.Header{"Retry-After": {"0"}}},
			{status: 503}, {status: 200},
		}}
		var times []time.Time
		base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			times = append(times, time.Now())
			return s.RoundTrip(r)
		})
		tr := &Transport{Base: base, MaxRetries: 4, Backoff: Exponential{Initial: 100 * time.Millisecond, Max: 10 * time.Second, Jitter: NoJitter}}
		resp, err := tr.RoundTrip(get(t, "http://api.test/"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		var waits []time.Duration
		for i := 1; i < len(times); i++ {
			waits = append(waits, times[i].Sub(times[i-1]))
		}
		want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 0, 100 * time.Millisecond}
		if !reflect.DeepEqual(waits, want) {
			t.Fatalf("waits %v, want %v", waits, want)
		}
	})
}

func TestBackoffThatWouldPassTheDeadlineIsNotStarted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
		s := &script{outcomes: []outcome{{status: 503}, {err: refused}}}
		tr := &Transport{Base: s, Backoff: Exponential{Initial: time.Second, Max: time.Second, Jitter: NoJitter}}
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := tr.RoundTrip(get(t, "http://api.test/").WithContext(ctx))
		var re *RetryError
		if !errors.As(err, &re) || re.Reason != StopDeadline || re.Attempts != 2 || !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("err = %v; want the last real error, stopped for the deadline after 2 attempts", err)
		}
		if elapsed := time.Since(start); elapsed != time.Second {
			t.Fatalf("returned after %v; want 1s (one wait, not a second one past the deadline)", elapsed)
		}
	})
}

// A backoff that would leave the next attempt less than minAttemptTime is
// not started either: the 503 is handed back, not a bare deadline error.
func TestBackoffLeavingTooLittleTimeIsNotStarted(t *testing.T) {
	for _, tt := range []struct {
		left     time.Duration
		attempts int
	}{
		{time.Second + minAttemptTime - time.Millisecond, 1},
		{time.Second + minAttemptTime, 2},
	} {
		synctest.Test(t, func(t *testing.T) {
			s := &script{outcomes: statuses(503, 200)}
			tr := &Transport{Base: s, Backoff: Exponential{Initial: time.Second, Max: time.Second, Jitter: NoJitter}}
			ctx, cancel := context.WithTimeout(context.Background(), tt.left)
			defer cancel()
			resp, err := tr.RoundTrip(get(t, "http://api.test/").WithContext(ctx))
			if err != nil {
				t.Fatalf("%v left: %v", tt.left, err)
			}
			resp.Body.Close()
			if s.attempts() != tt.attempts {
				t.Fatalf("%v left: %d attempts, want %d", tt.left, s.attempts(), tt.attempts)
			}
			if tt.attempts == 1 && (resp.StatusCode != 503 || Stopped(resp) != StopDeadline) {
				t.Fatalf("%v left: status %d, stopped %v; want the 503, stopped for the deadline", tt.left, resp.StatusCode, Stopped(resp))
			}
		})
	}
}

func TestCancelDuringWaitEndsAtOnceWithTheCause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{outcomes: statuses(503, 200)}
		tr := &Transport{Base: s, Backoff: Exponential{Initial: time.Minute, Max: time.Minute, Jitter: NoJitter}}
		cause := errors.New("shutting down")
		ctx, cancel := context.WithCancelCause(context.Background())
		time.AfterFunc(time.Second, func() { cancel(cause) })
		start := time.Now()
		resp, err := tr.RoundTrip(get(t, "http://api.test/").WithContext(ctx))
		if resp != nil {
			t.Fatal("want no response")
		}
		var re *RetryError
		if !errors.As(err, &re) || re.Reason != StopCanceled || !errors.Is(err, cause) {
			t.Fatalf("err = %v; want a RetryError with the context's cause", err)
		}
		if time.Since(start) != time.Second {
			t.Fatalf("returned after %v; want at the cancellation, 1s", time.Since(start))
		}
		if s.bodies[0].Closes() != 1 || s.attempts() != 1 {
			t.Fatal("the discarded 503 was not closed, or a second attempt was made")
		}
	})
}

func TestCanceledWithACauseIsNotRetriedNorReported(t *testing.T) {
	srv := newRecordingServer(t)
	var events []Event
	stack := New(srv.Client().Transport, WithHook(func(ev Event) { events = append(events, ev) }))
	cause := errors.New("shutting down")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	_, err := stack.RoundTrip(get(t, srv.URL).WithContext(ctx))
	var re *RetryError
	if !errors.Is(err, cause) || errors.As(err, &re) {
		t.Fatalf("err = %v; want the cause itself, as the base transport reports it", err)
	}
	if len(events) != 0 || len(srv.received()) != 0 {
		t.Fatalf("%d events, %d requests; want none", len(events), len(srv.received()))
	}
}

func TestCanceledBeforeTheFirstAttempt(t *testing.T) {
	srv := newRecordingServer(t)
	tr := &Transport{Base: srv.Client().Transport}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := tr.RoundTrip(get(t, srv.URL).WithContext(ctx))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if n := len(srv.received()); n != 0 {
		t.Fatalf("server saw %d requests", n)
	}
}

func TestAttemptTimeout(t *testing.T) {
	t.Run("a hung attempt is abandoned and retried", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var times []time.Time
			base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				times = append(times, time.Now())
				if len(times) == 1 {
					<-r.Context().Done()
					return nil, r.Context().Err()
				}
				return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
			})
			tr := &Transport{Base: base, AttemptTimeout: 2 * time.Second, Backoff: noWait}
			resp, err := tr.RoundTrip(get(t, "http://api.test/"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if len(times) != 2 || times[1].Sub(times[0]) != 2*time.Second || Attempts(resp) != 2 {
				t.Fatalf("attempts at %v; want two, 2s apart", times)
			}
		})
	})
	t.Run("the body is not limited and the context is released on close", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var attemptCtx context.Context
			pr, pw := io.Pipe()
			base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				attemptCtx = r.Context()
				return &http.Response{StatusCode: 200, Body: pr, Request: r}, nil
			})
			go func() {
				time.Sleep(10 * time.Second) // a slow stream, five times the attempt timeout
				pw.Write([]byte("late tokens"))
				pw.Close()
			}()
			tr := &Transport{Base: base, AttemptTimeout: 2 * time.Second}
			resp, err := tr.RoundTrip(get(t, "http://api.test/"))
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil || string(body) != "late tokens" {
				t.Fatalf("read %q, %v; want the whole slow body", body, err)
			}
			if attemptCtx.Err() == nil {
				t.Fatal("attempt context not released at EOF")
			}
			resp.Body.Close()
		})
	})
	t.Run("an unkeyed POST that timed out after being written is not retried", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			attempts := 0
			base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				attempts++
				if trace := httptraceFrom(r); trace != nil && trace.WroteHeaders != nil {
					trace.WroteHeaders()
				}
				<-r.Context().Done()
				return nil, r.Context().Err()
			})
			tr := &Transport{Base: base, AttemptTimeout: time.Second, Backoff: noWait}
			req, _ := http.NewRequest(http.MethodPost, "http://api.test/", nil)
			_, err := tr.RoundTrip(req)
			if !errors.Is(err, ErrAttemptTimeout) || attempts != 1 {
				t.Fatalf("err %v after %d attempts; want ErrAttemptTimeout after 1", err, attempts)
			}
		})
	})
}

// A response that arrived is handed back even when the attempt timer fired
// as it came: for an unkeyed POST that was applied, hiding the 200 behind
// a timeout would invite the caller to charge again.
func TestResponseArrivingAsTheAttemptTimesOutIsHandedBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		attempts := 0
		base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			attempts++
			<-r.Context().Done() // the answer comes just as the timer fires
			return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("charged")), Request: r}, nil
		})
		tr := &Transport{Base: base, AttemptTimeout: time.Second, Backoff: noWait}
		req, _ := http.NewRequest(http.MethodPost, "http://api.test/charges", strings.NewReader("charge"))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("err %v; want the 200 that arrived", err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || attempts != 1 {
			t.Fatalf("status %d after %d attempts; want the 200 after 1", resp.StatusCode, attempts)
		}
	})
}

func TestNestedStacksDoNotMultiplyAttempts(t *testing.T) {
	s := &script{outcomes: statuses(503)}
	inner := New(s, WithBackoff(0, 0), WithBudget(nil))
	outer := New(inner, WithBackoff(0, 0), WithBudget(nil))
	resp, err := outer.RoundTrip(get(t, "http://api.test/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := s.attempts(); n != 4 {
		t.Fatalf("%d attempts reached the server; want 4, not 16", n)
	}
	if Attempts(resp) != 4 {
		t.Fatalf("Attempts = %d", Attempts(resp))
	}
}

// A follow-up request built from a response's request context (the next
// page, a "next" link) is a new logical request: the mark its context
// inherited says the earlier run is over, so it is retried and counted
// afresh, not passed through as a nested layer's attempt.
func TestFollowUpRequestFromAResponseContextIsANewRun(t *testing.T) {
	s := &script{outcomes: statuses(503, 200, 503, 503, 200, 200)}
	// A base that is not a plain *http.Transport makes the layer mark
	// every request, the case where the mark could leak.
	stack := New(testutil.RoundTripFunc(s.RoundTrip), WithBackoff(0, 0), WithBudget(nil))
	first, err := stack.RoundTrip(get(t, "http://api.test/page/1"))
	if err != nil {
		t.Fatal(err)
	}
	first.Body.Close()
	next := func(path string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(first.Request.Context(), http.MethodGet, "http://api.test"+path, nil)
		resp, err := stack.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	second := next("/page/2")
	if second.StatusCode != 200 || Attempts(second) != 3 || s.attempts() != 5 {
		t.Fatalf("page 2: status %d, Attempts %d, %d requests in all; want 200 after 3 attempts, 5 in all",
			second.StatusCode, Attempts(second), s.attempts())
	}
	third := next("/page/3")
	if Attempts(third) != 1 || Stopped(third) != StopNone {
		t.Fatalf("page 3: Attempts %d, Stopped %v; want 1 and none, not the earlier run's", Attempts(third), Stopped(third))
	}
	if Attempts(first) != 2 {
		t.Fatalf("page 1: Attempts %d, want 2", Attempts(first))
	}
}

// The attempt timeout's context ends when the body is closed; a follow-up
// built from resp.Request.Context() must not be canceled by it.
func TestFollowUpRequestDoesNotInheritTheAttemptTimeout(t *testing.T) {
	srv := newRecordingServer(t, 200, 200)
	stack := New(srv.Client().Transport, WithAttemptTimeout(time.Minute))
	first, err := stack.RoundTrip(get(t, srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, first.Body)
	first.Body.Close()
	req, _ := http.NewRequestWithContext(first.Request.Context(), http.MethodGet, srv.URL, nil)
	second, err := stack.RoundTrip(req)
	if err != nil {
		t.Fatalf("follow-up: %v", err)
	}
	second.Body.Close()
}

type idleCounter struct {
	testutil.RoundTripFunc
	closed int
}

func (c *idleCounter) CloseIdleConnections() { c.closed++ }

func TestCloseIdleConnectionsIsForwardedByEveryLayer(t *testing.T) {
	layers := map[string]func(http.RoundTripper) http.RoundTripper{
		"Stack":       func(b http.RoundTripper) http.RoundTripper { return New(b) },
		"KeyInjector": func(b http.RoundTripper) http.RoundTripper { return &KeyInjector{Base: b} },
		"BodyCache":   func(b http.RoundTripper) http.RoundTripper { return &BodyCache{Base: b} },
		"Transport":   func(b http.RoundTripper) http.RoundTripper { return &Transport{Base: b} },
	}
	for name, wrap := range layers {
		t.Run(name, func(t *testing.T) {
			base := &idleCounter{}
			client := &http.Client{Transport: wrap(base)}
			client.CloseIdleConnections()
			if base.closed != 1 {
				t.Fatalf("base saw %d CloseIdleConnections calls, want 1", base.closed)
			}
		})
	}
}

func TestCallersRequestIsNotModified(t *testing.T) {
	srv := newRecordingServer(t, 503, 503, 200)
	stack := New(srv.Client().Transport, WithBackoff(0, 0))
	for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodPut} {
		t.Run(method, func(t *testing.T) {
			srv.mu.Lock()
			srv.statuses = []int{503, 503, 200}
			srv.mu.Unlock()
			req, _ := http.NewRequest(method, srv.URL+"/v1/x?y=1", bytes.NewReader([]byte("payload")))
			req.Header.Set("Authorization", "Bearer secret")
			before := testutil.Snapshot(req)
			resp, err := stack.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			before.Check(t, req)
		})
	}
}

func TestHookAndLoggerReportEachRetry(t *testing.T) {
	s := &script{outcomes: []outcome{{status: 503}, {status: 429, header: http.Header{"Retry-After": {"0"}}}, {status: 200}}}
	var events []Event
	var logs bytes.Buffer
	stack := New(s, WithBackoff(0, 0), WithBudget(nil),
		WithHook(func(ev Event) { events = append(events, ev) }),
		WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	req, _ := http.NewRequest(http.MethodPost, "http://api.test:8443/v1/charges", strings.NewReader("card=4242"))
	req.Header.Set("Authorization", "Bearer sk_live_secret")
	req.Header.Set("Cookie", "session=cookie_secret")
	resp, err := stack.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(events) != 2 {
		t.Fatalf("%d events, want 2", len(events))
	}
	key := s.got[0].key
	for i, ev := range events {
		if ev.Number != i+1 || ev.Key != key || ev.Host != "api.test:8443" || ev.Stopped != StopNone {
			t.Errorf("event %d = %+v", i, ev)
		}
	}
	if events[0].Response.StatusCode != 503 || events[1].Response.StatusCode != 429 || !events[1].ServerDirected {
		t.Errorf("events %+v", events)
	}
	out := logs.String()
	if strings.Count(out, `"msg":"saferetry: retrying"`) != 2 || !strings.Contains(out, key) {
		t.Errorf("log %s", out)
	}
	for _, secret := range []string{"sk_live_secret", "cookie_secret", "card=4242"} {
		if strings.Contains(out, secret) {
			t.Errorf("log leaks %q: %s", secret, out)
		}
	}
}

func TestZeroValueLayersAreUsable(t *testing.T) {
	srv := newRecordingServer(t, 503, 200)
	for name, rt := range map[string]http.RoundTripper{
		"Transport":   &Transport{Backoff: noWait},
		"KeyInjector": &KeyInjector{},
		"BodyCache":   &BodyCache{},
	} {
		t.Run(name, func(t *testing.T) {
			srv.mu.Lock()
			srv.statuses = []int{200}
			srv.mu.Unlock()
			resp, err := rt.RoundTrip(get(t, srv.URL))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			rt.(closeIdler).CloseIdleConnections()
		})
	}
}

func TestBudgetStopsRetries(t *testing.T) {
	exhausted := func() *Budget { return NewBudget(0) }
	t.Run("status: the last response, marked", func(t *testing.T) {
		s := &script{outcomes: statuses(503, 200)}
		var events []Event
		tr := &Transport{Base: s, Budget: exhausted(), Backoff: noWait, Hook: func(ev Event) { events = append(events, ev) }}
		resp, err := tr.RoundTrip(get(t, "http://api.test/"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 || s.attempts() != 1 || Stopped(resp) != StopBudget {
			t.Fatalf("status %d after %d attempts, stopped %v", resp.StatusCode, s.attempts(), Stopped(resp))
		}
		if len(events) != 1 || events[0].Stopped != StopBudget {
			t.Fatalf("events %+v; want one budget stop", events)
		}
	})
	t.Run("error: errors.Is ErrBudgetExhausted", func(t *testing.T) {
		s := &script{outcomes: []outcome{{err: io.ErrUnexpectedEOF}}}
		tr := &Transport{Base: s, Budget: exhausted(), Backoff: noWait}
		_, err := tr.RoundTrip(get(t, "http://api.test/"))
		if !errors.Is(err, ErrBudgetExhausted) || !errors.Is(err, io.ErrUnexpectedEOF) || s.attempts() != 1 {
			t.Fatalf("err %v after %d attempts", err, s.attempts())
		}
	})
	t.Run("a replay body taken for a refused retry is closed", func(t *testing.T) {
		s := &script{outcomes: statuses(503)}
		body := &countingCloser{}
		tr := &BodyCache{Base: &Transport{Base: s, Budget: exhausted(), Backoff: noWait}}
		req, _ := http.NewRequest(http.MethodPut, "http://api.test/", body)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if body.closed != 1 {
			t.Fatalf("caller's body closed %d times, want 1", body.closed)
		}
	})
	t.Run("shared between transports", func(t *testing.T) {
		shared := oneRetryBudget()
		a := &Transport{Base: &script{outcomes: statuses(503, 200)}, Budget: shared, Backoff: noWait}
		b := &Transport{Base: &script{outcomes: statuses(503, 200)}, Budget: shared, Backoff: noWait}
		ra, _ := a.RoundTrip(get(t, "http://api.test/"))
		rb, _ := b.RoundTrip(get(t, "http://api.test/"))
		ra.Body.Close()
		rb.Body.Close()
		if ra.StatusCode != 200 || rb.StatusCode != 503 || Stopped(rb) != StopBudget {
			t.Fatalf("first %d, second %d (%v); want the one shared retry spent by the first", ra.StatusCode, rb.StatusCode, Stopped(rb))
		}
	})
}

// Later attempts share the time left before the deadline when it is less
// than they would need; the first keeps its whole attempt timeout.
func TestAttemptTimeoutsShareTheTimeLeft(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var starts []time.Duration
		start := time.Now()
		base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			starts = append(starts, time.Since(start))
			<-r.Context().Done()
			return nil, r.Context().Err()
		})
		tr := &Transport{Base: base, AttemptTimeout: 4 * time.Second, Backoff: noWait}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second+minAttemptTime)
		defer cancel()
		_, err := tr.RoundTrip(get(t, "http://api.test/").WithContext(ctx))
		// The last attempt's share ends with the deadline: either may be
		// the one reported.
		if !errors.Is(err, ErrAttemptTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v", err)
		}
		// 4s for the first; then 6.1s left for up to 3 attempts: about
		// 2.03s each, the last one ending at the deadline's 100ms margin.
		want := []time.Duration{0, 4 * time.Second, 6033333333, 8066666666}
		if len(starts) != len(want) {
			t.Fatalf("attempts started at %v; want %v", starts, want)
		}
		for i := range want {
			if d := starts[i] - want[i]; d < -time.Millisecond || d > time.Millisecond {
				t.Fatalf("attempts started at %v; want %v", starts, want)
			}
		}
	})
}

// The share is never less than minAttemptTime.
func TestSharedAttemptTimeoutHasAFloor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var durations []time.Duration
		base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			start := time.Now()
			<-r.Context().Done()
			durations = append(durations, time.Since(start))
			return nil, r.Context().Err()
		})
		tr := &Transport{Base: base, AttemptTimeout: time.Second, Backoff: noWait, MaxRetries: 10}
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		tr.RoundTrip(get(t, "http://api.test/").WithContext(ctx))
		if len(durations) < 2 || durations[0] != time.Second || durations[1] != minAttemptTime {
			t.Fatalf("attempt durations %v; want 1s, then the floor of %v", durations, minAttemptTime)
		}
	})
}

// Every attempt after the first tells the server its number, so an
// overloaded server can shed retries first; the first carries nothing.
func TestRetriesCarryTheirAttemptNumber(t *testing.T) {
	for _, tt := range []struct {
		name   string
		opts   []Option
		header string
	}{
		{"default", nil, "Retry-Attempt"},
		{"custom", []Option{WithAttemptHeader("x-envoy-attempt-count")}, "X-Envoy-Attempt-Count"},
		{"off", []Option{WithAttemptHeader("")}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := &script{outcomes: statuses(503, 503, 200)}
			stack := New(s, append([]Option{WithBackoff(0, 0)}, tt.opts...)...)
			req := get(t, "http://api.test/")
			resp, err := stack.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			for i, got := range s.got {
				want := []string(nil)
				if i > 0 && tt.header != "" {
					want = []string{strconv.Itoa(i + 1)}
				}
				if values := got.req.Header.Values(tt.header); tt.header != "" && !reflect.DeepEqual(values, want) {
					t.Errorf("attempt %d: %s = %q, want %q", i+1, tt.header, values, want)
				}
				if tt.header == "" && len(got.req.Header) != 0 {
					t.Errorf("attempt %d carries headers %v; want none", i+1, got.req.Header)
				}
			}
			if len(req.Header) != 0 {
				t.Fatalf("the caller's request was given headers: %v", req.Header)
			}
		})
	}
}

// Over the network, a 503 whose body stalls (100 bytes announced, 4 sent)
// does not hold the retry: closing the body ends the drain, over HTTP/1
// and HTTP/2 alike.
func TestStalledDiscardedBodyOverTheNetwork(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "HTTP/1.1", true: "HTTP/2"}[h2], func(t *testing.T) {
			release := make(chan struct{})
			var calls sync.Mutex
			n := 0
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Lock()
				n++
				first := n == 1
				calls.Unlock()
				if !first {
					io.WriteString(w, "ok")
					return
				}
				w.Header().Set("Content-Length", "100")
				w.WriteHeader(http.StatusServiceUnavailable)
				io.WriteString(w, "oops")
				w.(http.Flusher).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
				}
			}))
			srv.EnableHTTP2 = h2
			srv.StartTLS()
			defer srv.Close()
			defer close(release)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			stack := New(srv.Client().Transport, WithBackoff(0, 0))
			resp, err := stack.RoundTrip(get(t, srv.URL).WithContext(ctx))
			if err != nil {
				t.Fatalf("err %v; want the retry's 200", err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || Attempts(resp) != 2 {
				t.Fatalf("status %d after %d attempts", resp.StatusCode, Attempts(resp))
			}
		})
	}
}

// The logger never writes a URL's query, where tokens travel: a *url.Error
// quotes the whole URL.
func TestLoggedErrorsDoNotQuoteTheURL(t *testing.T) {
	var logs bytes.Buffer
	base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		return nil, &url.Error{Op: "Get", URL: r.URL.String(), Err: errors.New("connection reset")}
	})
	stack := New(base, WithBackoff(0, 0), WithMaxRetries(1), WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	stack.RoundTrip(get(t, "https://user:hunter2@api.test/v1?access_token=tok_secret"))
	out := logs.String()
	if !strings.Contains(out, "connection reset") {
		t.Fatalf("log %s", out)
	}
	for _, secret := range []string{"tok_secret", "hunter2"} {
		if strings.Contains(out, secret) {
			t.Fatalf("log leaks %q: %s", secret, out)
		}
	}
}
