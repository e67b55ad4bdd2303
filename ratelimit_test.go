package saferetry

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/saferetry/saferetry/internal/testutil"
)

// Servers announce their limits in more headers than Retry-After; on a
// 429 (or GitHub's rate-limit 403) every one is honoured as the server's
// wait, the longest winning, with Retry-After's cap and jitter.
func TestRateLimitHeadersAreTheServersWait(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		method  string
		header  func(now time.Time) http.Header
		wait    time.Duration // lower bound; the upper is +10%
		retried bool
	}{
		{"retry-after-ms (OpenAI, Azure OpenAI)", 429, http.MethodPost,
			func(time.Time) http.Header { return http.Header{"Retry-After-Ms": {"300"}} }, 300 * time.Millisecond, true},
		{"x-ratelimit-reset-requests duration (OpenAI)", 429, http.MethodGet,
			func(time.Time) http.Header {
				return http.Header{"X-Ratelimit-Remaining-Requests": {"0"}, "X-Ratelimit-Reset-Requests": {"1s"}}
			}, time.Second, true},
		{"the longest of several", 429, http.MethodGet,
			func(time.Time) http.Header {
				return http.Header{"Retry-After-Ms": {"300"}, "X-Ratelimit-Remaining-Tokens": {"0"}, "X-Ratelimit-Reset-Tokens": {"2s"}}
			}, 2 * time.Second, true},
		{"IETF RateLimit", 429, http.MethodGet,
			func(time.Time) http.Header { return http.Header{"Ratelimit": {`"default";r=0;t=3`}} }, 3 * time.Second, true},
		{"GitHub's rate-limit 403, a Unix time, for an unkeyed write too", 403, http.MethodPost,
			func(now time.Time) http.Header {
				return http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {strconv.FormatInt(now.Add(5*time.Second).Unix(), 10)}}
			}, 5 * time.Second, true},
		{"a 403 that is not a rate limit", 403, http.MethodGet,
			func(time.Time) http.Header { return http.Header{"X-Ratelimit-Remaining": {"12"}} }, 0, false},
		{"a reset over the cap is returned at once", 429, http.MethodGet,
			func(time.Time) http.Header {
				return http.Header{"X-Ratelimit-Remaining-Requests": {"0"}, "X-Ratelimit-Reset-Requests": {"6m0s"}}
			}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				// The bubble's clock starts in 2000; Unix times above
				// 1,000,000,000 (September 2001) are what GitHub sends.
				time.Sleep(time.Until(time.Unix(1_700_000_000, 0)))
				var times []time.Time
				base := testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
					times = append(times, time.Now())
					if len(times) == 1 {
						return &http.Response{StatusCode: tt.status, Header: tt.header(time.Now().Truncate(time.Second)), Body: http.NoBody, Request: r}, nil
					}
					return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
				})
				stack := New(base, WithKeyMethods(), WithBudget(nil), WithBackoff(time.Hour, time.Hour))
				req, _ := http.NewRequest(tt.method, "http://api.test/", strings.NewReader("x"))
				resp, err := stack.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if !tt.retried {
					if len(times) != 1 || resp.StatusCode != tt.status {
						t.Fatalf("%d attempts, status %d; want the %d handed back", len(times), resp.StatusCode, tt.status)
					}
					return
				}
				if len(times) != 2 {
					t.Fatalf("%d attempts; want a retry after the server's wait", len(times))
				}
				if wait := times[1].Sub(times[0]); wait < tt.wait || wait > tt.wait+tt.wait/10+time.Second {
					t.Fatalf("waited %v; want about %v", wait, tt.wait)
				}
			})
		})
	}
}
