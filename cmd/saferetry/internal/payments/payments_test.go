package payments

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

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

func TestScriptUnknownRoutePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Script on an unknown route did not panic")
		}
	}()
	New(nil).Script("DELETE /v1/charges", Status(http.StatusServiceUnavailable, ""))
}
