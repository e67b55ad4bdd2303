package serverwait

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// header builds a response header as net/http would receive it: names
// canonicalised, repeated names kept in order.
func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func unix(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }

func rfc3339After(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }

func imf(t time.Time) string { return t.UTC().Format(http.TimeFormat) }

// announced, exhausted and none build the expected Hints.
func announced(d time.Duration) Hint { return Hint{Wait: d, Announced: true} }

func exhausted(wait, reset time.Duration) Hint {
	return Hint{Wait: wait, Announced: true, Exhausted: true, ResetAt: now.Add(reset)}
}

var none = Hint{}

type parseCase struct {
	name   string
	header http.Header
	want   Hint
}

func runParse(t *testing.T, tests []parseCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Parse(tt.header, now)
			if got != tt.want {
				t.Fatalf("Parse(%v) = %+v; want %+v", tt.header, got, tt.want)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	runParse(t, []parseCase{
		{"nothing", header(), none},
		{"nil header", nil, none},
		{"unrelated headers", header("Content-Type", "application/json", "Date", imf(now)), none},
		{"seconds", header("Retry-After", "120"), announced(2 * time.Minute)},
		{"zero", header("retry-after", "0"), announced(0)},
		{"date", header("Retry-After", "Mon, 23 Nov 2026 12:00:30 GMT"), announced(30 * time.Second)},
		{"date in the past", header("Retry-After", "Sun, 22 Nov 2026 12:00:00 GMT"), announced(0)},
		{"malformed", header("Retry-After", "soon"), none},
		{"sent twice: the longest", header("Retry-After", "5", "Retry-After", "50", "Retry-After", "7"), announced(50 * time.Second)},
		{"a malformed line beside a valid one", header("Retry-After", "soon", "Retry-After", "9"), announced(9 * time.Second)},
		// A date is read against the server's clock when Date says what
		// it is: a client 10 minutes behind still waits 30 seconds.
		{"date against a Date ahead of now", header("Date", imf(now.Add(10*time.Minute)), "Retry-After", imf(now.Add(10*time.Minute+30*time.Second))), announced(30 * time.Second)},
		{"date against a malformed Date", header("Date", "yesterday", "Retry-After", imf(now.Add(30*time.Second))), announced(30 * time.Second)},
		{"date against two Dates", header("Date", imf(now.Add(time.Hour)), "Date", imf(now), "Retry-After", imf(now.Add(30*time.Second))), announced(30 * time.Second)},
		// OpenAI and Azure OpenAI: retry-after-ms; openai-go prefers it to
		// Retry-After, and here the longest of the two wins.
		{"retry-after-ms", header("retry-after-ms", "300"), announced(300 * time.Millisecond)},
		{"retry-after-ms with a fraction", header("retry-after-ms", "1.5"), announced(1500 * time.Microsecond)},
		{"retry-after-ms longer than Retry-After", header("retry-after", "1", "retry-after-ms", "1500"), announced(1500 * time.Millisecond)},
		{"Retry-After longer than retry-after-ms", header("retry-after", "2", "retry-after-ms", "1500"), announced(2 * time.Second)},
		{"retry-after-ms folded", header("retry-after-ms", "100, 200"), announced(200 * time.Millisecond)},
		{"retry-after-ms malformed", header("retry-after-ms", "NaN", "retry-after-ms", "-5"), none},
		{"x-ms-retry-after-ms", header("x-ms-retry-after-ms", "250"), announced(250 * time.Millisecond)},
		// Issue 12: the fake API's 429, which saferetry used to retry after
		// the ordinary backoff. The reset without a remaining count is not a
		// wait; retry-after-ms is.
		{"issue 12's fake API", header("retry-after-ms", "300", "x-ratelimit-reset-requests", "300ms"), announced(300 * time.Millisecond)},
	})
}

// GitHub: "x-ratelimit-reset: the time at which the current rate limit
// window resets, in UTC epoch seconds"; over the primary limit, "a 403 or
// 429 response, and the x-ratelimit-remaining header will be 0"; over a
// secondary limit, possibly retry-after (docs.github.com, "Rate limits for
// the REST API").
func TestParseGitHub(t *testing.T) {
	runParse(t, []parseCase{
		{"primary limit exceeded", header(
			"Date", imf(now),
			"x-ratelimit-limit", "60",
			"x-ratelimit-remaining", "0",
			"x-ratelimit-used", "60",
			"x-ratelimit-reset", unix(30*time.Minute),
			"x-ratelimit-resource", "core",
		), exhausted(30*time.Minute, 30*time.Minute)},
		{"quota left", header("x-ratelimit-limit", "5000", "x-ratelimit-remaining", "4999", "x-ratelimit-reset", unix(time.Hour)), none},
		{"secondary limit with retry-after", header("retry-after", "60", "x-ratelimit-remaining", "4990", "x-ratelimit-reset", unix(time.Hour)), announced(time.Minute)},
		{"secondary limit with an exhausted primary", header("retry-after", "60", "x-ratelimit-remaining", "0", "x-ratelimit-reset", unix(time.Hour)), exhausted(time.Hour, time.Hour)},
		{"reset already past", header("x-ratelimit-remaining", "0", "x-ratelimit-reset", unix(-time.Minute)), exhausted(0, 0)},
		// The server's clock is 5 minutes ahead of ours: its reset, 10
		// minutes after its Date, is 10 minutes away, not 15.
		{"clock skew corrected by Date", header("Date", imf(now.Add(5*time.Minute)), "x-ratelimit-remaining", "0", "x-ratelimit-reset", unix(15*time.Minute)), exhausted(10*time.Minute, 10*time.Minute)},
		{"remaining without reset", header("x-ratelimit-remaining", "0"), none},
		{"reset without remaining", header("x-ratelimit-reset", unix(time.Hour)), none},
		{"Unix time with a fraction (Discord)", header("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", unix(time.Minute)+".250"), exhausted(time.Minute+250*time.Millisecond, time.Minute+250*time.Millisecond)},
		{"Unix time far in the future", header("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "99999999999999999999"), exhausted(maxWait, maxWait)},
		{"Unix time in year 9999", header("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "253402300799"), exhausted(time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC).Sub(now), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC).Sub(now))},
		{"Unix time just past year 9999", header("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "253402300800"), exhausted(maxWait, maxWait)},
		// Issue 12: above 1,000,000,000 a Unix time, below it seconds.
		{"seconds, not a Unix time", header("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "60"), exhausted(time.Minute, time.Minute)},
		{"1,000,000,000 is seconds", header("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "1000000000"), exhausted(1e9*time.Second, 1e9*time.Second)},
		{"1,000,000,001 is a Unix time (2001)", header("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "1000000001"), exhausted(0, 0)},
		{"an HTTP-date", header("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", imf(now.Add(time.Minute))), exhausted(time.Minute, time.Minute)},
		{"an RFC 3339 time", header("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", rfc3339After(time.Minute)), exhausted(time.Minute, time.Minute)},
		{"negative remaining", header("X-RateLimit-Remaining", "-1", "X-RateLimit-Reset", "60"), none},
		{"malformed remaining", header("X-RateLimit-Remaining", "zero", "X-RateLimit-Reset", "60"), none},
		{"malformed reset", header("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "1e9"), none},
		// Sent twice or folded by a proxy: the smallest remaining count,
		// the latest reset.
		{"remaining sent twice", header("X-RateLimit-Remaining", "10", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "60"), exhausted(time.Minute, time.Minute)},
		{"remaining folded", header("X-RateLimit-Remaining", "10, 0", "X-RateLimit-Reset", "60"), exhausted(time.Minute, time.Minute)},
		{"reset folded", header("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "60, 90"), exhausted(90*time.Second, 90*time.Second)},
		{"reset sent twice", header("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "30", "X-RateLimit-Reset", unix(time.Hour)), exhausted(time.Hour, time.Hour)},
	})
}

// OpenAI's rate-limit guide ("Rate limits in headers"):
// x-ratelimit-limit-requests 60, -limit-tokens 150000, -remaining-requests
// 59, -remaining-tokens 149984, -reset-requests 1s, -reset-tokens 6m0s;
// "the time until the rate limit ... resets to its initial state".
func TestParseOpenAI(t *testing.T) {
	runParse(t, []parseCase{
		{"the guide's example", header(
			"x-ratelimit-limit-requests", "60",
			"x-ratelimit-limit-tokens", "150000",
			"x-ratelimit-remaining-requests", "59",
			"x-ratelimit-remaining-tokens", "149984",
			"x-ratelimit-reset-requests", "1s",
			"x-ratelimit-reset-tokens", "6m0s",
		), none},
		{"tokens exhausted", header(
			"x-ratelimit-remaining-requests", "59",
			"x-ratelimit-remaining-tokens", "0",
			"x-ratelimit-reset-requests", "1s",
			"x-ratelimit-reset-tokens", "6m0s",
		), exhausted(6*time.Minute, 6*time.Minute)},
		{"requests exhausted", header(
			"x-ratelimit-remaining-requests", "0",
			"x-ratelimit-remaining-tokens", "149984",
			"x-ratelimit-reset-requests", "20ms",
			"x-ratelimit-reset-tokens", "6m0s",
		), exhausted(20*time.Millisecond, 20*time.Millisecond)},
		{"both exhausted: the later reset", header(
			"x-ratelimit-remaining-requests", "0",
			"x-ratelimit-remaining-tokens", "0",
			"x-ratelimit-reset-requests", "1h2m3.5s",
			"x-ratelimit-reset-tokens", "0.5s",
		), exhausted(time.Hour+2*time.Minute+3500*time.Millisecond, time.Hour+2*time.Minute+3500*time.Millisecond)},
		{"a 429 with retry-after-ms and an exhausted quota", header(
			"retry-after-ms", "300",
			"retry-after", "1",
			"x-ratelimit-remaining-requests", "0",
			"x-ratelimit-reset-requests", "17ms",
		), Hint{Wait: time.Second, Announced: true, Exhausted: true, ResetAt: now.Add(17 * time.Millisecond)}},
		{"malformed duration", header("x-ratelimit-remaining-tokens", "0", "x-ratelimit-reset-tokens", "6 minutes"), none},
	})
}

// Azure OpenAI sends retry-after-ms and retry-after on a 429 (Microsoft
// Learn, "Azure OpenAI 429: token and request rate limits explained"), and
// in the x-ratelimit-*-tokens headers bare seconds, or -1 and 0 where a
// limit does not apply (learn.microsoft.com Q&A 5625878; openai-dotnet
// issue 838).
func TestParseAzureOpenAI(t *testing.T) {
	runParse(t, []parseCase{
		{"a 429", header("retry-after-ms", "37000", "retry-after", "37", "x-ratelimit-remaining-requests", "119", "x-ratelimit-remaining-tokens", "0", "x-ratelimit-reset-tokens", "37"), exhausted(37*time.Second, 37*time.Second)},
		{"-1 means no limit", header("x-ratelimit-limit-tokens", "-1", "x-ratelimit-remaining-tokens", "-1", "x-ratelimit-reset-tokens", "0"), none},
		{"retry-after-ms only", header("retry-after-ms", "2500"), announced(2500 * time.Millisecond)},
	})
}

// Anthropic sends anthropic-ratelimit-{requests,tokens,input-tokens,
// output-tokens}-{limit,remaining,reset} on every response, resets in RFC
// 3339, and retry-after on a 429 (docs.anthropic.com, "Rate limits";
// Claude Platform on AWS user guide, "Rate limit headers"). The 200 below
// is tidyllm's recording of a real response.
func TestParseAnthropic(t *testing.T) {
	runParse(t, []parseCase{
		{"a recorded 200", header(
			"date", "Thu, 21 Aug 2025 12:41:00 GMT",
			"anthropic-ratelimit-input-tokens-limit", "80000",
			"anthropic-ratelimit-input-tokens-remaining", "80000",
			"anthropic-ratelimit-input-tokens-reset", "2025-08-21T12:40:59Z",
			"anthropic-ratelimit-output-tokens-limit", "16000",
			"anthropic-ratelimit-output-tokens-remaining", "16000",
			"anthropic-ratelimit-output-tokens-reset", "2025-08-21T12:41:00Z",
			"anthropic-ratelimit-requests-limit", "1000",
			"anthropic-ratelimit-requests-remaining", "999",
			"anthropic-ratelimit-requests-reset", "2025-08-21T12:40:59Z",
			"anthropic-ratelimit-tokens-limit", "96000",
			"anthropic-ratelimit-tokens-remaining", "96000",
			"anthropic-ratelimit-tokens-reset", "2025-08-21T12:40:59Z",
		), none},
		{"a 429 on requests", header(
			"retry-after", "20",
			"anthropic-ratelimit-requests-limit", "50",
			"anthropic-ratelimit-requests-remaining", "0",
			"anthropic-ratelimit-requests-reset", rfc3339After(20*time.Second),
			"anthropic-ratelimit-tokens-remaining", "40000",
			"anthropic-ratelimit-tokens-reset", rfc3339After(time.Minute),
		), exhausted(20*time.Second, 20*time.Second)},
		{"output tokens exhausted, read against Date", header(
			"Date", "Thu, 21 Aug 2025 12:41:00 GMT",
			"anthropic-ratelimit-output-tokens-remaining", "0",
			"anthropic-ratelimit-output-tokens-reset", "2025-08-21T12:41:45Z",
			"anthropic-ratelimit-input-tokens-remaining", "0",
			"anthropic-ratelimit-input-tokens-reset", "2025-08-21T12:41:30+00:00",
		), exhausted(45*time.Second, 45*time.Second)},
	})
}

// The IETF fields: the examples of draft-ietf-httpapi-ratelimit-headers-11
// and the three header modes of express-rate-limit (source/headers.ts).
func TestParseIETF(t *testing.T) {
	runParse(t, []parseCase{
		{"§4.2 quota left", header("RateLimit", `"default";r=50;t=30`), none},
		{"B.1.1 no quota left, on a 200", header("RateLimit", `"default";r=0;t=50`), exhausted(50*time.Second, 50*time.Second)},
		// B.1.4's Retry-After date is 5 seconds after its Date, 2019.
		{"B.1.4 throttled, Retry-After and RateLimit agree", header(
			"Date", "Mon, 05 Aug 2019 09:27:00 GMT",
			"Retry-After", "Mon, 05 Aug 2019 09:27:05 GMT",
			"RateLimit", `"default";r=0;t=5`,
		), exhausted(5*time.Second, 5*time.Second)},
		{"B.2.3 pushing back", header("RateLimit-Policy", `"dynamic";q=15;w=20`, "RateLimit", `"dynamic";r=0;t=20`), exhausted(20*time.Second, 20*time.Second)},
		{"B.3 Retry-After with quota left", header("Retry-After", "20", "RateLimit-Policy", `"dynamic";q=100;w=60`, "RateLimit", `"dynamic";r=15;t=40`), announced(20 * time.Second)},
		{"B.3.1 multiple windows", header("RateLimit-Policy", `"hour";q=1000;w=3600, "day";q=5000;w=86400`, "RateLimit", `"day";r=100;t=36000`), none},
		{"no t: the policy's window", header("RateLimit-Policy", `"peruser";q=100;w=60;pk=:cHsdsRa894==:`, "RateLimit", `"peruser";r=0;pk=:cHsdsRa894==:`), exhausted(time.Minute, time.Minute)},
		// The longest: a server whose Retry-After ends before its window.
		{"Retry-After shorter than an exhausted window", header("Retry-After", "5", "RateLimit", `"default";r=0;t=30`), exhausted(30*time.Second, 30*time.Second)},
		{"malformed, ignored", header("Retry-After", "5", "RateLimit", `"default";r=0;t=30,`), announced(5 * time.Second)},
		{"express draft-8", header("RateLimit-Policy", `"100-in-1min"; q=100; w=60; pk=:ZTNiMGM0NDI5OGZj:`, "RateLimit", `"100-in-1min"; r=0; t=42`), exhausted(42*time.Second, 42*time.Second)},
		{"express draft-7", header("RateLimit-Policy", `100;w=60`, "RateLimit", `limit=100, remaining=0, reset=42`), exhausted(42*time.Second, 42*time.Second)},
		{"express draft-6", header("RateLimit-Policy", `100;w=60`, "RateLimit-Limit", "100", "RateLimit-Remaining", "0", "RateLimit-Reset", "42"), exhausted(42*time.Second, 42*time.Second)},
		{"express draft-6 quota left", header("RateLimit-Limit", "100", "RateLimit-Remaining", "3", "RateLimit-Reset", "42"), none},
		{"express legacy headers", header("Date", imf(now), "X-RateLimit-Limit", "100", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", unix(42*time.Second)), exhausted(42*time.Second, 42*time.Second)},
		{"every family at once: the longest", header(
			"Retry-After", "3",
			"retry-after-ms", "4000",
			"RateLimit", `"a";r=0;t=5`,
			"RateLimit-Remaining", "0", "RateLimit-Reset", "6",
			"X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "7",
			"x-ratelimit-remaining-tokens", "0", "x-ratelimit-reset-tokens", "8s",
			"anthropic-ratelimit-tokens-remaining", "0", "anthropic-ratelimit-tokens-reset", rfc3339After(9*time.Second),
		), exhausted(9*time.Second, 9*time.Second)},
	})
}

// TestHeaderNamesAreCanonical guards Parse's exact comparison of names:
// a name that is not canonical would never match.
func TestHeaderNamesAreCanonical(t *testing.T) {
	for _, name := range []string{headerDate, headerRetryAfter, headerRetryAfterMs, headerMsRetryAfterMs,
		headerRateLimit, headerRateLimitPolicy, headerRateLimitRemaining, headerRateLimitReset,
		headerXRemaining, headerXReset, headerRemainingRequests, headerResetRequests,
		headerRemainingTokens, headerResetTokens,
		headerAnthropicRequestsRemaining, headerAnthropicRequestsReset,
		headerAnthropicTokensRemaining, headerAnthropicTokensReset,
		headerAnthropicInputTokensRemaining, headerAnthropicInputTokensReset,
		headerAnthropicOutputTokensRemaining, headerAnthropicOutputTokensReset} {
		if c := http.CanonicalHeaderKey(name); c != name {
			t.Errorf("header name %q is not canonical; net/http stores it as %q", name, c)
		}
	}
}

// allFamilies is a response with every recognised header, some twice, some
// malformed, and dates in all forms: the most work Parse can be given.
func allFamilies() http.Header {
	return header(
		"Date", imf(now),
		"Retry-After", "Mon Nov 23 12:00:05 2026",
		"Retry-After", "Monday, 23-Nov-26 12:01:00 GMT",
		"Retry-After", "soon",
		"retry-after-ms", "1.5, 300",
		"x-ms-retry-after-ms", "250",
		"RateLimit", `"a";r=0;pk=:cHsdsRa894==:, "b";r=0;t=5;x=%"f%c3%bc"`,
		"RateLimit", `"c";r=3;t=9`,
		"RateLimit-Policy", `"a";q=100;w=60, "b";q=1;w=2`,
		"RateLimit-Remaining", "0", "RateLimit-Reset", "6",
		"X-RateLimit-Remaining", "10, 0", "X-RateLimit-Reset", "Mon, 23 Nov 2026 12:00:07 GMT",
		"x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-requests", "1h2m3.5s",
		"x-ratelimit-remaining-tokens", "-1", "x-ratelimit-reset-tokens", "0",
		"anthropic-ratelimit-requests-remaining", "0", "anthropic-ratelimit-requests-reset", "2026-11-23T12:00:09.5+00:00",
		"anthropic-ratelimit-tokens-remaining", "0", "anthropic-ratelimit-tokens-reset", "garbage",
	)
}

func TestParseAllocatesNothing(t *testing.T) {
	cases := map[string]http.Header{
		"empty":          {},
		"unrelated":      header("Content-Type", "text/plain", "Content-Length", "12"),
		"all families":   allFamilies(),
		"garbage values": header("Retry-After", "\xff", "RateLimit", `("x")`, "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "\x00"),
	}
	for name, h := range cases {
		if allocs := testing.AllocsPerRun(100, func() { Parse(h, now) }); allocs != 0 {
			t.Errorf("Parse(%s) allocated %v times per call; want 0", name, allocs)
		}
	}
	if got, want := Parse(allFamilies(), now), exhausted(time.Hour+2*time.Minute+3500*time.Millisecond, time.Hour+2*time.Minute+3500*time.Millisecond); got != want {
		t.Errorf("Parse(all families) = %+v; want %+v", got, want)
	}
}

// FuzzParse builds a header from up to four "name: value" lines and checks
// Parse's promises on it.
func FuzzParse(f *testing.F) {
	f.Add("Retry-After: 120\nX-RateLimit-Remaining: 0\nX-RateLimit-Reset: 1795437000\nDate: Mon, 23 Nov 2026 12:00:00 GMT")
	f.Add("RateLimit: \"a\";r=0\nRateLimit-Policy: \"a\";q=1;w=60\nretry-after-ms: 1.5")
	f.Add("x-ratelimit-remaining-tokens: 0\nx-ratelimit-reset-tokens: 6m0s\nanthropic-ratelimit-requests-remaining: 0\nanthropic-ratelimit-requests-reset: 2026-11-23T12:00:09Z")
	f.Add("RateLimit: limit=1, remaining=0, reset=9\nRateLimit-Remaining: 0\nRateLimit-Reset: 60\nx-ms-retry-after-ms: 9")
	f.Fuzz(func(t *testing.T, raw string) {
		h := fuzzHeader(raw)
		got := Parse(h, now)
		if got.Wait < 0 || (!got.Announced && got.Wait != 0) {
			t.Fatalf("Parse(%q) = %+v: a negative or unannounced wait", raw, got)
		}
		if got.Exhausted != !got.ResetAt.IsZero() {
			t.Fatalf("Parse(%q) = %+v: ResetAt set iff Exhausted", raw, got)
		}
		if got.Exhausted && (!got.Announced || got.ResetAt.Before(now) || got.ResetAt.Sub(now) > got.Wait) {
			t.Fatalf("Parse(%q) = %+v: an exhausted quota's reset is a wait, not before now", raw, got)
		}
		if again := Parse(h, now); again != got {
			t.Fatalf("Parse(%q) = %+v, then %+v", raw, got, again)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	for _, c := range []struct {
		name string
		h    http.Header
	}{
		{"headers=none", header("Content-Type", "application/json", "Content-Length", "120", "Date", imf(now))},
		{"headers=Retry-After", header("Retry-After", "120")},
		{"headers=GitHub-403", header("Date", imf(now), "X-Ratelimit-Limit", "60", "X-Ratelimit-Remaining", "0", "X-Ratelimit-Used", "60", "X-Ratelimit-Reset", unix(30*time.Minute), "X-Ratelimit-Resource", "core")},
		{"headers=OpenAI-429", header("retry-after-ms", "300", "retry-after", "1", "x-ratelimit-remaining-requests", "59", "x-ratelimit-remaining-tokens", "0", "x-ratelimit-reset-requests", "1s", "x-ratelimit-reset-tokens", "6m0s")},
		{"headers=Anthropic-429", header("retry-after", "20", "anthropic-ratelimit-requests-remaining", "0", "anthropic-ratelimit-requests-reset", rfc3339After(20*time.Second), "anthropic-ratelimit-tokens-remaining", "40000", "anthropic-ratelimit-tokens-reset", rfc3339After(time.Minute))},
		{"headers=IETF", header("RateLimit-Policy", `"default";q=100;w=60`, "RateLimit", `"default";r=0;t=30`)},
		{"headers=all", allFamilies()},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Parse(c.h, now)
			}
		})
	}
}
