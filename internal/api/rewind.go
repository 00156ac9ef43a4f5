package api

import (
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/clip"
	"github.com/amphi-audio/amphi/internal/edge"
	"github.com/amphi-audio/amphi/internal/program"
	"github.com/amphi-audio/amphi/internal/record"
)

// rewind is what a listener's from parameter asks: to start the live
// stream at the space's beginning (from=start) or back behind the live
// edge (from=-5m).
type rewind struct {
	start bool
	back  time.Duration
}

// parseRewind reads the from parameter; ok is false when there is none.
func parseRewind(q url.Values) (rw rewind, ok bool, err error) {
	v := q.Get("from")
	switch {
	case v == "":
		return rewind{}, false, nil
	case v == "start":
		return rewind{start: true}, true, nil
	case strings.HasPrefix(v, "-"):
		d, err := time.ParseDuration(v)
		if err == nil && d < 0 {
			return rewind{back: -d}, true, nil
		}
	}
	return rewind{}, false, amphi.Errorf(amphi.EInvalid, `from must be "start" or a duration behind live such as -5m`)
}

// rewound sets st to start the stream where rw asks. The node that records
// the space serves the past from its recording, as far back as it goes;
// another node (an edge) from its ring, which holds the last few seconds.
func (s *Server) rewound(st *edge.Stream, rw rewind, id string, ring *program.Ring) error {
	if sp := s.spaces.Get(id); sp != nil && sp.Session() != nil {
		if rec := sp.Session().Recorder(); rec != nil && rec.Err() == nil {
			past, err := openPast(rec, rw, ring)
			if err != nil {
				return err
			}
			st.Past = past
			return nil
		}
	}
	next, back := ring.Next(), uint64(rw.back/amphi.ChunkDuration)
	st.Resume, st.From = true, next-min(back, next)
	if rw.start {
		st.From = 0 // the edge starts at what it still holds
	}
	return nil
}

// recordedPast reads a live space's recording from a page on, never past
// what the recorder has written, so it reads whole pages.
type recordedPast struct {
	f      *os.File
	rec    *record.Recorder
	off    int64
	to     record.Mark
	behind time.Duration
}

// openPast opens rec's file at the page rw asks for.
func openPast(rec *record.Recorder, rw rewind, ring *program.Ring) (*recordedPast, error) {
	f, err := os.Open(rec.Path())
	if err != nil {
		return nil, amphi.Errorf(amphi.EUnavailable, "the recording cannot be read: %v", err)
	}
	to := rec.Written()
	r, err := clip.Open(f, to.Bytes)
	if err != nil {
		f.Close()
		return nil, amphi.Errorf(amphi.EUnavailable, "the recording has no audio yet to rewind into")
	}
	at := time.Duration(0)
	if !rw.start {
		at = r.Duration() - rw.back
	}
	off, from, err := r.Seek(at)
	if err != nil {
		f.Close()
		return nil, amphi.Errorf(amphi.EInternal, "seek in the recording: %v", err)
	}
	// The recording's end is behind the ring's by what the recorder has
	// still to write.
	lag := time.Duration(ring.Next()-min(to.Next, ring.Next())) * amphi.ChunkDuration
	return &recordedPast{f: f, rec: rec, off: off, to: to, behind: r.Duration() - from + lag}, nil
}

func (p *recordedPast) Read(b []byte) (int, error) {
	if p.off >= p.to.Bytes {
		if p.to = p.rec.Written(); p.off >= p.to.Bytes {
			return 0, io.EOF
		}
	}
	n, err := p.f.ReadAt(b[:min(int64(len(b)), max(p.to.Bytes-p.off, 0))], p.off)
	p.off += int64(n)
	if n > 0 {
		return n, nil
	}
	return 0, err
}

func (p *recordedPast) Next() uint64 { return p.to.Next }

func (p *recordedPast) Behind() time.Duration { return p.behind }

func (p *recordedPast) Close() error { return p.f.Close() }
