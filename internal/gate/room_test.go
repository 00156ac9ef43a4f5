package gate

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// roomFor returns a room with places per space and a node with ample places
// and an unlimited join rate unless the test says otherwise.
func roomFor(places int, node CapacityConfig) *Room {
	if node.MaxListeners == 0 {
		node.MaxListeners = 1 << 20
	}
	if node.JoinRate == 0 {
		node.JoinRate, node.JoinBurst = 1e9, 1<<30
	}
	cfg := DefaultRoomConfig()
	cfg.MaxListeners = places
	return NewRoom(cfg, NewCapacity(node))
}

func id(i int) string { return fmt.Sprintf("listener-%d", i) }

func wantStatus(t *testing.T, what string, got Status, v Verdict, pos int) {
	t.Helper()
	if got.Verdict != v || got.Position != pos {
		t.Errorf("%s: %v at %d, want %v at %d", what, got.Verdict, got.Position, v, pos)
	}
}

func TestWaitingRoomAdmitsInArrivalOrder(t *testing.T) {
	r := roomFor(2, CapacityConfig{})
	now := t0
	wantStatus(t, "first", r.Join(id(0), TierAnonymous, now), Admitted, 0)
	wantStatus(t, "second", r.Join(id(1), TierAnonymous, now), Admitted, 0)
	for i := 2; i < 7; i++ {
		wantStatus(t, id(i), r.Join(id(i), TierAnonymous, now), Waiting, i-1)
	}
	connect(r, id(0), now)
	connect(r, id(1), now)
	for next := 2; next < 7; next++ {
		// Someone inside leaves: the head of the queue, and only it, gets in.
		now = now.Add(time.Second)
		r.cfg.Linger = -1
		r.Leave(id(next-2), now)
		wantStatus(t, "head after a place freed", r.Poll(id(next), now), Admitted, 0)
		for j := next + 1; j < 7; j++ {
			wantStatus(t, "behind "+id(j), r.Poll(id(j), now), Waiting, j-next)
		}
		connect(r, id(next), now)
	}
}

func TestPositionsAreExactWhenWaitersLeave(t *testing.T) {
	r := roomFor(1, CapacityConfig{})
	r.Join("inside", TierAnonymous, t0)
	for i := 0; i < 10; i++ {
		r.Join(id(i), TierAnonymous, t0)
	}
	r.Leave(id(2), t0) // gives up
	r.Leave(id(5), t0)
	want := map[int]int{0: 1, 1: 2, 3: 3, 4: 4, 6: 5, 7: 6, 8: 7, 9: 8}
	for i, pos := range want {
		wantStatus(t, id(i), r.Poll(id(i), t0), Waiting, pos)
	}
	wantStatus(t, "gave up", r.Poll(id(2), t0), Unknown, 0)
	wantStatus(t, "joining again goes to the back", r.Join(id(2), TierAnonymous, t0), Waiting, 9)
	wantStatus(t, "joining twice keeps the place", r.Join(id(0), TierAnonymous, t0), Waiting, 1)
}

func TestNobodyInsideIsEvicted(t *testing.T) {
	r := roomFor(3, CapacityConfig{})
	for i := 0; i < 3; i++ {
		r.Join(id(i), TierAnonymous, t0)
		if !connect(r, id(i), t0) {
			t.Fatalf("%s could not connect", id(i))
		}
	}
	// Staff, invited and signed-in people arrive at a full room: they wait,
	// at the head of the queue, and nobody inside loses their place.
	for i, tier := range []Tier{TierStaff, TierInvited, TierSignedIn} {
		wantStatus(t, tier.String(), r.Join("vip-"+tier.String(), tier, t0), Waiting, i+1)
	}
	wantStatus(t, "anonymous", r.Join("anon", TierAnonymous, t0), Waiting, 4)
	wantStatus(t, "staff", r.Poll("vip-staff", t0), Waiting, 1)
	// An hour later, with the waiters still polling, the same three are in.
	for now := t0; now.Before(t0.Add(time.Hour)); now = now.Add(5 * time.Second) {
		for _, w := range []string{"vip-staff", "vip-invited", "vip-signed_in", "anon"} {
			if s := r.Poll(w, now); s.Verdict != Waiting {
				t.Fatalf("%s: %v", w, s.Verdict)
			}
		}
	}
	for i := 0; i < 3; i++ {
		wantStatus(t, "inside "+id(i), r.Poll(id(i), t0.Add(time.Hour)), Admitted, 0)
	}
	if s := r.Stats(t0.Add(time.Hour)); s.Connected != 3 || s.Held != 3 {
		t.Errorf("after an hour: %+v, want the same 3 connected", s)
	}
}

func TestHigherTiersAreServedFirstAndFIFOWithinATier(t *testing.T) {
	r := roomFor(1, CapacityConfig{})
	r.cfg.Linger = -1
	r.Join("inside", TierAnonymous, t0)
	connect(r, "inside", t0)
	arrivals := []struct {
		who  string
		tier Tier
	}{
		{"anon1", TierAnonymous}, {"signed1", TierSignedIn}, {"anon2", TierAnonymous},
		{"invited1", TierInvited}, {"signed2", TierSignedIn}, {"staff1", TierStaff},
	}
	for _, a := range arrivals {
		r.Join(a.who, a.tier, t0)
	}
	wantOrder := []string{"staff1", "invited1", "signed1", "signed2", "anon1", "anon2"}
	for i, who := range wantOrder {
		wantStatus(t, who, r.Poll(who, t0), Waiting, i+1)
	}
	prev := "inside"
	for _, who := range wantOrder {
		r.Leave(prev, t0)
		wantStatus(t, who, r.Poll(who, t0), Admitted, 0)
		connect(r, who, t0)
		prev = who
	}
}

func TestGhostWaitersAreDropped(t *testing.T) {
	r := roomFor(1, CapacityConfig{})
	timeout := r.cfg.PollTimeout
	r.Join("inside", TierAnonymous, t0)
	connect(r, "inside", t0)
	for i := 0; i < 5; i++ {
		r.Join(id(i), TierAnonymous, t0)
	}
	// Only 1 and 3 keep polling.
	now := t0
	for now.Sub(t0) <= timeout {
		now = now.Add(time.Second)
		r.Poll(id(1), now)
		r.Poll(id(3), now)
	}
	wantStatus(t, id(1), r.Poll(id(1), now), Waiting, 1)
	wantStatus(t, id(3), r.Poll(id(3), now), Waiting, 2)
	wantStatus(t, "ghost", r.Poll(id(0), now), Unknown, 0)
	if s := r.Stats(now); s.Ghosts != 3 || s.Waiting[TierAnonymous] != 2 {
		t.Errorf("Stats = %+v, want 3 ghosts dropped and 2 waiting", s)
	}
}

func TestAdmittedPlaceIsHeldForGraceThenReleased(t *testing.T) {
	r := roomFor(1, CapacityConfig{})
	grace := r.cfg.Grace
	wantStatus(t, "a", r.Join("a", TierAnonymous, t0), Admitted, 0)
	wantStatus(t, "b", r.Join("b", TierAnonymous, t0), Waiting, 1)
	// a never connects: its place is held for the whole grace...
	for at := time.Duration(0); at < grace; at += 2 * time.Second {
		wantStatus(t, "b within grace", r.Poll("b", t0.Add(at)), Waiting, 1)
	}
	// ...and then goes to b.
	wantStatus(t, "b after grace", r.Poll("b", t0.Add(grace)), Admitted, 0)
	if connect(r, "a", t0.Add(grace)) {
		t.Error("a connected after its grace with the room full")
	}
	if !connect(r, "b", t0.Add(grace+time.Second)) {
		t.Error("b could not connect within its grace")
	}
	if s := r.Stats(t0.Add(grace + time.Second)); s.GraceExpired != 1 || s.Held != 1 || s.Connected != 1 {
		t.Errorf("Stats = %+v", s)
	}
}

func TestLingerKeepsThePlaceForAReconnect(t *testing.T) {
	r := roomFor(1, CapacityConfig{})
	linger := r.cfg.Linger
	r.Join("a", TierAnonymous, t0)
	connect(r, "a", t0) // a player's probe...
	connect(r, "a", t0) // ...and its real request
	r.Join("b", TierAnonymous, t0)
	r.Leave("a", t0) // the probe is aborted: a is still connected
	wantStatus(t, "b", r.Poll("b", t0), Waiting, 1)
	r.Leave("a", t0) // a's stream drops
	wantStatus(t, "b during linger", r.Poll("b", t0.Add(linger/2)), Waiting, 1)
	if !connect(r, "a", t0.Add(linger/2)) {
		t.Fatal("a could not reconnect within the linger")
	}
	r.Leave("a", t0.Add(linger/2))
	wantStatus(t, "b after linger", r.Poll("b", t0.Add(linger/2+linger)), Admitted, 0)
}

func TestHerdAdmittedAtJoinRate(t *testing.T) {
	const rate = 10
	r := roomFor(0, CapacityConfig{JoinRate: rate, JoinBurst: 1})
	start := t0.Add(time.Minute)
	r.OpenAt(start)
	const herd = 100
	for i := 0; i < herd; i++ {
		s := r.Join(id(i), TierAnonymous, t0.Add(time.Duration(i)*time.Millisecond))
		wantStatus(t, "before the start", s, Waiting, i+1)
		if want := time.Minute + time.Duration(i+1)*time.Second/rate; s.ETA < want-2*time.Second || s.ETA > want+2*time.Second {
			t.Errorf("%s: ETA %v, want about %v", id(i), s.ETA, want)
		}
	}
	for now := t0; now.Before(start); now = now.Add(2 * time.Second) {
		for i := 0; i < herd; i++ {
			wantStatus(t, "waiting for the start", r.Poll(id(i), now), Waiting, i+1)
		}
	}
	// Everyone polls every 100 ms from the start: admissions follow the
	// join rate, in arrival order.
	admittedAt := make([]time.Duration, herd)
	for step := time.Duration(0); step <= 11*time.Second; step += 100 * time.Millisecond {
		now := start.Add(step)
		for i := 0; i < herd; i++ {
			if admittedAt[i] == 0 && r.Poll(id(i), now).Verdict == Admitted {
				admittedAt[i] = step + 1 // +1: admitted at 0 is not "never"
			}
		}
	}
	for i := 0; i < herd; i++ {
		if admittedAt[i] == 0 {
			t.Fatalf("%s never admitted", id(i))
		}
		if i > 0 && admittedAt[i] < admittedAt[i-1] {
			t.Errorf("%s admitted before %s", id(i), id(i-1))
		}
		if want := time.Duration(i) * time.Second / rate; admittedAt[i]-1 != want {
			t.Errorf("%s admitted %v after the start, want %v", id(i), admittedAt[i]-1, want)
		}
	}
}

func TestETAFollowsTheAdmissionRate(t *testing.T) {
	r := roomFor(10, CapacityConfig{})
	r.cfg.Linger = -1
	now := t0
	for i := 0; i < 10; i++ {
		r.Join(id(i), TierAnonymous, now)
		connect(r, id(i), now)
	}
	for i := 10; i < 110; i++ {
		r.Join(id(i), TierAnonymous, now)
	}
	// One listener leaves every 500 ms for a few minutes: 2 places a second.
	next := 0
	for k := 0; k < 400; k++ {
		now = now.Add(500 * time.Millisecond)
		for r.Poll(id(next), now).Verdict != Admitted {
			next++
		}
		r.Leave(id(next), now)
		r.Join(id(1000+k), TierAnonymous, now)
		r.Poll(id(10+k+1), now)
		next++
	}
	for k := 380; k < 400; k++ {
		r.Poll(id(1000+k), now)
	}
	s := r.Poll(id(1399), now)
	if s.Verdict != Waiting {
		t.Fatalf("%+v", s)
	}
	want := time.Duration(float64(s.Position) / 2 * float64(time.Second))
	if s.ETA < want*9/10 || s.ETA > want*11/10 {
		t.Errorf("position %d: ETA %v, want about %v", s.Position, s.ETA, want)
	}
}

func TestNodeCapacityIsSharedByRooms(t *testing.T) {
	node := NewCapacity(CapacityConfig{MaxListeners: 3, JoinRate: 1e9, JoinBurst: 1 << 30})
	cfg := DefaultRoomConfig()
	cfg.Linger = -1
	a, b := NewRoom(cfg, node), NewRoom(cfg, node)
	wantStatus(t, "a1", a.Join("a1", TierAnonymous, t0), Admitted, 0)
	wantStatus(t, "a2", a.Join("a2", TierAnonymous, t0), Admitted, 0)
	wantStatus(t, "b1", b.Join("b1", TierAnonymous, t0), Admitted, 0)
	wantStatus(t, "b2", b.Join("b2", TierAnonymous, t0), Waiting, 1)
	if s := node.Stats(); s.Used != 3 || s.Max != 3 {
		t.Errorf("node = %+v", s)
	}
	connect(a, "a1", t0)
	a.Leave("a1", t0)
	wantStatus(t, "b2 after a1 left room a", b.Poll("b2", t0), Admitted, 0)
	a.Close()
	if s := node.Stats(); s.Used != 2 {
		t.Errorf("after closing room a the node uses %d places, want 2", s.Used)
	}
}

func TestFullWaitingRoomRefuses(t *testing.T) {
	cfg := DefaultRoomConfig()
	cfg.MaxListeners, cfg.MaxWaiting = 1, 2
	r := NewRoom(cfg, NewCapacity(CapacityConfig{}))
	r.Join("in", TierAnonymous, t0)
	r.Join("w1", TierAnonymous, t0)
	r.Join("w2", TierStaff, t0)
	if s := r.Join("w3", TierStaff, t0); s.Verdict != Full {
		t.Errorf("third waiter: %v, want full", s.Verdict)
	}
	if s := r.Stats(t0); s.Full != 1 {
		t.Errorf("Full counted %d, want 1", s.Full)
	}
}

func TestConnectNeedsAPlace(t *testing.T) {
	r := roomFor(2, CapacityConfig{})
	if connect(r, "walk-in", t0) {
		t.Error("a ticket holder without a place got in past the door")
	}
	r.Join("in", TierAnonymous, t0)
	r.Join("in2", TierAnonymous, t0)
	r.Join("waiter", TierAnonymous, t0)
	if connect(r, "waiter", t0) {
		t.Error("a waiter connected ahead of its turn")
	}
	if !connect(r, "in", t0) {
		t.Error("an admitted listener could not connect")
	}
}

func TestLapsedPlaceNeedsANewJoin(t *testing.T) {
	r := roomFor(0, CapacityConfig{})
	r.Join("a", TierAnonymous, t0)
	connect(r, "a", t0)
	r.Leave("a", t0)
	lapsed := t0.Add(r.cfg.Linger + time.Second)
	if r.Holds("a", lapsed) {
		t.Error("a still holds a place after its linger")
	}
	if connect(r, "a", lapsed) {
		t.Error("a lapsed place was taken back with the old ticket, without a new join")
	}
	if s := r.Join("b", TierAnonymous, lapsed); s.Verdict != Admitted {
		t.Errorf("a new join: %v, want admitted", s.Verdict)
	}
}

func TestOneStreamPerTicketNewestWins(t *testing.T) {
	r := roomFor(0, CapacityConfig{})
	r.Join("a", TierAnonymous, t0)
	first, ok := r.Connect("a", t0)
	if !ok || first.Load() {
		t.Fatal("the first stream was refused or stopped")
	}
	second, ok := r.Connect("a", t0)
	if !ok {
		t.Fatal("the second stream was refused")
	}
	if !first.Load() || second.Load() {
		t.Errorf("first stopped %v, second stopped %v: want the newest to win", first.Load(), second.Load())
	}
	r.Leave("a", t0) // the replaced stream ends
	if s := r.Stats(t0); s.Connected != 1 || s.Held != 1 {
		t.Errorf("Stats = %+v, want the second stream connected", s)
	}
}

func TestQueuedJoinWaitsBehindTheLine(t *testing.T) {
	r := roomFor(0, CapacityConfig{})
	// Even an empty line: it is served at its first poll, in order, and
	// told to poll soon since its turn is near.
	st := r.Enqueue("q", TierAnonymous, t0)
	wantStatus(t, "queued", st, Waiting, 1)
	if want := r.cfg.PollInterval / (maxPolls - 1); st.PollAfter != want {
		t.Errorf("queued at the head of a moving line polls after %v, want %v", st.PollAfter, want)
	}
	wantStatus(t, "queued at its poll", r.Poll("q", t0.Add(time.Second)), Admitted, 0)

	full := roomFor(1, CapacityConfig{})
	full.Join("in", TierAnonymous, t0)
	full.Join("w1", TierAnonymous, t0)
	wantStatus(t, "queued behind a waiter", full.Enqueue("q", TierAnonymous, t0), Waiting, 2)
}

func TestHammeringPollsAreRefusedButKeepThePlace(t *testing.T) {
	r := roomFor(1, CapacityConfig{})
	r.Join("in", TierAnonymous, t0)
	r.Join("w", TierAnonymous, t0)
	var early int
	for i := range 20 {
		if r.Poll("w", t0.Add(time.Duration(i)*time.Millisecond)).Verdict == Early {
			early++
		}
	}
	if early != 20-maxPolls {
		t.Errorf("%d of 20 polls in 20 ms refused, want %d", early, 20-maxPolls)
	}
	wantStatus(t, "w after a pause", r.Poll("w", t0.Add(r.cfg.PollInterval)), Waiting, 1)
}

// connect is Connect's ok.
func connect(r *Room, place string, now time.Time) bool {
	_, ok := r.Connect(place, now)
	return ok
}

// TestQueuePositionsMatchAModel checks the Fenwick-tree ranks, through
// renumbering, against a plain slice under random joins and departures.
func TestQueuePositionsMatchAModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var q tierQueue
	var model []*member
	for step := 0; step < 20000; step++ {
		if len(model) == 0 || rng.IntN(3) > 0 {
			m := &member{}
			q.push(m)
			model = append(model, m)
		} else {
			i := rng.IntN(len(model))
			if rng.IntN(2) == 0 {
				i = 0 // admissions leave from the head
			}
			q.remove(model[i])
			model = append(model[:i], model[i+1:]...)
		}
		if step%97 == 0 {
			for i, m := range model {
				if got := q.rank(m); got != i+1 {
					t.Fatalf("step %d: rank %d, want %d", step, got, i+1)
				}
			}
		}
		if q.n != len(model) || len(model) > 0 && q.head != model[0] {
			t.Fatalf("step %d: queue of %d, model of %d", step, q.n, len(model))
		}
	}
}

func TestAResumedListenerTakesAFreePlaceWithoutAJoinToken(t *testing.T) {
	// A join rate of nothing: only a resume can get in.
	r := roomFor(2, CapacityConfig{JoinRate: 1e-9, JoinBurst: 1})
	r.Join("in", TierAnonymous, t0) // the one join token
	if s := r.Join("new", TierAnonymous, t0); s.Verdict != Waiting {
		t.Fatalf("a newcomer past the join rate: %v, want waiting", s.Verdict)
	}
	if _, ok := r.Resume("from-a-dead-edge", TierAnonymous, t0); !ok {
		t.Fatal("a listener resuming from another edge found no place in a room with one")
	}
	if _, ok := r.Resume("another", TierAnonymous, t0); ok {
		t.Error("a resume took a place the room does not have")
	}
	if s := r.Stats(t0); s.Connected != 1 || s.Held != 2 || s.Admitted != 1 || s.Resumed != 1 {
		t.Errorf("stats %+v: want 1 connected, 2 held, 1 admitted, 1 resumed", s)
	}
	// One the room knows connects as usual, newest stream winning.
	old, _ := r.Resume("from-a-dead-edge", TierAnonymous, t0)
	if _, ok := r.Resume("from-a-dead-edge", TierAnonymous, t0); !ok || !old.Load() {
		t.Error("a second stream of a resumed listener did not replace the first")
	}
}

func TestARoomsShareOfTheCapMovesWithoutEvictingAnyone(t *testing.T) {
	r := roomFor(0, CapacityConfig{})
	share := func(n int) { r.SetGrant(Grant{Share: n, Admit: -1}, t0) }
	share(3)
	for i := range 5 {
		r.Join(id(i), TierAnonymous, t0)
	}
	share(1) // the origin moved places to another edge
	if s := r.Stats(t0); s.Held != 3 || s.Waiting[TierAnonymous] != 2 {
		t.Fatalf("after shrinking: %+v, want the 3 inside kept and 2 waiting", s)
	}
	share(4)
	wantStatus(t, "first waiter after growing", r.Poll(id(3), t0), Admitted, 0)
	wantStatus(t, "second waiter", r.Poll(id(4), t0), Waiting, 1)
	share(0) // none left here
	if _, ok := r.Resume("from-elsewhere", TierAnonymous, t0); ok {
		t.Error("a resume took a place beyond the share")
	}
	r.SetGrant(NoGrant, t0) // no share: the room's own cap, none here
	wantStatus(t, "last waiter without a share", r.Poll(id(4), t0), Admitted, 0)
}
