package main

import (
	"context"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/gate"
	"github.com/amphi-audio/amphi/internal/load"
)

// loadHLSListeners is how many LL-HLS listeners `amphi load --hls` plays
// through nginx: the thousand. Each makes about ten requests a
// second; on a 2-core machine beside four CPU burners they still played
// without a stall (first part p99 0.53 s). AMPHI_LOAD_HLS_LISTENERS sets
// another count.
const loadHLSListeners = 1000

// TestLoadHLSListenersBehindACacheAskAmphiOncePerPart: `amphi load --hls`
// plays LL-HLS listeners, joined as any, through nginx
// (deploy/nginx/amphi-hls.conf); nginx's access log shows amphi asked
// about once per part, and the report that listeners received parts
// from the live edge and hardly stalled.
//
// Not parallel, as TestACacheInFrontOfHLSAsksAmphiOncePerPart: thousands
// of requests a second take both cores.
func TestLoadHLSListenersBehindACacheAskAmphiOncePerPart(t *testing.T) {
	n := loadHLSListeners
	if s := os.Getenv("AMPHI_LOAD_HLS_LISTENERS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			t.Fatalf("AMPHI_LOAD_HLS_LISTENERS=%q: %v", s, err)
		}
	}
	m := MustRunMainWith(t, t.TempDir(), func(m *Main) {
		m.Config.API.Gate.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		m.Config.API.Gate.Join = gate.LimiterConfig{} // a herd joins at once
	})
	defer m.Close()
	base, accessLog := startNginx(t, strings.TrimPrefix(m.URL(), "http://"))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// The space and its speaker are the origin's; listeners join and play
	// through nginx. They join over 2 s, as a crowd arrives.
	rep, text := runLoadReport(t, ctx, "--server", m.URL(), "--listen-server", base, "--hls",
		"--listeners", strconv.Itoa(n), "--rate", strconv.Itoa(n/2), "--duration", "8s")

	h := rep.HLS
	if h == nil {
		t.Fatalf("report has no HLS counts:\n%s", text)
	}
	l := rep.Listeners
	if l.Joined != int64(n) || l.Failed != 0 || l.OK+l.Stalled != int64(n) {
		t.Errorf("listeners %+v, want all %d to play", l, n)
	}
	if l.Stalled > int64(n)/20 {
		t.Errorf("%d of %d listeners stalled, want few", l.Stalled, n)
	}
	// Each plays 6 s or more after its first part: 5 parts a second.
	if h.Parts < int64(n)*25 || h.PartsPerListenerSecond < 4 || h.PartsPerListenerSecond > 6 {
		t.Errorf("%d parts, %.2f per listener-second: listeners did not follow the live edge", h.Parts, h.PartsPerListenerSecond)
	}
	if h.Reloads < h.Parts/2 || h.Gzipped == 0 {
		t.Errorf("%d blocking reloads (%d gzipped) for %d parts: not a low-latency player", h.Reloads, h.Gzipped, h.Parts)
	}
	if rep.TTFAHistogram.N != int64(n) || rep.TTFA.P99 > load.Duration(5*time.Second) {
		t.Errorf("time to first part %+v over %d listeners", rep.TTFA, rep.TTFAHistogram.N)
	}

	log, err := os.ReadFile(accessLog)
	if err != nil {
		t.Fatal(err)
	}
	parts, toAmphi, playlists := map[string]bool{}, 0, 0
	for line := range strings.SplitSeq(strings.TrimSpace(string(log)), "\n") {
		uri, upstream, _ := strings.Cut(line, " ")
		switch sub := partName.FindStringSubmatch(uri); {
		case sub != nil:
			parts[sub[1]] = true
			if upstream != "-" {
				toAmphi++
			}
		case strings.HasSuffix(uri, "/index.m3u8") && upstream != "-":
			playlists++
		}
	}
	t.Logf("%d listeners fetched %d parts %d times; amphi was asked %d times for parts (%.3f a part) and %d times for playlists (%.2f a part fetched)",
		n, len(parts), h.Parts, toAmphi, float64(toAmphi)/float64(max(len(parts), 1)), playlists, float64(playlists)/float64(max(h.Parts, 1)))
	if len(parts) == 0 || toAmphi < len(parts) || toAmphi > len(parts)+len(parts)/10 {
		t.Errorf("amphi was asked %d times for %d parts, want about once a part", toAmphi, len(parts))
	}
}
