package account

import (
	"strings"
	"testing"

	"github.com/amphi-audio/amphi"
)

// cheap keeps tests fast; the parameters are carried in each hash anyway.
var cheap = Params{Time: 1, Memory: 64, Threads: 1}

func TestHashPasswordEncodesItsParametersAndVerifies(t *testing.T) {
	h, err := HashPassword("correct horse battery", DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q does not carry the default parameters", h)
	}
	h2, _ := HashPassword("correct horse battery", DefaultParams())
	if h == h2 {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
	for _, tc := range []struct {
		password string
		want     bool
	}{
		{"correct horse battery", true},
		{"correct horse batterY", false},
		{"", false},
	} {
		ok, err := CheckPassword(h, tc.password)
		if err != nil || ok != tc.want {
			t.Errorf("CheckPassword(%q) = %v, %v; want %v", tc.password, ok, err, tc.want)
		}
	}
}

func TestCheckPasswordRefusesMalformedHashes(t *testing.T) {
	good, _ := HashPassword("x", cheap)
	parts := strings.Split(good, "$")
	for _, h := range []string{
		"",
		"plain",
		"$2a$10$bcryptbcryptbcryptbcryptbcryptbcryptbcryptbcryptbcry",
		strings.Replace(good, "argon2id", "argon2i", 1),
		strings.Replace(good, "v=19", "v=16", 1),
		strings.Replace(good, parts[3], "m=0,t=1,p=1", 1),
		strings.Replace(good, parts[3], "m=4294967295,t=1,p=1", 1),
		strings.Replace(good, parts[3], "m=64,t=0,p=1", 1),
		strings.Replace(good, parts[4], "!!", 1),
		strings.Replace(good, parts[5], "", 1),
	} {
		if ok, err := CheckPassword(h, "x"); err == nil || ok {
			t.Errorf("CheckPassword(%q) = %v, %v; want an error", h, ok, err)
		}
	}
}

func TestCheckPasswordStrength(t *testing.T) {
	for _, tc := range []struct {
		password string
		ok       bool
	}{
		{"", false},
		{"elevenchars", false},
		{"twelve chars", true},
		{"ééééééééééé", false}, // 11 characters, 22 bytes
		{"éééééééééééé", true},
		{strings.Repeat("a", MaxPasswordLen), true},
		{strings.Repeat("a", MaxPasswordLen+1), false},
	} {
		err := CheckPasswordStrength(tc.password)
		if (err == nil) != tc.ok {
			t.Errorf("CheckPasswordStrength(%q) = %v, want ok %v", tc.password, err, tc.ok)
		}
		if err != nil && amphi.ErrorCode(err) != amphi.EInvalid {
			t.Errorf("CheckPasswordStrength(%q) code %q, want invalid", tc.password, amphi.ErrorCode(err))
		}
	}
}

// FuzzCheckPassword feeds stored-hash strings to the decoder: whatever a
// damaged row holds, checking it must not panic or accept a wrong password.
func FuzzCheckPassword(f *testing.F) {
	good, _ := HashPassword("secret", cheap)
	f.Add(good)
	f.Add("$argon2id$v=19$m=64,t=1,p=1$c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5")
	f.Add("$argon2id$v=19$m=64,t=1,p=1$$")
	f.Fuzz(func(t *testing.T, h string) {
		if p, _, _, err := decodeHash(h); err == nil && (p.Memory > 1024 || p.Time > 4 || p.Threads > 4) {
			t.Skip() // valid, but too costly to run at fuzzing speed
		}
		ok, err := CheckPassword(h, "not the secret")
		if ok && err == nil && h == good {
			t.Fatal("accepted a wrong password")
		}
	})
}

func BenchmarkHashPasswordDefault(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		HashPassword("correct horse battery", DefaultParams())
	}
}
