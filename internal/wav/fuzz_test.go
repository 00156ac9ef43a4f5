package wav

import (
	"bytes"
	"slices"
	"testing"
)

// FuzzRead feeds arbitrary bytes to Read. What it accepts must be whole
// frames within the limits, and survive a round trip through Append.
func FuzzRead(f *testing.F) {
	f.Add(Append(nil, &Audio{SampleRate: 48000, Channels: 2, Samples: []int16{1, -2, 3, -4}}))
	f.Add(riff(fmtChunk(1, 1, 8000, 8), chunk("LIST", []byte("abc")), chunk("data", []byte{1, 2, 3})))
	f.Add(riff(fmtChunk(1, 2, 44100, 24), chunk("data", make([]byte, 12))))
	f.Add(riff(extensibleChunk(3, 1, 48000, 32, 32), chunk("data", le32f(0.5, -0.25))))
	f.Add(streamed(riff(fmtChunk(3, 1, 48000, 64), chunk("data", le64f(0.5)))))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := Read(bytes.NewReader(data))
		if err != nil {
			return
		}
		if a.Channels < 1 || a.Channels > MaxChannels || a.SampleRate < 1 || a.SampleRate > MaxSampleRate {
			t.Fatalf("accepted %d channels at %d Hz", a.Channels, a.SampleRate)
		}
		if len(a.Samples)%a.Channels != 0 {
			t.Fatalf("%d samples is not whole frames of %d channels", len(a.Samples), a.Channels)
		}
		if len(a.Samples) > len(data) {
			t.Fatalf("%d samples from %d bytes", len(a.Samples), len(data))
		}
		b, err := Read(bytes.NewReader(Append(nil, a)))
		if err != nil {
			t.Fatalf("reading back: %v", err)
		}
		if b.SampleRate != a.SampleRate || b.Channels != a.Channels || !slices.Equal(b.Samples, a.Samples) {
			t.Fatal("round trip through Append changed the audio")
		}
	})
}
