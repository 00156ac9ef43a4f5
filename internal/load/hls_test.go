package load

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// livePlaylist is a media playlist as amphi writes one mid-segment.
const livePlaylist = `#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6
#EXT-X-PART-INF:PART-TARGET=0.2
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-MAP:URI="init-1a2b.mp4"
#EXT-X-PROGRAM-DATE-TIME:2026-12-04T23:00:00.000Z
#EXT-X-PART:DURATION=0.2,URI="7.8.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.18,URI="7.9.m4s",INDEPENDENT=YES
#EXTINF:1.98,
7.m4s
#EXT-X-PART:DURATION=0.2,URI="8.0.m4s",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="8.1.m4s"
`

func TestHLSListenerParsesPartsAndTheHint(t *testing.T) {
	h := &hlsListener{partTarget: defaultPartTarget}
	h.body.WriteString(livePlaylist)
	if err := h.parse(); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		key partKey
		uri string
		d   time.Duration
	}{
		{partKey{7, 8}, "7.8.m4s", 200 * time.Millisecond},
		{partKey{7, 9}, "7.9.m4s", 180 * time.Millisecond},
		{partKey{8, 0}, "8.0.m4s", 200 * time.Millisecond},
	}
	if len(h.parts) != len(want) {
		t.Fatalf("%d parts, want %d: %+v", len(h.parts), len(want), h.parts)
	}
	for i, w := range want {
		p := h.parts[i]
		if uri := string(h.body.Bytes()[p.uri[0]:p.uri[1]]); p.key != w.key || uri != w.uri || p.duration != w.d {
			t.Errorf("part %d: %v %q %v, want %v %q %v", i, p.key, uri, p.duration, w.key, w.uri, w.d)
		}
	}
	if !h.hasHint || h.hint != (partKey{8, 1}) || h.ended || h.partTarget != 200*time.Millisecond {
		t.Errorf("hint %v (%v), ended %v, part target %v", h.hint, h.hasHint, h.ended, h.partTarget)
	}

	h.body.Reset()
	h.body.WriteString("#EXTM3U\n#EXT-X-PART:DURATION=0.2,URI=\"9.0.m4s\"\n#EXT-X-ENDLIST\n")
	if err := h.parse(); err != nil || !h.ended || h.hasHint || len(h.parts) != 1 {
		t.Errorf("ended playlist: %v, ended %v, hint %v, %d parts", err, h.ended, h.hasHint, len(h.parts))
	}
	for _, bad := range []string{"not a playlist", "#EXTM3U\n#EXT-X-PART:DURATION=0.2,URI=\"x.m4s\"\n"} {
		h.body.Reset()
		h.body.WriteString(bad)
		if err := h.parse(); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestHLSListenerFollowsTheFirstVariantAndResolvesMedia(t *testing.T) {
	multi := []byte("#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-STREAM-INF:BANDWIDTH=40000,CODECS=\"opus\"\nmk3/index.m3u8?ticket=T\n#EXT-X-STREAM-INF:BANDWIDTH=70000,CODECS=\"mp4a.40.2\"\nmk3-aac/index.m3u8?ticket=T\n")
	if v := firstVariant(multi); v != "mk3/index.m3u8?ticket=T" {
		t.Errorf("first variant %q", v)
	}
	if v := firstVariant([]byte(livePlaylist)); v != "" {
		t.Errorf("a media playlist's variant %q", v)
	}
	for _, c := range []struct{ playlist, uri, want string }{
		{"/spaces/s/hls/mk3/index.m3u8?ticket=T&_HLS_msn=1&_HLS_part=2", "1.2.m4s", "/spaces/s/hls/mk3/1.2.m4s"},
		{"/spaces/s/hls/mk3/index.m3u8", "/other/1.2.m4s", "/other/1.2.m4s"},
	} {
		if got := string(appendPath(nil, c.playlist, []byte(c.uri))); got != c.want {
			t.Errorf("appendPath(nil, %q, %q) = %q, want %q", c.playlist, c.uri, got, c.want)
		}
	}
	for in, want := range map[string]time.Duration{"0.2": 200 * time.Millisecond, "2": 2 * time.Second, "1.98": 1980 * time.Millisecond, "x": 0} {
		if got := seconds([]byte(in)); got != want {
			t.Errorf("seconds(%q) = %v, want %v", in, got, want)
		}
	}
}

// TestHLSCountsMergeFromWorkers: a worker's report, as JSON, adds its HLS
// counts to the run's.
func TestHLSCountsMergeFromWorkers(t *testing.T) {
	share := &Report{HLS: &HLSCounts{Parts: 50, Playlists: 40, Reloads: 38, Requests: 90}, ListenerSeconds: 10}
	b, err := json.Marshal(share)
	if err != nil || !bytes.Contains(b, []byte(`"hls":{"parts":50`)) {
		t.Fatalf("%s: %v", b, err)
	}
	var fromWorker Report
	if err := json.Unmarshal(b, &fromWorker); err != nil {
		t.Fatal(err)
	}
	var run Report
	run.Merge(&fromWorker)
	run.Merge(&fromWorker)
	if h := run.HLS; h == nil || h.Parts != 100 || h.Reloads != 76 || h.Requests != 180 || h.PartsPerListenerSecond != 5 || h.PlaylistsPerListenerSecond != 4 {
		t.Errorf("merged %+v", run.HLS)
	}
	if (&Report{}).HLS != nil {
		t.Error("an Ogg report has HLS counts")
	}
}
