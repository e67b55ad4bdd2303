package storm

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// svgSummary is what walking an SVG document with encoding/xml found.
type svgSummary struct {
	root      string
	polylines []string // the points attribute of each polyline
	texts     []string // character data of every text element
	rects     int
}

// walkSVG decodes doc token by token, failing the test on malformed XML.
func walkSVG(t *testing.T, doc []byte) svgSummary {
	t.Helper()
	var s svgSummary
	d := xml.NewDecoder(bytes.NewReader(doc))
	var inText bool
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("the SVG is not well-formed XML: %v\n%s", err, doc)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if s.root == "" {
				s.root = tok.Name.Space + " " + tok.Name.Local
			}
			switch tok.Name.Local {
			case "polyline":
				for _, a := range tok.Attr {
					if a.Name.Local == "points" {
						s.polylines = append(s.polylines, a.Value)
					}
				}
			case "text":
				inText = true
				s.texts = append(s.texts, "")
			case "rect":
				s.rects++
			}
		case xml.EndElement:
			if tok.Name.Local == "text" {
				inText = false
			}
		case xml.CharData:
			if inText {
				s.texts[len(s.texts)-1] += string(tok)
			}
		}
	}
	return s
}

func TestChartSVG(t *testing.T) {
	ph := Phases{OutageStart: 1500 * time.Millisecond, OutageEnd: 4500 * time.Millisecond, End: 6 * time.Second}
	var lines []Line
	for i, c := range Configs {
		pts := make([]float64, 65) // five buckets past the end: not drawn
		for j := range pts {
			pts[j] = float64(200 + 100*i*j%700)
		}
		lines = append(lines, Line{Label: c.Label, Points: pts})
	}
	lines[0].Label = `escaped <&> "label"`
	chart := Chart{Title: "storm & co", Subtitle: "test", Phases: ph, Capacity: 400, Lines: lines}

	var buf bytes.Buffer
	if err := chart.WriteSVG(&buf); err != nil {
		t.Fatal(err)
	}
	s := walkSVG(t, buf.Bytes())
	if s.root != "http://www.w3.org/2000/svg svg" {
		t.Errorf("root element %q, want svg in the SVG namespace", s.root)
	}
	if len(s.polylines) != len(Configs) {
		t.Fatalf("%d polylines, want one per configuration (%d)", len(s.polylines), len(Configs))
	}
	for i, p := range s.polylines {
		if n := len(strings.Fields(p)); n != 60 {
			t.Errorf("polyline %d has %d points, want 60 (6s of 100ms buckets)", i, n)
		}
	}
	all := strings.Join(s.texts, "\n")
	for _, want := range []string{
		"storm & co", `escaped <&> "label"`, Configs[1].Label, Configs[4].Label,
		"full outage", "server capacity", "time since the start of the run (s)", "attempts received by the server per 100ms",
		"0", "6",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("the chart's text lacks %q:\n%s", want, all)
		}
	}
	if s.rects < 2 {
		t.Errorf("%d rects, want the background and the outage band", s.rects)
	}
}

func TestNiceStep(t *testing.T) {
	for _, tt := range []struct{ in, want float64 }{{0, 1}, {0.3, 1}, {1, 1}, {1.2, 2}, {3, 5}, {7, 10}, {130, 200}, {4500, 5000}} {
		if got := niceStep(tt.in); got != tt.want {
			t.Errorf("niceStep(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
