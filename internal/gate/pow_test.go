package gate

import (
	"context"
	"crypto/sha256"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
)

func mustChallenge(t testing.TB, s *Signer, space string, d uint8, now time.Time) string {
	t.Helper()
	c, err := s.IssueChallenge(space, d, now)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustSolve(t testing.TB, c string) string {
	t.Helper()
	n, err := Solve(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// wrongNonce returns a nonce that does not solve c at difficulty d.
func wrongNonce(c string, d uint8) string {
	for i := 0; ; i++ {
		n := "w" + strconv.Itoa(i)
		if leadingZeroBits(sha256.Sum256([]byte(c+n))) < int(d) {
			return n
		}
	}
}

func TestSolvedChallengeIsAccepted(t *testing.T) {
	s := newTestSigner(t)
	for _, d := range []uint8{0, 1, 8, 12} {
		c := mustChallenge(t, s, "sp", d, t0)
		pc, err := ParseChallenge(c)
		if err != nil || pc.Difficulty != d || pc.Space != "sp" || !pc.Expires.Equal(t0.Add(DefaultSignerConfig().ChallengeTTL)) || len(pc.Seed) != idLen {
			t.Fatalf("ParseChallenge = %+v, %v", pc, err)
		}
		n := mustSolve(t, c)
		if err := s.VerifySolution(c, n, "sp", 0, t0.Add(time.Second)); err != nil {
			t.Errorf("difficulty %d: VerifySolution: %v", d, err)
		}
	}
	if got := s.Stats().SolutionsValid; got != 4 {
		t.Errorf("SolutionsValid = %d, want 4", got)
	}
}

func TestBadSolutionsRefusedWithReason(t *testing.T) {
	s := newTestSigner(t)
	const space = "sp"
	c := mustChallenge(t, s, space, 12, t0)
	n := mustSolve(t, c)
	ticket := mustIssue(t, s, Ticket{Space: space, Place: PlaceID(NewListenerID()), Expires: t0.Add(time.Hour)})
	other, _ := NewSigner(testKey(1))
	foreign := mustChallenge(t, other, space, 1, t0)
	forged := c[:len(c)-2] + "AA"
	if forged == c {
		forged = c[:len(c)-2] + "BA"
	}
	for _, tc := range []struct {
		name, challenge, nonce, space string
		min                           uint8
		now                           time.Time
		want                          cause
	}{
		{"wrong answer", c, wrongNonce(c, 12), space, 0, t0, rWrongAnswer},
		{"difficulty raised since", c, n, space, 13, t0, rOutdated},
		{"stale", c, n, space, 0, t0.Add(DefaultSignerConfig().ChallengeTTL), rExpired},
		{"other space", c, n, "other", 0, t0, rWrongSpace},
		{"forged", forged, n, space, 0, t0, rBadSignature},
		{"unknown key", foreign, mustSolve(t, foreign), space, 0, t0, rUnknownKey},
		{"a ticket", ticket, n, space, 0, t0, rMalformed},
		{"garbage", "!!!", n, space, 0, t0, rMalformed},
		{"empty nonce", c, "", space, 0, t0, rMalformed},
		{"nonce too long", c, string(make([]byte, maxNonceLen+1)), space, 0, t0, rMalformed},
		{"nonce not base64url", c, "1 2", space, 0, t0, rMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.VerifySolution(tc.challenge, tc.nonce, tc.space, tc.min, tc.now)
			if want := powRefusals[tc.want]; err != want {
				t.Fatalf("err %v, want %v", err, want)
			}
			if amphi.ErrorCode(err) == amphi.EInternal {
				t.Errorf("refusal has no client-facing code: %v", err)
			}
		})
	}
	// None of those redeemed the challenge: the real answer still works.
	if err := s.VerifySolution(c, n, space, 0, t0); err != nil {
		t.Fatalf("good solution after refusals: %v", err)
	}
}

func TestReplayedSolutionRefused(t *testing.T) {
	s := newTestSigner(t)
	c := mustChallenge(t, s, "sp", 4, t0)
	n := mustSolve(t, c)
	if err := s.VerifySolution(c, n, "sp", 0, t0); err != nil {
		t.Fatal(err)
	}
	// The same challenge with the same or another valid nonce.
	for i := 0; i < 3; i++ {
		n2 := n
		for j := 0; i > 0 && (n2 == n || leadingZeroBits(sha256.Sum256([]byte(c+n2))) < 4); j++ {
			n2 = "r" + strconv.Itoa(i) + "x" + strconv.Itoa(j)
		}
		if err := s.VerifySolution(c, n2, "sp", 0, t0.Add(time.Second)); Reason(err) != RefusalPoWReplayed {
			t.Errorf("replay %d: %v, want %v", i, err, RefusalPoWReplayed)
		}
	}
}

func TestReplayCacheIsBoundedAndForgetsExpired(t *testing.T) {
	cfg := DefaultSignerConfig()
	cfg.ReplayEntries = replayShards // one entry per shard
	cfg.ChallengeTTL = time.Minute
	s, err := NewSignerConfig(cfg, testKey(0))
	if err != nil {
		t.Fatal(err)
	}
	busy := 0
	for i := 0; i < 200; i++ {
		c := mustChallenge(t, s, "sp", 0, t0)
		switch err := s.VerifySolution(c, "0", "sp", 0, t0); Reason(err) {
		case 0:
		case RefusalPoWBusy:
			busy++
			if amphi.ErrorCode(err) != amphi.EUnavailable {
				t.Errorf("busy refusal code %q", amphi.ErrorCode(err))
			}
		default:
			t.Fatal(err)
		}
	}
	if n := s.Stats().ReplayEntries; n > replayShards {
		t.Errorf("replay cache holds %d entries, cap %d", n, replayShards)
	}
	if busy == 0 {
		t.Error("a full replay cache never refused")
	}
	// Once the first challenges have expired their entries go, and new
	// solutions are accepted again.
	later := t0.Add(time.Minute)
	for i := 0; i < 4; i++ {
		c := mustChallenge(t, s, "sp", 0, later)
		if err := s.VerifySolution(c, "0", "sp", 0, later); err != nil && Reason(err) != RefusalPoWBusy {
			t.Fatal(err)
		} else if err == nil {
			return
		}
	}
	t.Error("no solution accepted after the cache's entries expired")
}

func TestSolveStopsWhenContextIsDone(t *testing.T) {
	s := newTestSigner(t)
	c := mustChallenge(t, s, "sp", MaxDifficulty, t0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Solve(ctx, c); !errors.Is(err, context.Canceled) {
		t.Errorf("Solve = %v, want context.Canceled", err)
	}
	if _, err := Solve(context.Background(), "garbage"); err == nil {
		t.Error("Solve accepted garbage")
	}
	if _, err := s.IssueChallenge("sp", MaxDifficulty+1, t0); err == nil {
		t.Error("IssueChallenge accepted a difficulty over MaxDifficulty")
	}
}

func TestPoWPolicyArmsOnAbuseNeverOnDemand(t *testing.T) {
	p := NewPoWPolicy(DefaultPoWConfig())
	cool := DefaultPoWConfig().Cooldown
	steps := []struct {
		name string
		pr   Pressure
		at   time.Duration
		want uint8
	}{
		{"quiet", Pressure{InvalidShare: 0.01, InvalidRate: 1}, 0, 0},
		{"a high share of very few requests is no attack", Pressure{InvalidShare: 0.9, InvalidRate: 5}, time.Second / 2, 0},
		{"invalid share at threshold arms at base", Pressure{InvalidShare: 0.2, InvalidRate: 20}, time.Second, 12},
		{"each doubling of the share adds 2 bits", Pressure{InvalidShare: 0.4, InvalidRate: 500}, 2 * time.Second, 14},
		{"capped at what a phone solves in a second", Pressure{InvalidShare: 1, InvalidRate: 1e6}, 3 * time.Second, MaxVisitorDifficulty},
		{"calm but within cooldown holds", Pressure{}, 4 * time.Second, MaxVisitorDifficulty},
		{"calm after cooldown steps down", Pressure{}, 3*time.Second + cool, 0},
		{"NaN is calm", Pressure{InvalidShare: nanValue(), InvalidRate: nanValue()}, 4*time.Second + 2*cool, 0},
	}
	for _, st := range steps {
		if got := p.Update(st.pr, t0.Add(st.at)); got != st.want {
			t.Errorf("%s: difficulty %d, want %d", st.name, got, st.want)
		}
	}
	p.Arm(18)
	if got := p.Update(Pressure{}, t0.Add(time.Hour)); got != 18 || !p.State().Override {
		t.Errorf("armed by operator: %d %+v, want 18 with override", got, p.State())
	}
	p.Arm(0)
	if got := p.Update(Pressure{InvalidShare: 1, InvalidRate: 1000}, t0.Add(2*time.Hour)); got != 0 {
		t.Errorf("forced off by operator under pressure: %d, want 0", got)
	}
	p.Auto()
	if got := p.Difficulty(); got != MaxVisitorDifficulty {
		t.Errorf("back to auto under pressure: %d, want %d", got, MaxVisitorDifficulty)
	}
	if got := NewPoWPolicy(PoWConfig{Base: 30, Max: 30}).Update(Pressure{InvalidShare: 1, InvalidRate: 1000}, t0); got > MaxVisitorDifficulty {
		t.Errorf("configured past the visitor cap: %d bits asked", got)
	}
}

func nanValue() float64 {
	zero := 0.0
	return zero / zero
}
