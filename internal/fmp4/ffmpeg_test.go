package fmp4

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/amphi-audio/amphi/internal/ogg"
	"github.com/amphi-audio/amphi/internal/opuspkt"
	"github.com/amphi-audio/amphi/internal/tone"
)

// toneSamples has ffmpeg's libopus encode seconds of a mono sine at freq
// into Ogg Opus, and returns its packets as an Ogg reader hands them out,
// with their durations, and the stream's pre-skip: the input the live
// program offers.
func toneSamples(t *testing.T, ffmpeg string, freq, seconds int) ([]Sample, uint16) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tone.opus")
	cmd := exec.CommandContext(t.Context(), ffmpeg, "-nostdin", "-v", "error",
		"-f", "lavfi", "-i", "sine=f="+strconv.Itoa(freq)+":d="+strconv.Itoa(seconds),
		"-ac", "1", "-c:a", "libopus", "-b:a", "32k", "-frame_duration", "20", "-f", "ogg", path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg encode: %v\n%s", err, out)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := ogg.NewReader(f)
	var head ogg.OpusHead
	var samples []Sample
	for i := 0; ; i++ {
		pkt, _, err := r.ReadPacket()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch i {
		case 0:
			if head, err = ogg.ParseOpusHead(pkt); err != nil {
				t.Fatal(err)
			}
		case 1: // OpusTags
		default:
			n, ok := opuspkt.Samples(pkt)
			if !ok {
				t.Fatalf("packet %d is not valid Opus", i)
			}
			samples = append(samples, Sample{Data: pkt, Duration: uint32(n)})
		}
	}
	return samples, head.PreSkip
}

// TestFFmpegPlaysInitAndFragmentsOfARealTone writes the init segment and
// 200 ms fragments of a 440 Hz tone to one file, as an HLS player joins
// them, and checks what ffprobe and ffmpeg make of it.
func TestFFmpegPlaysInitAndFragmentsOfARealTone(t *testing.T) {
	ffmpeg, ffprobe := tools(t)
	const seconds, perFragment = 3, 10
	samples, preSkip := toneSamples(t, ffmpeg, 440, seconds)
	file := mustInit(t, 1, preSkip)
	var at uint64
	for i := 0; i < len(samples); i += perFragment {
		part := samples[i:min(i+perFragment, len(samples))]
		file = AppendFragment(file, uint32(1+i/perFragment), at, part)
		for _, s := range part {
			at += uint64(s.Duration)
		}
	}
	probe, pcm := play(t, ffmpeg, ffprobe, file)
	if len(probe.Streams) != 1 || probe.Streams[0].CodecName != "opus" || probe.Streams[0].SampleRate != "48000" || probe.Streams[0].Channels != 1 {
		t.Fatalf("ffprobe streams %+v, want one mono opus stream at 48000 Hz", probe.Streams)
	}
	// The packets span the tone plus the encoder's pre-skip and padding of
	// the last frame: about 3 s, whichever way ffprobe counts the edit.
	if d, err := strconv.ParseFloat(probe.Format.Duration, 64); err != nil || d < seconds-0.05 || d > seconds+0.1 {
		t.Fatalf("ffprobe duration %q, want about %d s", probe.Format.Duration, seconds)
	}
	t.Logf("ffprobe: %s s; ffmpeg decoded %d samples from %d in the fragments (pre-skip %d)", probe.Format.Duration, len(pcm), at, preSkip)
	if got := float64(len(pcm)) / 48000; got < seconds-0.05 || got > seconds+0.1 {
		t.Errorf("decoded %.3f s, want about %d s", got, seconds)
	}
	if !tone.Present(pcm, 48000, 440, 660, 880) {
		t.Errorf("the 440 Hz tone is not in what ffmpeg decoded (power %.4g, 660 Hz %.4g)",
			tone.Goertzel(pcm, 48000, 440), tone.Goertzel(pcm, 48000, 660))
	}
}

// probe is what ffprobe says of a file.
type probe struct {
	Streams []struct {
		CodecName  string `json:"codec_name"`
		Profile    string
		SampleRate string `json:"sample_rate"`
		Channels   int
	}
	Format struct{ Duration string }
}

// play writes file, asks ffprobe about it and has ffmpeg decode it to mono
// 48 kHz; either complaining fails the test.
func play(t *testing.T, ffmpeg, ffprobe string, file []byte) (probe, []int16) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tone.mp4")
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), ffprobe, "-v", "error", "-of", "json",
		"-show_entries", "stream=codec_name,profile,sample_rate,channels:format=duration", path).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	var p probe
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("ffprobe output %s: %v", out, err)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), ffmpeg, "-nostdin", "-v", "error", "-i", path, "-f", "s16le", "-ac", "1", "-ar", "48000", "-")
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("ffmpeg decode: %v\n%s", err, stderr.Bytes())
	}
	pcm := make([]int16, len(raw)/2)
	if _, err := binary.Decode(raw, binary.LittleEndian, pcm); err != nil {
		t.Fatal(err)
	}
	return p, pcm
}

// aacToneSamples has ffmpeg's AAC encoder encode seconds of a mono sine
// at freq into ADTS, and returns its access units without their headers.
func aacToneSamples(t *testing.T, ffmpeg string, freq, seconds int) []Sample {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), ffmpeg, "-nostdin", "-v", "error",
		"-f", "lavfi", "-i", "sine=f="+strconv.Itoa(freq)+":d="+strconv.Itoa(seconds),
		"-ac", "1", "-ar", "48000", "-c:a", "aac", "-b:a", "64k", "-f", "adts", "-")
	adts, err := cmd.Output()
	if err != nil {
		t.Fatalf("ffmpeg encode: %v", err)
	}
	var samples []Sample
	for len(adts) > 0 {
		// ADTS (ISO/IEC 14496-3 §1.A.2): 7 header bytes without CRC; the
		// frame's length, header included, is 13 bits from bit 30.
		if len(adts) < 7 || adts[0] != 0xff || adts[1]&0xf6 != 0xf0 {
			t.Fatalf("not an ADTS header without CRC: % x", adts[:min(7, len(adts))])
		}
		n := int(adts[3]&3)<<11 | int(adts[4])<<3 | int(adts[5]>>5)
		samples = append(samples, Sample{Data: adts[7:n], Duration: 1024})
		adts = adts[n:]
	}
	return samples
}

// TestFFmpegPlaysAnAACTrack writes the init segment and fragments of an
// AAC tone, 9 access units (192 ms) each, and checks that ffprobe sees
// AAC-LC and that ffmpeg hears the tone with the priming skipped.
func TestFFmpegPlaysAnAACTrack(t *testing.T) {
	ffmpeg, ffprobe := tools(t)
	const seconds, perFragment = 3, 9
	samples := aacToneSamples(t, ffmpeg, 440, seconds)
	file, err := AppendAACInit(nil, 1, 1024, 64000, aacConfig)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(samples); i += perFragment {
		file = AppendFragment(file, uint32(1+i/perFragment), uint64(i*1024), samples[i:min(i+perFragment, len(samples))])
	}
	probe, pcm := play(t, ffmpeg, ffprobe, file)
	if len(probe.Streams) != 1 || probe.Streams[0].CodecName != "aac" || probe.Streams[0].Profile != "LC" || probe.Streams[0].SampleRate != "48000" || probe.Streams[0].Channels != 1 {
		t.Fatalf("ffprobe streams %+v, want one mono AAC-LC stream at 48000 Hz", probe.Streams)
	}
	// The edit skips the priming frame, so what plays is the tone rounded
	// up to whole frames.
	if got := float64(len(pcm)) / 48000; got < seconds || got > seconds+0.03 {
		t.Errorf("decoded %.3f s, want %d s and at most a frame", got, seconds)
	}
	if !tone.Present(pcm, 48000, 440, 660, 880) {
		t.Errorf("the 440 Hz tone is not in what ffmpeg decoded (power %.4g, 660 Hz %.4g)",
			tone.Goertzel(pcm, 48000, 440), tone.Goertzel(pcm, 48000, 660))
	}
}

// tools returns the paths of ffmpeg and ffprobe, or skips the test.
func tools(t *testing.T) (ffmpeg, ffprobe string) {
	t.Helper()
	ffmpeg, errMpeg := exec.LookPath("ffmpeg")
	ffprobe, errProbe := exec.LookPath("ffprobe")
	if err := errors.Join(errMpeg, errProbe); err != nil {
		t.Skip(err)
	}
	return ffmpeg, ffprobe
}
