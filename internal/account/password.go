package account

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/amphi-audio/amphi"
)

// Password length limits, in characters. Twelve is the least NIST SP 800-63B
// rev. 4 accepts for a password used alone; the upper bound keeps a
// sign-in request from buying seconds of hashing with a megabyte password.
const (
	MinPasswordLen = 12
	MaxPasswordLen = 256
)

// Params are argon2id's cost parameters. They are encoded into every hash,
// so raising them later only affects new hashes and old ones still verify.
type Params struct {
	// Time is the number of passes over memory. Zero means 2.
	Time uint32
	// Memory is in KiB. Zero means 19 MiB.
	Memory uint32
	// Threads is the parallelism. Zero means 1.
	Threads uint8
}

// DefaultParams returns OWASP's first recommended argon2id setting
// (m=19 MiB, t=2, p=1): about 30-60 ms a hash on one core here, cheap
// enough for a sign-in, costly for an offline guesser.
func DefaultParams() Params { return Params{Time: 2, Memory: 19 * 1024, Threads: 1} }

func (p Params) withDefaults() Params {
	d := DefaultParams()
	if p.Time == 0 {
		p.Time = d.Time
	}
	if p.Memory == 0 {
		p.Memory = d.Memory
	}
	if p.Threads == 0 {
		p.Threads = d.Threads
	}
	return p
}

// Lengths of the salt and the derived key, in bytes.
const (
	saltLen = 16
	keyLen  = 32
)

// CheckPasswordStrength refuses passwords too short or too long to accept,
// with a message for the person choosing one.
func CheckPasswordStrength(password string) error {
	n := utf8.RuneCountInString(password)
	switch {
	case n < MinPasswordLen:
		return amphi.Errorf(amphi.EInvalid, "the password is too weak: use at least %d characters (it has %d)", MinPasswordLen, n)
	case n > MaxPasswordLen:
		return amphi.Errorf(amphi.EInvalid, "the password is longer than %d characters", MaxPasswordLen)
	}
	return nil
}

// HashPassword returns the argon2id hash of password with a fresh random
// salt, in the PHC string format other tools read:
// $argon2id$v=19$m=MEMORY,t=TIME,p=THREADS$SALT$KEY (unpadded base64).
func HashPassword(password string, p Params) (string, error) {
	p = p.withDefaults()
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("account: hash password: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// maxMemory bounds the memory parameter a stored hash may ask for (1 GiB),
// so a corrupted or hostile row cannot make a check allocate without limit.
const maxMemory = 1 << 20

// CheckPassword reports whether password matches the encoded hash from
// HashPassword, comparing keys in constant time. An error means the hash
// itself is malformed.
func CheckPassword(encoded, password string) (bool, error) {
	p, salt, key, err := decodeHash(encoded)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

func decodeHash(encoded string) (p Params, salt, key []byte, err error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, fmt.Errorf("account: password hash is not argon2id")
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return p, nil, nil, fmt.Errorf("account: password hash has version %q, want %d", parts[2], argon2.Version)
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return p, nil, nil, fmt.Errorf("account: password hash parameters %q: %w", parts[3], err)
	}
	if p.Memory == 0 || p.Memory > maxMemory || p.Time == 0 || p.Threads == 0 {
		return p, nil, nil, fmt.Errorf("account: password hash parameters %q out of range", parts[3])
	}
	if salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(salt) == 0 {
		return p, nil, nil, fmt.Errorf("account: password hash salt is malformed")
	}
	if key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(key) < 16 {
		return p, nil, nil, fmt.Errorf("account: password hash key is malformed")
	}
	return p, salt, key, nil
}
