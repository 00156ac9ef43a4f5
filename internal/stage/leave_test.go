package stage

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/amphi-audio/amphi"
)

func TestLeaveOwnEndsOnlyTheSpeakersOwnSession(t *testing.T) {
	var logs bytes.Buffer
	ts := newTestStage(t, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	offer := pionOffer(t, whipLike)
	ctx := context.Background()
	alice, _, err := ts.Join(ctx, "alice", offer)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ts.Join(ctx, "bob", offer); err != nil {
		t.Fatal(err)
	}

	// Bob aiming at Alice's session gets what an unknown id gets.
	err = ts.LeaveOwn(alice, "bob")
	unknown := ts.LeaveOwn("00000000000000000000000000000000", "bob")
	if amphi.ErrorCode(err) != amphi.ENotFound || amphi.ErrorCode(unknown) != amphi.ENotFound {
		t.Fatalf("LeaveOwn(alice's session, bob) = %v, of an unknown one = %v; want both %s", err, unknown, amphi.ENotFound)
	}
	if n := len(ts.Speakers()); n != 2 {
		t.Fatalf("%d speakers on stage after bob's attempt, want 2", n)
	}
	if err := ts.LeaveOwn(alice, "alice"); err != nil {
		t.Fatalf("LeaveOwn(alice's session, alice) = %v", err)
	}
	if sp := ts.Speakers(); len(sp) != 1 || sp[0].ID != "bob" {
		t.Fatalf("on stage after alice left: %+v, want bob alone", sp)
	}

	// The session id is what its owner deletes: logs carry a short hash.
	if !strings.Contains(logs.String(), "speaker left") {
		t.Fatalf("no leave in the log:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), alice) {
		t.Errorf("the log shows session id %s:\n%s", alice, logs.String())
	}
}
