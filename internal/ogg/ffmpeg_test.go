package ogg

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// lookTool returns the path of an external tool or skips the test.
func lookTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not on PATH", name)
	}
	return path
}

// opusPacketSamples returns the duration of an Opus packet in 48 kHz
// samples, from its TOC byte and frame count (RFC 6716 §3.1).
func opusPacketSamples(t *testing.T, pkt []byte) int {
	t.Helper()
	if len(pkt) == 0 {
		t.Fatal("empty Opus packet")
	}
	config := pkt[0] >> 3
	var frame int
	switch {
	case config < 12: // SILK: 10, 20, 40, 60 ms
		frame = []int{480, 960, 1920, 2880}[config%4]
	case config < 16: // hybrid: 10, 20 ms
		frame = []int{480, 960}[config%2]
	default: // CELT: 2.5, 5, 10, 20 ms
		frame = []int{120, 240, 480, 960}[config%4]
	}
	switch pkt[0] & 3 {
	case 0:
		return frame
	case 1, 2:
		return 2 * frame
	default:
		if len(pkt) < 2 {
			t.Fatal("code 3 Opus packet without frame count")
		}
		return int(pkt[1]&0x3f) * frame
	}
}

func TestReaderReadsFFmpegOggOpus(t *testing.T) {
	ffmpeg := lookTool(t, "ffmpeg")
	path := filepath.Join(t.TempDir(), "sine.opus")
	cmd := exec.CommandContext(t.Context(), ffmpeg, "-nostdin", "-v", "error",
		"-f", "lavfi", "-i", "sine=f=440:d=1", "-c:a", "libopus", "-f", "ogg", path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	// Every page passes the checksum, and AppendPage writes it back to the
	// same bytes, CRC included.
	r := NewReader(bytes.NewReader(data))
	var rewritten []byte
	pages := 0
	for {
		p, err := r.ReadPage()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		if rewritten, err = AppendPage(rewritten, p); err != nil {
			t.Fatal(err)
		}
		pages++
	}
	if !bytes.Equal(rewritten, data) {
		t.Fatal("pages re-encoded by AppendPage differ from ffmpeg's")
	}
	n, _, vpages, err := ValidPrefix(bytes.NewReader(data))
	if err != nil || n != int64(len(data)) || vpages != pages {
		t.Fatalf("ValidPrefix = %d, %d pages, %v; want %d, %d pages", n, vpages, err, len(data), pages)
	}

	r = NewReader(bytes.NewReader(data))
	pkt, _, err := r.ReadPacket()
	if err != nil {
		t.Fatal(err)
	}
	head, err := ParseOpusHead(pkt)
	if err != nil {
		t.Fatal(err)
	}
	if head.Channels != 1 {
		t.Fatalf("channels = %d, want 1", head.Channels)
	}
	if pkt, _, err = r.ReadPacket(); err != nil || !bytes.HasPrefix(pkt, []byte("OpusTags")) {
		t.Fatalf("second packet %q, %v; want OpusTags", pkt, err)
	}
	samples, last := 0, int64(0)
	for {
		pkt, granule, err := r.ReadPacket()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		samples += opusPacketSamples(t, pkt)
		last = granule
	}
	// The last granule may end the stream before the last packet does
	// (end trimming), but never after it.
	if got := last - int64(head.PreSkip); got < 48000 || got > int64(samples) {
		t.Fatalf("last granule minus pre-skip = %d, want 48000..%d", got, samples)
	}
}

func TestFFprobeAcceptsWhatAppendPageWrote(t *testing.T) {
	ffprobe := lookTool(t, "ffprobe")
	const (
		serial  = 0xa3b1
		preSkip = 312
		frame   = 960 // 20 ms at 48 kHz
		perPage = 5   // 100 ms of audio per page
		packets = 50  // 1 s
	)
	var b []byte
	var err error
	b, err = AppendPage(b, &Page{Flags: FlagBOS, Serial: serial, Seq: 0,
		Packets: [][]byte{AppendOpusHead(nil, 1, preSkip, 48000)}})
	if err != nil {
		t.Fatal(err)
	}
	b, err = AppendPage(b, &Page{Serial: serial, Seq: 1,
		Packets: [][]byte{AppendOpusTags(nil, "amphi test", "TITLE=silence")}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < packets; i += perPage {
		p := &Page{Serial: serial, Seq: uint32(2 + i/perPage), Granule: int64(preSkip + (i+perPage)*frame)}
		for range perPage {
			p.Packets = append(p.Packets, silence)
		}
		if i+perPage == packets {
			p.Flags = FlagEOS
		}
		if b, err = AppendPage(b, p); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "silence.opus")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.CommandContext(t.Context(), ffprobe, "-v", "error",
		"-show_entries", "format=duration", "-of", "default=noprint_wrappers=1:nokey=1", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("ffprobe: %v\n%s", err, stderr.Bytes())
	}
	d, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		t.Fatalf("ffprobe duration %q: %v", out, err)
	}
	// ffprobe reports 1 s, or 1 s plus the pre-skip (6.5 ms) depending on
	// its version.
	if d < 0.99 || d > 1.02 {
		t.Fatalf("ffprobe duration = %v s, want about 1 s", d)
	}

	// ffmpeg decodes every packet, and trims the pre-skip.
	ffmpeg := lookTool(t, "ffmpeg")
	cmd = exec.CommandContext(t.Context(), ffmpeg, "-nostdin", "-v", "error", "-i", path, "-f", "s16le", "-")
	stderr.Reset()
	cmd.Stderr = &stderr
	pcm, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("ffmpeg decode: %v\n%s", err, stderr.Bytes())
	}
	if got, want := len(pcm)/2, packets*frame-preSkip; got != want {
		t.Fatalf("decoded %d samples, want %d", got, want)
	}
}
