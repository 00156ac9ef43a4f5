package main

import (
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/attack"
	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/gate"
	"github.com/amphi-audio/amphi/internal/load"
	"github.com/amphi-audio/amphi/internal/ops"
)

// clock is a settable clock for the API, so ticket expiry can be tested
// without waiting. It runs with the wall clock, or stands still once
// stopped.
type clock struct{ offset, stopped atomic.Int64 }

func (c *clock) Now() time.Time {
	if at := c.stopped.Load(); at != 0 {
		return time.Unix(0, at+c.offset.Load())
	}
	return time.Now().Add(time.Duration(c.offset.Load()))
}
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }
func (c *clock) Stop()                   { c.stopped.Store(time.Now().UnixNano()) }

// postJoin sends one join request and decodes the answer.
func postJoin(t *testing.T, base, space string, body any) (int, map[string]any) {
	t.Helper()
	resp, out := call(t, http.MethodPost, base+"/spaces/"+space+"/join", body, nil)
	return resp.StatusCode, out
}

func getStatus(t *testing.T, ctx context.Context, url string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestTicketsAreRefusedByReason: forged, other-space and expired tickets
// are refused with their status and counted by reason.
func TestTicketsAreRefusedByReason(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var clk clock
	m := MustRunMainWith(t, t.TempDir(), func(m *Main) { m.Config.API.Now = clk.Now })
	defer m.Close()
	c := client.New(m.URL())
	a, err := c.Create(ctx, "A", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Create(ctx, "B", nil)
	if err != nil {
		t.Fatal(err)
	}
	adm, err := c.Join(ctx, a.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	live := func(space, ticket string) string {
		return m.URL() + "/spaces/" + space + "/live.opus?ticket=" + ticket
	}
	if st := getStatus(t, ctx, live(b.ID, adm.Ticket)); st != http.StatusForbidden {
		t.Errorf("another space's ticket: %d, want 403", st)
	}
	// Another valid base64url character inside the MAC: well-formed, but
	// not signed by the server.
	forged := []byte(adm.Ticket)
	if forged[len(forged)-3] == 'A' {
		forged[len(forged)-3] = 'B'
	} else {
		forged[len(forged)-3] = 'A'
	}
	if st := getStatus(t, ctx, live(a.ID, string(forged))); st != http.StatusUnauthorized {
		t.Errorf("forged ticket: %d, want 401", st)
	}
	clk.Advance(16 * time.Minute)
	if st := getStatus(t, ctx, live(a.ID, adm.Ticket)); st != http.StatusUnauthorized {
		t.Errorf("expired ticket: %d, want 401", st)
	}
	got := m.api.GateStats().Refusals
	for _, reason := range []gate.Refusal{gate.RefusalTicketWrongSpace, gate.RefusalTicketBadSignature, gate.RefusalTicketExpired} {
		if got[reason] != 1 {
			t.Errorf("refusals[%v] = %d, want 1 (all: %v)", reason, got[reason], got)
		}
	}
}

// TestProofOfWorkGuardsJoinsWhenArmed: with proof of work armed, a join is
// answered with a challenge; a wrong or replayed answer is refused and
// counted; a solved one is admitted, and amphi's own client solves it.
func TestProofOfWorkGuardsJoinsWhenArmed(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := MustRunMainWith(t, t.TempDir(), func(m *Main) {
		m.Config.API.Gate.PoWDifficulty = 12
		oneSourceTest(m)
	})
	defer m.Close()
	c := client.New(m.URL())
	sp, err := c.Create(ctx, "Guarded", nil)
	if err != nil {
		t.Fatal(err)
	}
	st, out := postJoin(t, m.URL(), sp.ID, nil)
	challenge, _ := out["challenge"].(string)
	if st != http.StatusOK || out["status"] != "challenge" || challenge == "" || out["difficulty"] != 12.0 {
		t.Fatalf("join: %d %v, want a 12-bit challenge", st, out)
	}
	if st, out := postJoin(t, m.URL(), sp.ID, map[string]string{"challenge": challenge, "nonce": "not-it"}); st < 400 {
		t.Errorf("wrong answer: %d %v, want a refusal", st, out)
	}
	nonce, err := gate.Solve(ctx, challenge)
	if err != nil {
		t.Fatal(err)
	}
	if st, out := postJoin(t, m.URL(), sp.ID, map[string]string{"challenge": challenge, "nonce": nonce}); st != http.StatusOK || out["status"] != "admitted" {
		t.Errorf("solved: %d %v, want admitted", st, out)
	}
	if st, out := postJoin(t, m.URL(), sp.ID, map[string]string{"challenge": challenge, "nonce": nonce}); st < 400 {
		t.Errorf("replayed: %d %v, want a refusal", st, out)
	}
	got := m.api.GateStats().Refusals
	if got[gate.RefusalPoWWrong] != 1 || got[gate.RefusalPoWReplayed] != 1 {
		t.Errorf("refusals %v, want one wrong answer and one replay", got)
	}
	listenCtx, stop := context.WithTimeout(ctx, 2*time.Second)
	defer stop()
	ls, err := c.Listen(listenCtx, sp.ID, client.ListenOptions{})
	if err != nil || ls.Packets == 0 {
		t.Errorf("amphi's client behind proof of work: %+v, %v", ls, err)
	}
}

// TestFullSpaceQueuesNewcomersInArrivalOrder: past capacity newcomers wait
// in order and are admitted as places free; nobody inside is cut for them.
func TestFullSpaceQueuesNewcomersInArrivalOrder(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := MustRunMainWith(t, t.TempDir(), func(m *Main) {
		m.Config.API.Gate.Node.MaxListeners = 2
		m.Config.API.Gate.Room.Linger = -1 // free a place as soon as its stream ends
		oneSourceTest(m)
	})
	defer m.Close()
	c := client.New(m.URL())
	sp, err := c.Create(ctx, "Small room", nil)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		st  *client.ListenStats
		err error
	}
	inside := make([]chan result, 2)
	cancels := make([]context.CancelFunc, 2)
	for i := range inside {
		lctx, stop := context.WithCancel(ctx)
		cancels[i] = stop
		inside[i] = make(chan result, 1)
		go func() {
			st, err := c.Listen(lctx, sp.ID, client.ListenOptions{})
			inside[i] <- result{st, err}
		}()
	}
	waitFor(t, func() bool { return m.edge.Stats().Listeners == 2 })

	var waiters []string
	for i := 1; i <= 3; i++ {
		st, out := postJoin(t, m.URL(), sp.ID, nil)
		if st != http.StatusOK || out["status"] != "waiting" || out["position"] != float64(i) {
			t.Fatalf("newcomer %d: %d %v, want waiting at position %d", i, st, out, i)
		}
		waiters = append(waiters, out["listener"].(string))
	}
	// The first listener leaves: the first waiter, and only it, gets in.
	cancels[0]()
	<-inside[0]
	waitFor(t, func() bool { return m.edge.Stats().Listeners == 1 })
	for i, w := range waiters {
		_, out := postJoin(t, m.URL(), sp.ID, map[string]string{"listener": w})
		want := "waiting"
		if i == 0 {
			want = "admitted"
		}
		if out["status"] != want || (want == "waiting" && out["position"] != float64(i)) {
			t.Errorf("waiter %d after a place freed: %v, want %s at position %d", i+1, out, want, i)
		}
	}
	// The second listener was never cut.
	time.Sleep(300 * time.Millisecond)
	cancels[1]()
	r := <-inside[1]
	if r.err != nil || r.st.Ended || r.st.Holes != 0 || r.st.Packets == 0 {
		t.Errorf("the listener inside: %+v %v, want an uninterrupted stream ended by itself", r.st, r.err)
	}
}

// oneSourceTest lifts the per-source join limit for tests whose every
// request comes from 127.0.0.1, as a crowd's would not.
func oneSourceTest(m *Main) {
	m.Config.API.Gate.Join.SourceRate, m.Config.API.Gate.Join.SourceBurst = 1000, 1000
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	waitUpTo(t, 10*time.Second, cond)
}

// waitUpTo waits for cond for at most d.
func waitUpTo(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met in %v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFloodDoesNotReachListenersInside: with proof of work armed, a flood
// of ten times the legitimate request rate — forged tickets, join floods,
// slowloris and slow readers — leaves every admitted listener without a
// stall, at least 99 % of legitimate joins succeed, and the stage's speakers
// keep hearing each other.
func TestFloodDoesNotReachListenersInside(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	m := MustRunMainWith(t, t.TempDir(), func(m *Main) { m.Config.API.Gate.PoWDifficulty = 10 })
	defer m.Close()
	c := client.New(m.URL())
	sp, err := c.Create(ctx, "Under fire", nil)
	if err != nil {
		t.Fatal(err)
	}
	a := dialSpeaker(t, ctx, c, sp.ID, sp.SpeakerToken)
	b := dialSpeaker(t, ctx, c, sp.ID, freshSpeaker(t, c, sp))
	var speaking sync.WaitGroup
	for _, s := range []*toneSpeaker{a, b} {
		speaking.Go(func() { s.play(ctx, 440, 0, time.Hour, 9*time.Second) })
	}

	// Legitimate: 60 listeners at 10 joins/s. Attack: 10 times that.
	const legit = 10.0
	run := 8 * time.Second
	flood := []attack.Config{
		{Kind: attack.ListenFlood, SpaceID: sp.ID, Rate: 4 * legit, Sources: 64},
		{Kind: attack.JoinFlood, SpaceID: sp.ID, Rate: 4 * legit, Sources: 64},
		{Kind: attack.Slowloris, SpaceID: sp.ID, Rate: legit, Concurrency: 200, Sources: 16},
		{Kind: attack.SlowReader, SpaceID: sp.ID, Rate: legit, Concurrency: 50, Sources: 16},
	}
	rep, err := load.Run(ctx, load.Scenario{
		Server: m.URL(), SpaceID: sp.ID, Listeners: 60, JoinRate: legit,
		Duration: load.Duration(run), Attacks: flood,
	}, load.Config{})
	if err != nil {
		t.Fatal(err)
	}
	speaking.Wait()
	l := rep.Listeners
	t.Logf("listeners %+v, stalls %d, ttfa %+v, failed by %v", l, rep.Stalls, rep.TTFA, l.FailedBy)
	for _, at := range rep.Attacks {
		t.Logf("attack %s", at)
	}
	admitted := l.OK + l.Stalled + l.Cut
	if rep.Stalls != 0 || l.Stalled != 0 || l.Cut != 0 {
		t.Errorf("admitted listeners were hurt: %d stalled, %d cut, %d stalls", l.Stalled, l.Cut, rep.Stalls)
	}
	if joined := l.Joined - l.Pending; joined == 0 || float64(admitted) < 0.99*float64(joined) {
		t.Errorf("%d of %d legitimate joins succeeded, want at least 99 %%", admitted, joined)
	}
	var started int64
	for _, at := range rep.Attacks {
		started += at.Started
	}
	// The floods aim at 8 times the legitimate rate; a busy machine makes
	// fewer, but a flood that did not reach twice it tested nothing.
	if started < int64(2*legit*run.Seconds()) {
		t.Errorf("the flood made only %d requests", started)
	}
	// The read-header timeout (5 s) cuts slowloris connections; nothing
	// lets them hold a connection for the whole run.
	if sl := rep.Attacks[2]; sl.ClosedByServer == 0 || sl.MeanHold >= run {
		t.Errorf("slowloris: %d cut by the server after %v on average, want cuts within the 5 s header timeout", sl.ClosedByServer, sl.MeanHold)
	}
	for _, h := range []struct {
		name string
		s    *toneSpeaker
	}{{"A hears B", a}, {"B hears A", b}} {
		if pcm := h.s.heardPCM(t); len(pcm) < 6*amphi.SampleRate {
			t.Errorf("%s: only %v of audio during the flood", h.name, time.Duration(len(pcm))*time.Second/amphi.SampleRate)
		}
	}
}

// TestOpsNamesBothAFloodAndAnInternalFault: a rehearsal mixes a flood of
// forged tickets with the mixer made to stall every 2 s; /ops must name
// both, with evidence, while they go on (30 s at most: it takes a few
// snapshots alone, more on a busy machine).
func TestOpsNamesBothAFloodAndAnInternalFault(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stall atomic.Bool
	m := MustRunMainWith(t, t.TempDir(), func(m *Main) {
		m.Config.Live.Mix.Knobs.BeforeFrame = func(frame uint64) {
			if frame%100 == 0 && stall.Load() {
				time.Sleep(500 * time.Millisecond)
			}
		}
	})
	defer m.Close()
	sp, err := client.New(m.URL()).Create(ctx, "Bad day", nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	stall.Store(true)
	attacked := make(chan struct{})
	go func() {
		defer close(attacked)
		attack.Run(ctx, attack.Config{Kind: attack.ListenFlood, Target: m.URL(), SpaceID: sp.ID, Rate: 200, Duration: time.Minute, Sources: 256})
	}()
	defer func() { cancel(); <-attacked }()

	var report struct {
		Verdict    string   `json:"verdict"`
		Conditions []string `json:"conditions"`
		Evidence   []struct {
			Condition, Text string
		} `json:"evidence"`
	}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.OpsURL()+"/ops", nil)
		req.Header.Set("Accept", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&report)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		has := map[string]bool{}
		for _, c := range report.Conditions {
			has[c] = true
		}
		if has[ops.UnderAttack] && has[ops.FailingInternally] {
			t.Logf("named after %v: verdict %s, conditions %v", time.Since(start).Round(time.Millisecond), report.Verdict, report.Conditions)
			for _, e := range report.Evidence {
				t.Logf("  %s: %s", e.Condition, e.Text)
			}
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("after 30 s /ops says %s %v, want both under_attack and failing_internally", report.Verdict, report.Conditions)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestStageHasItsOwnDoor: when the audience has taken every connection the
// main address may hold, speakers still join through the stage address and
// hear each other, and the main address goes on refusing at accept.
func TestStageHasItsOwnDoor(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m := MustRunMainWith(t, t.TempDir(), func(m *Main) {
		m.Config.StageAddr = "127.0.0.1:0"
		m.Config.MaxConns = 50
	})
	defer m.Close()
	sp, err := client.New(m.URL()).Create(ctx, "Packed", nil)
	if err != nil {
		t.Fatal(err)
	}
	// The audience holds every connection the main address allows.
	held := make(chan attack.Stats, 1)
	go func() {
		st, _ := attack.Run(ctx, attack.Config{Kind: attack.ConnExhaust, Target: m.URL(), Rate: 500, Count: 200, Concurrency: 200, Duration: 8 * time.Second, Sources: 8})
		held <- st
	}()
	waitFor(t, func() bool { return m.ln.refused.Load() > 0 })
	stage := client.New(m.StageURL())
	a := dialSpeaker(t, ctx, stage, sp.ID, sp.SpeakerToken)
	b := dialSpeaker(t, ctx, stage, sp.ID, freshSpeaker(t, stage, sp))
	var wg sync.WaitGroup
	wg.Go(func() { a.play(ctx, 440, 0, time.Hour, 3*time.Second) })
	wg.Go(func() { b.play(ctx, 1000, 0, time.Hour, 3*time.Second) })
	wg.Wait()
	for name, s := range map[string]*toneSpeaker{"A": a, "B": b} {
		if pcm := s.heardPCM(t); len(pcm) < 2*amphi.SampleRate {
			t.Errorf("speaker %s heard %v through the stage's door", name, time.Duration(len(pcm))*time.Second/amphi.SampleRate)
		}
	}
	st := <-held
	t.Logf("audience: %s; main address refused %d at accept", st, m.ln.refused.Load())
}

// TestNodeCapacityFollowsTheMachine: the default listener cap is the least
// of what the open-files limit, the memory and the cores allow.
func TestNodeCapacityFollowsTheMachine(t *testing.T) {
	t.Parallel()
	n := nodeCapacity()
	limits := map[string]int{
		"open files": defaultMaxConns() - reservedFiles,
		"cores":      listenersPerCPU * runtime.NumCPU(),
		"memory":     int(memTotal() / listenerMemory),
	}
	least := n + 1
	for name, l := range limits {
		if n > l {
			t.Errorf("capacity %d exceeds what %s allow (%d)", n, name, l)
		}
		least = min(least, l)
	}
	if n != max(least, 100) {
		t.Errorf("capacity %d, want the least of %v", n, limits)
	}
	if got := DefaultConfig().API.Gate.Node.MaxListeners; got != n {
		t.Errorf("the default config caps %d listeners, want %d", got, n)
	}
}
