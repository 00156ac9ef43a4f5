package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/tone"
)

// withoutRedirects returns a copy of hc that shows redirects instead of
// following them.
func withoutRedirects(hc *http.Client) *http.Client {
	c := *hc
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// get sends a GET and returns the response with its body read.
func get(t testing.TB, ctx context.Context, c *http.Client, u string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return resp, body
}

// runPlaylist follows an HLS entry URL (hls_url with its ticket) to the
// playlist of the program's run in Opus, and returns that URL.
func runPlaylist(t testing.TB, ctx context.Context, entry string) string {
	t.Helper()
	return runPlaylistWith(t, ctx, http.DefaultClient, entry)
}

// runPlaylistWith is runPlaylist through hc.
func runPlaylistWith(t testing.TB, ctx context.Context, hc *http.Client, entry string) string {
	t.Helper()
	return renditionPlaylist(t, ctx, hc, entry, "opus")
}

// renditionPlaylist reads the multivariant playlist at an HLS entry URL
// and returns the URL of its rendition in codecs, with the ticket.
func renditionPlaylist(t testing.TB, ctx context.Context, hc *http.Client, entry, codecs string) string {
	t.Helper()
	resp, body := get(t, ctx, withoutRedirects(hc), entry)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET %s: %d, Cache-Control %q: %s; want the listener's own multivariant playlist", entry, resp.StatusCode, resp.Header.Get("Cache-Control"), body)
	}
	lines := strings.Split(string(body), "\n")
	for i, line := range lines[:len(lines)-1] {
		if strings.HasPrefix(line, "#EXT-X-STREAM-INF:") && strings.Contains(line, `CODECS="`+codecs+`"`) {
			return resolve(t, entry, lines[i+1])
		}
	}
	t.Fatalf("GET %s: no %s rendition in\n%s", entry, codecs, body)
	return ""
}

// resolve returns the URL of a playlist's URI: relative to the
// playlist, without its query.
func resolve(t testing.TB, playlist, uri string) string {
	t.Helper()
	u, err := url.Parse(playlist)
	if err == nil {
		u, err = u.Parse(uri)
	}
	if err != nil {
		t.Fatal(err)
	}
	return u.String()
}

// mediaNames lists the URIs of a playlist: the init segment's and those of
// its complete segments (part -1) and parts, in order.
func mediaNames(playlist string) (init string, segments, parts []string) {
	for line := range strings.SplitSeq(playlist, "\n") {
		if _, rest, ok := strings.Cut(line, `URI="`); ok {
			uri, _, _ := strings.Cut(rest, `"`)
			switch {
			case strings.HasPrefix(line, "#EXT-X-MAP:"):
				init = uri
			case strings.HasPrefix(line, "#EXT-X-PART:"):
				parts = append(parts, uri)
			}
		} else if line != "" && !strings.HasPrefix(line, "#") {
			segments = append(segments, line)
		}
	}
	return init, segments, parts
}

// TestFFmpegHearsTheSpeakerThroughTheHLSPlaylist: a listener's hls_url
// (with its ticket) plays in ffmpeg and carries the speaker's tone; the
// playlist is gated and the media is not; a space that ends ends its
// playlist.
func TestFFmpegHearsTheSpeakerThroughTheHLSPlaylist(t *testing.T) {
	t.Parallel()
	ffmpeg := needTool(t, "ffmpeg")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	sp := createSpace(t, ctx, m.URL())
	c := client.New(m.URL())
	if want := m.URL() + "/spaces/" + sp.ID + "/hls/index.m3u8"; sp.HLSURL != want {
		t.Errorf("hls_url %q, want %q", sp.HLSURL, want)
	}
	spk := dialSpeaker(t, ctx, c, sp.ID, sp.SpeakerToken)
	defer spk.playUntilStopped(t, ctx, 440)()
	adm, err := c.Join(ctx, sp.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(adm.HLSURL, sp.HLSURL+"?ticket=") {
		t.Fatalf("the join's hls_url %q, want %s with the ticket", adm.HLSURL, sp.HLSURL)
	}

	// The playlist needs the ticket, at the entry and in the run; the
	// media it names does not.
	playlistURL := runPlaylist(t, ctx, adm.HLSURL)
	bare, _ := url.Parse(playlistURL)
	bare.RawQuery = ""
	for _, u := range []string{sp.HLSURL, bare.String(), bare.String() + "?ticket=made-up"} {
		if resp, _ := get(t, ctx, http.DefaultClient, u); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s: %d, want 401", u, resp.StatusCode)
		}
	}
	resp, body := get(t, ctx, http.DefaultClient, playlistURL+"&_HLS_msn=2")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the playlist with its ticket: %d %s", resp.StatusCode, body)
	}
	init, _, parts := mediaNames(string(body))
	if init == "" || len(parts) == 0 || strings.Contains(string(body), "ticket") {
		t.Fatalf("the playlist names no init or part, or names the ticket:\n%s", body)
	}
	for _, name := range []string{init, parts[len(parts)-1]} {
		resp, media := get(t, ctx, http.DefaultClient, resolve(t, bare.String(), name))
		if resp.StatusCode != http.StatusOK || len(media) == 0 || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
			t.Errorf("%s without a ticket: %d, %d bytes, Cache-Control %q; want 200, immutable", name, resp.StatusCode, len(media), resp.Header.Get("Cache-Control"))
		}
	}

	// ffmpeg plays the live edge from the URL the join gave.
	pcm, _ := ffmpegDecode(t, ctx, ffmpeg, "-live_start_index", "-1", "-i", adm.HLSURL, "-t", "3")
	wantToneAtEnd(t, pcm, "the live edge")

	// The space ends: its playlist says so, to the ticket holders still
	// playing, though the room is gone.
	if _, err := c.End(ctx, sp.ID, sp.HostToken); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		resp, body := get(t, ctx, http.DefaultClient, playlistURL)
		return resp.StatusCode == http.StatusOK && strings.HasSuffix(string(body), "#EXT-X-ENDLIST\n")
	})
}

// TestAnEdgeServesTheOriginsHLSMediaUnderTheSameNames: an edge fed the
// program builds the same run, names and bytes as the origin, so one
// cache in front of both keeps one copy.
func TestAnEdgeServesTheOriginsHLSMediaUnderTheSameNames(t *testing.T) {
	t.Parallel()
	ctx, origin, _, shared, sp := spaceOnFleet(t, 1, 60*time.Second)
	adm, err := client.New(origin.URL()).Join(ctx, sp.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	atOrigin := runPlaylist(t, ctx, adm.HLSURL)
	atEdge := runPlaylist(t, ctx, shared+strings.TrimPrefix(adm.HLSURL, origin.URL()))
	if strings.TrimPrefix(atOrigin, origin.URL()) != strings.TrimPrefix(atEdge, shared) {
		t.Fatalf("the run's playlist is %s at the origin, %s at the edge", atOrigin, atEdge)
	}
	// Wait for a segment both list complete (each started at the first
	// 2 s boundary its ring saw).
	var inits [2]string
	var common []string
	waitUpTo(t, 30*time.Second, func() bool {
		var segs [2][]string
		for i, u := range []string{atOrigin, atEdge} {
			_, body := get(t, ctx, http.DefaultClient, u)
			inits[i], segs[i], _ = mediaNames(string(body))
		}
		common = slices.DeleteFunc(segs[0], func(s string) bool { return !slices.Contains(segs[1], s) })
		return len(common) > 0
	})
	if inits[0] != inits[1] {
		t.Errorf("init %s at the origin, %s at the edge", inits[0], inits[1])
	}
	for _, name := range []string{inits[0], common[len(common)-1]} {
		_, fromOrigin := get(t, ctx, http.DefaultClient, resolve(t, atOrigin, name))
		_, fromEdge := get(t, ctx, http.DefaultClient, resolve(t, atEdge, name))
		if len(fromOrigin) == 0 || !bytes.Equal(fromOrigin, fromEdge) {
			t.Errorf("%s: %d bytes at the origin, %d at the edge, not the same", name, len(fromOrigin), len(fromEdge))
		}
	}
}

// needTool returns the path of the program name, or skips the test when
// it is not installed.
func needTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed: the README's test command installs it", name)
	}
	return path
}

// ffmpegDecode runs ffmpeg with input, its input options and URL, and
// returns what it plays as 48 kHz mono PCM with what it wrote to stderr;
// an ffmpeg that fails fails the test.
func ffmpegDecode(t *testing.T, ctx context.Context, ffmpeg string, input ...string) ([]int16, []byte) {
	t.Helper()
	args := append([]string{"-nostdin", "-v", "error"}, input...)
	cmd := exec.CommandContext(ctx, ffmpeg, append(args, "-f", "s16le", "-ac", "1", "-ar", "48000", "-")...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("ffmpeg %s: %v\n%s", strings.Join(input, " "), err, stderr.Bytes())
	}
	pcm := make([]int16, len(raw)/2)
	if _, err := binary.Decode(raw, binary.LittleEndian, pcm); err != nil {
		t.Fatal(err)
	}
	return pcm, stderr.Bytes()
}

// wantToneAtEnd fails unless pcm, 3 s that ffmpeg played of what, holds
// 2 s or more and the speaker's 440 Hz tone in its last second.
func wantToneAtEnd(t *testing.T, pcm []int16, what string) {
	t.Helper()
	if len(pcm) < amphi.SampleRate*2 {
		t.Fatalf("ffmpeg decoded %d samples of %s, want 3 s", len(pcm), what)
	}
	if tail := pcm[len(pcm)-amphi.SampleRate:]; !tone.Present(tail, amphi.SampleRate, 440, 660, 1000) {
		t.Errorf("no 440 Hz tone in the last second ffmpeg played of %s (440 Hz %.4g, 660 Hz %.4g)",
			what, tone.Goertzel(tail, amphi.SampleRate, 440), tone.Goertzel(tail, amphi.SampleRate, 660))
	}
}
