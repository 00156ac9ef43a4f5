package api

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/gate"
	"github.com/amphi-audio/amphi/internal/live"
	"github.com/amphi-audio/amphi/internal/store"
)

// What a space's room holds beyond the audio: who is on stage under what
// name, requests to speak, reactions, and the state snapshot every
// listener's page polls. It is all in memory on the node where the space is
// on air: a restart ends the space anyway.

// reactionKinds are the reactions listeners may send.
var reactionKinds = [...]string{"clap", "heart", "laugh", "fire", "wave"}

const (
	// reactionWindow is how many seconds of reactions the state shows.
	reactionWindow = 10
	// maxReactionBatch is the most taps one request may carry: pages
	// batch them, so a request stands for two seconds of tapping.
	maxReactionBatch = 20
	// maxPendingRequests caps the requests to speak waiting for the host:
	// more than a host can read, few enough to cost nothing.
	maxPendingRequests = 100
	// requestIdle drops a pending request its requester stopped polling
	// (the page was closed), so the host does not approve someone gone.
	requestIdle = 30 * time.Second
	// answeredKeep is how long an answered request stays for its
	// requester to read the answer.
	answeredKeep = 10 * time.Minute
	// stateMaxAge is how stale the polled state may be: one encoding a
	// second per space, whatever the number of pages polling.
	stateMaxAge = time.Second
	// statePoll is how often a page polls the state, in a small crowd;
	// pollCrowd is the crowd per node past which pages poll less often,
	// up to maxStatePoll (see pollAfter).
	statePoll    = 2 * time.Second
	pollCrowd    = 5000
	maxStatePoll = 15 * time.Second
	// speakingWindow is how recently a speaker must have been audible to
	// be shown speaking: long enough to bridge the gaps between words.
	speakingWindow = 500 * time.Millisecond
	// Server-sent events: how often a stream looks for changes, how often
	// it proves it is alive, how many one space may have (the stage is 13
	// people; a few consoles besides) and how many one token or account
	// may hold (a console and a stage page), so one cannot take them all.
	eventsEvery      = 250 * time.Millisecond
	eventsPing       = 15 * time.Second
	maxEventStreams  = 32
	maxCallerStreams = 2
)

// Request statuses.
const (
	requestPending  = "pending"
	requestApproved = "approved"
	requestDeclined = "declined"
)

// DefaultRequestLimit returns the per-source limits on asking to speak: three
// at once, then one every 20 s.
func DefaultRequestLimit() gate.LimiterConfig {
	return gate.LimiterConfig{SourceRate: 1.0 / 20, SourceBurst: 3, PrefixRate: 2, PrefixBurst: 60, Entries: 1 << 16}
}

// DefaultLookupLimit returns the per-source limits on state polls that read
// the database: a real page causes at most one a second per space (then the
// answer is cached for everyone), so 5 a second with a burst of 20 is far
// above any page and far below what scanning made-up ids needs.
func DefaultLookupLimit() gate.LimiterConfig {
	return gate.LimiterConfig{SourceRate: 5, SourceBurst: 20, PrefixRate: 100, PrefixBurst: 500, Entries: 1 << 16}
}

// DefaultReactionLimit returns the per-source limits on reactions: pages
// send one batch every 2 s; a burst of 5 absorbs a slow network.
func DefaultReactionLimit() gate.LimiterConfig {
	return gate.LimiterConfig{SourceRate: 1, SourceBurst: 5, PrefixRate: 200, PrefixBurst: 1000, Entries: 1 << 16}
}

// speakRequest is a listener's request to speak.
type speakRequest struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`

	secret []byte    // SHA-256 of the requester's secret
	token  string    // the speaker token, once approved: for the requester only
	seen   time.Time // the requester's last poll
}

// onStage is how a speaker appears to listeners.
type onStage struct {
	name string
	host bool
}

type reactionBucket struct {
	sec int64
	n   [len(reactionKinds)]int
}

// room is a live space's room on this node.
type room struct {
	mu        sync.Mutex
	requests  map[string]*speakRequest
	reqChange uint64 // bumped when the pending requests change
	names     map[string]onStage
	reactions [reactionWindow]reactionBucket
	streams   int
	// cuts holds a channel per open event stream, by the speaker id of
	// its caller, closed to cut the stream when the host takes the
	// caller's token back; revoked remembers those speaker ids, so a
	// stream authorized just before the revocation cannot open after it.
	cuts    map[string][]chan struct{}
	revoked map[string]bool
	ended   chan struct{}   // closed when the space goes off air here
	why     amphi.EndReason // set before ended is closed
}

func newRoom() *room {
	return &room{requests: map[string]*speakRequest{}, names: map[string]onStage{}, ended: make(chan struct{}),
		cuts: map[string][]chan struct{}{}, revoked: map[string]bool{}}
}

// openStream counts an event stream of the caller with the speaker id
// within the caller's and the space's caps. It returns the channel that
// cuts the stream and the function that uncounts it.
func (rm *room) openStream(who string) (cut <-chan struct{}, done func(), err error) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	switch {
	case rm.revoked[who]:
		return nil, nil, amphi.Errorf(amphi.EUnauthorized, "the host removed you from the stage: this link no longer works")
	case len(rm.cuts[who]) >= maxCallerStreams:
		return nil, nil, amphi.Errorf(amphi.ERateLimited, "this link already has %d event streams open, the most it may: close one (another tab?) and retry", maxCallerStreams)
	case rm.streams >= maxEventStreams:
		return nil, nil, amphi.Errorf(amphi.EFull, "this space already has %d event streams", maxEventStreams)
	}
	rm.streams++
	c := make(chan struct{})
	rm.cuts[who] = append(rm.cuts[who], c)
	return c, func() {
		rm.mu.Lock()
		defer rm.mu.Unlock()
		rm.streams--
		if left := slices.DeleteFunc(rm.cuts[who], func(x chan struct{}) bool { return x == c }); len(left) > 0 {
			rm.cuts[who] = left
		} else {
			delete(rm.cuts, who)
		}
	}, nil
}

// revoke cuts the event streams of the speaker whose token the host took
// back, and refuses it new ones.
func (rm *room) revoke(who string) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.revoked[who] = true
	for _, c := range rm.cuts[who] {
		close(c)
	}
	delete(rm.cuts, who)
}

// rooms are the rooms of the spaces on air on this node.
type rooms struct {
	mu sync.Mutex
	m  map[string]*room
}

func (rs *rooms) open(id string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.m == nil {
		rs.m = map[string]*room{}
	}
	if rs.m[id] == nil {
		rs.m[id] = newRoom()
	}
}

func (rs *rooms) close(id string, why amphi.EndReason) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if r := rs.m[id]; r != nil {
		r.why = why
		close(r.ended)
		delete(rs.m, id)
	}
}

func (rs *rooms) get(id string) *room {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.m[id]
}

// roomOf returns the session and room of a space on air on this node, or
// explains why it has none.
func (s *Server) roomOf(r *http.Request, id string) (*live.Session, *room, error) {
	if rm := s.rooms.get(id); rm != nil {
		if sess := s.live.Session(id); sess != nil {
			return sess, rm, nil
		}
	}
	_, err := s.onAir(r, id)
	if err == nil {
		err = amphi.Errorf(amphi.EUnavailable, "space %s is live but its room is not on this server", id)
	}
	return nil, nil, err
}

// liveRoom authorizes the request as one of roles in its space, which must
// be on air here, and returns who it acts as, the space's session and its
// room.
func (s *Server) liveRoom(r *http.Request, roles ...amphi.Role) (*caller, *live.Session, *room, error) {
	id := r.PathValue("id")
	c, err := s.authorize(r, id, roles...)
	if err != nil {
		return nil, nil, nil, err
	}
	sess, rm, err := s.roomOf(r, id)
	return c, sess, rm, err
}

// sweepLocked drops requests whose requesters are gone or answered long ago.
func (rm *room) sweepLocked(now time.Time) {
	for id, q := range rm.requests {
		idle := now.Sub(q.seen)
		if (q.Status == requestPending && idle > requestIdle) || idle > answeredKeep {
			delete(rm.requests, id)
			if q.Status == requestPending {
				rm.reqChange++
			}
		}
	}
}

// pendingLocked lists the pending requests, oldest first; never nil, so it
// encodes as [].
func (rm *room) pendingLocked() []*speakRequest {
	out := []*speakRequest{}
	for _, q := range rm.requests {
		if q.Status == requestPending {
			out = append(out, q)
		}
	}
	slices.SortFunc(out, func(a, b *speakRequest) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out
}

func (rm *room) react(kind, count int, now time.Time) {
	sec := now.Unix()
	rm.mu.Lock()
	defer rm.mu.Unlock()
	b := &rm.reactions[sec%reactionWindow]
	if b.sec != sec {
		*b = reactionBucket{sec: sec}
	}
	b.n[kind] += count
}

func (rm *room) reactionsLocked(now time.Time) map[string]int {
	out := map[string]int{}
	sec := now.Unix()
	for _, b := range rm.reactions {
		if sec-b.sec >= reactionWindow {
			continue
		}
		for k, n := range b.n {
			if n > 0 {
				out[reactionKinds[k]] += n
			}
		}
	}
	return out
}

// stateView is the live state of a space, as pages show it.
type stateView struct {
	ID              string         `json:"id"`
	State           amphi.State    `json:"state"`
	Title           string         `json:"title"`
	Listeners       int            `json:"listeners"`
	Waiting         int            `json:"waiting"`
	Speakers        []speakerView  `json:"speakers"`
	Reactions       map[string]int `json:"reactions"`
	ReactionsWindow int            `json:"reactions_window_s"`
	Recording       bool           `json:"recording"`
	Requests        int            `json:"requests"`
	// PollAfterMs is when the page should poll again (pollAfter).
	PollAfterMs int64 `json:"poll_after_ms"`
}

// pollAfter is how long pages should wait before polling the state again
// when crowd people listen or wait here. Over real connections a poll costs
// an edge about what a second of a listener's audio does
// (docs/BENCHMARKS.md), so past pollCrowd the interval grows with the crowd,
// holding polls between one and two pollCrowd per statePoll, up to
// maxStatePoll. An
// ended space changes no more: its pages need not come back soon.
func pollAfter(state amphi.State, crowd int) time.Duration {
	if state == amphi.StateEnded {
		return maxStatePoll
	}
	return min(statePoll*time.Duration(max(1, crowd/pollCrowd)), maxStatePoll)
}

type speakerView struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Host     bool   `json:"host"`
	Speaking bool   `json:"speaking"`
	Muted    bool   `json:"muted"`
}

// liveState builds the state of a space on air here.
func (s *Server) liveState(sess *live.Session, rm *room) *stateView {
	now := s.cfg.Now()
	sp := sess.Space()
	v := &stateView{ID: sp.ID, State: amphi.StateLive, Title: sp.Title, ReactionsWindow: reactionWindow,
		Recording: sess.Recorder().Recording(), Speakers: []speakerView{}}
	if gr := s.gate.room(sp.ID); gr != nil {
		st := gr.Stats(now)
		v.Listeners = st.Connected
		for _, n := range st.Waiting {
			v.Waiting += n
		}
	}
	speaking := sess.Speaking(speakingWindow)
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.sweepLocked(now)
	for _, info := range sess.Stage().Speakers() {
		who, ok := rm.names[info.ID]
		if !ok {
			who.name = "Speaker"
		}
		v.Speakers = append(v.Speakers, speakerView{ID: info.ID, Name: who.name, Host: who.host,
			Speaking: slices.Contains(speaking, info.ID), Muted: info.Muted})
	}
	v.Reactions = rm.reactionsLocked(now)
	v.Requests = len(rm.pendingLocked())
	v.PollAfterMs = pollAfter(v.State, v.Listeners+v.Waiting).Milliseconds()
	return v
}

// cachedState is an encoded state and its ETag.
type cachedState struct {
	body []byte
	etag string
	at   time.Time
	// etagHeader is etag as a header value, shared by every answer: a
	// poll sets its headers without allocating them.
	etagHeader []string
}

// The headers of every state answer, shared likewise; net/http only reads
// them.
var (
	jsonHeader       = []string{"application/json"}
	stateCacheHeader = []string{"public, max-age=1"}
)

// stateCache keeps each space's encoded state for stateMaxAge, so a
// million pages polling cost one encoding a second per space. A poll only
// loads from it: no lock is shared by all the pages polling.
type stateCache struct {
	m sync.Map     // space id → *cachedState
	n atomic.Int64 // entries, roughly: to bound the map
}

// maxCachedStates bounds the cache against polls of many spaces; past it
// the cache starts over, which costs only re-encoding.
const maxCachedStates = 10000

func (c *stateCache) get(id string) *cachedState {
	v, _ := c.m.Load(id)
	st, _ := v.(*cachedState)
	return st
}

func (c *stateCache) put(id string, st *cachedState) {
	if _, loaded := c.m.Swap(id, st); !loaded && c.n.Add(1) > maxCachedStates {
		c.m.Clear()
		c.n.Store(0)
	}
}

// forget drops a space's cached state.
func (c *stateCache) forget(id string) {
	if _, ok := c.m.LoadAndDelete(id); ok {
		c.n.Add(-1)
	}
}

func (s *Server) state(r *http.Request, id string, maxAge time.Duration) (*cachedState, error) {
	now := s.cfg.Now()
	hit := s.states.get(id)
	if hit != nil && now.Sub(hit.at) < maxAge {
		return hit, nil
	}
	var v *stateView
	if rm := s.rooms.get(id); rm != nil {
		if sess := s.live.Session(id); sess != nil {
			v = s.liveState(sess, rm)
		}
	}
	if v == nil {
		// Only here does a poll read the database: once a second per
		// space for real pages, more for made-up ids, which the limit
		// holds to a few a second per source.
		if err := s.gate.limit(s.lookupLimit, s.gate.clientAddr(r), now); err != nil {
			return nil, err
		}
		sp, err := s.db.Space(r.Context(), id)
		if err != nil {
			return nil, err
		}
		v = &stateView{ID: sp.ID, State: sp.State, Title: sp.Title, Speakers: []speakerView{},
			Reactions: map[string]int{}, ReactionsWindow: reactionWindow}
		crowd := 0
		if gr := s.gate.room(id); gr != nil { // a scheduled space's herd waits here
			for _, n := range gr.Stats(s.cfg.Now()).Waiting {
				crowd += n
			}
		}
		v.PollAfterMs = pollAfter(v.State, crowd).Milliseconds()
	}
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	st := &cachedState{body: body, etag: etag, at: now, etagHeader: []string{etag}}
	s.states.put(id, st)
	return st, nil
}

func (s *Server) handleState(w http.ResponseWriter, r *http.Request) {
	st, err := s.state(r, r.PathValue("id"), stateMaxAge)
	if err != nil {
		if amphi.ErrorCode(err) == amphi.ENotFound {
			// Polls of spaces that do not exist are what a flood of
			// made-up URLs looks like: the ops verdict counts them.
			s.gate.refuse(gate.RefusalNotFound, s.gate.clientAddr(r))
		}
		s.error(w, r, err)
		return
	}
	h := w.Header()
	h["Content-Type"], h["Cache-Control"], h["Etag"] = jsonHeader, stateCacheHeader, st.etagHeader
	if r.Header.Get("If-None-Match") == st.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Write(st.body)
}

// handleEvents streams the state (and, to hosts, the requests to speak) to
// the few on stage as server-sent events.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	c, _, rm, err := s.liveRoom(r, amphi.RoleHost, amphi.RoleSpeaker)
	if err != nil {
		s.error(w, r, err)
		return
	}
	cut, done, err := rm.openStream(c.speakerID())
	if err != nil {
		s.error(w, r, err)
		return
	}
	defer done()
	// A speaker link stops working when it expires: so does its stream.
	var expire <-chan time.Time
	if c.token != nil && c.token.ExpiresAt != nil {
		t := time.NewTimer(c.token.ExpiresAt.Sub(s.cfg.Now()))
		defer t.Stop()
		expire = t.C
	}
	rc := http.NewResponseController(w)
	// Each write below has writeProgress; a stream the server ends leaves
	// its connection to keep-alive, which must not inherit the deadline.
	defer rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // a proxy in front must not hold events back
	w.WriteHeader(http.StatusOK)

	host := c.role == amphi.RoleHost
	var lastState []byte
	lastReq := ^uint64(0)
	tick := time.NewTicker(eventsEvery)
	defer tick.Stop()
	lastWrite := time.Now()
	for {
		var buf bytes.Buffer
		if st, err := s.state(r, id, eventsEvery); err == nil && !bytes.Equal(st.body, lastState) {
			lastState = st.body
			writeEvent(&buf, "state", st.body)
		}
		if host {
			rm.mu.Lock()
			changed := rm.reqChange != lastReq
			lastReq = rm.reqChange
			var body []byte
			if changed {
				body, _ = json.Marshal(map[string]any{"requests": rm.pendingLocked()})
			}
			rm.mu.Unlock()
			if changed {
				writeEvent(&buf, "requests", body)
			}
		}
		if buf.Len() == 0 && time.Since(lastWrite) >= eventsPing {
			buf.WriteString(": ping\n\n")
		}
		if buf.Len() > 0 {
			rc.SetWriteDeadline(time.Now().Add(writeProgress))
			if _, err := w.Write(buf.Bytes()); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
			lastWrite = time.Now()
		}
		select {
		case <-r.Context().Done():
			return
		case <-rm.ended:
			body, _ := json.Marshal(map[string]any{"state": amphi.StateEnded, "end_reason": rm.why})
			lastWord(w, rc, "end", body)
			return
		case <-cut:
			lastWord(w, rc, "revoked", []byte(`{"message":"the host removed you from the stage"}`))
			return
		case <-expire:
			lastWord(w, rc, "revoked", []byte(`{"message":"this speaker link expired"}`))
			return
		case <-tick.C:
		}
	}
}

// lastWord sends a stream's last event, which says why it ends.
func lastWord(w http.ResponseWriter, rc *http.ResponseController, event string, data []byte) {
	var buf bytes.Buffer
	writeEvent(&buf, event, data)
	rc.SetWriteDeadline(time.Now().Add(writeProgress))
	w.Write(buf.Bytes())
	rc.Flush()
}

func writeEvent(buf *bytes.Buffer, event string, data []byte) {
	buf.WriteString("event: " + event + "\ndata: ")
	buf.Write(data) // compact JSON: one line
	buf.WriteString("\n\n")
}

type reactionRequest struct {
	Kind  string `json:"kind"`
	Count int    `json:"count"`
}

// limitedJSON applies a per-source limit to a listener's request, then
// reads its JSON body into v: what listeners may send without credentials
// costs a flood no more than a bucket check.
func (s *Server) limitedJSON(w http.ResponseWriter, r *http.Request, l *gate.SourceLimiter, now time.Time, v any) error {
	if err := s.gate.limit(l, s.gate.clientAddr(r), now); err != nil {
		return err
	}
	return s.decodeJSON(w, r, v)
}

func (s *Server) handleReaction(w http.ResponseWriter, r *http.Request) {
	now := s.cfg.Now()
	var req reactionRequest
	if err := s.limitedJSON(w, r, s.reactLimit, now, &req); err != nil {
		s.error(w, r, err)
		return
	}
	kind := slices.Index(reactionKinds[:], req.Kind)
	switch {
	case kind < 0:
		s.error(w, r, amphi.Errorf(amphi.EInvalid, "kind must be one of %v", reactionKinds))
		return
	case req.Count < 1 || req.Count > maxReactionBatch:
		s.error(w, r, amphi.Errorf(amphi.EInvalid, "count must be between 1 and %d", maxReactionBatch))
		return
	}
	_, rm, err := s.roomOf(r, r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	rm.react(kind, req.Count, now)
	w.WriteHeader(http.StatusNoContent)
}

type speakRequestBody struct {
	Name string `json:"name"`
}

// requestView is what a requester reads of their request: with the speaker
// token once approved.
type requestView struct {
	*speakRequest
	Secret   string `json:"secret,omitempty"`
	Token    string `json:"token,omitempty"`
	SpeakURL string `json:"speak_url,omitempty"`
}

func (s *Server) handleRequestCreate(w http.ResponseWriter, r *http.Request) {
	now := s.cfg.Now()
	var body speakRequestBody
	if err := s.limitedJSON(w, r, s.requestLimit, now, &body); err != nil {
		s.error(w, r, err)
		return
	}
	name, err := displayName(body.Name, true)
	if err != nil {
		s.error(w, r, err)
		return
	}
	_, rm, err := s.roomOf(r, r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	secret, hash, err := store.NewToken()
	if err != nil {
		s.error(w, r, err)
		return
	}
	var idb [8]byte
	rand.Read(idb[:])
	q := &speakRequest{ID: hex.EncodeToString(idb[:]), Name: name, Status: requestPending, CreatedAt: now.UTC(), secret: hash, seen: now}
	rm.mu.Lock()
	rm.sweepLocked(now)
	full := len(rm.pendingLocked()) >= maxPendingRequests
	if !full {
		rm.requests[q.ID] = q
		rm.reqChange++
	}
	rm.mu.Unlock()
	if full {
		s.error(w, r, amphi.Errorf(amphi.EFull, "%d requests to speak are already waiting for the host: try again later", maxPendingRequests))
		return
	}
	writeJSON(w, http.StatusCreated, &requestView{speakRequest: q, Secret: secret})
}

// ownRequest finds the request the bearer's secret opens, with the room
// locked; the caller unlocks it.
func (s *Server) ownRequest(r *http.Request) (*room, *speakRequest, error) {
	secret, err := bearer(r)
	if err != nil {
		return nil, nil, err
	}
	_, rm, err := s.roomOf(r, r.PathValue("id"))
	if err != nil {
		return nil, nil, err
	}
	now := s.cfg.Now()
	rm.mu.Lock()
	rm.sweepLocked(now)
	q := rm.requests[r.PathValue("rid")]
	switch {
	case q == nil:
		rm.mu.Unlock()
		return nil, nil, amphi.Errorf(amphi.ENotFound, "no such request to speak: it was withdrawn, or dropped after %s without polling", requestIdle)
	case subtle.ConstantTimeCompare(store.HashToken(secret), q.secret) != 1:
		rm.mu.Unlock()
		return nil, nil, amphi.Errorf(amphi.EUnauthorized, "wrong secret for this request")
	}
	q.seen = now
	return rm, q, nil
}

func (s *Server) handleRequestGet(w http.ResponseWriter, r *http.Request) {
	rm, q, err := s.ownRequest(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	v := requestView{speakRequest: &speakRequest{}}
	*v.speakRequest = *q
	rm.mu.Unlock()
	if v.Status == requestApproved {
		v.Token = v.token
		v.SpeakURL = "/s/" + r.PathValue("id") + "/speak#token=" + v.Token
	}
	writeJSON(w, http.StatusOK, &v)
}

func (s *Server) handleRequestWithdraw(w http.ResponseWriter, r *http.Request) {
	rm, q, err := s.ownRequest(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	delete(rm.requests, q.ID)
	if q.Status == requestPending {
		rm.reqChange++
	}
	rm.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleRequestList(w http.ResponseWriter, r *http.Request) {
	_, _, rm, err := s.liveRoom(r, amphi.RoleHost)
	if err != nil {
		s.error(w, r, err)
		return
	}
	rm.mu.Lock()
	rm.sweepLocked(s.cfg.Now())
	pending := rm.pendingLocked()
	out := make([]speakRequest, len(pending))
	for i, q := range pending {
		out[i] = *q
	}
	rm.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"requests": out})
}

func (s *Server) handleRequestApprove(w http.ResponseWriter, r *http.Request) {
	s.answerRequest(w, r, requestApproved)
}

func (s *Server) handleRequestDecline(w http.ResponseWriter, r *http.Request) {
	s.answerRequest(w, r, requestDeclined)
}

func (s *Server) answerRequest(w http.ResponseWriter, r *http.Request, answer string) {
	id := r.PathValue("id")
	_, _, rm, err := s.liveRoom(r, amphi.RoleHost)
	if err != nil {
		s.error(w, r, err)
		return
	}
	rm.mu.Lock()
	q := rm.requests[r.PathValue("rid")]
	var name string
	switch {
	case q == nil:
		err = amphi.Errorf(amphi.ENotFound, "no such request to speak: it was withdrawn, or its listener left")
	case q.Status != requestPending:
		err = amphi.Errorf(amphi.EConflict, "this request was already %s", q.Status)
	default:
		name = q.Name
	}
	rm.mu.Unlock()
	if err != nil {
		s.error(w, r, err)
		return
	}
	var token string
	if answer == requestApproved {
		// Minted outside the lock: it writes to the database.
		m, err := s.mintSpeaker(r.Context(), id, name, defaultSpeakerTTL)
		if err != nil {
			s.error(w, r, err)
			return
		}
		token = m.Token
	}
	rm.mu.Lock()
	if q.Status == requestPending { // a racing answer lost; the first one stands
		q.Status, q.token = answer, token
		rm.reqChange++
	}
	v := *q
	rm.mu.Unlock()
	writeJSON(w, http.StatusOK, &v)
}

// hostSwitch checks a host's request to switch something in a live space:
// its body is one boolean field. It returns the space's session and room
// and the value asked for.
func (s *Server) hostSwitch(w http.ResponseWriter, r *http.Request, field string) (*live.Session, *room, bool, error) {
	_, sess, rm, err := s.liveRoom(r, amphi.RoleHost)
	if err != nil {
		return nil, nil, false, err
	}
	var body map[string]*bool
	if err := s.decodeJSON(w, r, &body); err != nil {
		return nil, nil, false, err
	}
	v := body[field]
	if v == nil || len(body) != 1 {
		return nil, nil, false, amphi.Errorf(amphi.EInvalid, `the body must be {"%s": true} or {"%s": false}`, field, field)
	}
	return sess, rm, *v, nil
}

func (s *Server) handleSpeakerMute(w http.ResponseWriter, r *http.Request) {
	sid := r.PathValue("sid")
	sess, rm, muted, err := s.hostSwitch(w, r, "muted")
	if err == nil {
		err = sess.Stage().Mute(sid, muted)
	}
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.states.forget(r.PathValue("id")) // the host sees their change at once
	rm.mu.Lock()
	who := rm.names[sid]
	rm.mu.Unlock()
	writeJSON(w, http.StatusOK, &speakerView{ID: sid, Name: who.name, Host: who.host, Muted: muted})
}

func (s *Server) handleSpeakerRemove(w http.ResponseWriter, r *http.Request) {
	id, sid := r.PathValue("id"), r.PathValue("sid")
	_, sess, rm, err := s.liveRoom(r, amphi.RoleHost)
	if err != nil {
		s.error(w, r, err)
		return
	}
	// Revoke first, so the speaker cannot join again between the two; a
	// host on stage through their account has no token to revoke.
	revokeErr := s.db.RevokeToken(r.Context(), id, sid, s.cfg.Now())
	if revokeErr != nil && amphi.ErrorCode(revokeErr) != amphi.ENotFound {
		s.error(w, r, revokeErr)
		return
	}
	if revokeErr == nil {
		rm.revoke(sid)
	}
	if err := sess.Stage().Remove(sid); err != nil && (revokeErr != nil || amphi.ErrorCode(err) != amphi.ENotFound) {
		s.error(w, r, err)
		return
	}
	s.states.forget(id)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleRecordingToggle(w http.ResponseWriter, r *http.Request) {
	sess, _, on, err := s.hostSwitch(w, r, "on")
	if err != nil {
		s.error(w, r, err)
		return
	}
	if on {
		sess.Recorder().Resume()
	} else {
		sess.Recorder().Pause()
	}
	s.states.forget(r.PathValue("id"))
	writeJSON(w, http.StatusOK, map[string]bool{"recording": sess.Recorder().Recording()})
}
