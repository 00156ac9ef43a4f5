package main

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/amphi-audio/amphi/internal/bus"
	"github.com/amphi-audio/amphi/internal/gate"
	"github.com/amphi-audio/amphi/internal/ops"
)

// fleetStale is how old an edge's last load report may be before the edge
// counts as gone: edges report every second, so a few missed reports
// are a dead or cut-off edge, not a slow one.
const fleetStale = 5 * time.Second

// fleet is what a node knows of the edges from their load reports on the
// bus: shown on /ops, and the least loaded one is where listeners go.
type fleet struct {
	now func() time.Time

	mu    sync.Mutex
	edges map[string]*bus.LoadReport // by node; pruned when stale
	seen  map[string]time.Time       // when each report arrived, on our clock
}

func newFleet(now func() time.Time) *fleet {
	return &fleet{now: now, edges: map[string]*bus.LoadReport{}, seen: map[string]time.Time{}}
}

// add keeps an edge's newest report.
func (f *fleet) add(r *bus.LoadReport) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.edges[r.Node], f.seen[r.Node] = r, f.now()
}

// fresh returns the reports younger than fleetStale, by node name, with
// their ages, forgetting the rest.
func (f *fleet) fresh() ([]*bus.LoadReport, []time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	var rs []*bus.LoadReport
	for node, at := range f.seen {
		if now.Sub(at) > fleetStale {
			delete(f.edges, node)
			delete(f.seen, node)
			continue
		}
		rs = append(rs, f.edges[node])
	}
	slices.SortFunc(rs, func(a, b *bus.LoadReport) int { return strings.Compare(a.Node, b.Node) })
	ages := make([]time.Duration, len(rs))
	for i, r := range rs {
		ages[i] = now.Sub(f.seen[r.Node])
	}
	return rs, ages
}

// reporting says whether any edge reports.
func (f *fleet) reporting() bool {
	rs, _ := f.fresh()
	return len(rs) > 0
}

// snapshot is the fleet as /ops shows it.
func (f *fleet) snapshot() []ops.EdgeSnapshot {
	rs, ages := f.fresh()
	out := make([]ops.EdgeSnapshot, len(rs))
	for i, r := range rs {
		waiting := 0
		for _, p := range r.Parts {
			waiting += p.Waiting()
		}
		out[i] = ops.EdgeSnapshot{Node: r.Node, URL: r.URL, Listeners: r.Listeners, Capacity: r.Capacity,
			Waiting: waiting, Verdict: r.Verdict, AgeSeconds: ages[i].Seconds()}
	}
	return out
}

// leastLoaded returns the URL of the edge with the most room for another
// listener, as a share of its capacity, "" if no edge reports or none has
// room.
func (f *fleet) leastLoaded() string {
	rs, _ := f.fresh()
	best, bestLoad := "", 1.0
	for _, r := range rs {
		if r.URL == "" || r.Capacity <= 0 {
			continue
		}
		if load := float64(r.Listeners) / float64(r.Capacity); load < bestLoad {
			best, bestLoad = r.URL, load
		}
	}
	return best
}

// space returns the listeners and waiters of a space on every edge that
// reports.
func (f *fleet) space(spaceID string) (listeners, waiting int) {
	rs, _ := f.fresh()
	for _, r := range rs {
		listeners += r.Spaces[spaceID]
		waiting += r.Parts[spaceID].Waiting()
	}
	return listeners, waiting
}

// parts returns every node's part in a space: this one's (self, with its
// part here) and every edge's that reports, from its last report.
func (f *fleet) parts(spaceID, self string, here gate.NodeLine) map[string]gate.NodeLine {
	rs, _ := f.fresh()
	parts := make(map[string]gate.NodeLine, len(rs)+1)
	for _, r := range rs {
		parts[r.Node] = r.Parts[spaceID]
	}
	parts[self] = here
	return parts
}
