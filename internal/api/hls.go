package api

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/aac"
	"github.com/amphi-audio/amphi/internal/edge"
	"github.com/amphi-audio/amphi/internal/hls"
)

// LL-HLS (package hls) for players that speak it: Safari and iOS
// natively, hls.js, ffmpeg, and any HTTP cache or CDN in front.
//
//	GET /spaces/{id}/hls/index.m3u8?ticket=            checks the ticket, lists the run's renditions
//	GET /spaces/{id}/hls/{run}/index.m3u8?ticket=      the Opus playlist: gated, blocking reload
//	GET /spaces/{id}/hls/{run}-aac/index.m3u8?ticket=  the AAC-LC playlist, the same way
//	GET /spaces/{id}/hls/{run}[-aac]/{media}           init, parts, segments: immutable, ungated
//
// The run (edge.HLS.Run) is a directory because a program resumed after a
// crash is numbered from its recording, maybe behind what listeners had
// heard: its parts would have the names of others a cache keeps for a
// year. The entry URL stays the same across runs, so it is the one handed
// out (hls_url): a multivariant playlist of the run's renditions, Opus
// first and AAC-LC for players without Opus (Apple's before iOS 17), each
// with the ticket, which is all that differs between listeners. A
// rendition's playlist names its media relative to itself, without the
// ticket, so every listener asks for the same URLs and a cache collapses
// them into one request each.
//
// A ticket's place, HLS-style: there is no connection to hold it, so
// each playlist request is a connection of its own (gate.Room Connect,
// then Leave when answered), and the room's Linger (5 s) keeps the place
// between requests. A low-latency player is nearly always inside a
// blocking reload (up to 6 s), and a plain one reloads every target
// duration (2 s), so both keep their place while they play and lose it
// within seconds of stopping, as a stream's listener does. As with
// live.opus the newest use of a ticket wins: a playlist request ends that
// ticket's Ogg stream. Media is not gated: its names are learned from the
// playlist, and caches must be able to share it; the gate's place and
// waiting room bound who is handed a playlist, not who can guess a URL.

// hlsEntry is the LL-HLS entry URL under a space's.
const hlsEntry = "/hls/index.m3u8"

// aacDir follows the run in the AAC rendition's directory: its media has
// names of its own, and a cache in front matches them as it does the
// Opus rendition's (deploy/nginx/amphi-hls.conf).
const aacDir = "-aac"

// Each rendition's least BANDWIDTH: the default program's rate and the AAC
// encoder's, each with its parts' boxes, about 5 kbit/s. The peak a
// rendition measured (hls.Segmenter.Bandwidth) wins once it is higher:
// a program that began in silence has measured little.
const (
	opusBandwidth = 32000 + 6000
	aacBandwidth  = aac.DefaultBitrate + 6000
)

// handleHLSEntry checks the ticket and answers the multivariant playlist
// of the program's current run. Its renditions' URIs carry the ticket, for
// their playlists are gated, so it is the listener's own: no cache may
// keep it.
func (s *Server) handleHLSEntry(w http.ResponseWriter, r *http.Request) {
	a, now, id := s.gate, s.cfg.Now(), r.PathValue("id")
	addr := a.clientAddr(r)
	tok := r.URL.Query().Get("ticket")
	_, err := s.ticketOf(r, tok, id, addr, now)
	var st *edge.HLS
	if err == nil {
		st, err = s.hlsOf(r, id)
	}
	if err != nil {
		s.error(w, r, err)
		return
	}
	query := ""
	if tok != "" { // else the ticket is in a cookie, which goes along
		query = "?" + url.Values{"ticket": {tok}}.Encode()
	}
	run := url.PathEscape(st.Run)
	variants := []hls.Variant{{
		URI:       run + "/" + hls.PlaylistName + query,
		Bandwidth: max(st.Segmenter.Bandwidth(), opusBandwidth),
		Codecs:    "opus",
	}}
	if st.AAC != nil {
		variants = append(variants, hls.Variant{
			URI:       run + aacDir + "/" + hls.PlaylistName + query,
			Bandwidth: max(st.AAC.Bandwidth(), aacBandwidth),
			Codecs:    "mp4a.40.2",
		})
	}
	body := hls.AppendMultivariant(nil, variants)
	h := w.Header()
	h.Set("Content-Type", "application/vnd.apple.mpegurl")
	h.Set("Cache-Control", "no-store")
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

// hlsOf returns the space's LL-HLS on this edge, waiting for a program
// about to arrive, or explains why there is none. One that ended is kept
// a while (edge), for its players to read that it ended.
func (s *Server) hlsOf(r *http.Request, id string) (*edge.HLS, error) {
	if st := s.edge.HLS(id); st != nil && st.Ended() {
		return st, nil
	}
	if _, err := s.onEdgeRoom(r.Context(), id); err != nil {
		return nil, err
	}
	if s.edge.Ring(r.Context(), id) != nil {
		if st := s.edge.HLS(id); st != nil {
			return st, nil
		}
	}
	return nil, amphi.Errorf(amphi.EUnavailable, "space %s is live but its audio has not reached this server yet", id)
}

// handleHLS serves a run's playlist (to a ticket holding a place) and its
// media (to anyone). Nothing is made per request but what the answer
// needs: the space's stream is looked up, the handler is shared.
func (s *Server) handleHLS(w http.ResponseWriter, r *http.Request) {
	id, name := r.PathValue("id"), r.PathValue("name")
	seg := rendition(s.edge.HLS(id), r.PathValue("run"))
	if seg == nil { // an old run's names are not this one's
		s.error(w, r, amphi.Errorf(amphi.ENotFound, "no such LL-HLS stream of space %s: start again from its hls_url", id))
		return
	}
	// Players on other origins (hls.js) read both with fetch.
	w.Header().Set("Access-Control-Allow-Origin", "*")
	if name == hls.PlaylistName {
		leave, err := s.admitPlaylist(r, id)
		if err != nil {
			s.error(w, r, err)
			return
		}
		defer leave()
	}
	hlsMedia.Serve(w, r, seg, name)
}

// rendition returns the segmenter of st whose directory is dir, nil if
// none is.
func rendition(st *edge.HLS, dir string) *hls.Segmenter {
	switch {
	case st == nil:
		return nil
	case dir == st.Run:
		return st.Segmenter
	case dir == st.Run+aacDir:
		return st.AAC // nil without the rendition
	}
	return nil
}

// hlsMedia answers for every space's LL-HLS streams, with the RFC's
// limits on blocking requests.
var hlsMedia hls.Handler

// admitPlaylist checks a playlist request's ticket and takes its place
// for the request; leave gives the place back to the room's Linger.
func (s *Server) admitPlaylist(r *http.Request, id string) (leave func(), err error) {
	a, now := s.gate, s.cfg.Now()
	addr := a.clientAddr(r)
	t, err := s.ticketOf(r, r.URL.Query().Get("ticket"), id, addr, now)
	if err != nil {
		return nil, err
	}
	if st := s.edge.HLS(id); st != nil && st.Ended() {
		// The room closed with the space; its last playlist, which says
		// it ended, is for every ticket holder still playing.
		return func() {}, nil
	}
	room, err := s.onEdgeRoom(r.Context(), id)
	if err != nil {
		return nil, err
	}
	if _, ok := s.connect(room, t, now); !ok {
		return nil, a.lapsed(id, addr)
	}
	return func() { room.Leave(t.Place, s.cfg.Now()) }, nil
}
