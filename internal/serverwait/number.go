package serverwait

import (
	"math"
	"time"
)

// maxWait is the longest wait a header can announce. Larger values are
// clamped to it rather than rejected: a server that asks for "forever" is
// asking for a very long time, and the retry loop's cap turns that into
// "do not retry".
const maxWait = time.Duration(math.MaxInt64)

// unixThreshold separates the two readings of a bare reset number: above
// it, a Unix time in seconds (GitHub's x-ratelimit-reset); at or below it,
// a number of seconds from now. 1,000,000,000 seconds is 31.7 years, far
// beyond any window, and as a Unix time it is September 2001, far in the
// past: no value is ambiguous in practice.
const unixThreshold = 1_000_000_000

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// trimOWS removes the optional whitespace (SP and HTAB, RFC 9110 §5.6.3)
// around a field value or a list element.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// cutComma splits s at its first comma, for headers that proxies may have
// folded into one comma-separated line. found is false when s has none.
func cutComma(s string) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// decimal splits 1*DIGIT ["." 1*DIGIT] into its integer part, saturated at
// math.MaxInt64, and the digits of its fraction. It accepts no sign, no
// exponent and no surrounding space.
func decimal(s string) (whole int64, frac string, ok bool) {
	i := 0
	for ; i < len(s) && isDigit(s[i]); i++ {
		d := int64(s[i] - '0')
		if whole > (math.MaxInt64-d)/10 {
			whole = math.MaxInt64
		} else {
			whole = whole*10 + d
		}
	}
	if i == 0 {
		return 0, "", false
	}
	if i == len(s) {
		return whole, "", true
	}
	if s[i] != '.' || i+1 == len(s) {
		return 0, "", false
	}
	frac = s[i+1:]
	for j := 0; j < len(frac); j++ {
		if !isDigit(frac[j]) {
			return 0, "", false
		}
	}
	return whole, frac, true
}

// nonNegativeInt parses 1*DIGIT, saturating at math.MaxInt64: a remaining
// count. A sign (Azure OpenAI sends -1 for "not applicable"), a fraction or
// anything else makes it malformed.
func nonNegativeInt(s string) (int64, bool) {
	whole, frac, ok := decimal(s)
	if !ok || frac != "" {
		return 0, false
	}
	return whole, true
}

// scale returns whole.frac units, saturating at maxWait. Fraction digits
// past the ninth are ignored (sub-nanosecond for seconds).
func scale(whole int64, frac string, unit time.Duration) time.Duration {
	if whole > int64(maxWait/unit) {
		return maxWait
	}
	d := time.Duration(whole) * unit
	var f, div int64 = 0, 1
	for i := 0; i < len(frac) && i < 9; i++ {
		f = f*10 + int64(frac[i]-'0')
		div *= 10
	}
	// f < 1e9 and unit <= time.Second, so f*unit < 1e18 cannot overflow.
	return addSat(d, time.Duration(f*int64(unit)/div))
}

// addSat adds two non-negative durations, saturating at maxWait.
func addSat(a, b time.Duration) time.Duration {
	if a > maxWait-b {
		return maxWait
	}
	return a + b
}

// durationUnits are the units of Go's time.ParseDuration, which is the
// format OpenAI's x-ratelimit-reset-* values follow ("6m0s", "20ms").
func durationUnit(u string) (time.Duration, bool) {
	switch u {
	case "ns":
		return time.Nanosecond, true
	case "us", "\u00b5s", "\u03bcs": // U+00B5 micro sign, U+03BC Greek mu
		return time.Microsecond, true
	case "ms":
		return time.Millisecond, true
	case "s":
		return time.Second, true
	case "m":
		return time.Minute, true
	case "h":
		return time.Hour, true
	}
	return 0, false
}

// duration parses a Go-style duration ("1h2m3.5s", "6m0s", "20ms") as
// OpenAI sends in x-ratelimit-reset-requests and -tokens, and a bare
// decimal number as seconds, as Azure OpenAI sends in the same headers
// ("0", "37"). It accepts no sign: a negative wait means nothing. Where
// time.ParseDuration fails on overflow, duration saturates at maxWait; for
// every other input the two agree to the nanosecond (the fraction of each
// component is computed with the same float64 expression).
func duration(s string) (time.Duration, bool) {
	if s == "" {
		return 0, false
	}
	if whole, frac, ok := decimal(s); ok {
		return scale(whole, frac, time.Second), true
	}
	var total uint64
	saturated := false
	for s != "" {
		// A component: [digits] ["." [digits]] unit, with at least one digit.
		if !(s[0] == '.' || isDigit(s[0])) {
			return 0, false
		}
		var v uint64
		i := 0
		for ; i < len(s) && isDigit(s[i]); i++ {
			if v > (1<<63)/10 {
				saturated = true
				continue
			}
			v = v*10 + uint64(s[i]-'0')
			if v > 1<<63 {
				saturated = true
			}
		}
		pre := i > 0
		s = s[i:]
		var f uint64
		div := 1.0
		post := false
		if s != "" && s[0] == '.' {
			s = s[1:]
			fracOverflow := false
			i = 0
			for ; i < len(s) && isDigit(s[i]); i++ {
				if fracOverflow {
					continue
				}
				if f > (1<<63-1)/10 {
					fracOverflow = true
					continue
				}
				y := f*10 + uint64(s[i]-'0')
				if y > 1<<63 {
					fracOverflow = true
					continue
				}
				f = y
				div *= 10
			}
			post = i > 0
			s = s[i:]
		}
		if !pre && !post {
			return 0, false
		}
		i = 0
		for ; i < len(s) && s[i] != '.' && !isDigit(s[i]); i++ {
		}
		unit, ok := durationUnit(s[:i])
		if !ok {
			return 0, false
		}
		s = s[i:]
		if saturated {
			continue // keep validating the rest; the result is maxWait
		}
		u := uint64(unit)
		if v > (1<<63)/u {
			saturated = true
			continue
		}
		v *= u
		if f > 0 {
			v += uint64(float64(f) * (float64(u) / div))
			if v > 1<<63 {
				saturated = true
				continue
			}
		}
		total += v
		if total > 1<<63-1 {
			saturated = true
		}
	}
	if saturated {
		return maxWait, true
	}
	return time.Duration(total), true
}
