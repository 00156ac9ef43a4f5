package store

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
)

func TestSpeakerTokensAreNamedExpireAndRevoke(t *testing.T) {
	db, _ := openTest(t)
	mustCreate(t, db, space("a", amphi.StateLive, t0))
	tok, hash := mustToken(t)
	exp := t0.Add(time.Hour)
	if err := db.CreateToken(t.Context(), &Token{Hash: hash, SpaceID: "a", Role: amphi.RoleSpeaker, Name: "Ada", CreatedAt: t0, ExpiresAt: &exp}); err != nil {
		t.Fatal(err)
	}
	got, err := db.Token(t.Context(), HashToken(tok), "a")
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "Ada" || got.ExpiresAt == nil || !got.ExpiresAt.Equal(exp) || got.RevokedAt != nil || len(got.SpeakerID()) != 16 {
		t.Fatalf("token %+v (speaker %q)", got, got.SpeakerID())
	}
	wantCode(t, db.RevokeToken(t.Context(), "a", "00000000deadbeef", t0), amphi.ENotFound)
	wantCode(t, db.RevokeToken(t.Context(), "b", got.SpeakerID(), t0), amphi.ENotFound)
	at := t0.Add(time.Minute)
	for range 2 { // revoking twice keeps the first time
		if err := db.RevokeToken(t.Context(), "a", got.SpeakerID(), at); err != nil {
			t.Fatal(err)
		}
		at = at.Add(time.Minute)
	}
	got, err = db.Token(t.Context(), hash, "a")
	if err != nil || got.RevokedAt == nil || !got.RevokedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("after revoke: %+v, %v", got, err)
	}
}

func TestSpacesKeepDescriptionAndOwner(t *testing.T) {
	db, _ := openTest(t)
	if err := db.CreateUser(t.Context(), user("u1", "ada@example.org")); err != nil {
		t.Fatal(err)
	}
	mine := space("mine", amphi.StateScheduled, t0)
	mine.Description, mine.OwnerID = "Q&A\nwith <b>tags</b>", "u1"
	mustCreate(t, db, mine)
	mustCreate(t, db, space("other", amphi.StateScheduled, t0.Add(time.Second)))
	got, err := db.Spaces(t.Context(), SpaceFilter{OwnerID: "u1"})
	if err != nil || len(got) != 1 || got[0].ID != "mine" || got[0].Description != mine.Description || got[0].OwnerID != "u1" {
		t.Fatalf("owner's spaces: %+v, %v", got, err)
	}
	if all, err := db.Spaces(t.Context(), SpaceFilter{}); err != nil || len(all) != 2 || all[0].OwnerID != "" {
		t.Fatalf("all spaces: %+v, %v", all, err)
	}
}

func TestInvitesAreSingleUseAndExpire(t *testing.T) {
	db, _ := openTest(t)
	_, hash := mustToken(t)
	inv := &Invite{Hash: hash, Role: UserHost, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if err := db.CreateInvite(t.Context(), inv); err != nil {
		t.Fatal(err)
	}
	wantCode(t, db.CreateInvite(t.Context(), inv), amphi.EConflict)
	_, other := mustToken(t)
	wantCode(t, db.CreateInvite(t.Context(), &Invite{Hash: other, Role: "root", CreatedAt: t0, ExpiresAt: t0}), amphi.EInvalid)
	_, err := db.UseInvite(t.Context(), other, t0)
	wantCode(t, err, amphi.EUnauthorized)

	// Of many concurrent uses exactly one wins; the others hear it was used.
	var wg sync.WaitGroup
	wins := make(chan *Invite, 8)
	for range 8 {
		wg.Go(func() {
			got, err := db.UseInvite(t.Context(), hash, t0.Add(time.Minute))
			if err == nil {
				wins <- got
				return
			}
			if amphi.ErrorCode(err) != amphi.EGone {
				t.Errorf("loser: %v", err)
			}
		})
	}
	wg.Wait()
	close(wins)
	if n := len(wins); n != 1 {
		t.Fatalf("%d uses won, want 1", n)
	}
	if got := <-wins; got.Role != UserHost || got.UsedAt == nil {
		t.Fatalf("used invite %+v", got)
	}
	if err := db.ReleaseInvite(t.Context(), hash); err != nil {
		t.Fatal(err)
	}
	_, err = db.UseInvite(t.Context(), hash, t0.Add(2*time.Hour))
	wantCode(t, err, amphi.EGone)
	if err == nil || !strings.Contains(amphi.ErrorMessage(err), "expired") {
		t.Fatalf("expired invite: %v", err)
	}
}
