package api

import (
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
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
	// Every node of a fleet has the same, so a ticket works at any edge.
	Key []byte
	// PreviousKeys still verify what they signed: a key is rotated
	// without refusing the tickets out there.
	PreviousKeys [][]byte
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

// admission holds the gate's parts and the counters the ops layer reads;
// the waiting rooms are the spaces' (space.Directory).
type admission struct {
	cfg    GateConfig
	signer *gate.Signer
	pow    *gate.PoWPolicy
	join   *gate.SourceLimiter
	listen *gate.SourceLimiter
	top    *ops.TopPrefixes

	// joinRequests counts joins, not the polls of people in line (polls),
	// which are not demand for new places; queued counts joins a limiter's
	// queue lane sent to the back of the line.
	joinRequests, polls, queued, listenRequests, joins atomic.Uint64
	// lean counts listen requests refused before net/http (lean.go).
	lean     atomic.Uint64
	refusals map[gate.Refusal]*atomic.Uint64 // fixed at start: read without a lock
}

func newAdmission(cfg GateConfig, top *ops.TopPrefixes) (*admission, error) {
	if cfg.TicketTTL == 0 {
		cfg.TicketTTL = DefaultGateConfig().TicketTTL
	}
	key := cfg.Key
	if key == nil {
		key = gate.NewKey()
	}
	signer, err := gate.NewSignerConfig(cfg.Signer, key, cfg.PreviousKeys...)
	if err != nil {
		return nil, err
	}
	a := &admission{
		cfg:      cfg,
		signer:   signer,
		pow:      gate.NewPoWPolicy(cfg.PoW),
		join:     gate.NewSourceLimiter(cfg.Join),
		listen:   gate.NewSourceLimiter(cfg.Listen),
		top:      top,
		refusals: make(map[gate.Refusal]*atomic.Uint64),
	}
	for _, r := range gate.Refusals() {
		a.refusals[r] = new(atomic.Uint64)
	}
	if cfg.PoWDifficulty > 0 {
		a.pow.Arm(cfg.PoWDifficulty)
	}
	return a, nil
}

// refusalOf is the refusal of a gate error; anything else the gate returns
// counts as a bad request.
func refusalOf(err error) gate.Refusal {
	if r := gate.Reason(err); r != 0 {
		return r
	}
	return gate.RefusalBadRequest
}

// refuse counts a refusal by reason and, for invalid traffic, by the
// source's prefix, so /ops can name who floods.
func (a *admission) refuse(reason gate.Refusal, addr netip.Addr) {
	if c := a.refusals[reason]; c != nil {
		c.Add(1)
	}
	if !reason.Capacity() && addr.IsValid() {
		a.top.Add(gate.Prefix(addr))
	}
}

// clientAddr is the request's client. Every X-Forwarded-For line counts,
// joined in order: a client that adds a line of its own before the
// proxy's must not choose its address.
func (a *admission) clientAddr(r *http.Request) netip.Addr {
	xff := ""
	if len(a.cfg.TrustedProxies) > 0 {
		xff = strings.Join(r.Header.Values("X-Forwarded-For"), ",")
	}
	return gate.ClientAddr(r.RemoteAddr, xff, a.cfg.TrustedProxies)
}

// limit runs a source limiter and counts its refusal.
func (a *admission) limit(l *gate.SourceLimiter, addr netip.Addr, now time.Time) error {
	_, err := a.check(l, addr, now)
	return err
}

// check is limit with the limiter's queue lanes: a request over a rate
// but within its queue lane is answered LimitQueue, for the caller to send
// to the back of the waiting room.
func (a *admission) check(l *gate.SourceLimiter, addr netip.Addr, now time.Time) (gate.Decision, error) {
	if !addr.IsValid() {
		return gate.LimitAllow, nil
	}
	d, reason := l.Check(addr, now)
	if d == gate.LimitRefuse {
		a.refuse(reason, addr)
		return d, amphi.Errorf(amphi.ERateLimited, "too many requests from your network; retry in a few seconds")
	}
	return d, nil
}

// lapsed refuses a ticket whose place is gone: its holder must join again
// (and wait, and solve proof of work, like anyone else).
func (a *admission) lapsed(id string, addr netip.Addr) error {
	a.refuse(gate.RefusalTicketLapsed, addr)
	return amphi.Errorf(amphi.EUnauthorized, "your place in space %s lapsed: join again", id)
}

// waitingRoom returns the space's waiting room, or nil if it admits
// nobody here.
func (s *Server) waitingRoom(id string) *gate.Room {
	if sp := s.spaces.Get(id); sp != nil {
		return sp.Waiting()
	}
	return nil
}

// lookupRoom looks a space up and returns it with its waiting room here,
// nil if none: an edge's lookup asks the origin about a space it had not
// heard of and learns it, room and all, so the room is read after.
func (s *Server) lookupRoom(ctx context.Context, id string) (*amphi.Space, *gate.Room, error) {
	sp, err := s.lookup(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	return sp, s.waitingRoom(id), nil
}

// roomFor returns the waiting room of a space that admits listeners: live
// here, or scheduled (its herd queues until the start). Only a space not
// known here costs a database read.
func (s *Server) roomFor(ctx context.Context, id string) (*gate.Room, error) {
	if r := s.waitingRoom(id); r != nil {
		return r, nil
	}
	sp, r, err := s.lookupRoom(ctx, id)
	if err != nil {
		return nil, err
	}
	if r != nil {
		return r, nil
	}
	if sp.State != amphi.StateScheduled {
		return nil, notLive(sp)
	}
	// Only a space created with a time is scheduled.
	return s.spaces.Open(id, *sp.ScheduledAt), nil
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
	// Status says which of the fields below are set.
	Status   amphi.JoinStatus `json:"status"`
	Listener string           `json:"listener,omitempty"`
	// Admitted: the ticket and the URL to listen with it.
	Ticket    string     `json:"ticket,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	ListenURL string     `json:"listen_url,omitempty"`
	// HLSURL is the LL-HLS playlist with the same ticket.
	HLSURL string `json:"hls_url,omitempty"`
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
	addr := a.clientAddr(r)
	var req joinRequest
	if r.ContentLength != 0 {
		if err := s.decodeJSON(w, r, &req); err != nil {
			a.joinRequests.Add(1)
			a.refuse(gate.RefusalBadRequest, addr)
			return nil, err
		}
	}
	if room := s.waitingRoom(id); room != nil && req.Listener != "" {
		// A waiter polling, or an admitted listener back for its ticket.
		// The listener id is the capability: someone in line is not new
		// demand, is not limited by source and never pays work again.
		a.polls.Add(1)
		if st := room.Poll(gate.PlaceID(req.Listener), now); st.Verdict != gate.Unknown {
			return s.joinStatus(r, a, id, req.Listener, s.tier(r), st, now)
		}
	}
	a.joinRequests.Add(1)
	lane, err := a.check(a.join, addr, now)
	if err != nil {
		return nil, err
	}
	room, err := s.roomFor(r.Context(), id)
	if err != nil {
		if amphi.ErrorCode(err) == amphi.ENotFound {
			a.refuse(gate.RefusalNotFound, addr)
		}
		return nil, err
	}
	if d := a.pow.Difficulty(); d > 0 {
		if req.Challenge == "" {
			return a.challenge(id, d, now)
		}
		if err := a.signer.VerifySolution(req.Challenge, req.Nonce, id, d, now); err != nil {
			a.refuse(refusalOf(err), addr)
			if gate.Reason(err) == gate.RefusalPoWOutdated {
				// Solved honestly, but the difficulty rose meanwhile.
				return a.challenge(id, d, now)
			}
			return nil, err
		}
	}
	listener, tier := gate.NewListenerID(), s.tier(r)
	join := room.Join
	if lane == gate.LimitQueue {
		a.queued.Add(1)
		join = room.Enqueue
	}
	return s.joinStatus(r, a, id, listener, tier, join(gate.PlaceID(listener), tier, now), now)
}

// challenge asks for proof of work at difficulty d.
func (a *admission) challenge(id string, d uint8, now time.Time) (*JoinResponse, error) {
	c, err := a.signer.IssueChallenge(id, d, now)
	if err != nil {
		return nil, err
	}
	return &JoinResponse{Status: amphi.JoinChallenge, Challenge: c, Difficulty: d}, nil
}

// tier is the request's priority in the waiting room: signed-in people wait
// ahead of anonymous ones (gate.Tier documents the policy). Only a request
// with a session cookie costs a database read.
func (s *Server) tier(r *http.Request) gate.Tier {
	if session(r) == "" || s.db == nil { // an edge has no accounts
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
		tok, err := a.signer.Issue(gate.Ticket{Space: id, Place: gate.PlaceID(listener), Tier: tier, Expires: exp})
		if err != nil {
			return nil, err
		}
		a.joins.Add(1)
		at := s.baseURL(r) + "/spaces/" + id
		return &JoinResponse{
			Status: amphi.JoinAdmitted, Listener: listener, Ticket: tok, ExpiresAt: &exp,
			ListenURL: at + "/live.opus?ticket=" + url.QueryEscape(tok),
			HLSURL:    at + hlsEntry + "?ticket=" + url.QueryEscape(tok),
		}, nil
	case gate.Waiting:
		return &JoinResponse{
			Status: amphi.JoinWaiting, Listener: listener, Position: st.Position,
			ETASeconds: st.ETA.Seconds(), PollAfter: st.PollAfter.Milliseconds(),
		}, nil
	case gate.Early:
		a.refuse(gate.RefusalPollEarly, a.clientAddr(r))
		return nil, amphi.Errorf(amphi.ERateLimited, "you keep your place in line, but poll at most every %s", st.PollAfter)
	default:
		a.refuse(gate.RefusalWaitingFull, netip.Addr{})
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
		s.gate.refuse(gate.RefusalTicketMalformed, addr)
		return gate.Ticket{}, amphi.Errorf(amphi.EUnauthorized, "listening needs a ticket: POST /spaces/%s/join, or open /spaces/%s/listen", id, id)
	}
	t, err := s.gate.signer.Verify(tok, id, now)
	if err != nil {
		s.gate.refuse(refusalOf(err), addr)
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
	lane, err := a.check(a.join, addr, now)
	if err == nil && lane == gate.LimitQueue {
		err = amphi.Errorf(amphi.EFull, "many people from your network are joining: listen from the space's web page to wait in line, or try again in a minute")
	}
	var room *gate.Room
	if err == nil {
		room, err = s.roomFor(r.Context(), id)
	}
	if err == nil && a.pow.Difficulty() > 0 {
		err = amphi.Errorf(amphi.EUnavailable, "the space asks for proof of work now: listen from its web page or with `amphi listen`")
	}
	var resp *JoinResponse
	if err == nil {
		listener := gate.NewListenerID()
		st := room.Join(gate.PlaceID(listener), gate.TierAnonymous, now)
		if st.Verdict == gate.Waiting {
			a.refuse(gate.RefusalRoomFull, addr)
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
	// Polls counts the polls of people in line; Queued, joins sent to the
	// back of the line by a limiter's queue lane.
	Polls, Queued uint64
	// LeanRefusals counts the refusals made before net/http parsed the
	// request (they are in Refusals too).
	LeanRefusals    uint64
	Refusals        map[gate.Refusal]uint64
	TicketsVerified uint64
	// Waiting is the people in line for spaces that are open;
	// WaitingForStart, for scheduled spaces not started yet: a herd
	// expected to be there, not overload.
	Waiting, WaitingForStart int64
	PoWDifficulty            uint8
}

// GateStats returns a snapshot of the admission counters.
func (s *Server) GateStats() GateStats {
	a := s.gate
	st := GateStats{
		JoinRequests:    a.joinRequests.Load(),
		Polls:           a.polls.Load(),
		Queued:          a.queued.Load(),
		LeanRefusals:    a.lean.Load(),
		ListenRequests:  a.listenRequests.Load(),
		Joins:           a.joins.Load(),
		Refusals:        make(map[gate.Refusal]uint64, len(a.refusals)),
		TicketsVerified: a.signer.Stats().TicketsValid,
		PoWDifficulty:   a.pow.Difficulty(),
	}
	for r, c := range a.refusals {
		st.Refusals[r] = c.Load()
	}
	now := s.cfg.Now()
	for _, sp := range s.spaces.All() {
		rs := sp.Waiting().Stats(now)
		for _, n := range rs.Waiting {
			if rs.BeforeOpening {
				st.WaitingForStart += int64(n)
			} else {
				st.Waiting += int64(n)
			}
		}
	}
	return st
}

// UpdatePoW feeds the evidence of abuse to the proof-of-work policy: the
// share and the rate of invalid requests. Demand alone (many joins, a long
// line) never arms it.
func (s *Server) UpdatePoW(invalidShare, invalidPerSecond float64) uint8 {
	return s.gate.pow.Update(gate.Pressure{InvalidShare: invalidShare, InvalidRate: invalidPerSecond}, s.cfg.Now())
}
