package serverwait

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestCorpusAllocatesNothing runs every parser on every input of its seed
// corpus under testdata/fuzz, which keeps the inputs the fuzzer found
// reaching new code: no path through the parsers may allocate.
func TestCorpusAllocatesNothing(t *testing.T) {
	run := map[string]func(args []string){
		"FuzzRetryAfter": func(a []string) { RetryAfter(a[0], now) },
		"FuzzHTTPDate":   func(a []string) { httpDate(a[0], now) },
		"FuzzRFC3339":    func(a []string) { rfc3339(a[0]) },
		"FuzzDuration":   func(a []string) { duration(a[0]) },
		"FuzzRateLimit": func(a []string) {
			lines := []string{a[0], a[1]}
			rateLimitList(lines, a[2:3])
			rateLimitDictionary(lines)
			policyWindow(a[2:3], a[0])
		},
	}
	for target, fn := range run {
		for _, args := range readCorpus(t, target) {
			if allocs := testing.AllocsPerRun(10, func() { fn(args) }); allocs != 0 {
				t.Errorf("%s(%q) allocated %v times per call; want 0", target, args, allocs)
			}
		}
	}
	for _, args := range readCorpus(t, "FuzzParse") {
		h := fuzzHeader(args[0])
		if allocs := testing.AllocsPerRun(10, func() { Parse(h, now) }); allocs != 0 {
			t.Errorf("Parse(%q) allocated %v times per call; want 0", args[0], allocs)
		}
	}
}

// fuzzHeader builds FuzzParse's header: up to four "name: value" lines.
func fuzzHeader(raw string) http.Header {
	h := http.Header{}
	for i, line := range strings.SplitN(raw, "\n", 5) {
		if i == 4 {
			break
		}
		if name, value, ok := strings.Cut(line, ":"); ok {
			h.Add(name, value)
		}
	}
	return h
}

// readCorpus decodes the string arguments of the corpus files of a fuzz
// target ("go test fuzz v1", then one string(...) line per argument).
func readCorpus(t *testing.T, target string) [][]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", target, "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus for %s: %v", target, err)
	}
	var corpus [][]string
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if lines[0] != "go test fuzz v1" {
			t.Fatalf("%s: not a corpus file", file)
		}
		var args []string
		for _, line := range lines[1:] {
			quoted, ok := strings.CutPrefix(line, "string(")
			quoted, ok2 := strings.CutSuffix(quoted, ")")
			s, err := strconv.Unquote(quoted)
			if !ok || !ok2 || err != nil {
				t.Fatalf("%s: cannot decode %q", file, line)
			}
			args = append(args, s)
		}
		corpus = append(corpus, args)
	}
	return corpus
}
