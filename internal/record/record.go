// Package record writes a space's program to disk as it is made: one Ogg
// Opus file per space, the same pages listeners receive, so the recording is
// the broadcast. Pages are written as each chunk completes and synced every
// second, so a crash loses at most the last second. After a crash, Continue
// cuts the file to its last complete page and appends the resumed program
// to it, numbering on, so the file stays one stream; Recover cuts and ends
// (EOS) the file of a program that will not go on. The host may pause the
// recording while the space is live: chunks made meanwhile are left out and
// the pages after the pause are renumbered and moved back in time, so the
// file stays one continuous Ogg Opus stream of the audio actually recorded.
package record

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/ogg"
	"github.com/amphi-audio/amphi/internal/program"
)

// Config tunes a recorder.
type Config struct {
	// SyncEvery is how often the file is fsynced. Zero means 1 s: what a
	// power cut may lose. A killed process loses nothing already written.
	SyncEvery time.Duration
	// Queue is how many chunks may wait for the disk. Zero means 600 (a
	// minute); past it chunks are dropped and counted rather than stall
	// the mixer.
	Queue int
	// Logger receives write errors. Nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Knobs inject disk faults in tests and rehearsals. The zero value
	// injects none.
	Knobs Knobs
}

// Knobs are fault-injection hooks for tests and rehearsals; nil fields do
// nothing.
type Knobs struct {
	// Open runs before the file is created (or opened, by Continue); an
	// error it returns is Create's (Continue's), as from a missing or
	// read-only disk.
	Open func(path string) error
	// Write runs before each write(2); an error it returns is the write's,
	// as from a full disk. Sleeping in it makes a slow disk.
	Write func() error
	// Sync runs before each fsync; an error it returns is the sync's.
	Sync func() error
}

// open runs the Open knob, if any, before path is opened.
func (k *Knobs) open(path string) error {
	if k.Open != nil {
		return k.Open(path)
	}
	return nil
}

// write writes p to f, through the Write knob.
func (k *Knobs) write(f *os.File, p []byte) error {
	if k.Write != nil {
		if err := k.Write(); err != nil {
			return err
		}
	}
	_, err := f.Write(p)
	return err
}

// sync syncs f, through the Sync knob.
func (k *Knobs) sync(f *os.File) error {
	if k.Sync != nil {
		if err := k.Sync(); err != nil {
			return err
		}
	}
	return f.Sync()
}

// behindLimit is how far the disk may fall behind the program before the
// recorder counts it as lagging (Lagged): past it a crash loses more than
// the SyncEvery it promises. Twice that period, so one slow fsync on a busy
// machine is not a fault.
const behindLimit = 2 * time.Second

// DefaultConfig returns the defaults described on Config's fields.
func DefaultConfig() Config {
	return Config{SyncEvery: time.Second, Queue: 600}
}

// Recorder appends a program's chunks to one file on its own goroutine, so
// the disk never blocks the mixer. Write is called from one goroutine, the
// mixer's, in chunk order; the other methods from any.
type Recorder struct {
	cfg  Config
	f    *os.File
	path string
	q    chan queued
	done chan struct{}
	once sync.Once

	written atomic.Pointer[Mark]
	dropped atomic.Int64
	lagged  atomic.Int64
	err     atomic.Pointer[error]

	paused atomic.Bool
	// What pausing has left out so far, kept by Write: the pages after a
	// pause are moved back by this much so the file has no hole.
	skipSamples atomic.Int64
	skipPages   atomic.Int64

	buf []byte // a page rewritten by run, reused
}

// queued is a chunk waiting for the disk, with what pausing had left out of
// the file before it.
type queued struct {
	c           *program.Chunk
	skipSamples int64 // audio, in 48 kHz samples, to take off its granule
	skipPages   int64 // pages to take off its sequence number
	// paused marks the program's last chunk arriving while paused: its
	// audio is left out but an empty EOS page still ends the file.
	paused bool
}

// Create creates the file at path, writes the program's header pages and
// starts the writer.
func Create(path string, headers []byte, cfg Config) (*Recorder, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Knobs.open(path); err != nil {
		return nil, fmt.Errorf("record: create: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("record: create: %w", err)
	}
	if err := cfg.Knobs.write(f, headers); err != nil {
		f.Close()
		return nil, fmt.Errorf("record: write headers: %w", err)
	}
	return start(f, path, cfg, Mark{Bytes: int64(len(headers))}), nil
}

// Continue opens the recording at path of a program a crash cut, cuts it
// to its last complete page and starts a writer that appends to it: the
// program resumed after the crash goes on in the same file, from the
// returned position, so the file stays one stream; paused if the host had
// paused it (Pause). It fails, leaving the
// file cut, when the file does not begin with the program's header pages
// (same serial) or has ended (EOS): such a program cannot go on.
func Continue(path string, headers []byte, cfg Config) (*Recorder, program.Position, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Knobs.open(path); err != nil {
		return nil, program.Position{}, fmt.Errorf("record: continue: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return nil, program.Position{}, fmt.Errorf("record: continue: %w", err)
	}
	p, err := cut(f)
	if err == nil {
		err = continuable(p, headers)
	}
	if err != nil {
		f.Close()
		return nil, program.Position{}, fmt.Errorf("record: continue %s: %w", path, err)
	}
	at := program.After(p.Last)
	r := start(f, path, cfg, Mark{Bytes: p.Len, Granule: max(p.Granule, 0), Next: at.Seq})
	if _, err := os.Stat(pausedMark(path)); err == nil {
		r.paused.Store(true) // as the host left it
	}
	return r, at, nil
}

// continuable says why a recording cut to p cannot go on as the program
// whose header pages are headers, or nil if it can.
func continuable(p ogg.Prefix, headers []byte) error {
	h := headerPrefix(headers)
	switch {
	case p.Pages < h.Pages:
		return fmt.Errorf("%d complete pages, fewer than the %d header pages", p.Pages, h.Pages)
	case p.Last.Serial != h.Last.Serial:
		return fmt.Errorf("serial %#x, the program's is %#x", p.Last.Serial, h.Last.Serial)
	case p.Last.Flags&ogg.FlagEOS != 0:
		return errors.New("the program ended (EOS)")
	}
	return nil
}

// headerPrefix describes a program's header pages, built by the program
// package, so they parse.
func headerPrefix(headers []byte) ogg.Prefix {
	h, _ := ogg.ScanPrefix(bytes.NewReader(headers))
	return h
}

// withDefaults returns c with its zero fields set as documented.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.SyncEvery == 0 {
		c.SyncEvery = d.SyncEvery
	}
	if c.Queue == 0 {
		c.Queue = d.Queue
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// start starts the writer of f, which holds what at says.
func start(f *os.File, path string, cfg Config, at Mark) *Recorder {
	r := &Recorder{cfg: cfg, f: f, path: path, q: make(chan queued, cfg.Queue), done: make(chan struct{})}
	r.written.Store(&at)
	go r.run()
	return r
}

// Write queues a chunk. It never blocks: when the disk is that far behind,
// the chunk is dropped and counted. While paused it discards the chunk,
// except the program's last (End) one, which still ends the file.
func (r *Recorder) Write(c *program.Chunk) {
	if r.paused.Load() {
		// Every chunk but the last holds amphi.ChunkSamples, so chunk c.Seq
		// starts at c.Seq*amphi.ChunkSamples whatever was dropped or skipped
		// before it, and its audio is its granule minus that.
		n := max(header(c.Page).Granule-int64(c.Seq)*amphi.ChunkSamples, 0)
		skip := r.skipSamples.Add(n)
		if !c.End {
			r.skipPages.Add(1)
			return
		}
		r.enqueue(queued{c: c, skipSamples: skip, skipPages: r.skipPages.Load(), paused: true})
		return
	}
	r.enqueue(queued{c: c, skipSamples: r.skipSamples.Load(), skipPages: r.skipPages.Load()})
}

func (r *Recorder) enqueue(q queued) {
	select {
	case r.q <- q:
	default:
		r.dropped.Add(1)
	}
}

// Pause stops writing chunks to the file until Resume; chunks written
// meanwhile are discarded (not counted as dropped). It takes effect from the
// next Write, so at a chunk boundary; chunks already queued are written.
// Pausing twice is the same as once. It is safe to call from any goroutine
// and never blocks Write. A mark beside the file (pausedMark) keeps the
// pause across a crash: Continue starts paused.
func (r *Recorder) Pause() {
	if !r.paused.Swap(true) {
		if err := os.WriteFile(pausedMark(r.path), nil, 0o600); err != nil {
			r.cfg.Logger.Error("record: the pause would not outlive a crash", "path", r.path, "err", err)
		}
	}
}

// Resume writes chunks again, from the next Write. The pages written from
// then on continue the file's page numbers and granule positions, so the
// paused time leaves no gap. Resuming when not paused does nothing.
func (r *Recorder) Resume() {
	if r.paused.Swap(false) {
		dropPausedMark(r.path, r.cfg.Logger)
	}
}

// pausedMark is the file that says the recording at path is paused: a host
// who paused it is not recorded again because the server restarted.
func pausedMark(path string) string { return path + ".paused" }

// dropPausedMark removes the paused mark of the recording at path, if any.
func dropPausedMark(path string, logger *slog.Logger) {
	if err := os.Remove(pausedMark(path)); err != nil && !errors.Is(err, os.ErrNotExist) {
		logger.Error("record: remove the paused mark", "path", path, "err", err)
	}
}

// Recording reports whether chunks are being written (true unless paused).
func (r *Recorder) Recording() bool { return !r.paused.Load() }

func (r *Recorder) run() {
	defer close(r.done)
	lastSync := r.cfg.Now()
	behind := false
	for q := range r.q {
		// Counted once per episode, as the mixer counts its stalls.
		if n := len(r.q); n >= int(behindLimit/amphi.ChunkDuration) && !behind {
			behind = true
			r.lagged.Add(1)
		} else if n == 0 {
			behind = false
		}
		c := q.c
		if r.err.Load() != nil {
			r.dropped.Add(1)
			continue
		}
		page := r.page(q)
		// One write(2) a page and no user-space buffer: what returned is in
		// the kernel and survives the process being killed.
		if err := r.cfg.Knobs.write(r.f, page); err != nil {
			r.fail(fmt.Errorf("record: write chunk %d: %w", c.Seq, err))
			continue
		}
		w := r.written.Load()
		r.written.Store(&Mark{Bytes: w.Bytes + int64(len(page)), Granule: header(page).Granule, Next: c.Seq + 1})
		if now := r.cfg.Now(); now.Sub(lastSync) >= r.cfg.SyncEvery {
			if err := r.cfg.Knobs.sync(r.f); err != nil {
				r.fail(fmt.Errorf("record: sync: %w", err))
			}
			lastSync = now
		}
	}
}

// page returns the bytes to write for q: the chunk's own page when nothing
// was paused before it, else a copy moved back by what pausing left out,
// with its checksum recomputed.
func (r *Recorder) page(q queued) []byte {
	page := q.c.Page
	if q.skipSamples == 0 && q.skipPages == 0 {
		return page
	}
	h := header(page)
	granule, seq := h.Granule-q.skipSamples, h.Seq-uint32(q.skipPages)
	if q.paused {
		r.buf = appendEOS(r.buf[:0], granule, h.Serial, seq)
		return r.buf
	}
	r.buf = append(r.buf[:0], page...)
	ogg.Renumber(r.buf, granule, seq)
	return r.buf
}

func (r *Recorder) fail(err error) {
	r.cfg.Logger.Error("record: recording stopped", "path", r.path, "err", err)
	r.err.CompareAndSwap(nil, &err)
}

// Close writes what is queued, syncs and closes the file. Write must not be
// called after Close.
func (r *Recorder) Close() error {
	err := r.Detach()
	dropPausedMark(r.path, r.cfg.Logger) // the program is over
	return err
}

// Detach is Close for a program that goes on in another process (a
// standby taking over): the file is left for it to continue (Continue),
// paused if it was.
func (r *Recorder) Detach() error {
	r.once.Do(func() { close(r.q) })
	<-r.done
	var errs []error
	if p := r.err.Load(); p != nil {
		errs = append(errs, *p)
	}
	if err := r.cfg.Knobs.sync(r.f); err != nil {
		errs = append(errs, fmt.Errorf("record: sync: %w", err))
	}
	if err := r.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		errs = append(errs, fmt.Errorf("record: close: %w", err))
	}
	return errors.Join(errs...)
}

// Mark is how far a recording's file goes: a reader that reads no further
// than Bytes reads whole pages, and the program goes on after them from
// chunk Next (what pausing left out is before it), which is how a listener
// who rewound into the file joins the live program without a hole.
type Mark struct {
	Bytes   int64  // the file's size
	Granule int64  // the granule position of its last page
	Next    uint64 // the program's chunk after the last one written
}

// Written returns how far the file goes, in one consistent read.
func (r *Recorder) Written() Mark { return *r.written.Load() }

// Path is the recording's file.
func (r *Recorder) Path() string { return r.path }

// Bytes returns the file's size so far.
func (r *Recorder) Bytes() int64 { return r.Written().Bytes }

// Duration returns the audio written so far: what was recorded, without the
// time spent paused.
func (r *Recorder) Duration() time.Duration { return granuleDuration(r.Written().Granule) }

// Dropped returns how many chunks never reached the file.
func (r *Recorder) Dropped() int64 { return r.dropped.Load() }

// Lagged returns how many times the disk fell behindLimit (2 s of chunks)
// or more behind the program.
func (r *Recorder) Lagged() int64 { return r.lagged.Load() }

// Err returns the error that stopped the recording, if any.
func (r *Recorder) Err() error {
	if p := r.err.Load(); p != nil {
		return *p
	}
	return nil
}

// header reads the header of a chunk's page. The program's packer built
// the page, so it parses; a page that did not would read as granule 0.
func header(page []byte) ogg.Header {
	h, _ := ogg.ParseHeader(page)
	return h
}

// granuleDuration converts a program granule position to playable time:
// the pre-skip samples are not heard.
func granuleDuration(g int64) time.Duration {
	if g <= program.PreSkip {
		return 0
	}
	return time.Duration(g-program.PreSkip) * time.Second / amphi.SampleRate
}

// appendEOS appends an empty EOS page at granule: how program.Packer ends a
// program with no frames pending (RFC 3533 allows a page without packets).
func appendEOS(dst []byte, granule int64, serial, seq uint32) []byte {
	dst, err := ogg.AppendPage(dst, &ogg.Page{Flags: ogg.FlagEOS, Granule: granule, Serial: serial, Seq: seq})
	if err != nil {
		panic(err) // an empty page always fits
	}
	return dst
}

// cut truncates f, read from its start, to its longest prefix of complete
// pages and syncs it: the pages a crash left, without the one it tore.
func cut(f *os.File) (ogg.Prefix, error) {
	p, err := ogg.ScanPrefix(f)
	if err != nil {
		return p, err
	}
	if err := f.Truncate(p.Len); err != nil {
		return p, fmt.Errorf("truncate: %w", err)
	}
	if err := f.Sync(); err != nil {
		return p, fmt.Errorf("sync: %w", err)
	}
	return p, nil
}

// Recover finishes a recording cut by a crash, whose program will not go
// on: it truncates the file to its last complete page and ends it with an
// EOS page, so players know it is whole. A file cut inside its header
// pages is made the program's headers (headers) and an EOS page: an empty
// recording. It returns the file's size and audio duration.
func Recover(path string, headers []byte) (size int64, d time.Duration, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("record: recover: %w", err)
	}
	defer f.Close()
	dropPausedMark(path, slog.Default())
	p, err := cut(f)
	if err != nil {
		return 0, 0, fmt.Errorf("record: recover %s: %w", path, err)
	}
	var end []byte // what the file gets after its first size bytes
	size = p.Len
	if h := headerPrefix(headers); p.Pages < h.Pages {
		if err := f.Truncate(0); err != nil {
			return 0, 0, fmt.Errorf("record: recover %s: truncate: %w", path, err)
		}
		end, p, size = append(end, headers...), h, 0
	}
	if p.Last.Flags&ogg.FlagEOS == 0 {
		end = appendEOS(end, max(p.Granule, 0), p.Last.Serial, p.Last.Seq+1)
	}
	if len(end) > 0 {
		if _, err := f.Write(end); err != nil {
			return 0, 0, fmt.Errorf("record: recover %s: end the file: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			return 0, 0, fmt.Errorf("record: recover %s: sync: %w", path, err)
		}
	}
	return size + int64(len(end)), granuleDuration(max(p.Granule, 0)), nil
}
