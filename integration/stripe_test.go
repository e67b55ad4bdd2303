package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/saferetry/saferetry"
	"github.com/saferetry/saferetry/internal/testutil"
	"github.com/stripe/stripe-go/v85"
)

// fault is what the fake Stripe does to one request.
type fault int

const (
	answerNormally   fault = iota
	cutAfterCommit         // create the PaymentIntent, then drop the connection
	status503JSON          // a Stripe API error: 503 with Stripe's JSON error body
	status502HTML          // a proxy's error page: 502 with an HTML body
	status503NoRetry       // 503 with Stripe-Should-Retry: false
)

// fakeStripe serves POST /v1/payment_intents the way Stripe's idempotency
// layer does: the first request with a key creates a PaymentIntent (the
// side effect), and any later request with that key replays the stored
// answer instead of creating another.
type fakeStripe struct {
	*fakeAPI

	mu      sync.Mutex
	byKey   map[string]string // Idempotency-Key → stored answer
	created int               // PaymentIntents created: side effects
}

// newFakeStripe starts the fake; script says what to do to the n-th
// request it receives.
func newFakeStripe(t *testing.T, script func(n int) fault) *fakeStripe {
	t.Helper()
	f := &fakeStripe{byKey: map[string]string{}}
	f.fakeAPI = newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int, seen seenRequest) {
		w.Header().Set("Content-Type", "application/json")
		key := seen.Header.Get("Idempotency-Key")
		if r.Method != http.MethodPost || r.URL.Path != "/v1/payment_intents" || key == "" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":{"type":"invalid_request_error","message":"unexpected request"}}`)
			return
		}
		switch script(n) {
		case status503JSON:
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"error":{"type":"api_error","message":"temporarily unavailable"}}`)
			return
		case status502HTML:
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = io.WriteString(w, "<html><body>502 Bad Gateway</body></html>")
			return
		case status503NoRetry:
			w.Header().Set("Stripe-Should-Retry", "false")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"error":{"type":"api_error","message":"do not retry"}}`)
			return
		case cutAfterCommit:
			f.commit(key)
			cutConnection(t, w)
			return
		}
		stored, replayed := f.commit(key)
		if replayed {
			w.Header().Set("Idempotent-Replayed", "true")
		}
		_, _ = io.WriteString(w, stored)
	})
	return f
}

// commit creates the PaymentIntent for key unless it exists, and returns
// the stored answer and whether it was a replay.
func (f *fakeStripe) commit(key string) (answer string, replayed bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if stored, ok := f.byKey[key]; ok {
		return stored, true
	}
	f.created++
	stored := fmt.Sprintf(`{"id":"pi_%d","object":"payment_intent","amount":2000,"currency":"eur","status":"requires_payment_method"}`, f.created)
	f.byKey[key] = stored
	return stored, false
}

func (f *fakeStripe) sideEffects() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.created
}

// newStripeClient points a stripe-go client at url through httpClient.
// sdkRetries is BackendConfig.MaxNetworkRetries (nil: stripe-go's default
// of 2). Where stripe-go retries, its sleeps (500 ms and up) are turned off
// to keep the test fast; that changes how long it waits, not what it
// retries.
func newStripeClient(t *testing.T, url string, httpClient *http.Client, sdkRetries *int64) *stripe.Client {
	t.Helper()
	backend := stripe.GetBackendWithConfig(stripe.APIBackend, &stripe.BackendConfig{
		URL:               stripe.String(url),
		HTTPClient:        httpClient,
		MaxNetworkRetries: sdkRetries,
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
	})
	impl, ok := backend.(*stripe.BackendImplementation)
	if !ok {
		t.Fatalf("stripe backend is %T, want *stripe.BackendImplementation", backend)
	}
	impl.SetNetworkRetriesSleep(false)
	return stripe.NewClient("sk_test_saferetry", stripe.WithBackends(&stripe.Backends{API: backend}))
}

func createPaymentIntent(sc *stripe.Client, key string) (*stripe.PaymentIntent, error) {
	params := &stripe.PaymentIntentCreateParams{Amount: stripe.Int64(2000), Currency: stripe.String("eur")}
	if key != "" {
		params.IdempotencyKey = stripe.String(key)
	}
	return sc.V1PaymentIntents.Create(context.Background(), params)
}

// countingKeys is a saferetry key function that counts its calls: it must
// never be called for stripe-go's requests, which carry their own key.
func countingKeys(calls *atomic.Int32) saferetry.Option {
	return saferetry.WithKeyFunc(func() string {
		n := calls.Add(1)
		return fmt.Sprintf("saferetry-%d", n)
	})
}

// assertOneKeyThroughout checks every attempt carried the same single
// Idempotency-Key and the same body, and returns the key.
func assertOneKeyThroughout(t *testing.T, seen []seenRequest) string {
	t.Helper()
	key := assertSameHeader(t, seen, "Idempotency-Key")
	if len(seen) > 0 {
		assertBodies(t, seen, seen[0].Body)
		if !bytes.Contains(seen[0].Body, []byte("amount=2000")) {
			t.Errorf("body %q does not look like the PaymentIntent parameters", seen[0].Body)
		}
	}
	return key
}

// TestStripeKeepsItsIdempotencyKey: stripe-go sets Idempotency-Key on
// every POST (the caller's, or one it generates); saferetry treats the
// request as keyed and never replaces the key. The fake commits the
// PaymentIntent and drops the connection; saferetry retries with the same
// key and the same body, the fake replays the stored answer, and exactly
// one PaymentIntent exists.
func TestStripeKeepsItsIdempotencyKey(t *testing.T) {
	for _, callerKey := range []string{"order-42", ""} {
		name := "key from the caller"
		if callerKey == "" {
			name = "key generated by stripe-go"
		}
		t.Run(name, func(t *testing.T) {
			api := newFakeStripe(t, func(n int) fault {
				if n == 1 {
					return cutAfterCommit
				}
				return answerNormally
			})
			var keyCalls atomic.Int32
			httpClient := &http.Client{Transport: newStack(t, newBase(t), countingKeys(&keyCalls))}
			sc := newStripeClient(t, api.URL, httpClient, stripe.Int64(0))

			pi, err := createPaymentIntent(sc, callerKey)
			if err != nil {
				t.Fatal(err)
			}
			if pi.ID != "pi_1" {
				t.Errorf("PaymentIntent %q, want pi_1 (the one created before the connection dropped)", pi.ID)
			}
			seen := api.requests()
			if len(seen) != 2 {
				t.Fatalf("fake saw %d attempts, want 2", len(seen))
			}
			key := assertOneKeyThroughout(t, seen)
			if callerKey != "" && key != callerKey {
				t.Errorf("Idempotency-Key %q, want the caller's %q", key, callerKey)
			}
			if got := keyCalls.Load(); got != 0 {
				t.Errorf("saferetry made %d keys, want 0 (stripe-go's key kept)", got)
			}
			if got := api.sideEffects(); got != 1 {
				t.Errorf("%d PaymentIntents created, want 1", got)
			}
		})
	}
}

// TestStripeRetryLayers counts attempts with stripe-go's own retries at
// their default (MaxNetworkRetries 2) and turned off (0), under saferetry's
// defaults (3 retries). stripe-go v85 retries transport errors and error
// answers it cannot parse as a Stripe error, but not a Stripe JSON error
// (only a 429 lock_timeout), so the layers multiply (3 x 4 = 12 attempts)
// for dropped connections and proxy error pages, and not for Stripe's own
// 503s. With MaxNetworkRetries 0 every failure costs exactly 1 + saferetry's
// retries attempts, within saferetry's budget. Stripe-Should-Retry: false
// stops saferetry at the first attempt. In every case the key is the same
// on every attempt and the fake creates at most one PaymentIntent.
func TestStripeRetryLayers(t *testing.T) {
	sdkDefault, sdkOff := (*int64)(nil), stripe.Int64(0)
	persistent := func(f fault) func(int) fault { return func(int) fault { return f } }
	transient := func(n int) fault {
		if n <= 2 {
			return status503JSON
		}
		return answerNormally
	}
	cases := []struct {
		name         string
		script       func(n int) fault
		sdkRetries   *int64
		wantAttempts int
		wantOK       bool
		// wantStop is why saferetry last refused a retry, as its hook
		// reports it; StopNone when it never refused one.
		wantStop saferetry.StopReason
	}{
		{"two 503s then success, stripe default retries", transient, sdkDefault, 3, true, saferetry.StopNone},
		{"two 503s then success, MaxNetworkRetries 0", transient, sdkOff, 3, true, saferetry.StopNone},
		{"persistent 503 JSON, stripe default retries", persistent(status503JSON), sdkDefault, 4, false, saferetry.StopMaxRetries},
		{"persistent 503 JSON, MaxNetworkRetries 0", persistent(status503JSON), sdkOff, 4, false, saferetry.StopMaxRetries},
		{"persistent 502 HTML, stripe default retries", persistent(status502HTML), sdkDefault, 12, false, saferetry.StopMaxRetries},
		{"persistent 502 HTML, MaxNetworkRetries 0", persistent(status502HTML), sdkOff, 4, false, saferetry.StopMaxRetries},
		{"connection dropped after commit, stripe default retries", persistent(cutAfterCommit), sdkDefault, 12, false, saferetry.StopMaxRetries},
		{"connection dropped after commit, MaxNetworkRetries 0", persistent(cutAfterCommit), sdkOff, 4, false, saferetry.StopMaxRetries},
		{"Stripe-Should-Retry false, stripe default retries", persistent(status503NoRetry), sdkDefault, 1, false, saferetry.StopNotRetryable},
		{"Stripe-Should-Retry false, MaxNetworkRetries 0", persistent(status503NoRetry), sdkOff, 1, false, saferetry.StopNotRetryable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeStripe(t, tc.script)
			var stopped atomic.Int64
			hook := saferetry.WithHook(func(ev saferetry.Event) {
				if ev.Stopped != saferetry.StopNone {
					stopped.Store(int64(ev.Stopped))
				}
			})
			// No budget: a fresh one allows two retries in all (its
			// allowance); TestStripeBudgetUnderOutage is about the budget.
			sc := newStripeClient(t, api.URL, &http.Client{Transport: newStack(t, newBase(t), hook, saferetry.WithBudget(nil))}, tc.sdkRetries)

			pi, err := createPaymentIntent(sc, "")
			if tc.wantOK && (err != nil || pi.ID != "pi_1") {
				t.Errorf("got %v, %v; want pi_1 and no error", pi, err)
			}
			if !tc.wantOK && err == nil {
				t.Errorf("got %v and no error, want an error", pi)
			}
			seen := api.requests()
			if len(seen) != tc.wantAttempts {
				t.Errorf("fake saw %d attempts, want %d", len(seen), tc.wantAttempts)
			}
			assertOneKeyThroughout(t, seen)
			if got := saferetry.StopReason(stopped.Load()); got != tc.wantStop {
				t.Errorf("saferetry stopped retrying with %v, want %v", got, tc.wantStop)
			}
			if got := api.sideEffects(); got > 1 {
				t.Errorf("%d PaymentIntents created, want at most 1", got)
			}
		})
	}
}

// TestStripeBudgetUnderOutage: saferetry's budget bounds only the retries
// saferetry makes. Every call stripe-go makes, its own retries included,
// reaches saferetry as a new logical request and deposits into the budget.
// Against a full outage (502 from a proxy, which stripe-go retries) and
// the default budget (ratio 0.1, an allowance of 2 retries plus a random
// fraction, the host's phase), 10 PaymentIntent creates cost 12 or 13
// attempts with MaxNetworkRetries 0 (2 retries from the allowance, one
// more per ten requests) but 34 or 35 with stripe-go's default of 2 (30
// stripe-go calls, plus saferetry's retries). A 502 is not an overload
// answer, so the budget's gate does not stop the retries.
func TestStripeBudgetUnderOutage(t *testing.T) {
	const logical = 10
	for _, tc := range []struct {
		name       string
		sdkRetries *int64
		min, max   int // attempts
	}{
		{"MaxNetworkRetries 0", stripe.Int64(0), 12, 13},
		{"stripe default retries", nil, 34, 35},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeStripe(t, func(int) fault { return status502HTML })
			budget := saferetry.NewBudget(0.1)
			httpClient := &http.Client{Transport: newStack(t, newBase(t), saferetry.WithBudget(budget))}
			sc := newStripeClient(t, api.URL, httpClient, tc.sdkRetries)
			for i := range logical {
				if _, err := createPaymentIntent(sc, fmt.Sprintf("order-%d", i)); err == nil {
					t.Fatalf("create %d succeeded against a full outage", i)
				}
			}
			if got := len(api.requests()); got < tc.min || got > tc.max {
				t.Errorf("fake saw %d attempts for %d logical requests, want %d to %d", got, logical, tc.min, tc.max)
			}
		})
	}
}

// TestStripeErrorAfterRetries: with MaxNetworkRetries 0, when saferetry
// gives up on dropped connections the error stripe-go returns unwraps to
// saferetry's *RetryError, which counts the attempts.
func TestStripeErrorAfterRetries(t *testing.T) {
	api := newFakeStripe(t, func(int) fault { return cutAfterCommit })
	// No budget: a fresh one allows two retries (its allowance), not the
	// three this test counts.
	sc := newStripeClient(t, api.URL, &http.Client{Transport: newStack(t, newBase(t), saferetry.WithBudget(nil))}, stripe.Int64(0))

	_, err := createPaymentIntent(sc, "order-7")
	var rerr *saferetry.RetryError
	if !errors.As(err, &rerr) {
		t.Fatalf("error %v (%T), want one that unwraps to *saferetry.RetryError", err, err)
	}
	if rerr.Attempts != 4 || rerr.Reason != saferetry.StopMaxRetries {
		t.Errorf("RetryError attempts %d, reason %v; want 4, %v", rerr.Attempts, rerr.Reason, saferetry.StopMaxRetries)
	}
	if got := api.sideEffects(); got != 1 {
		t.Errorf("%d PaymentIntents created, want 1", got)
	}
}

// TestStripeReusedConnectionResentByNetHTTP: when the connection that
// drops after the commit is a reused keep-alive connection, net/http's own
// Transport resends the request by itself (a request carrying
// Idempotency-Key counts as replayable to it), inside what saferetry sees
// as one successful attempt: the fake sees the request twice, saferetry's
// retry hook never fires, and Attempts reports 1. It is harmless here only
// because the key makes the server deduplicate.
func TestStripeReusedConnectionResentByNetHTTP(t *testing.T) {
	api := newFakeStripe(t, func(n int) fault {
		if n == 2 {
			return cutAfterCommit
		}
		return answerNormally
	})
	var retries atomic.Int32
	var attempts atomic.Int32
	stack := newStack(t, newBase(t), saferetry.WithHook(func(saferetry.Event) { retries.Add(1) }))
	counted := testutil.RoundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := stack.RoundTrip(req)
		if err == nil {
			attempts.Store(int32(saferetry.Attempts(resp)))
		}
		return resp, err
	})
	sc := newStripeClient(t, api.URL, &http.Client{Transport: counted}, stripe.Int64(0))

	if _, err := createPaymentIntent(sc, "warm-up"); err != nil {
		t.Fatal(err)
	}
	pi, err := createPaymentIntent(sc, "order-99")
	if err != nil {
		t.Fatal(err)
	}
	if pi.ID != "pi_2" {
		t.Errorf("PaymentIntent %q, want pi_2", pi.ID)
	}
	seen := api.requests()
	if len(seen) != 3 {
		t.Fatalf("fake saw %d requests, want 3 (warm-up, then order-99 twice)", len(seen))
	}
	assertOneKeyThroughout(t, seen[1:])
	if got := retries.Load(); got != 0 {
		t.Errorf("saferetry retried %d times, want 0 (net/http resent the request)", got)
	}
	if got := attempts.Load(); got != 1 {
		t.Errorf("saferetry.Attempts = %d, want 1", got)
	}
	if got := api.sideEffects(); got != 2 {
		t.Errorf("%d PaymentIntents created, want 2 (one per logical request)", got)
	}
}
