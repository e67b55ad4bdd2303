package serverwait

import (
	"net/http"
	"testing"
	"time"
)

func TestHTTPDate(t *testing.T) {
	want := time.Date(1994, time.November, 6, 8, 49, 37, 0, time.UTC)
	// The three examples of RFC 9110 §5.6.7, read in 2026: the RFC 850
	// year 94 is 1994, 32 years back, not 2094, 68 years ahead.
	for _, v := range []string{"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"} {
		got, ok := httpDate(v, now)
		if !ok || !got.Equal(want) {
			t.Errorf("httpDate(%q) = %v, %v; want %v", v, got, ok, want)
		}
	}
	for _, v := range []string{
		"", "Sun, 06 Nov 1994 08:49:37 gmt", "Sun,  6 Nov 1994 08:49:37 GMT", "Sun, 06 nov 1994 08:49:37 GMT",
		"Sun, 06 Nov 1994 08:49 GMT", "Sun, 06 Nov 94 08:49:37 GMT", "Sunday, 06-Nov-1994 08:49:37 GMT",
		"Sundae, 06-Nov-94 08:49:37 GMT", "Sun Nov 6 08:49:37 1994", "Sun Nov  6 8:49:37 1994",
		"Sun Nov 31 08:49:37 1994", "Sun Nov  0 08:49:37 1994", "Sun, 06 Nov 1994 08:4a:37 GMT",
		"Wednesday,06-Nov-94 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 GMT ", " Sun, 06 Nov 1994 08:49:37 GMT",
	} {
		if got, ok := httpDate(v, now); ok {
			t.Errorf("httpDate(%q) = %v; want a failure", v, got)
		}
	}
}

func TestRFC3339(t *testing.T) {
	tests := []struct {
		value string
		want  time.Time
		ok    bool
	}{
		// Anthropic's anthropic-ratelimit-*-reset, as recorded in tidyllm's
		// test fixtures (tests/testthat/claude/api.anthropic.com).
		{"2025-08-21T12:40:59Z", time.Date(2025, 8, 21, 12, 40, 59, 0, time.UTC), true},
		{"2025-08-21T12:40:59.5Z", time.Date(2025, 8, 21, 12, 40, 59, 5e8, time.UTC), true},
		{"2025-08-21T12:40:59.123456789123Z", time.Date(2025, 8, 21, 12, 40, 59, 123456789, time.UTC), true},
		{"2025-08-21T14:40:59+02:00", time.Date(2025, 8, 21, 12, 40, 59, 0, time.UTC), true},
		{"2025-08-21T10:40:59-02:00", time.Date(2025, 8, 21, 12, 40, 59, 0, time.UTC), true},
		{"2024-02-29T00:00:00Z", time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), true},
		{"2025-02-29T00:00:00Z", time.Time{}, false},
		{"2025-08-21 12:40:59Z", time.Time{}, false},
		{"2025-08-21T12:40:59", time.Time{}, false},
		{"2025-08-21T12:40:59.Z", time.Time{}, false},
		{"2025-08-21T12:40:59+0200", time.Time{}, false},
		{"2025-08-21T12:40:59+24:00", time.Time{}, false},
		{"2025-13-21T12:40:59Z", time.Time{}, false},
		{"2025-08-21T12:40:59ZZ", time.Time{}, false},
		{"1755780059", time.Time{}, false},
	}
	for _, tt := range tests {
		got, ok := rfc3339(tt.value)
		if ok != tt.ok || !got.Equal(tt.want) {
			t.Errorf("rfc3339(%q) = %v, %v; want %v, %v", tt.value, got, ok, tt.want, tt.ok)
		}
	}
}

func TestDatesAllocateNothing(t *testing.T) {
	for _, v := range []string{"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "garbage"} {
		if allocs := testing.AllocsPerRun(100, func() { httpDate(v, now) }); allocs != 0 {
			t.Errorf("httpDate(%q) allocated %v times per call; want 0", v, allocs)
		}
	}
	for _, v := range []string{"2025-08-21T12:40:59.5+02:00", "2025-08-21T12:40:59Q"} {
		if allocs := testing.AllocsPerRun(100, func() { rfc3339(v) }); allocs != 0 {
			t.Errorf("rfc3339(%q) allocated %v times per call; want 0", v, allocs)
		}
	}
}

// FuzzHTTPDate checks httpDate against net/http: whatever httpDate
// accepts, http.ParseTime accepts as the same instant (the RFC 850 year
// aside, which net/http pivots at 69 instead of RFC 9110's 50 years). The
// converse does not hold: net/http also accepts other zones, one-digit
// hours and days, fractions of a second and any case.
func FuzzHTTPDate(f *testing.F) {
	for _, seed := range []string{"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
		"Sun Nov  6 08:49:37 1994", "Wed, 29 Feb 2024 23:59:59 GMT", "Wednesday, 29-Feb-24 23:59:59 GMT"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		got, ok := httpDate(value, now)
		if !ok {
			return
		}
		std, err := http.ParseTime(value)
		if err != nil {
			t.Fatalf("httpDate(%q) = %v, but http.ParseTime fails: %v", value, got, err)
		}
		if isRFC850(value) {
			std = std.AddDate(got.Year()-std.Year(), 0, 0)
			if (got.Year()-std.Year())%100 != 0 {
				t.Fatalf("httpDate(%q) = %v; http.ParseTime gives %v", value, got, std)
			}
		}
		if !got.Equal(std) {
			t.Fatalf("httpDate(%q) = %v; http.ParseTime gives %v", value, got, std)
		}
		if isRFC850(value) && got.Sub(now) > 50*366*24*time.Hour {
			t.Fatalf("httpDate(%q) = %v, more than 50 years after now", value, got)
		}
	})
}

// FuzzRFC3339 checks rfc3339 against time.Parse: whatever rfc3339 accepts,
// time.Parse accepts as the same instant.
func FuzzRFC3339(f *testing.F) {
	for _, seed := range []string{"2025-08-21T12:40:59Z", "2025-08-21T12:40:59.123+02:00", "2024-02-29T23:59:59-23:59"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		got, ok := rfc3339(value)
		if !ok {
			return
		}
		std, err := time.Parse(time.RFC3339Nano, value)
		if err != nil {
			t.Fatalf("rfc3339(%q) = %v, but time.Parse fails: %v", value, got, err)
		}
		if !got.Equal(std) {
			t.Fatalf("rfc3339(%q) = %v; time.Parse gives %v", value, got, std)
		}
	})
}
