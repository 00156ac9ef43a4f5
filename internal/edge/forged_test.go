package edge_test

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/edge"
	"github.com/amphi-audio/amphi/internal/program"
)

// TestForgedChunksNeitherEndNorStallTheRing: chunks on the bus that cannot
// be the space's (another serial, a sequence number far ahead of the time
// since the start, an unknown space) are dropped and counted by reason; the
// ring goes on taking the program's own chunks.
func TestForgedChunksNeitherEndNorStallTheRing(t *testing.T) {
	started := time.Now().Add(-10 * time.Second)
	e := edge.New(edge.Config{
		Logger: slog.New(slog.DiscardHandler),
		Lookup: func(id string) (edge.SpaceInfo, error) {
			if id != space {
				return edge.SpaceInfo{}, errors.New("no such space")
			}
			return edge.SpaceInfo{Serial: serial, Started: started}, nil
		},
	})
	defer e.Close()
	real, forger := program.NewPacker(serial), program.NewPacker(serial+1)
	next := func(p *program.Packer) *program.Chunk {
		t.Helper()
		for {
			c, err := p.Add([]byte{0xfc, 0xff, 0xfe})
			if err != nil {
				t.Fatal(err)
			}
			if c != nil {
				return c
			}
		}
	}
	for range 3 {
		e.Publish(space, next(real))
	}
	end, err := forger.Finish()
	if err != nil {
		t.Fatal(err)
	}
	// The forger's End chunk is numbered as the program's next one.
	e.Publish(space, &program.Chunk{Seq: 3, End: true, Page: end.Page})
	// The program's own serial, from 2^40 on.
	e.Publish(space, &program.Chunk{Seq: 1 << 40, End: true, Page: next(real).Page})
	e.Publish("elsewhere", next(program.NewPacker(serial)))

	ring := e.Ring(t.Context(), space)
	if ring == nil || ring.Ended() || ring.Next() != 3 {
		t.Fatalf("ring %v: want 3 chunks, not ended", ring)
	}
	e.Publish(space, next(real)) // chunk 4: the forgery above took 3's page
	if ring.Next() != 5 || ring.Ended() {
		t.Errorf("after the program's next chunk the ring is at %d (ended %v), want 5", ring.Next(), ring.Ended())
	}
	if e.HasRing("elsewhere") {
		t.Error("a chunk of an unknown space made a ring")
	}
	want := map[string]int64{edge.DropSerial: 1, edge.DropAhead: 1, edge.DropUnknown: 1}
	for reason, n := range want {
		if got := e.Stats().Dropped[reason]; got != n {
			t.Errorf("dropped %q: %d, want %d", reason, got, n)
		}
	}
}

// TestWithoutLookupTheFirstChunkSetsTheSerial: an edge with no Lookup (as
// in tests of the edge alone) takes its ring's serial from the first chunk
// and still drops chunks of another.
func TestWithoutLookupTheFirstChunkSetsTheSerial(t *testing.T) {
	e := edge.New(edge.Config{Logger: slog.New(slog.DiscardHandler)})
	defer e.Close()
	for i, s := range []uint32{serial, serial + 1} {
		c, err := program.NewPacker(s).Finish()
		if err != nil {
			t.Fatal(err)
		}
		c.Seq, c.End = uint64(i), i == 1
		e.Publish(space, c)
	}
	if ring := e.Ring(t.Context(), space); ring == nil || ring.Ended() || ring.Next() != 1 {
		t.Fatalf("ring %v: want the first chunk only", ring)
	}
	if got := e.Stats().Dropped[edge.DropSerial]; got != 1 {
		t.Errorf("dropped for their serial: %d, want 1", got)
	}
}
