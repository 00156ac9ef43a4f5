package account

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/store"
)

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func newService(t *testing.T) (*Service, *clock) {
	t.Helper()
	db, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "amphi.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c := &clock{now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	cfg := DefaultConfig()
	cfg.Params, cfg.Now, cfg.SessionTTL = cheap, c.Now, time.Hour
	s, err := New(cfg, db)
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := amphi.ErrorCode(err); got != code {
		t.Fatalf("error code %q (%v), want %q", got, err, code)
	}
}

func TestCreateUserRefusesWeakPasswordsBadEmailsAndDuplicates(t *testing.T) {
	s, _ := newService(t)
	u, err := s.CreateUser(t.Context(), "  Ada@Example.org ", "a long enough password", store.UserAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if u.Email != "ada@example.org" || u.Role != store.UserAdmin || u.PasswordHash == "a long enough password" {
		t.Fatalf("user %+v", u)
	}
	for _, tc := range []struct {
		name, email, password string
		code                  string
	}{
		{"weak password", "bob@example.org", "short", amphi.EInvalid},
		{"not an email", "bob", "a long enough password", amphi.EInvalid},
		{"display name", "Bob <bob@example.org>", "a long enough password", amphi.EInvalid},
		{"duplicate in another case", "ADA@example.org", "another long password", amphi.EConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.CreateUser(t.Context(), tc.email, tc.password, store.UserHost)
			wantCode(t, err, tc.code)
		})
	}
}

func TestSignInSaysTheSameForUnknownEmailAndWrongPassword(t *testing.T) {
	s, _ := newService(t)
	if _, err := s.CreateUser(t.Context(), "ada@example.org", "a long enough password", store.UserHost); err != nil {
		t.Fatal(err)
	}
	before := s.HashStats().Hashes
	_, _, _, errWrong := s.SignIn(t.Context(), "ada@example.org", "not the password!")
	afterWrong := s.HashStats().Hashes
	_, _, _, errUnknown := s.SignIn(t.Context(), "nobody@example.org", "a long enough password")
	if afterWrong-before != 1 || s.HashStats().Hashes-afterWrong != 1 {
		t.Fatalf("hashes: %d for a wrong password, %d for an unknown email; want one each",
			afterWrong-before, s.HashStats().Hashes-afterWrong)
	}
	wantCode(t, errWrong, amphi.EUnauthorized)
	wantCode(t, errUnknown, amphi.EUnauthorized)
	if amphi.ErrorMessage(errWrong) != amphi.ErrorMessage(errUnknown) {
		t.Fatalf("messages differ: %q vs %q", amphi.ErrorMessage(errWrong), amphi.ErrorMessage(errUnknown))
	}
	u, tok, exp, err := s.SignIn(t.Context(), "ADA@example.org", "a long enough password")
	if err != nil {
		t.Fatal(err)
	}
	if u.Email != "ada@example.org" || tok == "" || exp.IsZero() {
		t.Fatalf("SignIn = %+v, %q, %v", u, tok, exp)
	}
}

func TestSessionExpiresAndSaysSo(t *testing.T) {
	s, c := newService(t)
	if _, err := s.CreateUser(t.Context(), "ada@example.org", "a long enough password", store.UserHost); err != nil {
		t.Fatal(err)
	}
	_, tok, exp, err := s.SignIn(t.Context(), "ada@example.org", "a long enough password")
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(c.now.Add(time.Hour)) {
		t.Fatalf("expires %v, want an hour from now", exp)
	}
	if _, _, err := s.Authenticate(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	c.now = exp
	_, _, err = s.Authenticate(t.Context(), tok)
	wantCode(t, err, amphi.EUnauthorized)
	if msg := amphi.ErrorMessage(err); msg != "session expired: sign in again" {
		t.Fatalf("message %q", msg)
	}
	_, _, err = s.Authenticate(t.Context(), "made-up")
	if msg := amphi.ErrorMessage(err); msg != "not signed in" {
		t.Fatalf("unknown token: message %q", msg)
	}
	// A month after expiry the next sign-in sweeps the session away.
	c.now = exp.Add(expiredKept + time.Second)
	if _, _, _, err := s.SignIn(t.Context(), "ada@example.org", "a long enough password"); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Authenticate(t.Context(), tok)
	if msg := amphi.ErrorMessage(err); msg != "not signed in" {
		t.Fatalf("long expired: message %q", msg)
	}
	_, tok, _, _ = s.SignIn(t.Context(), "ada@example.org", "a long enough password")
	if err := s.SignOut(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Authenticate(t.Context(), tok)
	if msg := amphi.ErrorMessage(err); msg != "not signed in" {
		t.Fatalf("after sign-out: message %q", msg)
	}
}

func TestCSRFTokenIsBoundToItsSession(t *testing.T) {
	a, b := "session-a", "session-b"
	for _, tc := range []struct {
		session, presented string
		want               bool
	}{
		{a, CSRFToken(a), true},
		{a, CSRFToken(b), false},
		{a, "", false},
		{a, a, false},
	} {
		if got := CheckCSRF(tc.session, tc.presented); got != tc.want {
			t.Errorf("CheckCSRF(%q, %q) = %v, want %v", tc.session, tc.presented, got, tc.want)
		}
	}
}
