package saferetry

import (
	"net/http"
	"testing"
)

// DESIGN.md: a request that needs no key allocates nothing beyond what the
// base transport does (no nested-stack mark over a plain *http.Transport,
// no trace, no budget allocation for a known host). Allocation counts are
// exact, so this is a test, not a timing.
func TestHappyPathGETAllocatesNothingMore(t *testing.T) {
	base := &http.Transport{}
	base.RegisterProtocol("bench", inMemoryServer{})
	stack := New(base)
	req, err := http.NewRequest(http.MethodGet, "bench://api.example/v1/things", nil)
	if err != nil {
		t.Fatal(err)
	}
	count := func(rt http.RoundTripper) float64 {
		return testing.AllocsPerRun(200, func() {
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		})
	}
	bare, full := count(base), count(stack)
	if full != bare {
		t.Fatalf("a GET through the stack allocates %v times, the base alone %v", full, bare)
	}
}
