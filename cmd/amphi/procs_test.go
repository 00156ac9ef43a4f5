package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func TestWithoutFlagDropsTheFlagInEveryForm(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--role", "edge", "--procs", "4", "--addr", "x"},
		{"--role", "edge", "-procs", "4", "--addr", "x"},
		{"--role", "edge", "--procs=4", "--addr", "x"},
		{"--role", "edge", "-procs=4", "--addr", "x"},
	} {
		if got := withoutFlag(args, "procs"); !slices.Equal(got, []string{"--role", "edge", "--addr", "x"}) {
			t.Errorf("withoutFlag(%q) = %q", args, got)
		}
	}
	if got := withoutFlag([]string{"--procsy", "1"}, "procs"); len(got) != 2 {
		t.Errorf("another flag sharing a prefix was dropped: %q", got)
	}
}

func TestEachEdgeProcessGetsTheNextOpsPort(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr string
		i    int
		want string
	}{{"127.0.0.1:9101", 2, "127.0.0.1:9103"}, {"127.0.0.1:0", 3, "127.0.0.1:0"}, {"", 1, ""}} {
		if got, err := nthAddr(tc.addr, tc.i); err != nil || got != tc.want {
			t.Errorf("nthAddr(%q, %d) = %q, %v; want %q", tc.addr, tc.i, got, err, tc.want)
		}
	}
	if _, err := nthAddr("no port", 1); err == nil {
		t.Error("an ops address without a port was taken")
	}
}

// freePorts returns a base port p with p and p+1 free on loopback.
func freePorts(t *testing.T) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		next, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		ln.Close()
		if err == nil {
			next.Close()
			return p
		}
	}
	t.Fatal("no two free ports in a row")
	return 0
}

// TestProcsRunsEdgesOnOnePortAndRestartsOneThatDies: `amphi serve --role
// edge --procs 2` as child processes of this test (re-executed as amphi):
// both report to the origin, and one killed is started again.
func TestProcsRunsEdgesOnOnePortAndRestartsOneThatDies(t *testing.T) {
	t.Setenv(reexecEnv, "1") // the children run as amphi; this process does not look again
	originDir := t.TempDir()
	origin := MustRunMainWith(t, originDir, func(m *Main) { m.Config.Role = RoleOrigin })
	defer origin.Close()
	ops, addr := freePorts(t), "127.0.0.1:"+strconv.Itoa(freePorts(t))

	var mu sync.Mutex
	var out bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- supervise(ctx, 2, []string{"--role", "edge", "--addr", addr, "--nats", origin.BusURL(),
			"--gate-key-file", filepath.Join(originDir, "gate.key"), "--log", "warn"},
			"127.0.0.1:"+strconv.Itoa(ops), &lockedWriter{mu: &mu, w: &out})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("supervise: %v", err)
		}
	}()
	nodes := func() []string {
		var n []string
		for _, e := range origin.fleet.snapshot() {
			n = append(n, e.Node)
		}
		return n
	}
	waitFor(t, func() bool { return len(nodes()) == 2 })
	first := nodes()

	// This test's children that are the edges (other tests may have
	// children of their own).
	children := func() []int {
		var pids []int
		tasks, _ := filepath.Glob("/proc/self/task/*/children")
		for _, f := range tasks {
			b, _ := os.ReadFile(f)
			for _, p := range strings.Fields(string(b)) {
				pid, _ := strconv.Atoi(p)
				if cmd, _ := os.ReadFile("/proc/" + p + "/cmdline"); strings.Contains(string(cmd), "edge\x00--addr\x00"+addr) {
					pids = append(pids, pid)
				}
			}
		}
		return pids
	}
	kids := children()
	if len(kids) != 2 {
		t.Fatalf("%d child processes, want the 2 edges", len(kids))
	}
	if err := syscall.Kill(kids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// A new edge (a new pid in its node name) reports in.
	waitFor(t, func() bool {
		return slices.ContainsFunc(nodes(), func(n string) bool { return !slices.Contains(first, n) })
	})
	mu.Lock()
	said := out.String()
	mu.Unlock()
	if !strings.Contains(said, "restarting it") {
		t.Errorf("the supervisor did not say it restarts the dead edge:\n%s", said)
	}
}
