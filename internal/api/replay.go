package api

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/clip"
	"github.com/amphi-audio/amphi/internal/replay"
)

// replayCache is how long a cache may keep a replay's playlist and media:
// they never change, but a host may delete the recording.
var replayCache = []string{"public, max-age=86400"}

// handleReplayHLS serves an ended space's recording as HLS VOD (package
// replay): GET /spaces/{id}/replay/index.m3u8, init.mp4 and {n}.m4s. Each
// is made from the recording on request; a cache in front keeps them.
func (s *Server) handleReplayHLS(w http.ResponseWriter, r *http.Request) {
	if err := s.serveReplayHLS(w, r); err != nil {
		s.error(w, r, err)
	}
}

func (s *Server) serveReplayHLS(w http.ResponseWriter, r *http.Request) error {
	id, name := r.PathValue("id"), r.PathValue("name")
	_, f, err := s.openRecording(r.Context(), id)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	rec, err := clip.Open(f, st.Size())
	if err != nil {
		return amphi.Errorf(amphi.EUnavailable, "space %s's recording cannot be read: %v", id, err)
	}
	var body []byte
	typ := "audio/mp4"
	switch n, isSegment := strings.CutSuffix(name, ".m4s"); {
	case name == "index.m3u8":
		body, typ = replay.Playlist(rec), "application/vnd.apple.mpegurl"
	case name == "init.mp4":
		body, err = replay.Init(rec)
	case isSegment:
		i, perr := strconv.Atoi(n)
		if perr == nil {
			body, err = replay.Segment(rec, i)
		}
		if perr != nil || errors.Is(err, replay.ErrSegment) {
			return amphi.Errorf(amphi.ENotFound, "space %s's replay has segments 0 to %d", id, replay.Segments(rec)-1)
		}
	default:
		return amphi.Errorf(amphi.ENotFound, "a replay has index.m3u8, init.mp4 and numbered .m4s segments")
	}
	if err != nil {
		return err
	}
	h := w.Header()
	h["Cache-Control"] = replayCache
	h.Set("Content-Type", typ)
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
	return nil
}
