package testutil

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// recordingTB records the failures reported to it instead of failing.
type recordingTB struct {
	testing.TB
	errors []string
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func TestSnapshotCheckSeesEveryChange(t *testing.T) {
	changes := map[string]func(r *http.Request) *http.Request{
		"nothing":           func(r *http.Request) *http.Request { return r },
		"method":            func(r *http.Request) *http.Request { r.Method = http.MethodPut; return r },
		"URL":               func(r *http.Request) *http.Request { r.URL.Path = "/other"; return r },
		"host":              func(r *http.Request) *http.Request { r.Host = "other.test"; return r },
		"header added":      func(r *http.Request) *http.Request { r.Header.Set("Idempotency-Key", "k"); return r },
		"header value":      func(r *http.Request) *http.Request { r.Header.Set("X-Caller", "other"); return r },
		"content length":    func(r *http.Request) *http.Request { r.ContentLength = 1; return r },
		"transfer encoding": func(r *http.Request) *http.Request { r.TransferEncoding = []string{"chunked"}; return r },
		"body":              func(r *http.Request) *http.Request { r.Body = io.NopCloser(strings.NewReader("")); return r },
		"GetBody":           func(r *http.Request) *http.Request { r.GetBody = nil; return r },
		"context": func(r *http.Request) *http.Request {
			return r.WithContext(context.WithValue(r.Context(), struct{}{}, 1))
		},
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, "http://api.test/charges", strings.NewReader("payload"))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Caller", "test")
			snap := Snapshot(req)
			changed := change(req)
			// WithContext returns another request: check the caller's
			// view, which is the same pointer for every other change.
			if changed != req {
				*req = *changed
			}
			rec := &recordingTB{TB: t}
			snap.Check(rec, req)
			if got := len(rec.errors) > 0; got != (name != "nothing") {
				t.Fatalf("Check reported %q", rec.errors)
			}
		})
	}
}

func TestTrackedBody(t *testing.T) {
	b := NewTrackedBody(io.NopCloser(strings.NewReader("hello")))
	if _, err := io.ReadAll(b); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b.Close()
	b.WaitClosed(t)
	if b.BytesRead() != 5 || !b.ReadToEOF() || b.Closes() != 2 {
		t.Fatalf("read %d, EOF %v, closed %d; want 5, true, 2", b.BytesRead(), b.ReadToEOF(), b.Closes())
	}
	if _, ok := any(b).(io.WriterTo); ok {
		t.Fatal("a TrackedBody must look like an opaque stream")
	}
}

func TestHeadersEqual(t *testing.T) {
	a := http.Header{"A": {"1", "2"}}
	for _, tc := range []struct {
		b    http.Header
		want bool
	}{
		{http.Header{"A": {"1", "2"}}, true},
		{http.Header{"A": {"2", "1"}}, false},
		{http.Header{"A": {"1"}}, false},
		{http.Header{"B": {"1", "2"}}, false},
		{http.Header{"A": {"1", "2"}, "B": nil}, false},
	} {
		if got := HeadersEqual(a, tc.b); got != tc.want {
			t.Errorf("HeadersEqual(%v, %v) = %v; want %v", a, tc.b, got, tc.want)
		}
	}
	if !HeadersEqual(nil, http.Header{}) {
		t.Error("a nil and an empty header differ")
	}
}
