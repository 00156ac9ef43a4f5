package wav

import (
	"bytes"
	"testing"
)

// BenchmarkRead reads one second of 48 kHz stereo 16-bit PCM.
func BenchmarkRead(b *testing.B) {
	file := Append(nil, &Audio{SampleRate: 48000, Channels: 2, Samples: make([]int16, 2*48000)})
	br := bytes.NewReader(file)
	b.SetBytes(int64(len(file)))
	b.ReportAllocs()
	for b.Loop() {
		br.Reset(file)
		if _, err := Read(br); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppend writes one second of 48 kHz stereo into a reused buffer.
func BenchmarkAppend(b *testing.B) {
	a := &Audio{SampleRate: 48000, Channels: 2, Samples: make([]int16, 2*48000)}
	dst := Append(nil, a)
	b.SetBytes(int64(len(dst)))
	b.ReportAllocs()
	for b.Loop() {
		dst = Append(dst[:0], a)
	}
}
