package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"testing"

	"github.com/amphi-audio/amphi"
)

func TestNewTokenIsRandomURLSafeAndHashed(t *testing.T) {
	seen := make(map[string]bool)
	for range 100 {
		tok, hash, err := NewToken()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			t.Fatalf("token %q is not unpadded base64url: %v", tok, err)
		}
		if len(raw) != 32 {
			t.Fatalf("token carries %d bytes, want 32", len(raw))
		}
		want := sha256.Sum256([]byte(tok))
		if !bytes.Equal(hash, want[:]) || !bytes.Equal(HashToken(tok), want[:]) {
			t.Fatalf("hash of %q is not the SHA-256 of the token string", tok)
		}
		if seen[tok] {
			t.Fatalf("token %q repeated", tok)
		}
		seen[tok] = true
	}
}

func BenchmarkToken(b *testing.B) {
	db, err := Open(b.Context(), b.TempDir()+"/amphi.db")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.CreateSpace(b.Context(), space("a", amphi.StateLive, t0)); err != nil {
		b.Fatal(err)
	}
	// A realistic table: many tokens besides the one looked up.
	var hash []byte
	for range 1000 {
		_, hash = mustToken(b)
		if err := db.CreateToken(b.Context(), &Token{Hash: hash, SpaceID: "a", Role: amphi.RoleSpeaker, CreatedAt: t0}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tokenRole(db, b.Context(), hash, "a"); err != nil {
			b.Fatal(err)
		}
	}
}
