package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/load"
)

// MustRunMainWith is MustRunMain with adjust applied to the Main before it
// runs, to set knobs in its configuration.
func MustRunMainWith(t testing.TB, dataDir string, adjust func(*Main)) *Main {
	t.Helper()
	m := testMain(dataDir, adjust)
	if err := m.Run(context.Background()); err != nil {
		m.Close()
		t.Fatal(err)
	}
	return m
}

// testMain is a Main for a test, on loopback, silent, adjusted, not yet
// running.
func testMain(dataDir string, adjust func(*Main)) *Main {
	m := NewMain()
	m.Config.Addr, m.Config.OpsAddr = "127.0.0.1:0", "127.0.0.1:0"
	m.Config.DataDir = dataDir
	m.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	manySpaces(m)
	adjust(m)
	return m
}

// runLoadReport runs `amphi load` with args and returns its JSON report.
func runLoadReport(t *testing.T, ctx context.Context, args ...string) (*load.Report, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "report.json")
	var stdout bytes.Buffer
	if err := runLoad(ctx, append(args, "--quiet", "--json", out), &stdout); err != nil {
		t.Fatalf("amphi load %s: %v", strings.Join(args, " "), err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep load.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	t.Logf("amphi load %s:\n%s", strings.Join(args, " "), stdout.String())
	return &rep, stdout.String()
}

func createSpace(t testing.TB, ctx context.Context, url string) *client.Created {
	t.Helper()
	sp, err := client.New(url).Create(ctx, "Rehearsal", nil)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

func TestLoadHealthyServerHasEveryListenerOK(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	chart := filepath.Join(t.TempDir(), "chart.html")
	rep, text := runLoadReport(t, ctx, "--server", m.URL(), "--listeners", "50", "--rate", "50",
		"--duration", "4s", "--pid", strconv.Itoa(os.Getpid()), "--chart", chart)

	l := rep.Listeners
	if l.Target != 50 || l.Joined != 50 || l.OK != 50 || l.Stalled != 0 || l.Failed != 0 || rep.Stalls != 0 {
		t.Errorf("listeners %+v, stalls %d; want all 50 ok", l, rep.Stalls)
	}
	if rep.Speakers.Connected != 1 || rep.Speakers.Packets == 0 {
		t.Errorf("speakers %+v, want one bot speaking", rep.Speakers)
	}
	// 32 kbit/s is 4000 B/s; Ogg adds ~7 % and each listener's burst of
	// 0.5 s comes on top of its ~3.5 s.
	if b := rep.Bytes.PerListenerSecond; b < 3000 || b > 7000 {
		t.Errorf("%.0f B per listener-second, want about 4300", b)
	}
	if rep.Disconnects["ended"] != 50 || rep.TTFAHistogram.N != 50 || rep.TTFA.P50 <= 0 {
		t.Errorf("disconnects %v, ttfa %+v of %d", rep.Disconnects, rep.TTFA, rep.TTFAHistogram.N)
	}
	if rep.Server == nil || rep.Server.CPUSeconds <= 0 || rep.Server.RSSMaxBytes <= 0 || len(rep.Timeline) < 4 {
		t.Errorf("server %+v, %d samples", rep.Server, len(rep.Timeline))
	}
	peak := int64(0)
	for _, s := range rep.Timeline {
		peak = max(peak, s.Live)
	}
	if peak != 50 {
		t.Errorf("at most %d listeners live in the timeline, want 50", peak)
	}
	if !strings.Contains(text, "50 ok") {
		t.Errorf("text report:\n%s", text)
	}
	if html, err := os.ReadFile(chart); err != nil || !bytes.Contains(html, []byte("<svg")) {
		t.Errorf("chart: %v", err)
	}
	// The space the run created is ended after it.
	sp, err := client.New(m.URL()).Get(ctx, rep.SpaceID)
	if err != nil || sp.State != "ended" {
		t.Errorf("rehearsal space %s: %v, %v", rep.SpaceID, sp, err)
	}
}

func TestLoadServerMadeToPauseItsStreamYieldsStalls(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		mu         sync.Mutex
		pauseAfter time.Time // zero: no pause yet
		paused     bool
	)
	m := MustRunMainWith(t, t.TempDir(), func(m *Main) {
		m.Config.Live.Mix.Knobs.BeforeFrame = func(uint64) {
			mu.Lock()
			due := !paused && !pauseAfter.IsZero() && time.Now().After(pauseAfter)
			paused = paused || due
			mu.Unlock()
			if due {
				time.Sleep(2500 * time.Millisecond) // the mixer then catches up
			}
		}
	})
	defer m.Close()
	sp := createSpace(t, ctx, m.URL())

	// The listeners join at once and play within ~1 s; the program stops
	// 2 s in for 2.5 s, longer than their 1 s buffers.
	mu.Lock()
	pauseAfter = time.Now().Add(2 * time.Second)
	mu.Unlock()
	rep, _ := runLoadReport(t, ctx, "--server", m.URL(), "--space", sp.ID, "--listeners", "20", "--duration", "6s", "--buffer", "1s")

	l := rep.Listeners
	if l.Joined != 20 || l.Stalled != 20 || l.Failed != 0 || l.OK != 0 || rep.Stalls < 20 {
		t.Errorf("listeners %+v, %d stalls: want every listener stalled, none failed", l, rep.Stalls)
	}
	if rep.Disconnects["ended"] != 20 {
		t.Errorf("disconnects %v, want all ended by the run", rep.Disconnects)
	}
}

func TestLoadUnreachableServerFailsEveryListener(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	rep, _ := runLoadReport(t, ctx, "--server", "http://"+addr, "--space", "nowhere", "--listeners", "20", "--rate", "20", "--duration", "2s")
	l := rep.Listeners
	if l.Joined != 20 || l.Failed != 20 || l.FailedBy["refused"] != 20 || l.OK != 0 {
		t.Errorf("listeners %+v, want all 20 refused", l)
	}
}

func TestLoadRefusesNonLoopbackServers(t *testing.T) {
	t.Parallel()
	err := runLoad(context.Background(), []string{"--server", "http://192.0.2.1:8080", "--listeners", "1", "--duration", "1s", "--quiet"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("err = %v, want a refusal to leave loopback", err)
	}
}

func TestLoadSplitsListenersOverWorkerProcesses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	sp := createSpace(t, ctx, m.URL())
	// Workers are this test binary re-executed as `amphi load --worker-stdio`.
	t.Setenv(reexecEnv, "1")

	scenario := filepath.Join(t.TempDir(), "scenario.json")
	// Worker 0's first two listeners measure latency: the bot's send times
	// are in this process, their detections come back in worker 0's report.
	if err := os.WriteFile(scenario, []byte(`{"listeners": 50, "per_process": 20, "duration": "4s",
		"latency_sample": 2, "flush": "200ms", "speakers": 1, "token": "`+sp.SpeakerToken+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, _ := runLoadReport(t, ctx, "--scenario", scenario, "--server", m.URL(), "--space", sp.ID)
	l := rep.Listeners
	if rep.Workers != 3 || l.Target != 50 || l.Joined != 50 || l.OK != 50 || rep.TTFAHistogram.N != 50 {
		t.Errorf("%d workers, listeners %+v, %d first audios: want 3 workers and 50 ok", rep.Workers, l, rep.TTFAHistogram.N)
	}
	if rep.Disconnects["ended"] != 50 || rep.Scenario.PerProcess != 20 || rep.Scenario.Listeners != 50 {
		t.Errorf("disconnects %v, scenario %+v", rep.Disconnects, rep.Scenario)
	}
	if l := rep.Latency; l == nil || !l.Worker0Only || l.Listeners != 2 || l.N < 2 || l.P50 <= 0 || l.P50 > load.Duration(plausibleLatency) || len(rep.Detections) != 0 {
		t.Errorf("latency %+v, %d raw detections: want worker 0's 2 listeners' marks matched", l, len(rep.Detections))
	}
}

func TestLoadRunsTheScenarioAttacksBesideTheListeners(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	sp := createSpace(t, ctx, m.URL())
	scenario := filepath.Join(t.TempDir(), "scenario.json")
	if err := os.WriteFile(scenario, []byte(`{"listeners": 10, "duration": "2s",
		"attacks": [{"Kind": "listen-flood", "Rate": 100, "Count": 30}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, text := runLoadReport(t, ctx, "--scenario", scenario, "--server", m.URL(), "--space", sp.ID)
	if rep.Listeners.OK != 10 {
		t.Errorf("listeners %+v, want 10 ok", rep.Listeners)
	}
	// Forged or missing tickets get 401 until the source's rate limit
	// answers 429: every request refused, none served.
	if len(rep.Attacks) != 1 || rep.Attacks[0].Started != 30 || rep.Attacks[0].ByStatus[401]+rep.Attacks[0].ByStatus[429] != 30 {
		t.Errorf("attacks %+v, want 30 requests, each refused with 401 or 429", rep.Attacks)
	}
	if !strings.Contains(text, "attack     listen-flood") {
		t.Errorf("text report:\n%s", text)
	}
}

// TestLoadGivesEachSpeakerBotItsOwnToken: a token is one place on the stage,
// so several bots need the host token to mint theirs; a speaker token for
// several bots is refused with the reason, before any listener joins.
func TestLoadGivesEachSpeakerBotItsOwnToken(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	sp := createSpace(t, ctx, m.URL())
	args := []string{"--server", m.URL(), "--space", sp.ID, "--listeners", "0", "--duration", "2s", "--quiet"}
	scenario := func(token string) string {
		f := filepath.Join(t.TempDir(), "scenario.json")
		if err := os.WriteFile(f, []byte(`{"speakers": 3, "token": "`+token+`"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	err := runLoad(ctx, append(args, "--scenario", scenario(sp.SpeakerToken)), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "need a token each") {
		t.Fatalf("3 bots with one speaker token: %v", err)
	}
	rep, _ := runLoadReport(t, ctx, append(args, "--scenario", scenario(sp.HostToken))...)
	if rep.Speakers.Connected != 3 {
		t.Errorf("speakers %+v, want 3 connected with tokens minted by the host's", rep.Speakers)
	}
}
