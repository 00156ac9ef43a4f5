package program

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"gopkg.in/hraban/opus.v2"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/ogg"
	"github.com/amphi-audio/amphi/internal/tone"
)

const testSerial = 0x5eed1234

// fakeFrames returns n distinct small packets. They are not Opus: tests of
// the page layout only need bytes that can be told apart.
func fakeFrames(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte{byte(i), byte(i >> 8), 0xab, byte(i * 7)}
	}
	return out
}

// opusFrames encodes n 20 ms frames of a 440 Hz tone with libopus, as the
// mixer does.
func opusFrames(t testing.TB, n int) [][]byte {
	t.Helper()
	enc, err := opus.NewEncoder(amphi.SampleRate, 1, opus.AppAudio)
	if err != nil {
		t.Fatal(err)
	}
	pcm := make([]int16, amphi.FrameSamples)
	var phase float64
	buf := make([]byte, 1500)
	out := make([][]byte, n)
	for i := range out {
		pcm, phase = tone.Sine(pcm, 440, 0.3, amphi.SampleRate, phase)
		m, err := enc.Encode(pcm, buf)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = append([]byte(nil), buf[:m]...)
	}
	return out
}

// pack runs frames through a packer and, if finish, Finish.
func pack(t testing.TB, frames [][]byte, finish bool) []*Chunk {
	t.Helper()
	p := NewPacker(testSerial)
	var chunks []*Chunk
	for _, f := range frames {
		c, err := p.Add(f)
		if err != nil {
			t.Fatal(err)
		}
		if c != nil {
			chunks = append(chunks, c)
		}
	}
	if finish {
		c, err := p.Finish()
		if err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, c)
	}
	return chunks
}

// readPage parses one page with the ogg package's reader, which checks the
// capture pattern, version and CRC, and that nothing follows it.
func readPage(t *testing.T, b []byte) *ogg.Page {
	t.Helper()
	r := ogg.NewReader(bytes.NewReader(b))
	p, err := r.ReadPage()
	if err != nil {
		t.Fatalf("page does not read back: %v", err)
	}
	if _, err := r.ReadPage(); err != io.EOF {
		t.Fatalf("bytes after the page: %v", err)
	}
	return p
}

func TestPackerMakesOneChunkPerFiveFrames(t *testing.T) {
	frames := fakeFrames(23)
	chunks := pack(t, frames, false)
	if len(chunks) != 4 {
		t.Fatalf("%d chunks from 23 frames, want 4", len(chunks))
	}
	for i, c := range chunks {
		if c.Seq != uint64(i) || c.End {
			t.Fatalf("chunk %d: Seq %d End %v", i, c.Seq, c.End)
		}
		p := readPage(t, c.Page)
		if p.Seq != uint32(i+2) {
			t.Errorf("chunk %d: page seq %d, want %d", i, p.Seq, i+2)
		}
		if want := int64(i+1) * 5 * 960; p.Granule != want {
			t.Errorf("chunk %d: granule %d, want %d", i, p.Granule, want)
		}
		if p.Serial != testSerial || p.Flags != 0 {
			t.Errorf("chunk %d: serial %#x flags %#x", i, p.Serial, p.Flags)
		}
		if len(p.Packets) != amphi.FramesPerChunk {
			t.Fatalf("chunk %d: %d packets", i, len(p.Packets))
		}
		for j, pkt := range p.Packets {
			if !bytes.Equal(pkt, frames[i*5+j]) {
				t.Errorf("chunk %d packet %d = %x, want %x", i, j, pkt, frames[i*5+j])
			}
		}
		if want := time.Duration(i+1) * 100 * time.Millisecond; c.Duration() != want {
			t.Errorf("chunk %d: Duration %v, want %v", i, c.Duration(), want)
		}
	}
}

func TestPackerFinishMakesEOSPage(t *testing.T) {
	tests := []struct {
		name        string
		frames      int
		wantPackets int
		wantGranule int64
		wantSeq     uint64
	}{
		{"with pending frames", 12, 2, 12 * 960, 2},
		{"empty page with the last granule", 10, 0, 10 * 960, 2},
		{"before any frame", 0, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chunks := pack(t, fakeFrames(tt.frames), true)
			last := chunks[len(chunks)-1]
			if !last.End || last.Seq != tt.wantSeq {
				t.Fatalf("last chunk End %v Seq %d, want true %d", last.End, last.Seq, tt.wantSeq)
			}
			p := readPage(t, last.Page)
			if p.Flags&ogg.FlagEOS == 0 {
				t.Errorf("flags %#x lack EOS", p.Flags)
			}
			if len(p.Packets) != tt.wantPackets {
				t.Errorf("%d packets, want %d", len(p.Packets), tt.wantPackets)
			}
			if p.Granule != tt.wantGranule {
				t.Errorf("granule %d, want %d", p.Granule, tt.wantGranule)
			}
			if p.Seq != uint32(tt.wantSeq+2) {
				t.Errorf("page seq %d, want %d", p.Seq, tt.wantSeq+2)
			}
		})
	}
}

func TestPackerRefusesFramesAfterFinish(t *testing.T) {
	p := NewPacker(testSerial)
	if _, err := p.Finish(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Add([]byte{1}); err == nil {
		t.Error("Add after Finish succeeded")
	}
	if _, err := p.Finish(); err == nil {
		t.Error("second Finish succeeded")
	}
}

func TestPackerReportsOversizedChunk(t *testing.T) {
	// Five packets of 14 KB need more than 255 lacing values.
	p := NewPacker(testSerial)
	var err error
	for range amphi.FramesPerChunk {
		_, err = p.Add(make([]byte, 14000))
	}
	if !errors.Is(err, ogg.ErrTooManySegments) {
		t.Fatalf("err = %v, want ErrTooManySegments", err)
	}
}

func TestHeadersAreOpusHeadAndTags(t *testing.T) {
	h := Headers(testSerial)
	r := ogg.NewReader(bytes.NewReader(h))
	head, err := r.ReadPage()
	if err != nil {
		t.Fatal(err)
	}
	if head.Flags != ogg.FlagBOS || head.Seq != 0 || head.Granule != 0 || head.Serial != testSerial || len(head.Packets) != 1 {
		t.Errorf("head page: flags %#x seq %d granule %d serial %#x packets %d", head.Flags, head.Seq, head.Granule, head.Serial, len(head.Packets))
	}
	oh, err := ogg.ParseOpusHead(head.Packets[0])
	if err != nil {
		t.Fatal(err)
	}
	if oh.Channels != 1 || oh.PreSkip != PreSkip || oh.InputRate != amphi.SampleRate {
		t.Errorf("OpusHead %+v", oh)
	}
	tags, err := r.ReadPage()
	if err != nil {
		t.Fatal(err)
	}
	if tags.Seq != 1 || tags.Flags != 0 || len(tags.Packets) != 1 || !bytes.HasPrefix(tags.Packets[0], []byte("OpusTags")) {
		t.Errorf("tags page: seq %d flags %#x packets %q", tags.Seq, tags.Flags, tags.Packets)
	}
	if _, err := r.ReadPage(); err != io.EOF {
		t.Errorf("after the headers: %v, want EOF", err)
	}
	if !bytes.Equal(h, Headers(testSerial)) {
		t.Error("Headers is not deterministic: edges would build different streams")
	}
}

func TestWireRoundTrips(t *testing.T) {
	chunks := pack(t, fakeFrames(12), true)
	for _, c := range chunks {
		msg := c.AppendWire([]byte("prefix"))[len("prefix"):]
		got, err := ParseWire(msg)
		if err != nil {
			t.Fatalf("chunk %d: %v", c.Seq, err)
		}
		if got.Seq != c.Seq || got.End != c.End || !bytes.Equal(got.Page, c.Page) {
			t.Errorf("chunk %d: round trip gave Seq %d End %v", c.Seq, got.Seq, got.End)
		}
		clear(msg) // the parsed chunk must not share msg
		if !bytes.Equal(got.Page, c.Page) {
			t.Errorf("chunk %d: parsed page shares the message buffer", c.Seq)
		}
	}
	big := &Chunk{Seq: 1<<40 + 3, Page: chunks[0].Page}
	if got, err := ParseWire(big.AppendWire(nil)); err != nil || got.Seq != big.Seq {
		t.Errorf("large seq: %v, %v", got, err)
	}
}

func TestParseWireRefusesBadInput(t *testing.T) {
	good := pack(t, fakeFrames(5), false)[0].AppendWire(nil)
	wrongVersion := append([]byte(nil), good...)
	wrongVersion[0] = 2
	notOgg := append([]byte(nil), good...)
	copy(notOgg[wireHeader:], "RIFF")
	tests := []struct {
		name string
		msg  []byte
	}{
		{"nil", nil},
		{"header only", good[:wireHeader]},
		{"short page", good[:wireHeader+26]},
		{"wrong version", wrongVersion},
		{"not an Ogg page", notOgg},
		{"garbage", bytes.Repeat([]byte{0xff}, 64)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := ParseWire(tt.msg); err == nil {
				t.Errorf("ParseWire accepted it: %+v", c)
			}
		})
	}
}

func FuzzParseWire(f *testing.F) {
	for _, c := range pack(f, fakeFrames(12), true) {
		f.Add(c.AppendWire(nil))
	}
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'O', 'g', 'g', 'S'})
	f.Fuzz(func(t *testing.T, msg []byte) {
		c, err := ParseWire(msg)
		if err != nil {
			return
		}
		// What parses re-encodes to the same bytes, up to unknown flag bits.
		again := c.AppendWire(nil)
		if len(again) != len(msg) || !bytes.Equal(again[2:], msg[2:]) || again[0] != msg[0] {
			t.Fatalf("re-encoded %x, parsed from %x", again, msg)
		}
		if c.End != (msg[1]&wireEnd != 0) {
			t.Fatalf("End %v from flags %#x", c.End, msg[1])
		}
	})
}

func TestStreamIsAcceptedByFFprobe(t *testing.T) {
	ffprobe, err := exec.LookPath("ffprobe")
	if err != nil {
		t.Skip("ffprobe not on PATH")
	}
	stream := Headers(testSerial)
	for _, c := range pack(t, opusFrames(t, 52), true) {
		stream = append(stream, c.Page...)
	}
	n, granule, pages, err := ogg.ValidPrefix(bytes.NewReader(stream))
	if err != nil || n != int64(len(stream)) || granule != 52*960 || pages != 2+11 {
		t.Fatalf("ValidPrefix = %d, %d, %d, %v for %d bytes", n, granule, pages, err, len(stream))
	}
	path := filepath.Join(t.TempDir(), "program.opus")
	if err := os.WriteFile(path, stream, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), ffprobe, "-v", "error",
		"-show_entries", "stream=codec_name,channels,sample_rate:format=duration", "-of", "default=nw=1", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v\n%s", err, out)
	}
	for _, want := range []string{"codec_name=opus", "channels=1", "sample_rate=48000", "duration=1.0"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("ffprobe output lacks %q:\n%s", want, out)
		}
	}
}

func TestWireListRoundTripsAndRefusesTruncation(t *testing.T) {
	chunks := pack(t, fakeFrames(3*amphi.FramesPerChunk), true)
	b := AppendWireList(nil, chunks)
	got, err := ParseWireList(b)
	if err != nil || len(got) != len(chunks) || !got[len(got)-1].End || !bytes.Equal(got[1].Page, chunks[1].Page) {
		t.Fatalf("round trip: %d chunks of %d, err %v", len(got), len(chunks), err)
	}
	for _, n := range []int{1, 3, 5, len(b) - 1} {
		if _, err := ParseWireList(b[:n]); err == nil {
			t.Errorf("%d of %d bytes parsed", n, len(b))
		}
	}
}
