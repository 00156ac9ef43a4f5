package ops_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/amphi-audio/amphi/internal/gate"
	"github.com/amphi-audio/amphi/internal/ops"
)

func busy() ops.Snapshot {
	return ops.Snapshot{
		Listeners:       1200,
		ListenersServed: 5000,
		EgressBytes:     1 << 30,
		JoinRequests:    9000,
		Joins:           6000,
		Refusals: map[string]uint64{
			gate.RefusalTicketBadSignature.String(): 2500,
			gate.RefusalRoomFull.String():           500,
		},
		TicketsVerified: 6000,
		Waiting:         42,
		PoWDifficulty:   18,
		HTTPResponses:   map[int]uint64{200: 6000, 503: 500},
		Components: map[string]ops.ComponentHealth{
			ops.ComponentMixer:    {Stalls: 3, MaxFrame: 25 * time.Millisecond},
			ops.ComponentRecorder: {Errors: 1},
		},
		Spaces: []ops.SpaceSnapshot{{ID: "s1", Speakers: 3, Listeners: 1200}, {ID: "s1", Speakers: 9}},
	}
}

func TestCollectorExposesRefusalsByReason(t *testing.T) {
	c := ops.NewCollector(busy)
	want := `
# HELP amphi_refusals_total Requests refused, by reason.
# TYPE amphi_refusals_total counter
amphi_refusals_total{reason="room_full"} 500
amphi_refusals_total{reason="ticket_bad_signature"} 2500
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "amphi_refusals_total"); err != nil {
		t.Fatal(err)
	}
}

func TestCollectorExposesTheSnapshot(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(ops.NewCollector(busy)); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP amphi_component_stalls_total Stalls by component: mixer stalls of 100 ms or more, recorder chunks dropped, ...
# TYPE amphi_component_stalls_total counter
amphi_component_stalls_total{component="mixer"} 3
amphi_component_stalls_total{component="recorder"} 0
# HELP amphi_http_responses_total HTTP responses by status code.
# TYPE amphi_http_responses_total counter
amphi_http_responses_total{code="200"} 6000
amphi_http_responses_total{code="503"} 500
# HELP amphi_listeners Listener streams open now.
# TYPE amphi_listeners gauge
amphi_listeners 1200
# HELP amphi_mixer_max_frame_seconds Longest time the mixer recently took for one 20 ms frame.
# TYPE amphi_mixer_max_frame_seconds gauge
amphi_mixer_max_frame_seconds 0.025
# HELP amphi_space_speakers Speakers on stage, by space.
# TYPE amphi_space_speakers gauge
amphi_space_speakers{space="s1"} 3
# HELP amphi_waiting People in the waiting room of open spaces now.
# TYPE amphi_waiting gauge
amphi_waiting 42
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"amphi_component_stalls_total", "amphi_http_responses_total", "amphi_listeners",
		"amphi_mixer_max_frame_seconds", "amphi_space_speakers", "amphi_waiting"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n < 20 {
		t.Errorf("gathered %d series, err %v", n, err)
	}
}
