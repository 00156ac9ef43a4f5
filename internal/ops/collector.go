package ops

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// collector exposes a Snapshot, taken afresh at each scrape, as Prometheus
// metrics. Labelled families (reasons, codes, spaces) are as open as the
// snapshot's maps, so every metric is built at Collect time.
type collector struct {
	snap  func() Snapshot
	descs collectorDescs
}

type collectorDescs struct {
	listeners, listenersServed, egress              *prometheus.Desc
	chunksMissed, chunksFilled, storage, hlsSkipped *prometheus.Desc
	joins, joinRequests, listenRequests, refusals   *prometheus.Desc
	ticketsVerified, waiting, powDifficulty, http   *prometheus.Desc
	waitingForStart, polls                          *prometheus.Desc
	componentErrors, componentStalls, mixerMaxFrame *prometheus.Desc
	spaceSpeakers, spaceListeners, spaces           *prometheus.Desc
	goroutines, heap, cpu                           *prometheus.Desc
}

// NewCollector returns a prometheus.Collector that calls snap at each scrape
// and exposes the Snapshot as amphi_* metrics. Register it on a registry the
// caller owns and serve it with promhttp.HandlerFor.
func NewCollector(snap func() Snapshot) prometheus.Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("amphi_"+name, help, labels, nil)
	}
	return &collector{snap: snap, descs: collectorDescs{
		listeners:       d("listeners", "Listener streams open now."),
		listenersServed: d("listeners_served_total", "Listener streams started."),
		egress:          d("egress_bytes_total", "Bytes written to listeners."),
		chunksMissed:    d("bus_chunks_missed_total", "Program chunks lost on the bus on the way here (gaps)."),
		chunksFilled:    d("bus_chunks_filled_total", "Missed program chunks fetched again from the origin in time: no listener heard them missing."),
		storage:         d("storage_bytes", "Bytes recordings and clips take on disk, by kind.", "kind"),
		hlsSkipped:      d("hls_pages_skipped_total", "Program pages the LL-HLS segmenter refused: they went back or broke Opus framing."),
		joins:           d("joins_total", "Joins admitted."),
		joinRequests:    d("join_requests_total", "Join attempts that reached the gate, refused ones included."),
		listenRequests:  d("listen_requests_total", "Listen requests that reached the gate, refused ones included."),
		refusals:        d("refusals_total", "Requests refused, by reason.", "reason"),
		ticketsVerified: d("tickets_verified_total", "Tickets whose signature checked out."),
		waiting:         d("waiting", "People in the waiting room of open spaces now."),
		waitingForStart: d("waiting_for_start", "People waiting for a scheduled space to start."),
		polls:           d("waiting_polls_total", "Polls of people in line (not join requests)."),
		powDifficulty:   d("pow_difficulty", "Proof-of-work difficulty asked now, in bits."),
		http:            d("http_responses_total", "HTTP responses by status code.", "code"),
		componentErrors: d("component_errors_total", "Errors by component (mixer, recorder, bus, stage, edge).", "component"),
		componentStalls: d("component_stalls_total", "Stalls by component: mixer stalls of 100 ms or more, recorder chunks dropped, ...", "component"),
		mixerMaxFrame:   d("mixer_max_frame_seconds", "Longest time the mixer recently took for one 20 ms frame."),
		spaceSpeakers:   d("space_speakers", "Speakers on stage, by space.", "space"),
		spaceListeners:  d("space_listeners", "Listeners, by space.", "space"),
		spaces:          d("spaces_live", "Spaces on air now."),
		goroutines:      d("goroutines", "Goroutines in the process."),
		heap:            d("heap_bytes", "Bytes of live heap objects."),
		cpu:             d("cpu_seconds_total", "CPU time used by the process, user and system."),
	}}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	d := &c.descs
	for _, desc := range []*prometheus.Desc{
		d.listeners, d.listenersServed, d.egress, d.chunksMissed, d.chunksFilled, d.storage, d.hlsSkipped, d.joins, d.joinRequests,
		d.listenRequests, d.refusals, d.ticketsVerified, d.waiting, d.waitingForStart, d.polls,
		d.powDifficulty, d.http, d.componentErrors, d.componentStalls,
		d.mixerMaxFrame, d.spaceSpeakers, d.spaceListeners, d.spaces,
		d.goroutines, d.heap, d.cpu,
	} {
		ch <- desc
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.snap()
	d := &c.descs
	counter := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, v, labels...)
	}
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	gauge(d.listeners, float64(s.Listeners))
	counter(d.listenersServed, float64(s.ListenersServed))
	counter(d.egress, float64(s.EgressBytes))
	counter(d.chunksMissed, float64(s.ChunksMissed))
	counter(d.chunksFilled, float64(s.ChunksFilled))
	gauge(d.storage, float64(s.RecordingBytes), "recordings")
	gauge(d.storage, float64(s.ClipBytes), "clips")
	counter(d.hlsSkipped, float64(s.HLSSkipped))
	counter(d.joins, float64(s.Joins))
	counter(d.joinRequests, float64(s.JoinRequests))
	counter(d.listenRequests, float64(s.ListenRequests))
	for reason, n := range s.Refusals {
		counter(d.refusals, float64(n), reason)
	}
	counter(d.ticketsVerified, float64(s.TicketsVerified))
	gauge(d.waiting, float64(s.Waiting))
	gauge(d.waitingForStart, float64(s.WaitingForStart))
	counter(d.polls, float64(s.Polls))
	gauge(d.powDifficulty, s.PoWDifficulty)
	for code, n := range s.HTTPResponses {
		counter(d.http, float64(n), strconv.Itoa(code))
	}
	for name, h := range s.Components {
		counter(d.componentErrors, float64(h.Errors), name)
		counter(d.componentStalls, float64(h.Stalls), name)
	}
	gauge(d.mixerMaxFrame, s.Components[ComponentMixer].MaxFrame.Seconds())
	seen := make(map[string]bool, len(s.Spaces))
	for _, sp := range s.Spaces {
		// Two entries for one space would make the scrape fail; the
		// first wins.
		if seen[sp.ID] {
			continue
		}
		seen[sp.ID] = true
		gauge(d.spaceSpeakers, float64(sp.Speakers), sp.ID)
		gauge(d.spaceListeners, float64(sp.Listeners), sp.ID)
	}
	gauge(d.spaces, float64(len(seen)))
	gauge(d.goroutines, float64(s.Goroutines))
	gauge(d.heap, float64(s.HeapBytes))
	counter(d.cpu, s.CPUSeconds)
}
