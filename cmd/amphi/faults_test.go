package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/ops"
)

func rehearsalServer(t *testing.T) *Main {
	t.Helper()
	return MustRunMainWith(t, t.TempDir(), func(m *Main) { m.Config.RehearsalFaults = true })
}

// postFaultStatus posts body to base's /faults and returns the status.
func postFaultStatus(t *testing.T, base, body string) int {
	t.Helper()
	resp, err := http.Post(base+"/faults", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// TestFaultsAreServedOnlyOnTheOpsAddressOfARehearsalServer: POST /faults
// exists only with --rehearsal-faults, and only on the ops address.
func TestFaultsAreServedOnlyOnTheOpsAddressOfARehearsalServer(t *testing.T) {
	t.Parallel()
	plain := MustRunMain(t, t.TempDir())
	defer plain.Close()
	rehearsal := rehearsalServer(t)
	defer rehearsal.Close()
	stall := `{"kind": "mixer_stall", "for": "1s"}`
	for _, tc := range []struct {
		name, base, body string
		want             int
	}{
		{"ops address without the flag", plain.OpsURL(), stall, http.StatusNotFound},
		{"public address without the flag", plain.URL(), stall, http.StatusNotFound},
		{"public address with the flag", rehearsal.URL(), stall, http.StatusNotFound},
		{"unknown kind", rehearsal.OpsURL(), `{"kind": "meteor", "for": "1s"}`, http.StatusBadRequest},
		{"no end", rehearsal.OpsURL(), `{"kind": "bus_loss"}`, http.StatusBadRequest},
		{"ops address with the flag", rehearsal.OpsURL(), stall, http.StatusOK},
	} {
		if got := postFaultStatus(t, tc.base, tc.body); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestMixerStallFaultTurnsTheVerdictFailingInternally(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m := rehearsalServer(t)
	defer m.Close()
	createSpace(t, ctx, m.URL())
	if st := postFaultStatus(t, m.OpsURL(), `{"kind": "mixer_stall", "for": "2s", "delay": "200ms"}`); st != http.StatusOK {
		t.Fatalf("posting the fault: %d", st)
	}
	for {
		r := m.monitor.Sample()
		if r.Verdict == ops.FailingInternally {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("verdict %s, conditions %v: want failing_internally", r.Verdict, r.Conditions)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// TestLoadPostsTheScenarioFaultsAtTheirTime: `amphi load` posts each of
// its scenario's faults to the ops address once its time has come, and the
// server's spaces suffer them; a server without --rehearsal-faults fails
// the run with the reason.
func TestLoadPostsTheScenarioFaultsAtTheirTime(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m := rehearsalServer(t)
	defer m.Close()
	sp := createSpace(t, ctx, m.URL())
	scenario := filepath.Join(t.TempDir(), "scenario.json")
	if err := os.WriteFile(scenario, []byte(`{"listeners": 0, "duration": "3s", "faults": [
		{"at": "2s", "kind": "recorder_errors", "for": "1s"},
		{"at": "1s", "kind": "mixer_stall", "for": "1s", "delay": "200ms"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, _ := runLoadReport(t, ctx, "--scenario", scenario, "--server", m.URL(), "--space", sp.ID, "--ops", m.OpsURL())
	if len(rep.Faults) != 2 {
		t.Fatalf("report's faults %+v, want both", rep.Faults)
	}
	for _, f := range rep.Faults {
		if due := rep.Started.Add(time.Duration(f.At)); f.Posted.Before(due) {
			t.Errorf("%s posted at %v, before its time %v", f.Kind, f.Posted, due)
		}
	}
	// The run ends once its last fault is posted (it has no listeners);
	// the space suffers them from then on.
	sess := m.live.Session(sp.ID)
	if sess == nil {
		t.Fatal("the space is no longer on air")
	}
	for sess.Mixer().Stats().Stalls == 0 || sess.Recorder().Err() == nil {
		select {
		case <-ctx.Done():
			t.Fatalf("mixer %+v, recording error %v: want stalls from mixer_stall and the recording stopped by recorder_errors",
				sess.Mixer().Stats(), sess.Recorder().Err())
		case <-time.After(100 * time.Millisecond):
		}
	}

	plain := MustRunMain(t, t.TempDir())
	defer plain.Close()
	plainSpace := createSpace(t, ctx, plain.URL())
	err := runLoad(ctx, []string{"--scenario", scenario, "--server", plain.URL(), "--space", plainSpace.ID,
		"--ops", plain.OpsURL(), "--quiet"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--rehearsal-faults") {
		t.Errorf("a run against a server without --rehearsal-faults: %v, want it to fail naming the flag", err)
	}
}
