package bus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// A listener who rewinds a live space at an edge (from=start) hears the
// past from the recording, which only the node that mixes the space has:
// the edge reads it from there, a piece at a time as the listener plays
// it, by request and reply.

// historySubject prefixes the per-space subjects history is asked on.
const historySubject = "amphi.history."

// MaxHistory is the most bytes of pages one answer carries: 16 s of audio
// at 32 kbit/s, a sixteenth of NATS's largest message.
const MaxHistory = 64 << 10

// HistoryRequest asks for a live space's recorded pages.
type HistoryRequest struct {
	// Offset is the byte of the recording to read from, as the last
	// answer's Offset said; negative to find it by Start or Back.
	Offset int64
	// Start asks for the recording's beginning; otherwise Back is how far
	// behind its end to start.
	Start bool
	Back  time.Duration
}

// HistoryReply is a piece of a live space's recording.
type HistoryReply struct {
	// Pages are whole Ogg pages, at most MaxHistory bytes.
	Pages []byte
	// Offset is the byte after them: the next request's.
	Offset int64
	// End says the pages reach what the recording had when they were
	// read; Next is then the program's chunk after them.
	End  bool
	Next uint64
	// Behind is how far the first page's audio is behind the recording's
	// end, in an answer found by Start or Back.
	Behind time.Duration
}

const (
	historyRequestSize = 8 + 8 + 1
	historyReplyHead   = 8 + 8 + 8 + 1
)

// ServeHistory answers edges' requests for history with read, which
// reports false for a space it does not record: another node may.
func (b *Bus) ServeHistory(read func(spaceID string, req HistoryRequest) (HistoryReply, bool)) (*Subscription, error) {
	sub, err := b.nc.Subscribe(historySubject+"*", func(m *nats.Msg) {
		if len(m.Data) != historyRequestSize || m.Reply == "" {
			return
		}
		req := HistoryRequest{
			Offset: int64(binary.BigEndian.Uint64(m.Data)),
			Back:   time.Duration(binary.BigEndian.Uint64(m.Data[8:])),
			Start:  m.Data[16] == 1,
		}
		rep, ok := read(strings.TrimPrefix(m.Subject, historySubject), req)
		if !ok || len(rep.Pages) > MaxHistory {
			return
		}
		out := make([]byte, historyReplyHead, historyReplyHead+len(rep.Pages))
		binary.BigEndian.PutUint64(out, uint64(rep.Offset))
		binary.BigEndian.PutUint64(out[8:], rep.Next)
		binary.BigEndian.PutUint64(out[16:], uint64(rep.Behind))
		if rep.End {
			out[24] = 1
		}
		m.Respond(append(out, rep.Pages...))
	})
	if err != nil {
		return nil, fmt.Errorf("bus: serve history: %w", err)
	}
	return &Subscription{sub: sub}, nil
}

// History asks the node that records a live space for a piece of its
// recording, waiting until ctx is done.
func (b *Bus) History(ctx context.Context, spaceID string, req HistoryRequest) (HistoryReply, error) {
	var msg [historyRequestSize]byte
	binary.BigEndian.PutUint64(msg[:], uint64(req.Offset))
	binary.BigEndian.PutUint64(msg[8:], uint64(req.Back))
	if req.Start {
		msg[16] = 1
	}
	m, err := b.nc.RequestWithContext(ctx, historySubject+spaceID, msg[:])
	if err != nil {
		return HistoryReply{}, fmt.Errorf("bus: history of %s: %w", spaceID, err)
	}
	d := m.Data
	if len(d) < historyReplyHead || len(d)-historyReplyHead > MaxHistory {
		return HistoryReply{}, errors.New("bus: a malformed history answer")
	}
	return HistoryReply{
		Offset: int64(binary.BigEndian.Uint64(d)),
		Next:   binary.BigEndian.Uint64(d[8:]),
		Behind: time.Duration(binary.BigEndian.Uint64(d[16:])),
		End:    d[24] == 1,
		Pages:  d[historyReplyHead:],
	}, nil
}
