package gate

import (
	"cmp"
	"crypto/sha256"
	"encoding/base64"
	"math"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// CapacityConfig sets the node-wide limits shared by every Room.
type CapacityConfig struct {
	// MaxListeners caps the places held on this node, all spaces together
	// (connected listeners and admitted ones not yet connected). Zero
	// means 18000: one process serves at most ~19 k sockets here
	// (DESIGN.md), and the stage and ops need some.
	MaxListeners int
	// JoinRate is how many listeners per second the node admits at most:
	// the flash-crowd limit. The waiting rooms absorb the excess. Zero
	// means 500.
	JoinRate float64
	// JoinBurst is how many may be admitted at once. Zero means JoinRate.
	JoinBurst int
}

// DefaultCapacityConfig returns the defaults described on CapacityConfig.
func DefaultCapacityConfig() CapacityConfig {
	return CapacityConfig{MaxListeners: 18000, JoinRate: 500, JoinBurst: 500}
}

// Capacity is the node's share of places and its global join rate, used by
// all the node's rooms. It is safe for concurrent use.
type Capacity struct {
	max  int64
	used atomic.Int64

	mu   sync.Mutex
	join Bucket

	admitted atomic.Uint64
}

// NewCapacity returns the node's capacity.
func NewCapacity(cfg CapacityConfig) *Capacity {
	def := DefaultCapacityConfig()
	if cfg.MaxListeners <= 0 {
		cfg.MaxListeners = def.MaxListeners
	}
	if cfg.JoinRate <= 0 {
		cfg.JoinRate = def.JoinRate
	}
	if cfg.JoinBurst <= 0 {
		cfg.JoinBurst = max(1, int(cfg.JoinRate))
	}
	return &Capacity{max: int64(cfg.MaxListeners), join: NewBucket(cfg.JoinRate, cfg.JoinBurst)}
}

// acquire takes a place and a join token, or neither.
func (c *Capacity) acquire(now time.Time) bool {
	if !c.reserve() {
		return false
	}
	c.mu.Lock()
	ok := c.join.Allow(now)
	c.mu.Unlock()
	if !ok {
		c.used.Add(-1)
		return false
	}
	c.admitted.Add(1)
	return true
}

func (c *Capacity) release(n int) { c.used.Add(-int64(n)) }

// reserve takes a place without a join token: for a listener who already
// went through a waiting room, here or at another edge (Room.Resume).
func (c *Capacity) reserve() bool {
	for {
		u := c.used.Load()
		if u >= c.max {
			return false
		}
		if c.used.CompareAndSwap(u, u+1) {
			return true
		}
	}
}

// joinRate is the configured admissions per second.
func (c *Capacity) joinRate() float64 { return c.join.Rate() }

// CapacityStats is a snapshot of the node's capacity.
type CapacityStats struct {
	// Used places out of Max.
	Used, Max int
	// Admitted counts admissions since start.
	Admitted uint64
}

// Stats returns a snapshot of the node's capacity.
func (c *Capacity) Stats() CapacityStats {
	return CapacityStats{Used: int(c.used.Load()), Max: int(c.max), Admitted: c.admitted.Load()}
}

// RoomConfig sets one space's limits and the waiting room's timings.
type RoomConfig struct {
	// MaxListeners caps the places in this space. Zero means only the
	// node's cap applies.
	MaxListeners int
	// MaxWaiting caps the waiting room (about 150 bytes a waiter); past it
	// Join answers Full. Zero means 1<<20.
	MaxWaiting int
	// PollInterval is how often waiters are told to poll. Zero means 2 s.
	PollInterval time.Duration
	// PollTimeout drops a waiter who has not polled for that long, so
	// ghosts do not hold the queue. Zero means 15 s.
	PollTimeout time.Duration
	// Grace is how long an admitted listener's place is kept for it to
	// connect; past it the place goes to the next. Zero means 30 s.
	Grace time.Duration
	// Linger is how long a place is kept after a listener's last
	// connection ends, so that a reconnect (or a player's second request
	// after an aborted probe) keeps it. Zero means 5 s; negative frees the
	// place at once.
	Linger time.Duration
	// RateWindow is the time constant of the moving average of admissions
	// per second that ETAs are computed from. Zero means 30 s.
	RateWindow time.Duration
	// JoinRate is the space's admissions per second across all its nodes,
	// which the origin's grants enforce (SetGrant); zero means only the
	// node's join rate applies. A room with one admits nobody until its
	// first grant, the origin's next round.
	JoinRate float64
}

// DefaultRoomConfig returns the defaults described on RoomConfig.
func DefaultRoomConfig() RoomConfig {
	return RoomConfig{
		MaxWaiting: 1 << 20, PollInterval: 2 * time.Second, PollTimeout: 15 * time.Second,
		Grace: 30 * time.Second, Linger: 5 * time.Second, RateWindow: 30 * time.Second,
	}
}

// Verdict is the answer to a Join or a Poll.
type Verdict uint8

const (
	// Unknown: the listener is neither waiting nor inside (never joined,
	// dropped as a ghost, or its place expired): join again.
	Unknown Verdict = iota
	// Admitted: the listener holds a place; issue its ticket.
	Admitted
	// Waiting: the listener is in the waiting room at Position.
	Waiting
	// Full: the waiting room itself is full; try again later.
	Full
	// Early: a waiter polled more than maxPolls times within one
	// PollInterval. Its place is kept, but the poll is refused: a page
	// polls when told to, so hammering is abuse, not demand.
	Early
)

func (v Verdict) String() string {
	return [...]string{"unknown", "admitted", "waiting", "full", "early"}[v]
}

// PlaceID returns the id a listener's place is kept under in a Room and
// named by in its ticket: a one-way function of the listener id, so that
// whoever sees a ticket (a shared link, a log line) cannot learn the
// listener id, which is the secret that polls the waiting room and
// fetches the ticket again. It has the form of a listener id.
func PlaceID(listener string) string {
	sum := sha256.Sum256([]byte(listener))
	return base64.RawURLEncoding.EncodeToString(sum[:idLen])
}

// maxPolls is how many polls a waiter may make in one PollInterval: a page
// polls once, a retry or a second tab a few more times.
const maxPolls = 5

// Status is what Join and Poll tell a listener.
type Status struct {
	Verdict Verdict
	// Position is the 1-based place in the waiting room: exact, counting
	// every live waiter served before this one.
	Position int
	// ETA estimates the wait: Position divided by the room's recent
	// admissions per second (an exponential moving average over
	// RateWindow), plus the time left before the room opens. Before
	// anyone has been admitted the node's join rate is used. Zero means
	// no estimate (nobody has left or been admitted recently).
	ETA time.Duration
	// PollAfter is when to poll again: PollInterval, or as soon as the
	// ETA when that is sooner, but not under a quarter of PollInterval.
	PollAfter time.Duration
}

// Room is the door of one space: its places, its waiting room, and its
// scheduled opening. Members are named by place id (PlaceID), never by
// the listener's secret id. Waiters are served by tier (higher first, see Tier)
// and in arrival order within a tier; admission happens as places free,
// at the node's join rate, whenever any listener of the room calls in: no
// goroutine, no timer. Every operation costs O(log n) in the number of
// waiters (amortized). Nobody inside is ever evicted. It is safe for
// concurrent use.
type Room struct {
	cfg  RoomConfig
	node *Capacity

	mu      sync.Mutex
	clock   int64 // latest now seen, Unix ns: the room's time never goes back
	openAt  int64 // Unix ns; 0: open
	share   int   // places this node may hold of a fleet's cap (SetGrant); -1: no share
	admit   int   // admissions this node may make until the next grant; -1: no limit
	ahead   []LineEntry
	fleet   float64 // the fleet's admissions per second in the space; 0: only this node's known
	round   uint64  // the last grant's
	members map[string]*member
	queues  [numTiers]tierQueue
	waiting int
	polls   timeList // waiters, by last poll
	grace   timeList // admitted, not yet connected, by admission
	linger  timeList // disconnected, by last disconnection
	held    int      // places held: admitted + connected + lingering
	conns   int      // connected listeners
	rate    ewma

	admitted, full, ghosts, expired uint64
	resumed                         uint64 // listeners resumed here (Resume)
}

type memberState uint8

const (
	stateWaiting memberState = iota
	stateAdmitted
	stateConnected
	stateLingering
)

type member struct {
	listener string // the place id
	tier     Tier
	state    memberState
	conns    int
	stop     *atomic.Bool // the newest stream's: set when another replaces it

	pollWindow int64 // Unix ns: start of the current PollInterval of polls
	polls      uint8 // polls in it
	seq        int64 // position in the tier queue's numbering
	bucket     int64 // arrival, in LineBuckets (line.go)
	deadline   int64 // Unix ns: poll timeout, grace or linger end

	qprev, qnext *member // tier queue
	tprev, tnext *member // timeList
}

// NewRoom returns the room of one space, sharing the node's capacity.
func NewRoom(cfg RoomConfig, node *Capacity) *Room {
	def := DefaultRoomConfig()
	if cfg.MaxWaiting <= 0 {
		cfg.MaxWaiting = def.MaxWaiting
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = def.PollInterval
	}
	if cfg.PollTimeout <= 0 {
		cfg.PollTimeout = def.PollTimeout
	}
	if cfg.Grace <= 0 {
		cfg.Grace = def.Grace
	}
	if cfg.Linger == 0 {
		cfg.Linger = def.Linger
	}
	if cfg.RateWindow <= 0 {
		cfg.RateWindow = def.RateWindow
	}
	admit := -1
	if cfg.JoinRate > 0 {
		admit = 0
	}
	return &Room{
		cfg: cfg, node: node, members: make(map[string]*member), share: -1, admit: admit,
		rate: ewma{tau: cfg.RateWindow.Seconds()},
	}
}

// OpenAt schedules the opening: before t every Join waits in arrival
// order (by tier); from t the waiters are admitted in order at the node's
// join rate, not all at once. The zero time opens the room now.
func (r *Room) OpenAt(t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t.IsZero() {
		r.openAt = 0
	} else {
		r.openAt = t.UnixNano()
	}
}

// SetGrant applies, at now, what the origin grants this node for the next
// round in a space whose cap or join rate holds across a fleet (Allot):
// its share of the places, which moves as the nodes fill, the admissions
// it may make, and the waiters elsewhere ahead of its own. NoGrant leaves
// only the room's own limits. Nobody inside is evicted when the share
// shrinks; when it grows, waiters are admitted in order.
func (r *Room) SetGrant(g Grant, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.share, r.admit, r.ahead, r.fleet, r.round = g.Share, g.Admit, g.Ahead, g.Rate, g.Round
	r.advance(now)
}

// Part returns the room's part in its space's fleet at now, as its node
// reports it every round: the places it holds, its line and its rate.
func (r *Room) Part(now time.Time) NodeLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.advance(now)
	p := NodeLine{Held: r.held, Rate: r.rate.rate(t), Round: r.round}
	for i := range numTiers {
		tier := numTiers - 1 - i
		p.Line = r.queues[tier].summary(tier, p.Line)
	}
	if len(p.Line) > maxLine {
		rest := 0
		for _, e := range p.Line[maxLine-1:] {
			rest += e.N
		}
		p.Line = p.Line[:maxLine]
		p.Line[maxLine-1].N = rest
	}
	return p
}

// atCap reports whether the room holds all the places its config and its
// share allow.
func (r *Room) atCap() bool {
	return (r.cfg.MaxListeners > 0 && r.held >= r.cfg.MaxListeners) || (r.share >= 0 && r.held >= r.share)
}

// Join asks for a place for listener at now: Admitted at once if the room
// is open, has a place, the node has a place and a join token, and nobody
// of the same or a higher tier is waiting; else Waiting in the queue; Full
// when the waiting room is at its cap. Joining again returns the current
// status and keeps the original place in the queue.
func (r *Room) Join(listener string, tier Tier, now time.Time) Status {
	return r.join(listener, tier, now, false)
}

// Enqueue is Join for a newcomer who may not skip the line, even an empty
// one: one a SourceLimiter queued (LimitQueue). It waits its turn behind
// everyone already waiting and is admitted in order as places free.
func (r *Room) Enqueue(listener string, tier Tier, now time.Time) Status {
	return r.join(listener, tier, now, true)
}

func (r *Room) join(listener string, tier Tier, now time.Time, queue bool) Status {
	if tier >= numTiers {
		tier = TierAnonymous // unknown tiers get the least, not the most
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.advance(now)
	if m := r.members[listener]; m != nil {
		if m.state == stateWaiting {
			r.touch(m, t)
		}
		return r.status(m, t)
	}
	m := &member{listener: listener, tier: tier}
	if !queue && r.admissible(tier, t) && r.take(t) {
		r.place(m, t)
		r.members[listener] = m
		return r.status(m, t)
	}
	if r.waiting >= r.cfg.MaxWaiting {
		r.full++
		return Status{Verdict: Full, PollAfter: r.cfg.PollInterval}
	}
	r.members[listener] = m
	m.bucket = t / int64(LineBucket)
	r.queues[tier].push(m)
	r.waiting++
	m.deadline = t + int64(r.cfg.PollTimeout)
	r.polls.pushBack(m)
	return r.status(m, t)
}

// Poll returns listener's status at now and keeps its place in the
// waiting room for another PollTimeout. It is cheap: one map lookup and an
// O(log n) position count, after admitting whoever's turn has come. A
// waiter polling more than maxPolls times in a PollInterval is answered
// Early.
func (r *Room) Poll(listener string, now time.Time) Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.advance(now)
	m := r.members[listener]
	if m == nil {
		return Status{Verdict: Unknown}
	}
	if m.state == stateWaiting {
		if t-m.pollWindow >= int64(r.cfg.PollInterval) {
			m.pollWindow, m.polls = t, 0
		}
		if m.polls++; m.polls > maxPolls {
			return Status{Verdict: Early, PollAfter: r.cfg.PollInterval}
		}
		r.touch(m, t)
	}
	return r.status(m, t)
}

// Connect records that the holder of listener's ticket opened a stream at
// now. It reports whether the stream may go on and returns its stop flag,
// which is set when a newer stream of the same ticket replaces it: one
// ticket, one stream at a time, the newest winning (a player's second
// request after an aborted probe, or a reconnect, replaces the old one; a
// shared ticket is useless). Only a listener holding a place may connect:
// admitted, connected or lingering. A waiter must wait its turn, and one
// whose place lapsed (its grace or linger ran out) must join again, so a
// ticket never gets past the waiting room or proof of work.
func (r *Room) Connect(listener string, now time.Time) (stop *atomic.Bool, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.advance(now)
	return r.connectLocked(listener)
}

// connectLocked is Connect with the room locked and at its time.
func (r *Room) connectLocked(listener string) (stop *atomic.Bool, ok bool) {
	m := r.members[listener]
	if m == nil {
		return nil, false
	}
	switch m.state {
	case stateWaiting:
		return nil, false
	case stateAdmitted:
		r.grace.remove(m)
	case stateLingering:
		r.linger.remove(m)
	}
	if m.state != stateConnected {
		m.state = stateConnected
		r.conns++
	}
	if m.stop != nil {
		m.stop.Store(true)
	}
	m.conns++
	m.stop = new(atomic.Bool)
	return m.stop, true
}

// Resume connects a listener this room does not know, whose ticket is
// valid: one whose edge died, resuming its stream at another (or at this
// one after its place lapsed). It went through a waiting room when its
// ticket was issued, so it is not new demand: it takes a place if the room
// and the node have one, without a join token and ahead of the line, and
// is then a connected listener like any other. A listener the room knows
// connects as with Connect. ok is false when there is no place.
func (r *Room) Resume(listener string, tier Tier, now time.Time) (stop *atomic.Bool, ok bool) {
	if tier >= numTiers {
		tier = TierAnonymous
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.advance(now)
	if r.members[listener] == nil {
		if r.atCap() || !r.node.reserve() {
			return nil, false
		}
		m := &member{listener: listener, tier: tier}
		r.hold(m, t)
		r.resumed++
		r.members[listener] = m
	}
	return r.connectLocked(listener)
}

// Holds reports whether listener holds a place at now: admitted, connected
// or lingering. It changes nothing but the room's time.
func (r *Room) Holds(listener string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.advance(now)
	m := r.members[listener]
	return m != nil && m.state != stateWaiting
}

// Leave records that one of listener's streams ended at now, or that a
// waiter gave up. When a listener's last stream ends its place is kept for
// Linger, then freed for the next waiter.
func (r *Room) Leave(listener string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.advance(now)
	m := r.members[listener]
	if m == nil {
		return
	}
	switch m.state {
	case stateWaiting:
		r.dropWaiter(m)
	case stateAdmitted:
		r.grace.remove(m)
		r.free(m)
	case stateConnected:
		if m.conns--; m.conns > 0 {
			return
		}
		r.conns--
		if r.cfg.Linger < 0 {
			r.free(m)
			break
		}
		m.state = stateLingering
		m.deadline = t + int64(r.cfg.Linger)
		r.linger.pushBack(m)
	}
	r.advance(now)
}

// Close frees every place the room holds on the node and forgets everyone:
// the space has ended.
func (r *Room) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.node.release(r.held)
	r.held, r.conns, r.waiting = 0, 0, 0
	r.members = make(map[string]*member)
	r.queues = [numTiers]tierQueue{}
	r.polls, r.grace, r.linger = timeList{}, timeList{}, timeList{}
}

// advance moves the room to now: it expires graces, lingers and ghosts,
// then admits waiters in order while places and join tokens last. It
// returns the room's time.
func (r *Room) advance(now time.Time) int64 {
	t := now.UnixNano()
	if t < r.clock {
		t = r.clock
	}
	r.clock = t
	for m := r.grace.head; m != nil && m.deadline <= t; m = r.grace.head {
		r.grace.remove(m)
		r.expired++
		r.free(m)
	}
	for m := r.linger.head; m != nil && m.deadline <= t; m = r.linger.head {
		r.linger.remove(m)
		r.free(m)
	}
	for m := r.polls.head; m != nil && m.deadline <= t; m = r.polls.head {
		r.ghosts++
		r.dropWaiter(m)
	}
	if r.openAt != 0 && t < r.openAt {
		return t
	}
	for r.waiting > 0 && r.take(t) {
		m := r.next()
		r.polls.remove(m)
		r.queues[m.tier].remove(m)
		r.waiting--
		r.place(m, t)
	}
	return t
}

// next returns the waiter to serve first: the head of the highest tier.
func (r *Room) next() *member {
	for tier := numTiers - 1; ; tier-- {
		if q := &r.queues[tier]; q.n > 0 {
			return q.head
		}
	}
}

// admissible reports whether a newcomer of tier may skip the queue: the
// room is open and nobody of its tier or higher is waiting.
func (r *Room) admissible(tier Tier, t int64) bool {
	if r.openAt != 0 && t < r.openAt {
		return false
	}
	for q := tier; q < numTiers; q++ {
		if r.queues[q].n > 0 {
			return false
		}
	}
	return true
}

// take reserves a place if the room and the node have one and the node's
// join rate allows.
func (r *Room) take(t int64) bool {
	if r.atCap() || r.admit == 0 || !r.node.acquire(time.Unix(0, t)) {
		return false
	}
	if r.admit > 0 {
		r.admit--
	}
	return true
}

// place gives m the place take reserved, held for Grace until m connects.
// m must be in no timeList.
func (r *Room) place(m *member, t int64) {
	r.admitted++
	r.rate.observe(t)
	r.hold(m, t)
}

// hold holds a place for m until it connects: an admission's, or a resumed
// listener's, which is not one.
func (r *Room) hold(m *member, t int64) {
	r.held++
	m.state = stateAdmitted
	m.deadline = t + int64(r.cfg.Grace)
	r.grace.pushBack(m)
}

// free gives m's place back and forgets m.
func (r *Room) free(m *member) {
	r.held--
	r.node.release(1)
	delete(r.members, m.listener)
}

func (r *Room) dropWaiter(m *member) {
	r.polls.remove(m)
	r.queues[m.tier].remove(m)
	r.waiting--
	delete(r.members, m.listener)
}

// touch records a waiter's poll: it moves to the back of the poll list,
// which therefore stays ordered by deadline.
func (r *Room) touch(m *member, t int64) {
	r.polls.remove(m)
	m.deadline = t + int64(r.cfg.PollTimeout)
	r.polls.pushBack(m)
}

func (r *Room) status(m *member, t int64) Status {
	if m.state != stateWaiting {
		return Status{Verdict: Admitted}
	}
	pos := r.queues[m.tier].rank(m) + r.elsewhere(m)
	for q := m.tier + 1; q < numTiers; q++ {
		pos += r.queues[q].n
	}
	s := Status{Verdict: Waiting, Position: pos, PollAfter: r.cfg.PollInterval}
	var wait float64 // seconds
	rate := r.rate.rate(t)
	if r.fleet > 0 {
		rate = r.fleet
	}
	if r.openAt != 0 && t < r.openAt {
		wait = float64(r.openAt-t) / 1e9
		rate = r.node.joinRate()
	} else if r.admitted == 0 {
		rate = r.node.joinRate()
	}
	if rate > 0 {
		wait += float64(pos) / rate
		s.ETA = time.Duration(min(wait, math.MaxInt64/1e9) * 1e9).Round(time.Second)
		// Someone whose turn is near polls sooner (a crowd queued by its
		// prefix's rate into a line that moves at once), yet never more
		// often than maxPolls allows.
		s.PollAfter = min(max(time.Duration(wait*1e9), r.cfg.PollInterval/(maxPolls-1)), r.cfg.PollInterval)
	}
	return s
}

// elsewhere returns how many waiters at the fleet's other nodes are
// served before m, from the last grant: those ahead of the first entry of
// the grant's line that m does not come after.
func (r *Room) elsewhere(m *member) int {
	key := LineEntry{Tier: m.tier, Bucket: m.bucket}
	i, _ := slices.BinarySearchFunc(r.ahead, key, lineOrder)
	if i == len(r.ahead) {
		return 0
	}
	return r.ahead[i].N
}

// RoomStats is a snapshot of a room for the ops view.
type RoomStats struct {
	// Held places: Connected + admitted not yet connected + lingering.
	Held, Connected int
	// Waiting by tier, indexed by Tier.
	Waiting [numTiers]int
	// Admitted counts admissions; Full counts joins refused because the
	// waiting room was full (RefusalWaitingFull); Ghosts counts waiters dropped
	// for not polling; GraceExpired counts admitted listeners who never
	// connected.
	Admitted, Full, Ghosts, GraceExpired uint64
	// Resumed counts listeners who resumed here with a ticket another
	// edge (or a lapsed place) admitted: not admissions.
	Resumed uint64
	// AdmissionRate is the moving average of admissions per second.
	AdmissionRate float64
	// BeforeOpening: the room has a scheduled opening still to come, so
	// its line is a herd waiting for the start.
	BeforeOpening bool
}

// Stats returns a snapshot of the room at now.
func (r *Room) Stats(now time.Time) RoomStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.advance(now)
	s := RoomStats{
		Held: r.held, Connected: r.conns,
		Admitted: r.admitted, Full: r.full, Ghosts: r.ghosts, GraceExpired: r.expired, Resumed: r.resumed,
		AdmissionRate: r.rate.rate(t),
		BeforeOpening: r.openAt != 0 && t < r.openAt,
	}
	for i := range r.queues {
		s.Waiting[i] = r.queues[i].n
	}
	return s
}

// ewma is an exponentially decayed count of events divided by its time
// constant: an estimate of events per second that forgets with tau.
type ewma struct {
	v    float64
	last int64
	tau  float64 // seconds
}

func (e *ewma) decay(t int64) {
	if t > e.last {
		e.v *= math.Exp(-float64(t-e.last) / 1e9 / e.tau)
		e.last = t
	}
}

func (e *ewma) observe(t int64) {
	e.decay(t)
	e.v += 1 / e.tau
}

func (e *ewma) rate(t int64) float64 {
	e.decay(t)
	return e.v
}

// timeList is an intrusive doubly linked list of members ordered by
// deadline: each list adds one fixed duration to a clock that never goes
// back, so appending keeps the order and expiry pops from the head.
type timeList struct{ head, tail *member }

func (l *timeList) pushBack(m *member) {
	m.tprev, m.tnext = l.tail, nil
	if l.tail != nil {
		l.tail.tnext = m
	} else {
		l.head = m
	}
	l.tail = m
}

func (l *timeList) remove(m *member) {
	if m.tprev != nil {
		m.tprev.tnext = m.tnext
	} else if l.head == m {
		l.head = m.tnext
	}
	if m.tnext != nil {
		m.tnext.tprev = m.tprev
	} else if l.tail == m {
		l.tail = m.tprev
	}
	m.tprev, m.tnext = nil, nil
}

// tierQueue is the FIFO of one tier with exact ranks: each waiter gets the
// next sequence number, and a Fenwick tree over sequence numbers counts
// the live waiters ahead of any one in O(log n), whoever left from the
// middle. When the numbers run past the tree, the live waiters are
// renumbered from the current head into a tree twice their count:
// amortized O(1) per push, memory O(live waiters).
type tierQueue struct {
	head, tail *member
	n          int
	base       int64   // sequence number of fen index 0
	next       int64   // next sequence number
	fen        []int32 // Fenwick tree, len a power of two

	// runs counts the live waiters by arrival bucket, oldest first from
	// runs[first]: the line's summary (Room.Part) without a walk.
	runs  []lineRun
	first int
}

type lineRun struct {
	bucket int64
	n      int
}

// count adds d waiters to bucket's run: a new one at the tail (arrivals
// come in order), found by binary search when leaving.
func (q *tierQueue) count(bucket int64, d int) {
	if d > 0 {
		if last := len(q.runs) - 1; last >= q.first && q.runs[last].bucket == bucket {
			q.runs[last].n++
		} else {
			q.runs = append(q.runs, lineRun{bucket, 1})
		}
		return
	}
	live := q.runs[q.first:]
	i, _ := slices.BinarySearchFunc(live, bucket, func(r lineRun, b int64) int { return cmp.Compare(r.bucket, b) })
	live[i].n--
	for q.first < len(q.runs) && q.runs[q.first].n == 0 {
		q.first++
	}
	if q.first == len(q.runs) {
		q.runs, q.first = q.runs[:0], 0
	} else if q.first > 64 && q.first > len(q.runs)/2 {
		q.runs = append(q.runs[:0], q.runs[q.first:]...)
		q.first = 0
	}
}

// summary appends the tier's line entries to dst, oldest first.
func (q *tierQueue) summary(tier Tier, dst []LineEntry) []LineEntry {
	for _, r := range q.runs[q.first:] {
		if r.n > 0 {
			dst = append(dst, LineEntry{Tier: tier, Bucket: r.bucket, N: r.n})
		}
	}
	return dst
}

func (q *tierQueue) push(m *member) {
	if q.next-q.base >= int64(len(q.fen)) {
		q.renumber()
	}
	m.seq = q.next
	q.next++
	q.add(m.seq-q.base, 1)
	q.count(m.bucket, 1)
	m.qprev, m.qnext = q.tail, nil
	if q.tail != nil {
		q.tail.qnext = m
	} else {
		q.head = m
	}
	q.tail = m
	q.n++
}

func (q *tierQueue) remove(m *member) {
	q.add(m.seq-q.base, -1)
	q.count(m.bucket, -1)
	if m.qprev != nil {
		m.qprev.qnext = m.qnext
	} else {
		q.head = m.qnext
	}
	if m.qnext != nil {
		m.qnext.qprev = m.qprev
	} else {
		q.tail = m.qprev
	}
	m.qprev, m.qnext = nil, nil
	q.n--
	if q.n == 0 && len(q.fen) > 1<<12 {
		// A drained herd should not keep its tree.
		q.fen, q.base = nil, q.next
	}
}

// rank returns m's 1-based position in the tier.
func (q *tierQueue) rank(m *member) int {
	s := 0
	for i := m.seq - q.base + 1; i > 0; i -= i & -i {
		s += int(q.fen[i-1])
	}
	return s
}

func (q *tierQueue) add(i int64, d int32) {
	for i++; i <= int64(len(q.fen)); i += i & -i {
		q.fen[i-1] += d
	}
}

func (q *tierQueue) renumber() {
	size := 1 << bits.Len(uint(2*q.n+1))
	size = max(size, 64)
	if cap(q.fen) >= size && cap(q.fen) <= 4*size {
		q.fen = q.fen[:size]
		clear(q.fen)
	} else {
		q.fen = make([]int32, size)
	}
	q.base = q.next
	for m := q.head; m != nil; m = m.qnext {
		m.seq = q.next
		q.next++
	}
	// Build the tree of n ones (indexes 1..n, 1-based) in O(size).
	for i := 1; i <= size; i++ {
		if i <= q.n {
			q.fen[i-1]++
		}
		if j := i + i&-i; j <= size {
			q.fen[j-1] += q.fen[i-1]
		}
	}
}
