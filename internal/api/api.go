// Package api is amphi's HTTP interface: the spaces API (JSON), the WHIP
// endpoint speakers join the stage through, and the listeners' live stream
// and recordings. It maps amphi.Error codes to statuses in one table and never
// shows clients internal error text. docs/API.md describes every route.
package api

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/account"
	"github.com/amphi-audio/amphi/internal/edge"
	"github.com/amphi-audio/amphi/internal/gate"
	"github.com/amphi-audio/amphi/internal/live"
	"github.com/amphi-audio/amphi/internal/ops"
	"github.com/amphi-audio/amphi/internal/store"
)

// Config tunes the API.
type Config struct {
	// DataDir is where recordings are written. Required.
	DataDir string
	// MaxBody caps request bodies (JSON and SDP offers). Zero means 64 KiB.
	MaxBody int64
	// Logger receives request errors. Nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Gate configures admission of listeners.
	Gate GateConfig
	// Accounts configures hosts' and admins' accounts and sessions. A nil
	// Now takes the API's.
	Accounts account.Config
	// RequireAccounts refuses to create spaces for anyone not signed in as
	// a host or admin. False lets anyone create one (a host token is the
	// only credential), as before accounts existed.
	RequireAccounts bool
	// SignInLimit limits sign-in attempts per source address and prefix.
	// A zero value means no limit; DefaultConfig sets DefaultSignInLimit.
	SignInLimit gate.LimiterConfig
}

// DefaultConfig returns the defaults described on Config's fields.
func DefaultConfig() Config {
	return Config{MaxBody: 64 << 10, Gate: DefaultGateConfig(), Accounts: account.DefaultConfig(), SignInLimit: DefaultSignInLimit()}
}

// Server serves the API.
type Server struct {
	cfg  Config
	db   *store.DB
	live *live.Manager
	edge *edge.Edge
	gate *admission
	mux  *http.ServeMux

	accounts    *account.Service
	signInLimit *gate.SourceLimiter
	setup       setupLink
}

// New returns the API over its store, the spaces on air and the edge. top
// collects the source prefixes of refused requests for the ops view.
func New(cfg Config, db *store.DB, lm *live.Manager, e *edge.Edge, top *ops.TopPrefixes) (*Server, error) {
	if cfg.MaxBody == 0 {
		cfg.MaxBody = DefaultConfig().MaxBody
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a, err := newAdmission(cfg.Gate, top)
	if err != nil {
		return nil, err
	}
	if cfg.Accounts.Now == nil {
		cfg.Accounts.Now = cfg.Now
	}
	accounts, err := account.New(cfg.Accounts, db)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, db: db, live: lm, edge: e, gate: a, mux: http.NewServeMux(),
		accounts: accounts, signInLimit: gate.NewSourceLimiter(cfg.SignInLimit)}
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	s.mux.HandleFunc("POST /spaces", s.handleCreate)
	s.mux.HandleFunc("GET /spaces", s.handleList)
	s.mux.HandleFunc("GET /spaces/{id}", s.handleGet)
	s.mux.HandleFunc("POST /spaces/{id}/start", s.handleStart)
	s.mux.HandleFunc("POST /spaces/{id}/end", s.handleEnd)
	s.mux.HandleFunc("POST /spaces/{id}/tokens", s.handleMintToken)
	s.mux.HandleFunc("POST /spaces/{id}/whip", s.handleWHIPPost)
	s.mux.HandleFunc("OPTIONS /spaces/{id}/whip", s.handleWHIPOptions)
	s.mux.HandleFunc("DELETE /spaces/{id}/whip/{session}", s.handleWHIPDelete)
	s.mux.HandleFunc("POST /spaces/{id}/join", s.handleJoin)
	s.mux.HandleFunc("GET /spaces/{id}/listen", s.handleListen)
	s.mux.HandleFunc("GET /spaces/{id}/live.opus", s.handleLive)
	s.mux.HandleFunc("GET /spaces/{id}/recording.opus", s.handleRecording)
	s.authRoutes()
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.error(w, r, amphi.Errorf(amphi.ENotFound, "no route for %s %s", r.Method, r.URL.Path))
	})
}

// ServeHTTP routes a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// statuses maps error codes to HTTP statuses: the one place that does.
var statuses = map[string]int{
	amphi.EInvalid:       http.StatusBadRequest,
	amphi.EUnauthorized:  http.StatusUnauthorized,
	amphi.EForbidden:     http.StatusForbidden,
	amphi.ENotFound:      http.StatusNotFound,
	amphi.EConflict:      http.StatusConflict,
	amphi.EFull:          http.StatusServiceUnavailable,
	amphi.ETooLarge:      http.StatusRequestEntityTooLarge,
	amphi.EUnsupported:   http.StatusUnsupportedMediaType,
	amphi.EInternal:      http.StatusInternalServerError,
	amphi.EUnavailable:   http.StatusServiceUnavailable,
	amphi.EGone:          http.StatusGone,
	amphi.ENotAcceptable: http.StatusNotAcceptable,
	amphi.ERateLimited:   http.StatusTooManyRequests,
}

// StatusCode returns the HTTP status for an error code.
func StatusCode(code string) int {
	if st, ok := statuses[code]; ok {
		return st
	}
	return http.StatusInternalServerError
}

// errorBody is what clients receive for every error.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (s *Server) error(w http.ResponseWriter, r *http.Request, err error) {
	code := amphi.ErrorCode(err)
	if code == amphi.EInternal {
		s.cfg.Logger.Error("api: internal error", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	var body errorBody
	body.Error.Code, body.Error.Message = code, amphi.ErrorMessage(err)
	st := StatusCode(code)
	if st == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="amphi"`)
	}
	if code == amphi.EFull || code == amphi.EUnavailable || code == amphi.ERateLimited {
		w.Header().Set("Retry-After", "5")
	}
	writeJSON(w, st, &body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v) // the status is sent: a failed write is the client's loss
}

// readBody reads a capped body of the given media type.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, mediaType string) ([]byte, error) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != mediaType {
		return nil, amphi.Errorf(amphi.EUnsupported, "Content-Type must be %s", mediaType)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, amphi.Errorf(amphi.ETooLarge, "body over %d bytes", s.cfg.MaxBody)
	case err != nil:
		return nil, amphi.Errorf(amphi.EInvalid, "reading body: %v", err)
	}
	return body, nil
}

// decodeJSON reads a capped JSON body into v, refusing unknown fields so a
// misspelt one is an error, not silently ignored.
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := s.readBody(w, r, "application/json")
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return amphi.Errorf(amphi.EInvalid, "malformed JSON: %v", err)
	}
	if dec.More() {
		return amphi.Errorf(amphi.EInvalid, "malformed JSON: data after the object")
	}
	return nil
}

// bearer returns the request's bearer token.
func bearer(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", amphi.Errorf(amphi.EUnauthorized, "an Authorization: Bearer token is required")
	}
	return strings.TrimSpace(tok), nil
}

// authorize checks the request's token against the space and returns its
// role, which must be one of allowed.
func (s *Server) authorize(r *http.Request, spaceID string, allowed ...amphi.Role) (amphi.Role, error) {
	tok, err := bearer(r)
	if err != nil {
		return "", err
	}
	role, err := s.db.TokenRole(r.Context(), store.HashToken(tok), spaceID)
	if err != nil {
		// Only a refusal looks the space up, to say 404 for a space that
		// does not exist rather than blame the token.
		if _, err2 := s.db.Space(r.Context(), spaceID); amphi.ErrorCode(err2) == amphi.ENotFound {
			return "", err2
		}
		return "", err
	}
	for _, a := range allowed {
		if role == a {
			return role, nil
		}
	}
	return "", amphi.Errorf(amphi.EForbidden, "a %s token cannot do this", role)
}
