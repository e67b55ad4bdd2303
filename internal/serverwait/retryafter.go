package serverwait

import (
	"time"
)

// RetryAfter returns the delay one Retry-After value asks for, measured
// from now (RFC 9110 §10.2.3): delay-seconds, or an HTTP-date in any of
// the three formats of §5.6.7. A date at or before now means no delay;
// delay-seconds too large for a Duration are clamped. ok is false when the
// value is empty or malformed (a fraction, a sign, trailing text). It
// allocates nothing, whatever the value.
func RetryAfter(value string, now time.Time) (delay time.Duration, ok bool) {
	value = trimOWS(value)
	if value != "" && isDigit(value[0]) {
		return delaySeconds(value) // the common case needs no clock
	}
	a := acc{now: now, ref: now, refKnown: true}
	return a.retryAfter(value)
}

// retryAfter parses one Retry-After value, reading a date against the
// server's clock.
func (a *acc) retryAfter(value string) (time.Duration, bool) {
	value = trimOWS(value)
	if value == "" {
		return 0, false
	}
	if isDigit(value[0]) {
		return delaySeconds(value)
	}
	when, ok := httpDate(value, a.now)
	if !ok {
		return 0, false
	}
	return a.until(when), true
}

// delaySeconds parses 1*DIGIT, clamping values too large for a Duration.
func delaySeconds(value string) (time.Duration, bool) {
	secs, ok := nonNegativeInt(value)
	if !ok {
		return 0, false
	}
	return scale(secs, "", time.Second), true
}

// milliseconds parses one retry-after-ms value: a non-negative decimal
// number of milliseconds. OpenAI's SDKs read it as a float
// (openai-go's parseRetryAfterHeader uses strconv.ParseFloat), so a
// fraction is accepted; an exponent, a sign, NaN or Inf are not.
func milliseconds(value string) (time.Duration, bool) {
	whole, frac, ok := decimal(trimOWS(value))
	if !ok {
		return 0, false
	}
	return scale(whole, frac, time.Millisecond), true
}
