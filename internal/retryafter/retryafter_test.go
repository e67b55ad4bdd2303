package retryafter

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var now = time.Date(2026, time.November, 23, 12, 0, 0, 0, time.UTC)

func TestParse(t *testing.T) {
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
		{"huge seconds clamp", "99999999999999999999999999", time.Duration(maxSeconds) * time.Second, true},
		{"negative", "-5", 0, false},
		{"fraction", "1.5", 0, false},
		{"plus sign", "+5", 0, false},
		{"trailing garbage", "5s", 0, false},
		{"garbage", "soon", 0, false},
		{"IMF-fixdate", "Mon, 23 Nov 2026 12:00:30 GMT", 30 * time.Second, true},
		{"RFC 850", "Monday, 23-Nov-26 12:01:00 GMT", time.Minute, true},
		{"asctime", "Mon Nov 23 12:00:05 2026", 5 * time.Second, true},
		{"date in the past", "Sun, 22 Nov 2026 12:00:00 GMT", 0, true},
		{"date equal to now", "Mon, 23 Nov 2026 12:00:00 GMT", 0, true},
		{"malformed date", "Mon, 32 Nov 2026 12:00:00 GMT", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Parse(tt.value, now)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("Parse(%q) = %v, %v; want %v, %v", tt.value, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestParseSecondsAllocatesNothing(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() { Parse("120", now) })
	if allocs != 0 {
		t.Fatalf("Parse of delay-seconds allocated %v times per call; want 0", allocs)
	}
}

func FuzzParse(f *testing.F) {
	for _, seed := range []string{"0", "120", "-1", "1e3", "Mon, 23 Nov 2026 12:00:30 GMT",
		"Monday, 23-Nov-26 12:01:00 GMT", "Mon Nov 23 12:00:05 2026", "garbage", "99999999999999999999"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		d, ok := Parse(value, now)
		if d < 0 {
			t.Fatalf("Parse(%q) returned a negative delay %v", value, d)
		}
		if !ok && d != 0 {
			t.Fatalf("Parse(%q) returned delay %v with ok=false", value, d)
		}
	})
}

func BenchmarkParseSeconds(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Parse("120", now)
	}
}

func BenchmarkParseDate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Parse("Mon, 23 Nov 2026 12:00:30 GMT", now)
	}
}
