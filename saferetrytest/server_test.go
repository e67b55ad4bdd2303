package saferetrytest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// streamError mirrors net/http's unexported http2StreamError, whose As
// method fills any error struct with the same field names and
// convertible types: the way to read an HTTP/2 error code without
// golang.org/x/net.
type streamError struct {
	StreamID uint32
	Code     ErrCode
	Cause    error
}

func (e streamError) Error() string { return "stream error " + strconv.Itoa(int(e.Code)) }

// protocols are the four ways New serves.
var protocols = []struct {
	name  string
	opts  []Option
	proto int // ProtoMajor the client should see
}{
	{"http1", nil, 1},
	{"https1", []Option{WithTLS()}, 1},
	{"h2", []Option{WithTLS(), WithHTTP2()}, 2},
	{"h2c", []Option{WithHTTP2()}, 2},
}

// newClient returns a client with its own connection pool, so that a fault
// meets a fresh connection and net/http does not retry it by itself.
func newClient(t *testing.T, tr *http.Transport) *http.Client {
	t.Helper()
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func newServer(t *testing.T, opts ...Option) *Server {
	t.Helper()
	s := New(opts...)
	t.Cleanup(s.Close)
	return s
}

func send(ctx context.Context, c *http.Client, method, url, body string, header http.Header) (*http.Response, error) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	return c.Do(req)
}

// readAll reads and closes resp's body.
func readAll(t *testing.T, resp *http.Response) ([]byte, error) {
	t.Helper()
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// wantReset checks that err is what a reset looks like from the client:
// ECONNRESET over HTTP/1.x, RST_STREAM(INTERNAL_ERROR) over HTTP/2.
func wantReset(t *testing.T, proto int, err error) {
	t.Helper()
	if proto == 2 {
		var se streamError
		if !errors.As(err, &se) || se.Code != ErrCodeInternal {
			t.Fatalf("err = %v; want an HTTP/2 stream error INTERNAL_ERROR", err)
		}
		return
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("err = %v; want ECONNRESET", err)
	}
}

func TestRefusedURL(t *testing.T) {
	u, err := RefusedURL()
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, &http.Transport{})
	_, err = send(t.Context(), c, "POST", u+"/pay", "x", nil)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("err = %v; want ECONNREFUSED", err)
	}
}

// TestFaults sends one request per fault over each protocol and checks
// what the client sees and what the server recorded.
func TestFaults(t *testing.T) {
	tests := []struct {
		name   string
		method string
		body   string
		fault  Fault
		// check gets the result of the request (a response whose body
		// was not read yet, or an error) and the path's stats after it.
		check func(t *testing.T, proto int, resp *http.Response, err error, s *Server)
	}{
		{
			name: "pass GET", method: "GET",
			check: func(t *testing.T, proto int, resp *http.Response, err error, s *Server) {
				body := wantStatus(t, resp, err, 200)
				if string(body) != "ok GET /r\n" {
					t.Errorf("body = %q", body)
				}
				wantPath(t, s, 1, 0)
			},
		},
		{
			name: "pass POST commits", method: "POST", body: "pay 10",
			check: func(t *testing.T, proto int, resp *http.Response, err error, s *Server) {
				wantStatus(t, resp, err, 200)
				if got := resp.Header.Get("X-Commit"); got != "1" {
					t.Errorf("X-Commit = %q; want 1", got)
				}
				wantPath(t, s, 1, 1)
			},
		},
		{
			name: "respond 503 default", method: "POST", body: "pay 10",
			fault: Fault{Kind: Respond},
			check: func(t *testing.T, proto int, resp *http.Response, err error, s *Server) {
				wantStatus(t, resp, err, 503)
				wantPath(t, s, 1, 0)
			},
		},
		{
			name: "429 with Retry-After", method: "GET",
			fault: RetryAfter(429, "7"),
			check: func(t *testing.T, proto int, resp *http.Response, err error, s *Server) {
				wantStatus(t, resp, err, 429)
				if got := resp.Header.Get("Retry-After"); got != "7" {
					t.Errorf("Retry-After = %q; want 7", got)
				}
			},
		},
		{
			name: "reset after headers", method: "POST", body: "pay 10",
			fault: Fault{Kind: ResetAfterHeaders},
			check: func(t *testing.T, proto int, resp *http.Response, err error, s *Server) {
				wantReset(t, proto, err)
				rec := wantPath(t, s, 1, 0).Requests[0]
				if rec.BodyRead || rec.Effect != NoEffect {
					t.Errorf("record = %+v; want body unread, no effect", rec)
				}
			},
		},
		{
			name: "reset after body commits first", method: "POST", body: "pay 10",
			fault: Fault{Kind: ResetAfterCommit},
			check: func(t *testing.T, proto int, resp *http.Response, err error, s *Server) {
				wantReset(t, proto, err)
				rec := wantPath(t, s, 1, 1).Requests[0]
				if !rec.BodyRead || string(rec.Body) != "pay 10" || rec.Effect != Committed {
					t.Errorf("record = %+v; want body read and committed", rec)
				}
			},
		},
		{
			name: "truncate", method: "GET",
			fault: Fault{Kind: Truncate, Body: []byte("0123456789"), Cut: 4},
			check: func(t *testing.T, proto int, resp *http.Response, err error, s *Server) {
				if err != nil {
					t.Fatal(err)
				}
				if resp.ContentLength != 10 {
					t.Errorf("ContentLength = %d; want 10", resp.ContentLength)
				}
				body, err := readAll(t, resp)
				if !errors.Is(err, io.ErrUnexpectedEOF) || string(body) != "0123" {
					t.Errorf("read %q, %v; want %q, io.ErrUnexpectedEOF", body, err, "0123")
				}
			},
		},
	}
	for _, p := range protocols {
		for _, tc := range tests {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				s := newServer(t, p.opts...)
				s.Script("/r", tc.fault)
				c := newClient(t, s.Transport())
				resp, err := send(t.Context(), c, tc.method, s.URL()+"/r", tc.body, nil)
				if err == nil && resp.ProtoMajor != p.proto {
					t.Fatalf("ProtoMajor = %d; want %d", resp.ProtoMajor, p.proto)
				}
				tc.check(t, p.proto, resp, err, s)
				if resp != nil {
					resp.Body.Close()
				}
			})
		}
	}
}

func wantStatus(t *testing.T, resp *http.Response, err error, status int) []byte {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	body, err := readAll(t, resp)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	if resp.StatusCode != status {
		t.Fatalf("status = %d; want %d", resp.StatusCode, status)
	}
	return body
}

// wantPath checks the number of requests and commits recorded on /r.
func wantPath(t *testing.T, s *Server, requests, commits int) PathStats {
	t.Helper()
	ps := s.Stats().Paths["/r"]
	if len(ps.Requests) != requests || ps.Commits != commits {
		t.Fatalf("/r got %d requests, %d commits; want %d, %d", len(ps.Requests), ps.Commits, requests, commits)
	}
	return ps
}

func TestBurst(t *testing.T) {
	s := newServer(t)
	s.Script("/r", Burst(2, 502), Burst(1, 504))
	c := newClient(t, s.Transport())
	var got []int
	for range 5 {
		resp, err := send(t.Context(), c, "GET", s.URL()+"/r", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		got = append(got, resp.StatusCode)
	}
	want := []int{502, 502, 504, 200, 200}
	if !slices.Equal(got, want) {
		t.Fatalf("statuses = %v; want %v", got, want)
	}
}

func TestCountForever(t *testing.T) {
	s := newServer(t)
	s.Script("/r", Fault{Kind: Respond, Status: 500, Count: -1})
	c := newClient(t, s.Transport())
	for range 3 {
		resp, err := send(t.Context(), c, "GET", s.URL()+"/r", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.StatusCode != 500 {
			t.Fatalf("status = %d; want 500 every time", resp.StatusCode)
		}
	}
}

// TestResetMidResponse holds the cut with Release so that the client has
// read the headers and the partial body before the reset arrives.
func TestResetMidResponse(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			s := newServer(t, p.opts...)
			release := make(chan struct{})
			s.Script("/r", Fault{Kind: ResetMidResponse, Body: []byte("0123456789"), Cut: 6, Release: release})
			c := newClient(t, s.Transport())
			resp, err := send(t.Context(), c, "POST", s.URL()+"/r", "pay", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 || resp.ContentLength != 10 {
				t.Fatalf("status %d, length %d; want 200, 10", resp.StatusCode, resp.ContentLength)
			}
			part := make([]byte, 6)
			if _, err := io.ReadFull(resp.Body, part); err != nil || string(part) != "012345" {
				t.Fatalf("partial body %q, %v", part, err)
			}
			close(release)
			_, err = io.ReadAll(resp.Body)
			wantReset(t, p.proto, err)
			if ps := s.Stats().Paths["/r"]; ps.Commits != 1 {
				t.Errorf("commits = %d; want 1", ps.Commits)
			}
		})
	}
}

func TestSlowBody(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			s := newServer(t, p.opts...)
			step := make(chan struct{})
			body := []byte("0123456789abcdefXY")
			s.Script("/r", Fault{Kind: SlowBody, Body: body, Chunk: 4, Step: step})
			c := newClient(t, s.Transport())
			resp, err := send(t.Context(), c, "GET", s.URL()+"/r", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got []byte
			buf := make([]byte, 64)
			for len(got) < len(body) {
				want := min(4, len(body)-len(got))
				// The next piece is not sent before the step, so a read
				// returns at most one piece.
				n, err := io.ReadAtLeast(resp.Body, buf, want)
				if err != nil || n != want {
					t.Fatalf("read %d bytes, %v; want exactly %d", n, err, want)
				}
				got = append(got, buf[:n]...)
				if len(got) < len(body) {
					step <- struct{}{}
				}
			}
			if n, err := resp.Body.Read(buf); n != 0 || err != io.EOF {
				t.Fatalf("after the body: %d, %v; want EOF", n, err)
			}
			if !bytes.Equal(got, body) {
				t.Fatalf("body = %q; want %q", got, body)
			}
		})
	}
}

// TestHang checks that a hanging request ends when its client gives up.
func TestHang(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			s := newServer(t, p.opts...)
			arrived := make(chan struct{})
			s.Script("/r", Fault{Kind: Hang, Arrived: arrived})
			c := newClient(t, s.Transport())
			ctx, cancel := context.WithCancel(t.Context())
			errc := make(chan error, 1)
			go func() {
				_, err := send(ctx, c, "POST", s.URL()+"/r", "pay", nil)
				errc <- err
			}()
			waitArrived(t, arrived, errc)
			cancel()
			if err := <-errc; !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v; want context.Canceled", err)
			}
			if ps := s.Stats().Paths["/r"]; ps.Commits != 0 {
				t.Errorf("commits = %d; want 0", ps.Commits)
			}
		})
	}
}

// TestCloseReleases checks that Close ends every request paused at its
// fault, with an error for its client, no side effect for a request held
// before its commit, and no goroutine left (goleak in TestMain).
func TestCloseReleases(t *testing.T) {
	never := make(chan struct{}) // a Release or Step that never comes
	tests := []struct {
		name    string
		fault   Fault
		commits int
	}{
		{"hang", Fault{Kind: Hang}, 0},
		{"held before commit", Fault{Release: never}, 0},
		{"held before responding", Fault{Kind: Respond, Release: never}, 0},
		{"held before reset", Fault{Kind: ResetAfterCommit, Release: never}, 1},
		{"held mid-response", Fault{Kind: ResetMidResponse, Release: never}, 1},
		{"held before truncating", Fault{Kind: Truncate, Release: never}, 1},
		{"slow body waiting for a step", Fault{Kind: SlowBody, Chunk: 2, Step: never}, 1},
	}
	for _, p := range protocols {
		for _, tc := range tests {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				s := newServer(t, p.opts...)
				arrived := make(chan struct{})
				f := tc.fault
				f.Arrived = arrived
				s.Script("/r", f)
				c := newClient(t, s.Transport())
				errc := make(chan error, 1)
				go func() {
					resp, err := send(t.Context(), c, "POST", s.URL()+"/r", "pay", http.Header{"Idempotency-Key": {"k"}})
					if err == nil {
						_, err = io.ReadAll(resp.Body) // the body is cut short
						resp.Body.Close()
					}
					errc <- err
				}()
				waitArrived(t, arrived, errc)
				s.Close() // returns once every handler has returned
				if err := <-errc; err == nil {
					t.Fatal("the request succeeded after Close; want an error")
				}
				if ps := s.Stats().Paths["/r"]; ps.Commits != tc.commits {
					t.Fatalf("commits = %d; want %d", ps.Commits, tc.commits)
				}
			})
		}
	}
}

// TestDedup walks the idempotency-key draft's cases in order: first
// request, concurrent duplicate (409), replay, reuse with another payload
// (422), and unkeyed writes that each commit.
func TestDedup(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			s := newServer(t, append(p.opts, WithKeyHeader("Stripe-Idem"))...)
			arrived, release := make(chan struct{}), make(chan struct{})
			s.Script("/pay", Fault{Arrived: arrived, Release: release})
			c := newClient(t, s.Transport())
			url := s.URL() + "/pay"
			key := func(h, v string) http.Header { return http.Header{h: {v}} }

			type result struct {
				resp *http.Response
				err  error
			}
			first := make(chan result, 1)
			go func() {
				resp, err := send(t.Context(), c, "POST", url, "amount=10", key("Idempotency-Key", "k1"))
				first <- result{resp, err}
			}()
			select {
			case <-arrived: // k1 is in flight
			case r := <-first:
				t.Fatalf("the held request ended early: %v, %v", r.resp, r.err)
			}

			steps := []struct {
				name   string
				body   string
				header http.Header
				status int
				commit string // X-Commit
				replay bool
			}{
				{"concurrent same key", "amount=10", key("Idempotency-Key", "k1"), 409, "", false},
				{"concurrent other payload", "amount=99", key("Idempotency-Key", "k1"), 422, "", false},
			}
			check := func(name string, resp *http.Response, err error, status int, commit string, replay bool) []byte {
				t.Helper()
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				body, err := readAll(t, resp)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if resp.StatusCode != status || resp.Header.Get("X-Commit") != commit ||
					(resp.Header.Get("Idempotent-Replayed") == "true") != replay {
					t.Fatalf("%s: status %d, X-Commit %q, replayed %q; want %d, %q, %v", name,
						resp.StatusCode, resp.Header.Get("X-Commit"), resp.Header.Get("Idempotent-Replayed"), status, commit, replay)
				}
				return body
			}
			for _, st := range steps {
				resp, err := send(t.Context(), c, "POST", url, st.body, st.header)
				check(st.name, resp, err, st.status, st.commit, st.replay)
			}
			close(release)
			r := <-first
			firstBody := check("first", r.resp, r.err, 200, "1", false)

			steps = []struct {
				name   string
				body   string
				header http.Header
				status int
				commit string
				replay bool
			}{
				{"replay", "amount=10", key("Idempotency-Key", "k1"), 200, "1", true},
				{"reuse other payload", "amount=99", key("Idempotency-Key", "k1"), 422, "", false},
				{"X-Idempotency-Key new key", "amount=10", key("X-Idempotency-Key", "k2"), 200, "2", false},
				{"X-Idempotency-Key replay", "amount=10", key("X-Idempotency-Key", "k2"), 200, "2", true},
				{"configured header", "amount=10", key("Stripe-Idem", "k3"), 200, "3", false},
				{"unkeyed", "amount=10", nil, 200, "4", false},
				{"unkeyed again commits again", "amount=10", nil, 200, "5", false},
			}
			for _, st := range steps {
				resp, err := send(t.Context(), c, "POST", url, st.body, st.header)
				body := check(st.name, resp, err, st.status, st.commit, st.replay)
				if st.name == "replay" && !bytes.Equal(body, firstBody) {
					t.Errorf("replayed body %q; want the stored %q", body, firstBody)
				}
			}

			ps := s.Stats().Paths["/pay"]
			if ps.Commits != 5 {
				t.Errorf("commits = %d; want 5", ps.Commits)
			}
			var effects []Effect
			for _, rec := range ps.Requests {
				effects = append(effects, rec.Effect)
			}
			// The first request is recorded first: it arrived first.
			want := []Effect{Committed, InProgress, KeyReused, Replayed, KeyReused, Committed, Replayed, Committed, Committed, Committed}
			if !slices.Equal(effects, want) {
				t.Errorf("effects = %v; want %v", effects, want)
			}
			wantKeys := []string{"k1", "k1", "k1", "k1", "k1", "k2", "k2", "k3", "", ""}
			var keys []string
			for _, rec := range ps.Requests {
				keys = append(keys, rec.Key)
			}
			if !slices.Equal(keys, wantKeys) {
				t.Errorf("keys = %q; want %q", keys, wantKeys)
			}
		})
	}
}

// TestDuplicatedPayment is the classic: the server commits, the
// connection dies before the answer, the client sends again. With a key
// the retry is a replay; without one it is a second charge.
func TestDuplicatedPayment(t *testing.T) {
	tests := []struct {
		name        string
		header      http.Header
		wantCommits int
		wantReplay  bool
	}{
		{"keyed: charged once", http.Header{"Idempotency-Key": {"pay-1"}}, 1, true},
		{"unkeyed: charged twice", nil, 2, false},
	}
	for _, p := range protocols {
		for _, tc := range tests {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				s := newServer(t, p.opts...)
				s.Script("/r", Fault{Kind: ResetAfterCommit})
				c := newClient(t, s.Transport())
				_, err := send(t.Context(), c, "POST", s.URL()+"/r", "amount=10", tc.header)
				wantReset(t, p.proto, err)
				resp, err := send(t.Context(), c, "POST", s.URL()+"/r", "amount=10", tc.header)
				wantStatus(t, resp, err, 200)
				if got := resp.Header.Get("Idempotent-Replayed") == "true"; got != tc.wantReplay {
					t.Errorf("replayed = %v; want %v", got, tc.wantReplay)
				}
				if ps := s.Stats().Paths["/r"]; ps.Commits != tc.wantCommits {
					t.Errorf("commits = %d; want %d", ps.Commits, tc.wantCommits)
				}
			})
		}
	}
}

// TestHeldKeyFreedWhenClientLeaves: a keyed write dropped while held (its
// client gave up) never committed, so its key can be used again.
func TestHeldKeyFreedWhenClientLeaves(t *testing.T) {
	s := newServer(t)
	arrived := make(chan struct{})
	s.Script("/r", Fault{Arrived: arrived, Release: make(chan struct{})})
	c := newClient(t, s.Transport())
	hdr := http.Header{"Idempotency-Key": {"k"}}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := send(ctx, c, "POST", s.URL()+"/r", "pay", hdr)
		errc <- err
	}()
	waitArrived(t, arrived, errc)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v; want context.Canceled", err)
	}
	// The handler sees the cancellation asynchronously; once it has
	// returned the key is free.
	if _, err := s.Wait(t.Context(), "/r", 1); err != nil {
		t.Fatal(err)
	}
	resp, err := send(t.Context(), c, "POST", s.URL()+"/r", "pay", hdr)
	wantStatus(t, resp, err, 200)
	if resp.Header.Get("Idempotent-Replayed") != "" {
		t.Fatal("the retry was a replay; want a first commit")
	}
	if ps := s.Stats().Paths["/r"]; ps.Commits != 1 {
		t.Fatalf("commits = %d; want 1", ps.Commits)
	}
}

// TestBodiesRecorded checks that the server records each body byte for
// byte, whatever its bytes and size.
func TestBodiesRecorded(t *testing.T) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	big := bytes.Repeat([]byte("0123456789abcdef\x00\xff"), 10000) // 180 kB: several windows
	bodies := [][]byte{{}, []byte("x"), all, big}
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			s := newServer(t, p.opts...)
			s.Script("/r", Fault{Kind: Respond, Status: 500}) // bodies are recorded whatever the fault
			c := newClient(t, s.Transport())
			for _, b := range bodies {
				req, err := http.NewRequestWithContext(t.Context(), "PUT", s.URL()+"/r", bytes.NewReader(b))
				if err != nil {
					t.Fatal(err)
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				readAll(t, resp)
			}
			got := s.Stats().Paths["/r"].Requests
			if len(got) != len(bodies) {
				t.Fatalf("%d bodies recorded; want %d", len(got), len(bodies))
			}
			for i := range bodies {
				if !bytes.Equal(got[i].Body, bodies[i]) || !got[i].BodyRead {
					t.Errorf("body %d: recorded %d bytes (whole: %v), differs from the %d sent", i, len(got[i].Body), got[i].BodyRead, len(bodies[i]))
				}
			}
		})
	}
}

// TestResetConns resets connections before the request is read.
func TestResetConns(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			s := newServer(t, p.opts...)
			s.ResetConns(1)
			c := newClient(t, s.Transport())
			_, err := send(t.Context(), c, "POST", s.URL()+"/r", "pay", nil)
			switch {
			case p.name == "h2c":
				// The reset meets the client's connection preface: Go's
				// client reports ECONNRESET from its write or, as often,
				// an untyped "client conn could not be established".
				if err == nil {
					t.Fatal("no error; want the reset")
				}
			case !errors.Is(err, syscall.ECONNRESET):
				t.Fatalf("err = %v; want ECONNRESET", err)
			}
			resp, err := send(t.Context(), c, "POST", s.URL()+"/r", "pay", nil)
			wantStatus(t, resp, err, 200)
			st := s.Stats()
			if st.ResetConns != 1 || st.Conns != 2 || len(st.Paths["/r"].Requests) != 1 {
				t.Fatalf("stats = %+v; want 2 conns, 1 reset, 1 request", st)
			}
		})
	}
}

func TestRetryAfterCases(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 400_000_000, time.UTC)
	s := newServer(t)
	c := newClient(t, s.Transport())
	for _, rc := range RetryAfterCases(now, 3*time.Second) {
		t.Run(rc.Name, func(t *testing.T) {
			s.Script("/r", RetryAfter(503, rc.Value))
			resp, err := send(t.Context(), c, "GET", s.URL()+"/r", "", nil)
			wantStatus(t, resp, err, 503)
			if got := resp.Header.Values("Retry-After"); len(got) != 1 || got[0] != rc.Value {
				t.Fatalf("Retry-After = %q; want %q", got, rc.Value)
			}
			// The expectations agree with net/http's parsers.
			if secs, err := strconv.ParseInt(rc.Value, 10, 64); err == nil && secs >= 0 {
				if !rc.Valid {
					t.Fatal("a non-negative integer is valid")
				}
				return
			}
			at, err := http.ParseTime(rc.Value)
			if (err == nil) != rc.Valid {
				t.Fatalf("http.ParseTime: %v; Valid = %v", err, rc.Valid)
			}
			if err == nil && rc.Delay != 1<<63-1 && max(at.Sub(now), 0) != rc.Delay {
				t.Fatalf("date means %v; Delay = %v", at.Sub(now), rc.Delay)
			}
		})
	}
}

func TestKindString(t *testing.T) {
	if ResetAfterCommit.String() != "ResetAfterCommit" || Kind(99).String() != "Kind(99)" {
		t.Fatal("Kind.String")
	}
	if H2Refuse.String() != "H2Refuse" || Replayed.String() != "Replayed" {
		t.Fatal("String")
	}
}

// waitArrived waits for a request to reach its fault, failing at once if
// the request ends first, so that no test can fail only by timing out.
func waitArrived(t *testing.T, arrived <-chan struct{}, errc <-chan error) {
	t.Helper()
	select {
	case <-arrived:
	case err := <-errc:
		t.Fatalf("the request ended before reaching its fault: %v", err)
	}
}

// TestWait checks that Wait sees requests whose client has already gone:
// one still on the wire when the client returned, one held in a handler
// when its client gave up; and that it gives up with an error when ctx
// ends or the server closes first.
func TestWait(t *testing.T) {
	t.Run("request on the wire", func(t *testing.T) {
		s := newServer(t)
		conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL(), "http://"))
		if err != nil {
			t.Fatal(err)
		}
		// The client writes a whole request and leaves at once.
		io.WriteString(conn, "POST /r HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\npay")
		conn.Close()
		ps, err := s.Wait(t.Context(), "/r", 1)
		if err != nil || len(ps.Requests) != 1 || ps.Commits != 1 || string(ps.Requests[0].Body) != "pay" {
			t.Fatalf("Wait = %+v, %v; want one request committed", ps, err)
		}
	})
	t.Run("handler still running", func(t *testing.T) {
		s := newServer(t)
		arrived := make(chan struct{})
		s.Script("/r", Fault{Arrived: arrived, Release: make(chan struct{})})
		c := newClient(t, s.Transport())
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() {
			_, err := send(ctx, c, "POST", s.URL()+"/r", "pay", nil)
			errc <- err
		}()
		waitArrived(t, arrived, errc)
		cancel()
		<-errc
		ps, err := s.Wait(t.Context(), "/r", 1)
		if err != nil || len(ps.Requests) != 1 || ps.Commits != 0 || ps.Requests[0].Effect != NoEffect {
			t.Fatalf("Wait = %+v, %v; want one request dropped without effect", ps, err)
		}
	})
	t.Run("context ends first", func(t *testing.T) {
		s := newServer(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := s.Wait(ctx, "/r", 1); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v; want context.Canceled", err)
		}
	})
	t.Run("server closes first", func(t *testing.T) {
		s := newServer(t)
		done := make(chan error, 1)
		go func() {
			_, err := s.Wait(t.Context(), "/r", 1)
			done <- err
		}()
		s.Close()
		if err := <-done; err == nil {
			t.Fatal("Wait on a closed server returned no error")
		}
	})
}
