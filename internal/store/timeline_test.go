package store

import (
	"slices"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
)

// A span stored again as it grows stays one row, keeps its name when the
// later flush did not know it, and counts add up; deleting the recording
// forgets the timeline with it.
func TestATimelineGrowsByFlushesAndGoesWithItsRecording(t *testing.T) {
	db, _ := openTest(t)
	ctx := t.Context()
	mustCreate(t, db, space("s1", amphi.StateLive, t0))
	mustCreate(t, db, space("s2", amphi.StateLive, t0))
	if err := db.PutRecording(ctx, &amphi.Recording{SpaceID: "s1", Path: "recordings/s1.opus"}); err != nil {
		t.Fatal(err)
	}
	flushes := []struct {
		spans  []amphi.SpeakerSpan
		counts []amphi.ReactionCount
	}{
		{[]amphi.SpeakerSpan{{Speaker: "a", Name: "Ann", From: 1500 * time.Millisecond, To: 3 * time.Second}},
			[]amphi.ReactionCount{{At: 5 * time.Second, Kind: "clap", Count: 3}}},
		{[]amphi.SpeakerSpan{{Speaker: "a", From: 1500 * time.Millisecond, To: 7 * time.Second}, {Speaker: "b", Name: "Bo", From: 8 * time.Second, To: 9 * time.Second}},
			[]amphi.ReactionCount{{At: 5 * time.Second, Kind: "clap", Count: 4}, {At: 5 * time.Second, Kind: "heart", Count: 1}}},
		{[]amphi.SpeakerSpan{{Speaker: "a", Name: "Ann", From: 1500 * time.Millisecond, To: 6 * time.Second}}, nil}, // an older copy
	}
	for _, f := range flushes {
		if err := db.PutTimeline(ctx, "s1", f.spans, f.counts); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.PutTimeline(ctx, "s2", []amphi.SpeakerSpan{{Speaker: "c", From: 0, To: time.Second}}, nil); err != nil {
		t.Fatal(err)
	}
	wantCode(t, db.PutTimeline(ctx, "s1", []amphi.SpeakerSpan{{Speaker: "a", From: 2 * time.Second, To: time.Second}}, nil), amphi.EInvalid)

	spans, counts, err := db.Timeline(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	wantSpans := []amphi.SpeakerSpan{
		{Speaker: "a", Name: "Ann", From: 1500 * time.Millisecond, To: 7 * time.Second},
		{Speaker: "b", Name: "Bo", From: 8 * time.Second, To: 9 * time.Second},
	}
	if !slices.Equal(spans, wantSpans) {
		t.Errorf("spans %v, want %v", spans, wantSpans)
	}
	wantCounts := []amphi.ReactionCount{{At: 5 * time.Second, Kind: "clap", Count: 7}, {At: 5 * time.Second, Kind: "heart", Count: 1}}
	if !slices.Equal(counts, wantCounts) {
		t.Errorf("counts %v, want %v", counts, wantCounts)
	}

	if _, err := db.DeleteRecording(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if spans, counts, err := db.Timeline(ctx, "s1"); err != nil || len(spans)+len(counts) != 0 {
		t.Errorf("after deleting the recording: %v, %v, %v", spans, counts, err)
	}
	if spans, _, _ := db.Timeline(ctx, "s2"); len(spans) != 1 {
		t.Errorf("another space's timeline went too: %v", spans)
	}
}
