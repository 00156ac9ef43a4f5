package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/bus"
	"github.com/amphi-audio/amphi/internal/edge"
	"github.com/amphi-audio/amphi/internal/gate"
	"github.com/amphi-audio/amphi/internal/live"
	"github.com/amphi-audio/amphi/internal/space"
	"github.com/amphi-audio/amphi/internal/store"
)

// Roles of `amphi serve`. One process holds at most ~19 000 listeners (the
// open-files cap), so an audience beyond that is served by edges: processes
// that hold no stage, mixer, recorder or store, learn the spaces from the
// origin's announcements on the bus, take each space's program from it,
// and admit and serve listeners with tickets every node verifies (one key
// file for the fleet).
const (
	// RoleAll is everything in one process, with an embedded bus: the
	// default, what a new user runs.
	RoleAll = "all"
	// RoleOrigin is the same process in a fleet: it announces its spaces
	// to the edges, counts their listeners in its spaces' state and on
	// /ops, and sends new listeners to the least loaded one.
	RoleOrigin = "origin"
	// RoleEdge serves listeners only: joins, the waiting room, tickets,
	// the stream and state polls.
	RoleEdge = "edge"
)

// checkRole says what a role's configuration lacks.
func (c *Config) checkRole() error {
	switch c.Role {
	case RoleAll, RoleOrigin:
		if c.Procs > 1 {
			return fmt.Errorf("serve: --procs runs edge processes: it needs --role %s", RoleEdge)
		}
		return nil
	case RoleEdge:
		switch {
		case c.Bus.URL == "":
			return fmt.Errorf("serve: an edge takes the programs from the origin's bus: it needs --nats URL")
		case c.GateKeyFile == "":
			return fmt.Errorf("serve: an edge verifies the origin's tickets: it needs --gate-key-file, the origin's key file")
		case c.StageAddr != "" || c.RehearsalFaults:
			return fmt.Errorf("serve: an edge has no stage: --stage-addr and --rehearsal-faults are the origin's")
		case c.Standby:
			return fmt.Errorf("serve: an edge has no data directory to take over: --standby is the origin's (run more edges instead)")
		}
		return nil
	}
	return fmt.Errorf("serve: --role %q: want %s, %s or %s", c.Role, RoleAll, RoleOrigin, RoleEdge)
}

// nodeName is name, or the host name, the process id and a random suffix
// (tests run several in one process): unique, readable in a report. Only
// letters, digits, '-' and '_' stay, so it is a NATS subject token and a
// header value.
func nodeName(name string) string {
	if name == "" {
		host, _ := os.Hostname()
		name = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), rand.Text()[:4])
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '-'
	}, name)
}

// issuer is the node's name in the tickets it issues (gate.SignerConfig).
func issuer(node string) uint16 {
	sum := sha256.Sum256([]byte(node))
	return binary.BigEndian.Uint16(sum[:])
}

// openOrigin starts what only an origin has: the live manager, the answers
// to edges' fetches of missed chunks, and the fleet view from the edges'
// load reports.
func (m *Main) openOrigin() error {
	cfg := &m.Config
	cfg.Live.Logger = m.Logger
	m.live = live.NewManager(m.bus, cfg.Live)
	var err error
	if m.fetches, err = m.bus.ServeFetches(m.recentChunks); err != nil {
		return err
	}
	m.fleet = newFleet(time.Now)
	if m.loads, err = m.bus.SubscribeLoad(m.fleet.add, m.badMessage); err != nil {
		return err
	}
	if m.lookups, err = m.bus.ServeLookups(m.answerLookup); err != nil {
		return err
	}
	m.dir.SetElsewhere(m.fleet.space)
	cfg.API.ListenAt = m.fleet.leastLoaded
	m.announced = make(map[string]int)
	m.grants = make(map[string]*spaceGrants)
	return nil
}

// learnSpaces makes an edge's directory follow the origin's announcements,
// and look up at the origin a space it has not heard of yet.
func (m *Main) learnSpaces() error {
	var err error
	m.announcements, err = m.bus.SubscribeAnnouncements(m.learn, m.badMessage)
	m.lookupGuard = newLookupGuard()
	m.Config.API.Lookup = m.lookupAtOrigin
	return err
}

func (m *Main) learn(a *bus.Announcement) {
	grant := gate.NoGrant
	if a.Limits != nil {
		var ok bool
		if grant, ok = a.Grants[m.node]; !ok {
			grant = a.Limits.Absent()
		}
	}
	m.dir.Learn(space.Announced{Space: a.Space, Serial: a.Serial, Run: a.Run, State: a.State, Grant: grant}, time.Now())
}

// lookupTimeout bounds an edge's lookup at the origin.
const lookupTimeout = time.Second

// lookupRate bounds an edge's lookups at the origin, a second: a flood of
// made-up space ids, from however many sources, costs the origin at most
// that many store reads a second per edge. Lookups are only for spaces
// created since the last announcements, a handful a second.
const lookupRate = 100

// maxUnknown bounds the ids an edge remembers the origin did not know.
const maxUnknown = 10000

// lookupGuard keeps an edge's lookups at the origin few: at most
// lookupRate a second, and none for an id the origin said it did not
// know in the last round (a space created since is announced within it).
type lookupGuard struct {
	mu      sync.Mutex
	bucket  gate.Bucket
	unknown map[string]time.Time // when the origin said so
}

func newLookupGuard() *lookupGuard {
	return &lookupGuard{bucket: gate.NewBucket(lookupRate, lookupRate), unknown: map[string]time.Time{}}
}

// allow reports whether the edge may ask the origin about id at now, or
// the error to answer with.
func (g *lookupGuard) allow(id string, now time.Time) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if at, ok := g.unknown[id]; ok && now.Sub(at) < fleetEvery {
		return amphi.Errorf(amphi.ENotFound, "no space %s", id)
	}
	if !g.bucket.Allow(now) {
		return amphi.Errorf(amphi.EUnavailable, "too many lookups of spaces this edge has not heard of: try again in a second")
	}
	return nil
}

// notFound remembers that the origin did not know id at now.
func (g *lookupGuard) notFound(id string, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.unknown) >= maxUnknown {
		clear(g.unknown)
	}
	g.unknown[id] = now
}

// lookupAtOrigin returns what the edge knows of a space, asking the origin
// if it knows nothing: a space created since the last announcements. The
// callers limit how often a source makes it ask (joins, state polls), and
// the guard how often the edge does.
func (m *Main) lookupAtOrigin(ctx context.Context, id string) (*amphi.Space, error) {
	if sp, err := m.dir.Known(ctx, id); err == nil {
		return sp, nil
	}
	if err := m.lookupGuard.allow(id, time.Now()); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	a, err := m.bus.Lookup(ctx, id)
	if err != nil {
		return nil, amphi.Errorf(amphi.EUnavailable, "the origin did not answer about space %s: try again", id)
	}
	if a == nil {
		m.lookupGuard.notFound(id, time.Now())
		return nil, amphi.Errorf(amphi.ENotFound, "no space %s", id)
	}
	m.learn(a)
	return a.Space, nil
}

// announcement is what the origin says of a space: with its state, if it
// is on air here, and, when spaces have a listener cap or a join rate
// across the fleet, each node's grant of the round.
func (m *Main) announcement(ctx context.Context, sp *amphi.Space) *bus.Announcement {
	a := &bus.Announcement{Space: sp, Serial: sp.Serial}
	if sp.State == amphi.StateLive {
		if sess := m.live.Session(sp.ID); sess != nil {
			a.Run = sess.Run()
			var err error
			if a.State, err = m.api.EncodedState(ctx, sp.ID); err != nil {
				m.Logger.Warn("fleet: a space's state", "space", sp.ID, "err", err)
			}
		}
	}
	if lim := m.fleetLimits(); lim != nil && sp.State != amphi.StateEnded {
		a.Limits = lim
		m.grantsMu.Lock()
		if g := m.grants[sp.ID]; g != nil {
			a.Grants = g.last
		}
		m.grantsMu.Unlock()
	}
	return a
}

// fleetLimits are every space's limits across the fleet, from
// --max-space-listeners and --space-join-rate; nil for none.
func (m *Main) fleetLimits() *gate.FleetLimits {
	room := m.Config.API.Gate.Room
	if room.MaxListeners <= 0 && room.JoinRate <= 0 {
		return nil
	}
	lim := &gate.FleetLimits{Cap: max(room.MaxListeners, 0), Admit: -1}
	if room.JoinRate > 0 {
		lim.Admit = max(1, int(math.Round(room.JoinRate*fleetEvery.Seconds())))
	}
	return lim
}

// spaceGrants are a space's rounds of grants: the leases they are and the
// last round's, which announcements and lookups carry.
type spaceGrants struct {
	leases gate.Leases
	last   map[string]gate.Grant
}

// grantRound works out, once a round, every node's grant in a space and
// applies this one's, if it has a room for it: what the round's
// announcements (and lookups until the next) carry.
func (m *Main) grantRound(sp *amphi.Space) {
	lim := m.fleetLimits()
	if lim == nil || sp.State == amphi.StateEnded {
		return
	}
	now := time.Now()
	here := m.dir.Get(sp.ID)
	var part gate.NodeLine
	if here != nil {
		part = here.Waiting().Part(now)
	}
	m.grantsMu.Lock()
	g := m.grants[sp.ID]
	if g == nil {
		g = &spaceGrants{}
		m.grants[sp.ID] = g
	}
	g.last = g.leases.Allot(m.fleet.parts(sp.ID, m.node, part), *lim)
	mine := g.last[m.node]
	m.grantsMu.Unlock()
	if here != nil {
		here.Waiting().SetGrant(mine, now)
	}
}

// answerLookup answers an edge's lookup of a space from the store.
func (m *Main) answerLookup(id string) *bus.Announcement {
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	sp, err := m.db.Space(ctx, id)
	if err != nil {
		return nil
	}
	return m.announcement(ctx, sp)
}

func (m *Main) badMessage(err error) {
	m.badChunks.Add(1)
	m.Logger.Warn("bus: bad message", "err", err)
}

// announcedProgram tells an edge's rings what a space's chunks are checked
// against, from the origin's announcements.
func (m *Main) announcedProgram(id string) (edge.SpaceInfo, error) {
	sp, err := m.dir.Known(context.Background(), id)
	if err != nil {
		return edge.SpaceInfo{}, err
	}
	serial, run, err := m.dir.Program(id)
	// An announcement made as the space went live, before its session
	// existed, names no run: the ring waits for the next one (a second),
	// or its LL-HLS names would not be the origin's.
	if err != nil || sp.StartedAt == nil || run == "" {
		return edge.SpaceInfo{}, fmt.Errorf("space %s is not on air", id)
	}
	return edge.SpaceInfo{Serial: serial, Started: *sp.StartedAt, Run: run}, nil
}

// fleetEvery is how often an origin announces its spaces and an edge
// reports its load: a restarted edge knows the spaces within it.
const fleetEvery = time.Second

// endedAnnouncements is how many times an ended space is announced: one
// lost message must not leave an edge admitting listeners to it.
const endedAnnouncements = 5

// maxAnnounced bounds the spaces announced each second.
const maxAnnounced = 1000

// startFleet runs an origin's announcements or an edge's load reports,
// every fleetEvery until Close.
func (m *Main) startFleet(edgeOnly bool) {
	step := m.announce
	if edgeOnly {
		step = m.reportLoad
	}
	m.every(fleetEvery, step)
}

// every runs step at once and then every d in the background, until
// Close.
func (m *Main) every(d time.Duration, step func(context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	stop := m.stopBg
	m.stopBg = func() { cancel(); stop() }
	m.bg.Go(func() {
		tick := time.NewTicker(d)
		defer tick.Stop()
		for {
			step(ctx)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
}

// announce publishes every scheduled and live space, with the state of
// those on air here, and the spaces that ended since the last rounds.
func (m *Main) announce(ctx context.Context) {
	spaces, err := m.db.Spaces(ctx, store.SpaceFilter{States: []amphi.State{amphi.StateScheduled, amphi.StateLive}, Limit: maxAnnounced})
	if err != nil {
		m.Logger.Warn("fleet: list the spaces to announce", "err", err)
		return
	}
	// Nobody to tell without edges: a single server (the default) encodes
	// no state for the bus. An edge reports its load every second, so it
	// hears the announcements a second after it starts.
	edges := m.fleet.reporting()
	seen := make(map[string]bool, len(spaces))
	for _, sp := range spaces {
		seen[sp.ID] = true
		m.announced[sp.ID] = endedAnnouncements
		m.grantRound(sp)
		if edges {
			m.publishAnnouncement(m.announcement(ctx, sp))
		}
	}
	for id, left := range m.announced {
		if seen[id] {
			continue
		}
		m.grantsMu.Lock()
		delete(m.grants, id)
		m.grantsMu.Unlock()
		if left <= 0 {
			delete(m.announced, id)
			continue
		}
		m.announced[id] = left - 1
		if sp, err := m.db.Space(ctx, id); edges && err == nil {
			m.publishAnnouncement(&bus.Announcement{Space: sp, Serial: sp.Serial})
		}
	}
}

func (m *Main) publishAnnouncement(a *bus.Announcement) {
	if err := m.bus.Announce(a); err != nil {
		m.Logger.Warn("fleet: announce", "space", a.Space.ID, "err", err)
	}
}

// reportLoad publishes an edge's load: its listeners in all, and per space
// those connected and its part (places held, line, rate).
func (m *Main) reportLoad(context.Context) {
	now := time.Now()
	r := &bus.LoadReport{Node: m.node, URL: m.publicURL(), Listeners: int(m.edge.Stats().Listeners),
		Capacity: m.Config.API.Gate.Node.MaxListeners, Spaces: map[string]int{}, Parts: map[string]gate.NodeLine{},
		Verdict: m.monitor.Report().Verdict, At: now}
	for _, sp := range m.dir.All() {
		room := sp.Waiting()
		part := room.Part(now)
		if part.Held == 0 && len(part.Line) == 0 {
			continue
		}
		r.Parts[sp.ID()] = part
		if n := room.Stats(now).Connected; n > 0 {
			r.Spaces[sp.ID()] = n
		}
	}
	if err := m.bus.ReportLoad(r); err != nil {
		m.Logger.Warn("fleet: report load", "err", err)
	}
}

// publicURL is where people reach this process: --public-url, or its
// listening address.
func (m *Main) publicURL() string {
	if u := m.Config.API.PublicURL; u != "" {
		return strings.TrimSuffix(u, "/")
	}
	return m.URL()
}
