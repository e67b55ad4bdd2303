// Package retryafter parses the Retry-After response header (RFC 9110 §10.2.3).
package retryafter

import (
	"math"
	"net/http"
	"strings"
	"time"
)

// maxSeconds is the largest delay-seconds value that still fits a
// time.Duration; larger values are clamped to it rather than rejected, so a
// server that asks for "forever" is treated as asking for a very long time.
const maxSeconds = int64(math.MaxInt64 / int64(time.Second))

// Parse returns the delay a Retry-After value asks for, measured from now.
// It accepts delay-seconds and the three HTTP-date formats of RFC 9110
// §5.6.7 (IMF-fixdate, RFC 850, asctime). A date at or before now means no
// delay. ok is false when the value is empty or malformed. Parse allocates
// nothing for delay-seconds values.
func Parse(value string, now time.Time) (delay time.Duration, ok bool) {
	value = strings.Trim(value, " \t")
	if value == "" {
		return 0, false
	}
	if isDigit(value[0]) {
		return parseSeconds(value)
	}
	when, err := http.ParseTime(value)
	if err != nil {
		return 0, false
	}
	if !when.After(now) {
		return 0, true
	}
	return when.Sub(now), true
}

// parseSeconds parses 1*DIGIT, clamping values too large for a Duration.
func parseSeconds(value string) (time.Duration, bool) {
	var secs int64
	for i := 0; i < len(value); i++ {
		c := value[i]
		if !isDigit(c) {
			return 0, false
		}
		if secs <= maxSeconds {
			secs = secs*10 + int64(c-'0')
		}
	}
	if secs > maxSeconds {
		secs = maxSeconds
	}
	return time.Duration(secs) * time.Second, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
