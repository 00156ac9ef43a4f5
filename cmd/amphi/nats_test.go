package main

import (
	"bufio"
	"context"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/bus"
)

// natsNode is `amphi nats` in a child process: this test binary
// re-executed.
type natsNode struct {
	cmd   *exec.Cmd
	host  string      // its client address
	route string      // its nats-route:// URL
	lines chan string // what it prints after its first line
}

// startNATSNode starts a node on free loopback ports, with the token and
// cluster secret files in dir, and returns once it says where it listens.
func startNATSNode(t *testing.T, dir, name string, routes ...string) *natsNode {
	t.Helper()
	n := &natsNode{lines: make(chan string, 64)}
	n.cmd = exec.Command(os.Args[0], "nats", "--listen", "127.0.0.1:0", "--cluster", "127.0.0.1:0", "--name", name,
		"--token-file", filepath.Join(dir, "nats.token"), "--cluster-secret-file", filepath.Join(dir, "nats-cluster.secret"),
		"--routes", strings.Join(routes, ","))
	n.cmd.Env = append(os.Environ(), reexecEnv+"=1")
	n.cmd.Stderr = os.Stderr
	out, err := n.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.cmd.Process.Kill(); n.cmd.Wait() })
	go func() {
		defer close(n.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			n.lines <- sc.Text()
		}
	}()
	first := n.next(t)
	_, clients, _ := strings.Cut(first, "clients on ")
	clients, _, _ = strings.Cut(clients, " ")
	u, err := url.Parse(clients)
	if err != nil || u.Host == "" || strings.Contains(first, readToken(t, dir)) {
		t.Fatalf("first line %q: want the clients' URL without the token", first)
	}
	n.host = u.Host
	_, n.route, _ = strings.Cut(first, "routes on ")
	return n
}

func (n *natsNode) next(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-n.lines:
		if !ok {
			t.Fatal("amphi nats exited")
		}
		return l
	case <-time.After(20 * time.Second):
		t.Fatal("amphi nats said nothing")
		return ""
	}
}

func readToken(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "nats.token"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestNATSClusterOfThreeProcessesSurvivesAKilledNode: three `amphi nats`
// processes make one cluster; a client given the three URLs and the token
// keeps receiving within seconds when its node is killed with SIGKILL.
func TestNATSClusterOfThreeProcessesSurvivesAKilledNode(t *testing.T) {
	dir := t.TempDir()
	n1 := startNATSNode(t, dir, "n1")
	nodes := []*natsNode{n1, startNATSNode(t, dir, "n2", n1.route), startNATSNode(t, dir, "n3", n1.route)}
	for _, n := range nodes {
		for l := ""; !strings.HasSuffix(l, ": routed to 2 other node(s)"); {
			l = n.next(t)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "nats.token")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, %v; want mode 0600", fi, err)
	}
	token := readToken(t, dir)
	join := func(ns ...*natsNode) *bus.Bus {
		var urls []string
		for _, n := range ns {
			urls = append(urls, "nats://"+token+"@"+n.host)
		}
		cfg := bus.DefaultConfig()
		cfg.URL, cfg.Logger = strings.Join(urls, ","), slog.New(slog.DiscardHandler)
		b, err := bus.Open(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	pub, sub := join(nodes[0], nodes[2]), join(nodes[1], nodes[0], nodes[2])

	var seen atomic.Int64
	s, err := sub.Subscribe("test.count", func(data []byte) {
		if n, err := strconv.ParseInt(string(data), 10, 64); err == nil {
			seen.Store(n)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := sub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for n := int64(1); ; n++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			pub.Publish("test.count", []byte(strconv.FormatInt(n, 10)))
			sent.Store(n)
		}
	}()
	defer func() { close(stop); <-stopped }()

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s", what)
			}
		}
	}
	waitFor("message across the cluster", func() bool { return seen.Load() > 0 })
	if err := nodes[1].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	before := sent.Load()
	waitFor("message published after the subscriber's node was killed", func() bool { return seen.Load() > before })
}
