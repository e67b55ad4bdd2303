package saferetry

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// A retry the budget refuses must leave the response handed back intact.
// The server answers before reading the upload, so net/http's write loop
// is still sending the body when the retry layer decides: touching the
// body for a retry that is not made would cut the connection under the
// response.
func TestBudgetRefusalLeavesTheResponseWhole(t *testing.T) {
	page := bytes.Repeat([]byte("overloaded "), 100_000) // about 1 MiB
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(page)))
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write(page)
		w.(http.Flusher).Flush()
		<-done // keep the connection open, the upload unread
	}))
	defer srv.Close()
	defer close(done)
	empty := NewBudget(0)
	stack := New(srv.Client().Transport, WithBudget(empty), WithBackoff(0, 0), WithMaxBodyBytes(32<<20))
	// An opaque reader (no GetBody), larger than the socket buffers.
	upload := io.MultiReader(strings.NewReader(strings.Repeat("x", 16<<20)))
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/upload", upload)
	resp, err := stack.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(got, page) {
		t.Fatalf("read %d of %d bytes of the 503, err %v", len(got), len(page), err)
	}
	if Stopped(resp) != StopBudget {
		t.Fatalf("Stopped = %v, want the budget", Stopped(resp))
	}
}
