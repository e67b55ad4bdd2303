package saferetry

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/saferetry/saferetry/internal/testutil"
)

func TestKeyInjector(t *testing.T) {
	tests := []struct {
		name     string
		injector *KeyInjector
		method   string
		header   http.Header
		wantKey  string // "uuid" for a fresh UUID v4, "" for none
		wantName string
	}{
		{name: "POST gets a key", method: "POST", wantKey: "uuid", wantName: "Idempotency-Key"},
		{name: "PATCH gets a key", method: "PATCH", wantKey: "uuid", wantName: "Idempotency-Key"},
		{name: "GET does not", method: "GET"},
		{name: "PUT does not", method: "PUT"},
		{name: "caller's key is kept", method: "POST", header: http.Header{"Idempotency-Key": {"mine"}}, wantKey: "mine", wantName: "Idempotency-Key"},
		{name: "caller's X- key is kept and none added", method: "POST", header: http.Header{"X-Idempotency-Key": {"mine"}}, wantKey: "mine", wantName: "X-Idempotency-Key"},
		{name: "caller's key under the configured header", injector: &KeyInjector{Header: "x-request-key"}, method: "POST", header: http.Header{"X-Request-Key": {"mine"}}, wantKey: "mine", wantName: "X-Request-Key"},
		{name: "empty caller key is replaced", method: "POST", header: http.Header{"Idempotency-Key": {""}}, wantKey: "uuid", wantName: "Idempotency-Key"},
		{name: "configured header", injector: &KeyInjector{Header: "x-request-key"}, method: "POST", wantKey: "uuid", wantName: "X-Request-Key"},
		{name: "configured methods", injector: &KeyInjector{Methods: []string{"PUT"}}, method: "PUT", wantKey: "uuid", wantName: "Idempotency-Key"},
		{name: "configured methods exclude POST", injector: &KeyInjector{Methods: []string{"PUT"}}, method: "POST"},
		{name: "no methods keys nothing", injector: &KeyInjector{Methods: []string{}}, method: "POST"},
		{name: "custom key function", injector: &KeyInjector{NewKey: func() string { return "order-42" }}, method: "POST", wantKey: "order-42", wantName: "Idempotency-Key"},
		{name: "quoted structured-field string", injector: &KeyInjector{Quoted: true, NewKey: func() string { return "order-42" }}, method: "POST", wantKey: `"order-42"`, wantName: "Idempotency-Key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sent *http.Request
			k := tt.injector
			if k == nil {
				k = &KeyInjector{}
			}
			k.Base = testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				sent = r
				return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
			})
			req, _ := http.NewRequest(tt.method, "http://api.test/", nil)
			for name, v := range tt.header {
				req.Header[name] = v
			}
			before := req.Header.Clone()
			if _, err := k.RoundTrip(req); err != nil {
				t.Fatal(err)
			}
			if !testutil.HeadersEqual(req.Header, before) {
				t.Fatalf("caller's header changed: %v -> %v", before, req.Header)
			}
			keys := 0
			for _, name := range []string{"Idempotency-Key", "X-Idempotency-Key", "X-Request-Key"} {
				if v := sent.Header.Get(name); v != "" {
					keys++
					if name != tt.wantName {
						t.Fatalf("key sent under %s, want %s", name, tt.wantName)
					}
				}
			}
			got := ""
			if tt.wantName != "" {
				got = sent.Header.Get(tt.wantName)
			}
			switch {
			case tt.wantKey == "" && keys != 0:
				t.Fatalf("unexpected key sent: %v", sent.Header)
			case tt.wantKey == "uuid":
				u, err := uuid.Parse(got)
				if err != nil || u.Version() != 4 || keys != 1 {
					t.Fatalf("key %q is not a single UUID v4 (%v)", got, err)
				}
			case tt.wantKey != "" && (got != tt.wantKey || keys != 1):
				t.Fatalf("key %q (%d keys), want %q", got, keys, tt.wantKey)
			}
			if tt.wantKey == "" && sent != req {
				t.Fatal("a request that needs no key must be passed on as it is")
			}
		})
	}
}

func TestKeyInjectorFreshKeyPerLogicalRequest(t *testing.T) {
	var keys []string
	k := &KeyInjector{Base: testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
	})}
	for range 3 {
		req, _ := http.NewRequest(http.MethodPost, "http://api.test/", nil)
		if _, err := k.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
	}
	if keys[0] == keys[1] || keys[1] == keys[2] || keys[0] == keys[2] {
		t.Fatalf("keys repeat across logical requests: %v", keys)
	}
}

type countingCloser struct {
	strings.Reader
	closed int
}

func (c *countingCloser) Close() error { c.closed++; return nil }

func TestKeyInjectorRejectsBadKeysAndClosesTheBody(t *testing.T) {
	for name, key := range map[string]string{
		"empty":       "",
		"too long":    strings.Repeat("k", maxKeyLength+1),
		"CRLF":        "a\r\nX-Injected: 1",
		"space":       "a b",
		"quote":       `a"b`,
		"non-ASCII":   "clé",
		"NUL":         "a\x00",
		"backslash":   `a\b`,
		"DEL":         "a\x7f",
		"tab":         "a\tb",
		"max+unicode": strings.Repeat("é", 200),
	} {
		t.Run(name, func(t *testing.T) {
			called := false
			k := &KeyInjector{NewKey: func() string { return key }, Base: testutil.RoundTripFunc(func(*http.Request) (*http.Response, error) {
				called = true
				return nil, nil
			})}
			body := &countingCloser{}
			req, _ := http.NewRequest(http.MethodPost, "http://api.test/", body)
			_, err := k.RoundTrip(req)
			if !errors.Is(err, ErrInvalidKey) || called || body.closed != 1 {
				t.Fatalf("err %v, sent %v, body closed %d times; want ErrInvalidKey, not sent, closed once", err, called, body.closed)
			}
		})
	}
	t.Run("longest valid key", func(t *testing.T) {
		key := strings.Repeat("k", maxKeyLength)
		if err := checkKey(key); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzKeyInjection(f *testing.F) {
	for _, seed := range []string{"order-42", "", "a\r\nb", `"q"`, strings.Repeat("x", 300), "\xff\xfe"} {
		f.Add(seed, "Idempotency-Key", seed)
	}
	f.Fuzz(func(t *testing.T, key, header, callerValue string) {
		var sent *http.Request
		k := &KeyInjector{
			NewKey: func() string { return key },
			Base: testutil.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				sent = r
				return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
			}),
		}
		req, _ := http.NewRequest(http.MethodPost, "http://api.test/", nil)
		if validHeaderName(header) {
			req.Header.Set(header, callerValue)
		}
		before := req.Header.Clone()
		_, err := k.RoundTrip(req)
		if !testutil.HeadersEqual(req.Header, before) {
			t.Fatal("caller's header modified")
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidKey) || sent != nil {
				t.Fatalf("err %v with the request sent", err)
			}
			return
		}
		got := sent.Header.Values("Idempotency-Key")
		if keyOf(before, "") != "" {
			if !testutil.HeadersEqual(sent.Header, before) {
				t.Fatalf("caller's key replaced or another added: %v -> %v", before, sent.Header)
			}
			return
		}
		if len(got) != 1 {
			t.Fatalf("%d Idempotency-Key values sent", len(got))
		}
		v := got[0]
		if len(v) == 0 || len(v) > maxKeyLength || !utf8.ValidString(v) || !validHeaderValue(v) || strings.ContainsAny(v, "\r\n \"") {
			t.Fatalf("invalid key sent: %q", v)
		}
	})
}
