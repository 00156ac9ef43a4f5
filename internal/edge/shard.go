package edge

import (
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/program"
)

const (
	// maxIovecs bounds one writev: a listener further behind catches up
	// over several wake-ups, each far more than a socket buffer.
	maxIovecs = 64
	// shardGrow is how many listeners each shard of a ring takes before the
	// ring gets another shard, up to GOMAXPROCS.
	shardGrow = 256
	// minTick bounds how often an idle shard wakes when Coalesce is tiny.
	minTick = 20 * time.Millisecond
)

// What of a stream a listener is writing.
const (
	stageHead    uint8 = iota // the HTTP response head
	stageHeaders              // the OpusHead and OpusTags pages
	stageChunks               // chunk pos's page
)

// listener is one stream, held by value in its shard: 48 bytes.
type listener struct {
	fd       int32  // owned: only the listener's shard writes and closes it
	off      uint32 // bytes of the current element (stage, pos) already written
	stage    uint8
	batch    uint8                  // chunks written together; a lone one waits as long
	pos      uint64                 // next chunk to send
	progress int64                  // Edge.now when it last wrote, or had nothing to write
	onEnd    func(reason EndReason) // Serve's callback, or nil
	stop     *atomic.Bool           // Stream.Stop, or nil
}

// Element markers in writer.seqs: chunk numbers never get there.
const (
	seqHead    = ^uint64(0)
	seqHeaders = ^uint64(0) - 1
)

// writer builds one writev of a listener's pending bytes straight from the
// ring. Its vectors are reused, so a write allocates nothing.
type writer struct {
	head []byte // the response head (responseHead)
	iov  []unix.Iovec
	seqs []uint64 // what each iovec is: seqHead, seqHeaders or a chunk number
}

func newWriter(n int, head []byte) *writer {
	return &writer{head: head, iov: make([]unix.Iovec, 0, n), seqs: make([]uint64, 0, n)}
}

func (w *writer) add(b []byte, seq uint64) {
	var v unix.Iovec
	v.Base = &b[0]
	v.SetLen(len(b))
	w.iov = append(w.iov, v)
	w.seqs = append(w.seqs, seq)
}

// write makes one non-blocking writev of l's pending bytes up to chunk next
// and moves l on by what the socket took. full reports that it took
// everything that was built; behind, that l's partly written page left the
// ring; held, that it stopped at a hole a fetch may still fill.
func (w *writer) write(l *listener, r *program.Ring, next uint64) (n int64, errno unix.Errno, full, behind, held bool) {
	w.iov, w.seqs = w.iov[:0], w.seqs[:0]
	off := l.off
	if l.stage == stageHead {
		w.add(w.head[off:], seqHead)
		off = 0
	}
	if l.stage <= stageHeaders {
		w.add(r.Headers()[off:], seqHeaders)
		off = 0
	}
	upTo := l.pos
	for ; upTo < next && len(w.iov) < cap(w.iov); upTo++ {
		c := r.Get(upTo)
		if c == nil {
			if off > 0 {
				return 0, 0, false, true, false
			}
			if r.Holding() {
				held = true
				break
			}
			continue // lost for good: the player sees a page gap
		}
		w.add(c.Page[off:], upTo)
		off = 0
	}
	if len(w.iov) > 0 {
		r1, _, e := unix.Syscall(unix.SYS_WRITEV, uintptr(l.fd), uintptr(unsafe.Pointer(&w.iov[0])), uintptr(len(w.iov)))
		if e != 0 {
			clear(w.iov) // drop references to chunks so the ring's memory can go
			return 0, e, false, false, false
		}
		n = int64(r1)
	}
	full = l.advance(n, w.iov, w.seqs, upTo)
	clear(w.iov)
	return n, 0, full, false, held
}

// advance moves l on by n bytes of the elements iov holds.
func (l *listener) advance(n int64, iov []unix.Iovec, seqs []uint64, upTo uint64) (full bool) {
	for k := range iov {
		if size := int64(iov[k].Len); n < size {
			if k > 0 {
				l.off = 0
			}
			l.off += uint32(n)
			switch seqs[k] {
			case seqHead:
				l.stage = stageHead
			case seqHeaders:
				l.stage = stageHeaders
			default:
				l.stage, l.pos = stageChunks, seqs[k]
			}
			return false
		} else {
			n -= size
		}
	}
	l.stage, l.off, l.pos = stageChunks, 0, upTo
	return true
}

// service writes l what is due at now and reports the reason its stream
// ended, or 0. A batch of chunks is due, or a lone chunk once l has waited
// as long as a batch lasts, or whatever is left of a started write, or anything once the
// program has ended.
func (e *Edge) service(l *listener, r *program.Ring, w *writer, now int64) (EndReason, error) {
	if l.stop != nil && l.stop.Load() {
		return EndReplaced, nil
	}
	for {
		next, oldest := r.Next(), r.Oldest()
		if l.pos < oldest || next-l.pos > e.maxLag {
			return EndBehind, fmt.Errorf("edge: listener at chunk %d, the live edge at %d", l.pos, next)
		}
		ended := r.Ended()
		if l.stage == stageChunks && l.off == 0 {
			if l.pos >= next {
				if ended {
					return EndProgram, nil
				}
				l.progress = now // an idle socket is not a stuck one
				return 0, nil
			}
			if next-l.pos < uint64(l.batch) && !ended && now-l.progress < int64(l.batch)*int64(amphi.ChunkDuration) {
				return 0, nil
			}
		}
		n, errno, full, behind, held := w.write(l, r, next)
		if behind {
			return EndBehind, fmt.Errorf("edge: listener's chunk %d left the ring", l.pos)
		}
		if n > 0 {
			e.bytes.Add(n)
			l.progress = now
		}
		switch errno {
		case 0:
		case unix.EAGAIN, unix.EINTR:
			if now-l.progress >= e.writeTimeout {
				return EndWrite, fmt.Errorf("edge: socket took nothing for %v", time.Duration(now-l.progress))
			}
			return 0, nil
		case unix.EPIPE, unix.ECONNRESET:
			return EndGone, nil
		default:
			return EndWrite, fmt.Errorf("edge: writev: %w", errno)
		}
		if !full { // the socket is full: the rest at the next wake-up
			if now-l.progress >= e.writeTimeout {
				return EndWrite, fmt.Errorf("edge: socket took nothing for %v", time.Duration(now-l.progress))
			}
			return 0, nil
		}
		if held { // the rest once the hole is filled, or given up on
			return 0, nil
		}
	}
}

// group is the writers of one ring.
type group struct {
	ring    *program.Ring
	shards  []*shard
	running int // shards whose goroutine runs
}

// shard is a goroutine writing to a slice of one ring's listeners. It wakes
// when a chunk is published, when a listener is handed to it, and every
// tick (Coalesce) to flush a lone chunk, retry full sockets and cut stuck
// ones. It runs only while it has listeners.
type shard struct {
	e    *Edge
	g    *group
	kick chan struct{} // a listener was handed over

	// Guarded by Edge.mu.
	incoming []listener
	running  bool
	count    int // listeners, incoming included

	// Owned by the shard's goroutine.
	ls []listener
	w  *writer
}

// handOver gives l to one of ring's shards, starting it if need be. It
// reports false if the edge is closed.
func (e *Edge) handOver(ring *program.Ring, l listener) bool {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return false
	}
	g := e.groups[ring]
	if g == nil {
		g = &group{ring: ring}
		e.groups[ring] = g
	}
	var s *shard
	for _, c := range g.shards {
		if s == nil || c.count < s.count {
			s = c
		}
	}
	if s == nil || (s.count >= shardGrow && len(g.shards) < e.maxShards) {
		s = &shard{e: e, g: g, kick: make(chan struct{}, 1), w: newWriter(maxIovecs+2, e.head)}
		g.shards = append(g.shards, s)
	}
	s.incoming = append(s.incoming, l)
	s.count++
	if !s.running {
		s.running = true
		g.running++
		e.wg.Add(1)
		go s.run()
	}
	e.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return true
}

func (s *shard) run() {
	defer s.e.wg.Done()
	ring := s.g.ring
	tick := time.NewTicker(s.e.tick)
	defer tick.Stop()
	for {
		wait := ring.Wait() // before the walk reads Next, so no chunk is missed
		select {
		case <-s.e.done:
			s.stop()
			return
		default:
		}
		if !s.take() {
			return
		}
		s.walk(s.e.now())
		select {
		case <-wait:
		case <-tick.C:
		case <-s.kick:
		case <-s.e.done:
			s.stop()
			return
		}
	}
}

// take moves the incoming listeners into the shard's. If it has none at all,
// the shard stops and take reports false.
func (s *shard) take() bool {
	e := s.e
	e.mu.Lock()
	defer e.mu.Unlock()
	s.ls = append(s.ls, s.incoming...)
	clear(s.incoming)
	s.incoming = s.incoming[:0]
	s.count = len(s.ls)
	if len(s.ls) > 0 {
		return true
	}
	s.running = false
	s.g.running--
	if s.g.running == 0 && e.groups[s.g.ring] == s.g {
		delete(e.groups, s.g.ring) // lets the ring go once it is dropped
	}
	return false
}

// walk services every listener once, dropping those whose stream ended.
func (s *shard) walk(now int64) {
	ring := s.g.ring
	for i := 0; i < len(s.ls); {
		l := &s.ls[i]
		reason, err := s.e.service(l, ring, s.w, now)
		if reason == 0 {
			i++
			continue
		}
		s.e.end(l, reason, err)
		last := len(s.ls) - 1
		s.ls[i] = s.ls[last]
		s.ls = s.ls[:last]
	}
}

// stop ends every listener of the shard: the edge is closing.
func (s *shard) stop() {
	e := s.e
	e.mu.Lock()
	s.ls = append(s.ls, s.incoming...)
	s.incoming = nil
	s.count = 0
	s.running = false
	s.g.running--
	e.mu.Unlock()
	for i := range s.ls {
		e.end(&s.ls[i], EndClosed, nil)
	}
	s.ls = nil
}
