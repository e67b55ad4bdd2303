package saferetrytest

import (
	"testing"
)

// TestFailBeforeCommit: a keyed write that meets FailBeforeCommit holds its
// key in flight (a concurrent request with the key gets 409), then fails
// with its status or a reset, commits nothing and frees the key, so the
// next request with the key commits afresh.
func TestFailBeforeCommit(t *testing.T) {
	for _, p := range protocols {
		for _, status := range []int{0, 503} {
			name := p.name + "/reset"
			if status != 0 {
				name = p.name + "/503"
			}
			t.Run(name, func(t *testing.T) {
				s := newServer(t, p.opts...)
				arrived, release := make(chan struct{}), make(chan struct{})
				s.Script("/r", Fault{Kind: FailBeforeCommit, Status: status, Arrived: arrived, Release: release})
				hdr := map[string][]string{"Idempotency-Key": {"k"}}
				type result struct {
					status int
					err    error
				}
				first := make(chan result, 1)
				errc := make(chan error, 1)
				go func() {
					// A client of its own: the first request's connection
					// may be reset without touching the others'.
					c := newClient(t, s.Transport())
					resp, err := send(t.Context(), c, "POST", s.URL()+"/r", "pay", hdr)
					if err != nil {
						errc <- err
						first <- result{err: err}
						return
					}
					readAll(t, resp)
					first <- result{status: resp.StatusCode}
				}()
				waitArrived(t, arrived, errc)

				c := newClient(t, s.Transport())
				resp, err := send(t.Context(), c, "POST", s.URL()+"/r", "pay", hdr)
				wantStatus(t, resp, err, 409)

				close(release)
				r := <-first
				if status == 0 {
					wantReset(t, p.proto, r.err)
				} else if r.err != nil || r.status != status {
					t.Fatalf("first request: status %d, err %v; want %d", r.status, r.err, status)
				}
				if _, err := s.Wait(t.Context(), "/r", 2); err != nil {
					t.Fatal(err)
				}

				resp, err = send(t.Context(), c, "POST", s.URL()+"/r", "pay", hdr)
				wantStatus(t, resp, err, 200)
				if resp.Header.Get("Idempotent-Replayed") != "" || resp.Header.Get("X-Commit") != "1" {
					t.Fatalf("the retry got %v; want the first commit, not a replay", resp.Header)
				}
				ps := s.Stats().Paths["/r"]
				want := []Effect{NoEffect, InProgress, Committed}
				if ps.Commits != 1 || len(ps.Requests) != len(want) {
					t.Fatalf("%d commits, %d requests; want 1 and %d", ps.Commits, len(ps.Requests), len(want))
				}
				for i, rec := range ps.Requests {
					if rec.Effect != want[i] || !rec.BodyRead || string(rec.Body) != "pay" {
						t.Fatalf("request %d: effect %v, body %q (whole: %v); want %v and the whole body",
							i+1, rec.Effect, rec.Body, rec.BodyRead, want[i])
					}
				}
				if ps.Requests[0].Fault != FailBeforeCommit {
					t.Fatalf("the first request met %v; want FailBeforeCommit", ps.Requests[0].Fault)
				}
			})
		}
	}
}
