package edge_test

import (
	"log/slog"
	"testing"

	"github.com/amphi-audio/amphi/internal/edge"
	"github.com/amphi-audio/amphi/internal/program"
)

// TestChunksLostOnTheBusAreCountedAsMissed: a gap in a space's sequence is
// how an edge sees chunks lost on the way (a partition drops them
// silently); old and duplicate chunks are not gaps.
func TestChunksLostOnTheBusAreCountedAsMissed(t *testing.T) {
	e := edge.New(edge.Config{Logger: slog.New(slog.DiscardHandler)})
	defer e.Close()
	p := program.NewPacker(serial)
	var cs []*program.Chunk
	for len(cs) < 10 {
		c, err := p.Add([]byte{0xfc, 0xff, 0xfe})
		if err != nil {
			t.Fatal(err)
		}
		if c != nil {
			cs = append(cs, c)
		}
	}
	// Joined mid-program: the chunks before the first one seen are not missed.
	for _, i := range []int{2, 3, 7, 7, 5, 8, 9} {
		e.Publish(space, cs[i])
	}
	if s := e.Stats(); s.Missed != 3 || s.Stale != 2 {
		t.Errorf("Missed %d, Stale %d; want 3 missed (4, 5, 6) and 2 stale", s.Missed, s.Stale)
	}
}
