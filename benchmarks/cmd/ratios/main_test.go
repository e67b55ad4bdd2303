package main

import (
	"slices"
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/saferetry/saferetry/benchmarks
cpu: Intel(R) Xeon(R) Processor
BenchmarkGET/transport=bare-2         	   50884	     20000 ns/op	    4000 B/op	      50 allocs/op
BenchmarkGET/transport=saferetry-2    	   51093	     21000 ns/op	    4000 B/op	      50 allocs/op
BenchmarkGET/transport=bare-2         	   50884	     22000 ns/op	    4000 B/op	      50 allocs/op
BenchmarkGET/transport=saferetry-2    	   51093	     23000 ns/op	    4100 B/op	      52 allocs/op
BenchmarkGET/transport=bare-2         	   50884	     30000 ns/op	    4000 B/op	      50 allocs/op
BenchmarkGET/transport=saferetry-2    	   51093	     22000 ns/op	    4000 B/op	      50 allocs/op
BenchmarkPUT/transport=bare-2   207	   5712914 ns/op	1468.36 MB/s	    6218 B/op	      75 allocs/op
BenchmarkPUT/transport=rehttp/x=y-2   194	   5983736 ns/op	1401.90 MB/s	   0 B/op	      77 allocs/op
BenchmarkOther-2   100  5 ns/op
BenchmarkBroken/transport=bare-2 --- FAIL: something
PASS
`

func TestRatios(t *testing.T) {
	var r results
	if err := r.parse(strings.NewReader(sample)); err != nil {
		t.Fatal(err)
	}
	if len(r.benchmarks) != 2 {
		t.Fatalf("got %d benchmarks, want 2 (BenchmarkGET, BenchmarkPUT)", len(r.benchmarks))
	}
	get := r.benchmarks[0]
	if get.name != "BenchmarkGET" || strings.Join(get.contenders, ",") != "bare,saferetry" {
		t.Fatalf("first benchmark %q with contenders %v", get.name, get.contenders)
	}
	if m := median(get.values["bare"]["ns/op"]); m != 22000 {
		t.Errorf("median bare ns/op = %v, want 22000", m)
	}
	var out strings.Builder
	r.print(&out, "bare", false)
	var rows []string
	for _, line := range strings.Split(out.String(), "\n") {
		rows = append(rows, strings.Join(strings.Fields(line), " "))
	}
	for _, want := range []string{
		"BenchmarkGET (medians of 3 runs)",
		"saferetry 22000 1.00x 4000 1.00x 50 1.00x",
		"BenchmarkPUT (medians of 1 runs)",
		"rehttp/x=y 5983736 1.05x 0 0.00x 77 1.03x",
	} {
		if !slices.Contains(rows, want) {
			t.Errorf("output lacks the row %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	r.print(&out, "bare", true)
	if !strings.Contains(out.String(), "| saferetry | 22000 | 1.00x | 4000 | 1.00x | 50 | 1.00x |") {
		t.Errorf("Markdown output:\n%s", out.String())
	}
}

func TestParseLine(t *testing.T) {
	for _, c := range []struct {
		line, name, contender string
		ok                    bool
	}{
		{"BenchmarkA/transport=bare-2 10 5 ns/op", "BenchmarkA", "bare", true},
		{"BenchmarkA/x=1/transport=s/budget=off-16 10 5 ns/op", "BenchmarkA/x=1", "s/budget=off", true},
		{"BenchmarkA/transport=bare 10 5 ns/op", "BenchmarkA", "bare", true},
		{"BenchmarkA/transport=bare-2 --- FAIL", "", "", false},
		{"BenchmarkA-2 10 5 ns/op", "", "", false},
		{"ok  	pkg	1.0s", "", "", false},
	} {
		name, contender, _, ok := parseLine(c.line)
		if name != c.name || contender != c.contender || ok != c.ok {
			t.Errorf("parseLine(%q) = %q, %q, %v; want %q, %q, %v", c.line, name, contender, ok, c.name, c.contender, c.ok)
		}
	}
}

func TestMedianAndRatio(t *testing.T) {
	if m := median([]float64{3, 1, 2, 10}); m != 2.5 {
		t.Errorf("median = %v, want 2.5", m)
	}
	if got := ratio(0, 0); got != "1.00x" {
		t.Errorf("ratio(0, 0) = %q", got)
	}
	if got := ratio(5, 0); got != "—" {
		t.Errorf("ratio(5, 0) = %q", got)
	}
}
