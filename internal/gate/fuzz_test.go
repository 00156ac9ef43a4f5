package gate

import (
	"encoding/base64"
	"net/netip"
	"testing"
	"time"
)

// FuzzVerify feeds Verify arbitrary tickets: it must never panic, must
// refuse with a known reason, and must accept only what was signed.
func FuzzVerify(f *testing.F) {
	s, err := NewSigner(testKey(0))
	if err != nil {
		f.Fatal(err)
	}
	good := mustIssue(f, s, Ticket{Space: "sp", Place: PlaceID(NewListenerID()), Tier: TierInvited, Expires: t0.Add(time.Hour)})
	f.Add(good, "sp")
	f.Add(good, "other")
	f.Add(good[:len(good)-1]+"A", "sp")
	f.Add("", "sp")
	f.Add("AAAA", "")
	f.Fuzz(func(t *testing.T, tok, space string) {
		tk, err := s.Verify(tok, space, t0)
		if err != nil {
			if Reason(err) == 0 {
				t.Fatalf("refusal without a reason: %v", err)
			}
			return
		}
		if tk.Space != space || len(tk.Place) != ListenerIDLen || tk.Tier >= numTiers || !tk.Expires.After(t0) {
			t.Fatalf("accepted an impossible ticket %+v", tk)
		}
		// Only a token the signer would produce is accepted.
		again, err := s.Issue(tk)
		if err != nil || again != tok {
			t.Fatalf("accepted %q, which re-issues as %q (%v)", tok, again, err)
		}
	})
}

// FuzzVerifySolution feeds VerifySolution arbitrary challenges and nonces,
// and ParseChallenge the same challenges.
func FuzzVerifySolution(f *testing.F) {
	s, err := NewSigner(testKey(0))
	if err != nil {
		f.Fatal(err)
	}
	c := mustChallenge(f, s, "sp", 2, t0)
	f.Add(c, mustSolve(f, c), "sp")
	f.Add(c, "0", "sp")
	f.Add(c, "", "sp")
	f.Add(c[:20], "1", "sp")
	f.Add("garbage", "1", "")
	f.Fuzz(func(t *testing.T, challenge, nonce, space string) {
		err := s.VerifySolution(challenge, nonce, space, 0, t0)
		if err != nil && Reason(err) == 0 {
			t.Fatalf("refusal without a reason: %v", err)
		}
		if err == nil {
			// Only a challenge the signer would produce is accepted.
			pc, err := ParseChallenge(challenge)
			if err != nil {
				t.Fatalf("accepted a challenge ParseChallenge refuses: %v", err)
			}
			again, err := s.sign(kindChallenge, pc.Difficulty, pc.Expires, [idLen]byte(pc.Seed), pc.Space)
			if err != nil || again != challenge {
				raw, _ := base64.RawURLEncoding.DecodeString(challenge)
				t.Fatalf("accepted a challenge the signer did not issue: %x", raw)
			}
			if s.VerifySolution(challenge, nonce, space, 0, t0) == nil {
				t.Fatal("accepted the same solution twice")
			}
		}
		if pc, err := ParseChallenge(challenge); err == nil && len(pc.Seed) != idLen {
			t.Fatalf("parsed a seed of %d bytes", len(pc.Seed))
		}
	})
}

// FuzzClientAddr checks that any header yields a valid address when the
// peer's is valid, never one from the untrusted left of X-Forwarded-For
// when the peer is untrusted.
func FuzzClientAddr(f *testing.F) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	f.Add("10.0.0.1:80", "1.2.3.4, 10.0.0.2")
	f.Add("203.0.113.1:80", "1.2.3.4")
	f.Add("[::1]:80", ",,,")
	f.Fuzz(func(t *testing.T, remote, xff string) {
		a := ClientAddr(remote, xff, trusted)
		peer, err := netip.ParseAddrPort(remote)
		if err != nil {
			return
		}
		if !a.IsValid() {
			t.Fatalf("invalid result for a valid peer %s", remote)
		}
		if p := peer.Addr().Unmap(); !isTrusted(p, trusted) && a != p {
			t.Fatalf("untrusted peer %s, but client %s", p, a)
		}
	})
}
