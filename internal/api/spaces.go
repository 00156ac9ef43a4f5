package api

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/live"
	"github.com/amphi-audio/amphi/internal/store"
)

// Limits on what hosts type, in characters.
const (
	maxTitle       = 200
	maxDescription = 2000
	maxName        = 60
)

// Speaker tokens' lifetimes: a day unless the host asks otherwise, at most
// a month, so a leaked old link stops working.
const (
	defaultSpeakerTTL = 24 * time.Hour
	maxSpeakerTTL     = 30 * 24 * time.Hour
)

// spaceView is a space as clients see it, with the URLs to use it.
type spaceView struct {
	*amphi.Space
	// LiveURL plays in any player: it joins and redirects to the stream.
	LiveURL string `json:"live_url"`
	// JoinURL is the join flow for clients that can wait and solve
	// challenges.
	JoinURL string `json:"join_url"`
	// HLSURL is the LL-HLS playlist; it needs a ticket (?ticket=).
	HLSURL       string `json:"hls_url"`
	RecordingURL string `json:"recording_url"`
	// ReplayHLSURL is the recording as HLS VOD, once the space ended.
	ReplayHLSURL string `json:"replay_hls_url"`
	WHIPURL      string `json:"whip_url"`
	// Speakers and Listeners are present while the space is on air on
	// this server, and count only this server's.
	Speakers  *int `json:"speakers,omitempty"`
	Listeners *int `json:"listeners,omitempty"`
}

// links are the base URLs a request's views point to: this server's, and
// where listeners go (the least loaded edge's, on an origin with edges).
type links struct{ base, listen string }

// linksFor works out a request's links once, for every view it answers.
func (s *Server) linksFor(r *http.Request) links {
	l := links{base: s.baseURL(r)}
	l.listen = l.base
	if s.cfg.ListenAt != nil {
		if at := s.cfg.ListenAt(); at != "" {
			l.listen = at
		}
	}
	return l
}

func (s *Server) view(l links, sp *amphi.Space) *spaceView {
	base, listen := l.base+"/spaces/"+sp.ID, l.listen+"/spaces/"+sp.ID
	v := &spaceView{Space: sp, LiveURL: listen + "/listen", JoinURL: listen + "/join", HLSURL: listen + hlsEntry, RecordingURL: base + "/recording.opus", ReplayHLSURL: base + "/replay/index.m3u8", WHIPURL: base + "/whip"}
	if here := s.spaces.Get(sp.ID); here != nil && here.Session() != nil {
		n := len(here.Session().Stage().Speakers())
		l := here.Waiting().Stats(s.cfg.Now()).Connected
		v.Speakers, v.Listeners = &n, &l
	}
	return v
}

type createRequest struct {
	Title       string     `json:"title"`
	Description string     `json:"description"`
	ScheduledAt *time.Time `json:"scheduled_at"`
}

// validate trims the request and says what is wrong with it, in words a
// host can act on.
func (req *createRequest) validate(now time.Time) error {
	var err error
	if req.Title, err = titleText.check(req.Title); err != nil {
		return err
	}
	if req.Description, err = descriptionText.check(req.Description); err != nil {
		return err
	}
	if req.ScheduledAt != nil && req.ScheduledAt.Before(now.Add(-time.Minute)) {
		return amphi.Errorf(amphi.EInvalid, "scheduled_at %s is in the past", req.ScheduledAt.Format(time.RFC3339))
	}
	return nil
}

type createResponse struct {
	*spaceView
	HostToken string `json:"host_token"`
}

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	owner, err := s.authorizeCreate(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	var req createRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	if err := req.validate(s.cfg.Now()); err != nil {
		s.error(w, r, err)
		return
	}
	place, err := s.admitCreate(r, req.ScheduledAt == nil, owner)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if place != nil {
		defer place.Release()
	}
	sp, token, err := s.createSpace(r.Context(), req, owner, place)
	if err != nil {
		s.error(w, r, err)
		return
	}
	w.Header().Set("Location", "/spaces/"+sp.ID)
	writeJSON(w, http.StatusCreated, &createResponse{spaceView: s.view(s.linksFor(r), sp), HostToken: token})
}

// newID returns a random id of 80 bits, in lower-case base32: a space's or
// a clip's.
func newID() string {
	var b [10]byte
	rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// createSpace stores a new space and its host token; one without a start
// time goes on air at once, in the place held for it.
func (s *Server) createSpace(ctx context.Context, req createRequest, owner *store.User, place *live.Place) (*amphi.Space, string, error) {
	var serial [4]byte
	rand.Read(serial[:])
	now := s.cfg.Now().UTC()
	sp := &amphi.Space{
		ID:          newID(),
		Title:       req.Title,
		Description: req.Description,
		State:       amphi.StateScheduled,
		CreatedAt:   now,
		Serial:      binary.LittleEndian.Uint32(serial[:]),
	}
	host := &store.Token{SpaceID: sp.ID, Role: amphi.RoleHost, CreatedAt: now}
	if owner != nil {
		sp.OwnerID = owner.ID
		// On stage, the host is known by their account's name.
		host.Name = accountName(owner)
	}
	if req.ScheduledAt != nil {
		at := req.ScheduledAt.UTC()
		sp.ScheduledAt = &at
	}
	if err := s.db.CreateSpace(ctx, sp); err != nil {
		return nil, "", err
	}
	token, hash, err := store.NewToken()
	if err != nil {
		return nil, "", err
	}
	host.Hash = hash
	if err := s.db.CreateToken(ctx, host); err != nil {
		return nil, "", err
	}
	if req.ScheduledAt == nil { // a space without a time is live at once
		if sp, err = s.life.Start(ctx, sp.ID, place); err != nil {
			return nil, "", err
		}
	} else { // its herd queues in arrival order until the start
		s.spaces.Open(sp.ID, *sp.ScheduledAt)
	}
	return sp, token, nil
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	var f store.SpaceFilter
	if st := r.URL.Query().Get("state"); st != "" {
		for _, one := range strings.Split(st, ",") {
			switch amphi.State(one) {
			case amphi.StateScheduled, amphi.StateLive, amphi.StateEnded:
				f.States = append(f.States, amphi.State(one))
			default:
				s.error(w, r, amphi.Errorf(amphi.EInvalid, "unknown state %q", one))
				return
			}
		}
	}
	if q := r.URL.Query().Get("mine"); q == "true" || q == "1" {
		u, _, _, err := s.signedIn(r)
		if err != nil {
			s.error(w, r, err)
			return
		}
		f.OwnerID = u.ID
	}
	f.Limit = 100
	spaces, err := s.db.Spaces(r.Context(), f)
	if err != nil {
		s.error(w, r, err)
		return
	}
	views := make([]*spaceView, 0, len(spaces))
	l := s.linksFor(r)
	for _, sp := range spaces {
		views = append(views, s.view(l, sp))
	}
	writeJSON(w, http.StatusOK, map[string]any{"spaces": views})
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	sp, err := s.lookup(r.Context(), r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.view(s.linksFor(r), sp))
}

func (s *Server) handleStart(w http.ResponseWriter, r *http.Request) {
	s.hostAction(w, r, s.StartSpace)
}

func (s *Server) handleEnd(w http.ResponseWriter, r *http.Request) {
	s.hostAction(w, r, s.EndSpace)
}

func (s *Server) hostAction(w http.ResponseWriter, r *http.Request, act func(context.Context, string) (*amphi.Space, error)) {
	id := r.PathValue("id")
	if _, err := s.authorize(r, id, amphi.RoleHost); err != nil {
		s.error(w, r, err)
		return
	}
	sp, err := act(r.Context(), id)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.view(s.linksFor(r), sp))
}

type mintRequest struct {
	Role       amphi.Role `json:"role"`
	Name       string     `json:"name"`
	TTLSeconds int64      `json:"ttl_seconds"`
}

type mintResponse struct {
	Token     string     `json:"token"`
	Role      amphi.Role `json:"role"`
	Name      string     `json:"name"`
	SpeakerID string     `json:"speaker_id"`
	ExpiresAt time.Time  `json:"expires_at"`
}

func (s *Server) handleMintToken(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := s.authorize(r, id, amphi.RoleHost); err != nil {
		s.error(w, r, err)
		return
	}
	var req mintRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	if req.Role != amphi.RoleSpeaker && req.Role != amphi.RoleCohost {
		s.error(w, r, amphi.Errorf(amphi.EInvalid, "role must be %q or %q", amphi.RoleSpeaker, amphi.RoleCohost))
		return
	}
	ttl := time.Duration(req.TTLSeconds) * time.Second
	switch {
	case req.TTLSeconds == 0:
		ttl = defaultSpeakerTTL
	case req.TTLSeconds < 0 || ttl > maxSpeakerTTL:
		s.error(w, r, amphi.Errorf(amphi.EInvalid, "ttl_seconds must be between 1 and %d", int64(maxSpeakerTTL/time.Second)))
		return
	}
	name, err := displayName(req.Name, false)
	if err != nil {
		s.error(w, r, err)
		return
	}
	resp, err := s.mintSpeaker(r.Context(), id, req.Role, name, ttl)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, resp)
}

// mintSpeaker makes a token for the space's stage (a speaker's or a
// co-host's), named and expiring.
func (s *Server) mintSpeaker(ctx context.Context, spaceID string, role amphi.Role, name string, ttl time.Duration) (*mintResponse, error) {
	token, hash, err := store.NewToken()
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now().UTC()
	exp := now.Add(ttl)
	t := &store.Token{Hash: hash, SpaceID: spaceID, Role: role, Name: name, CreatedAt: now, ExpiresAt: &exp}
	if err := s.db.CreateToken(ctx, t); err != nil {
		return nil, err
	}
	return &mintResponse{Token: token, Role: t.Role, Name: name, SpeakerID: t.SpeakerID(), ExpiresAt: exp}, nil
}

// StartSpace puts a scheduled space on air, if this node has a place on
// air for it (amphi.EFull otherwise).
func (s *Server) StartSpace(ctx context.Context, id string) (*amphi.Space, error) {
	place, err := s.life.Reserve()
	if err != nil {
		return nil, err
	}
	defer place.Release()
	return s.life.Start(ctx, id, place)
}

// EndSpace is the host's end of a space: it takes the space off air for
// good (or cancels a scheduled one) and finalises its recording.
func (s *Server) EndSpace(ctx context.Context, id string) (*amphi.Space, error) {
	return s.life.End(ctx, id, amphi.EndHost)
}

// EndAll ends every space on air here: what a graceful shutdown does.
func (s *Server) EndAll(ctx context.Context) error { return s.life.EndAll(ctx) }

// Recover puts back on air the spaces a crash left live, their recordings
// going on in the same files, and ends those that cannot resume
// (space.Lifecycle.Recover).
func (s *Server) Recover(ctx context.Context) error { return s.life.Recover(ctx) }

// Wait waits for the ends of idle spaces under way. Call it once the live
// manager is closed, before the store is.
func (s *Server) Wait() { s.life.Wait() }

// handleCalendar answers an iCalendar event (RFC 5545) for a space with a
// start time, for listeners' "add to calendar".
func (s *Server) handleCalendar(w http.ResponseWriter, r *http.Request) {
	sp, err := s.db.Space(r.Context(), r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	if sp.ScheduledAt == nil {
		s.error(w, r, amphi.Errorf(amphi.ENotFound, "space %s has no start time to put in a calendar", sp.ID))
		return
	}
	const stamp = "20060102T150405Z"
	page := s.baseURL(r) + "/s/" + sp.ID
	lines := []string{
		"BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//amphi//spaces//EN", "CALSCALE:GREGORIAN", "METHOD:PUBLISH",
		"BEGIN:VEVENT",
		"UID:" + sp.ID + "@" + r.Host,
		"DTSTAMP:" + s.cfg.Now().UTC().Format(stamp),
		"DTSTART:" + sp.ScheduledAt.UTC().Format(stamp),
		"DTEND:" + sp.ScheduledAt.Add(time.Hour).UTC().Format(stamp),
		"SUMMARY:" + icsText(sp.Title),
		"DESCRIPTION:" + icsText(strings.TrimSpace(sp.Description+"\n\nListen: "+page)),
		"URL:" + page,
		"BEGIN:VALARM", "ACTION:DISPLAY", "DESCRIPTION:" + icsText(sp.Title), "TRIGGER:-PT10M", "END:VALARM",
		"END:VEVENT", "END:VCALENDAR",
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(icsFold(l))
	}
	h := w.Header()
	h.Set("Content-Type", "text/calendar; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="amphi-`+sp.ID+`.ics"`)
	h.Set("Cache-Control", "no-cache")
	io.WriteString(w, b.String())
}

// icsText escapes a TEXT value (RFC 5545 §3.3.11).
func icsText(v string) string { return icsEscaper.Replace(v) }

var icsEscaper = strings.NewReplacer(`\`, `\\`, ";", `\;`, ",", `\,`, "\r\n", `\n`, "\n", `\n`, "\r", `\n`)

// icsFold folds a content line at 75 octets, never inside a UTF-8
// character, and ends it with CRLF (RFC 5545 §3.1).
func icsFold(line string) string {
	var b strings.Builder
	n := 0
	for _, r := range line {
		size := utf8.RuneLen(r)
		if n+size > 75 {
			b.WriteString("\r\n ")
			n = 1
		}
		b.WriteRune(r)
		n += size
	}
	b.WriteString("\r\n")
	return b.String()
}
