package wav

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"os/exec"
	"slices"
	"testing"
)

// chunk returns a RIFF chunk with its id, size and data, padded to even.
func chunk(id string, data []byte) []byte {
	b := append([]byte(id), 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(data)))
	b = append(b, data...)
	if len(data)%2 == 1 {
		b = append(b, 0)
	}
	return b
}

// riff wraps chunks in a RIFF WAVE header.
func riff(chunks ...[]byte) []byte {
	body := slices.Concat(chunks...)
	b := []byte("RIFF\x00\x00\x00\x00WAVE")
	binary.LittleEndian.PutUint32(b[4:], uint32(4+len(body)))
	return append(b, body...)
}

// fmtChunk is a plain 16-byte fmt chunk.
func fmtChunk(code, channels uint16, rate uint32, bits uint16) []byte {
	b := binary.LittleEndian.AppendUint16(nil, code)
	b = binary.LittleEndian.AppendUint16(b, channels)
	b = binary.LittleEndian.AppendUint32(b, rate)
	align := channels * bits / 8
	b = binary.LittleEndian.AppendUint32(b, rate*uint32(align))
	b = binary.LittleEndian.AppendUint16(b, align)
	b = binary.LittleEndian.AppendUint16(b, bits)
	return chunk("fmt ", b)
}

// extensibleChunk is a 40-byte WAVE_FORMAT_EXTENSIBLE fmt chunk whose
// subformat is sub (1 for PCM, 3 for float).
func extensibleChunk(sub, channels uint16, rate uint32, bits, validBits uint16) []byte {
	plain := fmtChunk(formatExtensible, channels, rate, bits)[8:]
	b := slices.Clone(plain)
	b = binary.LittleEndian.AppendUint16(b, 22)
	b = binary.LittleEndian.AppendUint16(b, validBits)
	b = binary.LittleEndian.AppendUint32(b, 4) // front centre
	b = binary.LittleEndian.AppendUint16(b, sub)
	b = append(b, ksdataformatSubtypeBase[:]...)
	return chunk("fmt ", b)
}

func le32f(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func le64f(vs ...float64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	return b
}

func TestReadConvertsEachFormatTo16Bit(t *testing.T) {
	list := chunk("LIST", []byte("INFOISFT\x03\x00\x00\x00abc")) // odd size: padded
	tests := []struct {
		name     string
		file     []byte
		rate     int
		channels int
		want     []int16
	}{
		{"16-bit mono", riff(fmtChunk(1, 1, 48000, 16), chunk("data", []byte{0x01, 0x00, 0xff, 0xff, 0x00, 0x80, 0xff, 0x7f})),
			48000, 1, []int16{1, -1, -32768, 32767}},
		{"16-bit stereo", riff(fmtChunk(1, 2, 44100, 16), chunk("data", []byte{1, 0, 2, 0, 3, 0, 4, 0})),
			44100, 2, []int16{1, 2, 3, 4}},
		{"8-bit unsigned", riff(fmtChunk(1, 1, 8000, 8), chunk("data", []byte{128, 0, 255, 129})),
			8000, 1, []int16{0, -32768, 127 << 8, 256}},
		{"24-bit keeps the top 16 bits", riff(fmtChunk(1, 1, 48000, 24), chunk("data", []byte{0xff, 0x34, 0x12, 0x00, 0x00, 0x80})),
			48000, 1, []int16{0x1234, -32768}},
		{"32-bit integer", riff(fmtChunk(1, 1, 48000, 32), chunk("data", []byte{0xff, 0xff, 0x34, 0x12, 0, 0, 0xff, 0xff})),
			48000, 1, []int16{0x1234, -1}},
		{"32-bit float, clipped", riff(fmtChunk(3, 1, 48000, 32), chunk("data", le32f(0, 0.5, -1, 1, 2, -3))),
			48000, 1, []int16{0, 16384, -32768, 32767, 32767, -32768}},
		{"64-bit float, NaN is silence", riff(fmtChunk(3, 1, 48000, 64), chunk("data", le64f(-0.5, float64(math.NaN())))),
			48000, 1, []int16{-16384, 0}},
		{"extensible 24-bit PCM", riff(extensibleChunk(1, 1, 48000, 24, 24), chunk("data", []byte{0, 0x22, 0x11})),
			48000, 1, []int16{0x1122}},
		{"extensible float", riff(extensibleChunk(3, 1, 48000, 32, 32), chunk("data", le32f(0.25))),
			48000, 1, []int16{8192}},
		{"unknown chunks skipped", riff(list, fmtChunk(1, 1, 16000, 16), chunk("fact", []byte{1, 0, 0, 0}), list, chunk("data", []byte{7, 0})),
			16000, 1, []int16{7}},
		{"empty data", riff(fmtChunk(1, 1, 48000, 16), chunk("data", nil)),
			48000, 1, nil},
		{"data cut short keeps whole frames", riff(fmtChunk(1, 2, 48000, 16), chunk("data", []byte{1, 0, 2, 0, 3, 0, 4, 0}))[:44+6],
			48000, 2, []int16{1, 2}},
		{"streamed size 0xffffffff reads to the end", streamed(riff(fmtChunk(1, 1, 48000, 16), chunk("data", []byte{5, 0, 6, 0}))),
			48000, 1, []int16{5, 6}},
		{"chunks after data ignored", riff(fmtChunk(1, 1, 48000, 16), chunk("data", []byte{9, 0}), list),
			48000, 1, []int16{9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := Read(bytes.NewReader(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if a.SampleRate != tt.rate || a.Channels != tt.channels || !slices.Equal(a.Samples, tt.want) {
				t.Fatalf("got %d Hz, %d channels, %v; want %d Hz, %d channels, %v",
					a.SampleRate, a.Channels, a.Samples, tt.rate, tt.channels, tt.want)
			}
		})
	}
}

// streamed sets the data chunk size of a file from fmtChunk to 0xffffffff,
// as ffmpeg does when it writes to a pipe.
func streamed(b []byte) []byte {
	b = slices.Clone(b)
	binary.LittleEndian.PutUint32(b[40:], math.MaxUint32)
	return b
}

func TestReadRejectsWhatItCannotConvert(t *testing.T) {
	pcm := fmtChunk(1, 1, 48000, 16)
	badAlign := slices.Clone(pcm)
	badAlign[8+12] = 3
	badGUID := extensibleChunk(1, 1, 48000, 16, 16)
	badGUID[len(badGUID)-1]++ // the last byte of the subformat GUID
	hugeData := riff(pcm, []byte("data\x00\x00\x00\x80"))
	tests := []struct {
		name string
		file []byte
		want error
	}{
		{"empty", nil, ErrNotWAV},
		{"short", []byte("RIFF"), ErrNotWAV},
		{"not RIFF", []byte("OggS\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00"), ErrNotWAV},
		{"RIFF but not WAVE", []byte("RIFF\x04\x00\x00\x00AVI "), ErrNotWAV},
		{"RF64", []byte("RF64\xff\xff\xff\xffWAVE"), ErrUnsupported},
		{"no chunks", riff(), ErrMalformed},
		{"no data chunk", riff(pcm), ErrMalformed},
		{"data before fmt", riff(chunk("data", []byte{0, 0}), pcm), ErrMalformed},
		{"two fmt chunks", riff(pcm, pcm, chunk("data", nil)), ErrMalformed},
		{"fmt too short", riff(chunk("fmt ", make([]byte, 14)), chunk("data", nil)), ErrMalformed},
		{"fmt too long", riff(chunk("fmt ", make([]byte, 4096)), chunk("data", nil)), ErrMalformed},
		{"fmt truncated", riff(pcm)[:20+10], ErrMalformed},
		{"unknown chunk truncated", riff(chunk("LIST", make([]byte, 100)))[:40], ErrMalformed},
		{"mu-law", riff(fmtChunk(7, 1, 8000, 8), chunk("data", nil)), ErrUnsupported},
		{"ADPCM", riff(fmtChunk(2, 1, 8000, 4), chunk("data", nil)), ErrUnsupported},
		{"12-bit PCM", riff(fmtChunk(1, 1, 8000, 12), chunk("data", nil)), ErrUnsupported},
		{"16-bit float", riff(fmtChunk(3, 1, 8000, 16), chunk("data", nil)), ErrUnsupported},
		{"unknown extensible subformat", riff(badGUID, chunk("data", nil)), ErrUnsupported},
		{"short extensible", riff(fmtChunk(formatExtensible, 1, 48000, 16), chunk("data", nil)), ErrMalformed},
		{"zero channels", riff(fmtChunk(1, 0, 48000, 16), chunk("data", nil)), ErrMalformed},
		{"too many channels", riff(fmtChunk(1, 65, 48000, 16), chunk("data", nil)), ErrTooLarge},
		{"zero sample rate", riff(fmtChunk(1, 1, 0, 16), chunk("data", nil)), ErrMalformed},
		{"absurd sample rate", riff(fmtChunk(1, 1, 1<<30, 16), chunk("data", nil)), ErrTooLarge},
		{"block align disagrees", riff(badAlign, chunk("data", nil)), ErrMalformed},
		{"data chunk over the cap", hugeData, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := Read(bytes.NewReader(tt.file))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if a != nil {
				t.Fatalf("audio = %+v, want nil", a)
			}
		})
	}
}

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

func TestReadReturnsReadErrors(t *testing.T) {
	boom := errors.New("disk on fire")
	file := riff(fmtChunk(1, 1, 48000, 16), chunk("data", []byte{1, 0, 2, 0}))
	for _, cut := range []int{0, 6, 12, 20, 36, 44, 46} {
		_, err := Read(io.MultiReader(bytes.NewReader(file[:cut]), failingReader{boom}))
		if !errors.Is(err, boom) {
			t.Fatalf("cut at %d: err = %v, want %v", cut, err, boom)
		}
	}
}

func TestAppendThenReadRoundTrips(t *testing.T) {
	tests := []*Audio{
		{SampleRate: 48000, Channels: 1, Samples: []int16{0, 1, -1, 32767, -32768}},
		{SampleRate: 44100, Channels: 2, Samples: []int16{1, 2, 3, 4, 5, 6}},
		{SampleRate: 8000, Channels: 1},
	}
	for _, a := range tests {
		b := Append([]byte("x"), a)
		if b[0] != 'x' {
			t.Fatal("Append overwrote dst")
		}
		if got, want := len(b)-1, 44+2*len(a.Samples); got != want {
			t.Fatalf("file is %d bytes, want %d", got, want)
		}
		got, err := Read(bytes.NewReader(b[1:]))
		if err != nil {
			t.Fatal(err)
		}
		if got.SampleRate != a.SampleRate || got.Channels != a.Channels || !slices.Equal(got.Samples, a.Samples) {
			t.Fatalf("read back %+v, want %+v", got, a)
		}
	}
}

// TestReadMatchesFFmpeg converts one sine to every format ffmpeg writes and
// checks Read gets the same 16-bit samples from each, within rounding, and
// that ffmpeg reads back what Append wrote.
func TestReadMatchesFFmpeg(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skip("ffmpeg not on PATH")
	}
	run := func(args ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), ffmpeg, append([]string{"-nostdin", "-v", "error"}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("ffmpeg %v: %v\n%s", args, err, stderr.Bytes())
		}
		return out
	}
	source := []string{"-f", "lavfi", "-i", "sine=f=440:d=0.2:sample_rate=48000", "-ac", "2"}
	ref, err := Read(bytes.NewReader(run(append(source, "-c:a", "pcm_s16le", "-f", "wav", "-")...)))
	if err != nil {
		t.Fatal(err)
	}
	if ref.SampleRate != 48000 || ref.Channels != 2 || len(ref.Samples) != 2*9600 {
		t.Fatalf("reference: %d Hz, %d channels, %d samples", ref.SampleRate, ref.Channels, len(ref.Samples))
	}

	tests := []struct {
		codec     string
		tolerance int
	}{
		{"pcm_u8", 256},
		{"pcm_s24le", 1},
		{"pcm_s32le", 1},
		{"pcm_f32le", 1},
		{"pcm_f64le", 1},
	}
	for _, tt := range tests {
		t.Run(tt.codec, func(t *testing.T) {
			a, err := Read(bytes.NewReader(run(append(source, "-c:a", tt.codec, "-f", "wav", "-")...)))
			if err != nil {
				t.Fatal(err)
			}
			if a.SampleRate != ref.SampleRate || a.Channels != ref.Channels || len(a.Samples) != len(ref.Samples) {
				t.Fatalf("%d Hz, %d channels, %d samples; want %d, %d, %d",
					a.SampleRate, a.Channels, len(a.Samples), ref.SampleRate, ref.Channels, len(ref.Samples))
			}
			for i, v := range a.Samples {
				if d := int(v) - int(ref.Samples[i]); d > tt.tolerance || d < -tt.tolerance {
					t.Fatalf("sample %d = %d, want %d±%d", i, v, ref.Samples[i], tt.tolerance)
				}
			}
		})
	}

	t.Run("ffmpeg reads Append", func(t *testing.T) {
		dir := t.TempDir()
		path := dir + "/out.wav"
		if err := os.WriteFile(path, Append(nil, ref), 0o644); err != nil {
			t.Fatal(err)
		}
		raw := run("-i", path, "-f", "s16le", "-")
		if len(raw) != 2*len(ref.Samples) {
			t.Fatalf("ffmpeg decoded %d bytes, want %d", len(raw), 2*len(ref.Samples))
		}
		for i, v := range ref.Samples {
			if got := int16(binary.LittleEndian.Uint16(raw[2*i:])); got != v {
				t.Fatalf("sample %d = %d, want %d", i, got, v)
			}
		}
	})
}
