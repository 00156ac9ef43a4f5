package attack

import (
	"bufio"
	"context"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperServerEnv makes the test binary a gate-mimic server instead of
// running tests, so a benchmark measures the attacker's CPU alone.
const helperServerEnv = "AMPHI_ATTACK_HELPER_SERVER"

// TestHelperServer is not a test: started by startHelperServer, it serves
// gateMimic on loopback, prints its URL and runs until stdin closes.
func TestHelperServer(t *testing.T) {
	if os.Getenv(helperServerEnv) != "1" {
		t.Skip("helper process for benchmarks")
	}
	srv := httptest.NewServer((&gateMimic{}).handler())
	defer srv.Close()
	os.Stdout.WriteString(srv.URL + "\n")
	io.Copy(io.Discard, os.Stdin)
}

// startHelperServer runs a gateMimic server in a child process and returns
// its URL; it stops with the benchmark.
func startHelperServer(b *testing.B) string {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperServer$")
	cmd.Env = append(os.Environ(), helperServerEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	return strings.TrimSpace(line)
}

// BenchmarkListenFlood measures how many forged-ticket listen requests one
// Run generates per second against a 404 handler in another process (each
// a new connection, request, status line and close), and what each costs
// the attacker. Run with -cpu 1 for one core's worth.
func BenchmarkListenFlood(b *testing.B) {
	url := startHelperServer(b)
	// Warm the server's accept path and this process's pools.
	if _, err := Run(context.Background(), Config{Kind: ListenFlood, Target: url, Rate: 1e9, Count: 200, Sources: 16}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	s, err := Run(context.Background(), Config{Kind: ListenFlood, Target: url, Rate: 1e9, Count: b.N, Duration: 5 * time.Minute, Sources: 16})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if s.Completed != int64(b.N) {
		b.Fatalf("%v: want %d answered", s, b.N)
	}
	cpu := cpuTime(b) - cpu0
	b.ReportMetric(float64(s.Completed)/b.Elapsed().Seconds(), "req/s")
	// The attacker's CPU (user and system, kernel TCP work included) per
	// request: 1e6 over it is what one core could generate were the server
	// not sharing the machine.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/req")
}

// cpuTime is this process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAppendFloodRequest is the cost of building one request, the part
// of a flood that is ours rather than the kernel's.
func BenchmarkAppendFloodRequest(b *testing.B) {
	for _, k := range []Kind{JoinFlood, ListenFlood} {
		b.Run(string(k), func(b *testing.B) {
			cfg, _ := Config{Kind: k, Target: "http://127.0.0.1:8080"}.withDefaults()
			tg, _ := parseTarget(cfg)
			r := &runner{cfg: cfg, target: tg}
			sc := scratchPool.Get().(*scratch)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				sc.req = r.appendFloodRequest(sc.req[:0], sc, i)
				i++
			}
		})
	}
}
