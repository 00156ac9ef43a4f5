package main

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/bus"
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

func TestSharesOfACapAddUpToItAndKeepWhatIsHeld(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	f := newFleet(func() time.Time { return now })
	f.add(&bus.LoadReport{Node: "a", Held: map[string]int{"s": 6}})
	f.add(&bus.LoadReport{Node: "b", Held: map[string]int{"s": 1}})
	got := f.shares("s", 10, "origin", 0)
	// 3 places are free: one each.
	if got["origin"] != 1 || got["a"] != 7 || got["b"] != 2 {
		t.Errorf("shares %v, want origin 1, a 7, b 2", got)
	}
	// Over the cap (the cap was lowered): everyone keeps what it holds,
	// nobody gets more.
	if got := f.shares("s", 5, "origin", 0); got["a"] != 6 || got["b"] != 1 || got["origin"] != 0 {
		t.Errorf("shares past the cap %v, want what each holds", got)
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
