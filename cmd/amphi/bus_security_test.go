package main

import (
	"context"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/bus"
	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/edge"
	"github.com/amphi-audio/amphi/internal/program"
)

// TestEmbeddedBusRefusesClientsWithoutItsToken: a local process that finds
// the embedded NATS's port cannot join without the token, which is kept
// 0600 in the data directory; with BusURL it can.
func TestEmbeddedBusRefusesClientsWithoutItsToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	m := MustRunMain(t, dir)
	defer m.Close()
	u, err := url.Parse(m.BusURL())
	if err != nil {
		t.Fatal(err)
	}
	if ip := u.Hostname(); ip != "127.0.0.1" {
		t.Errorf("the embedded bus listens on %s, want loopback", ip)
	}
	for name, raw := range map[string]string{"no token": "nats://" + u.Host, "a wrong token": "nats://guess@" + u.Host} {
		nc, err := nats.Connect(raw, nats.Timeout(5*time.Second), nats.MaxReconnects(0))
		if err == nil {
			nc.Close()
			t.Errorf("a client with %s joined the bus", name)
		} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("a client with %s: %v, want an authorization violation", name, err)
		}
	}
	nc, err := nats.Connect(m.BusURL(), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("with BusURL: %v", err)
	}
	nc.Close()
	fi, err := os.Stat(filepath.Join(dir, busTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s is %v, want 0600", busTokenFile, fi.Mode().Perm())
	}
}

// TestForgedChunksOnTheBusDoNotCutListeners: a process holding the bus's
// credentials publishes, for a live space, an End chunk of another Ogg
// serial numbered as the program's next one, and an End chunk of the
// space's own serial numbered 2^40. Both are dropped and counted; the
// listener goes on receiving the program, and the space stays live.
func TestForgedChunksOnTheBusDoNotCutListeners(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	c := client.New(m.URL())
	sp, err := c.Create(ctx, "Forged", nil) // live at once
	if err != nil {
		t.Fatal(err)
	}

	// The listener listens for 12 s; nobody speaks, so the program is
	// silence, which still comes as packets.
	var mu sync.Mutex
	var last time.Time
	type result struct {
		st  *client.ListenStats
		err error
	}
	done := make(chan result, 1)
	lctx, lcancel := context.WithTimeout(ctx, 12*time.Second)
	defer lcancel()
	go func() {
		st, err := c.Listen(lctx, sp.ID, client.ListenOptions{OnPacket: func([]byte, int64) {
			mu.Lock()
			last = time.Now()
			mu.Unlock()
		}})
		done <- result{st, err}
	}()
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return !last.IsZero() })

	stored, err := m.db.Space(ctx, sp.ID)
	if err != nil {
		t.Fatal(err)
	}
	ring := m.edge.Ring(ctx, sp.ID)
	forger := testBus(t, m.BusURL())
	forged := []*program.Chunk{
		endChunk(t, stored.Serial+1, ring.Next()+1),
		endChunk(t, stored.Serial, 1<<40),
	}
	for _, fc := range forged {
		if err := forger.PublishChunk(sp.ID, fc); err != nil {
			t.Fatal(err)
		}
	}
	if err := forger.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	forgedAt := time.Now()

	r := <-done
	if r.err != nil || r.st.Ended {
		t.Fatalf("the listener: %+v, %v; want it still listening when it stopped", r.st, r.err)
	}
	mu.Lock()
	heard := last.Sub(forgedAt)
	mu.Unlock()
	if heard < 3*time.Second {
		t.Errorf("the listener's last packet came %v after the forged chunks, want it still receiving", heard)
	}
	if ring.Ended() {
		t.Error("the ring ended")
	}
	dropped := m.edge.Stats().Dropped
	if dropped[edge.DropSerial] != 1 || dropped[edge.DropAhead] != 1 {
		t.Errorf("dropped %v, want one chunk for its serial and one numbered ahead", dropped)
	}
	if got, err := c.Get(ctx, sp.ID); err != nil || got.State != amphi.StateLive {
		t.Errorf("space %+v (%v), want still live", got, err)
	}
}

// testBus joins the bus at busURL as another process would.
func testBus(t *testing.T, busURL string) *bus.Bus {
	t.Helper()
	cfg := bus.DefaultConfig()
	cfg.URL, cfg.Logger = busURL, slog.New(slog.DiscardHandler)
	b, err := bus.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// endChunk is a program's last chunk, its page of the given serial,
// numbered seq.
func endChunk(t *testing.T, serial uint32, seq uint64) *program.Chunk {
	t.Helper()
	c, err := program.NewPacker(serial).Finish()
	if err != nil {
		t.Fatal(err)
	}
	c.Seq = seq
	return c
}
