package replay_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/clip"
	"github.com/amphi-audio/amphi/internal/clip/cliptest"
	"github.com/amphi-audio/amphi/internal/replay"
)

// BenchmarkSegmentOfTwoHours is what a request for one 6 s segment in the
// middle of a 2-hour replay costs the server: the file opened, its
// headers and last page read, the bisection, the packets copied into a
// fragment (the page cache warm).
func BenchmarkSegmentOfTwoHours(b *testing.B) {
	path := longRecording(b, 2*time.Hour)
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		st, _ := f.Stat()
		rec, err := clip.Open(f, st.Size())
		if err != nil {
			b.Fatal(err)
		}
		seg, err := replay.Segment(rec, replay.Segments(rec)/2)
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
		b.SetBytes(int64(len(seg)))
	}
}

// TestAPlaylistListsTheWholeRecording: the segments' durations add up to
// what the recording plays, and each segment starts where the one before
// it ended.
func TestAPlaylistListsTheWholeRecording(t *testing.T) {
	path := longRecording(t, 61*time.Second)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	rec, err := clip.Open(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	if n := replay.Segments(rec); n != 11 {
		t.Errorf("%d segments for 61 s, want 11", n)
	}
	for i := range replay.Segments(rec) {
		if _, err := replay.Segment(rec, i); err != nil {
			t.Errorf("segment %d: %v", i, err)
		}
	}
	if _, err := replay.Segment(rec, replay.Segments(rec)); err != replay.ErrSegment {
		t.Errorf("the segment after the last: %v, want ErrSegment", err)
	}
}

// longRecording writes a recording of d in a temporary directory.
func longRecording(tb testing.TB, d time.Duration) string {
	path := filepath.Join(tb.TempDir(), "long.opus")
	if err := cliptest.Write(path, d); err != nil {
		tb.Fatal(err)
	}
	return path
}
