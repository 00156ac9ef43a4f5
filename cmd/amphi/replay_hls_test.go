package main

import (
	"bytes"
	"context"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/tone"
)

// TestTheReplayIsServedAsHLSVOD: an ended space's recording plays as HLS
// VOD in ffmpeg, an independent client, sample for sample what the Ogg
// recording plays, across the segments' boundaries.
func TestTheReplayIsServedAsHLSVOD(t *testing.T) {
	t.Parallel()
	ffmpeg := needTool(t, "ffmpeg")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	c := client.New(m.URL())
	sp := newSpace(t, ctx, c, "Replay me")
	playlist := m.URL() + "/spaces/" + sp.ID + "/replay/index.m3u8"
	if _, v := call(t, http.MethodGet, m.URL()+"/spaces/"+sp.ID, nil, nil); v["replay_hls_url"] != playlist {
		t.Errorf("the space's replay_hls_url is %v, want %s", v["replay_hls_url"], playlist)
	}
	if resp, _ := get(t, ctx, http.DefaultClient, playlist); resp.StatusCode != http.StatusConflict {
		t.Errorf("the replay of a live space: %d, want 409", resp.StatusCode)
	}
	// A tone across the first segment's end (6 s).
	playTone(t, ctx, c, sp, 440, 500*time.Millisecond, 7500*time.Millisecond, 8*time.Second)
	if _, err := c.End(ctx, sp.ID, sp.HostToken); err != nil {
		t.Fatal(err)
	}

	resp, body := get(t, ctx, http.DefaultClient, playlist)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "#EXT-X-PLAYLIST-TYPE:VOD") || !strings.HasSuffix(string(body), "#EXT-X-ENDLIST\n") {
		t.Fatalf("the replay playlist: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := get(t, ctx, http.DefaultClient, m.URL()+"/spaces/"+sp.ID+"/replay/99.m4s"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a segment past the end: %d, want 404", resp.StatusCode)
	}

	vod, msgs := ffmpegDecode(t, ctx, ffmpeg, "-i", playlist)
	if len(bytes.TrimSpace(msgs)) > 0 {
		t.Fatalf("ffmpeg playing the replay: %s", msgs)
	}
	ogg := ffmpegPCM(t, "recording", fetch(t, ctx, m.URL()+"/spaces/"+sp.ID+"/recording.opus"))
	if d := time.Duration(len(vod)-len(ogg)) * time.Second / amphi.SampleRate; d < -20*time.Millisecond || d > 20*time.Millisecond {
		t.Errorf("the VOD plays %d samples, the recording %d", len(vod), len(ogg))
	}
	worst := 0.0
	for i := amphi.SampleRate * 80 / 1000; i < min(len(vod), len(ogg)); i++ {
		worst = math.Max(worst, math.Abs(float64(vod[i])-float64(ogg[i])))
	}
	if worst > 1 {
		t.Errorf("the VOD differs from the recording by up to %v", worst)
	}
	if at6 := vod[6*amphi.SampleRate-2400 : 6*amphi.SampleRate+2400]; !tone.Present(at6, amphi.SampleRate, 440, 1000) {
		t.Error("no tone across the first segment's end")
	}
}

// TestACacheKeepsTheReplay: behind nginx (deploy/nginx/amphi-hls.conf) a
// replay's playlist and segments reach amphi once, however many ask.
func TestACacheKeepsTheReplay(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	base, _ := startNginx(t, strings.TrimPrefix(m.URL(), "http://"))
	c := client.New(m.URL())
	sp := newSpace(t, ctx, c, "Cached replay")
	playTone(t, ctx, c, sp, 440, 0, time.Second, time.Second)
	if _, err := c.End(ctx, sp.ID, sp.HostToken); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"index.m3u8", "init.mp4", "0.m4s"} {
		for i, want := range []string{"MISS", "HIT", "HIT"} {
			resp, _ := get(t, ctx, http.DefaultClient, base+"/spaces/"+sp.ID+"/replay/"+name)
			if got := resp.Header.Get("X-Cache-Status"); resp.StatusCode != http.StatusOK || got != want {
				t.Errorf("%s, request %d: %d, X-Cache-Status %q, want 200 %s", name, i+1, resp.StatusCode, got, want)
			}
		}
	}
}
