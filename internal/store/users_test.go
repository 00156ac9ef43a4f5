package store

import (
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
)

func user(id, email string) *User {
	return &User{ID: id, Email: email, Role: UserHost, PasswordHash: "$argon2id$stub", CreatedAt: time.Unix(1700000000, 5).UTC()}
}

func TestUserRoundTripsAndEmailIsCaseInsensitive(t *testing.T) {
	db, _ := openTest(t)
	want := user("u1", "ada@example.org")
	if err := db.CreateUser(t.Context(), want); err != nil {
		t.Fatal(err)
	}
	got, err := db.UserByEmail(t.Context(), "ADA@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != want.ID || got.Email != want.Email || got.Role != want.Role || got.PasswordHash != want.PasswordHash || !got.CreatedAt.Equal(want.CreatedAt) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if n, err := db.CountUsers(t.Context()); err != nil || n != 1 {
		t.Fatalf("CountUsers = %d, %v; want 1", n, err)
	}
	_, err = db.UserByEmail(t.Context(), "bob@example.org")
	wantCode(t, err, amphi.ENotFound)
}

func TestCreateUserRefuses(t *testing.T) {
	db, _ := openTest(t)
	if err := db.CreateUser(t.Context(), user("u1", "ada@example.org")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		u    *User
		code string
	}{
		{"duplicate email in another case", user("u2", "Ada@Example.org"), amphi.EConflict},
		{"duplicate id", user("u1", "bob@example.org"), amphi.EConflict},
		{"missing id", user("", "c@example.org"), amphi.EInvalid},
		{"missing email", user("u3", ""), amphi.EInvalid},
		{"unknown role", &User{ID: "u4", Email: "d@example.org", Role: "listener", PasswordHash: "x", CreatedAt: time.Now()}, amphi.EInvalid},
		{"missing hash", &User{ID: "u5", Email: "e@example.org", Role: UserAdmin, CreatedAt: time.Now()}, amphi.EInvalid},
		{"zero time", &User{ID: "u6", Email: "f@example.org", Role: UserAdmin, PasswordHash: "x"}, amphi.EInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, db.CreateUser(t.Context(), tc.u), tc.code)
		})
	}
}

func TestSessionsAreFoundByHashOnly(t *testing.T) {
	db, _ := openTest(t)
	u := user("u1", "ada@example.org")
	if err := db.CreateUser(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	tok, hash := mustToken(t)
	now := time.Unix(1700000000, 0).UTC()
	s := &Session{Hash: hash, UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := db.CreateSession(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	wantCode(t, db.CreateSession(t.Context(), s), amphi.EConflict)
	_, h2 := mustToken(t)
	wantCode(t, db.CreateSession(t.Context(), &Session{Hash: h2, UserID: "nobody", CreatedAt: now, ExpiresAt: now}), amphi.ENotFound)
	wantCode(t, db.CreateSession(t.Context(), &Session{Hash: []byte("short"), UserID: u.ID, CreatedAt: now, ExpiresAt: now}), amphi.EInvalid)

	gs, gu, err := db.SessionUser(t.Context(), HashToken(tok))
	if err != nil {
		t.Fatal(err)
	}
	if gu.ID != u.ID || gs.UserID != u.ID || !gs.ExpiresAt.Equal(s.ExpiresAt) || !gs.CreatedAt.Equal(now) {
		t.Fatalf("got session %+v user %+v", gs, gu)
	}
	// The token itself is not a key: only its hash is stored.
	_, _, err = db.SessionUser(t.Context(), []byte(tok))
	wantCode(t, err, amphi.EUnauthorized)
	_, _, err = db.SessionUser(t.Context(), h2)
	wantCode(t, err, amphi.EUnauthorized)

	if n, err := db.DeleteSessionsExpiredBefore(t.Context(), now.Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("DeleteSessionsExpiredBefore(expiry) = %d, %v; want 0", n, err)
	}
	if n, err := db.DeleteSessionsExpiredBefore(t.Context(), now.Add(time.Hour+1)); err != nil || n != 1 {
		t.Fatalf("DeleteSessionsExpiredBefore(after expiry) = %d, %v; want 1", n, err)
	}
	if err := db.DeleteSession(t.Context(), hash); err != nil {
		t.Fatal(err)
	}
	_, _, err = db.SessionUser(t.Context(), hash)
	wantCode(t, err, amphi.EUnauthorized)
}
