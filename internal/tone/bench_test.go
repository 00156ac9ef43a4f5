package tone

import "testing"

// BenchmarkGoertzel analyses one second at 48 kHz.
func BenchmarkGoertzel(b *testing.B) {
	s := sine(rate, 440, 0.3)
	b.ReportAllocs()
	for b.Loop() {
		Goertzel(s, rate, 440)
	}
}

// BenchmarkSine generates one 20 ms frame at 48 kHz.
func BenchmarkSine(b *testing.B) {
	buf := make([]int16, 960)
	var phase float64
	b.ReportAllocs()
	for b.Loop() {
		buf, phase = Sine(buf, 440, 0.3, rate, phase)
	}
}
