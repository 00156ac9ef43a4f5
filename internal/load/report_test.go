package load

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
)

func TestHistogramQuantilesAreWithinTwoPercent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	var all []time.Duration
	for range 10000 {
		d := time.Duration(rng.ExpFloat64() * float64(300*time.Millisecond))
		h.Add(d)
		all = append(all, d)
	}
	slices.Sort(all)
	for _, q := range []float64{0.5, 0.9, 0.99} {
		want := all[int(q*float64(len(all)))-1]
		got := h.Quantile(q)
		if rel := float64(got-want) / float64(want); rel > 0.02 || rel < -0.02 {
			t.Errorf("q%.2f = %v, want %v ±2%%", q, got, want)
		}
	}
	if h.Quantile(1) != all[len(all)-1] || time.Duration(h.Max) != all[len(all)-1] {
		t.Errorf("max %v, q1 %v, want %v", h.Max, h.Quantile(1), all[len(all)-1])
	}
}

// viaJSON returns r after a trip through JSON, as workers send reports.
func viaJSON(t *testing.T, r *Report) *Report {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	return &back
}

func TestMergedReportsEqualOneReportOfEverything(t *testing.T) {
	// Three shares' reports, as workers send them, through JSON.
	mk := func(ttfas []time.Duration, ok, stalled, failed int64, failedBy map[string]int64, tl []Sample) *Report {
		r := &Report{Timeline: tl, Bytes: Bytes{Total: 4000 * ok}, ListenerSeconds: float64(ok)}
		for _, d := range ttfas {
			r.TTFAHistogram.Add(d)
		}
		r.Listeners = ListenerCounts{Joined: ok + stalled + failed, OK: ok, Stalled: stalled, Failed: failed, FailedBy: failedBy}
		r.Stalls = stalled * 2
		r.Disconnects = map[string]int64{causeEnded: ok + stalled}
		return viaJSON(t, r)
	}
	ms := time.Millisecond
	shares := []*Report{
		mk([]time.Duration{10 * ms, 20 * ms}, 2, 0, 1, map[string]int64{"refused": 1}, []Sample{{T: 1, Live: 2, Joins: 3}, {T: 2, Live: 2, Failed: 1}}),
		mk([]time.Duration{30 * ms, 40 * ms, 900 * ms}, 2, 1, 0, nil, []Sample{{T: 1, Live: 1, Joins: 3}, {T: 2, Live: 3, Stalls: 2}, {T: 3}}),
		mk(nil, 0, 0, 2, map[string]int64{"refused": 1, "http_503": 1}, []Sample{{T: 2, Failed: 2}}),
	}
	var all Report
	for _, s := range shares {
		all.Merge(s)
	}
	l := all.Listeners
	if l.Joined != 8 || l.OK != 4 || l.Stalled != 1 || l.Failed != 3 || l.FailedBy["refused"] != 2 || l.FailedBy["http_503"] != 1 {
		t.Errorf("listeners %+v", l)
	}
	if all.Stalls != 2 || all.Disconnects[causeEnded] != 5 || all.Bytes.Total != 16000 || all.Bytes.PerListenerSecond != 4000 {
		t.Errorf("stalls %d, disconnects %v, bytes %+v", all.Stalls, all.Disconnects, all.Bytes)
	}
	if all.TTFAHistogram.N != 5 || time.Duration(all.TTFA.Max) != 900*ms {
		t.Errorf("ttfa %+v from %d", all.TTFA, all.TTFAHistogram.N)
	}
	if p50 := time.Duration(all.TTFA.P50); p50 < 29*ms || p50 > 31*ms {
		t.Errorf("ttfa p50 %v, want 30ms", p50)
	}
	want := []Sample{{T: 1, Live: 3, Joins: 6}, {T: 2, Live: 5, Stalls: 2, Failed: 3}, {T: 3}}
	if !slices.Equal(all.Timeline, want) {
		t.Errorf("timeline\n got %+v\nwant %+v", all.Timeline, want)
	}
	var text strings.Builder
	if err := all.WriteText(&text); err != nil || !strings.Contains(text.String(), "4 ok, 1 stalled, 0 cut, 3 failed") {
		t.Errorf("text report (%v):\n%s", err, text.String())
	}
	var html strings.Builder
	if err := WriteChart(&html, &all); err != nil {
		t.Fatal(err)
	}
	if h := html.String(); !strings.Contains(h, "<svg") || strings.Contains(h, "http://") || strings.Contains(h, "<script src") {
		t.Errorf("chart is not one self-contained page:\n%.500s", h)
	}
}

func TestScenarioBoundsAreEnforced(t *testing.T) {
	ok := func() Scenario {
		s := DefaultScenario()
		s.Listeners, s.Duration = 100, Duration(10*time.Second)
		return s
	}
	stall := Fault{At: Duration(time.Second), Kind: "mixer_stall", For: Duration(time.Second)}
	for _, tc := range []struct {
		name   string
		change func(*Scenario)
		bad    string // part of the error; empty means valid
	}{
		{"defaults", func(*Scenario) {}, ""},
		{"too many listeners", func(s *Scenario) { s.Listeners = MaxListeners + 1 }, "listeners"},
		{"negative listeners", func(s *Scenario) { s.Listeners = -1 }, "listeners"},
		{"no duration", func(s *Scenario) { s.Duration = 0 }, "duration"},
		{"over an hour", func(s *Scenario) { s.Duration = Duration(time.Hour + time.Second) }, "duration"},
		{"not loopback", func(s *Scenario) { s.Server = "http://10.0.0.1:8080" }, "loopback"},
		{"not http", func(s *Scenario) { s.Server = "ftp://127.0.0.1" }, "http://"},
		{"joins outlast the run", func(s *Scenario) { s.JoinRate = 5 }, "would join after"},
		{"join rate too high", func(s *Scenario) { s.JoinRate = MaxJoinRate + 1 }, "join rate"},
		{"a stage holds 13", func(s *Scenario) { s.Speakers = 14 }, "speakers"},
		{"speakers need a token", func(s *Scenario) { s.SpaceID, s.Speakers = "abc", 1 }, "token"},
		{"per process over the file cap", func(s *Scenario) { s.PerProcess = 20000 }, "per process"},
		{"resume over a minute", func(s *Scenario) { s.Resume = Duration(MaxResume + time.Second) }, "resume"},
		{"never resume", func(s *Scenario) { s.Resume = -1 }, ""},
		{"too many workers", func(s *Scenario) { s.Listeners, s.PerProcess = 300, 1 }, "worker processes"},
		{"herd after the end", func(s *Scenario) { s.HerdAt = Duration(time.Minute) }, "herd"},
		{"burst over 10 s", func(s *Scenario) { s.Burst = Duration(11 * time.Second) }, "burst"},
		{"space id with a slash", func(s *Scenario) { s.SpaceID = "a/b" }, "space id"},
		{"latency sample", func(s *Scenario) { s.LatencySample = 10 }, ""},
		{"latency sample over the bound", func(s *Scenario) { s.LatencySample = MaxLatencySample + 1 }, "latency sample"},
		{"negative latency sample", func(s *Scenario) { s.LatencySample = -1 }, "latency sample"},
		{"marks too close", func(s *Scenario) { s.LatencyInterval = Duration(100 * time.Millisecond) }, "latency interval"},
		{"marks too far apart", func(s *Scenario) { s.LatencyInterval = Duration(time.Minute) }, "latency interval"},
		{"pages poll every 2 s", func(s *Scenario) { s.PollState = Duration(2 * time.Second) }, ""},
		{"pages poll too often", func(s *Scenario) { s.PollState = Duration(100 * time.Millisecond) }, "poll state"},
		{"pages poll too seldom", func(s *Scenario) { s.PollState = Duration(2 * time.Minute) }, "poll state"},
		{"a plain stream has no state", func(s *Scenario) { s.Stream, s.PollState = "/amphi.opus", Duration(2*time.Second) }, "poll state"},
		{"a fault", func(s *Scenario) { s.Ops, s.Faults = "http://127.0.0.1:8081", []Fault{stall} }, ""},
		{"faults need the ops address", func(s *Scenario) { s.Faults = []Fault{stall} }, "set ops"},
		{"ops off loopback", func(s *Scenario) { s.Ops, s.Faults = "http://192.0.2.1:8081", []Fault{stall} }, "loopback"},
		{"fault after the end", func(s *Scenario) {
			s.Ops, s.Faults = "http://127.0.0.1:8081", []Fault{{At: s.Duration, Kind: "mixer_stall", For: stall.For}}
		}, "fault 0"},
		{"fault without an end", func(s *Scenario) { s.Ops, s.Faults = "http://127.0.0.1:8081", []Fault{{Kind: "bus_loss"}} }, "fault 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ok()
			tc.change(&s)
			err := s.Normalize()
			if tc.bad == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.bad) || amphi.ErrorCode(err) != amphi.EInvalid {
				t.Fatalf("err = %v, want an invalid error about %q", err, tc.bad)
			}
		})
	}
}

func TestScenarioDefaultsDependOnTheSpace(t *testing.T) {
	s := DefaultScenario()
	s.Listeners, s.Duration = 25_000, Duration(time.Minute)
	if err := s.Normalize(); err != nil {
		t.Fatal(err)
	}
	if s.Speakers != 1 || s.Sources != 25_000 || s.PerProcess != DefaultPerProcess || s.Workers() != 2 ||
		time.Duration(s.PlayerBuffer) != DefaultPlayerBuffer || time.Duration(s.Timeout) != DefaultTimeout {
		t.Errorf("created space: %+v", s)
	}
	s = DefaultScenario()
	s.SpaceID, s.Listeners, s.Duration = "abc", 10, Duration(time.Minute)
	if err := s.Normalize(); err != nil || s.Speakers != 0 || s.Workers() != 0 {
		t.Errorf("given space: %+v, %v", s, err)
	}
}

func TestScenarioFileDurationsAreStrings(t *testing.T) {
	var s Scenario
	if err := json.Unmarshal([]byte(`{"duration": "90s", "burst": 500000000}`), &s); err != nil {
		t.Fatal(err)
	}
	if time.Duration(s.Duration) != 90*time.Second || time.Duration(s.Burst) != 500*time.Millisecond {
		t.Errorf("%+v", s)
	}
	b, _ := json.Marshal(s)
	if !strings.Contains(string(b), `"duration":"1m30s"`) {
		t.Errorf("%s", b)
	}
	if err := json.Unmarshal([]byte(`{"duration": "soon"}`), &s); err == nil {
		t.Errorf("a bad duration was accepted")
	}
}
