// Package api is amphi's HTTP interface: the spaces API (JSON), the WHIP
// endpoint speakers join the stage through, and the listeners' live stream
// and recordings. It maps amphi.Error codes to statuses in one table and never
// shows clients internal error text. docs/API.md describes every route.
package api

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/account"
	"github.com/amphi-audio/amphi/internal/bus"
	"github.com/amphi-audio/amphi/internal/edge"
	"github.com/amphi-audio/amphi/internal/gate"
	"github.com/amphi-audio/amphi/internal/live"
	"github.com/amphi-audio/amphi/internal/ops"
	"github.com/amphi-audio/amphi/internal/space"
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
	// PublicURL is the base URL clients reach the server at, such as
	// https://amphi.example.org behind a TLS proxy: the links the API
	// answers with start with it, and when it is https session cookies
	// are Secure. The server never contacts it. Empty means each
	// request's own scheme and Host.
	PublicURL string
	// SignInLimit limits sign-in attempts per source address and prefix.
	// A zero value means no limit; DefaultConfig sets DefaultSignInLimit.
	SignInLimit gate.LimiterConfig
	// RequestLimit and ReactionLimit limit requests to speak and reactions
	// per source address and prefix; LookupLimit, state polls that must
	// read the database. Zero values mean no limit; DefaultConfig sets
	// DefaultRequestLimit, DefaultReactionLimit and DefaultLookupLimit.
	RequestLimit, ReactionLimit, LookupLimit gate.LimiterConfig
	// WHIPLimit limits WHIP offers per source address and per speaker. A
	// zero value means no limit; DefaultConfig sets DefaultWHIPLimit.
	WHIPLimit WHIPLimitConfig
	// CreateLimit limits how fast spaces are created, per source and per
	// account. A zero value means no limit; DefaultConfig sets
	// DefaultCreateLimit.
	CreateLimit CreateLimitConfig
	// Directory is the spaces this node knows and admits listeners to.
	// Nil means a new one, which the lifecycle keeps; an edge's is fed by
	// the origin's announcements (space.Directory.Learn).
	Directory *space.Directory
	// Lookup is how an edge (a nil store) learns of a space its
	// Directory does not know yet, such as one created a moment ago: by
	// asking the origin. Nil means what the Directory knows is all.
	Lookup func(ctx context.Context, id string) (*amphi.Space, error)
	// History reads a piece of a live space's recording at the node that
	// records it (bus.History): how an edge rewinds a listener further
	// than its ring holds. Nil means an edge rewinds as far as its ring.
	History func(ctx context.Context, id string, req bus.HistoryRequest) (bus.HistoryReply, error)
	// MaxRewinds is the most listeners this node plays a recorded past to
	// at once (from=start, from=-5m); each holds about 80 KB while there.
	// Past it, a rewind starts as far back as the ring holds, and says so
	// (Amphi-Behind). Zero means DefaultMaxRewinds.
	MaxRewinds int
	// ListenAt returns the base URL listeners should join and listen at
	// now, such as the least loaded edge's; "" means this server's. Nil
	// means this server's always.
	ListenAt func() string
	// Verdict returns the ops verdict, which hosts see in their console
	// (GET /spaces/{id}/health) without its evidence: that names the
	// sources refused, and is served on the ops address only. Nil answers
	// that route 404.
	Verdict func() string
}

// DefaultConfig returns the defaults described on Config's fields.
func DefaultConfig() Config {
	return Config{MaxBody: 64 << 10, Gate: DefaultGateConfig(), Accounts: account.DefaultConfig(), SignInLimit: DefaultSignInLimit(),
		RequestLimit: DefaultRequestLimit(), ReactionLimit: DefaultReactionLimit(), LookupLimit: DefaultLookupLimit(),
		WHIPLimit: DefaultWHIPLimit(), CreateLimit: DefaultCreateLimit()}
}

// Server serves the API.
type Server struct {
	cfg Config
	db  *store.DB // nil on an edge
	// lookup reads what is known of a space: the store's record, or on
	// an edge the origin's last announcement.
	lookup func(ctx context.Context, id string) (*amphi.Space, error)
	spaces directory
	life   lifecycle // nil on an edge
	// clipCuts holds a token per clip being cut (clipCuts at most).
	clipCuts chan struct{}
	// rewinds holds a token per listener in a recorded past
	// (Config.MaxRewinds at most).
	rewinds chan struct{}
	edge    *edge.Edge
	gate    *admission
	mux     *http.ServeMux

	accounts    *account.Service
	signInLimit *gate.SourceLimiter
	setup       setupLink
	// publicURL is Config.PublicURL checked, without a trailing slash.
	publicURL string

	requestLimit *gate.SourceLimiter
	reactLimit   *gate.SourceLimiter
	lookupLimit  *gate.SourceLimiter
	whipLimit    whipLimiter
	createLimit  createLimiter
}

// directory is the spaces this node knows and admits listeners to, with
// their rooms and cached states. *space.Directory is one.
type directory interface {
	Get(id string) *space.Space
	All() []*space.Space
	Open(id string, opensAt time.Time) *gate.Room
	State(id string, maxAge time.Duration, now time.Time) *space.State
	Encode(id string, now time.Time, lookup func() (*amphi.Space, error)) (*space.State, error)
	Forget(id string)
}

// lifecycle puts spaces on air on this node and takes them off.
// *space.Lifecycle is one.
type lifecycle interface {
	Reserve() (*live.Place, error)
	Start(ctx context.Context, id string, place *live.Place) (*amphi.Space, error)
	End(ctx context.Context, id string, why amphi.EndReason) (*amphi.Space, error)
	EndAll(ctx context.Context) error
	Recover(ctx context.Context) error
	Wait()
}

// New returns the API over its store, the spaces on air and the edge. top
// collects the source prefixes of refused requests for the ops view. With
// a nil store and live manager it is an edge's: it serves listeners only
// (joins, the waiting room, tickets, the stream and state polls) for the
// spaces its Directory learns of, and answers the rest 404.
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
	var public string
	if cfg.PublicURL != "" {
		if public, err = parsePublicURL(cfg.PublicURL); err != nil {
			return nil, err
		}
	}
	dir := cfg.Directory
	if dir == nil {
		dir = space.NewDirectory(cfg.Gate.Room, gate.NewCapacity(cfg.Gate.Node))
	}
	s := &Server{cfg: cfg, db: db, lookup: dir.Known, spaces: dir, edge: e, gate: a, mux: http.NewServeMux(),
		publicURL: public, lookupLimit: gate.NewSourceLimiter(cfg.LookupLimit), clipCuts: make(chan struct{}, clipCuts),
		rewinds: make(chan struct{}, cmp.Or(cfg.MaxRewinds, DefaultMaxRewinds))}
	if db == nil {
		if cfg.Lookup != nil {
			s.lookup = cfg.Lookup
		}
		s.listenerRoutes()
	} else {
		// Accounts only where the store is: the dummy hash that keeps
		// sign-in timing even costs an edge argon2id's memory for nothing.
		if cfg.Accounts.Now == nil {
			cfg.Accounts.Now = cfg.Now
		}
		if s.accounts, err = account.New(cfg.Accounts, db); err != nil {
			return nil, err
		}
		// The limits of the routes an edge does not serve: each table is
		// allocated whole (megabytes), so an edge makes none of them.
		s.signInLimit, s.requestLimit = gate.NewSourceLimiter(cfg.SignInLimit), gate.NewSourceLimiter(cfg.RequestLimit)
		s.reactLimit, s.whipLimit = gate.NewSourceLimiter(cfg.ReactionLimit), newWHIPLimiter(cfg.WHIPLimit)
		s.createLimit = newCreateLimiter(cfg.CreateLimit)
		s.lookup = db.Space
		s.life = space.NewLifecycle(space.Config{DataDir: cfg.DataDir, Logger: cfg.Logger, Now: cfg.Now}, dir, db, lm)
		s.routes()
	}
	s.mux.HandleFunc("/", s.noRoute)
	return s, nil
}

func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	if s.db == nil {
		s.error(w, r, amphi.Errorf(amphi.ENotFound, "no route for %s %s on this edge, which serves listeners only: the spaces API is at the origin", r.Method, r.URL.Path))
		return
	}
	s.error(w, r, amphi.Errorf(amphi.ENotFound, "no route for %s %s", r.Method, r.URL.Path))
}

// listenerRoutes are what every node serves, an edge included: listeners
// join, wait, listen and poll the state.
func (s *Server) listenerRoutes() {
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	s.mux.HandleFunc("GET /spaces/{id}", s.handleGet)
	s.mux.HandleFunc("POST /spaces/{id}/join", s.handleJoin)
	s.mux.HandleFunc("GET /spaces/{id}/listen", s.handleListen)
	s.mux.HandleFunc("GET /spaces/{id}/live.opus", s.handleLive)
	s.mux.HandleFunc("GET /spaces/{id}/hls/index.m3u8", s.handleHLSEntry)
	s.mux.HandleFunc("GET /spaces/{id}/hls/{run}/{name}", s.handleHLS)
	s.mux.HandleFunc("GET /spaces/{id}/state", s.handleState)
}

func (s *Server) routes() {
	s.listenerRoutes()
	s.mux.HandleFunc("POST /spaces", s.handleCreate)
	s.mux.HandleFunc("GET /spaces", s.handleList)
	s.mux.HandleFunc("POST /spaces/{id}/start", s.handleStart)
	s.mux.HandleFunc("POST /spaces/{id}/end", s.handleEnd)
	s.mux.HandleFunc("POST /spaces/{id}/tokens", s.handleMintToken)
	s.mux.HandleFunc("POST /spaces/{id}/whip", s.handleWHIPPost)
	s.mux.HandleFunc("OPTIONS /spaces/{id}/whip", s.handleWHIPOptions)
	s.mux.HandleFunc("DELETE /spaces/{id}/whip/{session}", s.handleWHIPDelete)
	s.mux.HandleFunc("GET /spaces/{id}/recording.opus", s.handleRecording)
	s.mux.HandleFunc("GET /spaces/{id}/replay/{name}", s.handleReplayHLS)
	s.mux.HandleFunc("DELETE /spaces/{id}/recording", s.handleRecordingDelete)
	s.mux.HandleFunc("GET /spaces/{id}/timeline", s.handleTimeline)
	s.mux.HandleFunc("POST /spaces/{id}/clips", s.handleClipCreate)
	s.mux.HandleFunc("GET /clips/{file}", s.handleClipFile)
	s.mux.HandleFunc("GET /clips/{clip}/waveform.png", s.handleClipWaveform)
	s.mux.HandleFunc("GET /c/{clip}", s.handleClipPage)
	s.mux.HandleFunc("GET /spaces/{id}/calendar.ics", s.handleCalendar)
	s.mux.HandleFunc("GET /spaces/{id}/events", s.handleEvents)
	s.mux.HandleFunc("POST /spaces/{id}/reactions", s.handleReaction)
	s.mux.HandleFunc("POST /spaces/{id}/requests", s.handleRequestCreate)
	s.mux.HandleFunc("GET /spaces/{id}/requests", s.handleRequestList)
	s.mux.HandleFunc("GET /spaces/{id}/requests/{rid}", s.handleRequestGet)
	s.mux.HandleFunc("DELETE /spaces/{id}/requests/{rid}", s.handleRequestWithdraw)
	s.mux.HandleFunc("POST /spaces/{id}/requests/{rid}/approve", s.handleRequestApprove)
	s.mux.HandleFunc("POST /spaces/{id}/requests/{rid}/decline", s.handleRequestDecline)
	s.mux.HandleFunc("POST /spaces/{id}/speakers/{sid}/mute", s.handleSpeakerMute)
	s.mux.HandleFunc("DELETE /spaces/{id}/speakers/{sid}", s.handleSpeakerRemove)
	s.mux.HandleFunc("POST /spaces/{id}/recording", s.handleRecordingToggle)
	s.mux.HandleFunc("GET /spaces/{id}/health", s.handleHealth)
	s.authRoutes()
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
		w.Header().Set("Retry-After", retryAfter(err))
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
	dec := json.NewDecoder(bytes.NewReader(body))
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

// caller is who a request acts as in one space: the bearer of a token, or
// a signed-in account that hosts the space.
type caller struct {
	role  amphi.Role
	token *store.Token // nil when signed in with a session cookie
	user  *store.User  // nil for a bearer token
}

// speakerID is the caller's stable id on the stage: its token's, or one
// derived from its account, so reconnecting keeps the same place.
func (c *caller) speakerID() string {
	if c.token != nil {
		return c.token.SpeakerID()
	}
	sum := sha256.Sum256([]byte("account:" + c.user.ID))
	return hex.EncodeToString(sum[:8])
}

// name is what listeners see on stage for the caller.
func (c *caller) name() string {
	switch {
	case c.token != nil && c.token.Name != "":
		return c.token.Name
	case c.user != nil:
		return accountName(c.user)
	case c.role == amphi.RoleHost:
		return "Host"
	case c.role == amphi.RoleCohost:
		return "Co-host"
	}
	return "Speaker"
}

// accountName is what listeners see of an account on stage: its email's
// local part, never the whole address.
func accountName(u *store.User) string {
	local, _, _ := strings.Cut(u.Email, "@")
	return local
}

// authorize decides who the request acts as in the space, whose role must
// be one of allowed. A bearer token speaks for itself; without one, the
// session cookie of the account that created the space, or of an admin,
// makes the request the space's host (with the CSRF header when it changes
// state). Expired and revoked tokens are refused saying so.
func (s *Server) authorize(r *http.Request, spaceID string, allowed ...amphi.Role) (*caller, error) {
	c, err := s.identify(r, spaceID)
	if err != nil {
		// Only a refusal looks the space up, to say 404 for a space that
		// does not exist rather than blame the credentials.
		if _, err2 := s.db.Space(r.Context(), spaceID); amphi.ErrorCode(err2) == amphi.ENotFound {
			return nil, err2
		}
		return nil, err
	}
	if !slices.Contains(allowed, c.role) {
		return nil, amphi.Errorf(amphi.EForbidden, "a %s cannot do this", c.role)
	}
	return c, nil
}

func (s *Server) identify(r *http.Request, spaceID string) (*caller, error) {
	if r.Header.Get("Authorization") == "" && session(r) != "" {
		return s.identifyAccount(r, spaceID)
	}
	tok, err := bearer(r)
	if err != nil {
		return nil, err
	}
	t, err := s.db.Token(r.Context(), store.HashToken(tok), spaceID)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	switch {
	case t.RevokedAt != nil:
		return nil, amphi.Errorf(amphi.EUnauthorized, "the host removed you from the stage: this link no longer works")
	case t.ExpiresAt != nil && !now.Before(*t.ExpiresAt):
		return nil, amphi.Errorf(amphi.EUnauthorized, "this speaker link expired at %s: ask the host for a new one", t.ExpiresAt.Format(time.RFC3339))
	}
	return &caller{role: t.Role, token: t}, nil
}

func (s *Server) identifyAccount(r *http.Request, spaceID string) (*caller, error) {
	u, _, token, err := s.signedIn(r)
	if err != nil {
		return nil, err
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if err := checkCSRF(r, token); err != nil {
			return nil, err
		}
	}
	sp, err := s.db.Space(r.Context(), spaceID)
	if err != nil {
		return nil, err
	}
	if u.Role != store.UserAdmin && sp.OwnerID != u.ID {
		return nil, amphi.Errorf(amphi.EForbidden, "%s is not the host of this space: use its host link, or sign in as its host or an admin", u.Email)
	}
	return &caller{role: amphi.RoleHost, user: u}, nil
}
