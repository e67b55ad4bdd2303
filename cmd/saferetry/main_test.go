package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/saferetry/saferetry/cmd/saferetry/internal/payments"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestDemo runs the whole demo in-process, against its real loopback
// server, and checks what it observed independently of its own checks.
//
// It takes a little over a second, for real: the rate-limited scene waits
// for the server's Retry-After: 1. testing/synctest cannot fake that wait
// here, because a goroutine blocked on a real socket (the server's and the
// client's connection readers) is never durably blocked, so the bubble's
// clock would never advance.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	report, err := runDemo(t.Context(), &out, false)
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatalf("runDemo: %v", err)
	}
	if len(report.Failures) != 0 {
		t.Errorf("the demo reported failures: %q", report.Failures)
	}
	if !strings.Contains(out.String(), "OK: every scene went as expected") {
		t.Errorf("the output does not end with the OK verdict")
	}

	if len(report.Scenes) != 5 {
		t.Fatalf("got %d scenes, want 5", len(report.Scenes))
	}
	for i, want := range []int{3, 2, 2, 1, 2} {
		sc := report.Scenes[i]
		if sc.Attempts != want || len(sc.ServerSaw) != want {
			t.Errorf("scene %d: saferetry made %d attempts and the server saw %d, want %d", i+1, sc.Attempts, len(sc.ServerSaw), want)
		}
	}

	t.Run("each card charged once", func(t *testing.T) {
		for _, card := range []string{"card_alice", "card_bob", "card_carol"} {
			if n := report.ChargesPerCard[card]; n != 1 {
				t.Errorf("%s charged %d times, want 1", card, n)
			}
		}
		if len(report.ChargesPerCard) != 3 {
			t.Errorf("charges per card = %v, want only card_alice, card_bob and card_carol", report.ChargesPerCard)
		}
	})

	t.Run("Retry-After honoured", func(t *testing.T) {
		sc := report.Scenes[1]
		if len(sc.Retries) != 1 || len(sc.ServerSaw) != 2 {
			t.Fatalf("got %d retry events and %d server attempts, want 1 and 2", len(sc.Retries), len(sc.ServerSaw))
		}
		ev := sc.Retries[0]
		if ev.StatusCode() != http.StatusTooManyRequests || !ev.ServerDirected {
			t.Errorf("retry after status %d, server-directed %t; want a 429's Retry-After honoured", ev.StatusCode(), ev.ServerDirected)
		}
		if ev.Delay < time.Second || ev.Delay > 1100*time.Millisecond {
			t.Errorf("saferetry waited %v, want between 1s and 1.1s", ev.Delay)
		}
		if gap := sc.ServerSaw[1].At.Sub(sc.ServerSaw[0].At); gap < time.Second {
			t.Errorf("the retry reached the server %v after the first attempt, want at least 1s", gap)
		}
	})

	t.Run("same key on both attempts of the cut charge", func(t *testing.T) {
		sc := report.Scenes[2]
		if sc.Err != nil || sc.Status != http.StatusCreated {
			t.Fatalf("got status %d, error %v; want 201 Created", sc.Status, sc.Err)
		}
		if len(sc.ServerSaw) != 2 {
			t.Fatalf("the server saw %d attempts, want 2", len(sc.ServerSaw))
		}
		key := sc.ServerSaw[0].Key
		if key == "" || sc.ServerSaw[1].Key != key {
			t.Errorf("keys on the two attempts: %q, %q; want the same injected key", key, sc.ServerSaw[1].Key)
		}
		if len(sc.Retries) != 1 || sc.Retries[0].Key != key {
			t.Errorf("retry events %+v, want one carrying key %q", sc.Retries, key)
		}
		if sc.ServerSaw[0].Status != 0 || !sc.ServerSaw[1].Replayed {
			t.Errorf("server outcomes %+v, want the first cut and the second replayed", sc.ServerSaw)
		}
		if want := "replayed stored response for key " + key; !strings.Contains(out.String(), want) {
			t.Errorf("the timeline lacks %q", want)
		}
	})

	t.Run("unkeyed POST not retried", func(t *testing.T) {
		sc := report.Scenes[3]
		if sc.Err == nil {
			t.Fatalf("got status %d, want the connection error", sc.Status)
		}
		if len(sc.ServerSaw) != 1 || sc.ServerSaw[0].Key != "" {
			t.Errorf("the server saw %+v, want one attempt without a key", sc.ServerSaw)
		}
	})

	t.Run("hedged POST carries the same key and charges once", func(t *testing.T) {
		sc := report.Scenes[4]
		if sc.Err != nil || sc.Status != http.StatusCreated {
			t.Fatalf("got status %d, error %v; want 201 Created", sc.Status, sc.Err)
		}
		if len(sc.ServerSaw) != 2 {
			t.Fatalf("the server saw %d attempts, want 2", len(sc.ServerSaw))
		}
		key := sc.ServerSaw[0].Key
		if key == "" || sc.ServerSaw[1].Key != key {
			t.Errorf("keys on the two attempts: %q, %q; want the same injected key", key, sc.ServerSaw[1].Key)
		}
		if len(sc.Retries) != 1 || !sc.Retries[0].Hedge || sc.Retries[0].Number != 2 || sc.Retries[0].Key != key {
			t.Errorf("hook events %+v, want one hedge, attempt 2, carrying key %q", sc.Retries, key)
		}
		var stalled, created int
		for _, r := range sc.ServerSaw {
			switch {
			case r.Fault == payments.Stall() && r.Status == 0:
				stalled++
			case r.Status == http.StatusCreated && !r.Replayed:
				created++
			}
		}
		if stalled != 1 || created != 1 {
			t.Errorf("server outcomes %+v, want one stalled and unanswered, one fresh 201", sc.ServerSaw)
		}
		for _, want := range []string{
			"no answer after 50ms: hedging with attempt 2, same Idempotency-Key " + key,
			"the client gave up on it: nothing committed, no reply",
		} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("the timeline lacks %q", want)
			}
		}
		if want := "5      POST /v1/charges  2 (want 2)  201 Created"; !strings.Contains(out.String(), want) {
			t.Errorf("the summary lacks %q", want)
		}
	})
}

func TestRun(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"help lists the commands", []string{"help"}, 0, "demo", ""},
		{"-h lists the commands", []string{"-h"}, 0, "Commands:", ""},
		{"unknown command", []string{"nope"}, 2, "", `unknown command "nope"`},
		{"demo -h shows its flags", []string{"demo", "-h"}, 0, "", "-quiet"},
		{"bad flag for the default command", []string{"-bogus"}, 2, "", "flag provided but not defined: -bogus"},
		{"stray argument", []string{"demo", "extra"}, 2, "", `unexpected argument "extra"`},
		{"demo flag given a bad value", []string{"demo", "-quiet=maybe"}, 2, "", `invalid boolean value "maybe" for -quiet`},
		{"unknown demo flag", []string{"demo", "-speed", "2"}, 2, "", "flag provided but not defined: -speed"},
		{"empty argument", []string{""}, 2, "", `unexpected argument ""`},
		{"failing command", []string{"fail"}, 1, "", "saferetry fail: boom"},
	}
	saved := commands
	t.Cleanup(func() { commands = saved })
	commands = append(commands[:len(commands):len(commands)], command{
		name: "fail",
		run: func(context.Context, []string, io.Writer, io.Writer) error {
			return errors.New("boom")
		},
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), tt.args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit status %d, want %d (stderr: %s)", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout %q lacks %q", stdout.String(), tt.wantStdout)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}

func TestSummaryReportsFailures(t *testing.T) {
	var out bytes.Buffer
	printSummary(&out, &demoReport{
		Scenes:         []sceneReport{{Method: "POST", Path: "/v1/charges", Attempts: 2, WantAttempts: 1, Status: http.StatusCreated}},
		ChargesPerCard: map[string]int{"card_bob": 2},
		WantCharges:    map[string]int{"card_bob": 1},
		Failures:       []string{"card_bob was charged 2 time(s), want 1"},
	}, 2)
	for _, want := range []string{
		"2 (want 1)",
		"card_bob 2 (want 1)",
		"FAILED: 1 expectation(s) not met:\n  - card_bob was charged 2 time(s), want 1\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "OK:") {
		t.Errorf("a failed summary says OK:\n%s", out.String())
	}
}
