package hls

import (
	"strconv"
	"testing"

	"github.com/amphi-audio/amphi/internal/fmp4"
)

// aacFrame is the duration of an AAC-LC access unit.
const aacFrame = 1024

// TestAACPartsHoldWholeFramesOnTheTimelinesBoundaries feeds 1024-sample
// frames, which do not divide 200 ms, from a point off the 2 s grid: the
// stream starts at the first frame past a 2 s boundary, every part holds
// whole frames and ends with the frame that reaches a 200 ms boundary, so
// no part exceeds PART-TARGET (200 ms rounded up to whole frames) nor
// falls under 85 % of it but at a segment's end (RFC 8216bis §4.4.4.9),
// and segments start where the Opus rendition's do.
func TestAACPartsHoldWholeFramesOnTheTimelinesBoundaries(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Init = []byte("an AAC init segment")
	cfg.FrameSamples = aacFrame
	seg, err := NewSegmenter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	at := int64(3 * aacFrame * 100) // 6.4 s: not on a frame boundary of the 2 s grid
	for range 40 {                  // pages of five frames, about 4.3 s
		samples := make([]fmp4.Sample, 5)
		for i := range samples {
			samples[i] = fmp4.Sample{Data: []byte{byte(i)}, Duration: aacFrame}
		}
		at += 5 * aacFrame
		if err := seg.AddSamples(at, samples); err != nil {
			t.Fatal(err)
		}
	}
	const partTarget = 10 * aacFrame
	snap := seg.state.Load()
	if len(snap.segments) < 2 {
		t.Fatalf("%d segments, want at least 2", len(snap.segments))
	}
	for _, g := range snap.segments {
		if g.start < int64(g.msn)*segmentSamples || g.start >= int64(g.msn)*segmentSamples+aacFrame {
			t.Errorf("segment %d starts at %d, want the first frame from %d", g.msn, g.start, g.msn*segmentSamples)
		}
		end := g.start
		for i, p := range g.parts {
			end += int64(p.duration)
			last := i == len(g.parts)-1 && g.data != nil
			if p.duration%aacFrame != 0 || p.duration > partTarget || (!last && p.duration < partTarget*85/100) {
				t.Errorf("part %d.%d lasts %d samples", g.msn, i, p.duration)
			}
			if boundary := nextBoundary(end-aacFrame, partSamples); end < boundary || end >= boundary+aacFrame {
				t.Errorf("part %d.%d ends at %d, not with the frame that reaches a 200 ms boundary", g.msn, i, end)
			}
		}
	}
	tags := parsePlaylist(t, snap.playlist)
	want := strconv.FormatFloat(partTarget/48000.0, 'f', -1, 64)
	if got := named(tags, "#EXT-X-PART-INF"); len(got) != 1 || got[0].attrs["PART-TARGET"] != want {
		t.Errorf("PART-INF %v, want PART-TARGET=%s", got, want)
	}
}

func TestMultivariantListsTheRenditionsInOrder(t *testing.T) {
	got := string(AppendMultivariant(nil, []Variant{
		{URI: "0/index.m3u8?ticket=t", Bandwidth: 38000, Codecs: "opus"},
		{URI: "0-aac/index.m3u8?ticket=t", Bandwidth: 70000, Codecs: "mp4a.40.2"},
	}))
	want := "#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n" +
		"#EXT-X-STREAM-INF:BANDWIDTH=38000,CODECS=\"opus\"\n0/index.m3u8?ticket=t\n" +
		"#EXT-X-STREAM-INF:BANDWIDTH=70000,CODECS=\"mp4a.40.2\"\n0-aac/index.m3u8?ticket=t\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
