package mix

import (
	"testing"

	"gopkg.in/hraban/opus.v2"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/opuspkt"
)

// FuzzPacketSamples checks the framing parser against libopus itself: a
// packet it accepts must decode to the duration it said, and a packet it
// refuses must be refused by libopus too.
func FuzzPacketSamples(f *testing.F) {
	f.Add([]byte{0xf8, 1, 2})
	f.Add([]byte{0xfb, 0x82, 1, 9, 8, 7})
	f.Add([]byte{0xfb, 0x41, 2, 1, 0, 0})
	f.Add([]byte{0xfa, 253, 1, 2})
	f.Add([]byte{0x0b, 0xc3, 1, 2, 3, 4})
	dec, err := opus.NewDecoder(amphi.SampleRate, 1)
	if err != nil {
		f.Fatal(err)
	}
	pcm := make([]int16, maxPacketSamples)
	f.Fuzz(func(t *testing.T, p []byte) {
		if len(p) > maxPayload {
			return // Push refuses these before parsing
		}
		n, ok := opuspkt.Samples(p)
		got, err := dec.Decode(p, pcm)
		switch {
		case ok && err == nil && got != n:
			t.Errorf("packetSamples(% x) = %d, libopus decoded %d", p, n, got)
		case !ok && err == nil:
			t.Errorf("packetSamples(% x) refused a packet libopus decoded (%d samples)", p, got)
		case ok && err != nil:
			t.Logf("packetSamples(% x) = %d but libopus: %v", p, n, err)
		}
	})
}
