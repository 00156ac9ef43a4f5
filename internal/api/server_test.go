package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/live"
	"github.com/amphi-audio/amphi/internal/ops"
	"github.com/amphi-audio/amphi/internal/program"
	"github.com/amphi-audio/amphi/internal/store"
)

// discard is a live.Publisher that drops every chunk: these tests have no
// bus and never stream, so the server has no edge either.
type discard struct{}

func (discard) PublishChunk(string, *program.Chunk) error { return nil }

// testServer is the API over a real store and a real live manager in a
// temporary data directory, with a clock the test moves.
type testServer struct {
	*Server
	t     *testing.T
	db    *store.DB
	clock atomic.Int64 // Unix ns
}

// newTestServer returns a server with the defaults but for creation
// limits (tests create many spaces from one address) and idle ends;
// configure changes the rest.
func newTestServer(t *testing.T, configure func(*Config)) *testServer {
	t.Helper()
	ctx := context.Background()
	data := t.TempDir()
	if err := os.MkdirAll(filepath.Join(data, "recordings"), 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, filepath.Join(data, "amphi.db"))
	if err != nil {
		t.Fatal(err)
	}
	lcfg := live.DefaultConfig()
	lcfg.IdleEnd = 0
	lm := live.NewManager(discard{}, lcfg)
	ts := &testServer{t: t, db: db}
	ts.clock.Store(time.Now().Truncate(time.Second).UnixNano())
	cfg := DefaultConfig()
	cfg.DataDir, cfg.Logger, cfg.Now = data, slog.New(slog.DiscardHandler), ts.now
	cfg.CreateLimit = CreateLimitConfig{}
	if configure != nil {
		configure(&cfg)
	}
	if ts.Server, err = New(cfg, db, lm, nil, ops.NewTopPrefixes(0)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ts.EndAll(ctx); err != nil {
			t.Error(err)
		}
		lm.Close()
		ts.Wait()
		db.Close()
	})
	return ts
}

func (ts *testServer) now() time.Time { return time.Unix(0, ts.clock.Load()) }

func (ts *testServer) advance(d time.Duration) { ts.clock.Add(int64(d)) }

// call is one request: a bearer token, or a session cookie with its CSRF
// header, a body of its Content-Type, and an ETag the caller has.
type call struct {
	method, path string
	token        string
	cookie, csrf string
	ctype, body  string
	ifNoneMatch  string
}

// do serves the call and returns its response.
func (ts *testServer) do(c call) *httptest.ResponseRecorder {
	ts.t.Helper()
	r := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
	if c.ctype != "" {
		r.Header.Set("Content-Type", c.ctype)
	}
	if c.token != "" {
		r.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.cookie != "" {
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: c.cookie})
	}
	if c.csrf != "" {
		r.Header.Set(csrfHeader, c.csrf)
	}
	if c.ifNoneMatch != "" {
		r.Header.Set("If-None-Match", c.ifNoneMatch)
	}
	w := httptest.NewRecorder()
	ts.ServeHTTP(w, r)
	return w
}

// errorCode returns the code of an error answer, "" for any other.
func errorCode(w *httptest.ResponseRecorder) string {
	var body errorBody
	json.Unmarshal(w.Body.Bytes(), &body)
	return body.Error.Code
}

// decode reads a JSON answer of the status into v.
func (ts *testServer) decode(w *httptest.ResponseRecorder, status int, v any) {
	ts.t.Helper()
	if w.Code != status {
		ts.t.Fatalf("status %d, want %d: %s", w.Code, status, w.Body)
	}
	if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
		ts.t.Fatalf("%s: %v", w.Body, err)
	}
}

// created is what the tests read of a new space.
type created struct {
	ID        string      `json:"id"`
	State     amphi.State `json:"state"`
	HostToken string      `json:"host_token"`
}

// create makes a space through the API: on air at once without a start
// time, else scheduled.
func (ts *testServer) create(title string, at *time.Time) created {
	ts.t.Helper()
	body, _ := json.Marshal(createRequest{Title: title, ScheduledAt: at})
	var sp created
	ts.decode(ts.do(call{method: "POST", path: "/spaces", ctype: "application/json", body: string(body)}), http.StatusCreated, &sp)
	return sp
}

// scheduled makes a space starting in an hour.
func (ts *testServer) scheduled() created {
	ts.t.Helper()
	at := ts.now().Add(time.Hour)
	return ts.create("Later", &at)
}

// speaker mints a speaker token lasting ttl (expired if negative).
func (ts *testServer) speaker(spaceID string, ttl time.Duration) string {
	ts.t.Helper()
	m, err := ts.mintSpeaker(context.Background(), spaceID, amphi.RoleSpeaker, "Ann", ttl)
	if err != nil {
		ts.t.Fatal(err)
	}
	return m.Token
}

func TestEveryCodeHasOneStatus(t *testing.T) {
	for _, tc := range []struct {
		code       string
		status     int
		retryAfter string
	}{
		{amphi.EInvalid, 400, ""},
		{amphi.EUnauthorized, 401, ""},
		{amphi.EForbidden, 403, ""},
		{amphi.ENotFound, 404, ""},
		{amphi.EConflict, 409, ""},
		{amphi.EFull, 503, "5"},
		{amphi.ETooLarge, 413, ""},
		{amphi.EUnsupported, 415, ""},
		{amphi.EInternal, 500, ""},
		{amphi.EUnavailable, 503, "5"},
		{amphi.EGone, 410, ""},
		{amphi.ENotAcceptable, 406, ""},
		{amphi.ERateLimited, 429, "5"},
		{"no_such_code", 500, ""},
	} {
		t.Run(tc.code, func(t *testing.T) {
			if got := StatusCode(tc.code); got != tc.status {
				t.Errorf("StatusCode(%q) = %d, want %d", tc.code, got, tc.status)
			}
			if tc.code == "no_such_code" {
				return
			}
			s := &Server{cfg: Config{Logger: slog.New(slog.DiscardHandler)}}
			w := httptest.NewRecorder()
			s.error(w, httptest.NewRequest("GET", "/", nil), amphi.Errorf(tc.code, "why"))
			if w.Code != tc.status || errorCode(w) != tc.code {
				t.Errorf("answered %d %q, want %d %q", w.Code, errorCode(w), tc.status, tc.code)
			}
			if got := w.Header().Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
			}
			if auth := w.Header().Get("WWW-Authenticate"); (auth != "") != (tc.status == 401) {
				t.Errorf("WWW-Authenticate %q on a %d", auth, tc.status)
			}
		})
	}
}

func TestInternalErrorsShowNoInternalText(t *testing.T) {
	s := &Server{cfg: Config{Logger: slog.New(slog.DiscardHandler)}}
	w := httptest.NewRecorder()
	s.error(w, httptest.NewRequest("GET", "/", nil), errors.New("disk /var/secret on fire"))
	if w.Code != 500 || strings.Contains(w.Body.String(), "secret") {
		t.Errorf("answered %d %s", w.Code, w.Body)
	}
}
