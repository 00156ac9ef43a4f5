package main

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/bus"
	"github.com/amphi-audio/amphi/internal/gate"
)

func TestTheFleetForgetsSilentEdgesAndPicksTheLeastLoaded(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	f := newFleet(func() time.Time { return now })
	f.add(&bus.LoadReport{Node: "a", URL: "http://127.0.0.1:9001", Listeners: 900, Capacity: 1000, Spaces: map[string]int{"s": 900}})
	f.add(&bus.LoadReport{Node: "b", URL: "http://127.0.0.1:9002", Listeners: 100, Capacity: 1000, Spaces: map[string]int{"s": 100}})
	f.add(&bus.LoadReport{Node: "full", URL: "http://127.0.0.1:9003", Listeners: 10, Capacity: 10})
	if got := f.leastLoaded(); got != "http://127.0.0.1:9002" {
		t.Errorf("least loaded %q, want edge b's URL", got)
	}
	if n, _ := f.space("s"); n != 1000 {
		t.Errorf("space s has %d listeners on the edges, want 1000", n)
	}
	now = now.Add(3 * time.Second)
	f.add(&bus.LoadReport{Node: "a", URL: "http://127.0.0.1:9001", Listeners: 50, Capacity: 1000})
	now = now.Add(3 * time.Second) // b and full last reported 6 s ago: gone
	if got := f.leastLoaded(); got != "http://127.0.0.1:9001" {
		t.Errorf("least loaded %q after b went silent, want a's", got)
	}
	if s := f.snapshot(); len(s) != 1 || s[0].Node != "a" || s[0].AgeSeconds != 3 {
		t.Errorf("snapshot %+v, want a alone, 3 s old", s)
	}
}

func TestTheFleetsPartsOfACapAddUpToItAndKeepWhatIsHeld(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	f := newFleet(func() time.Time { return now })
	f.add(&bus.LoadReport{Node: "a", Parts: map[string]gate.NodeLine{"s": {Held: 6}}})
	f.add(&bus.LoadReport{Node: "b", Parts: map[string]gate.NodeLine{"s": {Held: 1}}})
	f.add(&bus.LoadReport{Node: "c"}) // an edge without anyone in the space
	got := gate.Allot(f.parts("s", "origin", gate.NodeLine{}), gate.FleetLimits{Cap: 10, Admit: -1})
	// 3 places are free and nobody waits: one each for newcomers, in name order.
	if got["a"].Share != 7 || got["b"].Share != 2 || got["c"].Share != 1 || got["origin"].Share != 0 {
		t.Errorf("grants %v, want shares a 7, b 2, c 1, origin 0 (ties by name)", got)
	}
	// Over the cap (the cap was lowered): everyone keeps what it holds,
	// nobody gets more.
	got = gate.Allot(f.parts("s", "origin", gate.NodeLine{}), gate.FleetLimits{Cap: 5, Admit: -1})
	if got["a"].Share != 6 || got["b"].Share != 1 || got["origin"].Share != 0 || got["a"].Admit != 0 {
		t.Errorf("grants past the cap %v, want what each holds and no admissions", got)
	}
}

func TestTheGateKeyFileRotatesWithTheNewKeyFirst(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "gate.key")
	if _, _, err := loadKeys(path, false); err == nil {
		t.Error("an edge without its origin's key file started with a key of its own")
	}
	old, _, err := loadKeys(path, true) // the origin's first start makes one
	if err != nil {
		t.Fatal(err)
	}
	fresh := strings.Repeat("ab", 32)
	if err := os.WriteFile(path, []byte(fresh+"\n"+hex.EncodeToString(old)+"\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key, previous, err := loadKeys(path, false)
	if err != nil || hex.EncodeToString(key) != fresh || len(previous) != 1 || !bytes.Equal(previous[0], old) {
		t.Fatalf("key %x, previous %x, %v: want the new key signing and the old one verifying", key, previous, err)
	}
	if err := os.WriteFile(path, []byte("not hex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadKeys(path, false); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("a bad key file: %v, want an error naming its line", err)
	}
}

func TestAnEdgeAsksTheOriginAboutUnknownSpacesRarely(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	g := newLookupGuard()
	asked := 0
	for i := range 3 * lookupRate { // a flood of made-up ids within an instant
		if g.allow(fmt.Sprintf("made-up-%d", i), now) == nil {
			asked++
			g.notFound(fmt.Sprintf("made-up-%d", i), now)
		}
	}
	if asked != lookupRate {
		t.Errorf("the edge asked about %d made-up ids in an instant, want %d", asked, lookupRate)
	}
	// An id the origin did not know is not asked about again within the
	// round, even with lookups to spare; after it, it is.
	later := now.Add(10 * time.Second)
	g.notFound("made-up-0", later)
	if err := g.allow("made-up-0", later.Add(fleetEvery/2)); amphi.ErrorCode(err) != amphi.ENotFound {
		t.Errorf("asking again about an id the origin just said it did not know: %v, want not found", err)
	}
	if err := g.allow("made-up-0", later.Add(fleetEvery)); err != nil {
		t.Errorf("an id unknown a round ago: %v, want asked again", err)
	}
}

func TestARoleSaysWhatItsConfigurationLacks(t *testing.T) {
	t.Parallel()
	edge := func(c *Config) { c.Role, c.Bus.URL, c.GateKeyFile = RoleEdge, "nats://127.0.0.1:4222", "gate.key" }
	for _, tc := range []struct {
		name   string
		adjust func(*Config)
		want   string // in the error; "" for none
	}{
		{"the default", func(*Config) {}, ""},
		{"an edge", edge, ""},
		{"an edge without a bus", func(c *Config) { edge(c); c.Bus.URL = "" }, "--nats"},
		{"an edge without the key file", func(c *Config) { edge(c); c.GateKeyFile = "" }, "--gate-key-file"},
		{"an edge with a stage", func(c *Config) { edge(c); c.StageAddr = "127.0.0.1:9" }, "no stage"},
		{"an edge on standby", func(c *Config) { edge(c); c.Standby = true }, "--standby"},
		{"an origin on standby", func(c *Config) { c.Role, c.Standby = RoleOrigin, true }, ""},
		{"edge processes of an origin", func(c *Config) { c.Role, c.Procs = RoleOrigin, 2 }, "--procs"},
		{"no such role", func(c *Config) { c.Role = "mixer" }, `"mixer"`},
	} {
		c := NewMain().Config
		tc.adjust(&c)
		err := c.checkRole()
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
}
