// Package live runs each space's pipeline while it is on air: the stage takes
// the speakers' WebRTC audio, the mixer makes one continuous program, the
// program is packed into chunks that go to the recorder and onto the bus.
// Everything here is the stage side of amphi: it never waits on listeners.
package live

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/mix"
	"github.com/amphi-audio/amphi/internal/program"
	"github.com/amphi-audio/amphi/internal/record"
	"github.com/amphi-audio/amphi/internal/stage"
	"github.com/amphi-audio/amphi/internal/timeline"
)

// Publisher sends program chunks to the edges. *bus.Bus is one.
type Publisher interface {
	PublishChunk(spaceID string, c *program.Chunk) error
}

// Config holds the configuration of each part of the pipeline.
type Config struct {
	Mix    mix.Config
	Stage  stage.Config // AddSource is set by the pipeline
	Record record.Config
	// Logger receives pipeline events. Nil means slog.Default().
	Logger *slog.Logger
	// MaxLive caps the spaces on air on this node at once: a start past it
	// is refused with amphi.EFull. Zero means no cap; DefaultConfig sets
	// DefaultMaxLive for this machine's cores.
	MaxLive int
	// IdleEnd is how long a space may stay on air with nobody on its
	// stage, since it went on air or since its last speaker left, before
	// its session says so on Idle. Zero means never; DefaultConfig sets
	// DefaultIdleEnd.
	IdleEnd time.Duration
	// Now is the clock that names a session's run (Session.Run). Nil
	// means time.Now.
	Now func() time.Time
}

// DefaultIdleEnd is how long a space on air waits for a speaker: long
// enough for a host to set up or to come back after a dropped connection,
// short enough that a forgotten or abandoned space stops mixing and
// recording silence.
const DefaultIdleEnd = 10 * time.Minute

// DefaultConfig returns each part's defaults.
func DefaultConfig() Config {
	return Config{Mix: mix.DefaultConfig(), Stage: stage.DefaultConfig(), Record: record.DefaultConfig(),
		MaxLive: DefaultMaxLive(runtime.NumCPU()), IdleEnd: DefaultIdleEnd}
}

// Session is one space on air.
type Session struct {
	space  *amphi.Space
	logger *slog.Logger
	pub    Publisher
	mixer  *mix.Mixer
	stage  *stage.Stage
	packer *program.Packer
	rec    *record.Recorder
	// ring keeps the last chunks published, for the edges that missed
	// some on the bus (Chunks): core NATS delivers at most once.
	ring *program.Ring
	// run names this run of the program (Run).
	run string

	cancel   context.CancelFunc
	mixDone  chan error
	watcher  sync.WaitGroup // the idle watch
	idle     chan struct{}  // closed once the stage has been empty for IdleEnd
	done     chan struct{}  // closed once Stop has finished
	stopOnce sync.Once
	stopErr  error

	// Who was audible when, for speaking indicators: the last frame index
	// at which each speaker id was heard, and the newest frame's index;
	// and for the replay's timeline, the spans each was heard in, under
	// the same lock so a frame someone speaks in takes one lock.
	heardMu sync.Mutex
	heard   map[string]uint64
	spans   timeline.Spans
	frame   atomic.Uint64
}

// Start puts a space on air, recording its program to recordPath.
func Start(space *amphi.Space, recordPath string, pub Publisher, cfg Config) (*Session, error) {
	return start(space, pub, cfg, func(cfg record.Config) (*record.Recorder, program.Position, error) {
		rec, err := record.Create(recordPath, program.Headers(space.Serial), cfg)
		return rec, program.Position{}, err
	})
}

// Resume puts back on air a space a crash took off: its program goes on
// after the last page recorded at recordPath (record.Continue), with the
// same serial and the next page numbers and granule positions, so the
// recording stays one file and listeners who come back hear one stream.
func Resume(space *amphi.Space, recordPath string, pub Publisher, cfg Config) (*Session, error) {
	return start(space, pub, cfg, func(cfg record.Config) (*record.Recorder, program.Position, error) {
		return record.Continue(recordPath, program.Headers(space.Serial), cfg)
	})
}

// start puts a space on air, its program going on from where open's
// recorder says.
func start(space *amphi.Space, pub Publisher, cfg Config, open func(record.Config) (*record.Recorder, program.Position, error)) (*Session, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Session{
		run:     strconv.FormatInt(cfg.Now().UnixMilli(), 36),
		space:   space,
		logger:  cfg.Logger.With("space", space.ID),
		pub:     pub,
		ring:    program.NewRing(nil, RingChunks),
		mixDone: make(chan error, 1),
		idle:    make(chan struct{}),
		done:    make(chan struct{}),
		heard:   make(map[string]uint64),
	}
	// Every part logs with the space's id.
	cfg.Mix.Logger, cfg.Stage.Logger, cfg.Record.Logger = s.logger, s.logger, s.logger
	rec, at, err := open(cfg.Record)
	if err != nil {
		return nil, fmt.Errorf("live: start %s: %w", space.ID, err)
	}
	s.rec, s.packer = rec, program.NewPackerAt(space.Serial, at)
	if s.mixer, err = mix.New(cfg.Mix, s.onFrame); err != nil {
		rec.Close()
		return nil, fmt.Errorf("live: start %s: %w", space.ID, err)
	}
	stageCfg := cfg.Stage
	stageCfg.AddSource = func(id string) (stage.Source, error) { return s.mixer.AddSource(id) }
	if s.stage, err = stage.New(stageCfg); err != nil {
		rec.Close()
		return nil, fmt.Errorf("live: start %s: %w", space.ID, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.mixDone <- s.mixer.Run(ctx) }()
	if cfg.IdleEnd > 0 {
		s.watcher.Go(func() { s.watchIdle(ctx, cfg.IdleEnd) })
	}
	return s, nil
}

// watchIdle closes idle once the stage has had nobody on it for after,
// counted from going on air or from the last look that found someone.
func (s *Session) watchIdle(ctx context.Context, after time.Duration) {
	// Ten looks per period are precise enough, and a look is one lock of
	// the stage; every 5 s at most for the default ten minutes.
	tick := time.NewTicker(min(max(after/10, 10*time.Millisecond), 5*time.Second))
	defer tick.Stop()
	emptySince := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			switch {
			case s.stage.Stats().Speakers > 0:
				emptySince = now
			case now.Sub(emptySince) >= after:
				s.logger.Info("live: nobody on stage", "for", now.Sub(emptySince).Round(time.Second))
				close(s.idle)
				return
			}
		}
	}
}

// onFrame runs on the mixer's goroutine for every 20 ms of program.
func (s *Session) onFrame(f mix.Frame) {
	s.frame.Store(f.Index)
	if len(f.Speaking) > 0 {
		at := s.rec.Duration()
		s.heardMu.Lock()
		for _, id := range f.Speaking {
			s.heard[id] = f.Index
			s.spans.Heard(id, at)
		}
		s.heardMu.Unlock()
	}
	c, err := s.packer.Add(f.Packet)
	if err != nil {
		s.logger.Error("live: pack frame", "frame", f.Index, "err", err)
		return
	}
	if c != nil {
		s.emit(c)
	}
}

func (s *Session) emit(c *program.Chunk) {
	s.rec.Write(c)
	s.ring.Publish(c)
	if err := s.pub.PublishChunk(s.space.ID, c); err != nil {
		s.logger.Warn("live: publish", "chunk", c.Seq, "err", err)
	}
}

// RingChunks is how many of its newest chunks a session keeps for edges
// that missed them: 30 s, as long as an edge's own ring.
const RingChunks = 300

// Chunks returns the chunks numbered from up to, not including, to that
// the session still has, oldest first: what an edge that missed them on
// the bus fetches.
func (s *Session) Chunks(from, to uint64) []*program.Chunk {
	from, to = max(from, s.ring.Oldest()), min(to, s.ring.Next())
	var cs []*program.Chunk
	for seq := from; seq < to; seq++ {
		if c := s.ring.Get(seq); c != nil {
			cs = append(cs, c)
		}
	}
	return cs
}

// Run names this run of the space's program, the same wherever it is
// heard: a program resumed after a crash, or by a standby, is another
// run, whose numbers may go back. It is a path segment (base 36 of the
// start in Unix milliseconds: a restart takes longer than that).
func (s *Session) Run() string { return s.run }

// SpaceID returns the id of the space on air.
func (s *Session) SpaceID() string { return s.space.ID }

// Space returns the space as it was when it went on air. Do not modify it.
func (s *Session) Space() *amphi.Space { return s.space }

// Stage returns the space's stage, where speakers join.
func (s *Session) Stage() *stage.Stage { return s.stage }

// Mixer returns the space's mixer.
func (s *Session) Mixer() *mix.Mixer { return s.mixer }

// Speaking returns the ids of the speakers audible in the last window of
// the program, in no particular order.
func (s *Session) Speaking(window time.Duration) []string {
	frames := uint64(window / amphi.FrameDuration)
	now := s.frame.Load()
	s.heardMu.Lock()
	defer s.heardMu.Unlock()
	var ids []string
	for id, at := range s.heard {
		switch {
		case at+frames >= now:
			ids = append(ids, id)
		case at+10*frames < now: // long silent or gone: forget
			delete(s.heard, id)
		}
	}
	return ids
}

// Spans appends to dst who was audible when since the last call, in the
// recording's time (timeline.Spans.Flush): the spans that closed, then
// forgotten, and those still open, kept. Spans that could not be stored go
// back with RestoreSpans.
//
// The recording's time of a frame is the recorder's Duration when the
// frame is mixed, which trails the frame by the chunk being packed and
// the chunks queued for the disk (about 100 ms while the disk keeps up):
// close enough to seek to, and it needs no bookkeeping per frame. While
// the host has the recording paused that time stands still, so what is
// said during a pause, which the recording leaves out, takes no time on
// the timeline either; a span under way when the pause began goes on
// after it, as the recording does.
func (s *Session) Spans(dst []amphi.SpeakerSpan) []amphi.SpeakerSpan {
	now := s.rec.Duration()
	s.heardMu.Lock()
	defer s.heardMu.Unlock()
	return s.spans.Flush(dst, now)
}

// RestoreSpans takes back spans Spans returned that could not be stored,
// for the next call to return again.
func (s *Session) RestoreSpans(spans []amphi.SpeakerSpan) {
	s.heardMu.Lock()
	defer s.heardMu.Unlock()
	s.spans.Restore(spans)
}

// Recorder returns the space's recorder.
func (s *Session) Recorder() *record.Recorder { return s.rec }

// Idle is closed once the stage has had nobody on it for the configured
// IdleEnd; it stays open if that is zero. The session goes on: ending the
// space is the caller's decision.
func (s *Session) Idle() <-chan struct{} { return s.idle }

// Done is closed once Stop has taken the space off air.
func (s *Session) Done() <-chan struct{} { return s.done }

// Stop takes the space off air: speakers are disconnected, the mixer makes
// the frames owed up to now, the last chunk (EOS) is published and recorded,
// and the recording is closed. It is safe to call more than once.
func (s *Session) Stop() error { return s.stop(true) }

// HandOver stops the session without ending its program: no EOS, and the
// recording left for the process that takes over to continue (a standby,
// whose Resume goes on from the file's last page).
func (s *Session) HandOver() error { return s.stop(false) }

func (s *Session) stop(finish bool) error {
	s.stopOnce.Do(func() {
		var errs []error
		if err := s.stage.Close(); err != nil {
			errs = append(errs, err)
		}
		s.cancel()
		if err := <-s.mixDone; err != nil {
			errs = append(errs, err)
		}
		s.watcher.Wait()
		closeRec := s.rec.Detach
		if finish {
			// The mixer has returned: its goroutine no longer touches the packer.
			c, err := s.packer.Finish()
			if err != nil {
				errs = append(errs, err)
			} else {
				s.emit(c)
			}
			closeRec = s.rec.Close
		}
		if err := closeRec(); err != nil {
			errs = append(errs, err)
		}
		s.stopErr = errors.Join(errs...)
		close(s.done)
	})
	return s.stopErr
}
