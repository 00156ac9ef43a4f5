package space

import (
	"context"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/gate"
)

// An edge has no store and puts nothing on air: it learns the spaces from
// the origin's announcements, repeated every second (package bus), and
// admits listeners to them with waiting rooms of its own. Learn keeps
// the Directory in step with what they say.

// knownLife is how long an edge keeps what an announcement said of a space
// the origin no longer announces (it ended, or was deleted): long enough
// for late listeners and their pages to be told it ended, not forever.
const knownLife = 10 * time.Minute

// Announced is what the origin says of a space: the space, its program's
// Ogg serial and run (live.Session.Run), its state as its pages poll it,
// encoded by the origin (empty for a space not on air), and this node's
// grant for the round (gate.Room.SetGrant; gate.NoGrant when the space has
// no limit across the fleet).
type Announced struct {
	Space  *amphi.Space
	Serial uint32
	Run    string
	State  []byte
	Grant  gate.Grant
}

// known is an announcement and when it came.
type known struct {
	Announced
	at time.Time
}

// Learn takes in an announcement that came at now: a scheduled space's
// waiting room opens at its start, a live one's now (or when it started),
// an ended one's closes; the state the origin encoded is what this node's
// pages get until the next announcement.
func (d *Directory) Learn(a Announced, now time.Time) {
	info := a.Space
	d.mu.Lock()
	if d.known == nil {
		d.known = make(map[string]known)
	}
	d.known[info.ID] = known{Announced: a, at: now}
	for id, k := range d.known {
		if now.Sub(k.at) > knownLife {
			delete(d.known, id)
		}
	}
	d.mu.Unlock()
	switch info.State {
	case amphi.StateScheduled:
		opens := now
		if info.ScheduledAt != nil {
			opens = *info.ScheduledAt
		}
		d.Open(info.ID, opens).SetGrant(a.Grant, now)
	case amphi.StateLive:
		opens := now
		if info.StartedAt != nil {
			opens = *info.StartedAt
		}
		// A room opened for the start keeps its line and opens now.
		w := d.Open(info.ID, opens)
		w.OpenAt(opens)
		w.SetGrant(a.Grant, now)
	case amphi.StateEnded:
		d.remove(info.ID, info.EndReason)
	}
	if len(a.State) > 0 {
		d.states.put(info.ID, stateOf(a.State, now), d.states.generation())
	}
}

// Known returns what the last announcement of the space said of it, its
// program's Ogg serial, or amphi.ENotFound if none did lately. It has a
// store's signature (ctx is unused), so an edge looks spaces up with it
// where an origin reads its store.
func (d *Directory) Known(_ context.Context, id string) (*amphi.Space, error) {
	k, ok := d.knownOf(id)
	if !ok {
		return nil, amphi.Errorf(amphi.ENotFound, "no space %s here", id)
	}
	return k.Space, nil
}

// Program returns the Ogg serial and the run of a space's program, from
// its last announcement.
func (d *Directory) Program(id string) (serial uint32, run string, err error) {
	k, ok := d.knownOf(id)
	if !ok {
		return 0, "", amphi.Errorf(amphi.ENotFound, "no space %s here", id)
	}
	return k.Serial, k.Run, nil
}

func (d *Directory) knownOf(id string) (known, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	k, ok := d.known[id]
	return k, ok
}
