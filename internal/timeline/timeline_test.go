package timeline_test

import (
	"cmp"
	"slices"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/timeline"
)

const ms = time.Millisecond

// hear notes the speaker audible in every frame of [from, to).
func hear(s *timeline.Spans, id string, from, to time.Duration) {
	for at := from; at < to; at += amphi.FrameDuration {
		s.Heard(id, at)
	}
}

func sorted(spans []amphi.SpeakerSpan) []amphi.SpeakerSpan {
	slices.SortFunc(spans, func(a, b amphi.SpeakerSpan) int {
		return cmp.Or(cmp.Compare(a.Speaker, b.Speaker), cmp.Compare(a.From, b.From))
	})
	return spans
}

func TestSpansMergeGapsShorterThanASecond(t *testing.T) {
	var s timeline.Spans
	// a: two words 600 ms apart (one span), then 1.5 s of silence (a
	// new span); b: one word in between.
	hear(&s, "a", 0, 1000*ms)
	hear(&s, "b", 1200*ms, 1400*ms)
	hear(&s, "a", 1600*ms, 2000*ms)
	hear(&s, "a", 3500*ms, 4000*ms)
	got := sorted(s.Flush(nil, 4000*ms))
	want := []amphi.SpeakerSpan{
		{Speaker: "a", From: 0, To: 2000 * ms},
		{Speaker: "a", From: 3500 * ms, To: 4000 * ms},
		{Speaker: "b", From: 1200 * ms, To: 1400 * ms},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("spans %v, want %v", got, want)
	}
	// A span still open is flushed again as it grows; those closed (b's,
	// silent for over a second at the first flush) are not.
	hear(&s, "a", 4000*ms, 4500*ms)
	got = sorted(s.Flush(nil, 4500*ms))
	want = []amphi.SpeakerSpan{{Speaker: "a", From: 3500 * ms, To: 4500 * ms}}
	if !slices.Equal(got, want) {
		t.Fatalf("second flush %v, want %v", got, want)
	}
	hear(&s, "b", 5000*ms, 5100*ms)
	got = sorted(s.Flush(nil, 9000*ms))
	want = []amphi.SpeakerSpan{{Speaker: "a", From: 3500 * ms, To: 4500 * ms}, {Speaker: "b", From: 5000 * ms, To: 5100 * ms}}
	if !slices.Equal(got, want) {
		t.Fatalf("third flush %v, want %v", got, want)
	}
	if got := s.Flush(nil, 9000*ms); len(got) != 0 {
		t.Errorf("all closed and flushed, yet %v", got)
	}
}

// A paused recording's time stands still: what is said meanwhile stays in
// the span it interrupted.
func TestSpansOverAStillClockStayOne(t *testing.T) {
	var s timeline.Spans
	for range 100 {
		s.Heard("a", 2*time.Second)
	}
	hear(&s, "a", 2*time.Second, 2500*ms)
	if got := s.Flush(nil, 2500*ms); !slices.Equal(got, []amphi.SpeakerSpan{{Speaker: "a", From: 2 * time.Second, To: 2500 * ms}}) {
		t.Errorf("spans %v", got)
	}
}

func TestMergeJoinsStoredPieces(t *testing.T) {
	got := timeline.Merge([]amphi.SpeakerSpan{
		{Speaker: "b", From: 5 * time.Second, To: 6 * time.Second},
		{Speaker: "a", From: 0, To: 2 * time.Second, Name: ""},
		{Speaker: "a", From: 0, To: 3 * time.Second, Name: "Ann"},  // the same span, stored again longer
		{Speaker: "a", From: 3500 * ms, To: 4 * time.Second},       // 0.5 s after: one span
		{Speaker: "a", From: 5 * time.Second, To: 6 * time.Second}, // 1 s after: another
	})
	want := []amphi.SpeakerSpan{
		{Speaker: "a", Name: "Ann", From: 0, To: 4 * time.Second},
		{Speaker: "a", From: 5 * time.Second, To: 6 * time.Second},
		{Speaker: "b", From: 5 * time.Second, To: 6 * time.Second},
	}
	if !slices.Equal(got, want) {
		t.Errorf("merged %v, want %v", got, want)
	}
}

func TestBuildOrdersSpeakersAndMarksPeaks(t *testing.T) {
	var r timeline.Reactions
	r.Add("clap", 2, 1*time.Second)
	r.Add("clap", 20, 31*time.Second)
	r.Add("heart", 5, 33*time.Second)
	r.Add("clap", 9, 36*time.Second) // beside the biggest: not a peak
	r.Add("fire", 4, 50*time.Second)
	r.Add("wave", 3, 70*time.Second)
	counts := r.Flush(nil)
	if got := r.Flush(nil); len(got) != 0 {
		t.Fatalf("flushed twice: %v", got)
	}
	v := timeline.Build(60*time.Second, []amphi.SpeakerSpan{
		{Speaker: "late", Name: "Bea", From: 20 * time.Second, To: 30 * time.Second},
		{Speaker: "early", From: 1 * time.Second, To: 10 * time.Second},
		{Speaker: "early", From: 55 * time.Second, To: 62 * time.Second}, // cut to the end
		{Speaker: "late", From: 61 * time.Second, To: 62 * time.Second},  // past the end
	}, counts)
	if len(v.Speakers) != 2 || v.Speakers[0].ID != "early" || v.Speakers[0].Name != "Speaker" || v.Speakers[1].Name != "Bea" {
		t.Fatalf("speakers %+v", v.Speakers)
	}
	if got := v.Speakers[0].Spans; !slices.Equal(got, [][2]float64{{1, 10}, {55, 60}}) {
		t.Errorf("early's spans %v", got)
	}
	if got := v.Speakers[1].Spans; !slices.Equal(got, [][2]float64{{20, 30}}) {
		t.Errorf("late's spans %v", got)
	}
	var at []float64
	for _, m := range v.Reactions {
		at = append(at, m.At)
	}
	if !slices.Equal(at, []float64{0, 30, 35, 50, 70}) {
		t.Errorf("buckets at %v", at)
	}
	if m := v.Reactions[1]; m.Count != 25 || m.Kinds["clap"] != 20 || m.Kinds["heart"] != 5 {
		t.Errorf("bucket at 30 s: %+v", m)
	}
	at = at[:0]
	for _, m := range v.Peaks {
		at = append(at, m.At)
	}
	if !slices.Equal(at, []float64{30, 50, 70}) {
		t.Errorf("peaks at %v, want 30, 50 and 70", at)
	}
}
