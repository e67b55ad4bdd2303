package saferetryotel

import (
	"net/http"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/attribute"
)

// redacted replaces every secret this package would otherwise record.
const redacted = "REDACTED"

// DefaultSecretQueryParams returns the query parameters whose values
// url.full never carries when Config.SecretQueryParams is nil: the
// semantic conventions' list (AWSAccessKeyId, Signature, sig,
// X-Goog-Signature), the names OAuth 2.0 (RFC 6749) gives secrets (code,
// access_token, refresh_token, id_token, client_secret), what signed URLs
// and API keys are commonly called (X-Amz-Signature, X-Amz-Credential,
// X-Amz-Security-Token, X-Goog-Credential, key, api_key, apikey), and any
// name containing token, secret, password, passwd, signature, credential,
// apikey, api_key or api-key. A new slice each call.
func DefaultSecretQueryParams() []string {
	return []string{
		"awsaccesskeyid", "sig", "key", "code", "auth", "pwd", "pass", "session", "sessionid",
		"*token*", "*secret*", "*password*", "*passwd*", "*signature*", "*credential*",
		"*apikey*", "*api_key*", "*api-key*",
	}
}

// DefaultSecretHeaders returns the headers, beyond Authorization,
// Proxy-Authorization, Cookie and Set-Cookie, whose values are never
// recorded when Config.SecretHeaders is nil: the usual API-key headers
// (X-Api-Key, Api-Key, X-Auth-Token, X-Goog-Api-Key,
// Ocp-Apim-Subscription-Key, X-Amz-Security-Token) and any name containing
// token, secret, password, signature, credential, apikey, api-key or
// session. A new slice each call.
func DefaultSecretHeaders() []string {
	return []string{
		"x-api-key", "api-key", "x-auth-token", "x-goog-api-key", "ocp-apim-subscription-key",
		"*token*", "*secret*", "*password*", "*signature*", "*credential*",
		"*apikey*", "*api-key*", "*session*",
	}
}

// alwaysSecret are the headers whose values are never recorded, whatever
// the configuration: credentials and cookies.
var alwaysSecret = map[string]bool{
	"authorization":       true,
	"proxy-authorization": true,
	"cookie":              true,
	"set-cookie":          true,
}

// nameMatcher matches names case-insensitively against patterns: a whole
// name, or with a "*" at the start, the end or both, a suffix, a prefix or
// a part of one.
type nameMatcher struct {
	exact                        map[string]bool
	prefixes, suffixes, contains []string
}

func newNameMatcher(patterns []string) nameMatcher {
	m := nameMatcher{exact: make(map[string]bool, len(patterns))}
	for _, p := range patterns {
		p = strings.ToLower(p)
		star0, star1 := strings.HasPrefix(p, "*"), len(p) > 1 && strings.HasSuffix(p, "*")
		core := strings.TrimSuffix(strings.TrimPrefix(p, "*"), "*")
		switch {
		case core == "":
			continue // "*" alone would redact everything: not a name
		case star0 && star1:
			m.contains = append(m.contains, core)
		case star0:
			m.suffixes = append(m.suffixes, core)
		case star1:
			m.prefixes = append(m.prefixes, core)
		default:
			m.exact[core] = true
		}
	}
	return m
}

// match reports whether name matches a pattern.
func (m *nameMatcher) match(name string) bool {
	name = strings.ToLower(name)
	if m.exact[name] {
		return true
	}
	for _, s := range m.contains {
		if strings.Contains(name, s) {
			return true
		}
	}
	for _, s := range m.prefixes {
		if strings.HasPrefix(name, s) {
			return true
		}
	}
	for _, s := range m.suffixes {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// redactor removes secrets from what is recorded. Immutable once built.
type redactor struct {
	query   nameMatcher
	headers nameMatcher
}

func newRedactor(secretHeaders, secretQuery []string) redactor {
	if secretHeaders == nil {
		secretHeaders = DefaultSecretHeaders()
	}
	if secretQuery == nil {
		secretQuery = DefaultSecretQueryParams()
	}
	return redactor{query: newNameMatcher(secretQuery), headers: newNameMatcher(secretHeaders)}
}

// url returns u as url.full records it: userinfo replaced by REDACTED
// (REDACTED:REDACTED with a password), the values of secret query
// parameters replaced by REDACTED (their names kept), and no fragment. A
// fragment is never sent to the server, and it is where the OAuth
// implicit flow puts access tokens.
func (r *redactor) url(u *url.URL) string {
	if u.User == nil && u.RawQuery == "" && u.Fragment == "" && u.RawFragment == "" {
		return u.String()
	}
	c := *u
	if c.User != nil {
		if _, ok := c.User.Password(); ok {
			c.User = url.UserPassword(redacted, redacted)
		} else {
			c.User = url.User(redacted)
		}
	}
	c.Fragment, c.RawFragment = "", ""
	c.RawQuery = r.rawQuery(c.RawQuery)
	return c.String()
}

// rawQuery redacts the values of secret parameters in a raw query,
// leaving every other byte as it was; it allocates only when it redacts.
// A parameter's name is matched unescaped, so access%5Ftoken is caught
// too.
func (r *redactor) rawQuery(q string) string {
	var b strings.Builder
	done := 0 // q[:done] is in b, or b is unused
	for rest, off := q, 0; rest != ""; {
		part, next, _ := strings.Cut(rest, "&")
		if eq := strings.IndexByte(part, '='); eq >= 0 && r.secretParam(part[:eq]) {
			b.WriteString(q[done : off+eq+1])
			b.WriteString(redacted)
			done = off + len(part)
		}
		off += len(part) + 1
		rest = next
	}
	if done == 0 {
		return q
	}
	b.WriteString(q[done:])
	return b.String()
}

// secretParam reports whether a query parameter's raw name is a secret's.
func (r *redactor) secretParam(raw string) bool {
	if name, err := url.QueryUnescape(raw); err == nil {
		raw = name
	}
	return r.query.match(raw)
}

// message returns msg with every http:// or https:// URL it quotes
// redacted as url.full is: net/http's *url.Error, and many wrappers,
// quote the request's URL, credentials and all. A URL that does not parse
// is replaced whole.
func (r *redactor) message(msg string) string {
	lower := strings.ToLower(msg) // ASCII lowering keeps byte offsets
	if !strings.Contains(lower, "http://") && !strings.Contains(lower, "https://") {
		return msg
	}
	var b strings.Builder
	for {
		start := urlStart(lower)
		if start < 0 {
			b.WriteString(msg)
			return b.String()
		}
		end := start + strings.IndexFunc(msg[start:], endsURL)
		if end < start {
			end = len(msg)
		}
		b.WriteString(msg[:start])
		if u, err := url.Parse(msg[start:end]); err == nil {
			b.WriteString(r.url(u))
		} else {
			b.WriteString(redacted)
		}
		msg, lower = msg[end:], lower[end:]
	}
}

// urlStart returns the index of the first http:// or https:// in s, or -1.
func urlStart(s string) int {
	i, j := strings.Index(s, "http://"), strings.Index(s, "https://")
	switch {
	case i < 0:
		return j
	case j < 0:
		return i
	}
	return min(i, j)
}

// endsURL reports whether c cannot be part of a URL quoted in a message.
func endsURL(c rune) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '"', '\'', '`', '<', '>':
		return true
	}
	return false
}

// capturedHeader is a header recorded on attempt spans, with its
// attribute key computed once.
type capturedHeader struct {
	name string        // canonical form, for lookups
	key  attribute.Key // http.request.header.<lowercase name>
}

func captured(prefix string, names []string) []capturedHeader {
	var out []capturedHeader
	for _, n := range names {
		if n == "" {
			continue
		}
		out = append(out, capturedHeader{
			name: http.CanonicalHeaderKey(n),
			key:  attribute.Key(prefix + strings.ToLower(n)),
		})
	}
	return out
}

// headerAttrs appends the captured headers present in h, the values of
// secret ones replaced by REDACTED, one per value.
func (r *redactor) headerAttrs(kvs []attribute.KeyValue, which []capturedHeader, h http.Header) []attribute.KeyValue {
	for _, c := range which {
		vals, ok := h[c.name]
		if !ok {
			continue
		}
		if alwaysSecret[strings.ToLower(c.name)] || r.headers.match(c.name) {
			masked := make([]string, len(vals))
			for i := range masked {
				masked[i] = redacted
			}
			vals = masked
		}
		kvs = append(kvs, c.key.StringSlice(vals))
	}
	return kvs
}
