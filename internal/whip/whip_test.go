package whip

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/stage"
)

type nopSource struct{}

func (nopSource) Push(uint16, uint32, []byte) {}
func (nopSource) Close()                      {}

// server is a real stage behind a WHIP handler that answers with a relative
// Location and records the requests it got.
type server struct {
	st  *stage.Stage
	srv *httptest.Server

	mu   sync.Mutex
	reqs []string // "METHOD path content-type authorization"
}

func newServer(t *testing.T) *server {
	t.Helper()
	cfg := stage.DefaultConfig()
	cfg.AddSource = func(string) (stage.Source, error) { return nopSource{}, nil }
	cfg.Logger = slog.New(slog.DiscardHandler)
	st, err := stage.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{st: st}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/spaces/x/whip", func(w http.ResponseWriter, r *http.Request) {
		s.record(r)
		body, _ := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		id, answer, err := st.Join(r.Context(), "speaker", string(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Location", "sessions/"+id)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, answer)
	})
	mux.HandleFunc("DELETE /api/spaces/x/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		s.record(r)
		if err := st.Leave(r.PathValue("id")); err != nil {
			http.Error(w, `{"error":{"code":"not_found","message":"no such session"}}`, http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	s.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		st.Close()
		s.srv.Close()
	})
	return s
}

func (s *server) record(r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, strings.Join([]string{r.Method, r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("Authorization")}, " "))
}

func (s *server) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reqs...)
}

func dial(t *testing.T, s *server, cfg Config) *Session {
	t.Helper()
	cfg.HTTPClient = s.srv.Client()
	cfg.Logger = slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := Dial(ctx, s.srv.URL+"/api/spaces/x/whip", "tok", cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-sess.Connected():
	case <-time.After(10 * time.Second):
		t.Fatal("never connected")
	}
	return sess
}

func TestDialPostsOfferAndCloseDeletesResource(t *testing.T) {
	s := newServer(t)
	sess := dial(t, s, Config{})
	sp := s.st.Speakers()
	if len(sp) != 1 || len(sp[0].Hears) != 12 {
		t.Fatalf("Speakers() = %+v, want one speaker with 12 slots", sp)
	}
	if want := s.srv.URL + "/api/spaces/x/sessions/" + sp[0].Session; sess.location != want {
		t.Errorf("location = %q, want %q", sess.location, want)
	}
	if err := sess.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := sess.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	want := []string{
		"POST /api/spaces/x/whip application/sdp Bearer tok",
		"DELETE /api/spaces/x/sessions/" + sp[0].Session + "  Bearer tok",
	}
	if got := s.requests(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := len(s.st.Speakers()); n != 0 {
		t.Errorf("%d speakers after Close", n)
	}
}

func TestCloseAcceptsSessionAlreadyGone(t *testing.T) {
	s := newServer(t)
	sess := dial(t, s, Config{Slots: -1})
	sp := s.st.Speakers()
	if len(sp) != 1 || len(sp[0].Hears) != 0 {
		t.Fatalf("Speakers() = %+v, want one speaker with no slots", sp)
	}
	if err := s.st.Leave(sp[0].Session); err != nil {
		t.Fatal(err)
	}
	if err := sess.Close(context.Background()); err != nil {
		t.Errorf("Close after the server dropped the session: %v", err)
	}
}

// TestDoneTellsTheSessionIsOver: a speaker that wants to stay on the stage
// learns from Done that the server went away, and dials again.
func TestDoneTellsTheSessionIsOver(t *testing.T) {
	s := newServer(t)
	sess := dial(t, s, Config{Slots: -1, ConfigureSettings: func(se *webrtc.SettingEngine) {
		se.SetICETimeouts(time.Second, time.Second, 250*time.Millisecond)
	}})
	select {
	case <-sess.Done():
		t.Fatal("Done is closed while connected")
	default:
	}
	if err := s.st.Close(); err != nil { // the server's stage goes, and its connections
		t.Fatal(err)
	}
	select {
	case <-sess.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("Done still open 15 s after the server closed the stage")
	}
	sess.Abandon()
}

func TestDialReportsServerError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":{"code":"full","message":"the stage is full (13 speakers)"}}`)
	}))
	defer srv.Close()
	_, err := Dial(context.Background(), srv.URL, "tok", Config{HTTPClient: srv.Client(), Slots: -1})
	var se *StatusError
	if !errors.As(err, &se) {
		t.Fatalf("Dial: %v, want a *StatusError", err)
	}
	if se.StatusCode != http.StatusServiceUnavailable || se.Code != amphi.EFull || !strings.Contains(err.Error(), "the stage is full") {
		t.Errorf("Dial: %#v (%v)", se, err)
	}
}

func TestStatusErrorReadsBody(t *testing.T) {
	tests := []struct {
		body          string
		code, message string
	}{
		{`{"error":{"code":"invalid","message":"bad offer"}}`, "invalid", "bad offer"},
		{"plain text reason\n", "", "plain text reason"},
		{"", "", ""},
		{`{"other":1}`, "", `{"other":1}`},
		{strings.Repeat("x", 300), "", ""},
	}
	for _, tt := range tests {
		e := statusError(400, []byte(tt.body))
		if e.Code != tt.code || e.Message != tt.message {
			t.Errorf("statusError(%.20q) = %q %q, want %q %q", tt.body, e.Code, e.Message, tt.code, tt.message)
		}
	}
}

// FuzzStatusError checks that no error body from a server makes statusError
// panic or keep an unbounded message. Corpus: testdata/fuzz/FuzzStatusError.
func FuzzStatusError(f *testing.F) {
	f.Add([]byte(`{"error":{"code":"full","message":"the stage is full"}}`))
	f.Add([]byte("plain"))
	f.Fuzz(func(t *testing.T, body []byte) {
		e := statusError(503, body)
		if e.StatusCode != 503 || (e.Code == "" && len(e.Message) > 200) {
			t.Fatalf("statusError = %#v", e)
		}
		_ = e.Error()
	})
}
