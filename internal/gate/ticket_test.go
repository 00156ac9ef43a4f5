package gate

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
)

var t0 = time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)

func testKey(b byte) []byte { return []byte(strings.Repeat(string(rune('a'+b)), MinKeyLen)) }

func newTestSigner(t testing.TB) *Signer {
	t.Helper()
	s, err := NewSigner(testKey(0))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustIssue(t testing.TB, s *Signer, tk Ticket) string {
	t.Helper()
	tok, err := s.Issue(tk)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestTicketRoundTripsAndIsCompact(t *testing.T) {
	s := newTestSigner(t)
	for _, tc := range []struct {
		name  string
		space string
		tier  Tier
	}{
		{"anonymous", "k3v7q2m9x4b8n6c1", TierAnonymous},
		{"signed in", "a", TierSignedIn},
		{"invited", "space-with-dashes_and_underscores", TierInvited},
		{"staff, longest space", strings.Repeat("s", MaxSpaceLen), TierStaff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := Ticket{Space: tc.space, Place: PlaceID(NewListenerID()), Tier: tc.tier, Expires: t0.Add(time.Hour)}
			tok := mustIssue(t, s, in)
			if len(tok) > MaxTokenLen || len(tok) > 120 {
				t.Errorf("token is %d characters, want at most %d", len(tok), MaxTokenLen)
			}
			if strings.ContainsAny(tok, "+/=") {
				t.Errorf("token %q is not URL-safe", tok)
			}
			got, err := s.Verify(tok, tc.space, t0)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.Space != in.Space || got.Place != in.Place || got.Tier != in.Tier || !got.Expires.Equal(in.Expires) {
				t.Errorf("Verify = %+v, want %+v", got, in)
			}
		})
	}
	if tok := mustIssue(t, s, Ticket{Space: "k3v7q2m9x4b8n6c1", Place: PlaceID(NewListenerID()), Expires: t0}); len(tok) != 76 {
		t.Errorf("ticket for a 16-character space is %d characters, want 76", len(tok))
	}
}

func TestTicketRefusedWithReason(t *testing.T) {
	s := newTestSigner(t)
	const space = "k3v7q2m9x4b8n6c1"
	good := mustIssue(t, s, Ticket{Space: space, Place: PlaceID(NewListenerID()), Tier: TierSignedIn, Expires: t0.Add(time.Minute)})
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	alter := func(i int, f func(byte) byte) string {
		b := append([]byte(nil), raw...)
		b[i] = f(b[i])
		return base64.RawURLEncoding.EncodeToString(b)
	}
	other, _ := NewSigner(testKey(1))
	otherTok := mustIssue(t, other, Ticket{Space: space, Place: PlaceID(NewListenerID()), Expires: t0.Add(time.Minute)})
	chal, _ := s.IssueChallenge(space, 8, t0)
	for _, tc := range []struct {
		name, tok, space string
		now              time.Time
		want             cause
		code             string
	}{
		{"forged MAC", alter(len(raw)-1, func(b byte) byte { return b ^ 1 }), space, t0, rBadSignature, amphi.EUnauthorized},
		{"tier raised", alter(offParam, func(byte) byte { return byte(TierStaff) }), space, t0, rBadSignature, amphi.EUnauthorized},
		{"expiry extended", alter(offExp, func(b byte) byte { return b + 1 }), space, t0, rBadSignature, amphi.EUnauthorized},
		{"listener swapped", alter(offID, func(b byte) byte { return b ^ 0x80 }), space, t0, rBadSignature, amphi.EUnauthorized},
		{"expired", good, space, t0.Add(time.Minute), rExpired, amphi.EUnauthorized},
		{"other space", good, "another-space", t0, rWrongSpace, amphi.EForbidden},
		{"unknown key", otherTok, space, t0, rUnknownKey, amphi.EUnauthorized},
		{"empty", "", space, t0, rMalformed, amphi.EUnauthorized},
		{"too short", good[:40], space, t0, rMalformed, amphi.EUnauthorized},
		{"too long", good + strings.Repeat("A", MaxTokenLen), space, t0, rMalformed, amphi.EUnauthorized},
		{"truncated by one", good[:len(good)-1], space, t0, rMalformed, amphi.EUnauthorized},
		{"padding", good + "==", space, t0, rMalformed, amphi.EUnauthorized},
		{"not base64url", strings.Replace(good, good[5:6], "+", 1), space, t0, rMalformed, amphi.EUnauthorized},
		{"a challenge", chal, space, t0, rMalformed, amphi.EUnauthorized},
		{"space length lies", alter(offSpaceLen, func(b byte) byte { return b - 1 }), space, t0, rMalformed, amphi.EUnauthorized},
		{"issuer altered", alter(offReserved, func(byte) byte { return 1 }), space, t0, rBadSignature, amphi.EUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Verify(tc.tok, tc.space, tc.now)
			if want := ticketRefusals[tc.want]; err != want {
				t.Fatalf("err %v, want %v", err, want)
			}
			if got := amphi.ErrorCode(err); got != tc.code {
				t.Errorf("ErrorCode = %q, want %q", got, tc.code)
			}
		})
	}
}

func TestKeyRotationKeepsPreviousTicketsValid(t *testing.T) {
	s := newTestSigner(t)
	old := mustIssue(t, s, Ticket{Space: "sp", Place: PlaceID(NewListenerID()), Expires: t0.Add(time.Hour)})
	if err := s.Rotate(testKey(1)); err != nil {
		t.Fatal(err)
	}
	fresh := mustIssue(t, s, Ticket{Space: "sp", Place: PlaceID(NewListenerID()), Expires: t0.Add(time.Hour)})
	for _, tok := range []string{old, fresh} {
		if _, err := s.Verify(tok, "sp", t0); err != nil {
			t.Errorf("after one rotation: %v", err)
		}
	}
	if err := s.Rotate(testKey(2)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(old, "sp", t0); err != ticketRefusals[rUnknownKey] {
		t.Errorf("after two rotations the first key's ticket: %v, want %v", err, ticketRefusals[rUnknownKey])
	}
	if _, err := s.Verify(fresh, "sp", t0); err != nil {
		t.Errorf("after two rotations the second key's ticket: %v", err)
	}
	// A node configured with the new key and the old one as previous
	// accepts both, as a restarted cluster member would.
	s2, err := NewSigner(testKey(2), testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Verify(fresh, "sp", t0); err != nil {
		t.Errorf("configured previous key: %v", err)
	}
}

func TestSignerRefusesShortKeys(t *testing.T) {
	if _, err := NewSigner(make([]byte, MinKeyLen-1)); err == nil {
		t.Error("NewSigner accepted a short key")
	}
	if _, err := NewSigner(NewKey(), []byte("short")); err == nil {
		t.Error("NewSigner accepted a short previous key")
	}
}

func TestIssueRefusesWhatATicketCannotHold(t *testing.T) {
	s := newTestSigner(t)
	id := NewListenerID()
	for _, tc := range []struct {
		name string
		t    Ticket
	}{
		{"place not from PlaceID", Ticket{Space: "s", Place: "bob", Expires: t0}},
		{"place with bad characters", Ticket{Space: "s", Place: strings.Repeat("+", ListenerIDLen), Expires: t0}},
		{"empty space", Ticket{Place: id, Expires: t0}},
		{"space too long", Ticket{Space: strings.Repeat("s", MaxSpaceLen+1), Place: id, Expires: t0}},
		{"unknown tier", Ticket{Space: "s", Place: id, Tier: numTiers, Expires: t0}},
		{"zero expiry", Ticket{Space: "s", Place: id}},
		{"expiry past 2106", Ticket{Space: "s", Place: id, Expires: time.Date(2107, 1, 1, 0, 0, 0, 0, time.UTC)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Issue(tc.t); amphi.ErrorCode(err) != amphi.EInvalid {
				t.Errorf("Issue: %v, want an %s error", err, amphi.EInvalid)
			}
		})
	}
}

func TestVerifyAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	s := newTestSigner(t)
	good := mustIssue(t, s, Ticket{Space: "sp", Place: PlaceID(NewListenerID()), Expires: t0.Add(time.Hour)})
	forged := good[:len(good)-2] + "AA"
	for name, tok := range map[string]string{"valid": good, "forged": forged, "garbage": "garbage!"} {
		if n := testing.AllocsPerRun(100, func() { s.Verify(tok, "sp", t0) }); n != 0 {
			t.Errorf("Verify of a %s ticket: %v allocations, want 0", name, n)
		}
	}
}

func TestDecodeB64MatchesEncodingBase64(t *testing.T) {
	for _, s := range []string{"", "A", "AA", "AB", "AAA", "AAB", "AAAA", "_-_-", "QUJD", "QUJDRA", "QUJDRB", "QUJDREU", "QUJDREV"} {
		want, werr := base64.RawURLEncoding.Strict().DecodeString(s)
		var dst [8]byte
		n, ok := decodeB64(dst[:], s)
		if ok != (werr == nil) || ok && string(dst[:n]) != string(want) {
			t.Errorf("decodeB64(%q) = %x, %v; encoding/base64: %x, %v", s, dst[:n], ok, want, werr)
		}
	}
}

func TestATicketNamesTheNodeThatIssuedItAndVerifiesAtAnother(t *testing.T) {
	key := NewKey()
	a, _ := NewSignerConfig(SignerConfig{Issuer: 0xa1}, key)
	b, _ := NewSignerConfig(SignerConfig{Issuer: 0xb2}, key)
	tok, err := a.Issue(Ticket{Space: "s1", Place: PlaceID("x"), Expires: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Verify(tok, "s1", t0)
	if err != nil || got.Issuer != 0xa1 || b.Issuer() != 0xb2 {
		t.Fatalf("verified at b: issuer %#x, err %v; want a's 0xa1", got.Issuer, err)
	}
}
