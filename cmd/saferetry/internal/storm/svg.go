package storm

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Chart is a line chart of a quantity per BucketWidth over time (by
// default, the attempts the server received), one line per
// configuration, with the outage shaded and, optionally, the server's
// capacity drawn across. WriteSVG renders it as a standalone SVG document.
type Chart struct {
	Title    string
	Subtitle string
	Phases   Phases
	// Shade labels the outage's band; empty means "full outage: every
	// request 503".
	Shade string
	// YLabel labels the vertical axis; empty means "attempts received by
	// the server per 100ms". Percent draws the values, fractions, as
	// percentages.
	YLabel  string
	Percent bool
	// Capacity is the most attempts per bucket the server can serve; zero
	// draws no capacity line.
	Capacity float64
	Lines    []Line
}

// Line is one configuration's series: Points[i] is its value in bucket i,
// from time 0. Points past Phases.End are not drawn.
type Line struct {
	Label  string
	Points []float64
}

// Counts converts per-bucket counts to a Line's points.
func Counts(c []int64) []float64 {
	out := make([]float64, len(c))
	for i, v := range c {
		out[i] = float64(v)
	}
	return out
}

// The chart's geometry, in SVG user units.
const (
	svgWidth   = 960
	svgHeight  = 560
	plotLeft   = 80
	plotRight  = 930
	plotTop    = 70
	plotBottom = 400
	legendTop  = 462
)

// palette holds colours told apart by most readers, colour-blind included
// (Tableau 10).
var palette = []string{"#4e79a7", "#e15759", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7", "#bab0ac"}

// WriteSVG writes the chart as an SVG 1.1 document.
func (c Chart) WriteSVG(w io.Writer) error {
	bw := bufio.NewWriter(w)
	buckets := max(int(c.Phases.End/BucketWidth), 1)
	var top float64
	for _, l := range c.Lines {
		for _, v := range l.Points[:min(len(l.Points), buckets)] {
			top = max(top, v)
		}
	}
	scale := 1.0
	if c.Percent {
		scale = 100
	}
	top = max(top*scale, c.Capacity*1.1, 1)
	yStep := niceStep(top / 5)
	yMax := math.Ceil(top/yStep) * yStep
	shade, yLabel := c.Shade, c.YLabel
	if shade == "" {
		shade = "full outage: every request 503"
	}
	if yLabel == "" {
		yLabel = fmt.Sprintf("attempts received by the server per %v", BucketWidth)
	}
	x := func(t time.Duration) float64 {
		return plotLeft + (plotRight-plotLeft)*t.Seconds()/c.Phases.End.Seconds()
	}
	y := func(v float64) float64 { return plotBottom - (plotBottom-plotTop)*v/yMax }

	fmt.Fprintf(bw, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	height := max(svgHeight, legendTop+19*len(c.Lines)+8) // room for the legend
	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n",
		svgWidth, height, svgWidth, height)
	fmt.Fprintf(bw, "<title>%s</title>\n", esc(c.Title))
	fmt.Fprintf(bw, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", svgWidth, height)
	fmt.Fprintf(bw, `<text x="%d" y="28" font-size="17" font-weight="bold">%s</text>`+"\n", plotLeft, esc(c.Title))
	fmt.Fprintf(bw, `<text x="%d" y="48" fill="#555555">%s</text>`+"\n", plotLeft, esc(c.Subtitle))

	// The outage, shaded behind everything else.
	x0, x1 := x(c.Phases.OutageStart), x(c.Phases.OutageEnd)
	fmt.Fprintf(bw, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#e15759" fill-opacity="0.10"/>`+"\n", x0, plotTop, x1-x0, plotBottom-plotTop)
	fmt.Fprintf(bw, `<text x="%.1f" y="%d" text-anchor="middle" fill="#b03a3c">%s</text>`+"\n", (x0+x1)/2, plotTop+16, esc(shade))

	// Grid, ticks and labels.
	fmt.Fprintf(bw, `<g stroke="#dddddd" stroke-width="1">`+"\n")
	for v := 0.0; v <= yMax+yStep/2; v += yStep {
		fmt.Fprintf(bw, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f"/>`+"\n", plotLeft, y(v), plotRight, y(v))
	}
	fmt.Fprintf(bw, "</g>\n")
	fmt.Fprintf(bw, `<g text-anchor="end" fill="#333333">`+"\n")
	for v := 0.0; v <= yMax+yStep/2; v += yStep {
		fmt.Fprintf(bw, `<text x="%d" y="%.1f">%s</text>`+"\n", plotLeft-8, y(v)+4, formatCount(v))
	}
	fmt.Fprintf(bw, "</g>\n")
	xStep := timeStep(c.Phases.End)
	fmt.Fprintf(bw, `<g text-anchor="middle" fill="#333333">`+"\n")
	for t := time.Duration(0); t <= c.Phases.End; t += xStep {
		fmt.Fprintf(bw, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#333333"/>`+"\n", x(t), plotBottom, x(t), plotBottom+5)
		fmt.Fprintf(bw, `<text x="%.1f" y="%d">%s</text>`+"\n", x(t), plotBottom+19, formatSeconds(t))
	}
	fmt.Fprintf(bw, "</g>\n")
	fmt.Fprintf(bw, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333333"/>`+"\n", plotLeft, plotBottom, plotRight, plotBottom)
	fmt.Fprintf(bw, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333333"/>`+"\n", plotLeft, plotTop, plotLeft, plotBottom)
	fmt.Fprintf(bw, `<text x="%d" y="%d" text-anchor="middle">time since the start of the run (s)</text>`+"\n", (plotLeft+plotRight)/2, plotBottom+38)
	fmt.Fprintf(bw, `<text transform="translate(22 %d) rotate(-90)" text-anchor="middle">%s</text>`+"\n", (plotTop+plotBottom)/2, esc(yLabel))

	if c.Capacity > 0 {
		fmt.Fprintf(bw, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#333333" stroke-dasharray="6 4"/>`+"\n", plotLeft, y(c.Capacity), plotRight, y(c.Capacity))
		fmt.Fprintf(bw, `<text x="%d" y="%.1f" text-anchor="end" fill="#333333">server capacity</text>`+"\n", plotRight-4, y(c.Capacity)-5)
	}

	// One polyline per configuration, at the middle of each bucket.
	for i, l := range c.Lines {
		var pts strings.Builder
		for j, v := range l.Points[:min(len(l.Points), buckets)] {
			if j > 0 {
				pts.WriteByte(' ')
			}
			t := time.Duration(j)*BucketWidth + BucketWidth/2
			fmt.Fprintf(&pts, "%.1f,%.1f", x(t), y(v*scale))
		}
		fmt.Fprintf(bw, `<polyline fill="none" stroke="%s" stroke-width="1.6" stroke-linejoin="round" points="%s"><title>%s</title></polyline>`+"\n",
			palette[i%len(palette)], pts.String(), esc(l.Label))
	}

	// The legend, below the plot.
	for i, l := range c.Lines {
		lx := plotLeft
		ly := legendTop + i*19
		fmt.Fprintf(bw, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", lx, ly-4, lx+26, ly-4, palette[i%len(palette)])
		fmt.Fprintf(bw, `<text x="%d" y="%d">%s</text>`+"\n", lx+34, ly, esc(l.Label))
	}
	fmt.Fprintf(bw, "</svg>\n")
	return bw.Flush()
}

// esc escapes s for use as XML character data or an attribute value.
func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // a strings.Builder never fails
	return b.String()
}

// niceStep rounds x up to 1, 2 or 5 times a power of ten.
func niceStep(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return max(m*p, 1)
		}
	}
	return 10 * p
}

// timeStep picks a tick interval giving at most 12 ticks over d.
func timeStep(d time.Duration) time.Duration {
	for _, s := range []time.Duration{100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
		time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second,
		30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute} {
		if d/s <= 12 {
			return s
		}
	}
	return d / 10
}

func formatSeconds(t time.Duration) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", t.Seconds()), "0"), ".")
}

func formatCount(v float64) string {
	if v >= 10000 {
		return fmt.Sprintf("%gk", v/1000)
	}
	return fmt.Sprintf("%g", v)
}
