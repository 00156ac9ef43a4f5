package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/edge"
	"github.com/amphi-audio/amphi/internal/gate"
	"github.com/amphi-audio/amphi/internal/ops"
)

// fromAddr returns an HTTP client whose connections come from the loopback
// address src, as a person behind that address would reach the server.
func fromAddr(src string) *http.Client {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// joinAs posts one join from hc with body (nil: a newcomer) and decodes the
// answer.
func joinAs(t testing.TB, hc *http.Client, base, space string, body any, hdr ...string) (int, map[string]any) {
	t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/spaces/"+space+"/join", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestFlashCrowdFromThreePrefixesWaitsItsTurn: 450 people join within about
// two seconds from three /24s, 150 each, at three times the node's join
// rate. Nobody is refused and nobody is asked for work: those the join rate
// cannot take at once, and those past their prefix's rate, get places in
// line in arrival order and are all admitted.
func TestFlashCrowdFromThreePrefixesWaitsItsTurn(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The gate's clock stands still while the crowd arrives and moves one
	// poll interval a round, so the test sees the order, not the timing.
	var clk clock
	clk.Stop()
	const rate = 100
	m := MustRunMainWith(t, t.TempDir(), func(m *Main) {
		m.Config.API.Now = clk.Now
		m.Config.API.Gate.Node.JoinRate, m.Config.API.Gate.Node.JoinBurst = rate, rate
	})
	defer m.Close()
	sp := createSpace(t, ctx, m.URL())

	type joiner struct {
		hc       *http.Client
		listener string
		position float64
		admitted bool
	}
	var crowd []*joiner
	for host := 2; host < 152; host++ {
		for prefix := 1; prefix <= 3; prefix++ {
			crowd = append(crowd, &joiner{hc: fromAddr(fmt.Sprintf("127.10.%d.%d", prefix, host))})
		}
	}
	lastPosition := 0.0
	for i, j := range crowd {
		st, out := joinAs(t, j.hc, m.URL(), sp.ID, nil)
		if st != http.StatusOK {
			t.Fatalf("joiner %d: %d %v, want 200", i, st, out)
		}
		j.listener, _ = out["listener"].(string)
		switch out["status"] {
		case "admitted":
			j.admitted = true
		case "waiting":
			j.position, _ = out["position"].(float64)
			if j.position != lastPosition+1 {
				t.Errorf("joiner %d waits at %v, want %v: right behind the one before", i, j.position, lastPosition+1)
			}
			lastPosition = j.position
		default:
			t.Fatalf("joiner %d: %v, want admitted or waiting", i, out)
		}
	}
	if lastPosition == 0 {
		t.Fatal("nobody waited: the test does not exercise the line")
	}
	poll := gate.DefaultRoomConfig().PollInterval
	for waiting := true; waiting; {
		waiting = false
		clk.Advance(poll)
		// Each round admits the join rate's worth, the head of the line.
		admitted := 0
		for i, j := range crowd {
			if j.admitted {
				continue
			}
			st, out := joinAs(t, j.hc, m.URL(), sp.ID, map[string]string{"listener": j.listener})
			switch {
			case st != http.StatusOK:
				t.Fatalf("waiter %d polling: %d %v", i, st, out)
			case out["status"] == "admitted":
				if waiting {
					t.Fatalf("waiter %d admitted before someone who came earlier", i)
				}
				j.admitted = true
				admitted++
			case out["status"] == "waiting":
				waiting = true
			default:
				t.Fatalf("waiter %d polling: %v", i, out)
			}
		}
		// The join bucket holds at most a second's worth (the burst).
		if want := min(int(rate*poll.Seconds()), rate); waiting && admitted != want {
			t.Errorf("%d admitted in a round of %v, want %d", admitted, poll, want)
		}
	}
	g := m.api.GateStats()
	if g.Joins != uint64(len(crowd)) || g.PoWDifficulty != 0 || g.Queued == 0 {
		t.Errorf("gate: %d admitted of %d, proof of work %d bits, %d queued by prefix: want all, none and some", g.Joins, len(crowd), g.PoWDifficulty, g.Queued)
	}
	for reason, n := range g.Refusals {
		if n > 0 {
			t.Errorf("refused %d for %s: a crowd is never refused", n, reason)
		}
	}
	if g.JoinRequests != uint64(len(crowd)) {
		t.Errorf("%d join requests counted for %d people: polls of people in line are not joins", g.JoinRequests, len(crowd))
	}
}

// TestTicketOpensOneStreamAtATime: a second stream with the same ticket,
// from another address, replaces the first, which the edge ends.
func TestTicketOpensOneStreamAtATime(t *testing.T) {
	t.Parallel()
	ctx, m, sp := onAir(t, time.Minute)
	adm, err := client.New(m.URL()).Join(ctx, sp.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	open := func(src string) io.ReadCloser {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, adm.ListenURL+"&flush=100ms", nil)
		resp, err := fromAddr(src).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream from %s: %s", src, resp.Status)
		}
		return resp.Body
	}
	first := open("127.11.0.2")
	defer first.Close()
	if _, err := io.ReadFull(first, make([]byte, 200)); err != nil {
		t.Fatal(err)
	}
	second := open("127.12.0.2")
	defer second.Close()
	// The first ends; the second goes on.
	if _, err := io.Copy(io.Discard, first); err != nil {
		t.Fatalf("the replaced stream: %v, want a clean end", err)
	}
	if _, err := io.ReadFull(second, make([]byte, 2000)); err != nil {
		t.Fatalf("the newest stream: %v", err)
	}
	if n := m.edge.Stats().Ended[edge.EndReplaced]; n != 1 {
		t.Errorf("streams ended as replaced: %d, want 1", n)
	}
}

// TestLapsedPlaceNeedsANewJoin: an admitted listener who does not connect
// within its grace loses its place, and its ticket no longer opens the
// stream: it must join again, like anyone else.
func TestLapsedPlaceNeedsANewJoin(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var clk clock
	m := MustRunMainWith(t, t.TempDir(), func(m *Main) { m.Config.API.Now = clk.Now })
	defer m.Close()
	sp := createSpace(t, ctx, m.URL())
	adm, err := client.New(m.URL()).Join(ctx, sp.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(gate.DefaultRoomConfig().Grace + time.Second)
	resp, out := call(t, http.MethodGet, adm.ListenURL, nil, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(errMessage(out), "join again") {
		t.Errorf("a lapsed place's ticket: %d %q, want 401 asking to join again", resp.StatusCode, errMessage(out))
	}
	if n := m.api.GateStats().Refusals[gate.RefusalTicketLapsed]; n != 1 {
		t.Errorf("lapsed refusals: %d, want 1", n)
	}
}

// TestTicketDoesNotRevealTheListenerID: the listener id is the waiter's
// secret (it polls the line and fetches the ticket again), so a ticket,
// which travels in URLs, must not contain it.
func TestTicketDoesNotRevealTheListenerID(t *testing.T) {
	t.Parallel()
	_, m, sp := onAir(t, 30*time.Second)
	st, out := postJoin(t, m.URL(), sp.ID, nil)
	listener, _ := out["listener"].(string)
	ticket, _ := out["ticket"].(string)
	if st != http.StatusOK || listener == "" || ticket == "" {
		t.Fatalf("join: %d %v", st, out)
	}
	if strings.Contains(ticket, listener) {
		t.Errorf("ticket %q contains the listener id %q", ticket, listener)
	}
	// The listener id still fetches the ticket again.
	if st, again := postJoin(t, m.URL(), sp.ID, map[string]string{"listener": listener}); st != http.StatusOK || again["status"] != "admitted" {
		t.Errorf("back for the ticket: %d %v", st, again)
	}
}

// TestRaisedDifficultyAppliesToOpenChallenges: an answer to a challenge
// issued before the difficulty rose is not admitted: it gets the new
// challenge.
func TestRaisedDifficultyAppliesToOpenChallenges(t *testing.T) {
	t.Parallel()
	ctx, m, sp := onAir(t, 30*time.Second)
	low := m.api.UpdatePoW(0.2, 100) // evidence of abuse at the threshold
	_, out := postJoin(t, m.URL(), sp.ID, nil)
	challenge, _ := out["challenge"].(string)
	if low == 0 || challenge == "" || out["difficulty"] != float64(low) {
		t.Fatalf("armed at %d: %v, want a challenge at that difficulty", low, out)
	}
	high := m.api.UpdatePoW(1, 10000)
	if high <= low {
		t.Fatalf("difficulty %d after more abuse, want above %d", high, low)
	}
	nonce, err := gate.Solve(ctx, challenge)
	if err != nil {
		t.Fatal(err)
	}
	st, out := postJoin(t, m.URL(), sp.ID, map[string]string{"challenge": challenge, "nonce": nonce})
	if st != http.StatusOK || out["status"] != "challenge" || out["difficulty"] != float64(high) {
		t.Errorf("answer to the old challenge: %d %v, want a new %d-bit challenge", st, out, high)
	}
}

// TestHammeringTheLineIsRefusedButKeepsThePlace: polling far more often
// than told is refused with 429 and counted as abuse, but the place in
// line is kept.
func TestHammeringTheLineIsRefusedButKeepsThePlace(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	c := client.New(m.URL())
	sp, err := c.Create(ctx, "Later", new(time.Now().Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	_, out := postJoin(t, m.URL(), sp.ID, nil)
	listener, _ := out["listener"].(string)
	if out["status"] != "waiting" {
		t.Fatalf("join before the start: %v, want waiting", out)
	}
	var refused int
	for range 20 {
		if st, _ := postJoin(t, m.URL(), sp.ID, map[string]string{"listener": listener}); st == http.StatusTooManyRequests {
			refused++
		}
	}
	if refused == 0 {
		t.Error("20 polls at once were all answered")
	}
	time.Sleep(gate.DefaultRoomConfig().PollInterval)
	if st, out := postJoin(t, m.URL(), sp.ID, map[string]string{"listener": listener}); st != http.StatusOK || out["position"] != 1.0 {
		t.Errorf("polling as told afterwards: %d %v, want still first in line", st, out)
	}
	if n := m.api.GateStats().Refusals[gate.RefusalPollEarly]; n != uint64(refused) {
		t.Errorf("poll_early refusals %d, want %d", n, refused)
	}
}

// TestHerdWaitingForTheStartIsNotJoinPressure: people in line for a
// scheduled space poll as told; their polls are not joins, their line is
// not overload, and proof of work never arms.
func TestHerdWaitingForTheStartIsNotJoinPressure(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	sp, err := client.New(m.URL()).Create(ctx, "Later", new(time.Now().Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	const herd = 60
	var listeners []string
	for i := range herd {
		_, out := joinAs(t, fromAddr(fmt.Sprintf("127.13.%d.2", i)), m.URL(), sp.ID, nil)
		if out["status"] != "waiting" {
			t.Fatalf("herd member %d: %v", i, out)
		}
		listeners = append(listeners, out["listener"].(string))
	}
	for range 2 {
		time.Sleep(gate.DefaultRoomConfig().PollInterval)
		for i, l := range listeners {
			if st, out := joinAs(t, fromAddr(fmt.Sprintf("127.13.%d.2", i)), m.URL(), sp.ID, map[string]string{"listener": l}); st != http.StatusOK || out["position"] != float64(i+1) {
				t.Fatalf("herd member %d polling: %d %v, want position %d", i, st, out, i+1)
			}
		}
	}
	g := m.api.GateStats()
	if g.JoinRequests != herd || g.Polls != 2*herd || g.WaitingForStart != herd || g.Waiting != 0 {
		t.Errorf("gate stats %+v: want %d joins, %d polls, %d waiting for the start, none waiting in open rooms", g, herd, 2*herd, herd)
	}
	r := m.monitor.Sample()
	if r.Verdict != ops.Healthy || r.PoWDifficulty != 0 {
		t.Errorf("verdict %s, proof of work %v bits with a herd waiting for the start: want healthy, none (%+v)", r.Verdict, r.PoWDifficulty, r.Evidence)
	}
}

// TestForwardedForLinesAreJoined: behind a trusted proxy, a client that
// sends its own X-Forwarded-For line cannot choose its address: the lines
// are read as one list, from the right. (The addresses are only read from
// headers, never contacted.)
func TestForwardedForLinesAreJoined(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := MustRunMainWith(t, t.TempDir(), func(m *Main) {
		m.Config.API.Gate.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	defer m.Close()
	sp := createSpace(t, ctx, m.URL())
	hc := http.DefaultClient
	// One client, as the proxy reports it, exhausts its joins...
	for range 60 {
		joinAs(t, hc, m.URL(), sp.ID, nil, "X-Forwarded-For", "203.0.113.7")
	}
	if st, _ := joinAs(t, hc, m.URL(), sp.ID, nil, "X-Forwarded-For", "203.0.113.7"); st != http.StatusTooManyRequests {
		t.Fatalf("the 61st join from one client: %d, want 429", st)
	}
	// ...and cannot get around it with a line of its own before the proxy's.
	if st, _ := joinAs(t, hc, m.URL(), sp.ID, nil, "X-Forwarded-For", "198.51.100.1", "X-Forwarded-For", "203.0.113.7"); st != http.StatusTooManyRequests {
		t.Errorf("a spoofed first line: %d, want 429 (the client is the proxy's last hop)", st)
	}
}

// TestListenerWhoLeavesIsNotAnEdgeError: a stream its listener closes ends
// as gone, not as an edge fault.
func TestListenerWhoLeavesIsNotAnEdgeError(t *testing.T) {
	t.Parallel()
	ctx, m, sp := onAir(t, 30*time.Second)
	for range 3 {
		lctx, stop := context.WithTimeout(ctx, time.Second)
		client.New(m.URL()).Listen(lctx, sp.ID, client.ListenOptions{})
		stop()
	}
	waitFor(t, func() bool { return m.edge.Stats().Ended[edge.EndGone] == 3 })
	if errs := m.snapshot().Components[ops.ComponentEdge].Errors; errs != 0 {
		t.Errorf("edge errors %d after three listeners left, want 0", errs)
	}
}

// onAir starts a server with a live space, for a test bounded by d.
func onAir(t *testing.T, d time.Duration) (context.Context, *Main, *client.Created) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	m := MustRunMain(t, t.TempDir())
	t.Cleanup(func() { m.Close() })
	return ctx, m, createSpace(t, ctx, m.URL())
}
