package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/gate"
)

// fleetOf runs an origin and n edges, the edges sharing one loopback port
// (SO_REUSEPORT) as `amphi serve --role edge --procs n` runs them. It
// returns the origin, the edges and the edges' shared base URL.
func fleetOf(t *testing.T, n int) (*Main, []*Main, string) {
	t.Helper()
	originDir := t.TempDir()
	origin := MustRunMainWith(t, originDir, func(m *Main) { m.Config.Role = RoleOrigin })
	t.Cleanup(func() { origin.Close() })
	// The port stays taken, in the edges' SO_REUSEPORT group, until they
	// have it: a port closed and bound again could go to another test.
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		c.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		return err
	}}
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	edges := make([]*Main, n)
	for i := range edges {
		edges[i] = MustRunMainWith(t, t.TempDir(), func(m *Main) {
			m.Config.Role, m.Config.Addr, m.Config.ReusePort = RoleEdge, addr, true
			m.Config.Bus.URL = origin.BusURL()
			m.Config.GateKeyFile = filepath.Join(originDir, "gate.key")
		})
		e := edges[i]
		t.Cleanup(func() { e.Close() })
	}
	return origin, edges, "http://" + addr
}

// spaceOnFleet runs fleetOf(t, n) with a live space every edge has the
// program of, for a test bounded by d.
func spaceOnFleet(t *testing.T, n int, d time.Duration) (context.Context, *Main, []*Main, string, *client.Created) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	origin, edges, shared := fleetOf(t, n)
	sp := createSpace(t, ctx, origin.URL())
	knownAt(t, edges, sp.ID)
	return ctx, origin, edges, shared, sp
}

// knownAt waits until every edge knows the space from the origin's
// announcements and has its program.
func knownAt(t testing.TB, edges []*Main, id string) {
	t.Helper()
	for _, e := range edges {
		waitFor(t, func() bool { return e.dir.Get(id) != nil && e.edge.HasRing(id) })
	}
}

// servingEdge waits until one of two edges serves the one listener, and
// returns it and the other.
func servingEdge(t *testing.T, edges []*Main) (serving, other *Main) {
	t.Helper()
	waitFor(t, func() bool {
		for i, e := range edges {
			if e.edge.Stats().Listeners == 1 {
				serving, other = e, edges[1-i]
				return true
			}
		}
		return false
	})
	return serving, other
}

func TestEdgesServeTheOriginsListenersEachHearingTheSpeaker(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	origin, edges, shared := fleetOf(t, 2)

	// The rehearsal tool makes the space and its speaker at the origin;
	// its listeners join and listen at the edges' shared port, which the
	// kernel spreads over both.
	rep, text := runLoadReport(t, ctx, "--server", origin.URL(), "--listen-server", shared,
		"--listeners", "40", "--rate", "40", "--duration", "6s")
	l := rep.Listeners
	if l.Target != 40 || l.OK != 40 || l.Failed != 0 || rep.Holes != 0 {
		t.Errorf("listeners %+v, holes %d: want all 40 ok, no hole\n%s", l, rep.Holes, text)
	}
	if len(rep.Edges) != 2 {
		t.Errorf("listeners were served by %d edges (%v), want both", len(rep.Edges), rep.Edges)
	}
	for name, c := range rep.Edges {
		if c.Started == 0 || !strings.HasPrefix(name, edges[0].node[:strings.LastIndex(edges[0].node, "-")]) {
			t.Errorf("edge %q served %+v", name, c)
		}
	}
	// The origin sees both edges in its fleet, from their load reports,
	// and sends new listeners to one of them.
	if fl := origin.snapshot().Edges; len(fl) != 2 {
		t.Errorf("the origin's /ops shows %d edges, want 2: %+v", len(fl), fl)
	}
	sp, err := client.New(origin.URL()).Get(ctx, rep.SpaceID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sp.LiveURL, shared+"/") || !strings.HasPrefix(sp.JoinURL, shared+"/") {
		t.Errorf("live_url %q, join_url %q: want them at an edge, %s", sp.LiveURL, sp.JoinURL, shared)
	}
}

func TestTheOriginsTicketOpensTheStreamAtAnEdge(t *testing.T) {
	t.Parallel()
	ctx, origin, edges, shared, sp := spaceOnFleet(t, 1, 60*time.Second)

	adm, err := client.New(origin.URL()).Join(ctx, sp.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The same ticket, at the edge: it never saw this listener, and
	// gives it a place because another node of the fleet admitted it.
	atEdge := shared + strings.TrimPrefix(adm.ListenURL, origin.URL())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, atEdge, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Amphi-Edge") != edges[0].node {
		t.Fatalf("the origin's ticket at the edge: %d, edge %q", resp.StatusCode, resp.Header.Get("X-Amphi-Edge"))
	}
	buf := make([]byte, 512)
	if n, err := resp.Body.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "OggS") {
		t.Fatalf("the stream at the edge starts %q, %v", buf[:n], err)
	}
	// A made-up ticket is still refused there.
	bad, _ := http.Get(shared + "/spaces/" + sp.ID + "/live.opus?ticket=made-up")
	if bad.StatusCode != http.StatusUnauthorized {
		t.Errorf("a made-up ticket at the edge: %d, want 401", bad.StatusCode)
	}
	bad.Body.Close()
}

func TestListenersResumeOnAnotherEdgeWithoutAHoleWhenTheirsDies(t *testing.T) {
	t.Parallel()
	ctx, _, edges, shared, sp := spaceOnFleet(t, 2, 60*time.Second)

	type result struct {
		st  *client.ListenStats
		err error
	}
	done := make(chan result, 1)
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		st, err := client.New(shared).Listen(lctx, sp.ID, client.ListenOptions{ResumeFor: 10 * time.Second})
		done <- result{st, err}
	}()
	// Find the edge serving the listener and stop it, as a crash or a
	// rolling deploy would: the kernel sends the resumed connection to the
	// other, which has the same program in its ring.
	serving, other := servingEdge(t, edges)
	time.Sleep(time.Second) // a second of audio before the cut
	serving.Close()
	waitFor(t, func() bool { return other.edge.Stats().Listeners == 1 })
	time.Sleep(2 * time.Second) // and some after
	stop()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.st.Resumes < 1 || r.st.Holes != 0 || r.st.Packets == 0 {
		t.Errorf("resumes %d, holes %d, packets %d: want a resume and no hole in the timeline", r.st.Resumes, r.st.Holes, r.st.Packets)
	}
}

// capFleet runs an origin whose spaces have limits across the fleet
// (set by limits) and two edges it counts, with a space they know.
func capFleet(t testing.TB, limits func(*Main)) (origin *Main, edges []*Main, spaceID string) {
	t.Helper()
	originDir := t.TempDir()
	origin = MustRunMainWith(t, originDir, func(m *Main) {
		m.Config.Role = RoleOrigin
		limits(m)
	})
	t.Cleanup(func() { origin.Close() })
	for range 2 {
		e := MustRunMainWith(t, t.TempDir(), func(m *Main) {
			m.Config.Role, m.Config.Bus.URL = RoleEdge, origin.BusURL()
			m.Config.GateKeyFile = filepath.Join(originDir, "gate.key")
		})
		t.Cleanup(func() { e.Close() })
		edges = append(edges, e)
	}
	waitFor(t, func() bool { return len(origin.fleet.snapshot()) == 2 })
	sp := createSpace(t, t.Context(), origin.URL())
	knownAt(t, edges, sp.ID)
	return origin, edges, sp.ID
}

// fleetRoom sums a space's rooms at the edges.
func fleetRoom(edges []*Main, id string) (held, waiting int, admitted uint64) {
	for _, e := range edges {
		st := e.dir.Get(id).Waiting().Stats(time.Now())
		held += st.Held
		admitted += st.Admitted
		for _, n := range st.Waiting {
			waiting += n
		}
	}
	return held, waiting, admitted
}

func TestASpacesListenerCapAndLineHoldAcrossItsEdges(t *testing.T) {
	t.Parallel()
	const limit = 10
	_, edges, id := capFleet(t, func(m *Main) { m.Config.API.Gate.Room.MaxListeners = limit })

	// Sixteen newcomers, each from its own address, eight at each edge:
	// the origin grants each node its part of the 10 places every second,
	// so the edges together admit 10, and not one more.
	for i := range 16 {
		joinAs(t, fromAddr(fmt.Sprintf("127.0.20.%d", 1+i)), edges[i%2].URL(), id, nil)
	}
	// A few rounds of grants: more on a machine busy with other tests.
	start := time.Now()
	waitUpTo(t, 30*time.Second, func() bool { held, _, _ := fleetRoom(edges, id); return held == limit })
	t.Logf("the edges held the %d places %v after the joins", limit, time.Since(start).Round(time.Millisecond))
	time.Sleep(3 * fleetEvery) // more rounds of grants
	if held, waiting, _ := fleetRoom(edges, id); held != limit || waiting != 16-limit {
		t.Errorf("the edges hold %d places with %d waiting, want %d and %d", held, waiting, limit, 16-limit)
	}

	// Four more at alternating edges, further apart than the line's
	// resolution: one line across both edges, so after a round they
	// stand at 7, 8, 9 and 10, in the order they came, wherever they
	// came in.
	type waiter struct {
		hc       *http.Client
		edge     string
		listener string
	}
	var late []waiter
	for i := range 4 {
		time.Sleep(2 * gate.LineBucket)
		w := waiter{hc: fromAddr(fmt.Sprintf("127.0.21.%d", 1+i)), edge: edges[i%2].URL()}
		_, out := joinAs(t, w.hc, w.edge, id, nil)
		w.listener, _ = out["listener"].(string)
		late = append(late, w)
	}
	// An edge reports, then the origin grants: two rounds, or more on a
	// busy machine. Polls at the pace a page keeps.
	var wrong []string
	for deadline := time.Now().Add(20 * time.Second); ; {
		time.Sleep(2 * fleetEvery / 3)
		wrong = nil
		for i, w := range late {
			st, out := joinAs(t, w.hc, w.edge, id, map[string]string{"listener": w.listener})
			if st != http.StatusOK || out["status"] != "waiting" || out["position"] != float64(16-limit+1+i) {
				wrong = append(wrong, fmt.Sprintf("late waiter %d at %s: %d %v, want waiting at %d", i, w.edge, st, out, 16-limit+1+i))
			}
		}
		if len(wrong) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, w := range wrong {
		t.Error(w)
	}
}

func TestASpacesJoinRateHoldsAcrossItsEdges(t *testing.T) {
	t.Parallel()
	const rate = 3 // a second, across the fleet
	origin, edges, id := capFleet(t, func(m *Main) { m.Config.API.Gate.Room.JoinRate = rate })
	start := time.Now()
	for i := range 24 {
		joinAs(t, fromAddr(fmt.Sprintf("127.0.22.%d", 1+i)), edges[i%2].URL(), id, nil)
	}
	// A round comes every second and never early: whenever we look, at
	// most rate admissions a round have been made since the start, one
	// round ahead (the one under way), and the line moves.
	var admitted uint64
	for range 4 {
		time.Sleep(fleetEvery)
		_, _, admitted = fleetRoom(edges, id)
		admitted += origin.dir.Get(id).Waiting().Stats(time.Now()).Admitted
		rounds := uint64(time.Since(start)/fleetEvery) + 2
		if admitted > rate*rounds {
			t.Fatalf("%d admitted after %v, want at most %d a round", admitted, time.Since(start), rate)
		}
	}
	if admitted == 0 {
		t.Error("nobody admitted in 4 s at a join rate of 3 a second")
	}
}

// TestAnEdgesListenersHearThroughTheOriginsHandover: an origin and an edge
// on an `amphi nats` node, a standby on the origin's data directory. The
// origin shuts down (what SIGTERM does) while the standby waits: it hands
// the space over rather than ending it, and the edge's listener hears the
// program go on from the standby within 5 s, with no end in between.
func TestAnEdgesListenersHearThroughTheOriginsHandover(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	natsDir := t.TempDir()
	node := startNATSNode(t, natsDir, "bus")
	natsURL := "nats://" + readToken(t, natsDir) + "@" + node.host
	dir := t.TempDir()
	onBus := func(m *Main) { m.Config.Role, m.Config.Bus.URL = RoleOrigin, natsURL }
	origin := MustRunMainWith(t, dir, onBus)
	t.Cleanup(func() { origin.Close() })
	e := MustRunMainWith(t, t.TempDir(), func(m *Main) {
		m.Config.Role, m.Config.Bus.URL, m.Config.GateKeyFile = RoleEdge, natsURL, filepath.Join(dir, "gate.key")
	})
	t.Cleanup(func() { e.Close() })
	standby := testMain(dir, func(m *Main) { onBus(m); m.Config.Standby = true })
	tookOver := make(chan error, 1)
	go func() { tookOver <- standby.Run(ctx) }()
	t.Cleanup(func() { standby.Close() })
	waitFor(t, func() bool { return standbyWaits(dir) })

	sp := createSpace(t, ctx, origin.URL())
	knownAt(t, []*Main{e}, sp.ID)
	var mu sync.Mutex
	var heard []time.Time
	listened := make(chan *client.ListenStats, 1)
	go func() {
		st, err := client.New(e.URL()).Listen(ctx, sp.ID, client.ListenOptions{ResumeFor: 30 * time.Second,
			OnPacket: func([]byte, int64) { mu.Lock(); heard = append(heard, time.Now()); mu.Unlock() }})
		if err != nil {
			t.Errorf("listen at the edge: %v", err)
		}
		listened <- st
	}()
	heardSince := func(since time.Time) bool {
		mu.Lock()
		defer mu.Unlock()
		return len(heard) > 0 && heard[len(heard)-1].After(since)
	}
	begun := time.Now()
	waitFor(t, func() bool { return heardSince(begun) })

	handed := time.Now()
	if err := origin.Close(); err != nil {
		t.Errorf("the origin handing over: %v", err)
	}
	gone := time.Now() // what the listener hears from now on is the standby's
	if err := <-tookOver; err != nil {
		t.Fatalf("the standby: %v", err)
	}
	if !pollUntil(handed.Add(5*time.Second), func() bool { return heardSince(gone) }) {
		t.Fatal("the edge's listener heard nothing from the standby within 5 s of the handover")
	}
	t.Logf("the edge's listener heard the standby's program %v after the handover began", time.Since(handed).Round(time.Millisecond))
	select {
	case st := <-listened:
		t.Fatalf("the edge's listener stopped at the handover: %+v", st)
	default:
	}
	// The program went on where it was: one timeline, one end.
	if _, err := client.New(standby.URL()).End(ctx, sp.ID, sp.HostToken); err != nil {
		t.Fatal(err)
	}
	if st := <-listened; st == nil || !st.Ended || st.Holes != 0 {
		t.Errorf("the edge's listener: %+v, want the end of the program and no hole", st)
	}
}

func TestAFloodOfMadeUpSpacesAtAnEdgeBarelyReachesTheOrigin(t *testing.T) {
	t.Parallel()
	origin, edges, _ := fleetOf(t, 1)
	var asked atomic.Int64
	sub, err := origin.bus.Subscribe("amphi.lookup.space", func([]byte) { asked.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	start := time.Now()
	codes := map[int]int{}
	for i := range 3 * lookupRate {
		hc := fromAddr(fmt.Sprintf("127.0.%d.%d", 30+i/250, 1+i%250))
		resp, err := hc.Get(fmt.Sprintf("%s/spaces/madeup%04d", edges[0].URL(), i))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes[resp.StatusCode]++
	}
	elapsed := time.Since(start)
	time.Sleep(100 * time.Millisecond) // the last lookups on their way
	if most := int64(lookupRate * (elapsed.Seconds() + 1)); asked.Load() > most {
		t.Errorf("%d made-up ids in %v reached the origin as %d lookups, want at most %d", 3*lookupRate, elapsed, asked.Load(), most)
	}
	for code := range codes {
		if code != http.StatusNotFound && code != http.StatusServiceUnavailable {
			t.Errorf("answers %v: want only 404 and 503", codes)
		}
	}
	t.Logf("%d made-up ids in %v: answers %v, %d lookups at the origin", 3*lookupRate, elapsed, codes, asked.Load())
}

func TestTheOriginAnswersFetchesOfMissedChunksFromItsRing(t *testing.T) {
	t.Parallel()
	ctx, m, sp := onAir(t, 30*time.Second)
	waitFor(t, func() bool { return len(m.live.Session(sp.ID).Chunks(0, 5)) == 5 })
	b := testBus(t, m.BusURL())
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	got, err := b.Fetch(fctx, sp.ID, 2, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Seq != 2 || got[2].Seq != 4 || !bytes.Equal(got[1].Page, m.live.Session(sp.ID).Chunks(3, 4)[0].Page) {
		t.Fatalf("fetched %d chunks, want 2, 3 and 4 as the origin made them", len(got))
	}
	// A space not on air here gets no answer: the fetch ends with its
	// context and the edge passes the hole.
	short, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	if _, err := b.Fetch(short, "nosuchspace", 0, 3); err == nil {
		t.Error("a fetch of a space nobody mixes was answered")
	}
}
