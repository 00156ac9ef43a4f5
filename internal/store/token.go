package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/amphi-audio/amphi"
)

// tokenBytes is the entropy of a token: 256 bits, beyond guessing.
const tokenBytes = 32

// NewToken returns a fresh bearer token and its hash. The token is 32 bytes
// from crypto/rand in unpadded base64url, safe in URLs and headers; give it
// to the bearer once and store only the hash (CreateToken).
func NewToken() (token string, hash []byte, err error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("store: new token: %w", err)
	}
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, HashToken(token), nil
}

// HashToken returns the SHA-256 of the token string, the form in which the
// store keeps and looks up tokens. A plain fast hash is enough because tokens
// carry 256 random bits: there is no dictionary to slow an attacker down on,
// unlike with passwords.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

func validRole(r amphi.Role) bool {
	switch r {
	case amphi.RoleHost, amphi.RoleCohost, amphi.RoleSpeaker:
		return true
	}
	return false
}

// Token is what a bearer token grants: a role in one space, for speakers
// with a name listeners see, until it expires or is revoked.
type Token struct {
	// Hash is the SHA-256 of the token (HashToken): the token itself is
	// never stored.
	Hash    []byte
	SpaceID string
	Role    amphi.Role
	// Name is the speaker's name on stage; "" for none.
	Name      string
	CreatedAt time.Time
	// ExpiresAt is when the token stops working; nil for never.
	ExpiresAt *time.Time
	// RevokedAt is when the host took the token back; nil if never.
	RevokedAt *time.Time
}

// SpeakerID is the token's stable public id on the stage: a prefix of its
// hash, which names the speaker across reconnections without revealing
// anything that helps forge the token.
func (t *Token) SpeakerID() string { return hex.EncodeToString(t.Hash[:8]) }

// CreateToken stores a token. The caller sets Hash, SpaceID, Role and
// CreatedAt, optionally Name and ExpiresAt. It fails with amphi.ENotFound if
// there is no such space, amphi.EConflict if the hash is already stored, and
// amphi.EInvalid for a hash that is not a SHA-256, an unknown role or a zero
// time.
func (db *DB) CreateToken(ctx context.Context, t *Token) error {
	if err := db.createToken(ctx, t); err != nil {
		return fmt.Errorf("store: create token for space %q: %w", t.SpaceID, err)
	}
	return nil
}

func (db *DB) createToken(ctx context.Context, t *Token) error {
	if len(t.Hash) != sha256.Size {
		return amphi.Errorf(amphi.EInvalid, "token hash is %d bytes, want %d", len(t.Hash), sha256.Size)
	}
	if !validRole(t.Role) {
		return amphi.Errorf(amphi.EInvalid, "unknown role %q", t.Role)
	}
	created, err := nanos("created_at", t.CreatedAt)
	if err != nil {
		return err
	}
	expires, err := nullNanos("expires_at", t.ExpiresAt)
	if err != nil {
		return err
	}
	// Insert only if the space exists, and never replace: zero rows tells us
	// something is off without parsing driver errors. The foreign key still
	// guards the table.
	n, err := db.exec(ctx, `INSERT INTO tokens (hash, space_id, role, name, created_at, expires_at)
		SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM spaces WHERE id = ?)
		ON CONFLICT (hash) DO NOTHING`,
		t.Hash, t.SpaceID, string(t.Role), t.Name, created, expires, t.SpaceID)
	if err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	var one int
	err = db.db.QueryRowContext(ctx, `SELECT 1 FROM spaces WHERE id = ?`, t.SpaceID).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return amphi.Errorf(amphi.ENotFound, "no space %q", t.SpaceID)
	case err != nil:
		return err
	}
	return amphi.Errorf(amphi.EConflict, "token already exists")
}

const tokenSQL = `SELECT hash, role, name, created_at, expires_at, revoked_at FROM tokens WHERE hash = ? AND space_id = ?`

// Token returns the token with the hash in the space, expired and revoked
// ones included: the caller decides, so it can tell the bearer why. It
// fails with amphi.EUnauthorized, saying no more, if the token is unknown or
// belongs to another space.
//
// The lookup is by hash through the primary-key index, whose comparisons
// take time that depends on the bytes compared. That does not leak the
// secret: what is compared is the SHA-256 of the presented token, so an
// attacker learning how many leading bytes of a hash matched learns nothing
// that brings them closer to a token that hashes to it. The row found is then
// compared to the presented hash with subtle.ConstantTimeCompare anyway, so
// acceptance never rests on the database's comparison semantics alone.
func (db *DB) Token(ctx context.Context, hash []byte, spaceID string) (*Token, error) {
	if len(hash) != sha256.Size {
		return nil, unauthorized(spaceID)
	}
	var (
		t                tokenRow
		expires, revoked sql.NullInt64
	)
	err := db.token.QueryRowContext(ctx, hash, spaceID).Scan(&t.Hash, &t.role, &t.Name, &t.created, &expires, &revoked)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, unauthorized(spaceID)
	case err != nil:
		return nil, fmt.Errorf("store: token in space %q: %w", spaceID, err)
	}
	if subtle.ConstantTimeCompare(t.Hash, hash) != 1 {
		return nil, unauthorized(spaceID)
	}
	t.SpaceID, t.Role, t.CreatedAt = spaceID, amphi.Role(t.role), fromNanos(t.created)
	t.ExpiresAt, t.RevokedAt = fromNullNanos(expires), fromNullNanos(revoked)
	return &t.Token, nil
}

type tokenRow struct {
	Token
	role    string
	created int64
}

// RevokeToken takes back the tokens of the speaker with the id (SpeakerID)
// in the space, at the time given. It fails with amphi.ENotFound if the
// space has no such speaker's token.
func (db *DB) RevokeToken(ctx context.Context, spaceID, speakerID string, at time.Time) error {
	when, err := nanos("revoked_at", at)
	if err != nil {
		return err
	}
	// Few tokens per space: a scan of the space's rows by its index.
	n, err := db.exec(ctx, `UPDATE tokens SET revoked_at = coalesce(revoked_at, ?)
		WHERE space_id = ? AND lower(hex(substr(hash, 1, 8))) = ?`, when, spaceID, speakerID)
	if err != nil {
		return fmt.Errorf("store: revoke token in space %q: %w", spaceID, err)
	}
	if n == 0 {
		return amphi.Errorf(amphi.ENotFound, "no speaker %q in space %q", speakerID, spaceID)
	}
	return nil
}

// unauthorized is Token's refusal. It says the same for every cause so a
// client cannot tell an unknown token from one for another space.
func unauthorized(spaceID string) error {
	return fmt.Errorf("store: token in space %q: %w", spaceID,
		amphi.Errorf(amphi.EUnauthorized, "invalid token for this space"))
}
