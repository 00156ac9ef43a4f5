package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/timeline"
)

// timelineMaxAge is how long a cache may keep an ended space's timeline:
// it no longer changes, but a deleted recording's should not outlive it
// in caches for long.
const timelineMaxAge = "public, max-age=600"

// handleTimeline serves who spoke when and the reactions over a space's
// recording, for its replay page: GET /spaces/{id}/timeline, public like
// the recording. An ended space's is whole and cacheable once its
// recording is final; a live one's is what the last flush stored, a few
// seconds behind. It goes when the recording is deleted.
func (s *Server) handleTimeline(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ctx := r.Context()
	sp, err := s.db.Space(ctx, id)
	if err != nil {
		s.error(w, r, err)
		return
	}
	var (
		d     time.Duration
		final bool
	)
	switch sp.State {
	case amphi.StateScheduled:
		s.error(w, r, amphi.Errorf(amphi.EConflict, "space %s has not started: its timeline begins when it does", id))
		return
	case amphi.StateLive:
		if on := s.spaces.Get(id); on != nil && on.Session() != nil {
			d = on.Session().Recorder().Duration()
		}
	default:
		rec, err := s.db.Recording(ctx, id)
		if amphi.ErrorCode(err) == amphi.ENotFound {
			err = amphi.Errorf(amphi.ENotFound, "space %s has no recording, so no timeline: it never went on air, or its recording was deleted", id)
		}
		if err != nil {
			s.error(w, r, err)
			return
		}
		d, final = rec.Duration, rec.Finalized
	}
	spans, counts, err := s.db.Timeline(ctx, id)
	if err != nil {
		s.error(w, r, err)
		return
	}
	body, err := json.Marshal(timeline.Build(d, spans, counts))
	if err != nil {
		s.error(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if !final {
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(body)
		return
	}
	// The recording is final once the timeline's last flush is stored
	// (space.Lifecycle.End), so from then on it no longer changes.
	w.Header().Set("Cache-Control", timelineMaxAge)
	modified := time.Time{}
	if sp.EndedAt != nil {
		modified = *sp.EndedAt
	}
	http.ServeContent(w, r, "", modified, bytes.NewReader(body))
}
