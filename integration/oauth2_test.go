package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/saferetry/saferetry"
	"github.com/saferetry/saferetry/internal/testutil"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// tokenEndpoint is a fake OAuth2 token endpoint (client credentials grant)
// that hands out tok-1, tok-2, ... and counts how often it was asked.
type tokenEndpoint struct {
	*fakeAPI
}

// newTokenEndpoint starts a token endpoint whose tokens live expiresIn
// seconds.
func newTokenEndpoint(t *testing.T, expiresIn int) *tokenEndpoint {
	t.Helper()
	return &tokenEndpoint{newFakeAPI(t, func(w http.ResponseWriter, _ *http.Request, n int, _ seenRequest) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"tok-%d","token_type":"Bearer","expires_in":%d}`, n, expiresIn)
	})}
}

func (e *tokenEndpoint) hits() int { return len(e.requests()) }

// source returns a real client-credentials token source against the
// endpoint (oauth2.ReuseTokenSource caching inside), wrapped so the test
// can count Token calls. Token requests use a transport of their own, not
// http.DefaultTransport.
func (e *tokenEndpoint) source(t *testing.T) *countingSource {
	t.Helper()
	cfg := clientcredentials.Config{ClientID: "id", ClientSecret: "secret", TokenURL: e.URL}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: newBase(t)})
	return &countingSource{src: cfg.TokenSource(ctx)}
}

// countingSource counts the calls oauth2.Transport makes to its Source.
type countingSource struct {
	src   oauth2.TokenSource
	calls atomic.Int32
}

func (c *countingSource) Token() (*oauth2.Token, error) {
	c.calls.Add(1)
	return c.src.Token()
}

// oauth2Arrangement is one way of chaining oauth2.Transport and saferetry.
type oauth2Arrangement struct {
	name  string
	build func(t *testing.T, src oauth2.TokenSource, opts ...saferetry.Option) http.RoundTripper
	// tokenCallsPerAttempt: true when oauth2.Transport runs once per
	// attempt (it is below the retry loop), false when once per logical
	// request.
	tokenCallsPerAttempt bool
}

var oauth2Arrangements = []oauth2Arrangement{
	{
		name: "oauth2 outside saferetry",
		build: func(t *testing.T, src oauth2.TokenSource, opts ...saferetry.Option) http.RoundTripper {
			return &oauth2.Transport{Source: src, Base: newStack(t, newBase(t), opts...)}
		},
	},
	{
		name: "saferetry outside oauth2",
		build: func(t *testing.T, src oauth2.TokenSource, opts ...saferetry.Option) http.RoundTripper {
			return newStack(t, &oauth2.Transport{Source: src, Base: newBase(t)}, opts...)
		},
		tokenCallsPerAttempt: true,
	},
}

// bodyKinds are the request bodies each arrangement is exercised with: one
// net/http can rewind itself, and one only BodyCache can make replayable.
var bodyKinds = []struct {
	name string
	make func(payload []byte) io.Reader
}{
	{"bytes.Reader (GetBody set)", func(p []byte) io.Reader { return bytes.NewReader(p) }},
	{"opaque reader (no GetBody)", func(p []byte) io.Reader { return struct{ io.Reader }{bytes.NewReader(p)} }},
}

// TestOAuth2Stacking sends two logical POSTs, each failing twice with 503
// before succeeding, through both arrangements. The token endpoint is hit
// once in both; what differs is how often oauth2.Transport asks its
// Source: once per logical request outside saferetry, once per attempt
// inside it (served from the ReuseTokenSource cache). Either way every
// attempt of a request carries the same Authorization, the same
// Idempotency-Key and the same body, and the caller's request is left
// as it was.
func TestOAuth2Stacking(t *testing.T) {
	const logical, attemptsEach = 2, 3
	for _, arr := range oauth2Arrangements {
		for _, kind := range bodyKinds {
			t.Run(arr.name+"/"+kind.name, func(t *testing.T) {
				tokens := newTokenEndpoint(t, 3600)
				src := tokens.source(t)
				api := newFakeAPI(t, failFirst(attemptsEach, http.StatusServiceUnavailable))
				// No budget: a fresh one allows two retries in all (its
				// allowance), and this test is about the layering.
				client := &http.Client{Transport: arr.build(t, src, saferetry.WithBudget(nil))}

				for i := range logical {
					payload := []byte(fmt.Sprintf(`{"order":%d,"amount":4200}`, i))
					req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, api.URL+"/orders", kind.make(payload))
					if err != nil {
						t.Fatal(err)
					}
					req.ContentLength = int64(len(payload))
					req.Header.Set("Content-Type", "application/json")
					before := testutil.Snapshot(req)

					resp, err := client.Do(req)
					if err != nil {
						t.Fatalf("request %d: %v", i, err)
					}
					drainClose(t, resp)
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("request %d: status %d, want 200", i, resp.StatusCode)
					}
					if got := saferetry.Attempts(resp); got != attemptsEach {
						t.Errorf("request %d: saferetry.Attempts = %d, want %d", i, got, attemptsEach)
					}
					before.Check(t, req)
					if req.Header.Get("Authorization") != "" || req.Header.Get("Idempotency-Key") != "" {
						t.Errorf("request %d: caller's header gained Authorization or Idempotency-Key: %v", i, req.Header)
					}

					all := api.requests()
					if len(all) != (i+1)*attemptsEach {
						t.Fatalf("after request %d the API saw %d attempts, want %d", i, len(all), (i+1)*attemptsEach)
					}
					these := all[i*attemptsEach:]
					if auth := assertSameHeader(t, these, "Authorization"); auth != "Bearer tok-1" {
						t.Errorf("request %d: Authorization %q, want the one cached token %q", i, auth, "Bearer tok-1")
					}
					key := assertSameHeader(t, these, "Idempotency-Key")
					if i > 0 && key == all[0].Header.Get("Idempotency-Key") {
						t.Errorf("request %d reused request 0's Idempotency-Key %q", i, key)
					}
					assertBodies(t, these, payload)
				}

				if got := tokens.hits(); got != 1 {
					t.Errorf("token endpoint hit %d times, want 1 (token cached)", got)
				}
				wantCalls := logical
				if arr.tokenCallsPerAttempt {
					wantCalls = logical * attemptsEach
				}
				if got := int(src.calls.Load()); got != wantCalls {
					t.Errorf("TokenSource.Token called %d times, want %d", got, wantCalls)
				}
			})
		}
	}
}

// TestOAuth2ExpiredTokenBetweenAttempts shows the one behavioural
// difference between the arrangements. The endpoint issues tokens that
// live one second, less than oauth2's 10 s early-expiry margin, so the
// ReuseTokenSource considers every cached token expired and fetches anew
// whenever it is asked, as it would for a token that expires during a
// backoff. Outside saferetry, the token is fetched once per logical
// request and every retry resends it (possibly expired by then); inside
// saferetry, each attempt fetches its own, so retries carry fresh tokens
// and Authorization changes across attempts while the Idempotency-Key
// does not.
func TestOAuth2ExpiredTokenBetweenAttempts(t *testing.T) {
	const attempts = 3
	for _, arr := range oauth2Arrangements {
		t.Run(arr.name, func(t *testing.T) {
			tokens := newTokenEndpoint(t, 1)
			src := tokens.source(t)
			api := newFakeAPI(t, failFirst(attempts, http.StatusBadGateway))
			client := &http.Client{Transport: arr.build(t, src)}

			resp, err := client.Post(api.URL+"/orders", "application/json", strings.NewReader(`{"amount":1}`))
			if err != nil {
				t.Fatal(err)
			}
			drainClose(t, resp)

			seen := api.requests()
			if len(seen) != attempts {
				t.Fatalf("API saw %d attempts, want %d", len(seen), attempts)
			}
			assertSameHeader(t, seen, "Idempotency-Key")
			if !arr.tokenCallsPerAttempt {
				if auth := assertSameHeader(t, seen, "Authorization"); auth != "Bearer tok-1" {
					t.Errorf("Authorization %q, want %q on every attempt", auth, "Bearer tok-1")
				}
				if got := tokens.hits(); got != 1 {
					t.Errorf("token endpoint hit %d times, want 1", got)
				}
				return
			}
			for i, r := range seen {
				if got, want := r.Header.Get("Authorization"), fmt.Sprintf("Bearer tok-%d", i+1); got != want {
					t.Errorf("attempt %d: Authorization %q, want %q (a fresh token per attempt)", i+1, got, want)
				}
			}
			if got := tokens.hits(); got != attempts {
				t.Errorf("token endpoint hit %d times, want %d (once per attempt)", got, attempts)
			}
		})
	}
}

// TestOAuth2TokenNeverLogged: in both arrangements the retries are logged
// (WithLogger) and the bearer token never appears in the log, though the
// requests saferetry handles carry it.
func TestOAuth2TokenNeverLogged(t *testing.T) {
	for _, arr := range oauth2Arrangements {
		t.Run(arr.name, func(t *testing.T) {
			tokens := newTokenEndpoint(t, 3600)
			api := newFakeAPI(t, failFirst(2, http.StatusServiceUnavailable))
			var logs bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			client := &http.Client{Transport: arr.build(t, tokens.source(t), saferetry.WithLogger(logger))}

			resp, err := client.Post(api.URL+"/orders", "application/json", strings.NewReader(`{"amount":1}`))
			if err != nil {
				t.Fatal(err)
			}
			drainClose(t, resp)
			if got := len(api.requests()); got != 2 {
				t.Fatalf("API saw %d attempts, want 2", got)
			}
			if !strings.Contains(logs.String(), "saferetry: retrying") {
				t.Errorf("no retry logged: %q", logs.String())
			}
			if strings.Contains(logs.String(), "tok-1") {
				t.Errorf("bearer token in the log: %q", logs.String())
			}
		})
	}
}

// TestOAuth2UnauthorizedNotRetried: a 401 is final in both arrangements.
// saferetry does not retry it (its table treats 4xx other than 408, 409 on
// a keyed request, 413 with Retry-After and 429 as answers), and
// oauth2.Transport does not react to it either: the token is not
// refreshed, the caller gets the 401.
func TestOAuth2UnauthorizedNotRetried(t *testing.T) {
	for _, arr := range oauth2Arrangements {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			t.Run(arr.name+"/"+method, func(t *testing.T) {
				tokens := newTokenEndpoint(t, 3600)
				src := tokens.source(t)
				api := newFakeAPI(t, always(http.StatusUnauthorized))
				client := &http.Client{Transport: arr.build(t, src)}

				req, err := http.NewRequest(method, api.URL+"/me", strings.NewReader("{}"))
				if err != nil {
					t.Fatal(err)
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				drainClose(t, resp)
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("status %d, want 401", resp.StatusCode)
				}
				if got := len(api.requests()); got != 1 {
					t.Errorf("API saw %d attempts, want 1", got)
				}
				if got := saferetry.Attempts(resp); got != 1 {
					t.Errorf("saferetry.Attempts = %d, want 1", got)
				}
				if got := src.calls.Load(); got != 1 {
					t.Errorf("TokenSource.Token called %d times, want 1", got)
				}
				if got := tokens.hits(); got != 1 {
					t.Errorf("token endpoint hit %d times, want 1", got)
				}
			})
		}
	}
}

// idleCounter is a base RoundTripper that counts CloseIdleConnections.
type idleCounter struct {
	http.RoundTripper
	closes atomic.Int32
}

func (c *idleCounter) CloseIdleConnections() { c.closes.Add(1) }

// TestOAuth2CloseIdleConnectionsStopsAtOAuth2: oauth2.Transport has no
// CloseIdleConnections method, so http.Client.CloseIdleConnections does
// not reach the pool under it, in either arrangement (saferetry forwards
// the call to the oauth2 layer, which drops it). Keep a reference to the
// layer below oauth2 and close its idle connections directly.
func TestOAuth2CloseIdleConnectionsStopsAtOAuth2(t *testing.T) {
	src := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "static"})
	cases := []struct {
		name      string
		transport func(base http.RoundTripper) http.RoundTripper
		want      int32
	}{
		{"saferetry alone (control)", func(base http.RoundTripper) http.RoundTripper {
			return saferetry.New(base)
		}, 1},
		{"oauth2 outside saferetry", func(base http.RoundTripper) http.RoundTripper {
			return &oauth2.Transport{Source: src, Base: saferetry.New(base)}
		}, 0},
		{"saferetry outside oauth2", func(base http.RoundTripper) http.RoundTripper {
			return saferetry.New(&oauth2.Transport{Source: src, Base: base})
		}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := &idleCounter{RoundTripper: newBase(t)}
			client := &http.Client{Transport: tc.transport(base)}
			client.CloseIdleConnections()
			if got := base.closes.Load(); got != tc.want {
				t.Errorf("base saw %d CloseIdleConnections calls, want %d", got, tc.want)
			}
		})
	}
}
