package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/gate"
	"github.com/amphi-audio/amphi/internal/space"
)

// The HTTP side of a space's room (space.Room): the state its pages poll,
// the events the few on stage get, requests to speak, reactions, and the
// host's mute, removal and recording switch.

const (
	// maxReactionBatch is the most taps one request may carry: pages
	// batch them, so a request stands for two seconds of tapping.
	maxReactionBatch = 20
	// Server-sent events: how often a stream looks for changes and how
	// often it proves it is alive.
	eventsEvery = 250 * time.Millisecond
	eventsPing  = 15 * time.Second
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

// liveRoom authorizes the request as one of roles in its space, which must
// be on air here, and returns who it acts as and the space.
func (s *Server) liveRoom(r *http.Request, roles ...amphi.Role) (*caller, *space.Space, error) {
	id := r.PathValue("id")
	c, err := s.authorize(r, id, roles...)
	if err != nil {
		return nil, nil, err
	}
	sp, err := s.onAir(r, id)
	return c, sp, err
}

// The headers of every state answer, shared like the ETag's; net/http
// only reads them.
var (
	jsonHeader       = []string{"application/json"}
	stateCacheHeader = []string{"public, max-age=1"}
)

// state returns the space's encoded state, at most maxAge old, encoding
// it anew with what lookup says of a space not on air here.
func (s *Server) state(id string, maxAge time.Duration, lookup func() (*amphi.Space, error)) (*space.State, error) {
	now := s.cfg.Now()
	if st := s.spaces.State(id, maxAge, now); st != nil {
		return st, nil
	}
	return s.spaces.Encode(id, now, lookup)
}

// EncodedState returns a space's state as its pages poll it, at most a
// second old: what the origin announces to the edges, whose pages get it.
func (s *Server) EncodedState(ctx context.Context, id string) ([]byte, error) {
	st, err := s.state(id, space.StateMaxAge, func() (*amphi.Space, error) { return s.lookup(ctx, id) })
	if err != nil {
		return nil, err
	}
	return st.Body(), nil
}

// announcedStateAge is how old the state an edge got from the origin's
// announcements (one a second) may be before it describes the space from
// the announcement alone: past a few seconds, the origin is gone or cut
// off.
const announcedStateAge = 5 * time.Second

func (s *Server) handleState(w http.ResponseWriter, r *http.Request) {
	maxAge := space.StateMaxAge
	if s.db == nil {
		maxAge = announcedStateAge
	}
	id, now := r.PathValue("id"), s.cfg.Now()
	// A cached state is what nearly every poll gets: it is looked up
	// before the closure that encodes one is made, so a hit allocates it
	// not.
	st := s.spaces.State(id, maxAge, now)
	var err error
	if st == nil {
		st, err = s.spaces.Encode(id, now, func() (*amphi.Space, error) {
			// Only here does a poll read the database: once a second per
			// space for real pages, more for made-up ids, which the limit
			// holds to a few a second per source.
			if err := s.gate.limit(s.lookupLimit, s.gate.clientAddr(r), now); err != nil {
				return nil, err
			}
			return s.lookup(r.Context(), id)
		})
	}
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
	h["Content-Type"], h["Cache-Control"], h["Etag"] = jsonHeader, stateCacheHeader, st.ETagHeader()
	if r.Header.Get("If-None-Match") == st.ETag() {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Write(st.Body())
}

// handleEvents streams the state (and, to hosts, the requests to speak) to
// the few on stage as server-sent events.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	c, sp, err := s.liveRoom(r, amphi.RoleHost, amphi.RoleCohost, amphi.RoleSpeaker)
	if err != nil {
		s.error(w, r, err)
		return
	}
	rm := sp.Room()
	cut, done, err := rm.OpenStream(c.speakerID())
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
		if st, err := s.state(id, eventsEvery, func() (*amphi.Space, error) { return s.lookup(r.Context(), id) }); err == nil && !bytes.Equal(st.Body(), lastState) {
			lastState = st.Body()
			writeEvent(&buf, "state", lastState)
		}
		if host {
			pending, version, changed := rm.PendingSince(lastReq)
			if lastReq = version; changed {
				body, _ := json.Marshal(map[string]any{"requests": pending})
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
		case <-rm.Ended():
			body, _ := json.Marshal(map[string]any{"state": amphi.StateEnded, "end_reason": rm.EndReason()})
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
	kind := slices.Index(space.ReactionKinds[:], req.Kind)
	switch {
	case kind < 0:
		s.error(w, r, amphi.Errorf(amphi.EInvalid, "kind must be one of %v", space.ReactionKinds))
		return
	case req.Count < 1 || req.Count > maxReactionBatch:
		s.error(w, r, amphi.Errorf(amphi.EInvalid, "count must be between 1 and %d", maxReactionBatch))
		return
	}
	sp, err := s.onAir(r, r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	sp.Room().React(kind, req.Count, now)
	w.WriteHeader(http.StatusNoContent)
}

type speakRequestBody struct {
	Name string `json:"name"`
}

// requestView is what a requester reads of their request: with the speaker
// token once approved.
type requestView struct {
	*space.SpeakRequest
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
	sp, err := s.onAir(r, r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	q, secret, err := sp.Room().Ask(name, now)
	if err != nil {
		s.error(w, r, err)
		return
	}
	// The state counts the requests: the host's console sees a new one at
	// once, whatever the fleet's round encoded a moment ago.
	s.spaces.Forget(sp.ID())
	writeJSON(w, http.StatusCreated, &requestView{SpeakRequest: &q, Secret: secret})
}

// ownRequest returns the room of the request the bearer's secret opens,
// and the secret.
func (s *Server) ownRequest(r *http.Request) (*space.Room, string, error) {
	secret, err := bearer(r)
	if err != nil {
		return nil, "", err
	}
	sp, err := s.onAir(r, r.PathValue("id"))
	if err != nil {
		return nil, "", err
	}
	return sp.Room(), secret, nil
}

func (s *Server) handleRequestGet(w http.ResponseWriter, r *http.Request) {
	rm, secret, err := s.ownRequest(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	q, err := rm.Own(r.PathValue("rid"), secret, s.cfg.Now())
	if err != nil {
		s.error(w, r, err)
		return
	}
	v := requestView{SpeakRequest: &q}
	if q.Status == space.RequestApproved {
		v.Token = q.Token()
		v.SpeakURL = "/s/" + r.PathValue("id") + "/speak#token=" + v.Token
	}
	writeJSON(w, http.StatusOK, &v)
}

func (s *Server) handleRequestWithdraw(w http.ResponseWriter, r *http.Request) {
	rm, secret, err := s.ownRequest(r)
	if err == nil {
		err = rm.Withdraw(r.PathValue("rid"), secret, s.cfg.Now())
	}
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.spaces.Forget(r.PathValue("id"))
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleRequestList(w http.ResponseWriter, r *http.Request) {
	_, sp, err := s.liveRoom(r, amphi.RoleHost)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"requests": sp.Room().Pending(s.cfg.Now())})
}

func (s *Server) handleRequestApprove(w http.ResponseWriter, r *http.Request) {
	s.answerRequest(w, r, space.RequestApproved)
}

func (s *Server) handleRequestDecline(w http.ResponseWriter, r *http.Request) {
	s.answerRequest(w, r, space.RequestDeclined)
}

func (s *Server) answerRequest(w http.ResponseWriter, r *http.Request, answer string) {
	id, rid := r.PathValue("id"), r.PathValue("rid")
	_, sp, err := s.liveRoom(r, amphi.RoleHost)
	if err != nil {
		s.error(w, r, err)
		return
	}
	rm := sp.Room()
	name, err := rm.Answerable(rid)
	if err != nil {
		s.error(w, r, err)
		return
	}
	var token string
	if answer == space.RequestApproved {
		// Minted outside the room's lock: it writes to the database.
		m, err := s.mintSpeaker(r.Context(), id, amphi.RoleSpeaker, name, defaultSpeakerTTL)
		if err != nil {
			s.error(w, r, err)
			return
		}
		token = m.Token
	}
	q, err := rm.Answer(rid, answer, token)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, &q)
}

// hostSwitch checks a host's request to switch something in a live space:
// its body is one boolean field. It returns the space and the value asked
// for.
func (s *Server) hostSwitch(w http.ResponseWriter, r *http.Request, field string) (*space.Space, bool, error) {
	_, sp, err := s.liveRoom(r, amphi.RoleHost)
	if err != nil {
		return nil, false, err
	}
	var body map[string]*bool
	if err := s.decodeJSON(w, r, &body); err != nil {
		return nil, false, err
	}
	v := body[field]
	if v == nil || len(body) != 1 {
		return nil, false, amphi.Errorf(amphi.EInvalid, `the body must be {"%s": true} or {"%s": false}`, field, field)
	}
	return sp, *v, nil
}

func (s *Server) handleSpeakerMute(w http.ResponseWriter, r *http.Request) {
	sid := r.PathValue("sid")
	sp, muted, err := s.hostSwitch(w, r, "muted")
	if err == nil {
		err = sp.Session().Stage().Mute(sid, muted)
	}
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.spaces.Forget(r.PathValue("id")) // the host sees their change at once
	name, host := sp.Room().Name(sid)
	writeJSON(w, http.StatusOK, &space.SpeakerView{ID: sid, Name: name, Host: host, Muted: muted})
}

func (s *Server) handleSpeakerRemove(w http.ResponseWriter, r *http.Request) {
	id, sid := r.PathValue("id"), r.PathValue("sid")
	_, sp, err := s.liveRoom(r, amphi.RoleHost)
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
		sp.Room().Revoke(sid)
	}
	if err := sp.Session().Stage().Remove(sid); err != nil && (revokeErr != nil || amphi.ErrorCode(err) != amphi.ENotFound) {
		s.error(w, r, err)
		return
	}
	s.spaces.Forget(id)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleRecordingToggle(w http.ResponseWriter, r *http.Request) {
	sp, on, err := s.hostSwitch(w, r, "on")
	if err != nil {
		s.error(w, r, err)
		return
	}
	rec := sp.Session().Recorder()
	if on {
		rec.Resume()
	} else {
		rec.Pause()
	}
	s.spaces.Forget(r.PathValue("id"))
	writeJSON(w, http.StatusOK, map[string]bool{"recording": rec.Recording()})
}
