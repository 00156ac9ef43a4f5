package api

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/edge"
	"github.com/amphi-audio/amphi/internal/gate"
	"github.com/amphi-audio/amphi/internal/space"
)

// onAir returns a space that is on air on this node, or explains why it
// is not.
func (s *Server) onAir(r *http.Request, id string) (*space.Space, error) {
	if sp := s.spaces.Get(id); sp != nil && sp.Session() != nil {
		return sp, nil
	}
	sp, err := s.db.Space(r.Context(), id)
	if err != nil {
		return nil, err
	}
	return nil, notLive(sp)
}

// notLive explains why a space has no live audio.
func notLive(sp *amphi.Space) error {
	switch sp.State {
	case amphi.StateScheduled:
		return amphi.Errorf(amphi.EConflict, "space %s has not started yet", sp.ID)
	case amphi.StateEnded:
		return amphi.Errorf(amphi.EGone, "space %s has ended; its recording is at /spaces/%s/recording.opus", sp.ID, sp.ID)
	default:
		return amphi.Errorf(amphi.EUnavailable, "space %s is live but its audio is not on this server", sp.ID)
	}
}

// stageOf returns a space on air here whose stage the request's
// credentials may use, and who they are.
func (s *Server) stageOf(r *http.Request) (*space.Space, *caller, error) {
	id := r.PathValue("id")
	c, err := s.authorize(r, id, amphi.RoleHost, amphi.RoleCohost, amphi.RoleSpeaker)
	if err != nil {
		return nil, nil, err
	}
	sp, err := s.onAir(r, id)
	return sp, c, err
}

// handleWHIPPost joins a speaker to the stage (RFC 9725 §4.2).
func (s *Server) handleWHIPPost(w http.ResponseWriter, r *http.Request) {
	if err := s.whipPost(w, r); err != nil {
		s.error(w, r, err)
	}
}

func (s *Server) whipPost(w http.ResponseWriter, r *http.Request) error {
	now := s.cfg.Now()
	if err := s.limitWHIPSource(r, now); err != nil {
		return err
	}
	sp, c, err := s.stageOf(r)
	if err != nil {
		return err
	}
	// The speaker's id comes from its credentials, so a speaker who
	// reconnects replaces its old session instead of appearing twice, and
	// the host's mute and removal follow the person.
	speaker := c.speakerID()
	if err := s.limitWHIPSpeaker(r, speaker, now); err != nil {
		return err
	}
	offer, err := s.readBody(w, r, "application/sdp")
	if err != nil {
		return err
	}
	sp.Room().SetName(speaker, c.name(), c.role == amphi.RoleHost)
	session, answer, err := sp.Session().Stage().Join(r.Context(), speaker, string(offer))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", "/spaces/"+r.PathValue("id")+"/whip/"+session)
	w.WriteHeader(http.StatusCreated)
	w.Write([]byte(answer))
	return nil
}

// handleWHIPOptions answers CORS preflights and says what POST takes.
func (s *Server) handleWHIPOptions(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Accept-Post", "application/sdp")
	h.Set("Access-Control-Allow-Methods", "POST, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
	h.Set("Access-Control-Expose-Headers", "Location")
	w.WriteHeader(http.StatusNoContent)
}

// handleWHIPDelete takes a speaker off the stage (RFC 9725 §4.2): its own
// session, or any session for the host. Another speaker's session is 404,
// as an unknown one is, so a speaker cannot probe for session ids.
func (s *Server) handleWHIPDelete(w http.ResponseWriter, r *http.Request) {
	sp, c, err := s.stageOf(r)
	if err == nil {
		if session := r.PathValue("session"); c.role == amphi.RoleHost {
			err = sp.Session().Stage().Leave(session)
		} else {
			err = sp.Session().Stage().LeaveOwn(session, c.speakerID())
		}
	}
	if err != nil {
		s.error(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// handleLive streams a space's program to a ticket holder. The ticket is
// checked without I/O; a listener whose space is on this edge costs no
// database read: only refusals look the space up.
func (s *Server) handleLive(w http.ResponseWriter, r *http.Request) {
	if err := s.serveLive(w, r); err != nil {
		s.error(w, r, err)
	}
}

func (s *Server) serveLive(w http.ResponseWriter, r *http.Request) error {
	a, now, id := s.gate, s.cfg.Now(), r.PathValue("id")
	a.listenRequests.Add(1)
	addr := a.clientAddr(r)
	if err := a.limit(a.listen, addr, now); err != nil {
		return err
	}
	// One parse of the query: a listener's request allocates little.
	q := r.URL.Query()
	var st edge.Stream
	var err error
	var ok bool
	if st.Burst, err = queryDuration(q, "burst"); err == nil {
		st.Flush, err = queryDuration(q, "flush")
	}
	if from := q.Get("from_seq"); err == nil && from != "" {
		// A client resuming its stream (its edge died, say) asks for the
		// chunk after the last it got: it hears no hole.
		st.Resume = true
		if st.From, err = strconv.ParseUint(from, 10, 64); err != nil {
			err = amphi.Errorf(amphi.EInvalid, "from_seq must be a chunk number")
		}
	}
	// "from" rewinds the stream: from=start, from=-5m (rewind.go).
	rw, rewinding, rerr := parseRewind(q)
	if err == nil {
		err = rerr
	}
	if err != nil {
		a.refuse(gate.RefusalBadRequest, addr)
		return err
	}
	t, err := s.ticketOf(r, q.Get("ticket"), id, addr, now)
	if err != nil {
		return err
	}
	room, err := s.onEdgeRoom(r.Context(), id)
	if err != nil {
		return err
	}
	if r.Method == http.MethodHead {
		if !room.Holds(t.Place, now) {
			return a.lapsed(id, addr)
		}
		w.Header().Set("Content-Type", "audio/ogg")
		w.Header().Set("Cache-Control", "no-cache, no-store")
		w.WriteHeader(http.StatusOK)
		return nil
	}
	ring := s.edge.Ring(r.Context(), id)
	if ring == nil {
		return amphi.Errorf(amphi.EUnavailable, "space %s is live but its audio has not reached this server yet", id)
	}
	if st.Stop, ok = s.connect(room, t, now); !ok {
		return a.lapsed(id, addr)
	}
	if rewinding { // Serve closes the past, whatever becomes of the stream
		s.rewound(&st, rw, id, ring)
	}
	leave := func(edge.EndReason) { room.Leave(t.Place, s.cfg.Now()) }
	if _, err := s.edge.Serve(w, r, ring, st, leave); err != nil && amphi.ErrorCode(err) != amphi.EInternal {
		return err // only before the stream started
	}
	return nil
}

// onEdgeRoom returns the waiting room of a space whose program is on this
// edge: a listener of such a space costs no lookup; only a refusal does.
func (s *Server) onEdgeRoom(ctx context.Context, id string) (*gate.Room, error) {
	room := s.waitingRoom(id)
	if room != nil && s.edge.HasRing(id) {
		return room, nil
	}
	sp, room, err := s.lookupRoom(ctx, id)
	if err != nil {
		return nil, err
	}
	if sp.State != amphi.StateLive || room == nil {
		return nil, notLive(sp)
	}
	return room, nil
}

// connect takes the place of ticket t in room for a stream (or, for HLS,
// a playlist request) starting at now; ok is false when the place lapsed.
func (s *Server) connect(room *gate.Room, t gate.Ticket, now time.Time) (stop *atomic.Bool, ok bool) {
	if stop, ok = room.Connect(t.Place, now); !ok && t.Issuer != s.gate.signer.Issuer() {
		// The fleet shares the key: a listener another node admitted
		// (its edge died, or the kernel sent this connection here) takes
		// a free place without waiting again. One this node admitted
		// whose place lapsed must join again.
		stop, ok = room.Resume(t.Place, t.Tier, now)
	}
	return stop, ok
}

// queryDuration reads a duration parameter; absent means zero.
func queryDuration(q url.Values, name string) (time.Duration, error) {
	v := q.Get(name)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, amphi.Errorf(amphi.EInvalid, "%s must be a duration such as 200ms or 7s", name)
	}
	return d, nil
}

// handleRecording serves an ended space's recording, with Range support. A
// reader that stops is cut (progressWriter).
func (s *Server) handleRecording(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	sp, f, err := s.openRecording(r.Context(), id)
	if err != nil {
		s.error(w, r, err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "audio/ogg")
	w.Header().Set("Content-Disposition", `inline; filename="`+id+`.opus"`)
	modified := time.Time{}
	if sp.EndedAt != nil {
		modified = *sp.EndedAt
	}
	pw, done := newProgressWriter(w)
	defer done()
	http.ServeContent(pw, r, id+".opus", modified, f)
}

// openRecording returns an ended space and its open recording.
func (s *Server) openRecording(ctx context.Context, id string) (*amphi.Space, *os.File, error) {
	sp, err := s.db.Space(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if sp.State != amphi.StateEnded {
		return nil, nil, amphi.Errorf(amphi.EConflict, "the recording of space %s is served once it has ended", id)
	}
	rec, err := s.db.Recording(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	f, err := os.Open(filepath.Join(s.cfg.DataDir, rec.Path))
	if err != nil {
		return nil, nil, amphi.Errorf(amphi.ENotFound, "space %s has no recording", id)
	}
	return sp, f, nil
}
