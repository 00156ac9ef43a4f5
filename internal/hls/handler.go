package hls

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/amphi-audio/amphi/internal/fmp4"
)

// Handler serves the LL-HLS resources of every space under Prefix:
//
//	{Prefix}{space}/index.m3u8         the media playlist; blocking reload with _HLS_msn and _HLS_part
//	{Prefix}{space}/init-{crc}.mp4     the init segment
//	{Prefix}{space}/{msn}.{part}.m4s   a part (200 ms)
//	{Prefix}{space}/{msn}.m4s          a whole segment (2 s, its parts back to back)
//
// The playlist names the others relative to itself, so the Handler may be
// mounted anywhere. Only the playlist changes; the rest is immutable.
type Handler struct {
	// Prefix is the path before the space's name, with its slashes, such
	// as "/hls/". Empty means "/".
	Prefix string
	// Lookup returns the space's Segmenter, or nil if it has none (then
	// every resource of the space is 404).
	Lookup func(space string) *Segmenter
	// Allow, if set, is asked before a playlist is served; it writes the
	// refusal itself and returns false to refuse. Media is never gated:
	// its names are only learned from a playlist, and sharing it through
	// caches is the point (the ticket check belongs to the playlist).
	Allow func(w http.ResponseWriter, r *http.Request) bool
	// MaxBlock bounds how long a blocking playlist reload, or a request for
	// a part not made yet, is held. Zero means three target durations
	// (6 s), the most RFC 8216bis §6.2.5.2 has a server block.
	MaxBlock time.Duration
}

// advancePartLimit is how far ahead of the newest part a blocking request
// may ask, in parts: three seconds' worth for parts under a second (RFC
// 8216bis §6.2.5.2).
const advancePartLimit = 3 * fmp4.Timescale / partSamples

// Shared header values: set without allocating per request.
var (
	playlistType = []string{"application/vnd.apple.mpegurl"}
	mediaType    = []string{"audio/mp4"}
	immutable    = []string{"public, max-age=31536000, immutable"}
	// liveCache is for a playlist asked without a directive: the live
	// edge, which changes every part. HTTP cannot say 0.2 s; one second is
	// the shortest lifetime that still lets a cache in front of the edges
	// collapse every poll of a space into about one a second (as the
	// state polls are). A plain player reloads once a target duration
	// anyway, and a low-latency one asks this only to start, then catches
	// up with blocking reloads.
	liveCache = []string{"public, max-age=1"}
	// blockedCache is for a blocking reload's answer: whenever it is made,
	// it holds the part its URL asked for, which is all the asker wants,
	// so every listener asking the same _HLS_msn/_HLS_part can share it
	// and a CDN forwards one request a part per space to the origin,
	// however large the audience. Three target durations is as long as
	// the part stays listed.
	blockedCache = []string{"public, max-age=6"}
	noStore      = []string{"no-store"}
	varyEncoding = []string{"Accept-Encoding"}
	gzipEncoding = []string{"gzip"}
)

// ServeHTTP serves a playlist, an init segment, a part or a segment.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	prefix := h.Prefix
	if prefix == "" {
		prefix = "/"
	}
	rest, ok := strings.CutPrefix(r.URL.Path, prefix)
	space, name, _ := strings.Cut(rest, "/")
	if !ok || space == "" || strings.Contains(name, "/") {
		refuse(w, http.StatusNotFound)
		return
	}
	var seg *Segmenter
	if h.Lookup != nil {
		seg = h.Lookup(space)
	}
	if seg == nil {
		refuse(w, http.StatusNotFound)
		return
	}
	if name == PlaylistName && h.Allow != nil && !h.Allow(w, r) {
		return
	}
	h.Serve(w, r, seg, name)
}

// Serve answers a request for the resource of seg called name: its
// playlist (PlaylistName), its init segment, a part or a segment. It does
// not ask Allow: a server that routes the requests itself, knowing the
// space, gates the playlist before it calls Serve.
func (h *Handler) Serve(w http.ResponseWriter, r *http.Request, seg *Segmenter, name string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		refuse(w, http.StatusMethodNotAllowed)
		return
	}
	switch {
	case name == PlaylistName:
		h.servePlaylist(w, r, seg)
	case name == seg.initName:
		writeMedia(w, seg.init)
	default:
		msn, part, ok := parseMediaName(name)
		if !ok {
			refuse(w, http.StatusNotFound)
			return
		}
		h.serveMedia(w, r, seg, msn, part)
	}
}

func (h *Handler) maxBlock() time.Duration {
	if h.MaxBlock > 0 {
		return h.MaxBlock
	}
	return 3 * targetDuration * time.Second
}

// servePlaylist answers at once without a directive; with _HLS_msn (and
// _HLS_part) it holds the request until the playlist has that segment (or
// part), as RFC 8216bis §6.2.5.2 asks.
func (h *Handler) servePlaylist(w http.ResponseWriter, r *http.Request, seg *Segmenter) {
	q := r.URL.Query()
	msnArg, partArg := q.Get("_HLS_msn"), q.Get("_HLS_part")
	if msnArg == "" {
		if partArg != "" {
			refuse(w, http.StatusBadRequest) // a part needs its segment
			return
		}
		// Before its first part a program has nothing to list: hold the
		// request for it rather than send a playlist without segments.
		snap, status := seg.wait(r, h.maxBlock(), func(s *snapshot) (bool, bool) { return len(s.segments) > 0 || s.ended, false })
		if status != http.StatusOK {
			refuse(w, status)
			return
		}
		writePlaylist(w, r, snap, liveCache)
		return
	}
	msn, err := strconv.ParseUint(msnArg, 10, 64)
	part := -1
	if err == nil && partArg != "" {
		part, err = strconv.Atoi(partArg)
	}
	if err != nil || part < -1 {
		refuse(w, http.StatusBadRequest)
		return
	}
	snap, status := seg.wait(r, h.maxBlock(), func(s *snapshot) (bool, bool) { return s.reach(msn, part) })
	if status != http.StatusOK {
		refuse(w, status)
		return
	}
	writePlaylist(w, r, snap, blockedCache)
}

// serveMedia serves a part or a segment; one not made yet but due within a
// segment (the preload hint's part, typically) is held until it exists, as
// RFC 8216bis §6.2.6 has hinted parts sent only whole.
func (h *Handler) serveMedia(w http.ResponseWriter, r *http.Request, seg *Segmenter, msn uint64, part int) {
	var data []byte
	_, status := seg.wait(r, h.maxBlock(), func(s *snapshot) (ready, never bool) {
		var soon bool
		data, soon = s.media(msn, part)
		return data != nil, data == nil && !soon
	})
	switch status {
	case http.StatusOK:
		writeMedia(w, data)
	case http.StatusBadRequest:
		refuse(w, http.StatusNotFound)
	default:
		refuse(w, status)
	}
}

// wait returns the first snapshot for which ready says yes, and 200; or
// 400 once it says the request can never be met in time, 503 after limit,
// and 0 when the client went away.
func (seg *Segmenter) wait(r *http.Request, limit time.Duration, ready func(*snapshot) (ok, never bool)) (*snapshot, int) {
	snap := seg.state.Load()
	ok, never := ready(snap)
	if ok || never {
		return snap, statusOf(ok)
	}
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		select {
		case <-snap.changed:
		case <-timer.C:
			return nil, http.StatusServiceUnavailable
		case <-r.Context().Done():
			return nil, 0
		}
		snap = seg.state.Load()
		if ok, never := ready(snap); ok || never {
			return snap, statusOf(ok)
		}
	}
}

func statusOf(ok bool) int {
	if ok {
		return http.StatusOK
	}
	return http.StatusBadRequest
}

// reach says whether the playlist of s has segment msn complete (part -1)
// or its part, and whether the request is too far ahead to wait for
// (RFC 8216bis §6.2.5.2: more than two segments past the last, or more than
// the Advance Part Limit past its newest part). An ended playlist
// satisfies every request.
func (s *snapshot) reach(msn uint64, part int) (ready, tooFar bool) {
	if s.ended {
		return true, false
	}
	if len(s.segments) == 0 {
		return false, false // nothing to measure against yet: wait
	}
	first, last := s.segments[0].msn, s.segments[len(s.segments)-1]
	switch {
	case msn < first:
		return true, false // long gone: the whole playlist is the answer
	case msn > last.msn+2:
		return false, true
	case msn <= last.msn:
		g := s.segments[msn-first]
		switch {
		case part < 0:
			return g.data != nil, false
		case part < len(g.parts):
			return true, false
		case g.data != nil:
			// Past a complete segment's last part is the next one's
			// first (§6.2.5.2), which exists if the segment is not last.
			return g != last, false
		}
	case part < 0:
		return false, false
	}
	ahead := int(msn-last.msn)*partsPerSegment + part - (len(last.parts) - 1)
	return false, ahead > advancePartLimit
}

// media returns the bytes of part (or, for part -1, segment) msn if they
// exist, and whether they are due within a segment, worth waiting for.
func (s *snapshot) media(msn uint64, part int) (data []byte, soon bool) {
	if len(s.segments) == 0 {
		return nil, false // no part named yet, so none hinted
	}
	first, last := s.segments[0].msn, s.segments[len(s.segments)-1]
	switch {
	case msn < first || msn > last.msn+1:
		return nil, false
	case msn == last.msn+1:
		return nil, !s.ended && part < partsPerSegment
	}
	g := s.segments[msn-first]
	if part < 0 {
		return g.data, g.data == nil && !s.ended
	}
	if part < len(g.parts) {
		return g.parts[part].data, false
	}
	return nil, g.data == nil && !s.ended && part < partsPerSegment
}

// parseMediaName reads "msn.m4s" (part -1) or "msn.part.m4s".
func parseMediaName(name string) (msn uint64, part int, ok bool) {
	base, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok {
		return 0, 0, false
	}
	m, p, hasPart := strings.Cut(base, ".")
	msn, err := strconv.ParseUint(m, 10, 64)
	// One name per resource: "01.m4s" would be a second cache entry.
	if err != nil || strconv.FormatUint(msn, 10) != m {
		return 0, 0, false
	}
	if !hasPart {
		return msn, -1, true
	}
	if len(p) != 1 || p[0] < '0' || p[0] > '9' { // parts number 0 to 9
		return 0, 0, false
	}
	return msn, int(p[0] - '0'), true
}

func writePlaylist(w http.ResponseWriter, r *http.Request, snap *snapshot, cache []string) {
	hdr := w.Header()
	hdr["Content-Type"] = playlistType
	hdr["Cache-Control"] = cache
	hdr["Vary"] = varyEncoding
	body := snap.playlist
	if acceptsGzip(r.Header["Accept-Encoding"]) {
		hdr["Content-Encoding"] = gzipEncoding
		body = snap.gzipped
	}
	hdr["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.Write(body)
}

// acceptsGzip reports whether Accept-Encoding values list gzip without
// refusing it (q=0).
func acceptsGzip(values []string) bool {
	for _, v := range values {
		for item := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(item), ";")
			if strings.EqualFold(strings.TrimSpace(coding), "gzip") {
				q, _ := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q=")
				return q == "" || strings.Trim(q, "0.") != ""
			}
		}
	}
	return false
}

func writeMedia(w http.ResponseWriter, data []byte) {
	hdr := w.Header()
	hdr["Content-Type"] = mediaType
	hdr["Cache-Control"] = immutable
	hdr["Content-Length"] = []string{strconv.Itoa(len(data))}
	w.Write(data)
}

// refuse answers an error that no cache may keep: the same URL may succeed
// a moment later. Status 0 means the client is gone: nothing to write.
func refuse(w http.ResponseWriter, status int) {
	if status == 0 {
		return
	}
	w.Header()["Cache-Control"] = noStore
	http.Error(w, http.StatusText(status), status)
}
