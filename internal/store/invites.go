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

// Invite is a one-time link that lets whoever holds it create an account
// with the role: how admins bring in hosts.
type Invite struct {
	// Hash is the SHA-256 of the invite's secret (HashToken).
	Hash      []byte
	Role      UserRole
	CreatedBy string // the inviting admin's id
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    *time.Time
}

// CreateInvite stores an invite. It fails with amphi.EInvalid for a bad
// hash, role or time, amphi.EConflict for a hash already stored.
func (db *DB) CreateInvite(ctx context.Context, inv *Invite) error {
	if err := db.createInvite(ctx, inv); err != nil {
		return fmt.Errorf("store: create invite: %w", err)
	}
	return nil
}

func (db *DB) createInvite(ctx context.Context, inv *Invite) error {
	if len(inv.Hash) != sha256.Size {
		return amphi.Errorf(amphi.EInvalid, "invite hash is %d bytes, want %d", len(inv.Hash), sha256.Size)
	}
	if !validUserRole(inv.Role) {
		return amphi.Errorf(amphi.EInvalid, "unknown account role %q", inv.Role)
	}
	created, err := nanos("created_at", inv.CreatedAt)
	if err != nil {
		return err
	}
	expires, err := nanos("expires_at", inv.ExpiresAt)
	if err != nil {
		return err
	}
	n, err := db.exec(ctx, `INSERT INTO invites (hash, role, created_by, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (hash) DO NOTHING`,
		inv.Hash, string(inv.Role), nullString(inv.CreatedBy), created, expires)
	if err != nil {
		return err
	}
	if n == 0 {
		return amphi.Errorf(amphi.EConflict, "invite already exists")
	}
	return nil
}

// UseInvite marks the invite with the hash used at the time given and
// returns it. Only one caller can use an invite, even concurrently. It
// fails with amphi.EUnauthorized for an unknown invite and amphi.EGone, saying
// which, for one already used or expired.
func (db *DB) UseInvite(ctx context.Context, hash []byte, at time.Time) (*Invite, error) {
	inv, err := db.useInvite(ctx, hash, at)
	if err != nil {
		return nil, fmt.Errorf("store: use invite: %w", err)
	}
	return inv, nil
}

func (db *DB) useInvite(ctx context.Context, hash []byte, at time.Time) (*Invite, error) {
	when, err := nanos("used_at", at)
	if err != nil {
		return nil, err
	}
	if len(hash) != sha256.Size {
		return nil, amphi.Errorf(amphi.EUnauthorized, "wrong invite link")
	}
	// The conditional update is the single-use guarantee: of two racing
	// callers, only one changes the row.
	n, err := db.exec(ctx, `UPDATE invites SET used_at = ? WHERE hash = ? AND used_at IS NULL AND expires_at > ?`, when, hash, when)
	if err != nil {
		return nil, err
	}
	inv, err := db.invite(ctx, hash)
	if err != nil {
		return nil, err
	}
	if n == 1 {
		return inv, nil
	}
	if inv.UsedAt != nil {
		return nil, amphi.Errorf(amphi.EGone, "this invite was already used: sign in instead")
	}
	return nil, amphi.Errorf(amphi.EGone, "this invite expired at %s: ask an admin for a new one", inv.ExpiresAt.Format(time.RFC3339))
}

// ReleaseInvite makes a used invite usable again: for when the account it
// was used for could not be created.
func (db *DB) ReleaseInvite(ctx context.Context, hash []byte) error {
	if _, err := db.exec(ctx, `UPDATE invites SET used_at = NULL WHERE hash = ?`, hash); err != nil {
		return fmt.Errorf("store: release invite: %w", err)
	}
	return nil
}

func (db *DB) invite(ctx context.Context, hash []byte) (*Invite, error) {
	var (
		inv              Invite
		role             string
		by               sql.NullString
		created, expires int64
		used             sql.NullInt64
	)
	err := db.db.QueryRowContext(ctx, `SELECT hash, role, created_by, created_at, expires_at, used_at FROM invites WHERE hash = ?`, hash).
		Scan(&inv.Hash, &role, &by, &created, &expires, &used)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && subtle.ConstantTimeCompare(inv.Hash, hash) != 1) {
		return nil, amphi.Errorf(amphi.EUnauthorized, "wrong invite link")
	}
	if err != nil {
		return nil, err
	}
	inv.Role, inv.CreatedBy = UserRole(role), by.String
	inv.CreatedAt, inv.ExpiresAt, inv.UsedAt = fromNanos(created), fromNanos(expires), fromNullNanos(used)
	return &inv, nil
}
