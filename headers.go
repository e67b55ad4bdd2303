package saferetry

import "net/http"

// The header names under which a request carries an idempotency key.
// defaultKeyHeader is the one KeyInjector sets, as named by
// draft-ietf-httpapi-idempotency-key-header and accepted by Stripe, Adyen,
// PayPal and most APIs that deduplicate writes; altKeyHeader is the other
// spelling servers use. A request carrying either, or the configured key
// header, is keyed, and its key is never replaced.
const (
	defaultKeyHeader = "Idempotency-Key"
	altKeyHeader     = "X-Idempotency-Key"
)

// keyOf returns the request's idempotency key, or "" when it has none,
// under one of the recognised names or under extra (which may be empty).
func keyOf(h http.Header, extra string) string {
	if len(h) == 0 {
		return ""
	}
	for _, name := range [...]string{defaultKeyHeader, altKeyHeader} {
		if v := h[name]; len(v) > 0 && v[0] != "" {
			return v[0]
		}
	}
	if extra != "" {
		if v := h[http.CanonicalHeaderKey(extra)]; len(v) > 0 && v[0] != "" {
			return v[0]
		}
	}
	return ""
}

// retryAfterOf returns the response's Retry-After value, if it has one.
func retryAfterOf(h http.Header) (string, bool) {
	if v := h["Retry-After"]; len(v) > 0 {
		return v[0], true
	}
	return "", false
}

func validMethod(m string) bool { return m == "" || validHeaderName(m) }

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s holds no control characters other
// than horizontal tab (RFC 9110 §5.5).
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}
