package main

import (
	"net/http"
	"sync/atomic"

	"github.com/amphi-audio/amphi/internal/edge"
	"github.com/amphi-audio/amphi/internal/gate"
	"github.com/amphi-audio/amphi/internal/live"
	"github.com/amphi-audio/amphi/internal/ops"
)

// statusCounter counts responses by status code for the ops view. Streams
// handed over by hijacking are counted by the edge instead.
type statusCounter struct {
	codes [600]atomic.Uint64
}

func (c *statusCounter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		if sw.code >= 100 && sw.code < len(c.codes) {
			c.codes[sw.code].Add(1)
		}
	})
}

func (c *statusCounter) snapshot() map[int]uint64 {
	out := make(map[int]uint64)
	for code := range c.codes {
		if n := c.codes[code].Load(); n > 0 {
			out[code] = n
		}
	}
	return out
}

// statusWriter remembers the status; Unwrap lets http.ResponseController
// reach the connection underneath (the edge hijacks it).
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// snapshot gathers every part's counters for the ops monitor and /metrics.
// It only reads atomics and takes short locks.
func (m *Main) snapshot() ops.Snapshot {
	g := m.api.GateStats()
	e := m.edge.Stats()
	s := ops.Snapshot{
		Listeners:       e.Listeners,
		ListenersServed: uint64(e.Served),
		EgressBytes:     uint64(e.Bytes),
		ChunksMissed:    uint64(e.Missed),
		ChunksFilled:    uint64(e.Filled),
		HLSSkipped:      uint64(e.HLSSkipped),
		RecordingBytes:  m.recordingBytes.Load(),
		ClipBytes:       m.clipBytes.Load(),
		JoinRequests:    g.JoinRequests,
		ListenRequests:  g.ListenRequests,
		Joins:           g.Joins,
		Refusals:        make(map[string]uint64, len(g.Refusals)+2),
		TicketsVerified: g.TicketsVerified,
		Waiting:         g.Waiting,
		WaitingForStart: g.WaitingForStart,
		Polls:           g.Polls,
		PoWDifficulty:   float64(g.PoWDifficulty),
		HTTPResponses:   m.statuses.snapshot(),
		Components:      map[string]ops.ComponentHealth{},
	}
	for r, n := range g.Refusals {
		s.Refusals[r.String()] = n
	}
	var cut uint64
	for reason, n := range e.Ended {
		if reason.Cut() {
			cut += uint64(n)
		}
	}
	s.Components[ops.ComponentEdge] = ops.ComponentHealth{Errors: cut, Detail: "listeners cut: slow or gone"}
	if m.fleet != nil {
		s.Edges = m.fleet.snapshot()
	}
	var mixer, rec, stage ops.ComponentHealth
	var sessions []*live.Session // none on an edge
	if m.live != nil {
		sessions = m.live.Sessions()
	}
	for _, sess := range sessions {
		ms := sess.Mixer().Stats()
		mixer.Stalls += ms.Stalls
		mixer.MaxFrame = max(mixer.MaxFrame, ms.MaxMix)
		r := sess.Recorder()
		rec.Stalls += uint64(r.Dropped() + r.Lagged())
		if r.Err() != nil {
			rec.Errors++
		}
		st := sess.Stage().Stats()
		stage.Errors += st.DroppedMalformed + st.DroppedPayloadType + st.DroppedReadError
		stage.Stalls += st.Lost
		s.Spaces = append(s.Spaces, ops.SpaceSnapshot{ID: sess.SpaceID(), Speakers: st.Speakers})
	}
	mixer.Detail = "stalls: times the mixer fell 100 ms or more behind the clock"
	rec.Detail = "stalls: chunks dropped, and times the disk fell 2 s behind; errors: recordings stopped"
	stage.Detail = "errors: RTP dropped; stalls: speakers lost"
	s.Components[ops.ComponentMixer] = mixer
	s.Components[ops.ComponentRecorder] = rec
	s.Components[ops.ComponentStage] = stage
	// A chunk of a known space with another serial, or numbered ahead of
	// the clock, is forged or misrouted; one of an unknown space is another
	// server's on a shared NATS, not a fault.
	// A gap in a space's sequence is chunks lost on the way: a partition
	// drops them without an error to the publisher. One fetched again in
	// time is no stall: no listener heard it.
	forged := uint64(e.Dropped[edge.DropSerial] + e.Dropped[edge.DropAhead])
	s.Components[ops.ComponentBus] = ops.ComponentHealth{Errors: m.bus.PublishErrors(), Stalls: m.badChunks.Load() + forged + uint64(e.Missed-e.Filled),
		Detail: "errors: publishes failed; stalls: chunks lost on the way and not fetched again in time (holes), that did not decode, or of another serial or numbered ahead of the clock (dropped)"}
	// Connections refused at accept, by reason: the node's cap, a source's.
	s.Refusals[gate.RefusalConnsNodeCap.String()] = m.refusedAtAccept.nodeCap.Load()
	s.Refusals[gate.RefusalConnsSourceCap.String()] = m.refusedAtAccept.sourceCap.Load()
	s.Refusals[gate.RefusalIncomplete.String()] = m.refusedAtAccept.incomplete.Load()
	s.ReadProcess()
	return s
}
