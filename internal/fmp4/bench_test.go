package fmp4

import (
	"bytes"
	"testing"
)

// BenchmarkAppendFragment writes one 200 ms part of 32 kbit/s Opus: ten
// 80-byte packets, into a buffer it reuses.
func BenchmarkAppendFragment(b *testing.B) {
	samples := make([]Sample, 10)
	for i := range samples {
		samples[i] = Sample{Data: bytes.Repeat([]byte{byte(i)}, 80), Duration: 960}
	}
	buf := make([]byte, 0, FragmentSize(samples))
	b.ReportAllocs()
	b.SetBytes(int64(cap(buf)))
	for b.Loop() {
		buf = AppendFragment(buf[:0], 1, 0, samples)
	}
}
