package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/client"
)

// BenchmarkRefusalFloor measures what refusing a listen request with a
// forged ticket costs the server, side by side in one run with a bare
// net/http server answering 401: h2load (Debian's nghttp2-client) sends
// refusalRequests requests over 64 keep-alive HTTP/1.1 connections to
// each, and the server's CPU (this process's: h2load runs apart) is read
// from getrusage before and after. Reported: µs of server CPU per refusal
// and refusals per core-second.
//
//   - bare-net/http-401: the floor of any handler behind net/http;
//   - amphi-lean: amphi's listeners' address, lean path (internal/api/lean.go);
//   - amphi-handler: the same requests with a cookie, which the lean path
//     leaves to net/http and the handler.
//
// The listen limiter is lifted: one source sends everything here, and its
// refusal would be cheaper still.
//
//	scripts/deps.sh nghttp2-client
//	go test ./cmd/amphi -run '^$' -bench RefusalFloor -benchtime 1x
func BenchmarkRefusalFloor(b *testing.B) {
	h2load, err := exec.LookPath("h2load")
	if err != nil {
		b.Skip("h2load is not installed: scripts/deps.sh nghttp2-client")
	}
	bare, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":{"code":"unauthorized","message":"invalid ticket"}}`+"\n")
	})}
	go srv.Serve(bare)
	defer srv.Close()

	m := MustRunMainWith(b, b.TempDir(), func(m *Main) { m.Config.API.Gate.Listen.SourceRate, m.Config.API.Gate.Listen.PrefixRate = 0, 0 })
	defer m.Close()
	sp := createSpace(b, b.Context(), m.URL())
	// A genuine ticket with its MAC altered: refused after the MAC check,
	// the most a forged ticket costs.
	adm, err := client.New(m.URL()).Join(b.Context(), sp.ID, nil)
	if err != nil {
		b.Fatal(err)
	}
	forged := adm.Ticket[:len(adm.Ticket)-1] + map[bool]string{true: "B", false: "A"}[adm.Ticket[len(adm.Ticket)-1] == 'A']
	amphiURL := fmt.Sprintf("%s/spaces/%s/live.opus?ticket=%s", m.URL(), sp.ID, forged)

	for _, run := range []struct {
		name, url string
		args      []string
	}{
		{"bare-net/http-401", "http://" + bare.Addr().String() + "/x", nil},
		{"amphi-lean", amphiURL, nil},
		{"amphi-handler", amphiURL, []string{"-H", "Cookie: x=y"}},
	} {
		b.Run(run.name, func(b *testing.B) {
			for range b.N {
				before := cpuTime()
				args := append([]string{"--h1", "-n", strconv.Itoa(refusalRequests), "-c", "64", "-m", "1"}, run.args...)
				out, err := exec.Command(h2load, append(args, run.url)...).CombinedOutput()
				cpu := cpuTime() - before
				if err != nil {
					b.Fatalf("h2load: %v\n%s", err, out)
				}
				if m := regexp.MustCompile(`status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx`).FindSubmatch(out); m == nil || string(m[1]) != strconv.Itoa(refusalRequests) {
					b.Fatalf("h2load: not every request refused:\n%s", out)
				}
				b.ReportMetric(cpu.Seconds()*1e6/refusalRequests, "µs-cpu/refusal")
				b.ReportMetric(refusalRequests/cpu.Seconds(), "refusals/core-s")
			}
		})
	}
}

// refusalRequests is how many requests each server refuses per run.
const refusalRequests = 200_000

// cpuTime is this process's CPU time, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
