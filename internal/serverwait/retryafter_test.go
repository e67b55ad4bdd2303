package serverwait

import (
	"net/http"
	"testing"
	"time"
)

// now is a Monday.
var now = time.Date(2026, time.November, 23, 12, 0, 0, 0, time.UTC)

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		name  string
		value string
		want  time.Duration
		ok    bool
	}{
		{"empty", "", 0, false},
		{"blank", "  ", 0, false},
		{"zero seconds", "0", 0, true},
		{"seconds", "120", 120 * time.Second, true},
		{"seconds with OWS", " 7\t", 7 * time.Second, true},
		{"leading zeros", "007", 7 * time.Second, true},
		{"huge seconds clamp", "99999999999999999999999999", maxWait, true},
		{"largest whole seconds", "9223372036", 9223372036 * time.Second, true},
		{"one past the largest whole seconds", "9223372037", maxWait, true},
		{"negative", "-5", 0, false},
		{"fraction", "1.5", 0, false},
		{"plus sign", "+5", 0, false},
		{"trailing garbage", "5s", 0, false},
		{"two values folded", "5, 6", 0, false},
		{"garbage", "soon", 0, false},
		{"IMF-fixdate", "Mon, 23 Nov 2026 12:00:30 GMT", 30 * time.Second, true},
		{"RFC 850", "Monday, 23-Nov-26 12:01:00 GMT", time.Minute, true},
		{"asctime", "Mon Nov 23 12:00:05 2026", 5 * time.Second, true},
		{"asctime with a space-padded day", "Tue Dec  1 12:00:00 2026", 8 * 24 * time.Hour, true},
		{"asctime with a zero-padded day", "Tue Dec 01 12:00:00 2026", 8 * 24 * time.Hour, true},
		{"date in the past", "Sun, 22 Nov 2026 12:00:00 GMT", 0, true},
		{"date equal to now", "Mon, 23 Nov 2026 12:00:00 GMT", 0, true},
		{"malformed date", "Mon, 32 Nov 2026 12:00:00 GMT", 0, false},
		{"29 February of a common year", "Sun, 29 Feb 2027 12:00:00 GMT", 0, false},
		{"hour 24", "Mon, 23 Nov 2026 24:00:00 GMT", 0, false},
		{"leap second", "Mon, 23 Nov 2026 12:00:60 GMT", 0, false},
		{"zone other than GMT", "Mon, 23 Nov 2026 12:00:30 UTC", 0, false},
		{"lower-case day name", "mon, 23 Nov 2026 12:00:30 GMT", 0, false},
		{"fractional seconds", "Mon, 23 Nov 2026 12:00:30.5 GMT", 0, false},
		// RFC 9110 §5.6.7: a two-digit year more than 50 years ahead is in
		// the past century. From 2026, "70" is 2070 and "77" is 1977.
		{"RFC 850 year 44 years ahead", "Thursday, 01-Jan-70 00:00:00 GMT", time.Date(2070, 1, 1, 0, 0, 0, 0, time.UTC).Sub(now), true},
		{"RFC 850 year 51 years ahead is in the past", "Saturday, 01-Jan-77 00:00:00 GMT", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := RetryAfter(tt.value, now)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("RetryAfter(%q) = %v, %v; want %v, %v", tt.value, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestRetryAfterAllocatesNothing(t *testing.T) {
	for _, v := range []string{"120", "Mon, 23 Nov 2026 12:00:30 GMT", "Monday, 23-Nov-26 12:01:00 GMT",
		"Mon Nov 23 12:00:05 2026", "Mon, 32 Nov 2026 12:00:00 GMT", "soon", "-1", ""} {
		if allocs := testing.AllocsPerRun(100, func() { RetryAfter(v, now) }); allocs != 0 {
			t.Errorf("RetryAfter(%q) allocated %v times per call; want 0", v, allocs)
		}
	}
}

func FuzzRetryAfter(f *testing.F) {
	for _, seed := range []string{"0", "120", "-1", "1e3", "Mon, 23 Nov 2026 12:00:30 GMT",
		"Monday, 23-Nov-26 12:01:00 GMT", "Mon Nov 23 12:00:05 2026", "Mon Nov  3 12:00:05 2026",
		"garbage", "99999999999999999999"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		d, ok := RetryAfter(value, now)
		if d < 0 {
			t.Fatalf("RetryAfter(%q) returned a negative delay %v", value, d)
		}
		if !ok && d != 0 {
			t.Fatalf("RetryAfter(%q) returned delay %v with ok=false", value, d)
		}
		// A date RetryAfter accepts, net/http accepts as the same instant
		// (but for the two-digit year, which net/http reads differently).
		v := trimOWS(value)
		if ok && v != "" && !isDigit(v[0]) {
			std, err := http.ParseTime(v)
			if err != nil {
				t.Fatalf("RetryAfter(%q) = %v, but http.ParseTime fails: %v", value, d, err)
			}
			if want := max(0, std.Sub(now)); want != d && !isRFC850(v) {
				t.Fatalf("RetryAfter(%q) = %v; http.ParseTime gives %v", value, d, want)
			}
		}
	})
}

func isRFC850(v string) bool { return len(v) > 3 && v[3] != ',' && v[3] != ' ' }

func BenchmarkRetryAfter(b *testing.B) {
	for _, c := range []struct{ name, value string }{
		{"form=seconds", "120"},
		{"form=IMF-fixdate", "Mon, 23 Nov 2026 12:02:00 GMT"},
		{"form=RFC850", "Monday, 23-Nov-26 12:02:00 GMT"},
		{"form=asctime", "Mon Nov 23 12:02:00 2026"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d, ok := RetryAfter(c.value, now); !ok || d != 2*time.Minute {
					b.Fatalf("RetryAfter(%q) = %v, %v", c.value, d, ok)
				}
			}
		})
	}
}

// BenchmarkHTTPParseTime is what RetryAfter replaced for dates, measured in
// the same run.
func BenchmarkHTTPParseTime(b *testing.B) {
	for _, c := range []struct{ name, value string }{
		{"form=IMF-fixdate", "Mon, 23 Nov 2026 12:02:00 GMT"},
		{"form=RFC850", "Monday, 23-Nov-26 12:02:00 GMT"},
		{"form=asctime", "Mon Nov 23 12:02:00 2026"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := http.ParseTime(c.value); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
