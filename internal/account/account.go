// Package account is how hosts and admins prove who they are: passwords
// hashed with argon2id, sign-in sessions held in a cookie whose token the
// store keeps only as a hash, and the CSRF token bound to each session that
// state-changing requests authenticated by that cookie must echo. Listeners
// never need an account; the bearer tokens of spaces (package store) are a
// separate, older mechanism that keeps working beside it.
package account

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/store"
)

// Store is what accounts keep in the database; *store.DB implements it.
type Store interface {
	CreateUser(ctx context.Context, u *store.User) error
	UserByEmail(ctx context.Context, email string) (*store.User, error)
	CreateSession(ctx context.Context, s *store.Session) error
	SessionUser(ctx context.Context, hash []byte) (*store.Session, *store.User, error)
	DeleteSession(ctx context.Context, hash []byte) error
	DeleteSessionsExpiredBefore(ctx context.Context, t time.Time) (int64, error)
}

var _ Store = (*store.DB)(nil)

// Config tunes accounts.
type Config struct {
	// SessionTTL is how long a session lasts after sign-in. Zero means 7 days.
	SessionTTL time.Duration
	// Params are the argon2id costs of new password hashes. Zero fields
	// take DefaultParams' values.
	Params Params
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// MaxHashing bounds the password hashes and checks running at once,
	// each holding Params.Memory. Zero means one per core (at least two),
	// fewer if their memory would pass 256 MiB.
	MaxHashing int
	// HashQueue is how many more may wait for a turn; past it, or after
	// HashWait, a sign-in or account creation fails with
	// amphi.EUnavailable. Zero means 64.
	HashQueue int
	// HashWait bounds a wait in that queue. Zero means 5 s.
	HashWait time.Duration
}

// DefaultConfig returns the defaults described on Config's fields.
func DefaultConfig() Config {
	return Config{SessionTTL: 7 * 24 * time.Hour, Params: DefaultParams(), HashQueue: defaultHashQueue, HashWait: defaultHashWait}
}

// Service creates accounts, signs them in and checks sessions.
type Service struct {
	cfg     Config
	st      Store
	hashing *hashGate
	// dummy is a hash of no one's password, checked when the email is
	// unknown so that such a sign-in costs what a wrong password costs.
	dummy string
}

// New returns the service over its store.
func New(cfg Config, st Store) (*Service, error) {
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = DefaultConfig().SessionTTL
	}
	cfg.Params = cfg.Params.withDefaults()
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxHashing == 0 {
		cfg.MaxHashing = hashSlots(cfg.Params)
	}
	if cfg.HashQueue == 0 {
		cfg.HashQueue = defaultHashQueue
	}
	if cfg.HashWait == 0 {
		cfg.HashWait = defaultHashWait
	}
	dummy, err := HashPassword("no one's password, for timing", cfg.Params)
	if err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, st: st, dummy: dummy, hashing: newHashGate(cfg.MaxHashing, cfg.HashQueue, cfg.HashWait)}, nil
}

// HashStats reports what the bound on concurrent password hashing has seen.
func (s *Service) HashStats() HashStats { return s.hashing.stats() }

// hash hashes a new password when the bound on hashing lets it.
func (s *Service) hash(ctx context.Context, password string) (hash string, err error) {
	if gerr := s.hashing.do(ctx, func() { hash, err = HashPassword(password, s.cfg.Params) }); gerr != nil {
		return "", gerr
	}
	return hash, err
}

// check checks a password against a stored hash when the bound on hashing
// lets it.
func (s *Service) check(ctx context.Context, encoded, password string) (ok bool, err error) {
	if gerr := s.hashing.do(ctx, func() { ok, err = CheckPassword(encoded, password) }); gerr != nil {
		return false, gerr
	}
	return ok, err
}

// NormalizeEmail trims and lower-cases an email address and checks that it
// is one, so that one person cannot hold two accounts by letter case.
func NormalizeEmail(email string) (string, error) {
	e := strings.ToLower(strings.TrimSpace(email))
	a, err := mail.ParseAddress(e)
	if err != nil || a.Address != e || len(e) > 254 {
		return "", amphi.Errorf(amphi.EInvalid, "%q is not an email address", email)
	}
	return e, nil
}

// CreateUser creates an account after checking the email and the password's
// strength. A taken email fails with amphi.EConflict.
func (s *Service) CreateUser(ctx context.Context, email, password string, role store.UserRole) (*store.User, error) {
	e, err := NormalizeEmail(email)
	if err != nil {
		return nil, err
	}
	if err := CheckPasswordStrength(password); err != nil {
		return nil, err
	}
	hash, err := s.hash(ctx, password)
	if err != nil {
		return nil, err
	}
	var id [10]byte
	rand.Read(id[:])
	u := &store.User{
		ID:           strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(id[:])),
		Email:        e,
		Role:         role,
		PasswordHash: hash,
		CreatedAt:    s.cfg.Now().UTC(),
	}
	if err := s.st.CreateUser(ctx, u); err != nil {
		return nil, err
	}
	return u, nil
}

// expiredKept is how long an expired session stays in the store so that
// its cookie is answered "session expired" rather than "not signed in".
const expiredKept = 30 * 24 * time.Hour

// errBadCredentials is the one answer to a failed sign-in, whatever failed,
// so that nobody learns which emails have accounts.
var errBadCredentials = amphi.Errorf(amphi.EUnauthorized, "wrong email or password")

// SignIn checks the email and password and opens a session. It returns the
// session's token, to give the client once, and when it expires. A wrong
// email or password fails with the same amphi.EUnauthorized error, after
// the same amount of hashing. When too many hashes are already running or
// waiting it fails with amphi.EUnavailable, known email or not.
func (s *Service) SignIn(ctx context.Context, email, password string) (*store.User, string, time.Time, error) {
	var zero time.Time
	if len(password) > 4*MaxPasswordLen { // bytes: at most 4 per character
		return nil, "", zero, errBadCredentials
	}
	u, err := s.st.UserByEmail(ctx, strings.ToLower(strings.TrimSpace(email)))
	switch code := amphi.ErrorCode(err); {
	case code == amphi.ENotFound:
		if _, err := s.check(ctx, s.dummy, password); err != nil {
			return nil, "", zero, err
		}
		return nil, "", zero, errBadCredentials
	case err != nil:
		return nil, "", zero, err
	}
	ok, err := s.check(ctx, u.PasswordHash, password)
	if amphi.ErrorCode(err) == amphi.EUnavailable {
		return nil, "", zero, err
	}
	if err != nil {
		return nil, "", zero, fmt.Errorf("account: sign in %q: %w", u.Email, err)
	}
	if !ok {
		return nil, "", zero, errBadCredentials
	}
	token, hash, err := store.NewToken()
	if err != nil {
		return nil, "", zero, err
	}
	now := s.cfg.Now().UTC()
	sess := &store.Session{Hash: hash, UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(s.cfg.SessionTTL)}
	if err := s.st.CreateSession(ctx, sess); err != nil {
		return nil, "", zero, err
	}
	// Sweep on sign-in rather than on a timer: sessions only pile up as
	// fast as people sign in.
	if _, err := s.st.DeleteSessionsExpiredBefore(ctx, now.Add(-expiredKept)); err != nil {
		return nil, "", zero, err
	}
	return u, token, sess.ExpiresAt, nil
}

// Authenticate returns the account whose session the token opened. An
// unknown token fails with amphi.EUnauthorized "not signed in", an expired
// one with amphi.EUnauthorized "session expired".
func (s *Service) Authenticate(ctx context.Context, token string) (*store.User, *store.Session, error) {
	sess, u, err := s.st.SessionUser(ctx, store.HashToken(token))
	if err != nil {
		return nil, nil, err
	}
	if !s.cfg.Now().Before(sess.ExpiresAt) {
		return nil, nil, amphi.Errorf(amphi.EUnauthorized, "session expired: sign in again")
	}
	return u, sess, nil
}

// SignOut ends the session the token opened, if any.
func (s *Service) SignOut(ctx context.Context, token string) error {
	return s.st.DeleteSession(ctx, store.HashToken(token))
}

// csrfLabel separates the CSRF derivation from any other use of the token.
const csrfLabel = "amphi csrf v1"

// CSRFToken returns the CSRF token of the session with the token: an HMAC
// of a fixed label keyed by the session token. It is bound to the session
// (another session's does not pass), needs no storage, and does not reveal
// the session token, so it can sit where scripts read it.
func CSRFToken(sessionToken string) string {
	m := hmac.New(sha256.New, []byte(sessionToken))
	m.Write([]byte(csrfLabel))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// CheckCSRF reports, in constant time, whether presented is the session's
// CSRF token.
func CheckCSRF(sessionToken, presented string) bool {
	if presented == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(CSRFToken(sessionToken)), []byte(presented)) == 1
}
