package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/load"
)

// remoteWorker is `amphi load --worker --nats URL` in a child process: this
// test binary re-executed.
type remoteWorker struct {
	cmd *exec.Cmd
	mu  sync.Mutex
	out []string // its stdout lines so far
}

// startRemoteWorker starts a remote worker on natsURL and returns once it
// waits for shares.
func startRemoteWorker(t *testing.T, natsURL string) *remoteWorker {
	t.Helper()
	w := &remoteWorker{cmd: exec.Command(os.Args[0], "load", "--worker", "--nats", natsURL)}
	w.cmd.Env = append(os.Environ(), reexecEnv+"=1")
	w.cmd.Stderr = os.Stderr
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.cmd.Process.Kill(); w.cmd.Wait() })
	ready, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(out)
		once := sync.OnceFunc(func() { close(ready) })
		for sc.Scan() {
			w.mu.Lock()
			w.out = append(w.out, sc.Text())
			w.mu.Unlock()
			if strings.Contains(sc.Text(), "waiting for a share") {
				once()
			}
		}
	}()
	select {
	case <-ready:
		return w
	case <-exited:
		t.Fatal("the remote worker exited before it waited for shares")
		return nil
	case <-time.After(20 * time.Second):
		t.Fatal("the remote worker did not say it waits for shares")
		return nil
	}
}

var shareLine = regexp.MustCompile(`share (\d+) of (\d+): (\d+) listeners`)

// shares returns the shares the worker said it took, as "N of M: L".
func (w *remoteWorker) shares() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var s []string
	for _, l := range w.out {
		if m := shareLine.FindStringSubmatch(l); m != nil {
			s = append(s, m[1]+" of "+m[2]+": "+m[3])
		}
	}
	return s
}

func TestLoadRunsSharesOnRemoteWorkersOverNATS(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	// The server's embedded NATS listens on loopback: the workers and the
	// coordinator meet there.
	w1 := startRemoteWorker(t, m.BusURL())
	w2 := startRemoteWorker(t, m.BusURL())

	rep, text := runLoadReport(t, ctx, "--server", m.URL(), "--nats", m.BusURL(), "--workers", "2",
		"--listeners", "20", "--rate", "20", "--duration", "3s")
	l := rep.Listeners
	if rep.Workers != 2 || len(rep.MissingWorkers) != 0 || l.Target != 20 || l.Joined != 20 || l.OK != 20 || rep.TTFAHistogram.N != 20 {
		t.Errorf("%d workers (missing %v), listeners %+v, %d first audios: want 2 workers and 20 ok", rep.Workers, rep.MissingWorkers, l, rep.TTFAHistogram.N)
	}
	if rep.Speakers.Connected != 1 || rep.Disconnects["ended"] != 20 || !strings.Contains(text, "2 worker processes") {
		t.Errorf("speakers %+v, disconnects %v, text:\n%s", rep.Speakers, rep.Disconnects, text)
	}
	peak := int64(0)
	for _, s := range rep.Timeline {
		peak = max(peak, s.Live)
	}
	if peak != 20 {
		t.Errorf("at most %d listeners live in the merged timeline, want 20", peak)
	}
	// Each worker took one share of 10: a busy worker takes no other.
	got := append(w1.shares(), w2.shares()...)
	slices.Sort(got)
	if want := []string{"0 of 2: 10", "1 of 2: 10"}; len(w1.shares()) != 1 || !slices.Equal(got, want) {
		t.Errorf("workers took shares %q and %q, want one each of %q", w1.shares(), w2.shares(), want)
	}
}

func TestLoadReportsRemoteWorkersThatNeverTookTheirShare(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	w := startRemoteWorker(t, m.BusURL())

	out := filepath.Join(t.TempDir(), "report.json")
	var stdout strings.Builder
	err := runLoad(ctx, []string{"--server", m.URL(), "--nats", m.BusURL(), "--workers", "2",
		"--listeners", "10", "--duration", "2s", "--quiet", "--json", out}, &stdout)
	if err == nil || !strings.Contains(err.Error(), "no remote worker took share") {
		t.Fatalf("err = %v, want one share no worker took", err)
	}
	b, rerr := os.ReadFile(out)
	if rerr != nil {
		t.Fatal(rerr)
	}
	var rep load.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	took := w.shares()
	if len(took) != 1 || len(rep.MissingWorkers) != 1 || !strings.HasPrefix(took[0], string(rune('0'+1-rep.MissingWorkers[0]))) {
		t.Fatalf("the worker took %q, report misses %v: want the other share missing", took, rep.MissingWorkers)
	}
	if l := rep.Listeners; l.Target != 10 || l.Joined != 5 || l.OK != 5 {
		t.Errorf("listeners %+v: want the 5 of the share that ran ok", l)
	}
	if !strings.Contains(stdout.String(), "missing") {
		t.Errorf("text report does not say a worker is missing:\n%s", stdout.String())
	}
}
