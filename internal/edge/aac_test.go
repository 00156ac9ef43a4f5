package edge

import (
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"gopkg.in/hraban/opus.v2"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/aac"
	"github.com/amphi-audio/amphi/internal/hls"
)

// opusPages encodes seconds of a 440 Hz tone in light noise, as the mixer
// does (32 kbit/s, 20 ms packets), into pages of amphi.FramesPerChunk
// packets: the program a node's HLS feed reads. Noise keeps the encoders
// from coasting on a pure tone.
func opusPages(tb testing.TB, seconds int) [][][]byte {
	tb.Helper()
	enc, err := opus.NewEncoder(amphi.SampleRate, 1, opus.AppAudio)
	if err == nil {
		err = enc.SetBitrate(32000)
	}
	if err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	pcm := make([]int16, amphi.FrameSamples)
	buf := make([]byte, 1500)
	pages := make([][][]byte, seconds*amphi.SampleRate/amphi.ChunkSamples)
	var phase float64
	for i := range pages {
		for range amphi.FramesPerChunk {
			for j := range pcm {
				pcm[j] = int16(8000*math.Sin(phase) + 800*rng.NormFloat64())
				phase += 2 * math.Pi * 440 / amphi.SampleRate
			}
			n, err := enc.Encode(pcm, buf)
			if err != nil {
				tb.Fatal(err)
			}
			pages[i] = append(pages[i], append([]byte(nil), buf[:n]...))
		}
	}
	return pages
}

// playlistOf returns seg's playlist as a player gets it.
func playlistOf(t *testing.T, seg *hls.Segmenter) string {
	t.Helper()
	rec := httptest.NewRecorder()
	new(hls.Handler).Serve(rec, httptest.NewRequest(http.MethodGet, "/"+hls.PlaylistName, nil), seg, hls.PlaylistName)
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != http.StatusOK {
		t.Fatalf("playlist: %d %s", rec.Code, body)
	}
	return string(body)
}

func newTestAACRendition(tb testing.TB) *aacRendition {
	tb.Helper()
	a, err := newAACRendition(hls.DefaultConfig())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(a.close)
	return a
}

// TestAACRenditionFollowsTheProgramAcrossAGapToItsEnd: pages in order make
// the AAC playlist; a gap in the program restarts the encoder and marks a
// discontinuity, as the Opus rendition does; the end ends the playlist.
func TestAACRenditionFollowsTheProgramAcrossAGapToItsEnd(t *testing.T) {
	a := newTestAACRendition(t)
	pages := opusPages(t, 6)
	granule := int64(0)
	for i, p := range pages {
		if i == len(pages)/2 {
			granule += 10 * amphi.ChunkSamples // a second lost
		}
		granule += amphi.ChunkSamples
		if err := a.add(granule, p); err != nil {
			t.Fatalf("page %d: %v", i, err)
		}
	}
	if err := a.finish(); err != nil {
		t.Fatal(err)
	}
	playlist := playlistOf(t, a.seg)
	if n := strings.Count(playlist, "#EXT-X-DISCONTINUITY\n"); n != 1 {
		t.Errorf("%d discontinuities, want 1:\n%s", n, playlist)
	}
	if !strings.HasSuffix(playlist, "#EXT-X-ENDLIST\n") || !strings.Contains(playlist, "\n0.m4s\n") {
		t.Errorf("the playlist does not start at segment 0 and end:\n%s", playlist)
	}
}

// TestAACRenditionDatesTheAudioAsTheOpusOneDoes: the AAC playlist's
// PROGRAM-DATE-TIME is the Opus one's for the same audio, though the
// encoder holds its input back: its first segment starts with the
// priming frame, one frame of audio before the Opus one's.
func TestAACRenditionDatesTheAudioAsTheOpusOneDoes(t *testing.T) {
	cfg := hls.DefaultConfig()
	clock := time.Date(2026, 12, 4, 21, 0, 0, 0, time.UTC)
	cfg.Now = func() time.Time { return clock }
	opusSeg, err := hls.NewSegmenter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newAACRendition(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	granule := int64(0)
	for _, p := range opusPages(t, 3) {
		clock = clock.Add(amphi.ChunkDuration) // pages come in real time
		granule += amphi.ChunkSamples
		if err := opusSeg.Add(granule, p); err != nil {
			t.Fatal(err)
		}
		if err := a.add(granule, p); err != nil {
			t.Fatal(err)
		}
	}
	pdt := func(seg *hls.Segmenter) time.Time {
		_, rest, _ := strings.Cut(playlistOf(t, seg), "#EXT-X-PROGRAM-DATE-TIME:")
		at, err := time.Parse(time.RFC3339Nano, rest[:strings.Index(rest, "\n")])
		if err != nil {
			t.Fatal(err)
		}
		return at
	}
	want := pdt(opusSeg).Add(-time.Second * aac.FrameSize / amphi.SampleRate)
	if got := pdt(a.seg); got.Sub(want).Abs() > time.Millisecond {
		t.Errorf("the AAC rendition's first segment is dated %v, want %v (the Opus one's less a frame)", got, want)
	}
}

// BenchmarkAACRendition measures the AAC rendition's cost per space: one
// op is one second of program audio (ten pages) decoded from Opus,
// encoded in AAC-LC and cut into parts. ns/op is then ns per second of
// audio, and %core the share of one core a space keeps busy.
func BenchmarkAACRendition(b *testing.B) {
	pages := opusPages(b, 10)
	a := newTestAACRendition(b)
	perOp := amphi.SampleRate / amphi.ChunkSamples
	granule := int64(0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		for j := range perOp {
			granule += amphi.ChunkSamples
			if err := a.add(granule, pages[(i*perOp+j)%len(pages)]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e7, "%core")
}
