package saferetry

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/google/uuid"
)

// DefaultKeyHeader is the header KeyInjector sets, as named by
// draft-ietf-httpapi-idempotency-key-header and accepted by Stripe, Adyen,
// PayPal and most APIs that deduplicate writes.
const DefaultKeyHeader = "Idempotency-Key"

// altKeyHeader is the other spelling servers use; a request carrying it is
// keyed too, and its key is never replaced.
const altKeyHeader = "X-Idempotency-Key"

// MaxKeyLength is the longest key KeyInjector sends: Stripe's limit, which
// is the tightest among the common APIs.
const MaxKeyLength = 255

// ErrInvalidKey is wrapped by the error KeyInjector returns when its key
// function produced a key that cannot be sent.
var ErrInvalidKey = errors.New("saferetry: invalid idempotency key")

// KeyInjector gives each logical request that needs one an idempotency key,
// so the retry layer below it can safely resend writes: every retry of the
// request carries the same key, and the server can deduplicate them. It
// never replaces a key the caller set (under Idempotency-Key,
// X-Idempotency-Key or Header), and never modifies the caller's request: it
// sends a copy with its own header map.
//
// The zero value keys POST and PATCH requests with a random UUID (version
// 4, 122 random bits) under Idempotency-Key, and sends them through a
// pooled transport of its own. Safe for concurrent use.
type KeyInjector struct {
	// Base is the next RoundTripper. Nil means a pooled transport from
	// go-cleanhttp, created on first use.
	Base http.RoundTripper
	// Header is the header the key is sent in. Empty means
	// DefaultKeyHeader.
	Header string
	// Methods lists the methods that get a key. Nil means POST and PATCH,
	// the non-idempotent methods of RFC 9110; an empty non-nil slice keys
	// nothing.
	Methods []string
	// NewKey returns a fresh key. Nil means a random UUID v4. Its result
	// must be a valid header value of at most MaxKeyLength bytes.
	NewKey func() string
	// Quoted sends the key as a structured-field string ("..."), the form
	// the IETF draft (§2.1) specifies. The default is the bare key, which
	// Stripe and most deployed APIs expect.
	Quoted bool

	base lazyBase
}

var _ http.RoundTripper = (*KeyInjector)(nil)

// RoundTrip implements http.RoundTripper.
func (k *KeyInjector) RoundTrip(req *http.Request) (*http.Response, error) {
	base := k.base.resolve(k.Base)
	if !k.wantsKey(req) {
		return base.RoundTrip(req)
	}
	key, err := k.key()
	if err != nil {
		closeRequestBody(req)
		return nil, err
	}
	keyed := *req
	keyed.Header = req.Header.Clone()
	if keyed.Header == nil {
		keyed.Header = make(http.Header, 1)
	}
	keyed.Header[k.headerName()] = []string{key}
	return base.RoundTrip(&keyed)
}

// CloseIdleConnections forwards to the base transport.
func (k *KeyInjector) CloseIdleConnections() {
	closeIdleConnections(k.base.resolve(k.Base))
}

func (k *KeyInjector) headerName() string {
	if k.Header == "" {
		return DefaultKeyHeader
	}
	return http.CanonicalHeaderKey(k.Header)
}

// wantsKey reports whether req's method is keyed and it has no key yet.
func (k *KeyInjector) wantsKey(req *http.Request) bool {
	if !k.keysMethod(req.Method) {
		return false
	}
	return !hasKey(req.Header, k.Header)
}

func (k *KeyInjector) keysMethod(method string) bool {
	if k.Methods == nil {
		return method == http.MethodPost || method == http.MethodPatch
	}
	for _, m := range k.Methods {
		if m == method {
			return true
		}
	}
	return false
}

// key makes and checks a fresh key.
func (k *KeyInjector) key() (string, error) {
	var key string
	if k.NewKey != nil {
		key = k.NewKey()
	} else {
		key = uuid.NewString()
	}
	if err := checkKey(key); err != nil {
		return "", err
	}
	if k.Quoted {
		key = `"` + key + `"`
	}
	return key, nil
}

// checkKey rejects keys a server could not store or that would corrupt
// the request: empty, too long, or with characters outside visible ASCII
// (which also keeps the quoted form a valid structured-field string).
func checkKey(key string) error {
	if key == "" || len(key) > MaxKeyLength {
		return fmt.Errorf("%w: length %d is outside 1..%d", ErrInvalidKey, len(key), MaxKeyLength)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return fmt.Errorf("%w: byte %#x at offset %d; keys must be visible ASCII without quotes or backslashes", ErrInvalidKey, c, i)
		}
	}
	return nil
}

// hasKey reports whether h carries a non-empty idempotency key under one
// of the recognised names or under extra (which may be empty).
func hasKey(h http.Header, extra string) bool {
	if len(h) == 0 {
		return false
	}
	if nonEmpty(h[DefaultKeyHeader]) || nonEmpty(h[altKeyHeader]) {
		return true
	}
	return extra != "" && nonEmpty(h[http.CanonicalHeaderKey(extra)])
}

func nonEmpty(values []string) bool { return len(values) > 0 && values[0] != "" }

// closeRequestBody closes req's body, as the RoundTripper contract asks
// of every path that does not pass the request on.
func closeRequestBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
