package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/saferetry/saferetry"
	"github.com/saferetry/saferetry/keystore/sqlitestore"
)

// runDo runs "saferetry do args..." through run, as main does, with stdin
// as its standard input.
func runDo(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	saved := doStdin
	doStdin = strings.NewReader(stdin)
	t.Cleanup(func() { doStdin = saved })
	var out, errOut bytes.Buffer
	code = run(t.Context(), append([]string{"do"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

// seen is a request as the test server received it.
type seen struct {
	Method, Path, Query, Host string
	Header                    http.Header
	Body                      []byte
}

func (s seen) key() string { return s.Header.Get("Idempotency-Key") }

// scriptServer answers its n-th request with script[n], and any request
// past the script with 200 "ok", recording every request it receives.
// A step that hangs waits for the request's end or the test's cleanup.
type scriptServer struct {
	*httptest.Server
	script  []http.HandlerFunc
	release chan struct{} // closed at cleanup: hung steps return

	mu   sync.Mutex
	reqs []seen
}

func newScriptServer(t *testing.T, script ...http.HandlerFunc) *scriptServer {
	t.Helper()
	s := &scriptServer{script: script, release: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	t.Cleanup(func() { close(s.release) }) // runs first
	return s
}

func (s *scriptServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	n := len(s.reqs)
	s.reqs = append(s.reqs, seen{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Host: r.Host, Header: r.Header.Clone(), Body: body})
	s.mu.Unlock()
	if n < len(s.script) {
		s.script[n](w, r)
		return
	}
	io.WriteString(w, "ok")
}

func (s *scriptServer) seen() []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// hang holds the request, having read it, until the client gives up.
func (s *scriptServer) hang(w http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-s.release:
	}
}

// status answers code with body, and Retry-After if retryAfter is not "".
func status(code int, retryAfter, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

// cut closes the connection without answering: the request was read.
func cut(w http.ResponseWriter, r *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

// closedURL is a loopback URL where nothing listens: a dial is refused.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/v1/charges"
}

func wantExit(t *testing.T, code int, want int, stderr string) {
	t.Helper()
	if code != want {
		t.Fatalf("exit status %d, want %d; stderr:\n%s", code, want, stderr)
	}
}

func TestDoGET(t *testing.T) {
	srv := newScriptServer(t, status(http.StatusOK, "", "hello\x00world\n"))
	code, out, errOut := runDo(t, "", srv.URL+"/v1/balance?currency=eur")
	wantExit(t, code, 0, errOut)
	if out != "hello\x00world\n" || errOut != "" {
		t.Errorf("stdout %q, stderr %q; want the body byte for byte and nothing else", out, errOut)
	}
	got := srv.seen()
	if len(got) != 1 || got[0].Method != "GET" || got[0].Path != "/v1/balance" || got[0].Query != "currency=eur" || len(got[0].Body) != 0 || got[0].key() != "" {
		t.Errorf("the server saw %+v, want one GET /v1/balance?currency=eur without body or key", got)
	}
}

func TestDoData(t *testing.T) {
	file := filepath.Join(t.TempDir(), "charge.json")
	fileData := "{\"amount\":4200}\r\n\n" // sent as is: no newline stripped
	if err := os.WriteFile(file, []byte(fileData), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		stdin      string
		args       []string
		wantMethod string
		wantType   string
		wantBody   string
	}{
		{"literal data makes a form POST", "", []string{"-d", "amount=4200&currency=eur"}, "POST", "application/x-www-form-urlencoded", "amount=4200&currency=eur"},
		{"long spelling", "", []string{"--data", "a=1"}, "POST", "application/x-www-form-urlencoded", "a=1"},
		{"@file", "", []string{"-d", "@" + file, "-H", "Content-Type: application/json"}, "POST", "application/json", fileData},
		{"@- reads stdin", "from\nstdin\n", []string{"-d", "@-", "-H", "content-type: text/plain"}, "POST", "text/plain", "from\nstdin\n"},
		{"empty data", "", []string{"-d", ""}, "POST", "application/x-www-form-urlencoded", ""},
		{"PUT with data", "", []string{"-X", "PUT", "-d", "x"}, "PUT", "application/x-www-form-urlencoded", "x"},
		{"PATCH with data", "", []string{"--request=PATCH", "--data=y"}, "PATCH", "application/x-www-form-urlencoded", "y"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newScriptServer(t, status(http.StatusCreated, "", "created"))
			code, out, errOut := runDo(t, tt.stdin, append(tt.args, srv.URL+"/v1/charges")...)
			wantExit(t, code, 0, errOut)
			if out != "created" {
				t.Errorf("stdout %q, want the body", out)
			}
			got := srv.seen()
			if len(got) != 1 {
				t.Fatalf("the server saw %d requests, want 1", len(got))
			}
			r := got[0]
			if r.Method != tt.wantMethod || string(r.Body) != tt.wantBody || r.Header.Get("Content-Type") != tt.wantType {
				t.Errorf("the server saw %s with Content-Type %q and body %q; want %s, %q, %q",
					r.Method, r.Header.Get("Content-Type"), r.Body, tt.wantMethod, tt.wantType, tt.wantBody)
			}
			if len(r.Header.Values("Content-Type")) != 1 {
				t.Errorf("Content-Type sent %d times, want once", len(r.Header.Values("Content-Type")))
			}
			wantKeyed := r.Method == "POST" || r.Method == "PATCH"
			if (r.key() != "") != wantKeyed {
				t.Errorf("%s sent with Idempotency-Key %q; want one only for POST and PATCH", r.Method, r.key())
			}
		})
	}
}

func TestDoHeaders(t *testing.T) {
	srv := newScriptServer(t)
	code, _, errOut := runDo(t, "",
		"-H", "X-Trace:  abc \t", "-H", "X-Multi: 1", "--header", "x-multi: 2", "-H", "Host: api.example.test",
		"-H", "Empty:", "-H", "Idempotency-Key: my-own-key", "-X", "POST",
		strings.Replace(srv.URL, "http://", "http://user:p%40ss@", 1)+"/x")
	wantExit(t, code, 0, errOut)
	got := srv.seen()
	if len(got) != 1 {
		t.Fatalf("the server saw %d requests, want 1", len(got))
	}
	h := got[0].Header
	if h.Get("X-Trace") != "abc" || !slices.Equal(h.Values("X-Multi"), []string{"1", "2"}) || got[0].Host != "api.example.test" {
		t.Errorf("headers %v, host %q; want X-Trace abc, X-Multi 1 and 2, host api.example.test", h, got[0].Host)
	}
	if v, ok := h["Empty"]; !ok || len(v) != 1 || v[0] != "" {
		t.Errorf("Empty: %q, want one empty value", v)
	}
	if got[0].key() != "my-own-key" {
		t.Errorf("Idempotency-Key %q: the caller's key must be kept", got[0].key())
	}
	if user, pw, ok := (&http.Request{Header: h}).BasicAuth(); !ok || user != "user" || pw != "p@ss" {
		t.Errorf("basic auth %q %q %t, want the URL's user and password", user, pw, ok)
	}
}

func TestDoInclude(t *testing.T) {
	srv := newScriptServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Charge", "ch_1")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":"ch_1"}`)
	})
	code, out, errOut := runDo(t, "", srv.URL, "-i")
	wantExit(t, code, 0, errOut)
	head, body, ok := strings.Cut(out, "\r\n\r\n")
	if !ok || body != `{"id":"ch_1"}` {
		t.Fatalf("stdout %q: want the head, a blank line, then the body", out)
	}
	lines := strings.Split(head, "\r\n")
	if lines[0] != "HTTP/1.1 201 Created" || !slices.Contains(lines, "X-Charge: ch_1") || !slices.Contains(lines, "Content-Type: application/json") {
		t.Errorf("head %q: want the status line and the headers", lines)
	}
}

func TestDoVerboseRedacts(t *testing.T) {
	secrets := []string{"AUTHSECRET", "COOKIESECRET", "BODYSECRET", "PATHSECRET", "QUERYSECRET", "PASSSECRET", "RESPCOOKIE", "RESPSECRET", "APIKEYSECRET"}
	srv := newScriptServer(t,
		status(http.StatusServiceUnavailable, "0", "RESPSECRET"),
		func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Set-Cookie", "session=RESPCOOKIE")
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, "RESPSECRET")
		})
	url := strings.Replace(srv.URL, "http://", "http://user:PASSSECRET@", 1) + "/hooks/PATHSECRET?token=QUERYSECRET"
	code, out, errOut := runDo(t, "", "-v",
		"-H", "Authorization: Bearer AUTHSECRET", "-H", "Cookie: c=COOKIESECRET", "-H", "X-Api-Key: APIKEYSECRET",
		"-d", "BODYSECRET", url)
	wantExit(t, code, 0, errOut)
	if out != "RESPSECRET" {
		t.Errorf("stdout %q, want the body", out)
	}
	for _, s := range secrets {
		if strings.Contains(errOut, s) {
			t.Errorf("-v printed %s:\n%s", s, errOut)
		}
	}
	got := srv.seen()
	if len(got) != 2 || got[0].key() == "" || got[1].key() != got[0].key() {
		t.Fatalf("the server saw %+v, want two attempts with one key", got)
	}
	key := got[0].key()
	want := []string{
		"* POST " + srv.URL + "/…, 10 bytes of data",
		"* attempt 1 (Idempotency-Key " + key + "): 503 Service Unavailable",
		"* retrying in 0s, as the server's Retry-After asks",
		"* attempt 2 (Idempotency-Key " + key + "): 201 Created",
		"",
	}
	if errOut != strings.Join(want, "\n") {
		t.Errorf("stderr:\n%s\nwant:\n%s", errOut, strings.Join(want, "\n"))
	}
}

// A 503 without Retry-After, twice: the default backoff heals it.
func TestDoRetried503(t *testing.T) {
	srv := newScriptServer(t,
		status(http.StatusServiceUnavailable, "", "busy"),
		status(http.StatusServiceUnavailable, "", "busy"),
		status(http.StatusOK, "", "balance: 42"))
	code, out, errOut := runDo(t, "", "--verbose", srv.URL+"/v1/balance")
	wantExit(t, code, 0, errOut)
	if out != "balance: 42" {
		t.Errorf("stdout %q, want the 200's body", out)
	}
	if n := len(srv.seen()); n != 3 {
		t.Errorf("the server saw %d attempts, want 3", n)
	}
	if c := strings.Count(errOut, "(backoff)"); c != 2 {
		t.Errorf("stderr reports %d backoff retries, want 2:\n%s", c, errOut)
	}
}

// A POST whose first attempt is cut after the server read it: retried,
// under the same key, with the same bytes.
func TestDoKeyedPOSTRetried(t *testing.T) {
	srv := newScriptServer(t, cut, status(http.StatusServiceUnavailable, "0", ""), status(http.StatusCreated, "", "ch_1"))
	code, out, errOut := runDo(t, "", "-d", `{"amount":4200}`, srv.URL+"/v1/charges")
	wantExit(t, code, 0, errOut)
	if out != "ch_1" {
		t.Errorf("stdout %q, want ch_1", out)
	}
	got := srv.seen()
	if len(got) != 3 {
		t.Fatalf("the server saw %d attempts, want 3", len(got))
	}
	for i, r := range got {
		if r.key() == "" || r.key() != got[0].key() || string(r.Body) != `{"amount":4200}` {
			t.Errorf("attempt %d: key %q, body %q; want %q and the same body on every attempt", i+1, r.key(), r.Body, got[0].key())
		}
	}
}

func TestDoRetries(t *testing.T) {
	always503 := []http.HandlerFunc{}
	for range 10 {
		always503 = append(always503, status(http.StatusServiceUnavailable, "0", "busy"))
	}
	for _, tt := range []struct {
		args         []string
		wantAttempts int
	}{
		{nil, 4},
		{[]string{"--retries", "0"}, 1},
		{[]string{"-retries=1"}, 2},
		{[]string{"--retries", "5"}, 6},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			srv := newScriptServer(t, always503...)
			code, out, errOut := runDo(t, "", append(tt.args, srv.URL)...)
			wantExit(t, code, 0, errOut) // an answer, without --fail
			if out != "busy" {
				t.Errorf("stdout %q, want the last 503's body", out)
			}
			if n := len(srv.seen()); n != tt.wantAttempts {
				t.Errorf("the server saw %d attempts, want %d", n, tt.wantAttempts)
			}
		})
	}
}

func TestDoFail(t *testing.T) {
	t.Run("404", func(t *testing.T) {
		srv := newScriptServer(t, status(http.StatusNotFound, "", "no such charge"))
		code, out, errOut := runDo(t, "", "--fail", "-i", srv.URL)
		wantExit(t, code, 1, errOut)
		if out != "" || !strings.Contains(errOut, "saferetry do: the server answered 404 Not Found (1 attempt)") {
			t.Errorf("stdout %q, stderr %q; want nothing on stdout and the status on stderr", out, errOut)
		}
	})
	t.Run("503 after retries", func(t *testing.T) {
		srv := newScriptServer(t, status(503, "0", ""), status(503, "0", ""), status(503, "0", ""), status(503, "0", "still busy"))
		code, out, errOut := runDo(t, "", "-f", srv.URL)
		wantExit(t, code, 1, errOut)
		if out != "" || !strings.Contains(errOut, "503 Service Unavailable (4 attempts)") || len(srv.seen()) != 4 {
			t.Errorf("stdout %q, stderr %q, %d attempts; want nothing, the status, 4", out, errOut, len(srv.seen()))
		}
	})
	t.Run("404 without --fail", func(t *testing.T) {
		srv := newScriptServer(t, status(http.StatusNotFound, "", "no such charge"))
		code, out, errOut := runDo(t, "", srv.URL)
		wantExit(t, code, 0, errOut)
		if out != "no such charge" {
			t.Errorf("stdout %q, want the 404's body", out)
		}
	})
	t.Run("2xx with --fail", func(t *testing.T) {
		srv := newScriptServer(t, status(http.StatusAccepted, "", "queued"))
		code, out, errOut := runDo(t, "", "--fail", srv.URL)
		wantExit(t, code, 0, errOut)
		if out != "queued" {
			t.Errorf("stdout %q, want the body", out)
		}
	})
}

// TestDoExitStatuses provokes each transport failure and checks the exit
// status a script would act on.
func TestDoExitStatuses(t *testing.T) {
	t.Run("3: connection refused, every attempt", func(t *testing.T) {
		code, out, errOut := runDo(t, "", "-d", "x", closedURL(t))
		wantExit(t, code, 3, errOut)
		if out != "" || !strings.Contains(errOut, "connection refused") || !strings.Contains(errOut, "never reached the server: safe to run again") {
			t.Errorf("stdout %q, stderr %q", out, errOut)
		}
		if !strings.Contains(errOut, "after 4 attempt") {
			t.Errorf("stderr %q: want the refused dial retried 4 times", errOut)
		}
	})
	t.Run("3: connection refused, no retries", func(t *testing.T) {
		code, _, errOut := runDo(t, "", "--retries", "0", closedURL(t))
		wantExit(t, code, 3, errOut)
	})
	t.Run("4: GET cut after it was read", func(t *testing.T) {
		srv := newScriptServer(t, cut, cut)
		code, _, errOut := runDo(t, "", "--retries", "1", srv.URL)
		wantExit(t, code, 4, errOut)
		if !strings.Contains(errOut, "may have reached the server: safe to run again, GET is idempotent") || len(srv.seen()) != 2 {
			t.Errorf("stderr %q, %d attempts", errOut, len(srv.seen()))
		}
	})
	t.Run("4: keyed POST cut every time", func(t *testing.T) {
		srv := newScriptServer(t, cut, cut, cut, cut)
		code, _, errOut := runDo(t, "", "-d", "x", srv.URL)
		wantExit(t, code, 4, errOut)
		if !strings.Contains(errOut, "do not simply run it again") || len(srv.seen()) != 4 {
			t.Errorf("stderr %q, %d attempts", errOut, len(srv.seen()))
		}
	})
	t.Run("4: a refused retry after a cut", func(t *testing.T) {
		// Attempt 1 reached the server; attempt 2's refused dial proves
		// nothing about attempt 1.
		var srv *scriptServer
		srv = newScriptServer(t, func(w http.ResponseWriter, r *http.Request) {
			srv.Listener.Close()
			cut(w, r)
		})
		code, _, errOut := runDo(t, "", "-X", "DELETE", "--retries", "1", srv.URL)
		wantExit(t, code, 4, errOut)
		if !strings.Contains(errOut, "connection refused") {
			t.Errorf("stderr %q: want the second attempt's refused dial", errOut)
		}
	})
	t.Run("4: --timeout while the server holds the request", func(t *testing.T) {
		srv := newScriptServer(t)
		srv.script = []http.HandlerFunc{srv.hang}
		code, _, errOut := runDo(t, "", "--timeout", "100ms", "-d", "x", srv.URL)
		wantExit(t, code, 4, errOut)
		if !strings.Contains(errOut, "context deadline exceeded") || len(srv.seen()) != 1 {
			t.Errorf("stderr %q, %d attempts", errOut, len(srv.seen()))
		}
	})
	t.Run("4: --attempt-timeout on every attempt", func(t *testing.T) {
		srv := newScriptServer(t)
		srv.script = []http.HandlerFunc{srv.hang, srv.hang}
		code, _, errOut := runDo(t, "", "--attempt-timeout", "50ms", "--retries", "1", srv.URL)
		wantExit(t, code, 4, errOut)
		if !strings.Contains(errOut, saferetry.ErrAttemptTimeout.Error()) || len(srv.seen()) != 2 {
			t.Errorf("stderr %q, %d attempts; want 2 attempts timed out", errOut, len(srv.seen()))
		}
	})
	t.Run("4: the response body cut", func(t *testing.T) {
		srv := newScriptServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, "first ten.")
			http.NewResponseController(w).Flush()
			cut(w, r)
		})
		code, out, errOut := runDo(t, "", "-X", "PUT", srv.URL)
		wantExit(t, code, 4, errOut)
		if out != "first ten." || !strings.Contains(errOut, "reading the response body after the server answered 200 OK") {
			t.Errorf("stdout %q, stderr %q", out, errOut)
		}
	})
	t.Run("5: the budget refuses, nothing sent", func(t *testing.T) {
		saved := doTestOptions
		t.Cleanup(func() { doTestOptions = saved })
		doTestOptions = []saferetry.Option{saferetry.WithBudget(saferetry.NewBudget(0))}
		code, _, errOut := runDo(t, "", "-d", "x", closedURL(t))
		wantExit(t, code, 5, errOut)
		if !strings.Contains(errOut, "refused to send it and nothing was sent: safe to run again, later") {
			t.Errorf("stderr %q", errOut)
		}
	})
	t.Run("4 not 5: the budget refuses after the request was sent", func(t *testing.T) {
		saved := doTestOptions
		t.Cleanup(func() { doTestOptions = saved })
		doTestOptions = []saferetry.Option{saferetry.WithBudget(saferetry.NewBudget(0))}
		srv := newScriptServer(t, cut)
		code, _, errOut := runDo(t, "", srv.URL)
		wantExit(t, code, 4, errOut)
		if len(srv.seen()) != 1 || !strings.Contains(errOut, "retry budget exhausted") {
			t.Errorf("stderr %q, %d attempts; want one attempt, then the budget's refusal", errOut, len(srv.seen()))
		}
	})
	t.Run("1: stdout cannot be written", func(t *testing.T) {
		srv := newScriptServer(t)
		var errOut bytes.Buffer
		code := run(t.Context(), []string{"do", srv.URL}, failingWriter{}, &errOut)
		wantExit(t, code, 1, errOut.String())
		if !strings.Contains(errOut.String(), "writing the response: disk full") {
			t.Errorf("stderr %q", errOut.String())
		}
	})
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestDoEvidence checks the verdict on evidence the loopback tests cannot
// produce: a DNS failure reported without any trace event.
func TestDoEvidence(t *testing.T) {
	dnsErr := &net.DNSError{Err: "no such host", Name: "api.invalid", IsNotFound: true}
	dialErr := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	readErr := &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}
	budgetErr := &saferetry.RetryError{Attempts: 1, Reason: saferetry.StopBudget, Err: dialErr}
	tests := []struct {
		name       string
		asked, got bool
		err        error
		want       sendVerdict
	}{
		{"DNS failure, no trace", false, false, fmt.Errorf("wrapped: %w", dnsErr), neverSent},
		{"dial failure, no trace", false, false, dialErr, neverSent},
		{"read failure, no trace: no proof", false, false, readErr, maybeSent},
		{"asked, never got", true, false, readErr, neverSent},
		{"got a connection", true, true, dialErr, maybeSent},
		{"budget, nothing sent", true, false, budgetErr, refused},
		{"budget after a connection", true, true, budgetErr, maybeSent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ev sendEvidence
			ev.asked.Store(tt.asked)
			ev.got.Store(tt.got)
			if got := ev.verdict(tt.err); got != tt.want {
				t.Errorf("verdict %d, want %d", got, tt.want)
			}
		})
	}
}

// TestDoFlagPlacement checks flags after the URL, "--", and a "--" that is
// a flag's value.
func TestDoFlagPlacement(t *testing.T) {
	t.Run("flags after the URL", func(t *testing.T) {
		srv := newScriptServer(t)
		code, out, errOut := runDo(t, "", srv.URL+"/x", "-X", "PUT", "--data", "v", "-i")
		wantExit(t, code, 0, errOut)
		got := srv.seen()
		if len(got) != 1 || got[0].Method != "PUT" || string(got[0].Body) != "v" || !strings.HasPrefix(out, "HTTP/1.1 200 OK\r\n") {
			t.Errorf("the server saw %+v, stdout %q", got, out)
		}
	})
	t.Run("-- ends the flags", func(t *testing.T) {
		srv := newScriptServer(t)
		code, _, errOut := runDo(t, "", "-v", "--", srv.URL, "-i")
		wantExit(t, code, 2, errOut)
		if !strings.Contains(errOut, `one URL at a time: got "`+srv.URL+`" and "-i"`) || len(srv.seen()) != 0 {
			t.Errorf("stderr %q, server saw %d", errOut, len(srv.seen()))
		}
	})
	t.Run("-- as -d's value", func(t *testing.T) {
		srv := newScriptServer(t)
		code, out, errOut := runDo(t, "", "-d", "--", srv.URL, "-i")
		wantExit(t, code, 0, errOut)
		got := srv.seen()
		if len(got) != 1 || string(got[0].Body) != "--" || !strings.HasPrefix(out, "HTTP/1.1") {
			t.Errorf("the server saw %+v, stdout %q; want the body -- and -i honoured", got, out)
		}
	})
}

// TestDoBadInput checks that each bad invocation is a usage error (exit
// status 2) with a clear message, and that nothing reached the server.
func TestDoBadInput(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "keys.db")
	srv := newScriptServer(t)
	u := srv.URL + "/v1/charges"
	tests := []struct {
		name       string
		args       []string
		wantStderr string
	}{
		{"no URL", []string{"-v"}, "no URL given"},
		{"two URLs", []string{u, u}, "one URL at a time"},
		{"unknown flag", []string{"--retry", "3", u}, "flag provided but not defined: -retry"},
		{"combined short flags", []string{"-vi", u}, "flag provided but not defined: -vi"},
		{"header without a colon", []string{"-H", "X-Trace abc", u}, `invalid value "X-Trace abc" for flag -H: want 'Name: value' (no colon)`},
		{"header name with a space", []string{"-H", "X Trace: abc", u}, `header name "X Trace" is not a token`},
		{"empty header name", []string{"-H", ": abc", u}, `header name "" is not a token`},
		{"header value with a newline", []string{"-H", "X-Trace: a\r\nInjected: b", u}, "its value holds control character 0x0d"},
		{"header value with NUL", []string{"-H", "X-Trace: a\x00b", u}, "its value holds control character 0x00"},
		{"Content-Length header", []string{"-H", "Content-Length: 5", "-d", "x", u}, "Content-Length is set from the data"},
		{"missing @file", []string{"-d", "@" + filepath.Join(dir, "nope.json"), u}, "-d @" + filepath.Join(dir, "nope.json") + ": no such file or directory"},
		{"@ without a file", []string{"-d", "@", u}, "-d @: name a file"},
		{"@directory", []string{"-d", "@" + dir, u}, "is a directory"},
		{"-d twice", []string{"-d", "a", "-d", "b", u}, "given twice"},
		{"-d with GET", []string{"-X", "GET", "-d", "a", u}, "-d with -X GET"},
		{"-d with HEAD", []string{"-d", "a", "-X", "HEAD", u}, "-d with -X HEAD"},
		{"bad method", []string{"-X", "PO ST", u}, `-X "PO ST": not an HTTP method`},
		{"empty method", []string{"-X", "", u}, `-X "": not an HTTP method`},
		{"URL without a scheme", []string{"127.0.0.1:1/x"}, "bad URL"},
		{"ftp URL", []string{"ftp://example.test/x"}, `bad URL "ftp://example.test/x": want an absolute http:// or https:// URL`},
		{"URL without a host", []string{"http:///x"}, "no host"},
		{"unparsable URL", []string{"http://[::1/x"}, "bad URL"},
		{"password hidden in messages", []string{"ftp://u:hunter2@example.test/"}, "ftp://u:xxxxx@example.test/"},
		{"negative retries", []string{"--retries", "-1", u}, "--retries -1: want 0 or more"},
		{"retries not a number", []string{"--retries", "many", u}, `invalid value "many" for flag -retries`},
		{"negative timeout", []string{"--timeout", "-1s", u}, "--timeout -1s"},
		{"negative attempt timeout", []string{"--attempt-timeout", "-1s", u}, "--attempt-timeout -1s"},
		{"timeout not a duration", []string{"--timeout", "30", u}, `invalid value "30" for flag -timeout`},
		{"--operation without --store", []string{"--operation", "charge-1", "-d", "x", u}, "--operation without --store"},
		{"--store without --operation", []string{"--store", "sqlite:" + db, "-d", "x", u}, "--store without --operation"},
		{"empty operation", []string{"--operation", "", "--store", "sqlite:" + db, "-d", "x", u}, `--operation "": name the operation`},
		{"--operation with GET", []string{"--operation", "op", "--store", "sqlite:" + db, u}, "--operation with GET"},
		{"--operation with a key of one's own", []string{"--operation", "op", "--store", "sqlite:" + db, "-H", "idempotency-key: k", "-d", "x", u}, "the request already has its key"},
		{"unknown store", []string{"--operation", "op", "--store", "mysql://db/x", "-d", "x", u}, `--store "mysql://db/x": want sqlite:PATH or redis://`},
		{"store without a scheme", []string{"--operation", "op", "--store", db, "-d", "x", u}, "want sqlite:PATH or redis://"},
		{"empty sqlite path", []string{"--operation", "op", "--store", "sqlite:", "-d", "x", u}, "--store sqlite: name the file"},
		{"sqlite in a missing directory", []string{"--operation", "op", "--store", "sqlite:" + filepath.Join(dir, "no", "keys.db"), "-d", "x", u}, "no such file or directory"},
		{"bad redis URL", []string{"--operation", "op", "--store", "redis://:pw@127.0.0.1:6379/notadb", "-d", "x", u}, `--store "redis://:xxxxx@127.0.0.1:6379/notadb": redis: invalid database number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runDo(t, "", tt.args...)
			wantExit(t, code, 2, errOut)
			if !strings.Contains(errOut, tt.wantStderr) {
				t.Errorf("stderr %q lacks %q", errOut, tt.wantStderr)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
		})
	}
	if n := len(srv.seen()); n != 0 {
		t.Errorf("bad invocations sent %d requests", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "keys.db")); err == nil {
		t.Errorf("a bad invocation created the store")
	}
}

func TestDoHelp(t *testing.T) {
	code, out, errOut := runDo(t, "", "-h")
	wantExit(t, code, 0, errOut)
	for _, want := range []string{"Usage: saferetry do [flags] URL", "Exit status:", "  5  saferetry refused to send it itself", "--operation NAME", "--attempt-timeout D"} {
		if !strings.Contains(out+errOut, want) {
			t.Errorf("-h lacks %q", want)
		}
	}
}

// TestDoOperation checks --operation in one process: the key comes from
// the store, whatever the method, and is the same on every attempt.
func TestDoOperation(t *testing.T) {
	t.Run("a PUT retried under the store's key", func(t *testing.T) {
		db := filepath.Join(t.TempDir(), "keys.db")
		srv := newScriptServer(t, status(http.StatusServiceUnavailable, "0", ""), status(http.StatusOK, "", "stored"))
		code, out, errOut := runDo(t, "", "-v", "--operation", "config/v7", "--store", "sqlite:"+db, "-X", "PUT", "-d", "v=7", srv.URL+"/config")
		wantExit(t, code, 0, errOut)
		got := srv.seen()
		if out != "stored" || len(got) != 2 || got[0].key() == "" || got[1].key() != got[0].key() {
			t.Fatalf("stdout %q, the server saw %+v; want two attempts under one key", out, got)
		}
		if want := `* PUT ` + srv.URL + `/…, 3 bytes of data, operation "config/v7", keys in sqlite:` + db + "\n"; !strings.HasPrefix(errOut, want) {
			t.Errorf("stderr %q, want it to begin %q", errOut, want)
		}
		store, err := sqlitestore.Open(db, sqlitestore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		if p, err := store.Pending(t.Context()); err != nil || len(p) != 0 {
			t.Errorf("pending %+v (%v): the 200 must finish the operation", p, err)
		}
	})
	t.Run("cut every time: exit 4, rerun with the operation", func(t *testing.T) {
		db := filepath.Join(t.TempDir(), "keys.db")
		srv := newScriptServer(t, cut, cut)
		code, _, errOut := runDo(t, "", "--retries", "1", "--operation", "charge/1", "--store", "sqlite:"+db, "-d", "x", srv.URL)
		wantExit(t, code, 4, errOut)
		if !strings.Contains(errOut, "safe to run again with the same --operation and --store") {
			t.Errorf("stderr %q", errOut)
		}
		store, err := sqlitestore.Open(db, sqlitestore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		p, err := store.Pending(t.Context())
		if got := srv.seen(); err != nil || len(p) != 1 || p[0].Key != got[0].key() || got[1].key() != p[0].Key {
			t.Errorf("pending %+v (%v), keys sent %q, %q: want the operation pending with the key sent", p, err, got[0].key(), got[1].key())
		}
	})
}
