// Package serverwait reads how long a response's headers ask the client to
// wait: Retry-After, retry-after-ms, and the rate-limit headers of the IETF
// draft, GitHub, OpenAI, Azure OpenAI and Anthropic.
package serverwait

import (
	"net/http"
	"time"
)

// Hint is what one response's headers announce about when to send again.
// The zero Hint announces nothing.
type Hint struct {
	// Wait is the longest wait any recognised header announces: the wait
	// until the request can succeed. A wait that ended in the past is 0.
	// Meaningful only when Announced.
	Wait time.Duration

	// Announced reports whether any header announced a wait (possibly 0).
	Announced bool

	// Exhausted reports that a quota has nothing left until a reset: a
	// remaining count of 0 together with a reset time (the IETF r=0 with a
	// window, GitHub's x-ratelimit-remaining: 0 with x-ratelimit-reset, and
	// so on). It makes a 403 a rate-limit 403, to be treated as a 429.
	// Retry-After alone does not set it.
	Exhausted bool

	// ResetAt is when the last exhausted quota resets, never before now;
	// zero unless Exhausted. Its distance from now is also part of Wait.
	ResetAt time.Time
}

// Header names in canonical form (http.CanonicalHeaderKey), the form in
// which net/http stores received headers, over HTTP/1 and HTTP/2 alike;
// Parse compares names exactly.
const (
	headerDate       = "Date"
	headerRetryAfter = "Retry-After"
	// retry-after-ms: OpenAI and Azure OpenAI; honoured by their SDKs
	// (openai-go's parseRetryAfterHeader, openai-python's
	// _calculate_retry_timeout).
	headerRetryAfterMs = "Retry-After-Ms"
	// x-ms-retry-after-ms: Azure services; Azure's SDK core
	// (throttlingRetryStrategy) reads it with retry-after-ms.
	headerMsRetryAfterMs = "X-Ms-Retry-After-Ms"

	headerRateLimit       = "Ratelimit"
	headerRateLimitPolicy = "Ratelimit-Policy"
	// Drafts 00 to 06 of draft-ietf-httpapi-ratelimit-headers.
	headerRateLimitRemaining = "Ratelimit-Remaining"
	headerRateLimitReset     = "Ratelimit-Reset"

	// GitHub and many others: x-ratelimit-reset is a Unix time at GitHub,
	// seconds elsewhere.
	headerXRemaining = "X-Ratelimit-Remaining"
	headerXReset     = "X-Ratelimit-Reset"

	// OpenAI: reset values are Go-style durations ("6m0s"); Azure OpenAI
	// sends bare seconds in the same headers.
	headerRemainingRequests = "X-Ratelimit-Remaining-Requests"
	headerResetRequests     = "X-Ratelimit-Reset-Requests"
	headerRemainingTokens   = "X-Ratelimit-Remaining-Tokens"
	headerResetTokens       = "X-Ratelimit-Reset-Tokens"

	// Anthropic: reset values are RFC 3339 times.
	headerAnthropicRequestsRemaining     = "Anthropic-Ratelimit-Requests-Remaining"
	headerAnthropicRequestsReset         = "Anthropic-Ratelimit-Requests-Reset"
	headerAnthropicTokensRemaining       = "Anthropic-Ratelimit-Tokens-Remaining"
	headerAnthropicTokensReset           = "Anthropic-Ratelimit-Tokens-Reset"
	headerAnthropicInputTokensRemaining  = "Anthropic-Ratelimit-Input-Tokens-Remaining"
	headerAnthropicInputTokensReset      = "Anthropic-Ratelimit-Input-Tokens-Reset"
	headerAnthropicOutputTokensRemaining = "Anthropic-Ratelimit-Output-Tokens-Remaining"
	headerAnthropicOutputTokensReset     = "Anthropic-Ratelimit-Output-Tokens-Reset"
)

// Parse reads every wait the headers h of a response announce, received at
// now. It does not look at the status: which statuses make a wait apply is
// the caller's rule. It allocates nothing and never fails: a header it
// cannot read is ignored. It only reads h, so it is safe for concurrent
// use.
//
// What counts as a wait:
//   - Retry-After (delay-seconds or an HTTP-date), retry-after-ms and
//     x-ms-retry-after-ms, always;
//   - a reset, only when its remaining count is 0 (the quota is
//     exhausted). A reset with quota left is when the quota refills
//     ("resets to its initial state", in OpenAI's words), not a wait; and
//     a reset without a remaining count is ambiguous between the two. The
//     pairs: RateLimit's r and t (see ratelimit.go), RateLimit-Remaining and
//     RateLimit-Reset, X-RateLimit-Remaining and X-RateLimit-Reset,
//     x-ratelimit-remaining-requests and -reset-requests (and -tokens),
//     anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-
//     remaining and -reset.
//
// When several waits are announced, the longest is taken: the request
// cannot succeed before every quota it needs is back. The same holds
// within one header sent twice (or folded into one comma-separated line by
// a proxy): the longest wait, the smallest remaining count.
//
// Absolute times (an HTTP-date, a Unix time, an RFC 3339 time) are
// measured against the response's Date when it has a valid one, the
// server's clock that produced them, and otherwise against now: a client
// whose clock is off by minutes still waits what the server meant (the
// ratelimit draft suggests using Date this way, §7). Relative values are
// measured from now.
//
// A reset number (RateLimit-Reset, X-RateLimit-Reset) above 1,000,000,000
// is a Unix time, at or below it a number of seconds; both may carry a
// fraction (Discord sends "1470173023.123"); an HTTP-date or an RFC 3339
// time is accepted too, as some APIs send in X-RateLimit-Reset.
func Parse(h http.Header, now time.Time) Hint {
	// One pass over h picks out the recognised headers: cheaper than a
	// lookup per recognised name, since most responses carry few headers
	// and none of these.
	var f [numFields][]string
	found := false
	for name, values := range h {
		if i, ok := fieldOf(name); ok {
			f[i], found = values, true
		}
	}
	if !found {
		return Hint{}
	}
	a := acc{now: now, date: f[fieldDate]}
	for _, v := range f[fieldRetryAfter] {
		if d, ok := a.retryAfter(v); ok {
			a.announce(d)
		}
	}
	a.milliseconds(f[fieldRetryAfterMs])
	a.milliseconds(f[fieldMsRetryAfterMs])
	a.rateLimit(f[fieldRateLimit], f[fieldRateLimitPolicy])
	a.pair(f[fieldRateLimitRemaining], f[fieldRateLimitReset], resetTime)
	a.pair(f[fieldXRemaining], f[fieldXReset], resetTime)
	a.pair(f[fieldRemainingRequests], f[fieldResetRequests], resetDuration)
	a.pair(f[fieldRemainingTokens], f[fieldResetTokens], resetDuration)
	a.pair(f[fieldAnthropicRequestsRemaining], f[fieldAnthropicRequestsReset], resetTime)
	a.pair(f[fieldAnthropicTokensRemaining], f[fieldAnthropicTokensReset], resetTime)
	a.pair(f[fieldAnthropicInputTokensRemaining], f[fieldAnthropicInputTokensReset], resetTime)
	a.pair(f[fieldAnthropicOutputTokensRemaining], f[fieldAnthropicOutputTokensReset], resetTime)
	return a.hint()
}

// field numbers the headers Parse reads.
type field uint8

const (
	fieldDate field = iota
	fieldRetryAfter
	fieldRetryAfterMs
	fieldMsRetryAfterMs
	fieldRateLimit
	fieldRateLimitPolicy
	fieldRateLimitRemaining
	fieldRateLimitReset
	fieldXRemaining
	fieldXReset
	fieldRemainingRequests
	fieldResetRequests
	fieldRemainingTokens
	fieldResetTokens
	fieldAnthropicRequestsRemaining
	fieldAnthropicRequestsReset
	fieldAnthropicTokensRemaining
	fieldAnthropicTokensReset
	fieldAnthropicInputTokensRemaining
	fieldAnthropicInputTokensReset
	fieldAnthropicOutputTokensRemaining
	fieldAnthropicOutputTokensReset
	numFields
)

// fieldOf returns the field a canonical header name is, if Parse reads it.
func fieldOf(name string) (field, bool) {
	switch name {
	case headerDate:
		return fieldDate, true
	case headerRetryAfter:
		return fieldRetryAfter, true
	case headerRetryAfterMs:
		return fieldRetryAfterMs, true
	case headerMsRetryAfterMs:
		return fieldMsRetryAfterMs, true
	case headerRateLimit:
		return fieldRateLimit, true
	case headerRateLimitPolicy:
		return fieldRateLimitPolicy, true
	case headerRateLimitRemaining:
		return fieldRateLimitRemaining, true
	case headerRateLimitReset:
		return fieldRateLimitReset, true
	case headerXRemaining:
		return fieldXRemaining, true
	case headerXReset:
		return fieldXReset, true
	case headerRemainingRequests:
		return fieldRemainingRequests, true
	case headerResetRequests:
		return fieldResetRequests, true
	case headerRemainingTokens:
		return fieldRemainingTokens, true
	case headerResetTokens:
		return fieldResetTokens, true
	case headerAnthropicRequestsRemaining:
		return fieldAnthropicRequestsRemaining, true
	case headerAnthropicRequestsReset:
		return fieldAnthropicRequestsReset, true
	case headerAnthropicTokensRemaining:
		return fieldAnthropicTokensRemaining, true
	case headerAnthropicTokensReset:
		return fieldAnthropicTokensReset, true
	case headerAnthropicInputTokensRemaining:
		return fieldAnthropicInputTokensRemaining, true
	case headerAnthropicInputTokensReset:
		return fieldAnthropicInputTokensReset, true
	case headerAnthropicOutputTokensRemaining:
		return fieldAnthropicOutputTokensRemaining, true
	case headerAnthropicOutputTokensReset:
		return fieldAnthropicOutputTokensReset, true
	}
	return 0, false
}

// acc accumulates the waits of one response.
type acc struct {
	now  time.Time
	date []string // the Date header's lines

	ref      time.Time // the server's clock: Date, or now
	refKnown bool

	wait      time.Duration
	announced bool
	reset     time.Duration
	exhausted bool
}

func (a *acc) announce(d time.Duration) {
	if !a.announced || d > a.wait {
		a.wait = d
	}
	a.announced = true
}

// exhaust records a quota with nothing left for d.
func (a *acc) exhaust(d time.Duration) {
	a.announce(d)
	if !a.exhausted || d > a.reset {
		a.reset = d
	}
	a.exhausted = true
}

func (a *acc) hint() Hint {
	h := Hint{Wait: a.wait, Announced: a.announced, Exhausted: a.exhausted}
	if a.exhausted {
		h.ResetAt = a.now.Add(a.reset)
	}
	return h
}

// until returns the wait until the absolute time t of the server's clock;
// 0 if it is past.
func (a *acc) until(t time.Time) time.Duration {
	if !a.refKnown {
		a.ref, a.refKnown = a.now, true
		if len(a.date) == 1 {
			if date, ok := httpDate(trimOWS(a.date[0]), a.now); ok {
				a.ref = date
			}
		}
	}
	return max(0, t.Sub(a.ref))
}

// milliseconds reads the lines of a retry-after-ms header.
func (a *acc) milliseconds(lines []string) {
	for _, line := range lines {
		for rest, more := line, true; more; {
			var elem string
			elem, rest, more = cutComma(rest)
			if d, ok := milliseconds(elem); ok {
				a.announce(d)
			}
		}
	}
}

// resetKind is how a reset header writes its value.
type resetKind uint8

const (
	// resetTime: a number of seconds or a Unix time, an HTTP-date or an
	// RFC 3339 time.
	resetTime resetKind = iota
	// resetDuration: a Go-style duration ("6m0s"), or bare seconds.
	resetDuration
)

// pair reads a remaining count and its reset: when the smallest remaining
// count is 0 and a reset is known, the quota is exhausted until the latest
// reset.
func (a *acc) pair(remaining, reset []string, kind resetKind) {
	if len(remaining) == 0 || len(reset) == 0 {
		return
	}
	if n, ok := minRemaining(remaining); !ok || n != 0 {
		return
	}
	if d, ok := a.maxReset(reset, kind); ok {
		a.exhaust(d)
	}
}

// minRemaining returns the smallest valid count in the lines of a
// remaining header.
func minRemaining(lines []string) (n int64, ok bool) {
	for _, line := range lines {
		for rest, more := line, true; more; {
			var elem string
			elem, rest, more = cutComma(rest)
			if v, valid := nonNegativeInt(trimOWS(elem)); valid && (!ok || v < n) {
				n, ok = v, true
			}
		}
	}
	return n, ok
}

// maxReset returns the longest wait in the lines of a reset header. A line
// is read whole first (an HTTP-date has a comma), then, if that fails, as a
// comma-separated list.
func (a *acc) maxReset(lines []string, kind resetKind) (d time.Duration, ok bool) {
	for _, line := range lines {
		if v, valid := a.resetValue(line, kind); valid {
			d, ok = max(d, v), true
			continue
		}
		for rest, more := line, true; more; {
			var elem string
			elem, rest, more = cutComma(rest)
			if v, valid := a.resetValue(elem, kind); valid {
				d, ok = max(d, v), true
			}
		}
	}
	return d, ok
}

// maxUnix is the last second of year 9999, past which a Unix time is
// clamped: time.Unix would overflow long before math.MaxInt64.
const maxUnix = 253402300799

// resetValue reads one reset value as a wait from now.
func (a *acc) resetValue(s string, kind resetKind) (time.Duration, bool) {
	s = trimOWS(s)
	if kind == resetDuration {
		return duration(s)
	}
	if whole, frac, ok := decimal(s); ok {
		if whole <= unixThreshold {
			return scale(whole, frac, time.Second), true
		}
		if whole > maxUnix {
			return maxWait, true
		}
		nanos := scale(0, frac, time.Second)
		return a.until(time.Unix(whole, int64(nanos))), true
	}
	if t, ok := httpDate(s, a.now); ok {
		return a.until(t), true
	}
	if t, ok := rfc3339(s); ok {
		return a.until(t), true
	}
	return 0, false
}
