package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/amphi-audio/amphi"
)

// UserRole is what an account may do on the server. Accounts are for the
// people who run spaces; listeners never need one.
type UserRole string

// Account roles. An admin is a host who also manages the server.
const (
	UserAdmin UserRole = "admin"
	UserHost  UserRole = "host"
)

// User is an account: a host or an admin who signs in with an email and a
// password.
type User struct {
	ID    string   `json:"id"`
	Email string   `json:"email"`
	Role  UserRole `json:"role"`
	// PasswordHash is the encoded password hash (see package account);
	// never the password, never sent to clients.
	PasswordHash string    `json:"-"`
	CreatedAt    time.Time `json:"created_at"`
}

func validUserRole(r UserRole) bool { return r == UserAdmin || r == UserHost }

const userCols = `id, email, role, password_hash, created_at`

// CreateUser stores a new account. The caller sets every field, with the
// email already normalised. It fails with amphi.EConflict if the email (in
// any letter case) or the ID is taken, and amphi.EInvalid for a missing
// field or an unknown role.
func (db *DB) CreateUser(ctx context.Context, u *User) error {
	if err := db.createUser(ctx, u); err != nil {
		return fmt.Errorf("store: create user %q: %w", u.Email, err)
	}
	return nil
}

func (db *DB) createUser(ctx context.Context, u *User) error {
	switch {
	case u.ID == "":
		return amphi.Errorf(amphi.EInvalid, "user id is missing")
	case u.Email == "":
		return amphi.Errorf(amphi.EInvalid, "email is missing")
	case u.PasswordHash == "":
		return amphi.Errorf(amphi.EInvalid, "password hash is missing")
	case !validUserRole(u.Role):
		return amphi.Errorf(amphi.EInvalid, "unknown user role %q", u.Role)
	}
	created, err := nanos("created_at", u.CreatedAt)
	if err != nil {
		return err
	}
	// DO NOTHING on either unique key: no row means a duplicate, without
	// parsing the driver's constraint errors.
	n, err := db.exec(ctx, `INSERT INTO users (`+userCols+`) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		u.ID, u.Email, string(u.Role), u.PasswordHash, created)
	if err != nil {
		return err
	}
	if n == 0 {
		return amphi.Errorf(amphi.EConflict, "an account with the email %q already exists", u.Email)
	}
	return nil
}

// UserByEmail returns the account with the email, in any letter case, or an
// error with code amphi.ENotFound.
func (db *DB) UserByEmail(ctx context.Context, email string) (*User, error) {
	u, err := scanUser(db.db.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE email = ?`, email))
	if errors.Is(err, sql.ErrNoRows) {
		err = amphi.Errorf(amphi.ENotFound, "no account %q", email)
	}
	if err != nil {
		return nil, fmt.Errorf("store: user by email: %w", err)
	}
	return u, nil
}

// CountUsers returns how many accounts exist.
func (db *DB) CountUsers(ctx context.Context) (int, error) {
	var n int
	if err := db.db.QueryRowContext(ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count users: %w", err)
	}
	return n, nil
}

func scanUser(row interface{ Scan(...any) error }) (*User, error) {
	var (
		u       User
		role    string
		created int64
	)
	if err := row.Scan(&u.ID, &u.Email, &role, &u.PasswordHash, &created); err != nil {
		return nil, err
	}
	u.Role, u.CreatedAt = UserRole(role), fromNanos(created)
	return &u, nil
}
