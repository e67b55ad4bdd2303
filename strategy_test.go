package saferetry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"reflect"
	"syscall"
	"testing"
)

// timeoutError is a net.Error that timed out, as a dial timeout is.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// bundledStreamError imitates net/http's unexported HTTP/2 stream error,
// including the reflective As method net/http gives it (h2_error.go).
type bundledStreamError struct {
	StreamID uint32
	Code     uint32
	Cause    error
}

func (e bundledStreamError) Error() string { return fmt.Sprintf("stream error: code %d", e.Code) }

func (e bundledStreamError) As(target any) bool {
	dst := reflect.ValueOf(target).Elem()
	src := reflect.ValueOf(e)
	if dst.Kind() != reflect.Struct || dst.NumField() != src.NumField() {
		return false
	}
	for i := range src.NumField() {
		sf, df := src.Type().Field(i), dst.Type().Field(i)
		if sf.Name != df.Name || !sf.Type.ConvertibleTo(df.Type) {
			return false
		}
	}
	for i := range src.NumField() {
		dst.Field(i).Set(src.Field(i).Convert(dst.Field(i).Type()))
	}
	return true
}

// The column of the classification table a request falls in.
type column int

const (
	replayableGET column = iota // idempotent, unkeyed
	keyedPOST                   // keyed write
	unkeyedPOST                 // neither
	unkeyedPATCH                // neither
)

func (c column) request(t *testing.T) *http.Request {
	t.Helper()
	method := map[column]string{replayableGET: "GET", keyedPOST: "POST", unkeyedPOST: "POST", unkeyedPATCH: "PATCH"}[c]
	req, err := http.NewRequest(method, "https://api.example.com/v1/charges", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c == keyedPOST {
		req.Header.Set("Idempotency-Key", "k-1")
	}
	return req
}

func (c column) String() string {
	return [...]string{"idempotent", "keyed POST", "unkeyed POST", "unkeyed PATCH"}[c]
}

func TestDefaultStrategyTransportErrors(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	tests := []struct {
		name      string
		err       error
		neverSent bool
		// verdicts for replayable (idempotent or keyed) and unkeyed writes
		replayable, unkeyed Retryable
	}{
		{"connection refused", refused, false, Transient, Transient},
		{"connection refused wrapped by the client", &urlError{refused}, false, Transient, Transient},
		{"DNS temporary failure", &net.OpError{Op: "dial", Err: &net.DNSError{Err: "server misbehaving", IsTemporary: true}}, false, Transient, Transient},
		{"DNS timeout", &net.DNSError{Err: "timeout", IsTimeout: true}, false, Transient, Transient},
		{"dial timeout", &net.OpError{Op: "dial", Net: "tcp", Err: timeoutError{}}, false, Transient, Transient},
		{"TLS handshake timeout (nothing written)", timeoutError{}, true, Transient, Transient},
		{"reset after the request was written", reset, false, Transient, Fatal},
		{"EOF after the request was written", io.EOF, false, Transient, Fatal},
		{"unexpected EOF after written", io.ErrUnexpectedEOF, false, Transient, Fatal},
		{"timeout after written", timeoutError{}, false, Transient, Fatal},
		{"attempt timeout after written", fmt.Errorf("%w after 1s", ErrAttemptTimeout), false, Transient, Fatal},
		{"attempt timeout while dialling", fmt.Errorf("%w after 1s", ErrAttemptTimeout), true, Transient, Transient},
		{"h2 REFUSED_STREAM", bundledStreamError{StreamID: 1, Code: h2RefusedStream}, false, Transient, Transient},
		{"h2 other stream error after written", bundledStreamError{StreamID: 1, Code: 0x2}, false, Transient, Fatal},
		{"h2 GOAWAY before the stream was written", errors.New("http2: server sent GOAWAY"), true, Transient, Transient},
		{"x509 unknown authority", x509.UnknownAuthorityError{}, false, Fatal, Fatal},
		{"x509 hostname mismatch", x509.HostnameError{Host: "x"}, false, Fatal, Fatal},
		{"TLS certificate verification", &tls.CertificateVerificationError{Err: errors.New("bad")}, false, Fatal, Fatal},
		{"TLS to a plain HTTP server", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, true, Fatal, Fatal},
		{"DNS not found", &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", IsNotFound: true}}, true, Fatal, Fatal},
		{"any other error, never sent", errors.New("boom"), true, Transient, Transient},
		{"any other error, maybe sent", errors.New("boom"), false, Transient, Fatal},
	}
	for _, tt := range tests {
		for _, col := range []column{replayableGET, keyedPOST, unkeyedPOST, unkeyedPATCH} {
			t.Run(tt.name+"/"+col.String(), func(t *testing.T) {
				req := col.request(t)
				a := Attempt{Request: req, Err: tt.err, Number: 1, Keyed: col == keyedPOST}
				if col == unkeyedPOST || col == unkeyedPATCH {
					a.NeverSent = tt.neverSent
				}
				want := tt.replayable
				if col == unkeyedPOST || col == unkeyedPATCH {
					want = tt.unkeyed
				}
				if got := DefaultStrategy.Classify(a); got != want {
					t.Fatalf("Classify(%v) = %v, want %v", tt.err, got, want)
				}
			})
		}
	}
}

// urlError wraps like *url.Error does, to prove errors are unwrapped.
type urlError struct{ err error }

func (e *urlError) Error() string { return "Get: " + e.err.Error() }
func (e *urlError) Unwrap() error { return e.err }

func TestDefaultStrategyInvalidRequests(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*http.Request)
	}{
		{"unsupported scheme", func(r *http.Request) { r.URL.Scheme = "ftp" }},
		{"missing host", func(r *http.Request) { r.URL.Host = "" }},
		{"invalid header name", func(r *http.Request) { r.Header["Bad Name"] = []string{"v"} }},
		{"invalid header value", func(r *http.Request) { r.Header["X-Ok"] = []string{"a\r\nInjected: 1"} }},
		{"invalid method", func(r *http.Request) { r.Method = "GE T" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := replayableGET.request(t)
			tt.mutate(req)
			a := Attempt{Request: req, Err: errors.New("net/http: rejected"), Number: 1, NeverSent: true}
			if got := DefaultStrategy.Classify(a); got != Fatal {
				t.Fatalf("Classify = %v, want Fatal", got)
			}
		})
	}
}

func TestDefaultStrategyCallerContextDone(t *testing.T) {
	for _, cause := range []error{context.Canceled, context.DeadlineExceeded, errors.New("a custom cause")} {
		t.Run(cause.Error(), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			req := replayableGET.request(t).WithContext(ctx)
			a := Attempt{Request: req, Err: fmt.Errorf("net/http: %w", cause), Number: 1}
			if got := DefaultStrategy.Classify(a); got != Fatal {
				t.Fatalf("Classify = %v, want Fatal", got)
			}
		})
	}
}

func TestDefaultStrategyStatuses(t *testing.T) {
	withRetryAfter := http.Header{"Retry-After": {"2"}}
	tests := []struct {
		status              int
		header              http.Header
		replayable, unkeyed Retryable
		keyedOnly           *Retryable // when keyed requests differ from idempotent ones
	}{
		{status: 408, replayable: Transient, unkeyed: Transient},
		{status: 429, replayable: Transient, unkeyed: Transient},
		{status: 429, header: withRetryAfter, replayable: Transient, unkeyed: Transient},
		{status: 413, header: withRetryAfter, replayable: Transient, unkeyed: Transient},
		{status: 413, replayable: Done, unkeyed: Done},
		{status: 500, replayable: Transient, unkeyed: Fatal},
		{status: 502, replayable: Transient, unkeyed: Fatal},
		{status: 503, replayable: Transient, unkeyed: Fatal},
		{status: 504, replayable: Transient, unkeyed: Fatal},
		{status: 422, replayable: Done, unkeyed: Done},
		{status: 400, replayable: Done, unkeyed: Done},
		{status: 401, replayable: Done, unkeyed: Done},
		{status: 404, replayable: Done, unkeyed: Done},
		{status: 501, replayable: Done, unkeyed: Done},
		{status: 505, replayable: Done, unkeyed: Done},
		{status: 101, replayable: Done, unkeyed: Done},
		{status: 200, replayable: Done, unkeyed: Done},
		{status: 201, replayable: Done, unkeyed: Done},
		{status: 304, replayable: Done, unkeyed: Done},
	}
	for _, tt := range tests {
		for _, col := range []column{replayableGET, keyedPOST, unkeyedPOST, unkeyedPATCH} {
			name := fmt.Sprintf("%d/retry-after=%v/%v", tt.status, tt.header != nil, col)
			t.Run(name, func(t *testing.T) {
				got := DefaultStrategy.Classify(statusAttempt(t, col, tt.status, tt.header))
				want := tt.replayable
				if col == unkeyedPOST || col == unkeyedPATCH {
					want = tt.unkeyed
				}
				if got != want {
					t.Fatalf("Classify(%d) = %v, want %v", tt.status, got, want)
				}
			})
		}
	}
}

// 409 means "the same key is still in progress" only for a keyed request.
func TestDefaultStrategyConflict(t *testing.T) {
	want := map[column]Retryable{replayableGET: Done, keyedPOST: Transient, unkeyedPOST: Done, unkeyedPATCH: Done}
	for col, w := range want {
		if got := DefaultStrategy.Classify(statusAttempt(t, col, 409, nil)); got != w {
			t.Errorf("409 %v: got %v, want %v", col, got, w)
		}
	}
}

func TestDefaultStrategyServerHint(t *testing.T) {
	tests := []struct {
		name   string
		col    column
		status int
		hint   string
		want   Retryable
	}{
		{"false wins over a retryable 503", replayableGET, 503, "false", Fatal},
		{"false on a keyed 429", keyedPOST, 429, "FALSE", Fatal},
		{"false on a success is irrelevant", replayableGET, 200, "false", Done},
		{"true makes a keyed 400 retryable", keyedPOST, 400, "true", Transient},
		{"true never makes an unkeyed POST retryable", unkeyedPOST, 500, "true", Fatal},
		{"true on a success is irrelevant", keyedPOST, 200, "true", Done},
		{"other values are ignored", replayableGET, 503, "maybe", Transient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := statusAttempt(t, tt.col, tt.status, http.Header{"Stripe-Should-Retry": {tt.hint}})
			if got := DefaultStrategy.Classify(a); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("zero TableStrategy ignores hints", func(t *testing.T) {
		a := statusAttempt(t, replayableGET, 503, http.Header{"Stripe-Should-Retry": {"false"}})
		if got := (TableStrategy{}).Classify(a); got != Transient {
			t.Fatalf("got %v, want Transient", got)
		}
	})
}

func statusAttempt(t *testing.T, col column, status int, h http.Header) Attempt {
	t.Helper()
	if h == nil {
		h = http.Header{}
	}
	req := col.request(t)
	return Attempt{Request: req, Response: &http.Response{StatusCode: status, Header: h}, Number: 1, Keyed: col == keyedPOST}
}

func TestStrategyFuncFallsBackToDefault(t *testing.T) {
	s := StrategyFunc(func(a Attempt) Retryable {
		if a.Response != nil && a.Response.StatusCode == http.StatusNotFound {
			return Transient // eventual consistency: the object may appear
		}
		return DefaultStrategy.Classify(a)
	})
	if got := s.Classify(statusAttempt(t, replayableGET, 404, nil)); got != Transient {
		t.Fatalf("404: got %v", got)
	}
	if got := s.Classify(statusAttempt(t, replayableGET, 400, nil)); got != Done {
		t.Fatalf("400: got %v", got)
	}
}

func FuzzClassify(f *testing.F) {
	f.Add("GET", 503, "Retry-After", "2", true, false)
	f.Add("POST", 500, "Stripe-Should-Retry", "true", false, true)
	f.Add("PATCH", 409, "X", "\x00", true, true)
	f.Fuzz(func(t *testing.T, method string, status int, name, value string, keyed, neverSent bool) {
		req, err := http.NewRequest(http.MethodGet, "http://example.com/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Method = method
		resp := &http.Response{StatusCode: status, Header: http.Header{name: {value}}}
		a := Attempt{Request: req, Response: resp, Number: 1, Keyed: keyed, NeverSent: neverSent}
		got := DefaultStrategy.Classify(a)
		if got != Done && got != Transient && got != Fatal {
			t.Fatalf("unknown verdict %v", got)
		}
		// The safety rule: an unkeyed non-idempotent request is retried
		// only on statuses that say it was not processed.
		if got == Transient && !keyed && !isIdempotent(method) {
			switch status {
			case 408, 429, 413:
			default:
				t.Fatalf("unkeyed %s retried on status %d", method, status)
			}
		}
	})
}

func TestClassifyAllocatesNothingForCommonOutcomes(t *testing.T) {
	req := replayableGET.request(t)
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for name, a := range map[string]Attempt{
		"200":                {Request: req, Response: &http.Response{StatusCode: 200, Header: http.Header{}}, Number: 1},
		"503":                {Request: req, Response: &http.Response{StatusCode: 503, Header: http.Header{}}, Number: 1},
		"connection refused": {Request: req, Err: refused, Number: 1},
	} {
		if n := testing.AllocsPerRun(100, func() { DefaultStrategy.Classify(a) }); n != 0 {
			t.Errorf("%s: %v allocations per Classify", name, n)
		}
	}
}
