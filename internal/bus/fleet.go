package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/gate"
)

// The fleet's messages: the origin announces its spaces, so edges know
// them without a database, and edges report their load, so the origin can
// show the whole fleet and pages can pick the least loaded edge. Both are
// repeated every second: a restarted edge knows the spaces within one, and
// a report older than a few is an edge gone.

const (
	spaceSubject = "amphi.space."
	loadSubject  = "amphi.load."
)

// Announcement is what an edge knows of a space: the space, its program's
// Ogg serial (which edges check chunks against and build the header pages
// from), and the state snapshot pages poll, encoded by the origin.
type Announcement struct {
	Space  *amphi.Space `json:"space"`
	Serial uint32       `json:"serial"`
	// Run names the run of the space's program on air (live.Session.Run),
	// empty when it is not on air.
	Run   string          `json:"run,omitempty"`
	State json.RawMessage `json:"state,omitempty"`
	// Limits are the space's listener cap and join rate across the
	// fleet, nil when it has neither. Grants is then each node's grant for
	// the round, by node name (gate.Allot); a node not in it gets
	// Limits.Absent() until it is.
	Limits *gate.FleetLimits     `json:"limits,omitempty"`
	Grants map[string]gate.Grant `json:"grants,omitempty"`
}

// Announce publishes a space's announcement.
func (b *Bus) Announce(a *Announcement) error {
	data, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("bus: announce %s: %w", a.Space.ID, err)
	}
	return b.Publish(spaceSubject+a.Space.ID, data)
}

// SubscribeAnnouncements calls fn with every space's announcements, on one
// goroutine. One that does not decode is counted by onBad.
func (b *Bus) SubscribeAnnouncements(fn func(*Announcement), onBad func(error)) (*Subscription, error) {
	return subscribeJSON(b, spaceSubject+"*", func(a *Announcement) bool { return a.Space != nil && a.Space.ID != "" }, fn, onBad)
}

// LoadReport is an edge's load, reported every second.
type LoadReport struct {
	// Node names the edge process; URL is where listeners reach it.
	Node string `json:"node"`
	URL  string `json:"url"`
	// Listeners connected and the most it holds; per space, those
	// connected.
	Listeners int            `json:"listeners"`
	Capacity  int            `json:"capacity"`
	Spaces    map[string]int `json:"spaces,omitempty"`
	// Parts is, per space, the edge's part in it: the places it holds
	// (listeners connected, admitted and not yet connected, or lingering),
	// its waiting line (and so its waiters) and its admission rate, which
	// the origin's grants are worked out from.
	Parts map[string]gate.NodeLine `json:"parts,omitempty"`
	// Verdict is the edge's own ops verdict.
	Verdict string    `json:"verdict"`
	At      time.Time `json:"at"`
}

// ReportLoad publishes an edge's load report.
func (b *Bus) ReportLoad(r *LoadReport) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("bus: load report: %w", err)
	}
	return b.Publish(loadSubject+r.Node, data)
}

// SubscribeLoad calls fn with every edge's load reports, on one goroutine.
func (b *Bus) SubscribeLoad(fn func(*LoadReport), onBad func(error)) (*Subscription, error) {
	return subscribeJSON(b, loadSubject+"*", func(r *LoadReport) bool { return r.Node != "" }, fn, onBad)
}

// subscribeJSON subscribes fn to the JSON messages on subject that decode
// into a T that valid accepts; the rest go to onBad.
func subscribeJSON[T any](b *Bus, subject string, valid func(*T) bool, fn func(*T), onBad func(error)) (*Subscription, error) {
	return b.Subscribe(subject, func(data []byte) {
		v := new(T)
		if err := json.Unmarshal(data, v); err != nil || !valid(v) {
			if onBad != nil {
				onBad(fmt.Errorf("bus: a message on %s that does not decode: %v", subject, err))
			}
			return
		}
		fn(v)
	})
}

// lookupSubject is where an edge asks the origin about a space it has not
// heard announced: one created a moment ago, before the next round.
const lookupSubject = "amphi.lookup.space"

// ServeLookups answers edges' lookups with find's announcement of the
// space, and with an empty answer for a space find does not know (nil).
func (b *Bus) ServeLookups(find func(id string) *Announcement) (*Subscription, error) {
	return b.QueueSubscribe(lookupSubject, "origin", func(data []byte, reply string) {
		var answer []byte
		if a := find(string(data)); a != nil {
			answer, _ = json.Marshal(a) // an Announcement always encodes
		}
		if reply != "" {
			b.Publish(reply, answer) // the asker times out if this is lost
		}
	})
}

// Lookup asks the origin about a space, waiting until ctx is done. It
// returns nil, nil for a space the origin does not know.
func (b *Bus) Lookup(ctx context.Context, id string) (*Announcement, error) {
	data, err := b.Request(ctx, lookupSubject, []byte(id))
	if err != nil || len(data) == 0 {
		return nil, err
	}
	a := new(Announcement)
	if err := json.Unmarshal(data, a); err != nil || a.Space == nil {
		return nil, fmt.Errorf("bus: a lookup's answer that does not decode: %v", err)
	}
	return a, nil
}
