package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/gate"
)

// startNginx runs nginx from the system with deploy/nginx/amphi-hls.conf in
// front of upstream (host:port), on a free loopback port whose base URL it
// returns with the access log, which names the upstream of each request
// ("-" when the cache answered). It skips the test without nginx.
func startNginx(t testing.TB, upstream string) (base, accessLog string) {
	t.Helper()
	return runNginx(t, upstream, nil)
}

// runNginx is startNginx, serving HTTPS with HTTP/2 when tls is set: a
// certificate and its key, as PEM files.
func runNginx(t testing.TB, upstream string, tls *[2]string) (base, accessLog string) {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/nginx"); err != nil {
			t.Skip("nginx is not installed: the README's test command installs it")
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	site, err := os.ReadFile("../../deploy/nginx/amphi-hls.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := string(site)
	for _, sub := range [][2]string{
		{"server 127.0.0.1:8080;", "server " + upstream + ";"},
		{"listen 80;", listenLine(addr, tls)},
		{"/var/cache/nginx/amphi-hls", filepath.Join(dir, "cache")},
	} {
		if !strings.Contains(conf, sub[0]) {
			t.Fatalf("deploy/nginx/amphi-hls.conf no longer has %q, which this test replaces", sub[0])
		}
		conf = strings.Replace(conf, sub[0], sub[1], 1)
	}
	accessLog = filepath.Join(dir, "access.log")
	user := ""
	if os.Geteuid() == 0 { // workers would run as nobody, who cannot write dir
		user = "user root;\n"
	}
	main := user + "daemon off;\nworker_processes 2;\npid " + dir + "/nginx.pid;\n" +
		"events { worker_connections 4096; }\nhttp {\n" +
		"log_format upstream '$uri $upstream_addr';\naccess_log " + accessLog + " upstream;\n"
	for _, temp := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		main += temp + "_temp_path " + filepath.Join(dir, temp) + ";\n"
	}
	main += conf + "\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	base, hc := "http://"+addr, http.DefaultClient
	if tls != nil {
		base, hc = "https://"+addr, h2Client(nil)
	}
	waitFor(t, func() bool {
		resp, err := hc.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	})
	return base, accessLog
}

// followHLS plays an LL-HLS entry URL as a low-latency player does, from
// the newest part on: a blocking reload until the next part is listed,
// then the part, and again while more(part's name, its bytes) says so.
func followHLS(t testing.TB, ctx context.Context, hc *http.Client, entry string, more func(name string, media []byte) bool) error {
	playlist := runPlaylistWith(t, ctx, hc, entry)
	resp, body := get(t, ctx, hc, playlist)
	_, _, parts := mediaNames(string(body))
	var msn, part int
	if resp.StatusCode != http.StatusOK || len(parts) == 0 {
		return fmt.Errorf("first playlist: %d\n%s", resp.StatusCode, body)
	}
	if _, err := fmt.Sscanf(parts[len(parts)-1], "%d.%d.m4s", &msn, &part); err != nil {
		return fmt.Errorf("part %s: %w", parts[len(parts)-1], err)
	}
	for {
		if part++; part == 10 { // ten parts a segment
			msn, part = msn+1, 0
		}
		if resp, body := get(t, ctx, hc, fmt.Sprintf("%s&_HLS_msn=%d&_HLS_part=%d", playlist, msn, part)); resp.StatusCode != http.StatusOK {
			return fmt.Errorf("blocking reload for %d.%d: %d %s", msn, part, resp.StatusCode, body)
		}
		name := fmt.Sprintf("%d.%d.m4s", msn, part)
		resp, media := get(t, ctx, hc, resolve(t, playlist, name))
		if resp.StatusCode != http.StatusOK || len(media) == 0 {
			return fmt.Errorf("%s: %d, %d bytes", name, resp.StatusCode, len(media))
		}
		if !more(name, media) {
			return nil
		}
	}
}

// hlsCacheListeners is how many LL-HLS listeners play through the cache.
const hlsCacheListeners = 300

// partName matches a part's path and captures its name.
var partName = regexp.MustCompile(`^/spaces/[^/]+/hls/[^/]+/([0-9]+\.[0-9]\.m4s)$`)

// TestACacheInFrontOfHLSAsksAmphiOncePerPart: hundreds of LL-HLS listeners
// behind nginx (deploy/nginx/amphi-hls.conf), each following the live
// edge part by part with blocking reloads, cost amphi about one request
// per part: the media is shared; only the playlists, which carry each
// listener's ticket, pass through.
//
// Not parallel: its thousands of requests a second take both cores for a
// few seconds, which would starve the browser tests' playback.
func TestACacheInFrontOfHLSAsksAmphiOncePerPart(t *testing.T) {
	m := MustRunMainWith(t, t.TempDir(), func(m *Main) {
		m.Config.API.Gate.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		m.Config.API.Gate.Join = gate.LimiterConfig{} // every listener joins from 127.0.0.1
	})
	defer m.Close()
	base, accessLog := startNginx(t, strings.TrimPrefix(m.URL(), "http://"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sp := createSpace(t, ctx, base)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: hlsCacheListeners * 2}}

	var fetched sync.Map // part name → true: the parts listeners got
	var partRequests, bytes atomic.Int64
	listen := func(until time.Time) error {
		adm, err := client.New(base).Join(ctx, sp.ID, nil)
		if err != nil {
			return err
		}
		return followHLS(t, ctx, hc, adm.HLSURL, func(name string, media []byte) bool {
			fetched.Store(name, true)
			partRequests.Add(1)
			bytes.Add(int64(len(media)))
			return time.Now().Before(until)
		})
	}
	until := time.Now().Add(6 * time.Second)
	var wg sync.WaitGroup
	for range hlsCacheListeners {
		wg.Go(func() {
			if err := listen(until); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	log, err := os.ReadFile(accessLog)
	if err != nil {
		t.Fatal(err)
	}
	var toAmphi, playlists int
	for line := range strings.SplitSeq(strings.TrimSpace(string(log)), "\n") {
		uri, upstream, _ := strings.Cut(line, " ")
		switch {
		case upstream == "-":
		case partName.MatchString(uri):
			toAmphi++
		case strings.HasSuffix(uri, "/index.m3u8"):
			playlists++
		}
	}
	parts := 0
	fetched.Range(func(any, any) bool { parts++; return true })
	t.Logf("%d listeners fetched %d parts %d times (%d bytes); amphi was asked %d times for parts (%.2f a part) and %d times for playlists",
		hlsCacheListeners, parts, partRequests.Load(), bytes.Load(), toAmphi, float64(toAmphi)/float64(max(parts, 1)), playlists)
	if parts == 0 || partRequests.Load() < int64(hlsCacheListeners*parts)/4 {
		t.Fatalf("listeners fetched %d parts %d times: they did not follow the live edge", parts, partRequests.Load())
	}
	if toAmphi < parts || toAmphi > parts+parts/10 {
		t.Errorf("amphi was asked %d times for %d parts, want about once a part", toAmphi, parts)
	}
}
