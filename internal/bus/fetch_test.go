package bus_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/program"
)

func TestAnEdgeFetchesTheChunksItMissedFromTheMixingNode(t *testing.T) {
	mixer := open(t, "")
	edge := open(t, mixer.URL())
	chunks := program1(t, 20)
	sub, err := mixer.ServeFetches(func(spaceID string, from, to uint64) []*program.Chunk {
		if spaceID != "s1" {
			return nil // not mixed here: no answer
		}
		return chunks[from:min(to, uint64(len(chunks)))]
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	flush(t, mixer)

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	got, err := edge.Fetch(ctx, "s1", 5, 9)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("fetched %d chunks, want 4", len(got))
	}
	for i, c := range got {
		want := chunks[5+i]
		if c.Seq != want.Seq || !bytes.Equal(c.Page, want.Page) {
			t.Errorf("chunk %d: seq %d, want %d (same page: %v)", i, c.Seq, want.Seq, bytes.Equal(c.Page, want.Page))
		}
	}
	// A space nobody mixes gets no answer: the fetch ends with its
	// context, and the edge passes the hole.
	short, cancel2 := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel2()
	if got, err := edge.Fetch(short, "other", 0, 3); err == nil {
		t.Errorf("fetch of a space nobody mixes: %d chunks, no error", len(got))
	}
}
