package stage

import (
	"context"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/whip"
	"github.com/pion/webrtc/v4"
)

// speakerInfo returns the SpeakerInfo of id, failing the test if it is not
// on the stage.
func speakerInfo(t *testing.T, st *Stage, id string) SpeakerInfo {
	t.Helper()
	for _, sp := range st.Speakers() {
		if sp.ID == id {
			return sp
		}
	}
	t.Fatalf("%s is not on the stage", id)
	return SpeakerInfo{}
}

func TestMutedSpeakerIsNeitherMixedNorForwardedUntilUnmuted(t *testing.T) {
	ts := newTestStage(t, nil)
	a := ts.dial(t, "alice", whip.Config{})
	b := ts.dial(t, "bob", whip.Config{})
	waitConnected(t, ts.Stage, 2)
	both := func(alice, bob string) map[string]*client { return map[string]*client{alice: a, bob: b} }

	talk(t, func() bool { return b.rec.count(0, "A-") >= 10 }, both("A", "B"))
	if err := ts.Mute("alice", true); err != nil {
		t.Fatal(err)
	}
	// Every "M-" packet is sent after Mute returned, so none may get through.
	// Bob goes on talking: a muted speaker still hears the others.
	heardBob := a.rec.count(0, "B-")
	talk(t, func() bool { return a.rec.count(0, "B-") >= heardBob+20 }, both("M", "B"))
	eventually(t, "alice's packets counted as muted", func() bool { return ts.Stats().PacketsMuted >= 20 })
	if !speakerInfo(t, ts.Stage, "alice").Muted {
		t.Error("alice not reported muted")
	}
	if err := ts.Mute("alice", false); err != nil {
		t.Fatal(err)
	}
	talk(t, func() bool {
		return b.rec.count(0, "U-") >= 10 && ts.mixer.source("alice").count("U-") >= 10
	}, both("U", "B"))

	if n := b.rec.count(0, "M-"); n != 0 {
		t.Errorf("bob heard %d packets alice sent while muted", n)
	}
	if n := ts.mixer.source("alice").count("M-"); n != 0 {
		t.Errorf("the mixer got %d packets alice sent while muted", n)
	}
	// The mute leaves no hole in either stream: bob's slot and the mixer
	// see the packet after the unmute follow the one before the mute.
	assertContinuous(t, "bob slot 0", b.rec.slot(0))
	seqs := ts.mixer.source("alice").sequence()
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("mixer seq %d follows %d (packet %d)", seqs[i], seqs[i-1], i)
		}
	}
	info := speakerInfo(t, ts.Stage, "alice")
	if info.Muted || info.PacketsMuted < 20 || info.Dropped != 0 {
		t.Errorf("alice after unmute: %+v", info)
	}
	st := ts.Stats()
	if st.PacketsMuted != info.PacketsMuted || st.DroppedMalformed+st.DroppedPayloadType+st.DroppedReadError+st.ForwardErrors != 0 {
		t.Errorf("Stats() = %+v: muted packets must be counted as such, not as errors", st)
	}
}

func TestMuteSurvivesRejoinUntilRemove(t *testing.T) {
	ts := newTestStage(t, nil)
	b := ts.dial(t, "bob", whip.Config{})
	ts.dial(t, "alice", whip.Config{})
	waitConnected(t, ts.Stage, 2)
	if err := ts.Mute("alice", true); err != nil {
		t.Fatal(err)
	}

	// A reload: the same speaker joins again, replacing its session.
	a := ts.dial(t, "alice", whip.Config{})
	waitConnected(t, ts.Stage, 2)
	if !speakerInfo(t, ts.Stage, "alice").Muted {
		t.Fatal("alice unmuted by rejoining")
	}
	talk(t, func() bool { return speakerInfo(t, ts.Stage, "alice").PacketsMuted >= 10 }, map[string]*client{"R": a})
	if n := b.rec.count(0, "R-"); n != 0 {
		t.Errorf("bob heard %d packets of muted alice's new session", n)
	}
	if n := ts.mixer.source("alice").count("R-"); n != 0 {
		t.Errorf("the mixer got %d packets of muted alice's new session", n)
	}

	// Leaving and joining again does not lift it either; Remove does.
	ctx := context.Background()
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ts.Join(ctx, "alice", pionOffer(t, whipLike)); err != nil {
		t.Fatal(err)
	}
	if !speakerInfo(t, ts.Stage, "alice").Muted {
		t.Fatal("alice unmuted by leaving and joining again")
	}
	if err := ts.Remove("alice"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ts.Join(ctx, "alice", pionOffer(t, whipLike)); err != nil {
		t.Fatal(err)
	}
	if speakerInfo(t, ts.Stage, "alice").Muted {
		t.Error("alice still muted after Remove")
	}
}

func TestRemoveEndsTheSessionAndFreesItsPlace(t *testing.T) {
	ts := newTestStage(t, func(c *Config) { c.MaxSpeakers = 2 })
	b := ts.dial(t, "bob", whip.Config{})

	pc := rawPeer(t, whipLike)
	ended := make(chan webrtc.PeerConnectionState, 1)
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateClosed || st == webrtc.PeerConnectionStateFailed {
			select {
			case ended <- st:
			default:
			}
		}
	})
	ctx := context.Background()
	session, answer, err := ts.Join(ctx, "carol", gatheredOffer(t, pc))
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, ts.Stage, 2)
	eventually(t, "bob hears carol", func() bool { return speakerInfo(t, ts.Stage, "bob").Hears[0] == "carol" })
	if _, _, err := ts.Join(ctx, "dave", pionOffer(t, whipLike)); amphi.ErrorCode(err) != amphi.EFull {
		t.Fatalf("Join on a full stage = %v, want %s", err, amphi.EFull)
	}

	if err := ts.Remove("carol"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	case <-time.After(waitFor):
		t.Fatalf("carol's connection is still %s after Remove", pc.ConnectionState())
	}
	if sps := ts.Speakers(); len(sps) != 1 || sps[0].Hears[0] != "" {
		t.Errorf("Speakers() after Remove = %+v", sps)
	}
	if err := ts.Leave(session); amphi.ErrorCode(err) != amphi.ENotFound {
		t.Errorf("Leave(removed session) = %v, want %s", err, amphi.ENotFound)
	}
	if _, _, err := ts.Join(ctx, "dave", pionOffer(t, whipLike)); err != nil {
		t.Errorf("Join into the removed speaker's place: %v", err)
	}
	if st := ts.Stats(); st.Removed != 1 || st.Lost != 0 || st.Leaves != 0 {
		t.Errorf("Stats() = %+v, want 1 removed and nothing lost or left", st)
	}
	if !ts.mixer.source("carol").isClosed() {
		t.Error("carol's mixer source still open")
	}
	_ = b
}

func TestMuteAndRemoveNeedASpeakerOnStage(t *testing.T) {
	ts := newTestStage(t, nil)
	ctx := context.Background()
	if _, _, err := ts.Join(ctx, "gone", pionOffer(t, whipLike)); err != nil {
		t.Fatal(err)
	}
	if err := ts.Remove("gone"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
	}{
		{"mute unknown", func() error { return ts.Mute("nobody", true) }},
		{"unmute unknown", func() error { return ts.Mute("nobody", false) }},
		{"remove unknown", func() error { return ts.Remove("nobody") }},
		{"mute removed", func() error { return ts.Mute("gone", true) }},
		{"remove removed", func() error { return ts.Remove("gone") }},
		{"empty id", func() error { return ts.Mute("", true) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); amphi.ErrorCode(err) != amphi.ENotFound {
				t.Errorf("got %v, want %s", err, amphi.ENotFound)
			}
		})
	}
	// A refused Mute leaves nothing behind for a later join.
	if _, _, err := ts.Join(ctx, "nobody", pionOffer(t, whipLike)); err != nil {
		t.Fatal(err)
	}
	if speakerInfo(t, ts.Stage, "nobody").Muted {
		t.Error("a Mute refused as not found muted a later join")
	}
}
