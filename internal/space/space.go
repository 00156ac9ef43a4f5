// Package space holds what a node knows of each space it serves, in one
// struct per space: its waiting room, and while it is on air here its
// session (the live pipeline) and its room (requests to speak, names on
// stage, reactions, event streams), with the encoded state its pages
// poll. A Directory is the spaces a node admits listeners to; a Lifecycle
// puts spaces on air and takes them off (start, end, resuming after a crash)
// through the store and the live manager, and keeps the Directory in step
// as it does. The two are apart because an edge admits listeners to
// spaces whose lifecycle another node owns. The HTTP side (internal/api)
// uses both; nothing here speaks HTTP.
package space

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/gate"
	"github.com/amphi-audio/amphi/internal/live"
)

// Space is one space known on this node: its waiting room, and while it is
// on air here its session and room. A Space does not change: a start
// replaces it with one on air (with the same waiting room), an end removes
// it, so one read of a Directory gives a consistent view.
type Space struct {
	id      string
	waiting *gate.Room
	session *live.Session // nil where not on air here
	room    *Room         // nil where not on air here
	// saved is closed once the timeline of the session is stored for the
	// last time, after the session stopped (Lifecycle.keepTimeline); nil
	// where not on air here.
	saved chan struct{}
}

// ID is the space's id.
func (sp *Space) ID() string { return sp.id }

// Waiting is the space's waiting room: its listeners' places and line.
func (sp *Space) Waiting() *gate.Room { return sp.waiting }

// Session is the space's live pipeline, nil where it is not on air here.
func (sp *Space) Session() *live.Session { return sp.session }

// Room is the space's room, nil where it is not on air here.
func (sp *Space) Room() *Room { return sp.room }

// Directory is the spaces a node knows and admits listeners to, and the
// encoded states their pages poll. It is safe for concurrent use.
type Directory struct {
	roomCfg gate.RoomConfig
	node    *gate.Capacity

	mu     sync.RWMutex
	spaces map[string]*Space
	states stateCache
	known  map[string]known // what announcements said, on an edge (Learn)
	// elsewhere returns the listeners and waiters a space has on the
	// edges, which the state of a space on air here counts too; nil
	// means none (SetElsewhere).
	elsewhere func(id string) (listeners, waiting int)
}

// SetElsewhere makes the state of each space on air here count the
// listeners and waiters f says it has elsewhere: on the edges, from their
// load reports. Call it before the directory is used.
func (d *Directory) SetElsewhere(f func(id string) (listeners, waiting int)) { d.elsewhere = f }

// NewDirectory returns a directory that knows no space yet. Each space's
// waiting room is made with room and shares the node's capacity.
func NewDirectory(room gate.RoomConfig, node *gate.Capacity) *Directory {
	return &Directory{roomCfg: room, node: node, spaces: make(map[string]*Space)}
}

// Get returns the space, or nil if it is not known here.
func (d *Directory) Get(id string) *Space {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.spaces[id]
}

// All returns the spaces known here.
func (d *Directory) All() []*Space {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return slices.Collect(maps.Values(d.spaces))
}

// Open makes a space not on air known here, its waiting room opening at
// opensAt: before then, joins queue in arrival order; after, the herd is
// admitted at the join rate. It returns the waiting room, an existing
// one unchanged.
func (d *Directory) Open(id string, opensAt time.Time) *gate.Room {
	d.mu.Lock()
	defer d.mu.Unlock()
	if sp := d.spaces[id]; sp != nil {
		return sp.waiting
	}
	w := gate.NewRoom(d.roomCfg, d.node)
	w.OpenAt(opensAt)
	d.spaces[id] = &Space{id: id, waiting: w}
	return w
}

// putOnAir makes the space on air here in the session: its waiting room,
// kept if it had one, opens at now, its room opens empty and its cached
// state is forgotten. It returns the space on air.
func (d *Directory) putOnAir(id string, sess *live.Session, now time.Time) *Space {
	d.mu.Lock()
	defer d.mu.Unlock()
	sp := &Space{id: id, session: sess, room: newRoom(sess.Recorder().Duration), saved: make(chan struct{})}
	if old := d.spaces[id]; old != nil {
		sp.waiting = old.waiting
	} else {
		sp.waiting = gate.NewRoom(d.roomCfg, d.node)
	}
	sp.waiting.OpenAt(now)
	d.spaces[id] = sp
	d.states.forget(id)
	return sp
}

// remove forgets the space that ended for why: its waiting room closes,
// its room tells its event streams why and its cached state is dropped.
// It returns the space, nil if it was not known here.
func (d *Directory) remove(id string, why amphi.EndReason) *Space {
	d.mu.Lock()
	sp := d.spaces[id]
	delete(d.spaces, id)
	d.states.forget(id)
	d.mu.Unlock()
	if sp == nil {
		return nil
	}
	sp.waiting.Close()
	if sp.room != nil {
		sp.room.close(why)
	}
	return sp
}

// State returns the space's cached state if it was encoded less than
// maxAge before now, else nil: then Encode it.
func (d *Directory) State(id string, maxAge time.Duration, now time.Time) *State {
	if st := d.states.get(id); st != nil && now.Sub(st.at) < maxAge {
		return st
	}
	return nil
}

// Encode encodes the space's state at now and caches it. A space on air
// here is described by its session and room; any other by what lookup
// returns (the store, on a node that has one), with the herd in its
// waiting room if it is known here.
func (d *Directory) Encode(id string, now time.Time, lookup func() (*amphi.Space, error)) (*State, error) {
	gen := d.states.generation()
	sp := d.Get(id)
	var v *stateView
	if sp != nil && sp.session != nil {
		v = sp.liveState(now)
		if d.elsewhere != nil {
			// Pages poll as slowly as the whole audience asks: fewer
			// polls per node than its own crowd would, never more.
			l, w := d.elsewhere(id)
			v.Listeners, v.Waiting = v.Listeners+l, v.Waiting+w
			v.PollAfterMs = pollAfter(v.State, v.Listeners+v.Waiting).Milliseconds()
		}
	} else {
		info, err := lookup()
		if err != nil {
			return nil, err
		}
		v = storedState(info, sp, now)
	}
	st, err := encodeState(v, now)
	if err != nil {
		return nil, err
	}
	d.states.put(id, st, gen)
	return st, nil
}

// Forget drops the space's cached state, so the next poll sees a change
// at once.
func (d *Directory) Forget(id string) { d.states.forget(id) }
