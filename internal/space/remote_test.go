package space

import (
	"context"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/gate"
)

func TestAnEdgeFollowsTheOriginsAnnouncements(t *testing.T) {
	now := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	d := NewDirectory(gate.DefaultRoomConfig(), gate.NewCapacity(gate.CapacityConfig{JoinRate: 1e9, JoinBurst: 1 << 30}))
	at := now.Add(time.Hour)
	sp := &amphi.Space{ID: "s1", Title: "Later", State: amphi.StateScheduled, ScheduledAt: &at}

	// Scheduled: known, its line open for the herd, nobody admitted yet.
	d.Learn(Announced{Space: sp, Serial: 7, Grant: gate.NoGrant}, now)
	if got, err := d.Known(context.Background(), "s1"); err != nil || got.Title != "Later" {
		t.Fatalf("known %+v, %v", got, err)
	}
	if serial, _, _ := d.Program("s1"); serial != 7 {
		t.Errorf("serial %d, want 7", serial)
	}
	w := d.Get("s1").Waiting()
	if st := w.Join("early", gate.TierAnonymous, now); st.Verdict != gate.Waiting {
		t.Errorf("a join before the start: %v, want waiting", st.Verdict)
	}

	// Live, with a share of one place and the origin's state: the line
	// opens, one gets in, the state is the origin's bytes.
	started := now.Add(5 * time.Second) // within the waiter's poll timeout
	live := *sp
	live.State, live.StartedAt = amphi.StateLive, &started
	d.Learn(Announced{Space: &live, Serial: 7, State: []byte(`{"id":"s1"}`), Grant: gate.Grant{Share: 1, Admit: -1}}, started)
	if st := w.Join("second", gate.TierAnonymous, started); st.Verdict != gate.Waiting {
		t.Errorf("a second listener past the share of one: %v, want waiting", st.Verdict)
	}
	if st := w.Poll("early", started); st.Verdict != gate.Admitted {
		t.Errorf("the first in line once live: %v, want admitted", st.Verdict)
	}
	if st := d.State("s1", time.Second, started); st == nil || string(st.Body()) != `{"id":"s1"}` {
		t.Errorf("the state is not the origin's")
	}

	// Ended: the line closes, the space stays known as ended for a while,
	// then is forgotten.
	ended := live
	ended.State = amphi.StateEnded
	d.Learn(Announced{Space: &ended, Serial: 7, Grant: gate.NoGrant}, started.Add(time.Minute))
	if d.Get("s1") != nil {
		t.Error("an ended space still admits listeners")
	}
	if got, err := d.Known(context.Background(), "s1"); err != nil || got.State != amphi.StateEnded {
		t.Errorf("an ended space: %+v, %v; want it known as ended", got, err)
	}
	other := &amphi.Space{ID: "s2", State: amphi.StateLive, StartedAt: &started}
	d.Learn(Announced{Space: other, Grant: gate.NoGrant}, started.Add(knownLife+2*time.Minute))
	if _, err := d.Known(context.Background(), "s1"); amphi.ErrorCode(err) != amphi.ENotFound {
		t.Errorf("an ended space long unannounced: %v, want not found", err)
	}
}
