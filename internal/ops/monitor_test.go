package ops_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/gate"
	"github.com/amphi-audio/amphi/internal/ops"
)

var t0 = time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)

// newMonitor judges refusals as the server does: by gate's table.
func newMonitor(top *ops.TopPrefixes) *ops.Monitor {
	cfg := ops.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.InvalidReasons = gate.RefusalNames(gate.Refusal.Invalid)
	cfg.CapacityReasons = gate.RefusalNames(gate.Refusal.Capacity)
	return ops.NewMonitor(cfg, func() ops.Snapshot { panic("tests feed snapshots with Observe") }, top)
}

// quiet is an idle server with one space on air and a mixer that never
// stalled.
func quiet(at time.Time) ops.Snapshot {
	return ops.Snapshot{
		At:         at,
		Listeners:  40,
		Refusals:   map[string]uint64{},
		Components: map[string]ops.ComponentHealth{"mixer": {}, "recorder": {}, "bus": {}},
		Spaces:     []ops.SpaceSnapshot{{ID: "s1", Speakers: 2, Listeners: 40}},
	}
}

// window is a snapshot 10 s after before, changed by f.
func window(before ops.Snapshot, f func(s *ops.Snapshot)) ops.Snapshot {
	s := before
	s.At = before.At.Add(10 * time.Second)
	s.Refusals = map[string]uint64{}
	for k, v := range before.Refusals {
		s.Refusals[k] = v
	}
	s.Components = map[string]ops.ComponentHealth{}
	for k, v := range before.Components {
		s.Components[k] = v
	}
	s.HTTPResponses = map[int]uint64{}
	for k, v := range before.HTTPResponses {
		s.HTTPResponses[k] = v
	}
	f(&s)
	return s
}

// judge feeds before and after to a fresh Monitor and returns the report.
func judge(t *testing.T, top *ops.TopPrefixes, before, after ops.Snapshot) ops.Report {
	t.Helper()
	m := newMonitor(top)
	m.Observe(before)
	r := m.Observe(after)
	if r.Verdict != r.Conditions[0] {
		t.Errorf("verdict %q is not the first condition of %v", r.Verdict, r.Conditions)
	}
	if got := m.Report(); got.Verdict != r.Verdict || !got.At.Equal(r.At) {
		t.Errorf("Report() = %s at %v, Observe returned %s at %v", got.Verdict, got.At, r.Verdict, r.At)
	}
	return r
}

func hasEvidence(r ops.Report, condition, signal string) (ops.Evidence, bool) {
	for _, e := range r.Evidence {
		if e.Condition == condition && e.Signal == signal {
			return e, true
		}
	}
	return ops.Evidence{}, false
}

func flood(reason string, n uint64) func(s *ops.Snapshot) {
	return func(s *ops.Snapshot) {
		s.JoinRequests += n + 500
		s.Joins += 500
		s.Refusals[reason] += n
	}
}

func TestFloodOfForgedTicketsIsUnderAttack(t *testing.T) {
	tests := []struct {
		name   string
		reason string
		n      uint64
	}{
		{"bad signatures", gate.RefusalTicketBadSignature.String(), 50_000},
		{"malformed tickets", gate.RefusalTicketMalformed.String(), 5_000},
		{"wrong proof of work", gate.RefusalPoWWrong.String(), 1_000},
		{"rate limited sources", gate.RefusalRateSource.String(), 20_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := quiet(t0)
			r := judge(t, nil, before, window(before, flood(tt.reason, tt.n)))
			if r.Verdict != ops.UnderAttack || !slices.Equal(r.Conditions, []string{ops.UnderAttack}) {
				t.Fatalf("verdict %s, conditions %v; want under_attack alone; evidence %+v", r.Verdict, r.Conditions, r.Evidence)
			}
			e, ok := hasEvidence(r, ops.UnderAttack, "invalid_share")
			want := float64(tt.n) / float64(tt.n+500)
			if !ok || e.Value != want || e.Threshold != 0.5 {
				t.Errorf("invalid_share evidence %+v (found %v), want value %v threshold 0.5", e, ok, want)
			}
			if _, ok := hasEvidence(r, ops.UnderAttack, "requests_per_second"); !ok {
				t.Errorf("no requests_per_second evidence: %+v", r.Evidence)
			}
			if got := r.Rates.Refusals[tt.reason]; got != float64(tt.n)/10 {
				t.Errorf("refusals/s of %s = %v, want %v", tt.reason, got, float64(tt.n)/10)
			}
		})
	}
}

func TestOneSourceHammeringIsUnderAttackEvenAtALowShare(t *testing.T) {
	top := ops.NewTopPrefixes(0)
	flooder := netip.MustParsePrefix("203.0.113.0/24")
	for range 3000 {
		top.Add(flooder)
	}
	for i := range 300 {
		top.Add(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24))
	}
	before := quiet(t0)
	after := window(before, func(s *ops.Snapshot) {
		s.JoinRequests += 100_000 // a busy legitimate crowd: 3 % invalid
		s.Joins += 96_700
		s.Refusals[gate.RefusalTicketExpired.String()] += 3300
	})
	r := judge(t, top, before, after)
	if r.Verdict != ops.UnderAttack {
		t.Fatalf("verdict %s, want under_attack; evidence %+v", r.Verdict, r.Evidence)
	}
	e, ok := hasEvidence(r, ops.UnderAttack, "top_prefix_share")
	if !ok || e.Value < 0.9 {
		t.Fatalf("top_prefix_share evidence %+v (found %v), want ≥ 0.9", e, ok)
	}
	if r.TopPrefixes[0].Prefix != flooder {
		t.Errorf("top prefix %v, want %v", r.TopPrefixes[0].Prefix, flooder)
	}
}

func TestMixerStallIsFailingInternally(t *testing.T) {
	tests := []struct {
		name   string
		change func(s *ops.Snapshot)
		signal string
		value  float64
	}{
		{"mixer stalled", func(s *ops.Snapshot) {
			s.Components["mixer"] = ops.ComponentHealth{Stalls: 37, MaxFrame: 180 * time.Millisecond}
		}, "component.mixer.stalls", 37},
		{"recorder dropped chunks", func(s *ops.Snapshot) {
			s.Components["recorder"] = ops.ComponentHealth{Stalls: 3}
		}, "component.recorder.stalls", 3},
		{"recorder write errors", func(s *ops.Snapshot) {
			s.Components["recorder"] = ops.ComponentHealth{Errors: 1}
		}, "component.recorder.errors", 1},
		{"bus publish errors", func(s *ops.Snapshot) {
			s.Components["bus"] = ops.ComponentHealth{Errors: 12}
		}, "component.bus.errors", 12},
		{"5xx responses", func(s *ops.Snapshot) {
			s.HTTPResponses[500] += 25
			s.HTTPResponses[502] += 5
		}, "server_errors_per_second", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := quiet(t0)
			r := judge(t, nil, before, window(before, tt.change))
			if r.Verdict != ops.FailingInternally || !slices.Equal(r.Conditions, []string{ops.FailingInternally}) {
				t.Fatalf("verdict %s, conditions %v; want failing_internally alone", r.Verdict, r.Conditions)
			}
			e, ok := hasEvidence(r, ops.FailingInternally, tt.signal)
			if !ok || e.Value != tt.value {
				t.Fatalf("evidence %+v (found %v), want %s = %v; all: %+v", e, ok, tt.signal, tt.value, r.Evidence)
			}
			if e.Text == "" {
				t.Error("evidence without text")
			}
		})
	}
}

func TestFloodPlusStallNamesBoth(t *testing.T) {
	before := quiet(t0)
	after := window(before, func(s *ops.Snapshot) {
		flood(gate.RefusalTicketBadSignature.String(), 80_000)(s)
		s.Components["mixer"] = ops.ComponentHealth{Stalls: 50}
	})
	r := judge(t, nil, before, after)
	want := []string{ops.FailingInternally, ops.UnderAttack}
	if r.Verdict != ops.FailingInternally || !slices.Equal(r.Conditions, want) {
		t.Fatalf("verdict %s, conditions %v; want failing_internally, conditions %v", r.Verdict, r.Conditions, want)
	}
	for _, ev := range [][2]string{
		{ops.FailingInternally, "component.mixer.stalls"},
		{ops.UnderAttack, "invalid_share"},
	} {
		if _, ok := hasEvidence(r, ev[0], ev[1]); !ok {
			t.Errorf("no %s evidence for %s: %+v", ev[1], ev[0], r.Evidence)
		}
	}
}

// TestFloodPlusStallNamedWithinTenSeconds plays the rehearsal's timeline:
// a minute of legitimate traffic sampled every 2 s, then a flood and a
// mixer stall together. Both must be named within 10 s.
func TestFloodPlusStallNamedWithinTenSeconds(t *testing.T) {
	m := newMonitor(nil)
	s := quiet(t0)
	start := t0.Add(time.Minute)
	var named time.Time
	for at := t0; at.Before(start.Add(30 * time.Second)); at = at.Add(2 * time.Second) {
		s = window(s, func(s *ops.Snapshot) {
			s.JoinRequests += 400 // 200/s legitimate joins throughout
			s.Joins += 400
			if !at.Before(start) {
				s.JoinRequests += 1000 // 500/s of garbage on top
				s.Refusals[gate.RefusalPoWWrong.String()] += 1000
				h := s.Components["mixer"]
				h.Stalls += 3
				s.Components["mixer"] = h
			}
		})
		s.At = at
		r := m.Observe(s)
		if at.Before(start) {
			if r.Verdict != ops.Healthy {
				t.Fatalf("at %v before the incident: verdict %s, evidence %+v", at.Sub(t0), r.Verdict, r.Evidence)
			}
			continue
		}
		if named.IsZero() && slices.Contains(r.Conditions, ops.FailingInternally) && slices.Contains(r.Conditions, ops.UnderAttack) {
			named = at
		}
	}
	if named.IsZero() || named.Sub(start) > 10*time.Second {
		t.Fatalf("both conditions named at %v after the start, want within 10 s", named.Sub(start))
	}
	t.Logf("named both %v after the incident started", named.Sub(start))
}

func TestFullRoomWithValidJoinsIsOverloaded(t *testing.T) {
	tests := []struct {
		name   string
		change func(s *ops.Snapshot)
		want   string
	}{
		{"waiting room and room full", func(s *ops.Snapshot) {
			s.Waiting = 1200
			s.JoinRequests += 10_000
			s.Joins += 7000
			s.Refusals[gate.RefusalRoomFull.String()] += 3000
			s.Refusals[gate.RefusalTicketExpired.String()] += 20
		}, ops.Overloaded},
		{"waiting room only", func(s *ops.Snapshot) {
			s.Waiting = 50
			s.JoinRequests += 1000
			s.Joins += 950
		}, ops.Overloaded},
		{"503 shedding is overload, not a fault", func(s *ops.Snapshot) {
			s.JoinRequests += 1000
			s.Joins += 400
			s.Refusals[gate.RefusalRoomFull.String()] += 600
			s.HTTPResponses[503] += 600
		}, ops.Overloaded},
		{"a full room under a flood is the flood's effect", func(s *ops.Snapshot) {
			s.Waiting = 1200
			s.JoinRequests += 100_000
			s.Joins += 1000
			s.Refusals[gate.RefusalRoomFull.String()] += 1000
			s.Refusals[gate.RefusalPoWWrong.String()] += 98_000
		}, ops.UnderAttack},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := quiet(t0)
			r := judge(t, nil, before, window(before, tt.change))
			if r.Verdict != tt.want || len(r.Conditions) != 1 {
				t.Fatalf("verdict %s, conditions %v; want %s alone; evidence %+v", r.Verdict, r.Conditions, tt.want, r.Evidence)
			}
			if tt.want != ops.Overloaded {
				return
			}
			if _, ok := hasEvidence(r, ops.Overloaded, "joins_per_second"); !ok {
				t.Errorf("no admissions evidence: %+v", r.Evidence)
			}
			if r.Waiting > 0 {
				if e, ok := hasEvidence(r, ops.Overloaded, "waiting"); !ok || e.Value != float64(r.Waiting) {
					t.Errorf("waiting evidence %+v (found %v), want %d", e, ok, r.Waiting)
				}
			}
		})
	}
}

func TestQuietServerIsHealthy(t *testing.T) {
	tests := []struct {
		name   string
		change func(s *ops.Snapshot)
	}{
		{"nothing happens", func(s *ops.Snapshot) {}},
		{"valid joins and listens", func(s *ops.Snapshot) {
			s.JoinRequests += 2000
			s.Joins += 2000
			s.ListenRequests += 2000
			s.TicketsVerified += 2000
			s.EgressBytes += 40 << 20
		}},
		{"a few bad tickets are noise", func(s *ops.Snapshot) {
			s.JoinRequests += 10 // 1 request/s, under AttackMinRate
			s.Refusals[gate.RefusalTicketBadSignature.String()] += 9
		}},
		{"the stage and edge are not judged", func(s *ops.Snapshot) {
			s.Components["stage"] = ops.ComponentHealth{Errors: 40, Stalls: 1}
			s.Components["edge"] = ops.ComponentHealth{Errors: 12}
		}},
		{"one 5xx is below the threshold", func(s *ops.Snapshot) {
			s.HTTPResponses[500]++
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := quiet(t0)
			r := judge(t, nil, before, window(before, tt.change))
			if r.Verdict != ops.Healthy || !slices.Equal(r.Conditions, []string{ops.Healthy}) {
				t.Fatalf("verdict %s, conditions %v; want healthy; evidence %+v", r.Verdict, r.Conditions, r.Evidence)
			}
			if len(r.Evidence) == 0 {
				t.Error("healthy without evidence of what was checked")
			}
			if r.Window != 10*time.Second {
				t.Errorf("window %v, want 10s", r.Window)
			}
		})
	}
}

func TestRatesSpanTheWindowNotTheLastSample(t *testing.T) {
	m := newMonitor(nil)
	s := quiet(t0)
	var r ops.Report
	for i := range 20 {
		s.At = t0.Add(time.Duration(i) * 2 * time.Second)
		s.JoinRequests += 100 // 50/s
		s.Joins += 100
		r = m.Observe(s)
	}
	if r.Window != 10*time.Second {
		t.Errorf("window %v, want 10s", r.Window)
	}
	if r.Rates.JoinRequests != 50 {
		t.Errorf("join requests/s %v, want 50", r.Rates.JoinRequests)
	}
	if got, want := len(m.History()), 20; got != want {
		t.Errorf("history holds %d points, want %d", got, want)
	}
}

func TestHistoryIsBounded(t *testing.T) {
	m := newMonitor(nil)
	s := quiet(t0)
	var r ops.Report
	for i := range 1000 {
		s.At = t0.Add(time.Duration(i) * time.Second)
		r = m.Observe(s)
	}
	// 5 min of samples, whatever the pace.
	if r.Samples > 301 || len(m.History()) > 301 {
		t.Errorf("history holds %d samples, %d points; want at most 5 min", r.Samples, len(m.History()))
	}
}

func TestCounterResetIsNotANegativeRate(t *testing.T) {
	before := quiet(t0)
	before.JoinRequests = 1_000_000
	before.Components["mixer"] = ops.ComponentHealth{Stalls: 500}
	after := window(before, func(s *ops.Snapshot) {
		s.JoinRequests = 100 // restarted
		s.Joins = 100
		s.Components["mixer"] = ops.ComponentHealth{}
	})
	r := judge(t, nil, before, after)
	if r.Rates.JoinRequests != 10 {
		t.Errorf("join requests/s after a reset = %v, want 10", r.Rates.JoinRequests)
	}
	if r.Verdict != ops.Healthy {
		t.Errorf("verdict %s, want healthy", r.Verdict)
	}
}

func TestVerdictSinceStaysUntilItChanges(t *testing.T) {
	m := newMonitor(nil)
	s := quiet(t0)
	stall := func(at time.Time, n uint64) ops.Report {
		s.At = at
		h := s.Components["mixer"]
		h.Stalls += n
		s.Components = map[string]ops.ComponentHealth{"mixer": h}
		return m.Observe(s)
	}
	stall(t0, 0)
	stall(t0.Add(2*time.Second), 0)
	r := stall(t0.Add(4*time.Second), 5)
	if r.Verdict != ops.FailingInternally || !r.Since.Equal(t0.Add(4*time.Second)) {
		t.Fatalf("verdict %s since %v, want failing_internally since +4s", r.Verdict, r.Since.Sub(t0))
	}
	r = stall(t0.Add(6*time.Second), 0)
	if !r.Since.Equal(t0.Add(4 * time.Second)) {
		t.Errorf("since moved to %v while the verdict held", r.Since.Sub(t0))
	}
	// Once the stall is out of the window, the verdict holds, clearing,
	// until a minute of calm has passed; then the server is healthy again.
	for i := 8; i <= 30; i += 2 {
		r = stall(t0.Add(time.Duration(i)*time.Second), 0)
	}
	if r.Verdict != ops.FailingInternally || !slices.ContainsFunc(r.Evidence, func(e ops.Evidence) bool { return e.Signal == "calm_seconds" }) {
		t.Errorf("verdict %s 26 s after the stall with evidence %+v, want failing_internally, clearing", r.Verdict, r.Evidence)
	}
	for i := 32; i <= 80; i += 2 {
		r = stall(t0.Add(time.Duration(i)*time.Second), 0)
	}
	if r.Verdict != ops.Healthy || len(r.Conditions) != 1 {
		t.Errorf("verdict %s (%v) 76 s after the stall, want healthy", r.Verdict, r.Conditions)
	}
}

func TestMonitorRotatesTopPrefixes(t *testing.T) {
	top := ops.NewTopPrefixes(8)
	m := newMonitor(top)
	old := netip.MustParsePrefix("198.51.100.0/24")
	for range 100 {
		top.Add(old)
	}
	for i := range 30 {
		m.Observe(quiet(t0.Add(time.Duration(i) * 2 * time.Second)))
	}
	if n := top.Total(); n != 0 {
		t.Errorf("%d refusals still counted 60 s after they happened: %v", n, top.Top(0))
	}
}

func Example() {
	top := ops.NewTopPrefixes(0)
	m := ops.NewMonitor(ops.Config{
		InvalidReasons: gate.RefusalNames(gate.Refusal.Invalid),
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, nil, top)
	m.Observe(ops.Snapshot{At: t0})
	r := m.Observe(ops.Snapshot{
		At:           t0.Add(10 * time.Second),
		JoinRequests: 1000,
		Joins:        100,
		Refusals:     map[string]uint64{gate.RefusalTicketBadSignature.String(): 900},
		Components:   map[string]ops.ComponentHealth{ops.ComponentMixer: {Stalls: 4}},
	})
	fmt.Println(r.Verdict, r.Conditions)
	for _, e := range r.Evidence {
		fmt.Println(e.Condition, e.Signal, e.Text)
	}
	// Output:
	// failing_internally [failing_internally under_attack]
	// failing_internally component.mixer.stalls mixer: 4 mixer stalls of 100 ms or more in the last 10s
	// under_attack invalid_share 90 % of requests were invalid (ticket_bad_signature 90/s), at or above 50 %
	// under_attack requests_per_second 100 requests/s (join 100/s, listen 0/s), at or above 20/s
}

func TestHerdWaitingForAScheduledStartIsExpectedNotOverload(t *testing.T) {
	m := newMonitor(nil)
	var r ops.Report
	for i := range 10 {
		s := quiet(t0.Add(time.Duration(i) * 2 * time.Second))
		s.WaitingForStart = 15000
		s.Polls = uint64(i) * 2 * 2677 // the herd's polls, 2 677/s
		r = m.Observe(s)
	}
	if r.Verdict != ops.Healthy {
		t.Fatalf("verdict %s with a herd waiting for the start, want healthy: %+v", r.Verdict, r.Evidence)
	}
	if !slices.ContainsFunc(r.Evidence, func(e ops.Evidence) bool { return e.Signal == "waiting_for_start" && e.Value == 15000 }) {
		t.Errorf("no evidence of the herd: %+v", r.Evidence)
	}
	if r.Rates.Polls < 2600 || r.Rates.Requests > 1 {
		t.Errorf("polls %v/s and requests %v/s: polls are not requests", r.Rates.Polls, r.Rates.Requests)
	}
}
