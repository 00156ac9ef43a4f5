package api

import (
	"context"
	"crypto/subtle"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/account"
	"github.com/amphi-audio/amphi/internal/gate"
	"github.com/amphi-audio/amphi/internal/store"
)

// Cookie and header names of the session and its CSRF token.
const (
	sessionCookie = "amphi_session"
	// csrfCookie holds the session's CSRF token where the page's scripts
	// can read it (not HttpOnly); the header proves the request came from
	// a page that could, which a cross-site form cannot.
	csrfCookie = "amphi_csrf"
	csrfHeader = "X-CSRF-Token"
)

// DefaultSignInLimit returns the per-source limits on POST /auth/signin:
// ten tries at once, then one every six seconds, far below what guessing
// passwords needs and above what a person mistyping does.
func DefaultSignInLimit() gate.LimiterConfig {
	return gate.LimiterConfig{SourceRate: 1.0 / 6, SourceBurst: 10, PrefixRate: 1, PrefixBurst: 50, Entries: 1 << 14}
}

// Accounts returns the service that signs hosts and admins in.
func (s *Server) Accounts() *account.Service { return s.accounts }

func (s *Server) authRoutes() {
	s.mux.HandleFunc("POST /auth/signin", s.handleSignIn)
	s.mux.HandleFunc("POST /auth/signout", s.handleSignOut)
	s.mux.HandleFunc("GET /auth/me", s.handleMe)
	s.mux.HandleFunc("POST /auth/setup", s.handleSetup)
	s.mux.HandleFunc("POST /auth/invites", s.handleInvite)
	s.mux.HandleFunc("POST /auth/accept", s.handleAccept)
}

type signInRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// meResponse is what signing in and /auth/me answer.
type meResponse struct {
	User      *store.User `json:"user"`
	CSRF      string      `json:"csrf"`
	ExpiresAt time.Time   `json:"expires_at"`
}

func (s *Server) handleSignIn(w http.ResponseWriter, r *http.Request) {
	if err := s.gate.limit(s.signInLimit, s.gate.clientAddr(r), s.cfg.Now()); err != nil {
		s.error(w, r, err)
		return
	}
	var req signInRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	u, token, expires, err := s.accounts.SignIn(r.Context(), req.Email, req.Password)
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.setSessionCookies(w, r, token, expires)
	writeJSON(w, http.StatusOK, &meResponse{User: u, CSRF: account.CSRFToken(token), ExpiresAt: expires})
}

func (s *Server) setSessionCookies(w http.ResponseWriter, r *http.Request, token string, expires time.Time) {
	maxAge := int(expires.Sub(s.cfg.Now()).Round(time.Second) / time.Second)
	if maxAge <= 0 { // 0 would mean a browser-session cookie, -1 deletes
		maxAge = -1
	}
	csrf := ""
	if token != "" {
		csrf = account.CSRFToken(token)
	}
	for _, c := range []*http.Cookie{
		{Name: sessionCookie, Value: token, HttpOnly: true},
		{Name: csrfCookie, Value: csrf},
	} {
		// Behind a TLS proxy the request itself is plain HTTP: an https
		// public URL says the browser's side is not.
		c.Path, c.MaxAge, c.SameSite = "/", maxAge, http.SameSiteLaxMode
		c.Secure = r.TLS != nil || strings.HasPrefix(s.publicURL, "https://")
		http.SetCookie(w, c)
	}
}

// session returns the request's session token, "" if it has no session
// cookie.
func session(r *http.Request) string {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return ""
	}
	return c.Value
}

// signedIn returns the account of the request's session cookie and the
// session's token. Without a cookie it fails with "not signed in"; with an
// expired session, with "session expired".
func (s *Server) signedIn(r *http.Request) (*store.User, *store.Session, string, error) {
	token := session(r)
	if token == "" {
		return nil, nil, "", amphi.Errorf(amphi.EUnauthorized, "not signed in")
	}
	u, sess, err := s.accounts.Authenticate(r.Context(), token)
	if err != nil {
		return nil, nil, "", err
	}
	return u, sess, token, nil
}

// checkCSRF refuses a cookie-authenticated state-changing request that does
// not echo its session's CSRF token.
func checkCSRF(r *http.Request, token string) error {
	if !account.CheckCSRF(token, r.Header.Get(csrfHeader)) {
		return amphi.Errorf(amphi.EForbidden, "missing or wrong %s header: send the csrf token from sign-in or /auth/me", csrfHeader)
	}
	return nil
}

func (s *Server) handleMe(w http.ResponseWriter, r *http.Request) {
	u, sess, token, err := s.signedIn(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, &meResponse{User: u, CSRF: account.CSRFToken(token), ExpiresAt: sess.ExpiresAt})
}

func (s *Server) handleSignOut(w http.ResponseWriter, r *http.Request) {
	token := session(r)
	if token == "" {
		s.error(w, r, amphi.Errorf(amphi.EUnauthorized, "not signed in"))
		return
	}
	// An expired session may still sign out: the CSRF token derives from
	// the cookie, not from the database.
	if err := checkCSRF(r, token); err != nil {
		s.error(w, r, err)
		return
	}
	if err := s.accounts.SignOut(r.Context(), token); err != nil {
		s.error(w, r, err)
		return
	}
	s.setSessionCookies(w, r, "", time.Time{})
	w.WriteHeader(http.StatusNoContent)
}

// authorizeCreate decides who may create a space. A request with a session
// cookie must carry a live session of a host or admin and its CSRF token;
// one without may create anonymously unless RequireAccounts is set. The
// space's bearer host token is returned either way, so the CLI's flows are
// unchanged; the account, if any, owns the space and may host it.
func (s *Server) authorizeCreate(r *http.Request) (*store.User, error) {
	if session(r) == "" {
		if s.cfg.RequireAccounts {
			return nil, amphi.Errorf(amphi.EUnauthorized, "sign in as a host to create a space")
		}
		return nil, nil
	}
	u, _, token, err := s.signedIn(r)
	if err != nil {
		return nil, err
	}
	if err := checkCSRF(r, token); err != nil {
		return nil, err
	}
	if u.Role != store.UserHost && u.Role != store.UserAdmin {
		return nil, amphi.Errorf(amphi.EForbidden, "a %s account cannot create spaces", u.Role)
	}
	return u, nil
}

// setupTTL is how long the first-start link to create the first admin
// stays valid: long enough to read the log and open it, short enough that
// an old log leaked later is useless.
const setupTTL = time.Hour

// setupLink is the one-time secret that lets whoever holds it create the
// first admin through the API, for operators who did not run
// `amphi admin create`. It lives in memory only: a restart makes a new one.
type setupLink struct {
	mu      sync.Mutex
	hash    []byte
	expires time.Time
	used    bool
}

// FirstAdminLink returns a one-time URL path (with its secret) through which
// the first admin can be created, or "" if an account already exists. Each
// call replaces the previous link.
func (s *Server) FirstAdminLink(ctx context.Context) (string, error) {
	n, err := s.db.CountUsers(ctx)
	if err != nil || n > 0 {
		return "", err
	}
	token, hash, err := store.NewToken()
	if err != nil {
		return "", err
	}
	s.setup.mu.Lock()
	s.setup.hash, s.setup.expires, s.setup.used = hash, s.cfg.Now().Add(setupTTL), false
	s.setup.mu.Unlock()
	return "/setup#token=" + token, nil
}

type setupRequest struct {
	Token    string `json:"token"`
	Email    string `json:"email"`
	Password string `json:"password"`
}

// handleSetup creates the first admin from the first-start link and signs
// them in. The lock makes the link single-use even under concurrent posts.
func (s *Server) handleSetup(w http.ResponseWriter, r *http.Request) {
	if err := s.gate.limit(s.signInLimit, s.gate.clientAddr(r), s.cfg.Now()); err != nil {
		s.error(w, r, err)
		return
	}
	var req setupRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	s.setup.mu.Lock()
	defer s.setup.mu.Unlock()
	switch {
	case s.setup.hash == nil:
		s.error(w, r, amphi.Errorf(amphi.ENotFound, "no setup link was issued: create an admin with `amphi admin create`"))
		return
	case subtle.ConstantTimeCompare(store.HashToken(req.Token), s.setup.hash) != 1:
		s.error(w, r, amphi.Errorf(amphi.EUnauthorized, "wrong setup link"))
		return
	case s.setup.used:
		s.error(w, r, amphi.Errorf(amphi.EGone, "this setup link was already used: sign in instead"))
		return
	case !s.cfg.Now().Before(s.setup.expires):
		s.error(w, r, amphi.Errorf(amphi.EGone, "this setup link expired: restart amphi for a new one, or run `amphi admin create`"))
		return
	}
	// An admin made meanwhile with `amphi admin create` retires the link.
	if n, err := s.db.CountUsers(r.Context()); err != nil || n > 0 {
		if err == nil {
			err = amphi.Errorf(amphi.EGone, "an admin already exists: sign in instead")
		}
		s.error(w, r, err)
		return
	}
	if _, err := s.accounts.CreateUser(r.Context(), req.Email, req.Password, store.UserAdmin); err != nil {
		s.error(w, r, err)
		return
	}
	s.setup.used = true
	s.signInNew(w, r, req.Email, req.Password)
}

// signInNew signs in an account just created, answering 201 with the
// session, as sign-in answers 200.
func (s *Server) signInNew(w http.ResponseWriter, r *http.Request, email, password string) {
	u, token, expires, err := s.accounts.SignIn(r.Context(), email, password)
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.setSessionCookies(w, r, token, expires)
	writeJSON(w, http.StatusCreated, &meResponse{User: u, CSRF: account.CSRFToken(token), ExpiresAt: expires})
}

// inviteTTL is how long, at most and by default, an invitation to become a
// host stays usable.
const inviteTTL = 7 * 24 * time.Hour

type inviteRequest struct {
	Role       store.UserRole `json:"role"`
	TTLSeconds int64          `json:"ttl_seconds"`
}

type inviteResponse struct {
	URL       string         `json:"url"`
	Role      store.UserRole `json:"role"`
	ExpiresAt time.Time      `json:"expires_at"`
}

// handleInvite lets an admin invite a new host or admin: the link it
// answers creates one account, once, before it expires.
func (s *Server) handleInvite(w http.ResponseWriter, r *http.Request) {
	u, _, token, err := s.signedIn(r)
	if err == nil {
		err = checkCSRF(r, token)
	}
	if err == nil && u.Role != store.UserAdmin {
		err = amphi.Errorf(amphi.EForbidden, "only admins can invite hosts")
	}
	if err != nil {
		s.error(w, r, err)
		return
	}
	var req inviteRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	if req.Role == "" {
		req.Role = store.UserHost
	}
	ttl := time.Duration(req.TTLSeconds) * time.Second
	switch {
	case req.Role != store.UserHost && req.Role != store.UserAdmin:
		s.error(w, r, amphi.Errorf(amphi.EInvalid, "role must be %q or %q", store.UserHost, store.UserAdmin))
		return
	case req.TTLSeconds == 0:
		ttl = inviteTTL
	case req.TTLSeconds < 0 || ttl > inviteTTL:
		s.error(w, r, amphi.Errorf(amphi.EInvalid, "ttl_seconds must be between 1 and %d", int64(inviteTTL/time.Second)))
		return
	}
	secret, hash, err := store.NewToken()
	if err != nil {
		s.error(w, r, err)
		return
	}
	now := s.cfg.Now().UTC()
	inv := &store.Invite{Hash: hash, Role: req.Role, CreatedBy: u.ID, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := s.db.CreateInvite(r.Context(), inv); err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, &inviteResponse{URL: "/setup#invite=" + secret, Role: inv.Role, ExpiresAt: inv.ExpiresAt})
}

// errInviteSpent answers an invite used with an email that cannot take a
// new account, in words that do not say whether it has one.
var errInviteSpent = amphi.Errorf(amphi.EGone, "this invite cannot create an account for that email and is now used: sign in if you have an account, or ask an admin for a new invite")

type acceptRequest struct {
	Invite   string `json:"invite"`
	Email    string `json:"email"`
	Password string `json:"password"`
}

// handleAccept creates the account an invite was for and signs it in.
func (s *Server) handleAccept(w http.ResponseWriter, r *http.Request) {
	if err := s.gate.limit(s.signInLimit, s.gate.clientAddr(r), s.cfg.Now()); err != nil {
		s.error(w, r, err)
		return
	}
	var req acceptRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	hash := store.HashToken(req.Invite)
	inv, err := s.db.UseInvite(r.Context(), hash, s.cfg.Now())
	if err != nil {
		s.error(w, r, err)
		return
	}
	if _, err := s.accounts.CreateUser(r.Context(), req.Email, req.Password, inv.Role); err != nil {
		if amphi.ErrorCode(err) == amphi.EConflict {
			// A taken email spends the invite and is not named as taken:
			// an invite kept for another try would let its holder test
			// one email after another for an account.
			s.error(w, r, errInviteSpent)
			return
		}
		// A mistyped password must not burn the invite.
		if err2 := s.db.ReleaseInvite(r.Context(), hash); err2 != nil {
			s.cfg.Logger.Error("api: release invite", "err", err2)
		}
		s.error(w, r, err)
		return
	}
	s.signInNew(w, r, req.Email, req.Password)
}
