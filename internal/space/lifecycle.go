package space

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/live"
	"github.com/amphi-audio/amphi/internal/program"
	"github.com/amphi-audio/amphi/internal/record"
	"github.com/amphi-audio/amphi/internal/store"
)

// Store is what the lifecycle reads and writes of spaces and their
// recordings. *store.DB is one.
type Store interface {
	Space(ctx context.Context, id string) (*amphi.Space, error)
	SetSpaceState(ctx context.Context, id string, from []amphi.State, to amphi.State, at time.Time) (*amphi.Space, error)
	EndSpace(ctx context.Context, id string, from []amphi.State, at time.Time, why amphi.EndReason) (*amphi.Space, error)
	PutRecording(ctx context.Context, r *amphi.Recording) error
	UnfinalizedRecordings(ctx context.Context) ([]*amphi.Recording, error)
	PutTimeline(ctx context.Context, spaceID string, spans []amphi.SpeakerSpan, counts []amphi.ReactionCount) error
}

var _ Store = (*store.DB)(nil)

// Sessions holds the node's places on air and takes spaces off air.
// *live.Manager is one.
type Sessions interface {
	Reserve() (*live.Place, error)
	Stop(spaceID string) error
}

var _ Sessions = (*live.Manager)(nil)

// Config configures a Lifecycle.
type Config struct {
	// DataDir is where recordings are written, under recordings/.
	// Required.
	DataDir string
	// Logger receives the ends the lifecycle makes on its own (idle
	// spaces, crash recovery). Nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Lifecycle puts the spaces of a node on air and takes them off: each
// start and end changes the store, the live pipeline and the Directory
// together.
type Lifecycle struct {
	cfg      Config
	dir      *Directory
	db       Store
	sessions Sessions
	idleEnds sync.WaitGroup // endWhenIdle, one per space on air
	// timelines runs keepTimeline, one per space on air.
	timelines sync.WaitGroup
}

// NewLifecycle returns the lifecycle of the spaces in dir, stored in db and
// put on air through sessions.
func NewLifecycle(cfg Config, dir *Directory, db Store, sessions Sessions) *Lifecycle {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Lifecycle{cfg: cfg, dir: dir, db: db, sessions: sessions}
}

// Reserve holds one of the node's places on air for a space about to
// start (live.Manager.Reserve): amphi.EFull past the node's cap.
func (l *Lifecycle) Reserve() (*live.Place, error) { return l.sessions.Reserve() }

// recordingPath is where a space's recording is, under the data directory.
func recordingPath(id string) string {
	return filepath.Join("recordings", id+".opus")
}

// Start puts a scheduled space on air in the place held for it, and ends
// it once nobody has been on its stage for the live manager's idle time.
func (l *Lifecycle) Start(ctx context.Context, id string, place *live.Place) (*amphi.Space, error) {
	sp, err := l.db.SetSpaceState(ctx, id, []amphi.State{amphi.StateScheduled}, amphi.StateLive, l.cfg.Now())
	if err != nil {
		return nil, err
	}
	rel := recordingPath(id)
	if err := l.db.PutRecording(ctx, &amphi.Recording{SpaceID: id, Path: rel}); err != nil {
		return nil, l.failStart(ctx, id, err)
	}
	sess, err := place.Start(sp, filepath.Join(l.cfg.DataDir, rel))
	if err != nil {
		return nil, l.failStart(ctx, id, err)
	}
	on := l.dir.putOnAir(id, sess, l.cfg.Now())
	l.timelines.Go(func() { l.keepTimeline(on) })
	l.idleEnds.Go(func() { l.endWhenIdle(sess) })
	return sp, nil
}

// failStart ends a space whose pipeline could not start, so it is not left
// "live" with nothing on air.
func (l *Lifecycle) failStart(ctx context.Context, id string, err error) error {
	if _, err2 := l.db.EndSpace(ctx, id, []amphi.State{amphi.StateLive}, l.cfg.Now(), amphi.EndFailed); err2 != nil {
		err = errors.Join(err, err2)
	}
	return fmt.Errorf("space: start %s: %w", id, err)
}

// End takes the space off air for good (or cancels a scheduled one),
// recording why, and finalises its recording.
func (l *Lifecycle) End(ctx context.Context, id string, why amphi.EndReason) (*amphi.Space, error) {
	info, err := l.db.EndSpace(ctx, id, []amphi.State{amphi.StateScheduled, amphi.StateLive}, l.cfg.Now(), why)
	if err != nil {
		return nil, err
	}
	sp := l.dir.remove(id, why)
	stopErr := l.sessions.Stop(id)
	if sp != nil && sp.session != nil {
		// Its timeline's last flush, so that whoever reads it once the
		// space has ended reads all of it.
		select {
		case <-sp.saved:
		case <-ctx.Done():
		}
		rec := sp.session.Recorder()
		if err := l.db.PutRecording(ctx, &amphi.Recording{
			SpaceID: id, Path: recordingPath(id), Duration: rec.Duration(), Bytes: rec.Bytes(), Finalized: true,
		}); err != nil {
			return nil, errors.Join(stopErr, err)
		}
	}
	if stopErr != nil {
		return nil, fmt.Errorf("space: end %s: %w", id, stopErr)
	}
	return info, nil
}

// EndAll ends every space on air here: what a graceful shutdown does.
func (l *Lifecycle) EndAll(ctx context.Context) error {
	var errs []error
	for _, sp := range l.dir.All() {
		if sp.session == nil {
			continue // scheduled, or on air on another node
		}
		if _, err := l.End(ctx, sp.id, amphi.EndShutdown); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// endWhenIdle ends the session's space once nobody has been on its stage
// for the idle time, unless it goes off air first.
func (l *Lifecycle) endWhenIdle(sess *live.Session) {
	select {
	case <-sess.Done():
		return
	case <-sess.Idle():
	}
	// The request that started the space is long gone: this end is the
	// server's own.
	_, err := l.End(context.Background(), sess.SpaceID(), amphi.EndIdle)
	switch {
	case err == nil:
		l.cfg.Logger.Info("space: ended a space nobody was on stage in", "space", sess.SpaceID())
	case amphi.ErrorCode(err) != amphi.EConflict: // not ended meanwhile by its host
		l.cfg.Logger.Error("space: end an idle space", "space", sess.SpaceID(), "err", err)
	}
}

// Wait waits for the ends of idle spaces under way and the timelines'
// last flushes. Call it once the live manager is closed, before the store
// is.
func (l *Lifecycle) Wait() {
	l.idleEnds.Wait()
	l.timelines.Wait()
}

// Recover puts back on air the spaces a crash left live, and finishes the
// recordings it left open. A live space resumes in its own place on air
// (Resume): same id and start, its program going on in the same file. One
// that cannot (no place on air, a file cut before its program began or
// already ended) is ended, as is the recording of a space no longer live:
// its file is cut to its last complete page, ended with an EOS page and
// indexed as final.
func (l *Lifecycle) Recover(ctx context.Context) error {
	recs, err := l.db.UnfinalizedRecordings(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, rec := range recs {
		sp, err := l.db.Space(ctx, rec.SpaceID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if sp.State == amphi.StateLive {
			err := l.resume(sp, rec)
			if err == nil {
				l.cfg.Logger.Warn("space: resumed a space a crash took off air", "space", sp.ID)
				continue
			}
			l.cfg.Logger.Error("space: could not resume a space a crash took off air: ending it", "space", sp.ID, "err", err)
		}
		if err := l.finish(ctx, sp, rec); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// resume puts a live space back on air, its program going on in its
// recording.
func (l *Lifecycle) resume(sp *amphi.Space, rec *amphi.Recording) error {
	place, err := l.sessions.Reserve()
	if err != nil {
		return err
	}
	defer place.Release()
	sess, err := place.Resume(sp, filepath.Join(l.cfg.DataDir, rec.Path))
	if err != nil {
		return err
	}
	on := l.dir.putOnAir(sp.ID, sess, l.cfg.Now())
	l.timelines.Go(func() { l.keepTimeline(on) })
	l.idleEnds.Go(func() { l.endWhenIdle(sess) })
	return nil
}

// finish finishes the recording a crash left open, ending its space if it
// is still live.
func (l *Lifecycle) finish(ctx context.Context, sp *amphi.Space, rec *amphi.Recording) error {
	size, d, err := record.Recover(filepath.Join(l.cfg.DataDir, rec.Path), program.Headers(sp.Serial))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if sp.State == amphi.StateLive {
		end := l.cfg.Now()
		if sp.StartedAt != nil {
			end = sp.StartedAt.Add(d)
		}
		if _, err := l.db.EndSpace(ctx, sp.ID, []amphi.State{amphi.StateLive}, end, amphi.EndCrash); err != nil {
			return err
		}
	}
	rec.Bytes, rec.Duration, rec.Finalized = size, d, true
	if err := l.db.PutRecording(ctx, rec); err != nil {
		return err
	}
	l.cfg.Logger.Warn("space: finished the recording a crash left open", "space", rec.SpaceID, "duration", d, "bytes", size)
	return nil
}
