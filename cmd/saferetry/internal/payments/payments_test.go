package payments

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start serves a fresh API and returns it with a client of its own; both
// are shut down when the test ends.
func start(t *testing.T) (*API, *Server, *http.Client) {
	t.Helper()
	api := New(nil)
	srv, err := Start(api)
	if err != nil {
		t.Fatal(err)
	}
	// No keep-alives: net/http resends a keyed request by itself when a
	// reused connection is cut, which would hide the cut from the test.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	t.Cleanup(func() {
		client.CloseIdleConnections()
		if err := srv.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return api, srv, client
}

// post sends a charge, with key unless it is empty, and returns the status
// (0 on a transport error) and the response header.
func post(t *testing.T, client *http.Client, url, key, body string) (int, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/v1/charges", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set(KeyHeader, key)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header
}

const alice = `{"amount":4200,"currency":"eur","card":"card_alice"}`

func TestChargeDeduplication(t *testing.T) {
	tests := []struct {
		name        string
		key1, key2  string
		body2       string
		wantStatus2 int
		wantCharges int
		wantReplay  bool
	}{
		{"same key and payload replays", "k1", "k1", alice, http.StatusCreated, 1, true},
		{"quoted form of the same key replays", "k1", `"k1"`, alice, http.StatusCreated, 1, true},
		{"same key, other payload is rejected", "k1", "k1", `{"amount":1,"currency":"eur","card":"card_alice"}`, http.StatusUnprocessableEntity, 1, false},
		{"different keys charge twice", "k1", "k2", alice, http.StatusCreated, 2, false},
		{"no key charges twice", "", "", alice, http.StatusCreated, 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api, srv, client := start(t)
			if status, _ := post(t, client, srv.URL, tt.key1, alice); status != http.StatusCreated {
				t.Fatalf("first POST: status %d, want 201", status)
			}
			status, header := post(t, client, srv.URL, tt.key2, tt.body2)
			if status != tt.wantStatus2 {
				t.Errorf("second POST: status %d, want %d", status, tt.wantStatus2)
			}
			if got := header.Get(ReplayedHeader) == "true"; got != tt.wantReplay {
				t.Errorf("second POST replayed = %t, want %t", got, tt.wantReplay)
			}
			if n := len(api.Charges()); n != tt.wantCharges {
				t.Errorf("%d charges committed, want %d", n, tt.wantCharges)
			}
		})
	}
}

func TestScriptedFaults(t *testing.T) {
	api, srv, client := start(t)
	api.Script("POST /v1/charges", Status(http.StatusTooManyRequests, "1"), CutAfterCommit())

	status, header := post(t, client, srv.URL, "k1", alice)
	if status != http.StatusTooManyRequests || header.Get("Retry-After") != "1" {
		t.Errorf("first POST: status %d, Retry-After %q; want 429 and 1", status, header.Get("Retry-After"))
	}
	if n := len(api.Charges()); n != 0 {
		t.Errorf("a rejected request committed %d charges", n)
	}
	if status, _ := post(t, client, srv.URL, "k1", alice); status != 0 {
		t.Errorf("second POST: status %d, want the connection cut", status)
	}
	if n := len(api.Charges()); n != 1 {
		t.Errorf("the cut request committed %d charges, want 1", n)
	}
	status, header = post(t, client, srv.URL, "k1", alice)
	if status != http.StatusCreated || header.Get(ReplayedHeader) != "true" {
		t.Errorf("third POST: status %d, replayed %q; want the stored 201", status, header.Get(ReplayedHeader))
	}

	got := api.Requests()
	if len(got) != 3 {
		t.Fatalf("recorded %d requests, want 3", len(got))
	}
	for i, want := range []struct {
		status   int
		replayed bool
	}{{http.StatusTooManyRequests, false}, {0, false}, {http.StatusCreated, true}} {
		if got[i].Seq != i+1 || got[i].Key != "k1" || got[i].Status != want.status || got[i].Replayed != want.replayed {
			t.Errorf("request %d = %+v, want seq %d, key k1, status %d, replayed %t", i, got[i], i+1, want.status, want.replayed)
		}
	}
	if per := api.ChargesPerCard(); per["card_alice"] != 1 {
		t.Errorf("charges per card = %v, want card_alice once", per)
	}
}

// TestStallUnblocksWhenContextEnds drives the handler directly, in a
// synctest bubble: it must hold a stalled request, uncommitted and
// unanswered, for as long as the request's context lives, and return
// without committing once it ends.
func TestStallUnblocksWhenContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := New(nil)
		api.Script("POST /v1/charges", Stall())
		ctx, cancel := context.WithCancel(t.Context())
		body := &readCounter{r: strings.NewReader(alice)}
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/charges", body)
		req.Header.Set(KeyHeader, "k1")
		rec := httptest.NewRecorder()
		returned := make(chan struct{})
		go func() {
			defer close(returned)
			api.ServeHTTP(rec, req)
		}()

		synctest.Wait() // the handler is durably blocked, or returned
		select {
		case <-returned:
			t.Fatal("the stalled handler returned while its request's context was alive")
		default:
		}
		if !body.eof {
			t.Error("the stalled handler did not read the body to its end before stalling")
		}
		waitCtx, stopWaiting := context.WithCancel(t.Context())
		waited := make(chan error, 1)
		go func() { waited <- api.Wait(waitCtx) }()
		synctest.Wait()
		select {
		case err := <-waited:
			t.Errorf("Wait returned %v while a request was stalled", err)
		default:
		}

		cancel()
		<-returned
		if err := <-waited; err != nil {
			t.Errorf("Wait after the stall ended: %v", err)
		}
		stopWaiting()
		if n := len(api.Charges()); n != 0 {
			t.Errorf("the stalled request committed %d charges", n)
		}
		if rec.Code != http.StatusOK || rec.Body.Len() != 0 || len(rec.Header()) != 0 {
			t.Errorf("the stalled request was answered: %d %q %v", rec.Code, rec.Body.String(), rec.Header())
		}
		got := api.Requests()
		if len(got) != 1 || got[0].Key != "k1" || got[0].Fault != Stall() || got[0].Status != 0 {
			t.Errorf("recorded %+v, want one stalled request with key k1 and no status", got)
		}
	})
}

// TestStallOverTheWire checks Stall through a real server: the client
// giving up ends the stall, nothing is committed or stored for the key,
// and the next request with that key is served normally, committing once.
func TestStallOverTheWire(t *testing.T) {
	received := make(chan struct{}, 1)
	api := New(func(ev Event) {
		if strings.HasPrefix(ev.Msg, "stalled") {
			received <- struct{}{}
		}
	})
	srv, err := Start(api)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	t.Cleanup(func() {
		client.CloseIdleConnections()
		if err := srv.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	api.Script("POST /v1/charges", Stall())

	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/charges", strings.NewReader(alice))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(KeyHeader, "k1")
	errc := make(chan error, 1)
	go func() {
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-received
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("the stalled POST ended with %v, want the client's cancellation", err)
	}
	if err := api.Wait(t.Context()); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if n := len(api.Charges()); n != 0 {
		t.Fatalf("the stalled request committed %d charges", n)
	}

	status, header := post(t, client, srv.URL, "k1", alice)
	if status != http.StatusCreated || header.Get(ReplayedHeader) == "true" {
		t.Errorf("the POST after the stall: status %d, replayed %q; want a fresh 201", status, header.Get(ReplayedHeader))
	}
	if per := api.ChargesPerCard(); per["card_alice"] != 1 || len(api.Charges()) != 1 {
		t.Errorf("charges per card = %v, want card_alice once", per)
	}
	got := api.Requests()
	if len(got) != 2 || got[0].Status != 0 || got[1].Status != http.StatusCreated {
		t.Errorf("recorded %+v, want the stalled request unanswered, then a 201", got)
	}
}

// readCounter reports whether its reader was read to the end.
type readCounter struct {
	r   io.Reader
	eof bool
}

func (c *readCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF {
		c.eof = true
	}
	return n, err
}

func TestScriptUnknownRoutePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Script on an unknown route did not panic")
		}
	}()
	New(nil).Script("DELETE /v1/charges", Status(http.StatusServiceUnavailable, ""))
}
