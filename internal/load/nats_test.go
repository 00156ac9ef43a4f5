package load

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/attack"
)

// offer returns an offered share's JSON, as a coordinator sends it, after
// edit.
func offer(t testing.TB, now time.Time, edit func(*remoteShare)) []byte {
	t.Helper()
	sc := DefaultScenario()
	sc.Server, sc.SpaceID, sc.Listeners, sc.Duration, sc.Speakers = "http://127.0.0.1:8080", "abc", 20, Duration(3*time.Second), 0
	if err := sc.Normalize(); err != nil {
		t.Fatal(err)
	}
	msg := remoteShare{
		Share:  Share{Scenario: sc, Worker: 1, Workers: 2, Start: now.Add(remoteLead)},
		Lines:  runSubjects + "0123.1.lines",
		Cancel: runSubjects + "0123.1.cancel",
	}
	if edit != nil {
		edit(&msg)
	}
	b, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWorkerRunsOnlyLoopbackSharesOfItsOwnRun(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name string
		edit func(*remoteShare)
		ok   bool
	}{
		{"a coordinator's share", nil, true},
		{"a server off loopback", func(m *remoteShare) { m.Share.Scenario.Server = "http://192.0.2.1:8080" }, false},
		{"a server named by host name", func(m *remoteShare) { m.Share.Scenario.Server = "http://example.com" }, false},
		{"an attack off loopback", func(m *remoteShare) {
			m.Share.Scenario.Attacks = []attack.Config{{Target: "http://192.0.2.1/"}}
		}, false},
		{"lines on the program's subjects", func(m *remoteShare) { m.Lines = "amphi.program.abc" }, false},
		{"a wildcard cancel subject", func(m *remoteShare) { m.Cancel = runSubjects + ">" }, false},
		{"a worker past the shares", func(m *remoteShare) { m.Share.Worker = 2 }, false},
		{"no shares", func(m *remoteShare) { m.Share.Workers = 0 }, false},
		{"no space", func(m *remoteShare) { m.Share.Scenario.SpaceID = "" }, false},
		{"more than a process's listeners", func(m *remoteShare) { m.Share.Scenario.PerProcess = 5 }, false},
		{"a start an hour away", func(m *remoteShare) { m.Share.Start = now.Add(time.Hour) }, false},
		{"a share already over", func(m *remoteShare) { m.Share.Start = now.Add(-time.Minute) }, false},
		{"an hour-long run", func(m *remoteShare) { m.Share.Scenario.Duration = Duration(2 * time.Hour) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := acceptShare(offer(t, now, tc.edit), now)
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v, want ok %v", err, tc.ok)
			}
			if err != nil {
				var e *amphi.Error
				if !errors.As(err, &e) || e.Code != amphi.EInvalid {
					t.Errorf("err = %#v, want an EInvalid amphi error", err)
				}
				return
			}
			if sc := msg.Share.Scenario; sc.Speakers != 0 || sc.Token != "" || sc.Attacks != nil || msg.Share.count() != 10 {
				t.Errorf("accepted %+v", msg.Share)
			}
		})
	}
}

func FuzzAcceptShare(f *testing.F) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Add(offer(f, now, nil))
	f.Add(offer(f, now, func(m *remoteShare) { m.Share.Scenario.Server = "http://[::1]:1" }))
	f.Add([]byte(`{"share":{"workers":1,"scenario":{"server":"http://localhost"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := acceptShare(data, now)
		if err != nil {
			return
		}
		// Whatever is accepted is a scenario that passes Normalize again.
		sc := msg.Share.Scenario
		if err := sc.Normalize(); err != nil {
			t.Fatalf("accepted a share whose scenario fails Normalize: %v", err)
		}
		if msg.Share.count() > sc.PerProcess {
			t.Fatalf("accepted %d listeners, more than %d per process", msg.Share.count(), sc.PerProcess)
		}
	})
}
