package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/clip"
)

// Clips: a host cuts a range of a space's recording, live or ended, into a
// file of its own (package clip), and shares its page, which link previews
// read: the page's HTML carries its title, audio and waveform as Open Graph
// and Twitter card tags.
const (
	// maxClip is the longest clip.
	maxClip = 10 * time.Minute
	// maxClipTitle bounds a clip's title, in characters.
	maxClipTitle = 200
	// clipCuts bounds the cuts under way at once: each reads and writes
	// up to a few MB.
	clipCuts = 2
	// waveformWidth and waveformHeight are the picture's size: what
	// link previews show best (1.91:1 is too wide for a waveform).
	waveformWidth, waveformHeight = 1200, 630
)

type clipRequest struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Title string `json:"title"`
}

// clipView is a clip as the API shows it.
type clipView struct {
	ID      string `json:"id"`
	SpaceID string `json:"space_id"`
	Title   string `json:"title"`
	From    string `json:"from"`
	To      string `json:"to"`
	Bytes   int64  `json:"bytes"`
	URL     string `json:"url"`
	PageURL string `json:"page_url"`
	Image   string `json:"image_url"`
}

func (s *Server) clipView(r *http.Request, c *amphi.Clip) *clipView {
	base := s.baseURL(r)
	return &clipView{
		ID: c.ID, SpaceID: c.SpaceID, Title: c.Title, From: c.From.String(), To: c.To.String(), Bytes: c.Bytes,
		URL: base + "/clips/" + c.ID + ".opus", PageURL: base + "/c/" + c.ID, Image: base + "/clips/" + c.ID + "/waveform.png",
	}
}

// handleClipCreate cuts a clip: POST /spaces/{id}/clips with a host's
// or a co-host's credential and {"from": "12s", "to": "16s",
// "title": "…"}.
func (s *Server) handleClipCreate(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := s.authorize(r, id, amphi.RoleHost, amphi.RoleCohost); err != nil {
		s.error(w, r, err)
		return
	}
	var req clipRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	from, to, title, err := req.check()
	if err != nil {
		s.error(w, r, err)
		return
	}
	select {
	case s.clipCuts <- struct{}{}:
		defer func() { <-s.clipCuts }()
	default:
		s.error(w, r, amphi.Errorf(amphi.EUnavailable, "other clips are being cut: try again in a second"))
		return
	}
	c, err := s.cutClip(r.Context(), id, from, to, title)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, s.clipView(r, c))
}

// check parses and checks a clip request.
func (req *clipRequest) check() (from, to time.Duration, title string, err error) {
	if from, err = time.ParseDuration(req.From); err != nil || from < 0 {
		return 0, 0, "", amphi.Errorf(amphi.EInvalid, `from must be a duration into the recording, such as "12s" or "1h2m3.5s"`)
	}
	if to, err = time.ParseDuration(req.To); err != nil || to <= from {
		return 0, 0, "", amphi.Errorf(amphi.EInvalid, `to must be a duration after from, such as "16s"`)
	}
	if to-from > maxClip {
		return 0, 0, "", amphi.Errorf(amphi.EInvalid, "a clip lasts at most %v; this one would last %v", maxClip, to-from)
	}
	title = strings.TrimSpace(req.Title)
	if !utf8.ValidString(title) || utf8.RuneCountInString(title) > maxClipTitle ||
		strings.ContainsFunc(title, unicode.IsControl) {
		return 0, 0, "", amphi.Errorf(amphi.EInvalid, "the title must be at most %d characters of text", maxClipTitle)
	}
	return from, to, title, nil
}

// cutClip cuts [from, to) of the space's recording into the data
// directory's clips/ and stores it. The file is written under a temporary
// name, synced and renamed before the clip is stored, so a crash during a
// cut leaves no clip that serves a partial file.
func (s *Server) cutClip(ctx context.Context, spaceID string, from, to time.Duration, title string) (*amphi.Clip, error) {
	sp, err := s.db.Space(ctx, spaceID)
	if err != nil {
		return nil, err
	}
	rec, err := s.db.Recording(ctx, spaceID)
	if err != nil {
		return nil, amphi.Errorf(amphi.ENotFound, "space %s has no recording", spaceID)
	}
	src, err := os.Open(filepath.Join(s.cfg.DataDir, rec.Path))
	if err != nil {
		return nil, amphi.Errorf(amphi.ENotFound, "space %s has no recording", spaceID)
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return nil, err
	}
	// A live recording is cut as far as its last whole page.
	recording, err := clip.Open(src, st.Size())
	if err != nil {
		return nil, amphi.Errorf(amphi.EConflict, "space %s's recording cannot be cut yet: %v", spaceID, err)
	}
	if to > recording.Duration() {
		return nil, amphi.Errorf(amphi.EInvalid, "the recording lasts %v so far: a clip must end within it", recording.Duration().Round(time.Millisecond))
	}
	c := &amphi.Clip{ID: newID(), SpaceID: spaceID, Title: title, From: from, To: to, CreatedAt: s.cfg.Now()}
	if c.Title == "" {
		c.Title = fmt.Sprintf("%s, %v to %v", sp.Title, from, to)
	}
	c.Path = filepath.Join("clips", c.ID+".opus")
	dir := filepath.Join(s.cfg.DataDir, "clips")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	final := filepath.Join(s.cfg.DataDir, c.Path)
	part := final + ".part"
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	defer os.Remove(part) // gone after the rename; a failed cut's leftover
	cut, err := recording.Cut(f, from, to, "TITLE="+c.Title, "AMPHI_SPACE="+spaceID)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, clip.ErrRange) {
		return nil, amphi.Errorf(amphi.EInvalid, "the range is not within the recording")
	}
	if err != nil {
		return nil, fmt.Errorf("cut clip of space %s: %w", spaceID, err)
	}
	if err := os.Rename(part, final); err != nil {
		return nil, err
	}
	syncDir(dir)
	c.Bytes = cut.Bytes
	if err := s.db.PutClip(ctx, c); err != nil {
		os.Remove(final)
		return nil, err
	}
	return c, nil
}

// syncDir makes a rename in dir durable; a failure only risks losing a
// clip nobody was told of yet.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// handleClipFile serves a clip's audio: GET /clips/{file}, the file being
// "{id}.opus". Clips never change: they are cached for long.
func (s *Server) handleClipFile(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutSuffix(r.PathValue("file"), ".opus")
	if !ok {
		s.error(w, r, amphi.Errorf(amphi.ENotFound, "no such clip file: clips are at /clips/{id}.opus"))
		return
	}
	c, f, err := s.openClip(r.Context(), id)
	if err != nil {
		s.error(w, r, err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "audio/ogg")
	w.Header().Set("Cache-Control", "public, max-age=86400")
	w.Header().Set("Content-Disposition", `inline; filename="`+c.ID+`.opus"`)
	pw, done := newProgressWriter(w)
	defer done()
	http.ServeContent(pw, r, c.ID+".opus", c.CreatedAt, f)
}

// openClip returns a clip and its open file.
func (s *Server) openClip(ctx context.Context, id string) (*amphi.Clip, *os.File, error) {
	c, err := s.db.Clip(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	f, err := os.Open(filepath.Join(s.cfg.DataDir, c.Path))
	if err != nil {
		return nil, nil, amphi.Errorf(amphi.EGone, "clip %s's file is gone", id)
	}
	return c, f, nil
}

// handleClipWaveform serves a clip's waveform picture, drawn on the first
// request and kept beside the clip.
func (s *Server) handleClipWaveform(w http.ResponseWriter, r *http.Request) {
	c, f, err := s.openClip(r.Context(), r.PathValue("clip"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	defer f.Close()
	path := filepath.Join(s.cfg.DataDir, strings.TrimSuffix(c.Path, ".opus")+".png")
	img, err := os.ReadFile(path)
	if err != nil {
		if img, err = clip.Waveform(f, waveformWidth, waveformHeight); err != nil {
			s.error(w, r, fmt.Errorf("waveform of clip %s: %w", c.ID, err))
			return
		}
		// Kept under a temporary name first: a crash leaves no torn
		// picture to serve; losing the race to another request is fine.
		if os.WriteFile(path+".part", img, 0o600) == nil {
			os.Rename(path+".part", path)
		}
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "public, max-age=86400")
	w.Write(img)
}

// clipPage is the share page of a clip: a player, the waveform and a
// download, with the tags link previews read, rendered on the server.
var clipPage = template.Must(template.New("clip").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · amphi</title>
<meta name="description" content="{{.Description}}">
<meta property="og:type" content="website">
<meta property="og:site_name" content="amphi">
<meta property="og:title" content="{{.Title}}">
<meta property="og:description" content="{{.Description}}">
<meta property="og:url" content="{{.PageURL}}">
<meta property="og:audio" content="{{.URL}}">
<meta property="og:audio:type" content="audio/ogg">
<meta property="og:image" content="{{.Image}}">
<meta property="og:image:width" content="{{.Width}}">
<meta property="og:image:height" content="{{.Height}}">
<meta name="twitter:card" content="summary_large_image">
<meta name="twitter:title" content="{{.Title}}">
<meta name="twitter:description" content="{{.Description}}">
<meta name="twitter:image" content="{{.Image}}">
<link rel="stylesheet" href="/static/app.css">
</head>
<body>
<main>
<h1>{{.Title}}</h1>
<p>{{.Description}} <a href="{{.SpaceURL}}">The space</a></p>
<img src="{{.Image}}" alt="The clip's waveform" width="600" height="315" style="max-width:100%;height:auto">
<p><audio controls preload="metadata" src="{{.URL}}"></audio></p>
<p><a href="{{.URL}}" download>Download the clip</a> (Ogg Opus)</p>
</main>
</body>
</html>
`))

// handleClipPage renders GET /c/{clip}.
func (s *Server) handleClipPage(w http.ResponseWriter, r *http.Request) {
	c, err := s.db.Clip(r.Context(), r.PathValue("clip"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	space := c.SpaceID
	if sp, err := s.db.Space(r.Context(), c.SpaceID); err == nil {
		space = sp.Title
	}
	v := s.clipView(r, c)
	var page bytes.Buffer
	err = clipPage.Execute(&page, struct {
		*clipView
		Description, SpaceURL string
		Width, Height         int
	}{
		clipView:    v,
		Description: fmt.Sprintf("%v from %q on amphi.", (c.To - c.From).Round(time.Second/10), space),
		SpaceURL:    s.baseURL(r) + "/s/" + c.SpaceID,
		Width:       waveformWidth, Height: waveformHeight,
	})
	if err != nil {
		s.error(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Write(page.Bytes())
}
