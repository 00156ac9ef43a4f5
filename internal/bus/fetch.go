package bus

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/amphi-audio/amphi/internal/program"
)

// Core NATS delivers each chunk at most once: a slow consumer, a reconnect
// or a partition loses some. An edge that sees a gap in a space's sequence
// fetches the missing chunks from the node that mixes the space, which keeps
// the last 30 s of them, by request and reply: no listener hears the hole.

// fetchSubject prefixes the per-space subjects fetches are asked on.
const fetchSubject = "amphi.fetch."

// MaxFetch caps the chunks one fetch returns: 30 s, an edge's whole ring.
const MaxFetch = 300

// ServeFetches answers edges' fetches with chunks(spaceID, from, to): the
// chunks numbered from up to, not including, to that this node still has.
// A node answers only for the spaces it has chunks of; a space it does not
// mix gets no answer from it.
func (b *Bus) ServeFetches(chunks func(spaceID string, from, to uint64) []*program.Chunk) (*Subscription, error) {
	sub, err := b.nc.Subscribe(fetchSubject+"*", func(m *nats.Msg) {
		if len(m.Data) != 16 || m.Reply == "" {
			return
		}
		from, to := binary.BigEndian.Uint64(m.Data), binary.BigEndian.Uint64(m.Data[8:])
		to = min(to, from+MaxFetch)
		cs := chunks(strings.TrimPrefix(m.Subject, fetchSubject), from, to)
		if len(cs) == 0 {
			return // another node may have them; the asker times out
		}
		m.Respond(program.AppendWireList(nil, cs))
	})
	if err != nil {
		return nil, fmt.Errorf("bus: serve fetches: %w", err)
	}
	return &Subscription{sub: sub}, nil
}

// Fetch asks for a space's chunks numbered from up to, not including, to,
// waiting until ctx is done. It returns those the mixing node still has.
func (b *Bus) Fetch(ctx context.Context, spaceID string, from, to uint64) ([]*program.Chunk, error) {
	var req [16]byte
	binary.BigEndian.PutUint64(req[:], from)
	binary.BigEndian.PutUint64(req[8:], to)
	m, err := b.nc.RequestWithContext(ctx, fetchSubject+spaceID, req[:])
	if err != nil {
		return nil, fmt.Errorf("bus: fetch chunks %d-%d of %s: %w", from, to, spaceID, err)
	}
	cs, err := program.ParseWireList(m.Data)
	if err != nil {
		return nil, fmt.Errorf("bus: fetch chunks of %s: %w", spaceID, err)
	}
	return cs, nil
}
