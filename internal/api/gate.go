package api

import (
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/gate"
	"github.com/amphi-audio/amphi/internal/ops"
)

// GateConfig configures admission: who may join and listen.
type GateConfig struct {
	gate.Config
	// Key signs tickets and challenges. Nil means a random key: tickets
	// then do not survive a restart (Main keeps one in the data directory).
	Key []byte
	// TicketTTL is how long a ticket lets its holder (re)connect. Zero
	// means 15 minutes.
	TicketTTL time.Duration
	// TrustedProxies are the peers whose X-Forwarded-For is believed. Nil
	// means none: the TCP peer is the client.
	TrustedProxies []netip.Prefix
	// PoWDifficulty arms proof of work at this many bits from the start,
	// whatever the attack signals say. Zero leaves it to them.
	PoWDifficulty uint8
}

// DefaultGateConfig returns the gate's defaults.
func DefaultGateConfig() GateConfig {
	return GateConfig{Config: gate.DefaultConfig(), TicketTTL: 15 * time.Minute}
}

// admission holds the gate's parts, the rooms of the spaces that admit
// listeners here, and the counters the ops layer reads.
type admission struct {
	cfg      GateConfig
	signer   *gate.Signer
	pow      *gate.PoWPolicy
	join     *gate.SourceLimiter
	listen   *gate.SourceLimiter
	capacity *gate.Capacity
	top      *ops.TopPrefixes

	mu    sync.Mutex
	rooms map[string]*gate.Room

	joinRequests, listenRequests, joins atomic.Uint64
	refusals                            map[string]*atomic.Uint64 // fixed at start: read without a lock
}

func newAdmission(cfg GateConfig, top *ops.TopPrefixes) (*admission, error) {
	if cfg.TicketTTL == 0 {
		cfg.TicketTTL = DefaultGateConfig().TicketTTL
	}
	key := cfg.Key
	if key == nil {
		key = gate.NewKey()
	}
	signer, err := gate.NewSignerConfig(cfg.Signer, key)
	if err != nil {
		return nil, err
	}
	a := &admission{
		cfg:      cfg,
		signer:   signer,
		pow:      gate.NewPoWPolicy(cfg.PoW),
		join:     gate.NewSourceLimiter(cfg.Join),
		listen:   gate.NewSourceLimiter(cfg.Listen),
		capacity: gate.NewCapacity(cfg.Node),
		top:      top,
		rooms:    make(map[string]*gate.Room),
		refusals: make(map[string]*atomic.Uint64),
	}
	for _, r := range refusalReasons {
		a.refusals[r] = new(atomic.Uint64)
	}
	if cfg.PoWDifficulty > 0 {
		a.pow.Arm(cfg.PoWDifficulty)
	}
	return a, nil
}

// refusalReasons are the ops names of every way the gate refuses.
var refusalReasons = []string{
	ops.RefusalTicketMalformed, ops.RefusalTicketBadSignature, ops.RefusalTicketExpired, ops.RefusalTicketWrongSpace,
	ops.RefusalPoWWrong, ops.RefusalPoWStale, ops.RefusalPoWReplayed, ops.RefusalRateSource, ops.RefusalRatePrefix,
	ops.RefusalBadRequest, ops.RefusalNotFound, ops.RefusalRoomFull, ops.RefusalWaitingFull,
}

// opsReason names a gate refusal the way the ops layer counts it. A
// challenge that expired before it was solved is stale; a ticket that
// expired is expired.
func opsReason(err error, pow bool) string {
	switch gate.Reason(err) {
	case gate.ReasonMalformed:
		if pow {
			return ops.RefusalPoWWrong
		}
		return ops.RefusalTicketMalformed
	case gate.ReasonBadSignature, gate.ReasonUnknownKey:
		if pow {
			return ops.RefusalPoWWrong
		}
		return ops.RefusalTicketBadSignature
	case gate.ReasonExpired:
		if pow {
			return ops.RefusalPoWStale
		}
		return ops.RefusalTicketExpired
	case gate.ReasonWrongSpace:
		if pow {
			return ops.RefusalPoWWrong
		}
		return ops.RefusalTicketWrongSpace
	case gate.ReasonWrongAnswer:
		return ops.RefusalPoWWrong
	case gate.ReasonReplayed:
		return ops.RefusalPoWReplayed
	case gate.ReasonSource:
		return ops.RefusalRateSource
	case gate.ReasonPrefix:
		return ops.RefusalRatePrefix
	case gate.ReasonFull:
		return ops.RefusalWaitingFull
	default:
		return ops.RefusalBadRequest
	}
}

// refuse counts a refusal by reason and, for invalid traffic, by the
// source's prefix, so /ops can name who floods.
func (a *admission) refuse(reason string, addr netip.Addr) {
	if c := a.refusals[reason]; c != nil {
		c.Add(1)
	}
	if reason != ops.RefusalRoomFull && reason != ops.RefusalWaitingFull && addr.IsValid() {
		a.top.Add(gate.Prefix(addr))
	}
}

func (a *admission) clientAddr(r *http.Request) netip.Addr {
	return gate.ClientAddr(r.RemoteAddr, r.Header.Get("X-Forwarded-For"), a.cfg.TrustedProxies)
}

// limit runs a source limiter and counts its refusal.
func (a *admission) limit(l *gate.SourceLimiter, addr netip.Addr, now time.Time) error {
	if !addr.IsValid() {
		return nil
	}
	if ok, reason := l.Allow(addr, now); !ok {
		a.refuse(opsReason(&gate.RefusalError{Reason: reason}, false), addr)
		return amphi.Errorf(amphi.ERateLimited, "too many requests from your network; retry in a few seconds")
	}
	return nil
}

// room returns the space's waiting room, or nil if it admits nobody here.
func (a *admission) room(spaceID string) *gate.Room {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rooms[spaceID]
}

// openRoom makes the space's room, opening at opensAt: before then, joins
// queue in arrival order; after, the herd is admitted at the join rate.
func (a *admission) openRoom(spaceID string, opensAt time.Time) *gate.Room {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.rooms[spaceID]
	if r == nil {
		r = gate.NewRoom(a.cfg.Room, a.capacity)
		a.rooms[spaceID] = r
	}
	r.OpenAt(opensAt)
	return r
}

func (a *admission) closeRoom(spaceID string) {
	a.mu.Lock()
	r := a.rooms[spaceID]
	delete(a.rooms, spaceID)
	a.mu.Unlock()
	if r != nil {
		r.Close()
	}
}

// roomFor returns the room of a space that admits listeners: live, or
// scheduled (its herd queues until the start). Only a space without a room
// here costs a database read.
func (s *Server) roomFor(ctx context.Context, id string, now time.Time) (*gate.Room, error) {
	if r := s.gate.room(id); r != nil {
		return r, nil
	}
	sp, err := s.db.Space(ctx, id)
	if err != nil {
		return nil, err
	}
	switch {
	case sp.State == amphi.StateEnded:
		return nil, notLive(sp)
	case sp.State == amphi.StateScheduled:
		// Only a space created with a time is scheduled.
		return s.gate.openRoom(id, *sp.ScheduledAt), nil
	case s.live.Session(id) == nil:
		return nil, notLive(&amphi.Space{ID: id, State: amphi.StateLive})
	default:
		return s.gate.openRoom(id, now), nil
	}
}

type joinRequest struct {
	// Listener is the id a waiter was given: polling with it keeps its
	// place. It is a 120-bit secret, so nobody else can take the place.
	Listener  string `json:"listener"`
	Challenge string `json:"challenge"`
	Nonce     string `json:"nonce"`
}

// JoinResponse is what POST /spaces/{id}/join answers.
type JoinResponse struct {
	// Status is "admitted", "waiting" or "challenge".
	Status   string `json:"status"`
	Listener string `json:"listener,omitempty"`
	// Admitted: the ticket and the URL to listen with it.
	Ticket    string     `json:"ticket,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	ListenURL string     `json:"listen_url,omitempty"`
	// Waiting: the place in the queue.
	Position   int     `json:"position,omitempty"`
	ETASeconds float64 `json:"eta_seconds,omitempty"`
	PollAfter  int64   `json:"poll_after_ms,omitempty"`
	// Challenge: solve it (gate.Solve) and join again with the nonce.
	Challenge  string `json:"challenge,omitempty"`
	Difficulty uint8  `json:"difficulty,omitempty"`
}

func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request) {
	resp, err := s.join(w, r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) join(w http.ResponseWriter, r *http.Request) (*JoinResponse, error) {
	a, now, id := s.gate, s.cfg.Now(), r.PathValue("id")
	a.joinRequests.Add(1)
	addr := a.clientAddr(r)
	if err := a.limit(a.join, addr, now); err != nil {
		return nil, err
	}
	var req joinRequest
	if r.ContentLength != 0 {
		if err := s.decodeJSON(w, r, &req); err != nil {
			a.refuse(ops.RefusalBadRequest, addr)
			return nil, err
		}
	}
	room, err := s.roomFor(r.Context(), id, now)
	if err != nil {
		if amphi.ErrorCode(err) == amphi.ENotFound {
			a.refuse(ops.RefusalNotFound, addr)
		}
		return nil, err
	}
	tier := s.tier(r)
	if req.Listener != "" { // a waiter polling, or an admitted listener back for its ticket
		if st := room.Poll(req.Listener, now); st.Verdict != gate.Unknown {
			return s.joinStatus(r, a, id, req.Listener, tier, st, now)
		}
	}
	if d := a.pow.Difficulty(); d > 0 {
		if req.Challenge == "" {
			c, err := a.signer.IssueChallenge(id, d, now)
			if err != nil {
				return nil, err
			}
			return &JoinResponse{Status: "challenge", Challenge: c, Difficulty: d}, nil
		}
		if err := a.signer.VerifySolution(req.Challenge, req.Nonce, id, now); err != nil {
			a.refuse(opsReason(err, true), addr)
			return nil, err
		}
	}
	listener := gate.NewListenerID()
	return s.joinStatus(r, a, id, listener, tier, room.Join(listener, tier, now), now)
}

// tier is the request's priority in the waiting room: signed-in people wait
// ahead of anonymous ones (gate.Tier documents the policy). Only a request
// with a session cookie costs a database read.
func (s *Server) tier(r *http.Request) gate.Tier {
	if session(r) == "" {
		return gate.TierAnonymous
	}
	if _, _, _, err := s.signedIn(r); err != nil {
		return gate.TierAnonymous
	}
	return gate.TierSignedIn
}

func (s *Server) joinStatus(r *http.Request, a *admission, id, listener string, tier gate.Tier, st gate.Status, now time.Time) (*JoinResponse, error) {
	switch st.Verdict {
	case gate.Admitted:
		exp := now.Add(a.cfg.TicketTTL)
		tok, err := a.signer.Issue(gate.Ticket{Space: id, Listener: listener, Tier: tier, Expires: exp})
		if err != nil {
			return nil, err
		}
		a.joins.Add(1)
		return &JoinResponse{
			Status: "admitted", Listener: listener, Ticket: tok, ExpiresAt: &exp,
			ListenURL: baseURL(r) + "/spaces/" + id + "/live.opus?ticket=" + url.QueryEscape(tok),
		}, nil
	case gate.Waiting:
		return &JoinResponse{
			Status: "waiting", Listener: listener, Position: st.Position,
			ETASeconds: st.ETA.Seconds(), PollAfter: st.PollAfter.Milliseconds(),
		}, nil
	default:
		a.refuse(ops.RefusalWaitingFull, netip.Addr{})
		return nil, amphi.Errorf(amphi.EFull, "the space is full and so is its waiting room; try again later")
	}
}

// ticketOf checks a listen request's ticket (tok, from the query, or else
// the cookie): no I/O, and a bad one costs a fraction of a microsecond.
func (s *Server) ticketOf(r *http.Request, tok, id string, addr netip.Addr, now time.Time) (gate.Ticket, error) {
	if tok == "" {
		if c, err := r.Cookie("amphi_ticket"); err == nil {
			tok = c.Value
		}
	}
	if tok == "" {
		s.gate.refuse(ops.RefusalTicketMalformed, addr)
		return gate.Ticket{}, amphi.Errorf(amphi.EUnauthorized, "listening needs a ticket: POST /spaces/%s/join, or open /spaces/%s/listen", id, id)
	}
	t, err := s.gate.signer.Verify(tok, id, now)
	if err != nil {
		s.gate.refuse(opsReason(err, false), addr)
		return gate.Ticket{}, err
	}
	return t, nil
}

// handleListen is the plain player's way in (VLC, ffmpeg, an <audio> src):
// it joins on the player's behalf and redirects to the ticketed stream, or
// explains why not, since such players cannot solve a challenge or wait.
func (s *Server) handleListen(w http.ResponseWriter, r *http.Request) {
	// Players on other origins (a page embedding the link, with
	// crossorigin set) follow the redirect only if CORS allows it.
	w.Header().Set("Access-Control-Allow-Origin", "*")
	a, now, id := s.gate, s.cfg.Now(), r.PathValue("id")
	a.joinRequests.Add(1)
	addr := a.clientAddr(r)
	err := a.limit(a.join, addr, now)
	var room *gate.Room
	if err == nil {
		room, err = s.roomFor(r.Context(), id, now)
	}
	if err == nil && a.pow.Difficulty() > 0 {
		err = amphi.Errorf(amphi.EUnavailable, "the space asks for proof of work now: listen from its web page or with `amphi listen`")
	}
	var resp *JoinResponse
	if err == nil {
		listener := gate.NewListenerID()
		st := room.Join(listener, gate.TierAnonymous, now)
		if st.Verdict == gate.Waiting {
			err = amphi.Errorf(amphi.EFull, "the space is full: %d people are waiting before you; try again in a minute", st.Position)
		} else {
			resp, err = s.joinStatus(r, a, id, listener, gate.TierAnonymous, st, now)
		}
	}
	if err != nil {
		s.error(w, r, err)
		return
	}
	target := resp.ListenURL
	for _, p := range []string{"burst", "flush"} {
		if v := r.URL.Query().Get(p); v != "" {
			target += "&" + p + "=" + url.QueryEscape(v)
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusFound)
}

// GateStats are the admission counters for the ops layer.
type GateStats struct {
	JoinRequests, ListenRequests, Joins uint64
	Refusals                            map[string]uint64
	TicketsVerified                     uint64
	Waiting                             int64
	PoWDifficulty                       uint8
}

// GateStats returns a snapshot of the admission counters.
func (s *Server) GateStats() GateStats {
	a := s.gate
	st := GateStats{
		JoinRequests:    a.joinRequests.Load(),
		ListenRequests:  a.listenRequests.Load(),
		Joins:           a.joins.Load(),
		Refusals:        make(map[string]uint64, len(a.refusals)),
		TicketsVerified: a.signer.Stats().TicketsValid,
		PoWDifficulty:   a.pow.Difficulty(),
	}
	for r, c := range a.refusals {
		st.Refusals[r] = c.Load()
	}
	now := s.cfg.Now()
	a.mu.Lock()
	rooms := make([]*gate.Room, 0, len(a.rooms))
	for _, r := range a.rooms {
		rooms = append(rooms, r)
	}
	a.mu.Unlock()
	for _, r := range rooms {
		rs := r.Stats(now)
		for _, n := range rs.Waiting {
			st.Waiting += int64(n)
		}
	}
	return st
}

// UpdatePoW feeds the attack signals to the proof-of-work policy: the share
// of invalid requests and the join rate against the node's.
func (s *Server) UpdatePoW(invalidShare, joinsPerSecond float64) uint8 {
	load := 0.0
	if jr := s.gate.cfg.Node.JoinRate; jr > 0 {
		load = joinsPerSecond / jr
	}
	return s.gate.pow.Update(gate.Pressure{InvalidShare: invalidShare, JoinLoad: load}, s.cfg.Now())
}
