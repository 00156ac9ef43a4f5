package api

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/record"
	"github.com/amphi-audio/amphi/internal/store"
)

// maxTitle is the longest title, in characters.
const maxTitle = 200

// spaceView is a space as clients see it, with the URLs to use it.
type spaceView struct {
	*amphi.Space
	// LiveURL plays in any player: it joins and redirects to the stream.
	LiveURL string `json:"live_url"`
	// JoinURL is the join flow for clients that can wait and solve
	// challenges.
	JoinURL      string `json:"join_url"`
	RecordingURL string `json:"recording_url"`
	WHIPURL      string `json:"whip_url"`
	Speakers     *int   `json:"speakers,omitempty"`
}

func (s *Server) view(r *http.Request, sp *amphi.Space) *spaceView {
	base := baseURL(r) + "/spaces/" + sp.ID
	v := &spaceView{Space: sp, LiveURL: base + "/listen", JoinURL: base + "/join", RecordingURL: base + "/recording.opus", WHIPURL: base + "/whip"}
	if sess := s.live.Session(sp.ID); sess != nil {
		n := len(sess.Stage().Speakers())
		v.Speakers = &n
	}
	return v
}

func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

type createRequest struct {
	Title       string     `json:"title"`
	ScheduledAt *time.Time `json:"scheduled_at"`
}

type createResponse struct {
	*spaceView
	HostToken string `json:"host_token"`
}

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	if err := s.authorizeCreate(r); err != nil {
		s.error(w, r, err)
		return
	}
	var req createRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	req.Title = strings.TrimSpace(req.Title)
	switch {
	case req.Title == "":
		s.error(w, r, amphi.Errorf(amphi.EInvalid, "title is required"))
		return
	case utf8.RuneCountInString(req.Title) > maxTitle:
		s.error(w, r, amphi.Errorf(amphi.EInvalid, "title is longer than %d characters", maxTitle))
		return
	}
	sp, token, err := s.createSpace(r.Context(), req)
	if err != nil {
		s.error(w, r, err)
		return
	}
	w.Header().Set("Location", "/spaces/"+sp.ID)
	writeJSON(w, http.StatusCreated, &createResponse{spaceView: s.view(r, sp), HostToken: token})
}

func (s *Server) createSpace(ctx context.Context, req createRequest) (*amphi.Space, string, error) {
	var idBytes [10]byte
	rand.Read(idBytes[:])
	var serial [4]byte
	rand.Read(serial[:])
	now := s.cfg.Now().UTC()
	sp := &amphi.Space{
		ID:        strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(idBytes[:])),
		Title:     req.Title,
		State:     amphi.StateScheduled,
		CreatedAt: now,
		Serial:    binary.LittleEndian.Uint32(serial[:]),
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
	if err := s.db.CreateToken(ctx, hash, sp.ID, amphi.RoleHost, now); err != nil {
		return nil, "", err
	}
	if req.ScheduledAt == nil { // a space without a time is live at once
		if sp, err = s.StartSpace(ctx, sp.ID); err != nil {
			return nil, "", err
		}
	} else { // its herd queues in arrival order until the start
		s.gate.openRoom(sp.ID, *sp.ScheduledAt)
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
	f.Limit = 100
	spaces, err := s.db.Spaces(r.Context(), f)
	if err != nil {
		s.error(w, r, err)
		return
	}
	views := make([]*spaceView, 0, len(spaces))
	for _, sp := range spaces {
		views = append(views, s.view(r, sp))
	}
	writeJSON(w, http.StatusOK, map[string]any{"spaces": views})
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	sp, err := s.db.Space(r.Context(), r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.view(r, sp))
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
	writeJSON(w, http.StatusOK, s.view(r, sp))
}

type mintRequest struct {
	Role amphi.Role `json:"role"`
}

type mintResponse struct {
	Token string     `json:"token"`
	Role  amphi.Role `json:"role"`
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
	if req.Role != amphi.RoleSpeaker {
		s.error(w, r, amphi.Errorf(amphi.EInvalid, "role must be %q", amphi.RoleSpeaker))
		return
	}
	token, hash, err := store.NewToken()
	if err != nil {
		s.error(w, r, err)
		return
	}
	if err := s.db.CreateToken(r.Context(), hash, id, req.Role, s.cfg.Now()); err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, &mintResponse{Token: token, Role: req.Role})
}

func (s *Server) recordingPath(spaceID string) string {
	return filepath.Join("recordings", spaceID+".opus")
}

// StartSpace puts a scheduled space on air.
func (s *Server) StartSpace(ctx context.Context, id string) (*amphi.Space, error) {
	sp, err := s.db.SetSpaceState(ctx, id, []amphi.State{amphi.StateScheduled}, amphi.StateLive, s.cfg.Now())
	if err != nil {
		return nil, err
	}
	rel := s.recordingPath(id)
	if err := s.db.PutRecording(ctx, &amphi.Recording{SpaceID: id, Path: rel}); err != nil {
		return nil, s.failStart(ctx, id, err)
	}
	if _, err := s.live.Start(sp, filepath.Join(s.cfg.DataDir, rel)); err != nil {
		return nil, s.failStart(ctx, id, err)
	}
	s.gate.openRoom(id, s.cfg.Now())
	return sp, nil
}

// failStart ends a space whose pipeline could not start, so it is not left
// "live" with nothing on air.
func (s *Server) failStart(ctx context.Context, id string, err error) error {
	if _, err2 := s.db.SetSpaceState(ctx, id, []amphi.State{amphi.StateLive}, amphi.StateEnded, s.cfg.Now()); err2 != nil {
		err = errors.Join(err, err2)
	}
	return fmt.Errorf("api: start space %s: %w", id, err)
}

// EndSpace takes a space off air for good (or cancels a scheduled one) and
// finalises its recording.
func (s *Server) EndSpace(ctx context.Context, id string) (*amphi.Space, error) {
	sp, err := s.db.SetSpaceState(ctx, id, []amphi.State{amphi.StateScheduled, amphi.StateLive}, amphi.StateEnded, s.cfg.Now())
	if err != nil {
		return nil, err
	}
	s.gate.closeRoom(id)
	sess := s.live.Session(id)
	stopErr := s.live.Stop(id)
	if sess != nil {
		rec := sess.Recorder()
		if err := s.db.PutRecording(ctx, &amphi.Recording{
			SpaceID: id, Path: s.recordingPath(id), Duration: rec.Duration(), Bytes: rec.Bytes(), Finalized: true,
		}); err != nil {
			return nil, errors.Join(stopErr, err)
		}
	}
	if stopErr != nil {
		return nil, fmt.Errorf("api: end space %s: %w", id, stopErr)
	}
	return sp, nil
}

// EndAll ends every space on air here: what a graceful shutdown does.
func (s *Server) EndAll(ctx context.Context) error {
	spaces, err := s.db.Spaces(ctx, store.SpaceFilter{States: []amphi.State{amphi.StateLive}})
	if err != nil {
		return err
	}
	var errs []error
	for _, sp := range spaces {
		if s.live.Session(sp.ID) == nil {
			continue // on air on another node
		}
		if _, err := s.EndSpace(ctx, sp.ID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Recover ends the spaces a crash left live and makes their recordings
// valid: each is cut to its last complete page and indexed as final.
func (s *Server) Recover(ctx context.Context) error {
	recs, err := s.db.UnfinalizedRecordings(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, rec := range recs {
		size, d, err := record.Recover(filepath.Join(s.cfg.DataDir, rec.Path))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		sp, err := s.db.Space(ctx, rec.SpaceID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if sp.State == amphi.StateLive {
			end := s.cfg.Now()
			if sp.StartedAt != nil {
				end = sp.StartedAt.Add(d)
			}
			if _, err := s.db.SetSpaceState(ctx, sp.ID, []amphi.State{amphi.StateLive}, amphi.StateEnded, end); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		rec.Bytes, rec.Duration, rec.Finalized = size, d, true
		if err := s.db.PutRecording(ctx, rec); err != nil {
			errs = append(errs, err)
			continue
		}
		s.cfg.Logger.Warn("api: recovered the recording of a space a crash left live", "space", rec.SpaceID, "duration", d, "bytes", size)
	}
	return errors.Join(errs...)
}
