package testutil

import (
	"context"
	"io"
	"net/http"
	"reflect"
	"slices"
	"testing"
)

// RequestSnapshot is what a caller can observe of its *http.Request, taken
// before a RoundTrip so that Check can prove the RoundTripper contract
// held: the request was not modified (beyond its Body being read and
// closed).
type RequestSnapshot struct {
	Method           string
	URL              string
	Host             string
	Header           http.Header
	ContentLength    int64
	TransferEncoding []string
	Body             io.ReadCloser
	// GetBody identifies the request's GetBody function (0 when nil).
	GetBody uintptr
	Ctx     context.Context
}

// Snapshot records what r shows its caller now.
func Snapshot(r *http.Request) RequestSnapshot {
	s := RequestSnapshot{
		Method:           r.Method,
		Host:             r.Host,
		Header:           r.Header.Clone(),
		ContentLength:    r.ContentLength,
		TransferEncoding: slices.Clone(r.TransferEncoding),
		Body:             r.Body,
		Ctx:              r.Context(),
	}
	if r.URL != nil {
		s.URL = r.URL.String()
	}
	if r.GetBody != nil {
		s.GetBody = reflect.ValueOf(r.GetBody).Pointer()
	}
	return s
}

// Check reports an error on t for everything of r that differs from the
// snapshot.
func (s RequestSnapshot) Check(t testing.TB, r *http.Request) {
	t.Helper()
	now := Snapshot(r)
	if now.Method != s.Method || now.URL != s.URL || now.Host != s.Host ||
		now.ContentLength != s.ContentLength || !slices.Equal(now.TransferEncoding, s.TransferEncoding) ||
		now.Body != s.Body || now.GetBody != s.GetBody || now.Ctx != s.Ctx {
		t.Errorf("caller's request modified:\nbefore %+v\nafter  %+v", s, now)
	}
	if !HeadersEqual(now.Header, s.Header) {
		t.Errorf("caller's header modified: %v -> %v", s.Header, now.Header)
	}
}
