package load

import (
	"slices"
	"time"

	"github.com/amphi-audio/amphi/internal/latency"
)

// measureLatency matches the detections the shares sent with the marks the
// bot sent, from the run's start, and sets r.Latency and the per-second
// latency of r.Timeline. It leaves r.Detections empty: they are raw
// material, as large as the sample times the run's seconds.
func (r *Report) measureLatency(sc *Scenario, sent []time.Time, start time.Time) {
	dets := r.Detections
	r.Detections = nil
	cfg := markerConfig(sc)
	l := &Latency{
		Sent:        len(sent),
		Listeners:   r.LatencyListeners,
		Interval:    sc.LatencyInterval,
		Worker0Only: r.Workers > 0,
	}
	r.Latency = l
	// Match per second of arrival, for the timeline: the matching rules
	// stay Match's, and a second's latencies stay together.
	second := func(d latency.Detection) int { return int(d.Arrived.Sub(start)/time.Second) + 1 }
	slices.SortFunc(dets, func(a, b latency.Detection) int { return a.Arrived.Compare(b.Arrived) })
	var all []time.Duration
	for i := 0; i < len(dets); {
		t := second(dets[i])
		j := i + 1
		for j < len(dets) && second(dets[j]) == t {
			j++
		}
		lats := latency.Match(sent, dets[i:j], cfg)
		i = j
		if len(lats) == 0 {
			continue
		}
		all = append(all, lats...)
		k, found := slices.BinarySearchFunc(r.Timeline, t, func(x Sample, t int) int { return x.T - t })
		if found {
			r.Timeline[k].Latency = Duration(latency.Percentile(lats, 0.5))
		}
	}
	s := latency.Summarize(all)
	l.N, l.P50, l.P99, l.Max = s.N, Duration(s.P50), Duration(s.P99), Duration(s.Max)
}
