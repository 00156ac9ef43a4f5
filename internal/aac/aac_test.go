//go:build !noaac

package aac

import (
	"bytes"
	"encoding/binary"
	"os/exec"
	"testing"

	"github.com/amphi-audio/amphi/internal/tone"
)

const rate = 48000

// adts prefixes an access unit with the 7-byte ADTS header of a mono
// AAC-LC stream at 48 kHz (ISO/IEC 14496-3 §1.A.2), so that ffmpeg can
// read the raw units as a file.
func adts(au []byte) []byte {
	n := len(au) + 7
	const profile, rateIndex, channels = 1, 3, 1 // AAC-LC is object type 2, written minus one
	h := []byte{
		0xff, 0xf1, // sync word, MPEG-4, no CRC
		profile<<6 | rateIndex<<2 | channels>>2,
		byte(channels&3)<<6 | byte(n>>11),
		byte(n >> 3),
		byte(n&7)<<5 | 0x1f,
		0xfc, // buffer fullness 0x7ff: VBR; one raw data block
	}
	return append(h, au...)
}

// TestFFmpegHearsTheEncodedTone encodes two seconds of a 440 Hz tone, in
// pieces that are not whole frames as the program's 20 ms are not, and
// has ffmpeg decode the access units.
func TestFFmpegHearsTheEncodedTone(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skip(err)
	}
	e, err := NewEncoder(rate, 1, DefaultBitrate)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// AAC-LC, 48 kHz, mono; what may follow says there is no SBR.
	if got := e.Config(); !bytes.HasPrefix(got, []byte{0x11, 0x88}) {
		t.Errorf("AudioSpecificConfig % x, want it to start 11 88", got)
	}
	if e.Delay() != FrameSize {
		t.Errorf("delay %d, want %d", e.Delay(), FrameSize)
	}
	const seconds, amplitude = 2, 0.5
	pcm, _ := tone.Sine(make([]int16, seconds*rate), 440, amplitude, rate, 0)
	var units [][]byte
	for in := pcm; len(in) > 0; in = in[min(960, len(in)):] {
		if units, err = e.Encode(units, in[:min(960, len(in))]); err != nil {
			t.Fatal(err)
		}
	}
	if units, err = e.Flush(units); err != nil {
		t.Fatal(err)
	}
	// The input, rounded up to whole frames, plus the priming frame.
	if want := (len(pcm)+FrameSize-1)/FrameSize + 1; len(units) != want {
		t.Errorf("%d access units, want %d", len(units), want)
	}
	var stream []byte
	for _, u := range units {
		stream = append(stream, adts(u)...)
	}
	cmd := exec.CommandContext(t.Context(), ffmpeg, "-nostdin", "-v", "error", "-f", "aac", "-i", "-", "-f", "s16le", "-ac", "1", "-")
	cmd.Stdin = bytes.NewReader(stream)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, stderr.Bytes())
	}
	out := make([]int16, len(raw)/2)
	if _, err := binary.Decode(raw, binary.LittleEndian, out); err != nil {
		t.Fatal(err)
	}
	if len(out) < len(pcm) {
		t.Fatalf("ffmpeg decoded %d samples, want at least %d", len(out), len(pcm))
	}
	mid := out[rate/2 : rate*3/2]
	if !tone.Present(mid, rate, 440, 660, 880) {
		t.Errorf("no 440 Hz tone in the decoded audio (440 Hz %.4g, 660 Hz %.4g)", tone.Goertzel(mid, rate, 440), tone.Goertzel(mid, rate, 660))
	}
	// A sine of amplitude A has an RMS of A/√2: 64 kbit/s keeps it within
	// a decibel.
	if got, want := tone.Level(mid), amplitude/1.4142; got < want*0.89 || got > want*1.12 {
		t.Errorf("level %.3f, want about %.3f", got, want)
	}
}

func TestEncoderRefusesUseAfterClose(t *testing.T) {
	e, err := NewEncoder(rate, 1, DefaultBitrate)
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	e.Close()
	if _, err := e.Encode(nil, make([]int16, FrameSize)); err != ErrClosed {
		t.Errorf("Encode after Close: %v, want ErrClosed", err)
	}
}
