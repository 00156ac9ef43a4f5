package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/client"
)

// TestFFmpegHearsTheSpeakerInTheAACRendition: hls_url is a multivariant
// playlist that lists the Opus rendition, then an AAC-LC one for players
// without Opus; the AAC playlist is gated as the Opus one is, its parts
// hold whole 1024-sample frames within its PART-TARGET, ffprobe reads its
// init segment and a part as AAC-LC, and ffmpeg that picks it from
// hls_url hears the speaker's tone.
func TestFFmpegHearsTheSpeakerInTheAACRendition(t *testing.T) {
	t.Parallel()
	ffmpeg, ffprobe := needTool(t, "ffmpeg"), needTool(t, "ffprobe")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	sp := createSpace(t, ctx, m.URL())
	c := client.New(m.URL())
	spk := dialSpeaker(t, ctx, c, sp.ID, sp.SpeakerToken)
	defer spk.playUntilStopped(t, ctx, 440)()
	adm, err := c.Join(ctx, sp.ID, nil)
	if err != nil {
		t.Fatal(err)
	}

	_, multivariant := get(t, ctx, http.DefaultClient, adm.HLSURL)
	opusAt, aacAt := bytes.Index(multivariant, []byte(`CODECS="opus"`)), bytes.Index(multivariant, []byte(`CODECS="mp4a.40.2"`))
	if opusAt < 0 || aacAt < opusAt || bytes.Count(multivariant, []byte("#EXT-X-STREAM-INF:BANDWIDTH=")) != 2 {
		t.Fatalf("the multivariant playlist does not list Opus then AAC-LC, each with its bandwidth:\n%s", multivariant)
	}
	playlistURL := renditionPlaylist(t, ctx, http.DefaultClient, adm.HLSURL, "mp4a.40.2")
	bare, _ := url.Parse(playlistURL)
	bare.RawQuery = ""
	if resp, _ := get(t, ctx, http.DefaultClient, bare.String()); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET %s without a ticket: %d, want 401", bare, resp.StatusCode)
	}
	resp, body := get(t, ctx, http.DefaultClient, playlistURL+"&_HLS_msn=2")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the AAC playlist with its ticket: %d %s", resp.StatusCode, body)
	}
	// RFC 8216bis §4.4.3.7: no part longer than PART-TARGET, which is 200
	// ms rounded up to whole frames: ten of 1024 samples.
	const partTarget = 10 * 1024.0 / amphi.SampleRate
	if !strings.Contains(string(body), "PART-TARGET="+strconv.FormatFloat(partTarget, 'f', -1, 64)+"\n") {
		t.Errorf("the AAC playlist's PART-TARGET is not %g s:\n%s", partTarget, body)
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, "#EXT-X-PART:DURATION="); ok {
			d, _ := strconv.ParseFloat(rest[:strings.Index(rest, ",")], 64)
			if frames := d * amphi.SampleRate / 1024; d > partTarget || frames != float64(int(frames)) {
				t.Errorf("part of %g s: more than PART-TARGET, or not whole frames", d)
			}
		}
	}
	init, _, parts := mediaNames(string(body))
	if init == "" || len(parts) == 0 {
		t.Fatalf("the AAC playlist names no init or part:\n%s", body)
	}
	var file []byte
	for _, name := range []string{init, parts[len(parts)-1]} {
		resp, media := get(t, ctx, http.DefaultClient, resolve(t, bare.String(), name))
		if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
			t.Fatalf("%s: %d, Cache-Control %q; want 200, immutable", name, resp.StatusCode, resp.Header.Get("Cache-Control"))
		}
		file = append(file, media...)
	}
	path := filepath.Join(t.TempDir(), "part.mp4")
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, ffprobe, "-v", "error", "-of", "json", "-show_entries", "stream=codec_name,profile,sample_rate,channels", path).Output()
	if err != nil {
		t.Fatalf("ffprobe of the init segment and a part: %v", err)
	}
	var probe struct {
		Streams []struct {
			CodecName  string `json:"codec_name"`
			Profile    string
			SampleRate string `json:"sample_rate"`
			Channels   int
		}
	}
	if err := json.Unmarshal(out, &probe); err != nil || len(probe.Streams) != 1 ||
		probe.Streams[0].CodecName != "aac" || probe.Streams[0].Profile != "LC" || probe.Streams[0].SampleRate != "48000" || probe.Streams[0].Channels != 1 {
		t.Fatalf("ffprobe: %s (%v), want one mono AAC-LC stream at 48 kHz", out, err)
	}

	// ffmpeg picks the AAC rendition (the second variant, its program 1)
	// from the URL the join gave.
	pcm, _ := ffmpegDecode(t, ctx, ffmpeg, "-live_start_index", "-1", "-i", adm.HLSURL, "-map", "0:p:1", "-t", "3")
	wantToneAtEnd(t, pcm, "the AAC rendition")
}
