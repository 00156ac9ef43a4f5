package ops

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"html/template"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Handler serves the latest report at GET /ops: as JSON (with a top-level
// "verdict") when the request accepts application/json or asks
// ?format=json, otherwise as a self-contained HTML page that reloads itself
// every 3 s. The report is never cached.
func (m *Monitor) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		r := m.Report()
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("Vary", "Accept")
		h.Set("X-Content-Type-Options", "nosniff")
		var buf bytes.Buffer
		if wantsJSON(req) {
			enc := json.NewEncoder(&buf)
			enc.SetIndent("", "  ")
			if err := enc.Encode(r); err != nil {
				http.Error(w, "internal error", http.StatusInternalServerError)
				return
			}
			h.Set("Content-Type", "application/json")
		} else {
			if err := pageTemplate.Execute(&buf, m.newPage(r)); err != nil {
				http.Error(w, "internal error", http.StatusInternalServerError)
				return
			}
			h.Set("Content-Type", "text/html; charset=utf-8")
		}
		h.Set("Content-Length", strconv.Itoa(buf.Len()))
		w.WriteHeader(http.StatusOK)
		if req.Method != http.MethodHead {
			w.Write(buf.Bytes())
		}
	})
}

// wantsJSON reports whether the request asks for JSON: ?format=json, or an
// Accept header that ranks application/json above text/html. Browsers send
// text/html first, curl and scripts usually name only what they want.
func wantsJSON(req *http.Request) bool {
	switch req.URL.Query().Get("format") {
	case "json":
		return true
	case "html":
		return false
	}
	var jsonQ, htmlQ float64 = -1, -1
	for _, part := range strings.Split(req.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		switch mt {
		case "application/json":
			jsonQ = max(jsonQ, q)
		case "text/html":
			htmlQ = max(htmlQ, q)
		}
	}
	return jsonQ > 0 && jsonQ > htmlQ
}

// page is what the HTML template shows, formatted for people.
type page struct {
	Report
	Title    string
	Class    string
	Headline string
	Refresh  int
	Age      string
	Refusals []refusalRow
	Rates    []rateRow
}

type refusalRow struct {
	Reason string
	Rate   string
	Kind   string
}

type rateRow struct {
	Name, Value string
}

// headlines say in one sentence what each verdict means for the operator.
var headlines = map[string]string{
	Healthy:           "Healthy: no internal faults, traffic is valid, everyone is admitted.",
	Overloaded:        "Overloaded: real demand beyond capacity. The gate is admitting fewer; those inside are served.",
	UnderAttack:       "Under attack: most traffic is invalid or one source is hammering. It is refused cheaply; see who below.",
	FailingInternally: "Failing internally: our own components are failing. This is our fault, whatever else is happening.",
}

func (m *Monitor) newPage(r Report) page {
	// Refresh a little slower than the sampling, never faster than 3 s.
	refresh := max(3, int(m.cfg.Interval.Round(time.Second)/time.Second)+1)
	p := page{
		Report:   r,
		Title:    strings.ReplaceAll(r.Verdict, "_", " "),
		Class:    strings.ReplaceAll(r.Verdict, "_", "-"),
		Headline: headlines[r.Verdict],
		Refresh:  refresh,
		Age:      fmtDuration(r.At.Sub(r.Since)),
	}
	rt := r.Rates
	p.Rates = []rateRow{
		{"Requests (join + listen)", fmtRate(rt.Requests) + " /s"},
		{"Join requests", fmtRate(rt.JoinRequests) + " /s"},
		{"Joins admitted", fmtRate(rt.Joins) + " /s"},
		{"Listen requests", fmtRate(rt.ListenRequests) + " /s"},
		{"Invalid", fmtRate(rt.Invalid) + " /s"},
		{"Invalid share", fmtPercent(rt.InvalidShare)},
		{"Refused for capacity", fmtRate(rt.Capacity) + " /s"},
		{"Tickets verified", fmtRate(rt.TicketsVerified) + " /s"},
		{"Listener streams started", fmtRate(rt.ListenersServed) + " /s"},
		{"Egress", fmtBytes(rt.EgressBytes) + "/s"},
		{"5xx (not 503)", fmtRate(rt.ServerErrors) + " /s"},
		{"503 shed", fmtRate(rt.Shed) + " /s"},
		{"CPU", fmt.Sprintf("%.2f cores", rt.CPU)},
	}
	reasons := slices.Collect(maps.Keys(rt.Refusals))
	slices.SortFunc(reasons, func(a, b string) int {
		if c := cmp.Compare(rt.Refusals[b], rt.Refusals[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	for _, reason := range reasons {
		kind := "other"
		switch {
		case m.invalid[reason]:
			kind = "invalid"
		case m.capacity[reason]:
			kind = "capacity"
		}
		p.Refusals = append(p.Refusals, refusalRow{reason, fmtRate(rt.Refusals[reason]) + " /s", kind})
	}
	return p
}

func fmtBytes(f float64) string {
	switch {
	case f >= 1<<30:
		return fmt.Sprintf("%.1f GiB", f/(1<<30))
	case f >= 1<<20:
		return fmt.Sprintf("%.1f MiB", f/(1<<20))
	case f >= 1<<10:
		return fmt.Sprintf("%.1f KiB", f/(1<<10))
	default:
		return fmt.Sprintf("%.0f B", f)
	}
}

var pageTemplate = template.Must(template.New("ops").Funcs(template.FuncMap{
	"pct":   fmtPercent,
	"bytes": func(n uint64) string { return fmtBytes(float64(n)) },
	"ts":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"title": func(s string) string { return strings.ReplaceAll(s, "_", " ") },
	"ms":    func(s float64) string { return fmt.Sprintf("%.1f ms", s*1000) },
}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{{.Refresh}}">
<title>amphi ops: {{.Title}}</title>
<style>
:root { color-scheme: light; font-family: system-ui, sans-serif; color: #111; background: #fff; }
body { margin: 0 auto; max-width: 70rem; padding: 1rem; line-height: 1.4; }
.meta { font-size: 1rem; margin: 0 0 .5rem; color: #333; }
.verdict { padding: 1rem 1.25rem; border-radius: .5rem; border: 3px solid #111; margin-bottom: 1rem; }
.verdict p { margin: .25rem 0; }
.verdict h1 { font-size: 3rem; font-weight: 800; letter-spacing: .02em; text-transform: uppercase; margin: 0; }
.healthy { background: #0b6b2e; color: #fff; }
.overloaded { background: #ffd23f; color: #111; }
.under-attack { background: #b3001b; color: #fff; }
.failing-internally { background: #4a148c; color: #fff; }
.tag { display: inline-block; padding: 0 .5rem; border-radius: .25rem; font-weight: 700; border: 1px solid #111; }
section { margin: 1.25rem 0; }
h2 { font-size: 1.25rem; margin: 0 0 .5rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #ddd; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(20rem, 1fr)); gap: 1rem; }
.muted { color: #444; }
</style>
</head>
<body>
<header>
<p class="meta">amphi ops — refreshed every {{.Refresh}} s; last sample {{ts .At}}; rates over the last {{printf "%.1f" .WindowSeconds}} s</p>
<div class="verdict {{.Class}}" role="status" aria-live="polite">
<h1>{{.Title}}</h1>
<p>{{.Headline}}</p>
<p>Since {{ts .Since}} ({{.Age}}). Conditions that hold:
{{range .Conditions}}<span class="tag {{.}}">{{title .}}</span> {{end}}</p>
</div>
</header>
<main>
<section aria-labelledby="evidence">
<h2 id="evidence">Evidence</h2>
<table>
<thead><tr><th scope="col">Condition</th><th scope="col">Signal</th><th scope="col">Value</th><th scope="col">Threshold</th><th scope="col">What it means</th></tr></thead>
<tbody>
{{range .Evidence}}<tr><td>{{title .Condition}}</td><td><code>{{.Signal}}</code></td><td class="num">{{printf "%.4g" .Value}}</td><td class="num">{{printf "%.4g" .Threshold}}</td><td>{{.Text}}</td></tr>
{{end}}</tbody>
</table>
</section>

<div class="grid">
<section aria-labelledby="audience">
<h2 id="audience">Audience</h2>
<table>
<tbody>
<tr><th scope="row">Listeners</th><td class="num">{{.Listeners}}</td></tr>
{{if .Edges}}<tr><th scope="row">Listeners, with the edges</th><td class="num">{{.FleetListeners}}</td></tr>{{end}}
<tr><th scope="row">Waiting room</th><td class="num">{{.Waiting}}</td></tr>
<tr><th scope="row">Proof-of-work difficulty</th><td class="num">{{.PoWDifficulty}} bits</td></tr>
<tr><th scope="row">Recordings on disk</th><td class="num">{{bytes .RecordingBytes}}</td></tr>
<tr><th scope="row">Clips on disk</th><td class="num">{{bytes .ClipBytes}}</td></tr>
<tr><th scope="row">Goroutines</th><td class="num">{{.Goroutines}}</td></tr>
<tr><th scope="row">Heap</th><td class="num">{{bytes .HeapBytes}}</td></tr>
</tbody>
</table>
</section>

<section aria-labelledby="rates">
<h2 id="rates">Rates</h2>
<table>
<tbody>
{{range .Rates}}<tr><th scope="row">{{.Name}}</th><td class="num">{{.Value}}</td></tr>
{{end}}</tbody>
</table>
</section>
</div>

<div class="grid">
<section aria-labelledby="refusals">
<h2 id="refusals">Refusals by reason</h2>
{{if .Refusals}}<table>
<thead><tr><th scope="col">Reason</th><th scope="col">Kind</th><th scope="col">Rate</th></tr></thead>
<tbody>
{{range .Refusals}}<tr><td><code>{{.Reason}}</code></td><td>{{.Kind}}</td><td class="num">{{.Rate}}</td></tr>
{{end}}</tbody>
</table>{{else}}<p class="muted">No refusals in the window.</p>{{end}}
</section>

<section aria-labelledby="prefixes">
<h2 id="prefixes">Top source prefixes of invalid refusals (recent)</h2>
{{if .TopPrefixes}}<table>
<thead><tr><th scope="col">Prefix</th><th scope="col">Refusals</th><th scope="col">Share</th></tr></thead>
<tbody>
{{range .TopPrefixes}}<tr><td><code>{{.Prefix}}</code></td><td class="num">{{.Count}}</td><td class="num">{{pct .Share}}</td></tr>
{{end}}</tbody>
</table>{{else}}<p class="muted">No invalid refusals recently.</p>{{end}}
</section>
</div>

<section aria-labelledby="components">
<h2 id="components">Components</h2>
{{if .Components}}<table>
<thead><tr><th scope="col">Component</th><th scope="col">State</th><th scope="col">Errors (window / total)</th><th scope="col">Stalls (window / total)</th><th scope="col">Longest frame</th><th scope="col">Detail</th></tr></thead>
<tbody>
{{range .Components}}<tr><td>{{.Name}}{{if not .Internal}} <span class="muted">(not judged)</span>{{end}}</td><td>{{if .Failing}}<strong>FAULTS</strong>{{else}}ok{{end}}</td><td class="num">{{.ErrorsInWindow}} / {{.Errors}}</td><td class="num">{{.StallsInWindow}} / {{.Stalls}}</td><td class="num">{{if .MaxFrameSecs}}{{ms .MaxFrameSecs}}{{else}}—{{end}}</td><td>{{.Detail}}</td></tr>
{{end}}</tbody>
</table>{{else}}<p class="muted">No components reported.</p>{{end}}
</section>

{{if .Edges}}<section aria-labelledby="edges">
<h2 id="edges">Edges</h2>
<table>
<thead><tr><th scope="col">Edge</th><th scope="col">URL</th><th scope="col">Listeners</th><th scope="col">Capacity</th><th scope="col">Waiting</th><th scope="col">Verdict</th><th scope="col">Report age</th></tr></thead>
<tbody>
{{range .Edges}}<tr><td><code>{{.Node}}</code></td><td>{{.URL}}</td><td class="num">{{.Listeners}}</td><td class="num">{{.Capacity}}</td><td class="num">{{.Waiting}}</td><td>{{.Verdict}}</td><td class="num">{{printf "%.1f" .AgeSeconds}} s</td></tr>
{{end}}</tbody>
</table>
</section>
{{end}}
<section aria-labelledby="spaces">
<h2 id="spaces">Spaces on air</h2>
{{if .Spaces}}<table>
<thead><tr><th scope="col">Space</th><th scope="col">Speakers</th><th scope="col">Listeners</th></tr></thead>
<tbody>
{{range .Spaces}}<tr><td><code>{{.ID}}</code></td><td class="num">{{.Speakers}}</td><td class="num">{{.Listeners}}</td></tr>
{{end}}</tbody>
</table>{{else}}<p class="muted">No space on air.</p>{{end}}
</section>
</main>
<footer class="muted"><p>The same report as JSON: <a href="?format=json">?format=json</a> or <code>Accept: application/json</code>. Metrics: <a href="/metrics">/metrics</a>.</p></footer>
</body>
</html>
`))
