package latency

import (
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
)

// BenchmarkDetectorAdd feeds one decoded 20 ms frame of a marker stream
// through Opus with a 440 Hz speaker mixed in: the per-listener cost, 50
// times a second.
func BenchmarkDetectorAdd(b *testing.B) {
	s := makeStream(b, MarkerConfig{}, streamOpts{frames: 500, marks: true, other: 440, level: 0.5})
	d := NewDetector(MarkerConfig{})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		d.Add(s.frames[i%len(s.frames)], sendTime(i))
		i++
	}
}

// BenchmarkMarkerFrame makes one frame of the bot's stream, a mark frame
// one time in seventeen.
func BenchmarkMarkerFrame(b *testing.B) {
	m := NewMarker(MarkerConfig{})
	dst := make([]int16, amphi.FrameSamples)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m.Frame(dst, i%51)
		i++
	}
}

// BenchmarkMatch pairs an hour of one listener's detections.
func BenchmarkMatch(b *testing.B) {
	sent := make([]time.Time, 3600)
	dets := make([]Detection, len(sent))
	for k := range sent {
		sent[k] = t0.Add(time.Duration(k) * time.Second)
		dets[k] = Detection{Slot: k % 8, Arrived: sent[k].Add(300 * time.Millisecond)}
	}
	b.ReportAllocs()
	for b.Loop() {
		Match(sent, dets, MarkerConfig{})
	}
}
