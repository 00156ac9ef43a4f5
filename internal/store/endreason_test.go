package store

import (
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
)

func TestEndSpaceRecordsTheFirstReason(t *testing.T) {
	db, _ := openTest(t)
	ctx := t.Context()
	t0 := time.Date(2026, 12, 1, 18, 0, 0, 0, time.UTC)
	mustCreate(t, db, space("a", amphi.StateLive, t0))
	got, err := db.EndSpace(ctx, "a", []amphi.State{amphi.StateLive}, t0.Add(time.Minute), amphi.EndIdle)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != amphi.StateEnded || got.EndReason != amphi.EndIdle {
		t.Fatalf("ended: %s (%q), want ended (idle)", got.State, got.EndReason)
	}
	// A second end loses the race and leaves the first reason.
	_, err = db.EndSpace(ctx, "a", []amphi.State{amphi.StateLive}, t0.Add(2*time.Minute), amphi.EndHost)
	wantCode(t, err, amphi.EConflict)
	if got, err = db.Space(ctx, "a"); err != nil || got.EndReason != amphi.EndIdle {
		t.Fatalf("read back: %+v %v, want end reason idle", got, err)
	}
}
