package bus_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/bus"
	"github.com/amphi-audio/amphi/internal/program"
)

const (
	clusterToken  = "cluster-client-token"
	clusterSecret = "cluster-route-secret"
	// failoverWithin is how long the program may stop for a client whose
	// node dies: a few seconds, which the fetch of missed chunks covers.
	failoverWithin = 5 * time.Second
	// publishBlocks is a publish too slow to be the buffering it should be.
	publishBlocks = 100 * time.Millisecond
)

// startNode starts one embedded node of a loopback cluster, routed to
// routes.
func startNode(t *testing.T, name, secret string, routes ...string) *bus.Bus {
	t.Helper()
	cfg := testConfig()
	cfg.Token = clusterToken
	cfg.Cluster = bus.ClusterConfig{Listen: "127.0.0.1:0", Routes: routes, Secret: secret, Node: name}
	b, err := bus.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// startCluster starts three nodes, the others routed to the first, and
// returns once each is routed to both others.
func startCluster(t *testing.T) []*bus.Bus {
	t.Helper()
	a := startNode(t, "a", clusterSecret)
	nodes := []*bus.Bus{a, startNode(t, "b", clusterSecret, a.ClusterURL()), startNode(t, "c", clusterSecret, a.ClusterURL())}
	eventually(t, 10*time.Second, "three nodes routed to each other", func() bool {
		for _, n := range nodes {
			if n.Peers() != 2 {
				return false
			}
		}
		return true
	})
	return nodes
}

// eventually polls cond until it holds, failing the test after d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reconnects records the hosts a client's bus says it reconnected to.
type reconnects struct {
	mu    sync.Mutex
	hosts []string
}

func (r *reconnects) Enabled(context.Context, slog.Level) bool { return true }
func (r *reconnects) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *reconnects) WithGroup(string) slog.Handler            { return r }

func (r *reconnects) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message != "bus: reconnected" {
		return nil
	}
	rec.Attrs(func(a slog.Attr) bool {
		if u, err := url.Parse(a.Value.String()); a.Key == "url" && err == nil {
			r.mu.Lock()
			r.hosts = append(r.hosts, u.Host)
			r.mu.Unlock()
		}
		return true
	})
	return nil
}

func (r *reconnects) to() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.hosts...)
}

// openClient opens a client bus on a list of the nodes' URLs, the first
// preferred.
func openClient(t *testing.T, prefer ...*bus.Bus) (*bus.Bus, *reconnects) {
	t.Helper()
	var urls []string
	for _, n := range prefer {
		urls = append(urls, n.URL())
	}
	rc := &reconnects{}
	cfg := testConfig()
	cfg.URL, cfg.Logger = strings.Join(urls, ","), slog.New(rc)
	b, err := bus.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, rc
}

func hostOf(t *testing.T, b *bus.Bus) string {
	t.Helper()
	u, err := url.Parse(b.URL())
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// publisher publishes a program's chunks as fast as a ticker says until
// stopped, and remembers the last chunk sent and the slowest publish.
type publisher struct {
	last    atomic.Uint64
	slowest atomic.Int64 // nanoseconds
	errs    atomic.Uint64
	stop    chan struct{}
	done    chan struct{}
}

func startPublisher(t *testing.T, b *bus.Bus, spaceID string) *publisher {
	t.Helper()
	p := &publisher{stop: make(chan struct{}), done: make(chan struct{})}
	packer := program.NewPacker(7)
	go func() {
		defer close(p.done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			c, err := packer.Add([]byte{byte(i), 0xfc, 0xff, 0xfe})
			if err != nil || c == nil {
				continue
			}
			start := time.Now()
			if err := b.PublishChunk(spaceID, c); err != nil {
				p.errs.Add(1)
			}
			if d := int64(time.Since(start)); d > p.slowest.Load() {
				p.slowest.Store(d)
			}
			p.last.Store(c.Seq)
		}
	}()
	t.Cleanup(func() { close(p.stop); <-p.done })
	return p
}

// TestClusterKeepsTheProgramFlowingWhenANodeDies: with three nodes, a
// publisher and a subscriber on different ones, and each given all three
// URLs, shutting down either's node stops nothing for more than a few
// seconds: the client on it reconnects to another node, the subscription
// follows, and publishing never blocks meanwhile.
func TestClusterKeepsTheProgramFlowingWhenANodeDies(t *testing.T) {
	tests := []struct {
		name string
		kill int // index of the node to shut down: a is 0, b is 1
	}{
		{"the subscriber's node", 1},
		{"the publisher's node", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes := startCluster(t)
			a, b, c := nodes[0], nodes[1], nodes[2]
			pub, pubMoves := openClient(t, a, c, b)
			sub, subMoves := openClient(t, b, a, c)

			var lastSeen atomic.Uint64
			var seenAny atomic.Bool
			s, err := sub.SubscribePrograms(func(_ string, c *program.Chunk) {
				lastSeen.Store(c.Seq)
				seenAny.Store(true)
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			flush(t, sub)
			p := startPublisher(t, pub, "space")
			eventually(t, 10*time.Second, "chunk across the cluster", seenAny.Load)

			killed := hostOf(t, nodes[tt.kill])
			nodes[tt.kill].Close()
			sentBefore := p.last.Load()
			eventually(t, failoverWithin, "chunk published after the node died", func() bool {
				return lastSeen.Load() > sentBefore
			})

			moves := map[int]*reconnects{0: pubMoves, 1: subMoves}[tt.kill]
			if to := moves.to(); len(to) == 0 || to[0] == killed {
				t.Errorf("the client on the dead node %s reconnected to %v", killed, to)
			}
			if slowest := time.Duration(p.slowest.Load()); slowest > publishBlocks {
				t.Errorf("a publish took %v", slowest)
			}
			if n := p.errs.Load(); n != 0 {
				t.Errorf("%d publishes failed", n)
			}
		})
	}
}

// TestClusterRefusesANodeWithoutItsSecret: a node with another secret is
// not routed to, while one with the secret, started after it, is; and a
// route that presents no secret or a wrong one is told so.
func TestClusterRefusesANodeWithoutItsSecret(t *testing.T) {
	a := startNode(t, "a", clusterSecret)
	stranger := startNode(t, "stranger", "a guess", a.ClusterURL())
	member := startNode(t, "member", clusterSecret, a.ClusterURL())
	eventually(t, 10*time.Second, "member routed to the first node", func() bool {
		return a.Peers() == 1 && member.Peers() == 1
	})
	if stranger.Peers() != 0 || a.Peers() != 1 {
		t.Errorf("the stranger has %d peers and the first node %d, want 0 and 1", stranger.Peers(), a.Peers())
	}

	routeAddr := strings.TrimPrefix(a.ClusterURL(), "nats-route://")
	for name, connect := range map[string]string{
		"no secret":    `{"name":"intruder"}`,
		"wrong secret": `{"name":"intruder","user":"amphi","pass":"a guess"}`,
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", routeAddr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			r := bufio.NewReader(conn)
			if info, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(info, "INFO ") {
				t.Fatalf("the route listener said %q (%v), want its INFO", info, err)
			}
			fmt.Fprintf(conn, "CONNECT %s\r\nPING\r\n", connect)
			if reply, err := r.ReadString('\n'); !strings.Contains(reply, "Authorization Violation") {
				t.Errorf("the route listener answered %q (%v), want an authorization violation", reply, err)
			}
		})
	}
}
