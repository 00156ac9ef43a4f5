package timeline_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/timeline"
)

// BenchmarkHeardFullStage is what the mixer's goroutine adds per frame
// with the whole stage (13 speakers) talking at once: spans going on
// allocate nothing.
func BenchmarkHeardFullStage(b *testing.B) {
	ids := make([]string, amphi.MaxSpeakers)
	for i := range ids {
		ids[i] = fmt.Sprintf("speaker-%02d", i)
	}
	var s timeline.Spans
	b.ReportAllocs()
	var at time.Duration
	for b.Loop() {
		for _, id := range ids {
			s.Heard(id, at)
		}
		at += amphi.FrameDuration
	}
}
