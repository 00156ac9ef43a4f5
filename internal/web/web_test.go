package web_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/amphi-audio/amphi/internal/web"
)

// mount serves h on the patterns it names, beside a catch-all that stands
// for the JSON API, as cmd/amphi mounts it.
func mount(h http.Handler) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "api", http.StatusTeapot)
	}))
	for _, p := range web.Patterns() {
		mux.Handle(p, h)
	}
	return mux
}

func TestPagesAndAssetsHaveTheirTypesAndCacheHeaders(t *testing.T) {
	mux := mount(web.New(web.DefaultConfig()))
	for _, tc := range []struct {
		path, ctype, cache, body string
		status                   int
	}{
		{"/", "text/html; charset=utf-8", "no-cache", "Live audio rooms", 200},
		{"/s/abc123", "text/html; charset=utf-8", "no-cache", `id="listen"`, 200},
		{"/s/abc123/speak", "text/html; charset=utf-8", "no-cache", `id="join"`, 200},
		{"/s/abc123/host", "text/html; charset=utf-8", "no-cache", `id="invite"`, 200},
		{"/s/abc123/replay", "text/html; charset=utf-8", "no-cache", `data-rate="2"`, 200},
		{"/signin", "text/html; charset=utf-8", "no-cache", `autocomplete="current-password"`, 200},
		{"/setup", "text/html; charset=utf-8", "no-cache", `autocomplete="new-password"`, 200},
		{"/host", "text/html; charset=utf-8", "no-cache", `type="datetime-local"`, 200},
		{"/static/console.js", "text/javascript; charset=utf-8", "public, max-age=300", "/tokens", 200},
		{"/static/account.js", "text/javascript; charset=utf-8", "public, max-age=300", "amphi_csrf", 200},
		{"/static/speak.js", "text/javascript; charset=utf-8", "public, max-age=300", "/whip", 200},
		{"/static/app.css", "text/css; charset=utf-8", "public, max-age=300", "focus-visible", 200},
		{"/static/home.js", "text/javascript; charset=utf-8", "public, max-age=300", "/spaces?state=live,scheduled", 200},
		{"/static/space.js", "text/javascript; charset=utf-8", "public, max-age=300", "burst=10s", 200},
		{"/static/pow-worker.js", "text/javascript; charset=utf-8", "public, max-age=300", "crypto.subtle", 200},
		{"/static/stage.js", "text/javascript; charset=utf-8", "public, max-age=300", "/state", 200},
		{"/static/whip.js", "text/javascript; charset=utf-8", "public, max-age=300", "application/sdp", 200},
		{"/static/room.css", "text/css; charset=utf-8", "public, max-age=300", "speaking", 200},
		{"/static/replay.css", "text/css; charset=utf-8", "public, max-age=300", ".lane", 200},
		{"/static/console.css", "text/css; charset=utf-8", "public, max-age=300", "", 200},
		{"/static/nope.js", "", "", "", 404},
		{"/static/index.html", "", "", "", 404}, // pages only at their own paths
		{"/s/", "", "", "api", 418},             // not ours: the API's 404
		{"/spaces", "", "", "api", 418},
	} {
		t.Run(tc.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
			res := rec.Result()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.status)
			}
			if tc.status != 200 {
				if !strings.Contains(string(body), tc.body) {
					t.Errorf("body %q, want it to contain %q", body, tc.body)
				}
				return
			}
			if got := res.Header.Get("Content-Type"); got != tc.ctype {
				t.Errorf("Content-Type %q, want %q", got, tc.ctype)
			}
			if got := res.Header.Get("Cache-Control"); got != tc.cache {
				t.Errorf("Cache-Control %q, want %q", got, tc.cache)
			}
			if res.Header.Get("ETag") == "" {
				t.Error("no ETag")
			}
			if !strings.Contains(string(body), tc.body) {
				t.Errorf("body does not contain %q", tc.body)
			}
		})
	}
}

func TestAssetRevalidatesWithItsETag(t *testing.T) {
	mux := mount(web.New(web.DefaultConfig()))
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/static/app.css", nil))
	etag := rec.Header().Get("ETag")
	req := httptest.NewRequest("GET", "/static/app.css", nil)
	req.Header.Set("If-None-Match", etag)
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
		t.Fatalf("revalidation with %s: status %d, %d bytes; want 304 and none", etag, rec.Code, rec.Body.Len())
	}
}

func TestZeroAssetMaxAgeRevalidatesEveryUse(t *testing.T) {
	mux := mount(web.New(web.Config{}))
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/static/app.css", nil))
	if got := rec.Header().Get("Cache-Control"); got != "no-cache" {
		t.Fatalf("Cache-Control %q, want no-cache", got)
	}
}

// TestPagesLoadNothingFromElsewhere keeps the pages working on a LAN with
// no internet: every URL they name is the server's own.
func TestPagesLoadNothingFromElsewhere(t *testing.T) {
	mux := mount(web.New(web.DefaultConfig()))
	for _, p := range []string{"/", "/s/x", "/s/x/host", "/signin", "/setup", "/host",
		"/static/app.css", "/static/home.js", "/static/space.js", "/static/pow-worker.js",
		"/static/account.js", "/static/signin.js", "/static/setup.js", "/static/host.js", "/static/console.js",
		"/static/stage.js", "/static/whip.js", "/static/room.css", "/static/console.css",
		"/s/x/replay", "/static/replay.js", "/static/replay.css"} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if b := rec.Body.String(); strings.Contains(b, "http://") || strings.Contains(b, "https://") || strings.Contains(b, "//cdn") {
			t.Errorf("%s names an absolute URL", p)
		}
	}
}

func TestASpacePageCarriesItsTitleForLinkPreviews(t *testing.T) {
	cfg := web.DefaultConfig()
	cfg.Space = func(_ context.Context, id string) (web.SpaceMeta, bool) {
		if id != "known" {
			return web.SpaceMeta{}, false
		}
		return web.SpaceMeta{Title: `Q&A <live>`, URL: "https://amphi.example.org/s/known"}, true
	}
	mux := mount(web.New(cfg))
	get := func(path string) (string, *http.Response) {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		b, _ := io.ReadAll(rec.Result().Body)
		return string(b), rec.Result()
	}
	page, resp := get("/s/known")
	for _, want := range []string{
		`<title>Q&amp;A &lt;live&gt; · amphi</title>`,
		`<meta property="og:title" content="Q&amp;A &lt;live&gt;">`,
		`<meta property="og:url" content="https://amphi.example.org/s/known">`,
		`<meta property="og:description" content="A live audio space on amphi.">`,
		`id="listen"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the known space's page lacks %s", want)
		}
	}
	if strings.Contains(page, "amphi: space") {
		t.Error("the known space's page kept the placeholder title")
	}
	other, otherResp := get("/s/unknown")
	if !strings.Contains(other, "<title>amphi: space</title>") || otherResp.Header.Get("ETag") == resp.Header.Get("ETag") {
		t.Error("an unknown space's page is not the plain page with its own ETag")
	}
}

func TestACrowdOpeningASpacesLinkCostsOneLookupAndAFloodFew(t *testing.T) {
	cfg := web.DefaultConfig()
	lookups := 0
	cfg.Space = func(_ context.Context, id string) (web.SpaceMeta, bool) {
		lookups++
		return web.SpaceMeta{Title: "Shared"}, id == "known"
	}
	mux := mount(web.New(cfg))
	get := func(path string) string {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		b, _ := io.ReadAll(rec.Result().Body)
		return string(b)
	}
	for range 50 {
		if !strings.Contains(get("/s/known"), `content="Shared"`) {
			t.Fatal("the known space's page lost its tags")
		}
	}
	if lookups != 1 {
		t.Errorf("50 opens of one link made %d lookups, want 1", lookups)
	}
	lookups = 0
	for i := range 500 {
		get(fmt.Sprintf("/s/made-up-%d", i))
	}
	if lookups > 200 { // 100 a second, the test may straddle a second
		t.Errorf("500 made-up ids made %d lookups, want at most 100 a second", lookups)
	}
}
