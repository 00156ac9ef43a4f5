package edge_test

import (
	"context"
	"errors"
	"testing"

	"github.com/amphi-audio/amphi/internal/edge"
	"github.com/amphi-audio/amphi/internal/program"
)

// origin stands for the node that mixes the space: it keeps every chunk
// packed, and answers fetches once let go.
type origin struct {
	chunks  map[uint64]*program.Chunk
	release chan struct{} // closed to answer the fetches waiting
	fail    bool
	asked   chan [2]uint64
}

func newOrigin() *origin {
	return &origin{chunks: map[uint64]*program.Chunk{}, release: make(chan struct{}), asked: make(chan [2]uint64, 8)}
}

func (o *origin) fetch(ctx context.Context, spaceID string, from, to uint64) ([]*program.Chunk, error) {
	o.asked <- [2]uint64{from, to}
	select {
	case <-o.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if o.fail || spaceID != space {
		return nil, errors.New("no answer")
	}
	var cs []*program.Chunk
	for seq := from; seq < to; seq++ {
		cs = append(cs, o.chunks[seq])
	}
	return cs, nil
}

// packAll packs n chunks, keeping them at the origin, and returns them.
func (te *testEdge) packAll(t *testing.T, o *origin, n int) []*program.Chunk {
	cs := make([]*program.Chunk, n)
	for i := range cs {
		cs[i] = te.pack(t, false)
		o.chunks[cs[i].Seq] = cs[i]
	}
	return cs
}

// readChunks reads n pages and returns the chunks they carry.
func (l *listener) readChunks(t *testing.T, n int) []uint64 {
	t.Helper()
	seqs := make([]uint64, n)
	for i := range seqs {
		seqs[i] = chunkSeq(l.page(t))
	}
	return seqs
}

func equal(a []uint64, b ...uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestChunksMissedOnTheBusAreFetchedBeforeListenersPassTheHole(t *testing.T) {
	o := newOrigin()
	te := startEdge(t, edge.Config{Fetch: o.fetch})
	cs := te.packAll(t, o, 10)
	for _, c := range cs[:5] {
		te.Publish(space, c)
	}
	l := listen(t, te.addr, "?from=0")
	l.headers(t)
	if got := l.readChunks(t, 5); !equal(got, 0, 1, 2, 3, 4) {
		t.Fatalf("first chunks %v", got)
	}
	// 5, 6 and 7 are lost on the bus: 8 shows the hole, and the edge asks
	// the origin for exactly what is missing.
	te.Publish(space, cs[8])
	te.Publish(space, cs[9])
	if got := <-o.asked; got != [2]uint64{5, 8} {
		t.Fatalf("fetched %v, want [5 8]", got)
	}
	// While the fetch is under way the listener holds at the hole rather
	// than skip to 8: no page comes (the writers wake every tick meanwhile).
	if te.Stats().Listeners != 1 {
		t.Fatal("listener gone")
	}
	close(o.release)
	if got := l.readChunks(t, 5); !equal(got, 5, 6, 7, 8, 9) {
		t.Fatalf("after the fetch: chunks %v, want 5 to 9 in order", got)
	}
	if s := te.Stats(); s.Missed != 3 || s.Filled != 3 {
		t.Errorf("missed %d, filled %d: want 3 and 3", s.Missed, s.Filled)
	}
}

func TestAHoleTheOriginCannotFillIsPassed(t *testing.T) {
	o := newOrigin()
	o.fail = true
	close(o.release)
	te := startEdge(t, edge.Config{Fetch: o.fetch})
	cs := te.packAll(t, o, 6)
	te.Publish(space, cs[0])
	l := listen(t, te.addr, "?from=0")
	l.headers(t)
	te.Publish(space, cs[3])
	te.Publish(space, cs[4])
	te.Publish(space, cs[5])
	if got := l.readChunks(t, 4); !equal(got, 0, 3, 4, 5) {
		t.Fatalf("chunks %v, want 0 then 3 to 5: the hole passed once the fetch failed", got)
	}
	if s := te.Stats(); s.Missed != 2 || s.Filled != 0 {
		t.Errorf("missed %d, filled %d: want 2 and 0", s.Missed, s.Filled)
	}
}

func TestAResumedStreamStartsAtTheChunkAsked(t *testing.T) {
	te := startEdge(t, edge.Config{})
	te.publish(t, 30, false)
	cases := []struct {
		query string
		first uint64
	}{
		{"?from=12", 12}, // in the ring: no hole
		{"?from=99", 30}, // not yet made: the live edge
		{"", 26},         // no resume: the default 500 ms burst
	}
	for i, c := range cases {
		l := listen(t, te.addr, c.query)
		l.headers(t)
		if c.first == te.seq {
			te.waitListeners(t, int64(i+1))
			te.publish(t, 1, false) // what it waits for
		}
		if got := chunkSeq(l.page(t)); got != c.first {
			t.Errorf("%q: first chunk %d, want %d", c.query, got, c.first)
		}
	}
}

func TestTheStreamNamesTheEdgeThatServesIt(t *testing.T) {
	te := startEdge(t, edge.Config{Node: "edge-7"})
	te.publish(t, 3, false)
	if got := listen(t, te.addr).resp.Header.Get("X-Amphi-Edge"); got != "edge-7" {
		t.Errorf("X-Amphi-Edge %q, want edge-7", got)
	}
}
