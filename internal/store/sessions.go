package store

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/amphi-audio/amphi"
)

// Session is a signed-in account's session. The store knows it by the
// SHA-256 of its token (HashToken), never by the token itself.
type Session struct {
	Hash      []byte
	UserID    string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// CreateSession stores a session. It fails with amphi.ENotFound if there is
// no such user, amphi.EConflict if the hash is already stored, and
// amphi.EInvalid for a hash that is not a SHA-256 or a missing time.
func (db *DB) CreateSession(ctx context.Context, s *Session) error {
	if err := db.createSession(ctx, s); err != nil {
		return fmt.Errorf("store: create session for user %q: %w", s.UserID, err)
	}
	return nil
}

func (db *DB) createSession(ctx context.Context, s *Session) error {
	if len(s.Hash) != sha256.Size {
		return amphi.Errorf(amphi.EInvalid, "session hash is %d bytes, want %d", len(s.Hash), sha256.Size)
	}
	created, err := nanos("created_at", s.CreatedAt)
	if err != nil {
		return err
	}
	expires, err := nanos("expires_at", s.ExpiresAt)
	if err != nil {
		return err
	}
	n, err := db.exec(ctx, `INSERT INTO sessions (hash, user_id, created_at, expires_at)
		SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM users WHERE id = ?)
		ON CONFLICT (hash) DO NOTHING`,
		s.Hash, s.UserID, created, expires, s.UserID)
	if err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	var one int
	err = db.db.QueryRowContext(ctx, `SELECT 1 FROM users WHERE id = ?`, s.UserID).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return amphi.Errorf(amphi.ENotFound, "no user %q", s.UserID)
	case err != nil:
		return err
	}
	return amphi.Errorf(amphi.EConflict, "session already exists")
}

// SessionUser returns the session with the hash and its account, expired or
// not: the caller decides, so it can tell a client its session expired. It
// fails with amphi.EUnauthorized for an unknown hash. As in TokenRole, the
// row found is compared to the hash in constant time.
func (db *DB) SessionUser(ctx context.Context, hash []byte) (*Session, *User, error) {
	if len(hash) != sha256.Size {
		return nil, nil, noSession()
	}
	row := db.db.QueryRowContext(ctx, `SELECT s.hash, s.created_at, s.expires_at,
		u.id, u.email, u.role, u.password_hash, u.created_at
		FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.hash = ?`, hash)
	var (
		s              Session
		u              User
		role           string
		sCreated, sExp int64
		uCreated       int64
	)
	err := row.Scan(&s.Hash, &sCreated, &sExp, &u.ID, &u.Email, &role, &u.PasswordHash, &uCreated)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil, noSession()
	case err != nil:
		return nil, nil, fmt.Errorf("store: session: %w", err)
	}
	if subtle.ConstantTimeCompare(s.Hash, hash) != 1 {
		return nil, nil, noSession()
	}
	s.UserID, s.CreatedAt, s.ExpiresAt = u.ID, fromNanos(sCreated), fromNanos(sExp)
	u.Role, u.CreatedAt = UserRole(role), fromNanos(uCreated)
	return &s, &u, nil
}

func noSession() error {
	return fmt.Errorf("store: session: %w", amphi.Errorf(amphi.EUnauthorized, "not signed in"))
}

// DeleteSession removes the session with the hash, if there is one.
func (db *DB) DeleteSession(ctx context.Context, hash []byte) error {
	if _, err := db.exec(ctx, `DELETE FROM sessions WHERE hash = ?`, hash); err != nil {
		return fmt.Errorf("store: delete session: %w", err)
	}
	return nil
}

// DeleteSessionsExpiredBefore removes the sessions that expired before t and
// returns how many. Keeping recently expired ones a while lets a client be
// told "session expired" rather than "not signed in".
func (db *DB) DeleteSessionsExpiredBefore(ctx context.Context, t time.Time) (int64, error) {
	at, err := nanos("t", t)
	if err != nil {
		return 0, fmt.Errorf("store: delete expired sessions: %w", err)
	}
	n, err := db.exec(ctx, `DELETE FROM sessions WHERE expires_at < ?`, at)
	if err != nil {
		return 0, fmt.Errorf("store: delete expired sessions: %w", err)
	}
	return n, nil
}
