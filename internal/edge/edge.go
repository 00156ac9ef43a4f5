// Package edge serves listeners. It keeps a ring of program chunks per live
// space, filled from the bus, and streams them to each listener as
// progressive Ogg Opus: the header pages, a short burst from just behind the
// live edge, then every chunk as it arrives.
//
// A listener costs a cursor into the shared ring and its connection: pages
// are written straight from the ring with writev, so delivering a chunk
// allocates nothing per listener. The edge knows nothing of the stage, the
// mixer or WebRTC; a dependency test keeps it so.
package edge

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/program"
)

// Config tunes the edge.
type Config struct {
	// RingChunks is how many chunks each space keeps in memory. Zero means
	// 300 (30 s), which bounds the largest burst and how far a slow
	// listener may fall behind before it is cut.
	RingChunks int
	// Burst is the audio a listener receives at once on connect unless its
	// request asks otherwise. Zero means 500 ms.
	Burst time.Duration
	// MaxBurst caps a burst a request may ask for. Zero means 10 s.
	MaxBurst time.Duration
	// Coalesce is how long chunks may wait to be written together: each
	// write costs far more than its bytes (DESIGN.md). Zero means 200 ms.
	Coalesce time.Duration
	// WriteTimeout cuts a listener whose socket accepts nothing for this
	// long. Zero means 5 s.
	WriteTimeout time.Duration
	// NotSentLowat bounds the unsent bytes a socket may hold
	// (TCP_NOTSENT_LOWAT), so a listener that stops reading blocks writes
	// and is cut by WriteTimeout instead of pinning a growing buffer. Zero
	// means 16 KiB, about 4 s at 32 kbit/s.
	NotSentLowat int
	// RingWait is how long a listener who arrives before a live space's
	// first chunk waits for it. Zero means 2 s.
	RingWait time.Duration
	// Logger receives listener errors at debug level. Nil means
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns the defaults described on Config's fields.
func DefaultConfig() Config {
	return Config{
		RingChunks:   300,
		Burst:        500 * time.Millisecond,
		MaxBurst:     10 * time.Second,
		Coalesce:     200 * time.Millisecond,
		WriteTimeout: 5 * time.Second,
		NotSentLowat: 16 << 10,
		RingWait:     2 * time.Second,
	}
}

func (c *Config) setDefaults() {
	d := DefaultConfig()
	if c.RingChunks == 0 {
		c.RingChunks = d.RingChunks
	}
	if c.Burst == 0 {
		c.Burst = d.Burst
	}
	if c.MaxBurst == 0 {
		c.MaxBurst = d.MaxBurst
	}
	if c.Coalesce == 0 {
		c.Coalesce = d.Coalesce
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.NotSentLowat == 0 {
		c.NotSentLowat = d.NotSentLowat
	}
	if c.RingWait == 0 {
		c.RingWait = d.RingWait
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Reasons a listener's stream ends, counted in Stats.
const (
	EndProgram = "program_ended" // the space ended: a clean end
	EndBehind  = "behind"        // fell out of the ring
	EndWrite   = "write"         // the socket failed or timed out
	EndClosed  = "closed"        // the edge shut down
)

// Stats are the edge's counters.
type Stats struct {
	Listeners int64            // connected now
	Served    int64            // streams started since start
	Bytes     int64            // bytes written to listeners
	Chunks    int64            // chunks received from the bus
	Stale     int64            // chunks ignored as old or duplicate
	Ended     map[string]int64 // streams ended, by reason
}

// Edge holds the rings and the listeners of this node.
type Edge struct {
	cfg   Config
	batch uint64 // chunks written together

	mu      sync.Mutex
	rings   map[string]*program.Ring
	endedAt map[string]time.Time
	added   chan struct{} // closed and replaced when a ring is added
	conns   map[net.Conn]struct{}
	closed  bool
	done    chan struct{} // closed by Close

	listeners, served, bytes, chunks, stale   atomic.Int64
	endProgram, endBehind, endWrite, endClose atomic.Int64
}

// New returns an edge with no spaces.
func New(cfg Config) *Edge {
	cfg.setDefaults()
	batch := uint64(cfg.Coalesce / program.ChunkDuration)
	if batch < 1 {
		batch = 1
	}
	return &Edge{
		cfg:     cfg,
		batch:   batch,
		rings:   make(map[string]*program.Ring),
		endedAt: make(map[string]time.Time),
		added:   make(chan struct{}),
		conns:   make(map[net.Conn]struct{}),
		done:    make(chan struct{}),
	}
}

// endedRingLife is how long a finished program's ring stays, so listeners
// who arrive just after the end get a clean ending rather than a 404.
const endedRingLife = time.Minute

// Publish adds a chunk of a space's program, creating the space's ring on
// its first chunk. It is called from the bus subscription.
func (e *Edge) Publish(spaceID string, c *program.Chunk) {
	e.chunks.Add(1)
	e.mu.Lock()
	r := e.rings[spaceID]
	if r == nil {
		e.dropEndedLocked()
		r = program.NewRing(program.Headers(pageSerial(c.Page)), e.cfg.RingChunks)
		e.rings[spaceID] = r
		close(e.added)
		e.added = make(chan struct{})
	}
	if c.End {
		e.endedAt[spaceID] = e.cfg.Now()
	}
	e.mu.Unlock()
	if !r.Publish(c) {
		e.stale.Add(1)
	}
}

func (e *Edge) dropEndedLocked() {
	now := e.cfg.Now()
	for id, at := range e.endedAt {
		if now.Sub(at) > endedRingLife {
			delete(e.rings, id)
			delete(e.endedAt, id)
		}
	}
}

// pageSerial reads the bitstream serial number of an Ogg page (RFC 3533).
func pageSerial(page []byte) uint32 { return binary.LittleEndian.Uint32(page[14:18]) }

// Ring returns the space's ring, waiting up to Config.RingWait for its first
// chunk. It returns nil if none came.
func (e *Edge) Ring(ctx context.Context, spaceID string) *program.Ring {
	timer := time.NewTimer(e.cfg.RingWait)
	defer timer.Stop()
	for {
		e.mu.Lock()
		r, added := e.rings[spaceID], e.added
		e.mu.Unlock()
		if r != nil {
			return r
		}
		select {
		case <-added:
		case <-timer.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// HasRing reports whether the space's program is on this edge now.
func (e *Edge) HasRing(spaceID string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rings[spaceID] != nil
}

// Stats returns a snapshot of the counters.
func (e *Edge) Stats() Stats {
	return Stats{
		Listeners: e.listeners.Load(),
		Served:    e.served.Load(),
		Bytes:     e.bytes.Load(),
		Chunks:    e.chunks.Load(),
		Stale:     e.stale.Load(),
		Ended: map[string]int64{
			EndProgram: e.endProgram.Load(),
			EndBehind:  e.endBehind.Load(),
			EndWrite:   e.endWrite.Load(),
			EndClosed:  e.endClose.Load(),
		},
	}
}

// Drain waits until every listener's stream has ended, or ctx is done. After
// the spaces end, it lets listeners receive the end of their program before
// Close cuts them.
func (e *Edge) Drain(ctx context.Context) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for e.listeners.Load() > 0 {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// Close cuts every listener. Streams in progress end with EndClosed.
func (e *Edge) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.closed {
		e.closed = true
		close(e.done)
	}
	for c := range e.conns {
		c.Close()
	}
	return nil
}

func (e *Edge) track(c net.Conn) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.conns[c] = struct{}{}
	return true
}

func (e *Edge) untrack(c net.Conn) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.conns, c)
}

func (e *Edge) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

// responseHead starts every stream. The body is delimited by the connection's
// close, as Icecast's are, so every player reads it without chunked
// encoding. Chromium probes with a request it aborts, then asks again with
// "Range: bytes=0-": both get this same 200.
const responseHead = "HTTP/1.1 200 OK\r\n" +
	"Content-Type: audio/ogg\r\n" +
	"Cache-Control: no-cache, no-store\r\n" +
	"Access-Control-Allow-Origin: *\r\n" +
	"X-Content-Type-Options: nosniff\r\n" +
	"Connection: close\r\n\r\n"

var responseHeadBytes = []byte(responseHead)

// Serve streams ring's program to the request's client until the program
// ends, the client goes away or falls behind, or the edge closes. burst is
// the audio sent at once from behind the live edge; zero means the
// configured default. It takes over the connection (HTTP/1.1 hijack) and
// returns the reason the stream ended.
func (e *Edge) Serve(w http.ResponseWriter, r *http.Request, ring *program.Ring, burst time.Duration) (string, error) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return "", amphi.Errorf(amphi.EUnsupported, "live audio needs HTTP/1.1")
	}
	defer conn.Close()
	if !e.track(conn) {
		e.endClose.Add(1)
		return EndClosed, nil
	}
	defer e.untrack(conn)
	e.setLowat(conn)
	e.listeners.Add(1)
	e.served.Add(1)
	defer e.listeners.Add(-1)

	l := &listener{edge: e, conn: conn, ring: ring, vec: make([][]byte, 0, 8)}
	reason, err := l.run(e.burstChunks(burst))
	switch reason {
	case EndProgram:
		e.endProgram.Add(1)
	case EndBehind:
		e.endBehind.Add(1)
	case EndClosed:
		e.endClose.Add(1)
	case EndWrite:
		if e.isClosed() {
			reason, err = EndClosed, nil
			e.endClose.Add(1)
		} else {
			e.endWrite.Add(1)
		}
	}
	if err != nil {
		e.cfg.Logger.Debug("edge: listener ended", "reason", reason, "err", err, "remote", conn.RemoteAddr())
	}
	return reason, err
}

func (e *Edge) burstChunks(burst time.Duration) uint64 {
	if burst <= 0 {
		burst = e.cfg.Burst
	}
	burst = min(burst, e.cfg.MaxBurst)
	return uint64((burst + program.ChunkDuration - 1) / program.ChunkDuration)
}

func (e *Edge) setLowat(conn net.Conn) {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		// Best effort: without it a stuck listener is still cut, only later.
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, e.cfg.NotSentLowat)
	})
}

// listener is one stream: a position in the ring and the vectors it writes.
type listener struct {
	edge *Edge
	conn net.Conn
	ring *program.Ring
	pos  uint64   // next chunk to send
	vec  [][]byte // backing array reused for every write
	bufs net.Buffers
}

func (l *listener) run(burst uint64) (string, error) {
	next := l.ring.Next()
	l.pos = max(next-min(burst, next), l.ring.Oldest())
	l.vec = append(l.vec[:0], responseHeadBytes, l.ring.Headers())
	for {
		wait := l.ring.Wait()
		next := l.ring.Next()
		if l.pos < l.ring.Oldest() {
			return EndBehind, fmt.Errorf("edge: listener at chunk %d, ring starts at %d", l.pos, l.ring.Oldest())
		}
		// Write when a batch is pending, or at once for the first write
		// (the burst) and the program's end.
		pending := next - l.pos
		if pending > 0 && (pending >= l.edge.batch || len(l.vec) > 0 || l.ring.Ended()) {
			end, err := l.write(next)
			if err != nil {
				return EndWrite, err
			}
			if end {
				return EndProgram, nil
			}
			continue
		}
		if pending == 0 && l.ring.Ended() { // the last chunk was lost
			return EndProgram, nil
		}
		if len(l.vec) > 0 { // nothing in the ring yet: send the head now
			if _, err := l.write(next); err != nil {
				return EndWrite, err
			}
		}
		select {
		case <-wait:
		case <-l.edge.done:
			return EndClosed, nil
		}
	}
}

// write sends the chunks from pos up to next in one writev.
func (l *listener) write(next uint64) (end bool, err error) {
	for ; l.pos < next; l.pos++ {
		c := l.ring.Get(l.pos)
		if c == nil {
			continue // lost on the bus: the player sees a page gap
		}
		l.vec = append(l.vec, c.Page)
		if c.End {
			end = true
		}
	}
	if err := l.conn.SetWriteDeadline(l.edge.cfg.Now().Add(l.edge.cfg.WriteTimeout)); err != nil {
		return false, err
	}
	l.bufs = l.vec
	n, err := l.bufs.WriteTo(l.conn)
	l.edge.bytes.Add(n)
	clear(l.vec) // drop references to chunks so the ring's memory can go
	l.vec = l.vec[:0]
	if err != nil {
		return false, errors.Join(errors.New("edge: write"), err)
	}
	return end, nil
}
