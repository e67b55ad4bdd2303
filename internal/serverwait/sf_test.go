package serverwait

import (
	"testing"
	"time"
)

// TestRateLimitField covers the RateLimit field on its own: which values
// announce an exhausted quota, and which are malformed and ignored.
func TestRateLimitField(t *testing.T) {
	tests := []struct {
		name      string
		rateLimit []string
		policy    []string
		reset     time.Duration
		exhausted bool
		ok        bool // well formed
	}{
		// Examples of draft-ietf-httpapi-ratelimit-headers-11.
		{name: "§4.2 quota left", rateLimit: []string{`"default";r=50;t=30`}, ok: true},
		{name: "§4.2 no window", rateLimit: []string{`"default";r=999;pk=:dHJpYWwxMjEzMjM=:`}, ok: true},
		{name: "§4.2 bytes", rateLimit: []string{`"default";r=300000000;t=60;pk=:QXBwLTk5OQ==:`}, ok: true},
		{name: "§6 redirect with no quota", rateLimit: []string{`"problemPolicy";r=0;t=10`}, reset: 10 * time.Second, exhausted: true, ok: true},
		{name: "B.1.1 exhausted on a 200", rateLimit: []string{`"default";r=0;t=50`}, reset: 50 * time.Second, exhausted: true, ok: true},
		{name: "B.2.3 pushing back", rateLimit: []string{`"dynamic";r=0;t=20`}, policy: []string{`"dynamic";q=15;w=20`}, reset: 20 * time.Second, exhausted: true, ok: true},
		{name: "B.3 quota left on a 429", rateLimit: []string{`"dynamic";r=15;t=40`}, policy: []string{`"dynamic";q=100;w=60`}, ok: true},
		{name: "FAQ 8 no space after the colon", rateLimit: []string{`"default";r=50;t=60`}, ok: true},
		// express-rate-limit's "draft-8" mode puts a space after each ';'.
		{name: "express draft-8", rateLimit: []string{`"100-in-1min"; r=0; t=30`}, policy: []string{`"100-in-1min"; q=100; w=60; pk=:ZTNiMGM0NDI5OGZj:`}, reset: 30 * time.Second, exhausted: true, ok: true},
		{name: "two policies, the longer exhausted wins", rateLimit: []string{`"a";r=0;t=10, "b";r=0;t=30, "c";r=5;t=90`}, reset: 30 * time.Second, exhausted: true, ok: true},
		{name: "two policies on two lines", rateLimit: []string{`"a";r=0;t=10`, `"b";r=0;t=30`}, reset: 30 * time.Second, exhausted: true, ok: true},
		{name: "a token names the policy", rateLimit: []string{`default;r=0;t=5`}, reset: 5 * time.Second, exhausted: true, ok: true},
		{name: "other parameters are comments", rateLimit: []string{`"d";acme-burst=?1;r=0;x="y";t=5;z=1.5`}, reset: 5 * time.Second, exhausted: true, ok: true},
		{name: "a later parameter overwrites", rateLimit: []string{`"d";r=3;t=5;r=0`}, reset: 5 * time.Second, exhausted: true, ok: true},
		{name: "a huge window saturates", rateLimit: []string{`"d";r=0;t=999999999999999`}, reset: maxWait, exhausted: true, ok: true},
		{name: "empty", rateLimit: []string{``}, ok: true},
		{name: "OWS around commas", rateLimit: []string{"\"a\";r=0;t=1 \t,\t \"b\";r=0;t=2\t"}, reset: 2 * time.Second, exhausted: true, ok: true},

		// No t: the window of the policy of the same name, if any.
		{name: "§3.2 no t, the policy's window", rateLimit: []string{`"peruser";r=0`}, policy: []string{`"peruser";q=100;w=60;pk=:cHsdsRa894==:`}, reset: time.Minute, exhausted: true, ok: true},
		{name: "no t, the matching policy among several", rateLimit: []string{`"perhr";r=0`}, policy: []string{`"permin";q=50;w=60,"perhr";q=1000;w=3600`}, reset: time.Hour, exhausted: true, ok: true},
		{name: "no t, policies split over lines", rateLimit: []string{`"perhr";r=0`}, policy: []string{`"permin";q=50;w=60`, `"perhr";q=1000;w=3600`}, reset: time.Hour, exhausted: true, ok: true},
		{name: "no t, no policy", rateLimit: []string{`"default";r=0`}, ok: true},
		{name: "no t, no policy of that name", rateLimit: []string{`"default";r=0`}, policy: []string{`"other";q=100;w=60`}, ok: true},
		{name: "no t, policy without a window", rateLimit: []string{`"default";r=0`}, policy: []string{`"default";q=100`}, ok: true},
		{name: "no t, malformed policy", rateLimit: []string{`"default";r=0`}, policy: []string{`"default";q=100;w=60,`}, ok: true},
		{name: "no t, policy without q", rateLimit: []string{`"default";r=0`}, policy: []string{`"default";w=60`}, ok: true},
		{name: "no t, policy with w=0", rateLimit: []string{`"default";r=0`}, policy: []string{`"default";q=1;w=0`}, ok: true},
		{name: "no t, draft-06 integer policy", rateLimit: []string{`"default";r=0`}, policy: []string{`100;w=60`}, ok: true},
		{name: "no t, empty policy line", rateLimit: []string{`"default";r=0`}, policy: []string{`"default";q=1;w=9`, ``}, ok: true},

		// draft-07's Dictionary (express-rate-limit's "draft-7" mode).
		{name: "draft-07 exhausted", rateLimit: []string{`limit=100, remaining=0, reset=30`}, reset: 30 * time.Second, exhausted: true, ok: true},
		{name: "draft-07 quota left", rateLimit: []string{`limit=10, remaining=1, reset=7`}, ok: true},
		{name: "draft-07 no remaining", rateLimit: []string{`limit=10, reset=7`}, ok: true},
		{name: "draft-07 split over lines", rateLimit: []string{`limit=100`, `remaining=0, reset=30`}, reset: 30 * time.Second, exhausted: true, ok: true},
		{name: "draft-07 later key overwrites", rateLimit: []string{`remaining=0, reset=30, remaining=4`}, ok: true},
		{name: "draft-07 negative", rateLimit: []string{`limit=100, remaining=-1, reset=30`}},
		{name: "draft-07 decimal reset", rateLimit: []string{`limit=100, remaining=0, reset=3.5`}},

		// Malformed: ignored as a whole (§7).
		{name: "no r", rateLimit: []string{`"default";t=5`}},
		{name: "negative r", rateLimit: []string{`"default";r=-1;t=5`}},
		{name: "decimal t", rateLimit: []string{`"default";r=0;t=5.5`}},
		{name: "string t", rateLimit: []string{`"default";r=0;t="5"`}},
		{name: "boolean r", rateLimit: []string{`"default";r;t=5`}},
		{name: "sixteen-digit integer", rateLimit: []string{`"default";r=0;t=1000000000000000`}},
		{name: "trailing comma", rateLimit: []string{`"default";r=0;t=5,`}},
		{name: "inner list", rateLimit: []string{`("a" "b");r=0;t=5`}},
		{name: "one malformed line spoils the field", rateLimit: []string{`"a";r=0;t=5`, `"b";r=0;t=`}},
		{name: "one malformed member spoils the field", rateLimit: []string{`"a";r=0;t=5, "b";t=9`}},
		{name: "an empty line among several", rateLimit: []string{`"a";r=0;t=5`, ``}},
		{name: "unterminated string", rateLimit: []string{`"default;r=0;t=5`}},
		{name: "bad escape", rateLimit: []string{`"de\fault";r=0;t=5`}},
		{name: "upper-case key", rateLimit: []string{`"default";R=0;T=5`}},
		{name: "space before ;", rateLimit: []string{`"default" ;r=0;t=5`}},
		{name: "leading tab", rateLimit: []string{"\t\"default\";r=0;t=5"}},
		{name: "garbage", rateLimit: []string{`soon`}, ok: true}, // a Dictionary with the key "soon"
		{name: "utter garbage", rateLimit: []string{`!!!`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reset, exhausted, ok := rateLimitList(tt.rateLimit, tt.policy)
			if !ok {
				reset, exhausted, ok = rateLimitDictionary(tt.rateLimit)
			}
			if reset != tt.reset || exhausted != tt.exhausted || ok != tt.ok {
				t.Fatalf("RateLimit %q with policy %q = %v, exhausted %v, well formed %v; want %v, %v, %v",
					tt.rateLimit, tt.policy, reset, exhausted, ok, tt.reset, tt.exhausted, tt.ok)
			}
		})
	}
}

// TestBareItems checks the Structured Field item parser on each type of
// RFC 9651, valid and not.
func TestBareItems(t *testing.T) {
	valid := []string{`0`, `-999999999999999`, `999999999999999`, `1.5`, `-1.125`, `999999999999.999`,
		`""`, `"a \"q\" \\ b"`, `tok`, `*tok/en:x!#$%&'*+-.^_|~`, `:aGVsbG8=:`, `::`, `?0`, `?1`,
		`@1659578233`, `@-1`, `%"f%c3%bc%c3%bc"`, `%""`, `%"%e2%82%ac"`}
	invalid := []string{``, `-`, `1000000000000000`, `1.`, `1.1234`, `1000000000000.1`, `"`, `"\x"`, "\"\x7f\"",
		`:aGVsbG8`, `:a*b:`, `?2`, `?`, `@1.5`, `@`, `%"%C3%BC"`, `%"%c3"`, `%"%ff"`, `%"%e2%82"`, `%"a`, `%a`,
		`%"%ed%a0%80"`, `(1 2)`, `#`}
	for _, v := range valid {
		p := sfParser{s: v}
		if _, ok := p.bareItem(); !ok || !p.done() {
			t.Errorf("bare item %q: ok %v, rest %q; want all of it parsed", v, ok, v[min(p.i, len(v)):])
		}
	}
	for _, v := range invalid {
		p := sfParser{s: v}
		if item, ok := p.bareItem(); ok && p.done() {
			t.Errorf("bare item %q parsed as %+v; want a failure", v, item)
		}
	}
}

func TestRateLimitAllocatesNothing(t *testing.T) {
	rl := []string{`"a";r=0;x=%"f%c3%bc";pk=:cHsdsRa894==:, "b";r=0`, `"c";r=1;t=40`}
	policy := []string{`"b";q=100;w=60;qu="content-bytes", "c";q=1;w=2`}
	if allocs := testing.AllocsPerRun(100, func() { rateLimitList(rl, policy) }); allocs != 0 {
		t.Errorf("rateLimitList allocated %v times per call; want 0", allocs)
	}
	dict := []string{`limit=100, remaining=0, reset=30`}
	if allocs := testing.AllocsPerRun(100, func() { rateLimitDictionary(dict) }); allocs != 0 {
		t.Errorf("rateLimitDictionary allocated %v times per call; want 0", allocs)
	}
}

// FuzzRateLimit feeds the RateLimit parsers arbitrary field lines: they
// must not panic, must agree with themselves, and an exhausted quota must
// come with a non-negative reset.
func FuzzRateLimit(f *testing.F) {
	for _, seed := range [][3]string{
		{`"default";r=0;t=30`, ``, `"default";q=100;w=60`},
		{`"a";r=0, "b";r=5;t=9`, `"c";r=0;t=1`, `"a";q=1;w=5, "b";q=9;w=60;pk=:AAAA:`},
		{`limit=100, remaining=0, reset=30`, ``, `100;w=60`},
		{`"x";r=0;d=%"%c3%bc";b=?1;y=@12;z=:YQ==:;q=1.5`, `("a" b);r=0`, ``},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	f.Fuzz(func(t *testing.T, line1, line2, policy string) {
		lines := []string{line1}
		if line2 != "" {
			lines = append(lines, line2)
		}
		reset, exhausted, ok := rateLimitList(lines, []string{policy})
		if reset < 0 || (!exhausted && reset != 0) || (!ok && (exhausted || reset != 0)) {
			t.Fatalf("rateLimitList(%q, %q) = %v, %v, %v", lines, policy, reset, exhausted, ok)
		}
		reset2, exhausted2, ok2 := rateLimitList(lines, []string{policy})
		if reset2 != reset || exhausted2 != exhausted || ok2 != ok {
			t.Fatalf("rateLimitList(%q, %q) is not deterministic", lines, policy)
		}
		reset, exhausted, ok = rateLimitDictionary(lines)
		if reset < 0 || (!exhausted && reset != 0) || (!ok && (exhausted || reset != 0)) {
			t.Fatalf("rateLimitDictionary(%q) = %v, %v, %v", lines, reset, exhausted, ok)
		}
		w, found := policyWindow([]string{policy}, line1)
		if w < 0 || (!found && w != 0) {
			t.Fatalf("policyWindow(%q, %q) = %v, %v", policy, line1, w, found)
		}
	})
}
