package load

import (
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"
)

// Chart geometry, in SVG user units.
const (
	chartWidth  = 720
	chartHeight = 160
	chartPad    = 40
)

// chartSeries is one line chart of the page.
type chartSeries struct {
	Title  string
	Unit   string
	Max    float64
	Points string // SVG polyline points
	Last   float64
}

type chartPage struct {
	Title   string
	Summary string
	Charts  []chartSeries
	W, H    int
	Pad     int
	Seconds int
}

var chartTemplate = template.Must(template.New("chart").Funcs(template.FuncMap{
	"sub": func(a, b int) int { return a - b },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>
body{font:14px system-ui,sans-serif;margin:2em;color:#222}
pre{background:#f6f6f6;padding:1em;overflow:auto}
svg{display:block;margin:0 0 1.5em}
.axis{stroke:#999;stroke-width:1}
.line{fill:none;stroke:#1565c0;stroke-width:1.5}
text{font-size:11px;fill:#555}
</style></head><body>
<h1>{{.Title}}</h1>
<pre>{{.Summary}}</pre>
{{range .Charts}}
<h2>{{.Title}}</h2>
<svg width="{{$.W}}" height="{{$.H}}" viewBox="0 0 {{$.W}} {{$.H}}" role="img" aria-label="{{.Title}}">
<line class="axis" x1="{{$.Pad}}" y1="{{$.Pad}}" x2="{{$.Pad}}" y2="{{sub $.H $.Pad}}"/>
<line class="axis" x1="{{$.Pad}}" y1="{{sub $.H $.Pad}}" x2="{{sub $.W $.Pad}}" y2="{{sub $.H $.Pad}}"/>
<text x="2" y="{{$.Pad}}">{{printf "%.4g" .Max}}</text>
<text x="2" y="{{sub $.H $.Pad}}">0</text>
<text x="{{sub $.W $.Pad}}" y="{{sub $.H 20}}" text-anchor="end">{{$.Seconds}} s</text>
<text x="{{$.Pad}}" y="{{sub $.H 20}}">0 s</text>
<text x="{{sub $.W $.Pad}}" y="{{sub $.Pad 8}}" text-anchor="end">last: {{printf "%.4g" .Last}} {{.Unit}}</text>
<polyline class="line" points="{{.Points}}"/>
</svg>
{{end}}
</body></html>
`))

// WriteChart writes the report as one self-contained HTML page: the text
// summary and inline SVG line charts of listeners, joins per second, stalls,
// failures, the mouth-to-ear latency when measured and, with a PID, the
// server's CPU and memory over time.
func WriteChart(w io.Writer, r *Report) error {
	var summary strings.Builder
	if err := r.WriteText(&summary); err != nil {
		return err
	}
	page := chartPage{
		Title:   fmt.Sprintf("amphi load, %s, %v", r.Started.Format(time.RFC3339), r.Duration),
		Summary: summary.String(),
		W:       chartWidth, H: chartHeight, Pad: chartPad,
	}
	if n := len(r.Timeline); n > 0 {
		page.Seconds = r.Timeline[n-1].T
	}
	add := func(title, unit string, v func(Sample) float64) {
		page.Charts = append(page.Charts, series(title, unit, r.Timeline, page.Seconds, v))
	}
	add("Listeners live", "listeners", func(s Sample) float64 { return float64(s.Live) })
	add("Joins per second", "joins/s", func(s Sample) float64 { return float64(s.Joins) })
	add("Stalls so far", "stalls", func(s Sample) float64 { return float64(s.Stalls) })
	add("Failures so far", "failures", func(s Sample) float64 { return float64(s.Failed) })
	if r.Latency != nil {
		// Seconds in which no mark arrived have no latency, not a zero one.
		var marked []Sample
		for _, s := range r.Timeline {
			if s.Latency > 0 {
				marked = append(marked, s)
			}
		}
		page.Charts = append(page.Charts, series("Mouth-to-ear latency, median of each second's marks", "ms", marked, page.Seconds,
			func(s Sample) float64 { return float64(s.Latency) / float64(time.Millisecond) }))
	}
	if r.Server != nil {
		add("Server CPU", "% of a core", func(s Sample) float64 { return s.CPU })
		add("Server RSS", "MiB", func(s Sample) float64 { return float64(s.RSS) / (1 << 20) })
	}
	return chartTemplate.Execute(w, page)
}

// series scales a timeline into the chart's box.
func series(title, unit string, tl []Sample, seconds int, v func(Sample) float64) chartSeries {
	cs := chartSeries{Title: title, Unit: unit}
	for _, s := range tl {
		cs.Max = max(cs.Max, v(s))
	}
	if len(tl) > 0 {
		cs.Last = v(tl[len(tl)-1])
	}
	top := cs.Max
	if top == 0 {
		top = 1
	}
	span := float64(max(seconds, 1))
	var b strings.Builder
	fmt.Fprintf(&b, "%d,%d", chartPad, chartHeight-chartPad)
	for _, s := range tl {
		x := chartPad + float64(s.T)/span*(chartWidth-2*chartPad)
		y := float64(chartHeight-chartPad) - v(s)/top*(chartHeight-2*chartPad)
		fmt.Fprintf(&b, " %.1f,%.1f", x, y)
	}
	cs.Points = b.String()
	return cs
}
