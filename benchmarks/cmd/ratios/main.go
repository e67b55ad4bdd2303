// Command ratios reads the output of go test -bench and prints, for each
// benchmark, every contender's median figures and their ratio to the bare
// transport's, measured in the same run.
//
// A contender is the part of a benchmark's name from its transport=
// element on, and the benchmark is the part before it:
// BenchmarkGET/transport=saferetry-2 is contender "saferetry" of
// BenchmarkGET. The ratio's denominator is the contender "bare" of the
// same benchmark in the same package (when the input holds several
// packages, names are prefixed with the last element of the package
// path). Results without a transport= element are ignored. Medians are
// taken over all the runs of a benchmark, as benchstat does; benchstat
// also says whether a difference is significant, which ratios does not.
//
// Usage:
//
//	go test -run '^$' -bench . -benchmem -count 6 > bench.txt
//	go run ./cmd/ratios [-md] [-base bare] bench.txt...
//
// With no file, it reads standard input. -md prints Markdown tables.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
)

func main() {
	md := flag.Bool("md", false, "print Markdown tables")
	base := flag.String("base", "bare", "the contender the others are divided by")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: ratios [-md] [-base name] [file ...]\n")
		flag.PrintDefaults()
	}
	flag.Parse()

	var set results
	if flag.NArg() == 0 {
		if err := set.parse(os.Stdin); err != nil {
			fatal(err)
		}
	}
	for _, name := range flag.Args() {
		f, err := os.Open(name)
		if err != nil {
			fatal(err)
		}
		err = set.parse(f)
		f.Close()
		if err != nil {
			fatal(fmt.Errorf("%s: %w", name, err))
		}
	}
	if len(set.benchmarks) == 0 {
		fatal(fmt.Errorf("no benchmark results with a transport= element in the input"))
	}
	w := bufio.NewWriter(os.Stdout)
	set.print(w, *base, *md)
	if err := w.Flush(); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "ratios:", err)
	os.Exit(1)
}

// units are the figures printed, in order.
var units = []string{"ns/op", "B/op", "allocs/op"}

// results holds every figure read, grouped by benchmark and contender, in
// the order they first appeared.
type results struct {
	pkgs       []string // packages seen, to qualify names when several
	benchmarks []*benchmark
	byKey      map[string]*benchmark
}

type benchmark struct {
	pkg, name  string
	contenders []string
	values     map[string]map[string][]float64 // contender -> unit -> values
}

// parse reads go test -bench output: lines "pkg: PATH" and result lines
// "BenchmarkNAME[-PROCS] N VALUE UNIT [VALUE UNIT ...]". Other lines,
// including results without a transport= element, are ignored.
func (r *results) parse(in io.Reader) error {
	if r.byKey == nil {
		r.byKey = make(map[string]*benchmark)
	}
	pkg := ""
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			if !slices.Contains(r.pkgs, pkg) {
				r.pkgs = append(r.pkgs, pkg)
			}
			continue
		}
		name, contender, figures, ok := parseLine(line)
		if !ok {
			continue
		}
		key := pkg + "\x00" + name
		b := r.byKey[key]
		if b == nil {
			b = &benchmark{pkg: pkg, name: name, values: make(map[string]map[string][]float64)}
			r.byKey[key] = b
			r.benchmarks = append(r.benchmarks, b)
		}
		if b.values[contender] == nil {
			b.values[contender] = make(map[string][]float64)
			b.contenders = append(b.contenders, contender)
		}
		for unit, v := range figures {
			b.values[contender][unit] = append(b.values[contender][unit], v)
		}
	}
	return sc.Err()
}

// parseLine splits one result line into the benchmark's name (without
// its transport element and GOMAXPROCS suffix), the contender, and the
// figures by unit.
func parseLine(line string) (name, contender string, figures map[string]float64, ok bool) {
	fields := strings.Fields(line)
	if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") || len(fields)%2 != 0 {
		return "", "", nil, false
	}
	if _, err := strconv.ParseUint(fields[1], 10, 64); err != nil {
		return "", "", nil, false // "BenchmarkX --- FAIL" and the like
	}
	full := trimProcs(fields[0])
	before, after, found := strings.Cut(full, "/transport=")
	if !found || after == "" {
		return "", "", nil, false
	}
	figures = make(map[string]float64)
	for i := 2; i+1 < len(fields); i += 2 {
		v, err := strconv.ParseFloat(fields[i], 64)
		if err != nil {
			return "", "", nil, false
		}
		figures[fields[i+1]] = v
	}
	return before, after, figures, true
}

// trimProcs removes the -GOMAXPROCS suffix go test adds to names.
func trimProcs(name string) string {
	i := strings.LastIndexByte(name, '-')
	if i < 0 || i == len(name)-1 {
		return name
	}
	if _, err := strconv.Atoi(name[i+1:]); err != nil {
		return name
	}
	return name[:i]
}

// median returns the median of vs, or NaN if there are none.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// ratio formats v/base, or "—" when it is undefined.
func ratio(v, base float64) string {
	switch {
	case math.IsNaN(v) || math.IsNaN(base):
		return "—"
	case base == 0 && v == 0:
		return "1.00x"
	case base == 0:
		return "—"
	}
	return strconv.FormatFloat(v/base, 'f', 2, 64) + "x"
}

// value formats a median the way go test prints figures.
func value(v float64) string {
	switch {
	case math.IsNaN(v):
		return "—"
	case v >= 100 || v == math.Trunc(v):
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func (r *results) print(w io.Writer, baseName string, md bool) {
	header := []string{"contender"}
	for _, u := range units {
		header = append(header, u, "vs "+baseName)
	}
	for i, b := range r.benchmarks {
		title := b.name
		if len(r.pkgs) > 1 {
			title = path.Base(b.pkg) + "." + b.name
		}
		if i > 0 {
			fmt.Fprintln(w)
		}
		rows := [][]string{header}
		base := b.values[baseName]
		n := 0
		for _, c := range b.contenders {
			row := []string{c}
			for _, u := range units {
				v := median(b.values[c][u])
				row = append(row, value(v), ratio(v, median(base[u])))
			}
			rows = append(rows, row)
			n = max(n, len(b.values[c]["ns/op"]))
		}
		if md {
			fmt.Fprintf(w, "**%s** (medians of %d runs)\n\n", title, n)
			writeMarkdown(w, rows)
		} else {
			fmt.Fprintf(w, "%s (medians of %d runs)\n", title, n)
			writeAligned(w, rows)
		}
	}
}

func writeAligned(w io.Writer, rows [][]string) {
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, cell := range row {
			widths[i] = max(widths[i], len([]rune(cell)))
		}
	}
	for _, row := range rows {
		var sb strings.Builder
		for i, cell := range row {
			pad := widths[i] - len([]rune(cell))
			if i == 0 {
				sb.WriteString("  " + cell + strings.Repeat(" ", pad))
			} else {
				sb.WriteString("  " + strings.Repeat(" ", pad) + cell)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(sb.String(), " "))
	}
}

func writeMarkdown(w io.Writer, rows [][]string) {
	fmt.Fprintln(w, "| "+strings.Join(rows[0], " | ")+" |")
	sep := make([]string, len(rows[0]))
	for i := range sep {
		sep[i] = "---:"
	}
	sep[0] = "---"
	fmt.Fprintln(w, "|"+strings.Join(sep, "|")+"|")
	for _, row := range rows[1:] {
		fmt.Fprintln(w, "| "+strings.Join(row, " | ")+" |")
	}
}
