package api

import (
	"context"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/bus"
	"github.com/amphi-audio/amphi/internal/clip"
	"github.com/amphi-audio/amphi/internal/edge"
	"github.com/amphi-audio/amphi/internal/program"
	"github.com/amphi-audio/amphi/internal/record"
)

// DefaultMaxRewinds is Config.MaxRewinds's default: 80 MB of pieces of
// recordings and write buffers at most.
const DefaultMaxRewinds = 1000

// historyTimeout bounds one read of the recording at the node that
// records a space: a rewinding listener at an edge waits that long at
// most for its next 16 s.
const historyTimeout = 2 * time.Second

// parseRewind reads the from parameter, which rewinds the stream: to the
// space's beginning (from=start) or back behind the live edge (from=-5m).
// ok is false when there is none.
func parseRewind(q url.Values) (req bus.HistoryRequest, ok bool, err error) {
	v := q.Get("from")
	switch {
	case v == "":
		return req, false, nil
	case v == "start":
		return bus.HistoryRequest{Offset: -1, Start: true}, true, nil
	case strings.HasPrefix(v, "-"):
		d, err := time.ParseDuration(v)
		if err == nil && d < 0 {
			return bus.HistoryRequest{Offset: -1, Back: -d}, true, nil
		}
	}
	return req, false, amphi.Errorf(amphi.EInvalid, `from must be "start" or a duration behind live such as -5m`)
}

// rewound sets st to start the stream where req asks, from the recording:
// read here when this node records the space, or else (an edge) asked of
// the node that does over the bus (Config.History). Without either, or
// when that node does not answer, it starts as far back as the ring
// holds, the last few seconds.
func (s *Server) rewound(st *edge.Stream, req bus.HistoryRequest, id string, ring *program.Ring) {
	read := s.remoteHistory(id)
	if rec := s.recorderOf(id); rec != nil {
		read = func(req bus.HistoryRequest) (bus.HistoryReply, error) { return readHistory(rec, req) }
	}
	if read != nil {
		select {
		case s.rewinds <- struct{}{}:
			first, err := read(req)
			if err == nil {
				st.Past = &historyPast{read: read, next: first, release: func() { <-s.rewinds }}
				return
			}
			<-s.rewinds
			s.cfg.Logger.Debug("rewind: the recording cannot be read; the ring it is", "space", id, "err", err)
		default:
			s.cfg.Logger.Debug("rewind: as many listeners are in the past as may be; the ring it is", "space", id)
		}
	}
	back := uint64(req.Back / amphi.ChunkDuration)
	if req.Start {
		back = ring.Next()
	}
	st.Resume, st.From = true, ring.Next()-min(back, ring.Next())
}

// recorderOf returns the recorder of a space this node records, or nil.
func (s *Server) recorderOf(id string) *record.Recorder {
	if sp := s.spaces.Get(id); sp != nil && sp.Session() != nil {
		if rec := sp.Session().Recorder(); rec != nil && rec.Err() == nil {
			return rec
		}
	}
	return nil
}

// remoteHistory reads a space's recording at the node that records it,
// nil without a bus to ask on.
func (s *Server) remoteHistory(id string) func(bus.HistoryRequest) (bus.HistoryReply, error) {
	if s.cfg.History == nil {
		return nil
	}
	return func(req bus.HistoryRequest) (bus.HistoryReply, error) {
		ctx, cancel := context.WithTimeout(context.Background(), historyTimeout)
		defer cancel()
		return s.cfg.History(ctx, id, req)
	}
}

// History answers an edge's request for a piece of the recording of a
// space this node records (bus.ServeHistory); false for another.
func (s *Server) History(id string, req bus.HistoryRequest) (bus.HistoryReply, bool) {
	rec := s.recorderOf(id)
	if rec == nil {
		return bus.HistoryReply{}, false
	}
	rep, err := readHistory(rec, req)
	if err != nil {
		s.cfg.Logger.Debug("rewind: read the recording for an edge", "space", id, "err", err)
		return bus.HistoryReply{}, false
	}
	return rep, true
}

// readHistory reads at most bus.MaxHistory bytes of rec's file from
// req.Offset, or from the page req.Start or req.Back finds, never past
// what the recorder has written: whole pages.
func readHistory(rec *record.Recorder, req bus.HistoryRequest) (bus.HistoryReply, error) {
	f, err := os.Open(rec.Path())
	if err != nil {
		return bus.HistoryReply{}, err
	}
	defer f.Close()
	to := rec.Written()
	var rep bus.HistoryReply
	off := req.Offset
	if off < 0 {
		r, err := clip.Open(f, to.Bytes)
		if err != nil {
			return rep, amphi.Errorf(amphi.EUnavailable, "the recording has no audio yet to rewind into")
		}
		at := time.Duration(0)
		if !req.Start {
			at = r.Duration() - req.Back
		}
		var from time.Duration
		if off, from, err = r.Seek(at); err != nil {
			return rep, err
		}
		rep.Behind = r.Duration() - from
	}
	n := min(int64(bus.MaxHistory), max(to.Bytes-off, 0))
	rep.Pages = make([]byte, n)
	if _, err := f.ReadAt(rep.Pages, off); err != nil {
		return bus.HistoryReply{}, err
	}
	rep.Offset, rep.End, rep.Next = off+n, off+n >= to.Bytes, to.Next
	return rep, nil
}

// historyPast is a rewound stream's past (edge.Past), read a piece at a
// time as the listener takes it, each piece asked for once the last is
// written.
type historyPast struct {
	read    func(bus.HistoryRequest) (bus.HistoryReply, error)
	next    bus.HistoryReply // the piece being written
	done    int              // bytes of it written
	release func()           // gives back its token of Server.rewinds
}

func (p *historyPast) Read(b []byte) (int, error) {
	if p.done == len(p.next.Pages) {
		rep, err := p.read(bus.HistoryRequest{Offset: p.next.Offset})
		if err != nil {
			return 0, err
		}
		p.next, p.done = rep, 0
		if len(rep.Pages) == 0 {
			return 0, io.EOF
		}
	}
	n := copy(b, p.next.Pages[p.done:])
	p.done += n
	return n, nil
}

// Next is the chunk after the pages read, once Read said io.EOF: the last
// answer then reached the recording's end.
func (p *historyPast) Next() uint64 { return p.next.Next }

func (p *historyPast) Behind() time.Duration { return p.next.Behind }

func (p *historyPast) Close() error {
	p.release()
	return nil
}
