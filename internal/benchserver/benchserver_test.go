package benchserver

import (
	"net/http"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFlakyFailsTwiceThenServes(t *testing.T) {
	srv := NewRecording(t)
	client := srv.Client()
	defer client.CloseIdleConnections()
	var got []int
	for range 4 {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/flaky", strings.NewReader("body"))
		req.Header.Set(SeqHeader, "7")
		req.Header.Set("Idempotency-Key", "k")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got = append(got, resp.StatusCode)
	}
	want := []int{503, 503, 200, 200}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("statuses %v, want %v", got, want)
		}
	}
	seen := srv.Attempts(7)
	if len(seen) != 4 || seen[0].Length != 4 || seen[0].Key != "k" || seen[0].Sum != seen[3].Sum {
		t.Fatalf("recorded %+v", seen)
	}
}
