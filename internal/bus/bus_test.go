package bus_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/amphi-audio/amphi/internal/bus"
	"github.com/amphi-audio/amphi/internal/program"
)

func testConfig() bus.Config {
	cfg := bus.DefaultConfig()
	cfg.Logger = slog.New(slog.DiscardHandler)
	return cfg
}

func open(t *testing.T, url string) *bus.Bus {
	t.Helper()
	cfg := testConfig()
	cfg.URL = url
	b, err := bus.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// received collects what a subscription is given.
type received struct {
	mu     sync.Mutex
	chunks map[string][]*program.Chunk
	bad    []error
	got    chan struct{} // a value per call of either kind
}

func subscribe(t *testing.T, b *bus.Bus) *received {
	t.Helper()
	rc := &received{chunks: map[string][]*program.Chunk{}, got: make(chan struct{}, 1024)}
	sub, err := b.SubscribePrograms(func(id string, c *program.Chunk) {
		rc.mu.Lock()
		rc.chunks[id] = append(rc.chunks[id], c)
		rc.mu.Unlock()
		rc.got <- struct{}{}
	}, func(err error) {
		rc.mu.Lock()
		rc.bad = append(rc.bad, err)
		rc.mu.Unlock()
		rc.got <- struct{}{}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	return rc
}

func (rc *received) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-rc.got:
		case <-time.After(10 * time.Second):
			t.Fatal("timed out waiting for messages")
		}
	}
}

func program1(t *testing.T, chunks int) []*program.Chunk {
	t.Helper()
	p := program.NewPacker(42)
	var out []*program.Chunk
	for i := 0; len(out) < chunks-1; i++ {
		c, err := p.Add([]byte{byte(i), 0xfc, 0xff, 0xfe})
		if err != nil {
			t.Fatal(err)
		}
		if c != nil {
			out = append(out, c)
		}
	}
	c, err := p.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return append(out, c)
}

// flush makes sure the server has a subscription's interest before
// publishing on another connection.
func flush(t *testing.T, b *bus.Bus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestChunksCrossFromEmbeddedToExternalInOrder(t *testing.T) {
	mixer := open(t, "")
	if u, err := url.Parse(mixer.URL()); err != nil || u.User == nil || u.Hostname() != "127.0.0.1" {
		t.Fatalf("embedded URL %q (%v), want a token at 127.0.0.1", mixer.RedactedURL(), err)
	}
	edge := open(t, mixer.URL()) // an edge process joining by URL
	if edge.URL() != mixer.URL() {
		t.Errorf("external URL %q", edge.URL())
	}

	tests := []struct {
		name     string
		from, to *bus.Bus
	}{
		{"embedded to external", mixer, edge},
		{"external to embedded", edge, mixer},
		{"embedded to itself", mixer, mixer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := subscribe(t, tt.to)
			flush(t, tt.to)
			a, b := program1(t, 50), program1(t, 7)
			for i := range a {
				if err := tt.from.PublishChunk("space-a", a[i]); err != nil {
					t.Fatal(err)
				}
				if i < len(b) {
					if err := tt.from.PublishChunk("space-b", b[i]); err != nil {
						t.Fatal(err)
					}
				}
			}
			rc.wait(t, len(a)+len(b))
			rc.mu.Lock()
			defer rc.mu.Unlock()
			for id, want := range map[string][]*program.Chunk{"space-a": a, "space-b": b} {
				got := rc.chunks[id]
				if len(got) != len(want) {
					t.Fatalf("%s: %d chunks, want %d", id, len(got), len(want))
				}
				for i := range want {
					if got[i].Seq != want[i].Seq || got[i].End != want[i].End || !bytes.Equal(got[i].Page, want[i].Page) {
						t.Fatalf("%s: chunk %d arrived as seq %d end %v", id, i, got[i].Seq, got[i].End)
					}
				}
			}
			if len(rc.bad) != 0 {
				t.Errorf("bad messages: %v", rc.bad)
			}
		})
	}
}

func TestGarbageOnTheSubjectReachesOnBad(t *testing.T) {
	b := open(t, "")
	rc := subscribe(t, b)
	flush(t, b)

	nc, err := nats.Connect(b.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	good := program1(t, 1)[0].AppendWire(nil)
	wrongVersion := bytes.Clone(good)
	wrongVersion[0] = 9
	for _, msg := range [][]byte{nil, []byte("garbage"), wrongVersion, bytes.Repeat([]byte{1}, 40), good} {
		if err := nc.Publish("amphi.program.x", msg); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	rc.wait(t, 5)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.bad) != 4 || len(rc.chunks["x"]) != 1 {
		t.Fatalf("%d bad, %d chunks; want 4 and 1", len(rc.bad), len(rc.chunks["x"]))
	}
	for _, err := range rc.bad {
		if !strings.Contains(err.Error(), "chunk for x") {
			t.Errorf("onBad error %q does not name the space", err)
		}
	}
}

func TestOpenRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  bus.Config
	}{
		{"listen without port", bus.Config{Listen: "127.0.0.1"}},
		{"listen with bad port", bus.Config{Listen: "127.0.0.1:http-ish"}},
		{"unreachable URL", bus.Config{URL: "nats://127.0.0.1:1", ReadyTimeout: time.Second}},
		// Refused before anything listens.
		{"listen on every address", bus.Config{Listen: "0.0.0.0:0"}},
		{"listen on a name", bus.Config{Listen: "example.org:4222"}},
		{"cluster without a secret", bus.Config{Cluster: bus.ClusterConfig{Listen: "127.0.0.1:0"}}},
		{"cluster with a bad port", bus.Config{Cluster: bus.ClusterConfig{Listen: "127.0.0.1:-2", Secret: "s"}}},
		{"cluster with a route that is no URL", bus.Config{Cluster: bus.ClusterConfig{Listen: "127.0.0.1:0", Secret: "s", Routes: []string{"127.0.0.1:6222"}}}},
		{"no URL of a list reachable", bus.Config{URL: "nats://127.0.0.1:1,nats://127.0.0.1:2", ReadyTimeout: time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Logger = slog.New(slog.DiscardHandler)
			if b, err := bus.Open(t.Context(), tt.cfg); err == nil {
				b.Close()
				t.Fatal("Open succeeded")
			}
		})
	}
}

func TestCloseStopsEmbeddedServerWithoutLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	b, err := bus.Open(t.Context(), testConfig())
	if err != nil {
		t.Fatal(err)
	}
	sub, err := b.SubscribePrograms(func(string, *program.Chunk) {}, nil)
	if err != nil {
		t.Fatal(err)
	}
	url := b.URL()
	if err := b.PublishChunk("s", program1(t, 1)[0]); err != nil {
		t.Fatal(err)
	}
	sub.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect(url, nats.Timeout(time.Second)); err == nil {
		nc.Close()
		t.Error("the embedded server still accepts connections after Close")
	}
	var after int
	for range 100 { // goroutines take a moment to exit after Shutdown
		if after = runtime.NumGoroutine(); after <= before {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	t.Errorf("%d goroutines before Open, %d after Close:\n%s", before, after, buf[:runtime.Stack(buf, true)])
}

// TestEmbeddedServerRequiresItsToken: a local process that knows the port
// but not the token, or has a wrong one, cannot join the bus; the URL that
// Open hands to other processes carries the token, which its redacted form
// and its errors do not show.
func TestEmbeddedServerRequiresItsToken(t *testing.T) {
	cfg := testConfig()
	cfg.Token = "s3cret-token"
	b, err := bus.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	u, err := url.Parse(b.URL())
	if err != nil {
		t.Fatal(err)
	}
	if u.User.Username() != "s3cret-token" || strings.Contains(b.RedactedURL(), "s3cret") {
		t.Fatalf("URL %q, redacted %q: want the token in the first only", b.URL(), b.RedactedURL())
	}
	for name, raw := range map[string]string{
		"no token":    "nats://" + u.Host,
		"wrong token": "nats://guess@" + u.Host,
	} {
		t.Run(name, func(t *testing.T) {
			nc, err := nats.Connect(raw, nats.Timeout(5*time.Second), nats.MaxReconnects(0))
			if err == nil {
				nc.Close()
				t.Fatal("connected")
			}
			if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
				t.Errorf("error %q, want an authorization violation", err)
			}
		})
	}
	// A second process with the URL joins; one with a wrong token is told
	// so without the token in the message.
	open(t, b.URL())
	wrong := testConfig()
	wrong.URL, wrong.ReadyTimeout = "nats://another-s3cret@"+u.Host, 5*time.Second
	if other, err := bus.Open(t.Context(), wrong); err == nil {
		other.Close()
		t.Fatal("a wrong token joined")
	} else if strings.Contains(err.Error(), "another-s3cret") {
		t.Errorf("error %q shows the token", err)
	}
}

// TestRedactedURLHidesEveryTokenOfAList: a bus given a list of URLs shows
// each without its token or password.
func TestRedactedURLHidesEveryTokenOfAList(t *testing.T) {
	up := open(t, "")
	u, err := url.Parse(up.URL())
	if err != nil {
		t.Fatal(err)
	}
	// The first two are down: Open moves on to the one that is up.
	list := "nats://s3cret-down@127.0.0.1:1, nats://user:s3cret-pass@127.0.0.1:2," + up.URL()
	b := open(t, list)
	if b.URL() != list {
		t.Errorf("URL %q, want the list as given", b.URL())
	}
	got := b.RedactedURL()
	want := "nats://xxxxx@127.0.0.1:1,nats://user:xxxxx@127.0.0.1:2,nats://xxxxx@" + u.Host
	if got != want {
		t.Errorf("redacted %q, want %q", got, want)
	}
}
