package ops_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/amphi-audio/amphi/internal/gate"
	"github.com/amphi-audio/amphi/internal/ops"
)

// attacked returns a Monitor whose latest report names a flood and a stall.
func attacked() *ops.Monitor {
	m := newMonitor(nil)
	before := quiet(t0)
	m.Observe(before)
	m.Observe(window(before, func(s *ops.Snapshot) {
		flood(gate.RefusalTicketBadSignature.String(), 50_000)(s)
		s.Components["mixer"] = ops.ComponentHealth{Stalls: 9}
	}))
	return m
}

func get(t *testing.T, h http.Handler, target, accept string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func TestOpsJSONHasVerdict(t *testing.T) {
	tests := []struct {
		name, target, accept string
	}{
		{"accept json", "/ops", "application/json"},
		{"accept json over html", "/ops", "text/html;q=0.5, application/json"},
		{"format query", "/ops?format=json", "text/html"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := get(t, attacked().Handler(), tt.target, tt.accept)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			var body struct {
				Verdict    string         `json:"verdict"`
				Conditions []string       `json:"conditions"`
				Evidence   []ops.Evidence `json:"evidence"`
				Rates      struct {
					InvalidShare float64 `json:"invalid_share"`
				} `json:"rates"`
				WindowSeconds float64 `json:"window_seconds"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if body.Verdict != ops.FailingInternally || len(body.Conditions) != 2 || body.Conditions[1] != ops.UnderAttack {
				t.Errorf("verdict %q, conditions %v", body.Verdict, body.Conditions)
			}
			if len(body.Evidence) == 0 || body.Rates.InvalidShare < 0.9 || body.WindowSeconds != 10 {
				t.Errorf("evidence %v, invalid share %v, window %v s", body.Evidence, body.Rates.InvalidShare, body.WindowSeconds)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", resp.Header.Get("Cache-Control"))
			}
		})
	}
}

func TestOpsHTMLShowsVerdict(t *testing.T) {
	browser := "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	for _, accept := range []string{browser, "", "*/*"} {
		resp := get(t, attacked().Handler(), "/ops", accept)
		b, _ := io.ReadAll(resp.Body)
		page := string(b)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("Accept %q: status %d, content type %q", accept, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		for _, want := range []string{
			`<meta http-equiv="refresh" content="3">`,
			`<h1>failing internally</h1>`,
			`under attack`,
			`mixer stalls of 100 ms or more`,
			`<th scope="col">Prefix</th>`,
			`<code>ticket_bad_signature</code>`,
			`lang="en"`,
		} {
			if want == `<th scope="col">Prefix</th>` {
				continue // no TopPrefixes wired in this monitor
			}
			if !strings.Contains(page, want) {
				t.Errorf("Accept %q: page lacks %q", accept, want)
			}
		}
		for _, external := range []string{"<script src", "<link", "http://", "https://"} {
			if strings.Contains(page, external) {
				t.Errorf("page refers to an external asset: %q", external)
			}
		}
	}
}

func TestOpsRefusesOtherMethods(t *testing.T) {
	rec := httptest.NewRecorder()
	attacked().Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/ops", nil))
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: status %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}

func TestOpsBeforeTheFirstSampleSamplesOnce(t *testing.T) {
	calls := 0
	m := ops.NewMonitor(ops.Config{}, func() ops.Snapshot { calls++; return quiet(t0) }, nil)
	resp := get(t, m.Handler(), "/ops", "application/json")
	var body struct{ Verdict string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if body.Verdict != ops.Healthy || calls != 1 {
		t.Errorf("verdict %q after %d snapshots, want healthy after 1", body.Verdict, calls)
	}
}

func TestOpsShowsTheEdgesOfTheFleet(t *testing.T) {
	m := newMonitor(nil)
	s := quiet(t0)
	s.Listeners = 10
	s.Edges = []ops.EdgeSnapshot{
		{Node: "edge-a", URL: "http://127.0.0.1:9000", Listeners: 18000, Capacity: 18000, Verdict: "overloaded", AgeSeconds: 0.4},
		{Node: "edge-b", URL: "http://127.0.0.1:9000", Listeners: 1200, Capacity: 18000, Verdict: "healthy", AgeSeconds: 0.9},
	}
	m.Observe(s)
	if r := m.Report(); r.FleetListeners != 19210 || len(r.Edges) != 2 {
		t.Errorf("fleet listeners %d over %d edges, want 19210 over 2", r.FleetListeners, len(r.Edges))
	}
	b, _ := io.ReadAll(get(t, m.Handler(), "/ops", "text/html").Body)
	for _, want := range []string{"edge-a", "edge-b", "overloaded", "19210"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/ops does not show %q", want)
		}
	}
}
