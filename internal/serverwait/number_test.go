package serverwait

import (
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	tests := []struct {
		value string
		want  time.Duration
		ok    bool
	}{
		// OpenAI's rate-limit guide ("Rate limits in headers") shows 1s and
		// 6m0s; its community forum shows 12ms and 9ms.
		{"1s", time.Second, true},
		{"6m0s", 6 * time.Minute, true},
		{"20ms", 20 * time.Millisecond, true},
		{"12ms", 12 * time.Millisecond, true},
		{"1h2m3.5s", time.Hour + 2*time.Minute + 3500*time.Millisecond, true},
		{"0.5s", 500 * time.Millisecond, true},
		{".5s", 500 * time.Millisecond, true},
		{"5.s", 5 * time.Second, true},
		{"1m30.250s", 90250 * time.Millisecond, true},
		{"7us", 7 * time.Microsecond, true},
		{"7\u00b5s", 7 * time.Microsecond, true},
		{"7\u03bcs", 7 * time.Microsecond, true},
		{"7ns", 7, true},
		{"0s", 0, true},
		// Azure OpenAI sends bare seconds in the same headers.
		{"0", 0, true},
		{"37", 37 * time.Second, true},
		{"2.5", 2500 * time.Millisecond, true},
		{"3000000000h", maxWait, true},
		{"9223372036854775807ns", maxWait, true},
		{"9223372036854775808ns", maxWait, true},
		{"99999999999999999999999s", maxWait, true},
		{"", 0, false},
		{"s", 0, false},
		{".s", 0, false},
		{"-1s", 0, false},
		{"+1s", 0, false},
		{"1", time.Second, true},
		{"1x", 0, false},
		{"1 s", 0, false},
		{"1s1", 0, false},
		{"1d", 0, false},
		{"NaN", 0, false},
		{"Inf", 0, false},
		{"1e3s", 0, false},
	}
	for _, tt := range tests {
		got, ok := duration(tt.value)
		if got != tt.want || ok != tt.ok {
			t.Errorf("duration(%q) = %v, %v; want %v, %v", tt.value, got, ok, tt.want, tt.ok)
		}
	}
}

func TestMilliseconds(t *testing.T) {
	tests := []struct {
		value string
		want  time.Duration
		ok    bool
	}{
		{"300", 300 * time.Millisecond, true},
		{" 37000 ", 37 * time.Second, true},
		{"0.5", 500 * time.Microsecond, true},
		{"1.0000000009", time.Millisecond, true},
		{"99999999999999999999", maxWait, true},
		{"9223372036854", 9223372036854 * time.Millisecond, true},
		{"9223372036855", maxWait, true},
		{"-1", 0, false},
		{"1e3", 0, false},
		{"NaN", 0, false},
		{"", 0, false},
		{".5", 0, false},
	}
	for _, tt := range tests {
		got, ok := milliseconds(tt.value)
		if got != tt.want || ok != tt.ok {
			t.Errorf("milliseconds(%q) = %v, %v; want %v, %v", tt.value, got, ok, tt.want, tt.ok)
		}
	}
}

// FuzzDuration checks duration against time.ParseDuration: on every input
// both accept they agree to the nanosecond; time.ParseDuration accepts
// nothing else but signed values; duration accepts nothing else but bare
// numbers (seconds) and values too large for time.ParseDuration, which
// saturate.
func FuzzDuration(f *testing.F) {
	for _, seed := range []string{"6m0s", "1s", "20ms", "1h2m3.5s", "0.5s", "37", "1.000000000000000000001s",
		"9223372036854775807ns", "2562047h47m16.854775807s", "2562047h47m16.854775808s"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		got, ok := duration(value)
		std, err := time.ParseDuration(value)
		if ok && got < 0 {
			t.Fatalf("duration(%q) = %v, negative", value, got)
		}
		if !ok && got != 0 {
			t.Fatalf("duration(%q) = %v with ok=false", value, got)
		}
		_, _, bare := decimal(value)
		switch {
		case ok && err == nil:
			if got != std {
				t.Fatalf("duration(%q) = %v; time.ParseDuration gives %v", value, got, std)
			}
		case ok && !bare && got != maxWait:
			t.Fatalf("duration(%q) = %v, but time.ParseDuration fails: %v", value, got, err)
		case !ok && err == nil && value[0] != '-' && value[0] != '+':
			t.Fatalf("duration(%q) fails, but time.ParseDuration gives %v", value, std)
		}
	})
}

func TestNumbersAllocateNothing(t *testing.T) {
	for _, v := range []string{"1h2m3.5s", "37", "1x", "99999999999999999999999s"} {
		if allocs := testing.AllocsPerRun(100, func() { duration(v) }); allocs != 0 {
			t.Errorf("duration(%q) allocated %v times per call; want 0", v, allocs)
		}
	}
}
