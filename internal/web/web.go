// Package web serves amphi's pages. For listeners: the home page listing
// live and upcoming spaces, and a space's page, which joins (solving proof
// of work in a Web Worker and waiting in line when asked), plays the live
// program, shows who is on stage and speaking, the listener count and the
// reactions (polling the cacheable GET /spaces/{id}/state), sends
// reactions, asks to speak, counts down to a scheduled start with a
// reminder and a calendar file, or replays the recording. For speakers: a
// page that puts the browser's microphone on the stage over WHIP and plays
// the other speakers back. For hosts: sign-in, setup of the first admin or
// of an invited account, the host page that creates spaces and lists the
// account's own, and a space's console, which starts and ends it, puts the
// host on stage, follows the stage over server-sent events, approves
// requests to speak, mutes and removes speakers, turns recording on and
// off, and mints speaker links.
//
// A console works with the space's host token, which the browser that
// created the space keeps in localStorage (the server keeps only its hash),
// or with the session of the account that created the space, or an admin's.
//
// The pages are plain HTML, CSS and JavaScript modules embedded in the
// binary: no build step and no third-party CDN, so they work on a LAN with
// no internet. They hold no data of their own; their scripts read the JSON
// API (docs/API.md) from the same origin, so this package depends on
// nothing else in amphi.
package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

//go:embed static
var static embed.FS

// Config configures the pages' handler.
type Config struct {
	// AssetMaxAge is how long a browser may use a stylesheet, script or
	// image without asking again; after that it revalidates with its ETag.
	// Zero means revalidate on every use. Pages always revalidate, so a new
	// binary's pages reach browsers at once.
	AssetMaxAge time.Duration
	// Space finds what a space's page says of it before its script runs:
	// its title and description go into the page's <title> and its Open
	// Graph and Twitter card tags, which link previews read without
	// running scripts. Nil, or a space it does not find, leaves the page
	// as it is.
	Space func(ctx context.Context, id string) (SpaceMeta, bool)
}

// SpaceMeta is what a space's page tells link previews.
type SpaceMeta struct {
	Title, Description string
	// URL is the page's absolute URL (og:url); empty means the one the
	// request was made to.
	URL string
}

// DefaultConfig returns the configuration `amphi serve` runs with.
func DefaultConfig() Config {
	return Config{AssetMaxAge: 5 * time.Minute}
}

// Handler serves the pages and their assets. Mount it on the patterns
// Patterns returns; it answers 404 for anything else.
type Handler struct {
	cfg   Config
	mux   *http.ServeMux
	files map[string]file
	pages spacePages
}

// file is an embedded file ready to serve: its bytes, type and ETag,
// computed once so a request only copies.
type file struct {
	body  []byte
	ctype string
	etag  string
}

// contentTypes is set here, not taken from mime.TypeByExtension, whose
// answers depend on the host's /etc/mime.types: a module script served
// with another type does not run.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".mjs":  "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
	".ico":  "image/x-icon",
}

// Patterns returns the ServeMux patterns the handler answers: the home
// page, a space's page, its speaker page and host console, the sign-in,
// setup and host pages, and the assets. They do not overlap the JSON API's.
func Patterns() []string {
	return []string{
		"GET /{$}", "GET /s/{id}", "GET /s/{id}/speak", "GET /s/{id}/host", "GET /s/{id}/replay",
		"GET /signin", "GET /setup", "GET /host", "GET /static/{file}",
	}
}

// New returns a Handler for the embedded pages.
func New(cfg Config) *Handler {
	h := &Handler{cfg: cfg, mux: http.NewServeMux(), files: map[string]file{}}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		ctype, ok := contentTypes[path.Ext(p)]
		if !ok {
			return fmt.Errorf("web: %s: no content type for its extension", p)
		}
		sum := sha256.Sum256(b)
		h.files[strings.TrimPrefix(p, "static/")] = file{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		// The files are compiled in: a failure here is a broken build,
		// which TestNew catches.
		panic(err)
	}
	h.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { h.page(w, r, "index.html") })
	h.mux.HandleFunc("GET /s/{id}", h.spacePage)
	// The speaker's token rides in the URL fragment, which never reaches
	// the server: the page is the same for every speaker.
	h.mux.HandleFunc("GET /s/{id}/speak", func(w http.ResponseWriter, r *http.Request) { h.page(w, r, "speak.html") })
	// The console's host token is in this browser's localStorage, and
	// the setup page's token in the fragment: neither reaches the server
	// with the page request.
	h.mux.HandleFunc("GET /s/{id}/host", func(w http.ResponseWriter, r *http.Request) { h.page(w, r, "console.html") })
	h.mux.HandleFunc("GET /s/{id}/replay", func(w http.ResponseWriter, r *http.Request) { h.page(w, r, "replay.html") })
	h.mux.HandleFunc("GET /signin", func(w http.ResponseWriter, r *http.Request) { h.page(w, r, "signin.html") })
	h.mux.HandleFunc("GET /setup", func(w http.ResponseWriter, r *http.Request) { h.page(w, r, "setup.html") })
	h.mux.HandleFunc("GET /host", func(w http.ResponseWriter, r *http.Request) { h.page(w, r, "host.html") })
	h.mux.HandleFunc("GET /static/{file}", h.asset)
	return h
}

// ServeHTTP routes a request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// page serves an HTML page. The space page is the same for every id: its
// script reads the id from the path and asks the API, which answers 404
// for an unknown one.
func (h *Handler) page(w http.ResponseWriter, r *http.Request, name string) {
	w.Header().Set("Cache-Control", "no-cache")
	h.serve(w, r, name)
}

// spaceTitle is the space page's placeholder title, which spacePage
// replaces with the space's title and its preview tags.
const spaceTitle = "<title>amphi: space</title>"

// spaceHead renders the space's title and preview tags.
var spaceHead = template.Must(template.New("head").Parse(`<title>{{.Title}} · amphi</title>
<meta name="description" content="{{.Description}}">
<meta property="og:type" content="website">
<meta property="og:site_name" content="amphi">
<meta property="og:title" content="{{.Title}}">
<meta property="og:description" content="{{.Description}}">
<meta property="og:url" content="{{.URL}}">
<meta name="twitter:card" content="summary">
<meta name="twitter:title" content="{{.Title}}">
<meta name="twitter:description" content="{{.Description}}">`))

// spacePage serves the space page with the space's title and preview
// tags in it, when Config.Space knows the space.
func (h *Handler) spacePage(w http.ResponseWriter, r *http.Request) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	self := scheme + "://" + r.Host + r.URL.Path
	now := time.Now()
	page, found, cached := h.pages.get(self, now)
	if !cached && h.cfg.Space != nil && h.pages.mayLookUp(now) {
		page, found = h.renderSpacePage(r.Context(), r.PathValue("id"), self)
		h.pages.put(self, page, found, now)
	}
	if !found {
		h.page(w, r, "space.html")
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	h.serveFile(w, r, "space.html", page)
}

// renderSpacePage makes the page of the space id, whose address is self,
// with its preview tags; found is false when Config.Space does not know
// the space.
func (h *Handler) renderSpacePage(ctx context.Context, id, self string) (page file, found bool) {
	meta, ok := h.cfg.Space(ctx, id)
	if !ok {
		return file{}, false
	}
	if meta.Description == "" {
		meta.Description = "A live audio space on amphi."
	}
	if meta.URL == "" {
		meta.URL = self
	}
	var head bytes.Buffer
	if err := spaceHead.Execute(&head, meta); err != nil {
		return file{}, false
	}
	page = h.files["space.html"]
	page.body = bytes.Replace(page.body, []byte(spaceTitle), head.Bytes(), 1)
	sum := sha256.Sum256(page.body)
	page.etag = `"` + hex.EncodeToString(sum[:8]) + `"`
	return page, true
}

// A link shared to a crowd is opened by all of it at once: each space's
// page is kept for pageLife, found or not, so the crowd costs one lookup
// (a store read at the origin) and one render a pageLife; a flood of
// made-up ids costs at most pageLookups lookups a second, past which the
// plain page (no preview) is served.
const (
	pageLife       = 10 * time.Second
	pageLookups    = 100
	maxCachedPages = 10000
)

type spacePages struct {
	mu     sync.Mutex
	pages  map[string]cachedPage // by the page's URL
	second int64                 // Unix second of the lookups counted
	looked int
}

type cachedPage struct {
	page  file
	found bool
	at    time.Time
}

func (c *spacePages) get(url string, now time.Time) (page file, found, cached bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.pages[url]
	if !ok || now.Sub(p.at) >= pageLife {
		return file{}, false, false
	}
	return p.page, p.found, true
}

func (c *spacePages) put(url string, page file, found bool, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pages == nil || len(c.pages) >= maxCachedPages {
		c.pages = make(map[string]cachedPage) // starting over costs only renders
	}
	c.pages[url] = cachedPage{page, found, now}
}

// mayLookUp counts a lookup at now, and says whether this second has room
// for it.
func (c *spacePages) mayLookUp(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if sec := now.Unix(); sec != c.second {
		c.second, c.looked = sec, 0
	}
	c.looked++
	return c.looked <= pageLookups
}

func (h *Handler) asset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if strings.HasSuffix(name, ".html") {
		http.NotFound(w, r)
		return
	}
	if h.cfg.AssetMaxAge > 0 {
		w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(h.cfg.AssetMaxAge/time.Second)))
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	h.serve(w, r, name)
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, name string) {
	f, ok := h.files[name]
	if !ok {
		w.Header().Del("Cache-Control")
		http.NotFound(w, r)
		return
	}
	h.serveFile(w, r, name, f)
}

func (h *Handler) serveFile(w http.ResponseWriter, r *http.Request, name string, f file) {
	hd := w.Header()
	hd.Set("Content-Type", f.ctype)
	hd.Set("ETag", f.etag)
	hd.Set("X-Content-Type-Options", "nosniff")
	// The pages load nothing from elsewhere; say so, so an injected
	// script or a third-party resource cannot load either.
	if strings.HasSuffix(name, ".html") {
		hd.Set("Content-Security-Policy", "default-src 'self'; media-src 'self' blob:; worker-src 'self'; img-src 'self' data:; frame-ancestors 'self'")
		hd.Set("Referrer-Policy", "same-origin")
	}
	// ServeContent answers If-None-Match with 304 and HEAD without a body.
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.body))
}
