package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
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
	case amphi.RoleHost, amphi.RoleSpeaker:
		return true
	}
	return false
}

// CreateToken records that the token with the hash grants role in the space.
// It fails with amphi.ENotFound if there is no such space, amphi.EConflict if
// the hash is already stored, and amphi.EInvalid for a hash that is not a
// SHA-256 or an unknown role.
func (db *DB) CreateToken(ctx context.Context, hash []byte, spaceID string, role amphi.Role, createdAt time.Time) error {
	if err := db.createToken(ctx, hash, spaceID, role, createdAt); err != nil {
		return fmt.Errorf("store: create token for space %q: %w", spaceID, err)
	}
	return nil
}

func (db *DB) createToken(ctx context.Context, hash []byte, spaceID string, role amphi.Role, createdAt time.Time) error {
	if len(hash) != sha256.Size {
		return amphi.Errorf(amphi.EInvalid, "token hash is %d bytes, want %d", len(hash), sha256.Size)
	}
	if !validRole(role) {
		return amphi.Errorf(amphi.EInvalid, "unknown role %q", role)
	}
	created, err := nanos("created_at", createdAt)
	if err != nil {
		return err
	}
	// Insert only if the space exists, and never replace: zero rows tells us
	// something is off without parsing driver errors. The foreign key still
	// guards the table.
	n, err := db.exec(ctx, `INSERT INTO tokens (hash, space_id, role, created_at)
		SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM spaces WHERE id = ?)
		ON CONFLICT (hash) DO NOTHING`,
		hash, spaceID, string(role), created, spaceID)
	if err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	var one int
	err = db.db.QueryRowContext(ctx, `SELECT 1 FROM spaces WHERE id = ?`, spaceID).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return amphi.Errorf(amphi.ENotFound, "no space %q", spaceID)
	case err != nil:
		return err
	}
	return amphi.Errorf(amphi.EConflict, "token already exists")
}

const tokenRoleSQL = `SELECT hash, role FROM tokens WHERE hash = ? AND space_id = ?`

// TokenRole returns the role the token with the hash grants in the space. It
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
func (db *DB) TokenRole(ctx context.Context, hash []byte, spaceID string) (amphi.Role, error) {
	if len(hash) != sha256.Size {
		return "", unauthorized(spaceID)
	}
	var (
		stored []byte
		role   string
	)
	err := db.tokenRole.QueryRowContext(ctx, hash, spaceID).Scan(&stored, &role)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", unauthorized(spaceID)
	case err != nil:
		return "", fmt.Errorf("store: token role in space %q: %w", spaceID, err)
	}
	if subtle.ConstantTimeCompare(stored, hash) != 1 {
		return "", unauthorized(spaceID)
	}
	return amphi.Role(role), nil
}

// unauthorized is TokenRole's refusal. It says the same for every cause so a
// client cannot tell an unknown token from one for another space.
func unauthorized(spaceID string) error {
	return fmt.Errorf("store: token role in space %q: %w", spaceID,
		amphi.Errorf(amphi.EUnauthorized, "invalid token for this space"))
}
