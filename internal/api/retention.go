package api

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/amphi-audio/amphi"
)

// Retention: a host deletes an ended space's recording and its clips, and
// a server-wide retention period deletes them on its own (cmd/amphi runs
// ExpireRecordings). Only files the store knows are removed.

// handleRecordingDelete deletes an ended space's recording and clips:
// DELETE /spaces/{id}/recording with a host's credential.
func (s *Server) handleRecordingDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := s.authorize(r, id, amphi.RoleHost); err != nil {
		s.error(w, r, err)
		return
	}
	sp, err := s.db.Space(r.Context(), id)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if sp.State != amphi.StateEnded {
		s.error(w, r, amphi.Errorf(amphi.EConflict, "space %s is %s: its recording is deleted once it has ended", id, sp.State))
		return
	}
	n, err := s.deleteRecording(r.Context(), id)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"files_deleted": n})
}

// deleteRecording forgets a space's recording and clips, then removes
// their files (and the clips' waveforms), returning how many it removed.
func (s *Server) deleteRecording(ctx context.Context, id string) (int, error) {
	paths, err := s.db.DeleteRecording(ctx, id)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range paths {
		full := filepath.Join(s.cfg.DataDir, p)
		for _, f := range []string{full, full[:len(full)-len(filepath.Ext(full))] + ".png"} {
			if err := os.Remove(f); err == nil {
				n++
			} else if !errors.Is(err, os.ErrNotExist) {
				s.cfg.Logger.Warn("api: remove a deleted recording's file", "path", f, "err", err)
			}
		}
	}
	return n, nil
}

// maxExpiredPerRound bounds the recordings one retention round deletes:
// the rest wait for the next.
const maxExpiredPerRound = 100

// ExpireRecordings deletes the recordings and clips of spaces that ended
// more than retention ago, up to maxExpiredPerRound, and returns how many
// spaces it cleared.
func (s *Server) ExpireRecordings(ctx context.Context, retention time.Duration) (int, error) {
	ids, err := s.db.ExpiredRecordings(ctx, s.cfg.Now().Add(-retention), maxExpiredPerRound)
	if err != nil {
		return 0, err
	}
	var errs []error
	for _, id := range ids {
		if _, err := s.deleteRecording(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return len(ids) - len(errs), errors.Join(errs...)
}

// Storage returns the bytes recordings and clips take on disk, as the
// store counts them.
func (s *Server) Storage(ctx context.Context) (recordings, clips int64, err error) {
	return s.db.Storage(ctx)
}

// SweepClips removes what a crash left in the clips folder: files of cuts
// that never finished (*.part) and finished ones the store never got to
// know, which nothing would serve or delete. It runs once at start, before
// any cut.
func (s *Server) SweepClips(ctx context.Context) (removed int, err error) {
	dir := filepath.Join(s.cfg.DataDir, "clips")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		id, _, _ := strings.Cut(name, ".")
		if !strings.HasSuffix(name, ".part") {
			if _, err := s.db.Clip(ctx, id); amphi.ErrorCode(err) != amphi.ENotFound {
				if err != nil {
					errs = append(errs, err)
				}
				continue // a clip's file, or the store could not say
			}
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	return removed, errors.Join(errs...)
}
