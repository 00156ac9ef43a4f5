package space

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/gate"
	"github.com/amphi-audio/amphi/internal/live"
	"github.com/amphi-audio/amphi/internal/ogg"
	"github.com/amphi-audio/amphi/internal/program"
	"github.com/amphi-audio/amphi/internal/store"
)

// discard is a live.Publisher that drops every chunk: no bus here.
type discard struct{}

func (discard) PublishChunk(string, *program.Chunk) error { return nil }

// node is a lifecycle over a real store and live manager in a temporary
// data directory, as Main wires them.
type node struct {
	db   *store.DB
	live *live.Manager
	dir  *Directory
	life *Lifecycle
	data string
}

// newNode returns a node whose spaces end after idle with nobody on stage
// (zero: never); recordings says whether the data directory has its
// recordings folder, without which no space can start.
func newNode(t *testing.T, idle time.Duration, recordings bool) *node {
	t.Helper()
	ctx := context.Background()
	data := t.TempDir()
	if recordings {
		if err := os.MkdirAll(filepath.Join(data, "recordings"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	db, err := store.Open(ctx, filepath.Join(data, "amphi.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return onStore(t, idle, db, data)
}

// onStore returns a node over the store and data directory of another: a
// node started again.
func onStore(t *testing.T, idle time.Duration, db *store.DB, data string) *node {
	t.Helper()
	cfg := live.DefaultConfig()
	cfg.IdleEnd = idle
	n := &node{db: db, live: live.NewManager(discard{}, cfg), data: data,
		dir: NewDirectory(gate.DefaultRoomConfig(), gate.NewCapacity(gate.DefaultConfig().Node))}
	n.life = NewLifecycle(Config{DataDir: data}, n.dir, db, n.live)
	t.Cleanup(func() {
		n.live.Close()
		n.life.Wait()
	})
	return n
}

// crash takes the space off air as a kill would: the store still says
// live, the recording is not finalised and its file ends without an EOS
// page, cut off by cut bytes. It returns the node started again.
func (n *node) crash(t *testing.T, id string, cut int) *node {
	t.Helper()
	path := filepath.Join(n.data, recordingPath(id))
	var onAir []byte
	deadline := time.Now().Add(10 * time.Second)
	for len(onAir) < 2000 && time.Now().Before(deadline) { // headers and a few pages
		time.Sleep(20 * time.Millisecond)
		onAir, _ = os.ReadFile(path)
	}
	// Stopping writes the program's end, which a kill does not: put the
	// file back as it was on air.
	if err := n.live.Stop(id); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, onAir[:len(onAir)-cut], 0o600); err != nil {
		t.Fatal(err)
	}
	return onStore(t, 0, n.db, n.data)
}

// create stores a scheduled space starting in an hour.
func (n *node) create(t *testing.T, id string) *amphi.Space {
	t.Helper()
	at := time.Now().Add(time.Hour).UTC()
	sp := &amphi.Space{ID: id, Title: "Space " + id, State: amphi.StateScheduled, ScheduledAt: &at, CreatedAt: time.Now().UTC()}
	if err := n.db.CreateSpace(context.Background(), sp); err != nil {
		t.Fatal(err)
	}
	return sp
}

func (n *node) start(t *testing.T, id string) {
	t.Helper()
	place, err := n.life.Reserve()
	if err != nil {
		t.Fatal(err)
	}
	defer place.Release()
	if _, err := n.life.Start(context.Background(), id, place); err != nil {
		t.Fatal(err)
	}
}

// wantEnded checks the stored space ended for why.
func (n *node) wantEnded(t *testing.T, id string, why amphi.EndReason) {
	t.Helper()
	sp, err := n.db.Space(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if sp.State != amphi.StateEnded || sp.EndReason != why {
		t.Errorf("space %s is %s (%q), want ended (%q)", id, sp.State, sp.EndReason, why)
	}
}

func TestStartKeepsTheWaitingRoomAndOpensTheRoom(t *testing.T) {
	n := newNode(t, 0, true)
	n.create(t, "a")
	waiting := n.dir.Open("a", time.Now().Add(time.Hour))
	if st := waiting.Join("early", gate.TierAnonymous, time.Now()); st.Verdict != gate.Waiting {
		t.Fatalf("a join before the start: %v, want waiting", st.Verdict)
	}
	if sp := n.dir.Get("a"); sp.Session() != nil || sp.Room() != nil {
		t.Fatal("a scheduled space has a session or a room")
	}
	n.start(t, "a")
	sp := n.dir.Get("a")
	if sp.Session() == nil || sp.Room() == nil || n.live.Session("a") != sp.Session() {
		t.Fatal("a space on air has no session or room")
	}
	if sp.Waiting() != waiting {
		t.Error("the start replaced the waiting room: its line is lost")
	}
	if stats := waiting.Stats(time.Now()); stats.BeforeOpening {
		t.Error("the waiting room of a space on air is still before its opening")
	}
}

func TestEndClosesTheRoomsAndFinalisesTheRecording(t *testing.T) {
	n := newNode(t, 0, true)
	n.create(t, "a")
	n.start(t, "a")
	sp := n.dir.Get("a")
	if st := sp.Waiting().Join("in", gate.TierAnonymous, time.Now()); st.Verdict != gate.Admitted {
		t.Fatalf("a join of a space on air: %v, want admitted", st.Verdict)
	}
	if _, err := n.dir.Encode("a", time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := n.life.End(context.Background(), "a", amphi.EndHost); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sp.Room().Ended():
	default:
		t.Fatal("the room's event streams were not told of the end")
	}
	if sp.Room().EndReason() != amphi.EndHost {
		t.Errorf("the room ended for %q, want %q", sp.Room().EndReason(), amphi.EndHost)
	}
	if n.dir.Get("a") != nil || n.live.Session("a") != nil {
		t.Error("an ended space is still known or on air")
	}
	if n.dir.State("a", time.Hour, time.Now()) != nil {
		t.Error("an ended space's live state is still cached")
	}
	if sp.Waiting().Holds("in", time.Now()) {
		t.Error("the ended space's waiting room still holds its listener's place")
	}
	n.wantEnded(t, "a", amphi.EndHost)
	rec, err := n.db.Recording(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if !rec.Finalized || rec.Bytes == 0 {
		t.Errorf("recording %+v, want finalised with its header pages", rec)
	}
	if _, err := n.life.End(context.Background(), "a", amphi.EndHost); amphi.ErrorCode(err) != amphi.EConflict {
		t.Errorf("ending it again: %v, want a conflict", err)
	}
}

func TestEndCancelsAScheduledSpace(t *testing.T) {
	n := newNode(t, 0, true)
	n.create(t, "a")
	waiting := n.dir.Open("a", time.Now().Add(time.Hour))
	waiting.Join("early", gate.TierAnonymous, time.Now())
	if _, err := n.life.End(context.Background(), "a", amphi.EndHost); err != nil {
		t.Fatal(err)
	}
	if n.dir.Get("a") != nil {
		t.Error("a cancelled space is still known")
	}
	if st := waiting.Poll("early", time.Now()); st.Verdict != gate.Unknown {
		t.Errorf("the cancelled space's waiting room kept its line: %v", st.Verdict)
	}
	n.wantEnded(t, "a", amphi.EndHost)
	if _, err := n.db.Recording(context.Background(), "a"); amphi.ErrorCode(err) != amphi.ENotFound {
		t.Errorf("a space never on air has a recording: %v", err)
	}
}

func TestEndAllEndsOnlyTheSpacesOnAirHere(t *testing.T) {
	n := newNode(t, 0, true)
	n.create(t, "on")
	n.create(t, "later")
	n.start(t, "on")
	n.dir.Open("later", time.Now().Add(time.Hour))
	if err := n.life.EndAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	n.wantEnded(t, "on", amphi.EndShutdown)
	if n.dir.Get("later") == nil {
		t.Error("a shutdown forgot a scheduled space's waiting room")
	}
	sp, err := n.db.Space(context.Background(), "later")
	if err != nil || sp.State != amphi.StateScheduled {
		t.Errorf("the scheduled space: %v, %v", sp, err)
	}
}

func TestASpaceNobodySpeaksInEndsByItself(t *testing.T) {
	n := newNode(t, 50*time.Millisecond, true)
	n.create(t, "a")
	n.start(t, "a")
	ended := n.dir.Get("a").Room().Ended()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("an idle space stayed on air")
	}
	n.life.Wait()
	n.wantEnded(t, "a", amphi.EndIdle)
}

func TestAStartThatFailsEndsTheSpace(t *testing.T) {
	n := newNode(t, 0, false) // nowhere to record
	n.create(t, "a")
	place, err := n.life.Reserve()
	if err != nil {
		t.Fatal(err)
	}
	defer place.Release()
	if _, err := n.life.Start(context.Background(), "a", place); err == nil {
		t.Fatal("a space without a recording went on air")
	}
	if n.dir.Get("a") != nil {
		t.Error("a space that failed to start is known")
	}
	n.wantEnded(t, "a", amphi.EndFailed)
}

func TestRecoverEndsTheSpacesACrashLeftLive(t *testing.T) {
	n := newNode(t, 0, true)
	ctx := context.Background()
	n.create(t, "a")
	if _, err := n.db.SetSpaceState(ctx, "a", []amphi.State{amphi.StateScheduled}, amphi.StateLive, time.Now()); err != nil {
		t.Fatal(err)
	}
	// The crash came before the recorder wrote anything.
	if err := n.db.PutRecording(ctx, &amphi.Recording{SpaceID: "a", Path: recordingPath("a")}); err != nil {
		t.Fatal(err)
	}
	if err := n.life.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	n.wantEnded(t, "a", amphi.EndCrash)
	rec, err := n.db.Recording(ctx, "a")
	if err != nil || !rec.Finalized {
		t.Errorf("recording %+v, %v: want finalised", rec, err)
	}
}

func TestRecoverResumesTheSpacesACrashLeftLive(t *testing.T) {
	n := newNode(t, 0, true)
	ctx := context.Background()
	n.create(t, "a")
	n.start(t, "a")
	before, err := n.db.Space(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	n = n.crash(t, "a", 3) // the last page torn
	path := filepath.Join(n.data, recordingPath("a"))
	crashed, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	kept, _, _, _ := ogg.ValidPrefix(bytes.NewReader(crashed))

	if err := n.life.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	sp, err := n.db.Space(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if sp.State != amphi.StateLive || !sp.StartedAt.Equal(*before.StartedAt) {
		t.Fatalf("after Recover the space is %s, started %v; want live, started %v", sp.State, sp.StartedAt, before.StartedAt)
	}
	on := n.dir.Get("a")
	if on == nil || on.Session() == nil || n.live.Session("a") != on.Session() || on.Session().Space().Serial != before.Serial {
		t.Fatal("the resumed space is not on air here with its serial")
	}
	time.Sleep(300 * time.Millisecond) // a few chunks after the crash
	if _, err := n.life.End(ctx, "a", amphi.EndHost); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, crashed[:kept]) {
		t.Error("the resumed recording does not begin with what the crash left")
	}
	last, eos := lastPage(t, data)
	if !eos || last.Seq <= 2 {
		t.Errorf("the recording ends with page %d, EOS %v: want pages after the crash and EOS", last.Seq, eos)
	}
	rec, err := n.db.Recording(ctx, "a")
	if err != nil || !rec.Finalized || rec.Bytes != int64(len(data)) {
		t.Errorf("recording %+v, %v: want finalised, %d bytes", rec, err, len(data))
	}
}

func TestRecoverEndsASpaceThatCannotResume(t *testing.T) {
	n := newNode(t, 0, true)
	ctx := context.Background()
	n.create(t, "a")
	n.start(t, "a")
	n = n.crash(t, "a", 0)
	path := filepath.Join(n.data, recordingPath("a"))
	if err := os.Truncate(path, 40); err != nil { // cut inside the header pages
		t.Fatal(err)
	}
	if err := n.life.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	n.wantEnded(t, "a", amphi.EndCrash)
	if n.dir.Get("a") != nil {
		t.Error("a space that could not resume is on air")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, eos := lastPage(t, data); !eos {
		t.Error("the ended recording does not end with an EOS page")
	}
}

// lastPage returns the header of an Ogg stream's last page, and whether it
// ends the stream (EOS).
func lastPage(t *testing.T, data []byte) (ogg.Header, bool) {
	t.Helper()
	p, err := ogg.ScanPrefix(bytes.NewReader(data))
	if err != nil || p.Len != int64(len(data)) || p.Pages == 0 {
		t.Fatalf("%d of %d bytes in %d valid pages: %v", p.Len, len(data), p.Pages, err)
	}
	return p.Last, p.Last.Flags&ogg.FlagEOS != 0
}

func TestAStateIsEncodedOnceAnAgeAndForgotten(t *testing.T) {
	n := newNode(t, 0, true)
	now := time.Now()
	w := n.dir.Open("a", now.Add(time.Hour))
	w.Join("early", gate.TierAnonymous, now)
	lookups := 0
	lookup := func() (*amphi.Space, error) {
		lookups++
		return &amphi.Space{ID: "a", Title: "Soon", State: amphi.StateScheduled}, nil
	}
	st, err := n.dir.Encode("a", now, lookup)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		ID, State, Title string
		Waiting          int
	}
	if err := json.Unmarshal(st.Body(), &v); err != nil {
		t.Fatal(err)
	}
	if v.ID != "a" || v.State != "scheduled" || v.Title != "Soon" || lookups != 1 {
		t.Errorf("state %s after %d lookups", st.Body(), lookups)
	}
	if got := n.dir.State("a", StateMaxAge, now.Add(StateMaxAge/2)); got != st {
		t.Error("a fresh state was not served from the cache")
	}
	if got := n.dir.State("a", StateMaxAge, now.Add(StateMaxAge)); got != nil {
		t.Error("a state past its age was served")
	}
	n.dir.Forget("a")
	if got := n.dir.State("a", StateMaxAge, now); got != nil {
		t.Error("a forgotten state was served")
	}
}
