package gate

import (
	"encoding/json"
	"math"
	"slices"
	"testing"
	"time"
)

func TestAllotAdmitsTheFleetsOldestWaitersFirst(t *testing.T) {
	nodes := map[string]NodeLine{
		"a": {Held: 4, Line: []LineEntry{{TierAnonymous, 10, 2}, {TierAnonymous, 12, 1}}},
		"b": {Held: 4, Line: []LineEntry{{TierAnonymous, 11, 2}}},
		"c": {Held: 1},
	}
	g := Allot(nodes, FleetLimits{Cap: 12, Admit: -1})
	// 3 free places: a's two of bucket 10, then one of b's two of 11.
	for node, want := range map[string][2]int{"a": {6, 2}, "b": {5, 1}, "c": {1, 0}} {
		if got := [2]int{g[node].Share, g[node].Admit}; got != want {
			t.Errorf("%s: share, admit %v, want %v", node, got, want)
		}
	}
	sum := 0
	for _, x := range g {
		sum += x.Share
	}
	if sum != 12 {
		t.Errorf("shares add up to %d, want the cap 12", sum)
	}
	// After this round's admissions, a's entry of bucket 12 waits behind
	// the one of b's bucket 11 left.
	wantAhead := map[string][]LineEntry{
		"a": {{TierAnonymous, 10, 0}, {TierAnonymous, 12, 1}},
		"b": {{TierAnonymous, 11, 0}},
		"c": nil,
	}
	for node, want := range wantAhead {
		var got []LineEntry
		for _, e := range g[node].Ahead {
			if e.Bucket != math.MaxInt64 {
				got = append(got, e)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s ahead %v, want %v", node, got, want)
		}
	}
	// Newcomers after the summaries wait behind every other node's
	// waiters left.
	if last := g["c"].Ahead[len(g["c"].Ahead)-1]; last != (LineEntry{TierAnonymous, math.MaxInt64, 2}) {
		t.Errorf("c's newcomers: %v, want the 2 left elsewhere ahead", last)
	}
}

func TestAllotHigherTiersFirstAndTheJoinRateAcrossNodes(t *testing.T) {
	nodes := map[string]NodeLine{
		"a": {Line: []LineEntry{{TierAnonymous, 1, 5}}, Rate: 2},
		"b": {Line: []LineEntry{{TierSignedIn, 9, 2}, {TierAnonymous, 3, 1}}, Rate: 3},
	}
	g := Allot(nodes, FleetLimits{Admit: 4})
	// b's two signed-in first, then a's two oldest anonymous.
	if g["a"].Admit != 2 || g["b"].Admit != 2 || g["a"].Share != -1 {
		t.Errorf("grants a %+v b %+v: want 2 admissions each, no share", g["a"], g["b"])
	}
	if g["a"].Rate != 5 {
		t.Errorf("fleet rate %v, want 5", g["a"].Rate)
	}
	// Nobody waits: the round's admissions are split for newcomers.
	g = Allot(map[string]NodeLine{"a": {}, "b": {}, "c": {}}, FleetLimits{Cap: 100, Admit: 10})
	if g["a"].Admit != 4 || g["b"].Admit != 3 || g["c"].Admit != 3 {
		t.Errorf("walk-ins a %d b %d c %d, want 4 3 3", g["a"].Admit, g["b"].Admit, g["c"].Admit)
	}
	if s := g["a"].Share + g["b"].Share + g["c"].Share; s != 100 {
		t.Errorf("shares add up to %d with a join rate, want the cap 100", s)
	}
	// Newcomers have been coming to a: it gets most of them, b some.
	g = Allot(map[string]NodeLine{"a": {Rate: 9}, "b": {}}, FleetLimits{Admit: 10})
	if g["a"].Admit != 9 || g["b"].Admit != 1 {
		t.Errorf("walk-ins a %d b %d after a drew the crowd, want 9 1", g["a"].Admit, g["b"].Admit)
	}
}

// fleetOfRooms is a space served by rooms at several nodes, with the
// origin's rounds run by hand.
type fleetOfRooms struct {
	names []string
	rooms map[string]*Room
	lim   FleetLimits
}

func newFleetOfRooms(lim FleetLimits, names ...string) *fleetOfRooms {
	f := &fleetOfRooms{names: names, rooms: map[string]*Room{}, lim: lim}
	for _, n := range names {
		f.rooms[n] = roomFor(0, CapacityConfig{})
	}
	return f
}

func (f *fleetOfRooms) round(now time.Time) {
	parts := map[string]NodeLine{}
	for n, r := range f.rooms {
		parts[n] = r.Part(now)
	}
	for n, g := range Allot(parts, f.lim) {
		f.rooms[n].SetGrant(g, now)
	}
}

func TestAFleetsWaitersHaveExactPositionsAndAreServedInArrivalOrder(t *testing.T) {
	f := newFleetOfRooms(FleetLimits{Cap: 2, Admit: -1}, "a", "b")
	now := t0
	f.round(now)
	wantStatus(t, "first", f.rooms["a"].Join("first", TierAnonymous, now), Admitted, 0)
	wantStatus(t, "second", f.rooms["b"].Join("second", TierAnonymous, now), Admitted, 0)
	// Six waiters arrive at alternating doors, 150 ms apart.
	var order []string
	door := map[string]string{}
	for i := range 6 {
		now = now.Add(150 * time.Millisecond)
		who, at := id(i), f.names[i%2]
		if i == 3 {
			at = "a" // two in a row at one door
		}
		order, door[who] = append(order, who), at
		if s := f.rooms[at].Join(who, TierAnonymous, now); s.Verdict != Waiting {
			t.Fatalf("%s at %s: %v, want waiting", who, at, s.Verdict)
		}
	}
	f.round(now)
	for i, who := range order {
		wantStatus(t, who+" at "+door[who], f.rooms[door[who]].Poll(who, now), Waiting, i+1)
	}
	// Places free one at a time, a round each: whoever is first in the
	// fleet's line gets it, wherever it waits.
	leaving := []struct{ room, who string }{{"a", "first"}, {"b", "second"}}
	for i, who := range order {
		if i < len(leaving) {
			f.rooms[leaving[i].room].Leave(leaving[i].who, now)
		} else {
			prev := order[i-len(leaving)]
			f.rooms[door[prev]].Leave(prev, now)
		}
		f.round(now)
		now = now.Add(time.Second)
		for j, w := range order[i:] {
			want, pos := Waiting, j
			if j == 0 {
				want = Admitted
			}
			wantStatus(t, "after round "+who+": "+w, f.rooms[door[w]].Poll(w, now), want, pos)
		}
		if t.Failed() {
			return
		}
	}
}

func TestAFleetsJoinRateHoldsAcrossItsNodes(t *testing.T) {
	f := newFleetOfRooms(FleetLimits{Admit: 5}, "a", "b", "c")
	now := t0
	for round := range 10 {
		f.round(now)
		for i := range 30 { // a crowd at every door, far beyond the rate
			f.rooms[f.names[i%3]].Join(id(round*30+i), TierAnonymous, now)
		}
		now = now.Add(time.Second)
	}
	admitted := uint64(0)
	for _, r := range f.rooms {
		admitted += r.Stats(now).Admitted
	}
	if admitted != 50 {
		t.Errorf("10 rounds at 5 admissions a round admitted %d, want 50", admitted)
	}
}

func TestARoomWithAJoinRateWaitsForItsFirstGrant(t *testing.T) {
	cfg := DefaultRoomConfig()
	cfg.JoinRate = 10
	r := NewRoom(cfg, NewCapacity(CapacityConfig{JoinRate: 1e9, JoinBurst: 1 << 30}))
	wantStatus(t, "before any grant", r.Join("a", TierAnonymous, t0), Waiting, 1)
	r.SetGrant(Grant{Share: -1, Admit: 1}, t0)
	wantStatus(t, "after a grant of one", r.Poll("a", t0), Admitted, 0)
	wantStatus(t, "the grant spent", r.Join("b", TierAnonymous, t0), Waiting, 1)
}

func TestALongLineIsSummarizedWithinItsBound(t *testing.T) {
	cfg := DefaultRoomConfig()
	cfg.MaxListeners, cfg.PollTimeout = 1, 1000*time.Hour
	r := NewRoom(cfg, NewCapacity(CapacityConfig{}))
	now := t0
	r.Join("inside", TierAnonymous, now)
	r.Connect("inside", now)
	for i := range maxLine + 10 {
		now = now.Add(LineBucket)
		r.Join(id(i), TierAnonymous, now)
	}
	p := r.Part(now)
	if len(p.Line) != maxLine || p.Held != 1 {
		t.Fatalf("summary of %d entries, %d held: want %d, 1", len(p.Line), p.Held, maxLine)
	}
	if n := p.Line[maxLine-1].N; n != 11 {
		t.Errorf("the last entry counts %d, want the 11 newest", n)
	}
	// Leaving from the middle and the head keeps the summary true.
	r.Leave(id(5), now)
	r.Leave(id(0), now)
	if p = r.Part(now); p.Line[0].N != 1 || p.Line[0].Bucket != t0.Add(2*LineBucket).UnixNano()/int64(LineBucket) {
		t.Errorf("head entry %v after the first waiter left", p.Line[0])
	}
}

func TestLineEntriesEncodeAsTriples(t *testing.T) {
	in := []LineEntry{{TierStaff, 42, 7}}
	data, err := json.Marshal(in)
	if err != nil || string(data) != "[[3,42,7]]" {
		t.Fatalf("encoded %s, %v", data, err)
	}
	var out []LineEntry
	if err := json.Unmarshal(data, &out); err != nil || !slices.Equal(in, out) {
		t.Errorf("decoded %v, %v", out, err)
	}
	for _, bad := range []string{`[[9,1,1]]`, `[[0,1,-1]]`, `[["a",1,1]]`} {
		if err := json.Unmarshal([]byte(bad), &out); err == nil {
			t.Errorf("%s decoded without an error", bad)
		}
	}
}

func TestLeasesKeepAStaleReportFromCountingPlacesTwice(t *testing.T) {
	var l Leases
	lim := FleetLimits{Cap: 10, Admit: -1}
	// Round 1: nobody holds anything, both get half.
	g := l.Allot(map[string]NodeLine{"a": {}, "b": {}}, lim)
	if g["a"].Share != 5 || g["b"].Share != 5 || g["a"].Round != 1 {
		t.Fatalf("round 1: %+v", g)
	}
	// a filled its 5 places, but its report predates round 1's grant;
	// b applied it and holds 1 with 6 waiting. a's places are not b's.
	g = l.Allot(map[string]NodeLine{
		"a": {Held: 0},
		"b": {Held: 1, Round: 1, Line: []LineEntry{{TierAnonymous, 1, 6}}},
	}, lim)
	if g["b"].Share+5 > 10 || g["b"].Admit != 4 {
		t.Errorf("round 2 with a's report stale: b gets share %d, admit %d; want at most 5 and 4", g["b"].Share, g["b"].Admit)
	}
	// a reports, having applied round 2, and holds 5: the count is exact
	// again, and a's lease is what it holds.
	g = l.Allot(map[string]NodeLine{
		"a": {Held: 5, Round: 2},
		"b": {Held: 5, Round: 2, Line: []LineEntry{{TierAnonymous, 1, 2}}},
	}, lim)
	if g["a"].Share != 5 || g["b"].Share != 5 || g["b"].Admit != 0 {
		t.Errorf("round 3, all reported: a %+v b %+v, want 5 and 5, nothing to admit", g["a"], g["b"])
	}
	// a node that stops reporting gives its leases up.
	g = l.Allot(map[string]NodeLine{"b": {Held: 5, Round: 3}}, lim)
	if g["b"].Share != 10 {
		t.Errorf("round 4 without a: b's share %d, want all 10", g["b"].Share)
	}
}
