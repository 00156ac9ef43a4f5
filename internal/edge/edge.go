// Package edge serves listeners. It keeps a ring of program chunks per live
// space, filled from the bus, and streams them to each listener as
// progressive Ogg Opus: the header pages, a short burst from just behind the
// live edge, then every chunk as it arrives.
//
// A listener is a cursor into the shared ring and a socket, nothing more:
// no goroutine, no net.Conn. Serve hijacks the HTTP/1.1 connection, takes a
// duplicate of its descriptor (closing the net.Conn takes the original out
// of Go's poller), sets TCP_NOTSENT_LOWAT, writes the response head, the
// header pages and the burst in one non-blocking writev, and hands the
// socket to one of its ring's shards and returns, so net/http's goroutine,
// buffers and request are freed. A shard is a goroutine owning a slice of
// 48-byte listener records; a ring has one shard per 256 listeners, up to
// GOMAXPROCS, each running only while it has listeners. A shard wakes when
// a chunk is published, when a listener is handed to it, and every Coalesce.
// For each listener with a batch due (Coalesce worth of chunks, a lone
// chunk that waited Coalesce, the rest of a partial write, or the end) it
// makes one non-blocking writev of the pending pages straight from the
// ring. A full socket keeps its offset into the page and is retried at the
// next wake-up; one that takes nothing for WriteTimeout, or fails, is cut
// (EndWrite); one whose position left the ring is cut (EndBehind); one that
// has written the program's end is closed (EndProgram); Close cuts the rest
// (EndClosed). Delivering a chunk allocates nothing.
//
// Why not a goroutine per listener, the first design: it kept net/http's
// per-connection state alive, ~12 KB of heap and 16 KB with stacks per idle
// listener, and cost more CPU per write. Why not the runtime poller with
// rawConn.Write: the net.Conn, its poll descriptor and addresses would stay
// per listener, and a writer that never waits for writability has no use
// for epoll: a socket that is full is simply tried again a tick later, and
// a closed one shows at its next write. What is left per listener is the
// kernel's socket (~4 KB, whatever the design) and the cost of each write,
// which Coalesce bounds (BenchmarkListenerSecond).
//
// The edge knows nothing of the stage, the mixer or WebRTC; a dependency
// test keeps it so.
package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/ogg"
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
	// MaxLag cuts a listener that reads so slowly it falls this far behind
	// the live edge (it may rejoin at the edge), so no backlog grows for
	// long. Zero means MaxBurst plus 5 s; it is at least MaxBurst plus one
	// write.
	MaxLag time.Duration
	// Coalesce is how long chunks may wait to be written together unless
	// the request asks for less (Stream.Flush): each write costs far more
	// than its bytes (DESIGN.md). Zero means 1 s, which plain players,
	// buffering seconds anyway, never notice; amphi's own low-latency
	// clients ask for 200 ms and pay ~5 writes a second for it.
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
	// Lookup tells the edge what a space's program is when its first chunk
	// arrives. Anyone who holds the bus's credentials can publish, and a
	// listener's header pages show the serial, so chunks are checked
	// against it: one of another serial, of a space Lookup fails for (no
	// ring is made), or numbered further ahead than the time since the
	// start allows is dropped and counted (Stats.Dropped) rather than
	// ending or stalling the program. Nil trusts the first chunk's serial
	// and checks no sequence number.
	Lookup func(spaceID string) (SpaceInfo, error)
	// Fetch asks the node that mixes a space for the chunks numbered from
	// up to, not including, to: the bus delivers each chunk at most once,
	// so a gap in a space's sequence is fetched, and listeners hold at the
	// hole while the fetch is under way (at most FetchTimeout). Nil
	// fetches nothing: a lost chunk is a gap in the listeners' pages.
	Fetch func(ctx context.Context, spaceID string, from, to uint64) ([]*program.Chunk, error)
	// FetchTimeout bounds a fetch, and so how long listeners hold at a
	// hole. Zero means 1 s.
	FetchTimeout time.Duration
	// NoHLSAAC turns off the AAC-LC rendition of the LL-HLS streams. False
	// means each space's program is also decoded and encoded in AAC on
	// this node, once, for players that play no Opus (Apple's before iOS
	// 17), at about 1 % of a core per space (docs/BENCHMARKS.md), unless
	// the build has no libavcodec (aac.Available).
	NoHLSAAC bool
	// Node names this edge process in each stream's response head
	// (X-Amphi-Edge), so clients can tell which edge served them. Empty
	// means no such header. It must be a valid header value.
	Node string
}

// SpaceInfo is what a space's chunks are checked against.
type SpaceInfo struct {
	// Serial is the Ogg serial number of the space's pages.
	Serial uint32
	// Started is when the space went live: chunk n is made n×100 ms later.
	// Zero checks no sequence number.
	Started time.Time
	// Run names this run of the program, the same on every node: a
	// program resumed after a crash is a new run. It names the directory
	// of the space's LL-HLS URLs (HLS.Run), and must be a path segment.
	// Empty means "0".
	Run string
}

// seqSlack is how far ahead of the time since the start a chunk may be
// numbered. The mixer never runs ahead of its clock; this covers the start
// being recorded before the first frame and two machines' clocks.
const seqSlack = uint64(30 * time.Second / amphi.ChunkDuration)

// check returns why c cannot be a chunk of this space's program at now, or
// "" if it can be.
func (p SpaceInfo) check(c *program.Chunk, now time.Time) string {
	if pageSerial(c.Page) != p.Serial {
		return DropSerial
	}
	if !p.Started.IsZero() && c.Seq > uint64(max(now.Sub(p.Started), 0)/amphi.ChunkDuration)+seqSlack {
		return DropAhead
	}
	return ""
}

// DefaultConfig returns the defaults described on Config's fields.
func DefaultConfig() Config {
	return Config{
		RingChunks:   300,
		Burst:        500 * time.Millisecond,
		MaxBurst:     10 * time.Second,
		Coalesce:     time.Second,
		WriteTimeout: 5 * time.Second,
		NotSentLowat: 16 << 10,
		RingWait:     2 * time.Second,
		FetchTimeout: time.Second,
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
	if c.MaxLag == 0 {
		c.MaxLag = c.MaxBurst + 5*time.Second
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
	if c.FetchTimeout == 0 {
		c.FetchTimeout = d.FetchTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// EndReason is why a listener's stream ended, counted in Stats.Ended. The
// zero value is a stream that has not ended.
type EndReason uint8

// Reasons a listener's stream ends. Only EndBehind and EndWrite are the edge
// cutting someone (EndReason.Cut); the rest are ordinary ends.
const (
	_           EndReason = iota
	EndProgram            // the space ended: a clean end
	EndBehind             // fell out of the ring
	EndWrite              // the socket failed or took nothing for WriteTimeout
	EndGone               // the listener closed its connection: it left
	EndReplaced           // a newer stream of the same ticket took over
	EndClosed             // the edge shut down
	numEndReasons
)

// endReasons is the one table of end reasons: each one's name, and whether
// it is the edge cutting a listener, which /ops counts as an edge error.
var endReasons = [numEndReasons]struct {
	name string
	cut  bool
}{
	EndProgram:  {"program_ended", false},
	EndBehind:   {"behind", true},
	EndWrite:    {"write", true},
	EndGone:     {"gone", false},
	EndReplaced: {"replaced", false},
	EndClosed:   {"closed", false},
}

// String returns the reason's name, "" for the zero value.
func (r EndReason) String() string {
	if r >= numEndReasons {
		return ""
	}
	return endReasons[r].name
}

// Cut reports whether r is the edge cutting a listener (slow, or its
// socket failed) rather than an ordinary end.
func (r EndReason) Cut() bool { return r < numEndReasons && endReasons[r].cut }

// EndReasons returns every EndReason, in order.
func EndReasons() []EndReason {
	rs := make([]EndReason, 0, numEndReasons-1)
	for r := EndReason(1); r < numEndReasons; r++ {
		rs = append(rs, r)
	}
	return rs
}

// endCounters counts ended streams by reason without locks.
type endCounters [numEndReasons]atomic.Int64

func (c *endCounters) add(reason EndReason) { c[reason].Add(1) }

// Reasons a chunk from the bus is dropped, counted in Stats.
const (
	DropSerial  = "serial"        // its page's serial is not its space's
	DropAhead   = "ahead"         // numbered ahead of the time since the start
	DropUnknown = "unknown_space" // Config.Lookup does not know its space
)

// Stats are the edge's counters.
type Stats struct {
	Listeners int64 // connected now
	Served    int64 // streams started since start
	Bytes     int64 // bytes written to listeners
	Chunks    int64 // chunks received from the bus
	Stale     int64 // chunks ignored as old or duplicate
	Missed    int64 // chunks that did not arrive in order: gaps in a space's sequence
	Filled    int64 // missed chunks fetched in time (Config.Fetch): Missed less Filled were holes
	// HLSSkipped counts program pages the LL-HLS segmenter refused
	// (they go back, or break Opus framing), or that its AAC rendition
	// failed to transcode.
	HLSSkipped int64
	Ended      map[EndReason]int64 // streams ended, by reason
	Dropped    map[string]int64    // chunks refused, by reason (Drop*)
}

// Edge holds the rings and the listeners of this node.
type Edge struct {
	cfg          Config
	writeTimeout int64
	maxLag       uint64 // chunks a listener may be behind the live edge // Config.WriteTimeout in ns
	tick         time.Duration
	start        time.Time // origin of the listeners' clocks
	maxShards    int
	head         []byte // responseHead
	// heads[n] is the head of a stream starting n chunks behind the live
	// edge (headBehind), made once for every start a burst or a resume
	// can ask: a listener's request allocates none.
	heads [][]byte

	mu      sync.Mutex
	rings   map[string]*program.Ring
	endedAt map[string]time.Time
	spaces  map[string]SpaceInfo     // what each ring's chunks are checked against
	hls     map[string]*HLS          // each ring's LL-HLS stream
	added   chan struct{}            // closed and replaced when a ring is added
	groups  map[*program.Ring]*group // the writers of each ring with listeners
	closed  bool
	done    chan struct{}  // closed by Close
	wg      sync.WaitGroup // the shards' goroutines

	listeners, served, bytes, chunks, stale atomic.Int64
	missed, filled, hlsSkipped              atomic.Int64
	fetches                                 chan struct{} // a token per fetch under way, to bound them
	ends                                    endCounters
	dropSerial, dropAhead, dropUnknown      atomic.Int64
}

// New returns an edge with no spaces.
func New(cfg Config) *Edge {
	cfg.setDefaults()
	e := &Edge{
		cfg:          cfg,
		writeTimeout: int64(cfg.WriteTimeout),
		maxLag:       uint64(max(cfg.MaxLag, cfg.MaxBurst+cfg.Coalesce) / amphi.ChunkDuration),
		tick:         max(cfg.Coalesce, minTick),
		start:        cfg.Now(),
		maxShards:    runtime.GOMAXPROCS(0),
		head:         responseHead(cfg.Node),
		rings:        make(map[string]*program.Ring),
		endedAt:      make(map[string]time.Time),
		spaces:       make(map[string]SpaceInfo),
		hls:          make(map[string]*HLS),
		added:        make(chan struct{}),
		groups:       make(map[*program.Ring]*group),
		done:         make(chan struct{}),
		fetches:      make(chan struct{}, maxFetches),
	}
	e.heads = make([][]byte, e.maxLag+1)
	for n := range e.heads {
		e.heads[n] = e.headBehind(time.Duration(n) * amphi.ChunkDuration)
	}
	return e
}

// endedRingLife is how long a finished program's ring stays, so listeners
// who arrive just after the end get a clean ending rather than a 404.
const endedRingLife = time.Minute

// Publish adds a chunk of a space's program, creating the space's ring on
// its first chunk. It is called from the bus subscription. A chunk that
// cannot be the space's (Config.Lookup) is dropped and counted.
func (e *Edge) Publish(spaceID string, c *program.Chunk) {
	e.chunks.Add(1)
	e.mu.Lock()
	r, info := e.rings[spaceID], e.spaces[spaceID]
	e.mu.Unlock()
	if r == nil {
		var err error
		if r, info, err = e.addRing(spaceID, c); err != nil {
			e.dropUnknown.Add(1)
			e.cfg.Logger.Debug("edge: chunk dropped", "space", spaceID, "reason", DropUnknown, "err", err)
			return
		}
	}
	now := e.cfg.Now()
	if reason := info.check(c, now); reason != "" {
		if reason == DropSerial {
			e.dropSerial.Add(1)
		} else {
			e.dropAhead.Add(1)
		}
		e.cfg.Logger.Debug("edge: chunk dropped", "space", spaceID, "reason", reason, "seq", c.Seq)
		return
	}
	if c.End {
		e.mu.Lock()
		e.endedAt[spaceID] = now
		e.mu.Unlock()
	}
	// The mixer numbers a chunk every 100 ms without a gap, so one past
	// the next expected means those between were lost on the way.
	if next := r.Next(); next > 0 && c.Seq > next {
		e.missed.Add(int64(c.Seq - next))
		e.fill(spaceID, r, info, next, c.Seq)
	}
	if !r.Publish(c) {
		e.stale.Add(1)
	}
}

// maxFetches bounds the fetches under way at once: a burst of gaps in many
// spaces (a reconnect) asks for a few at a time, not one per space at once.
const maxFetches = 16

// fill fetches the chunks numbered from up to, not including, to, which
// did not arrive, and puts them into the ring; listeners hold at the hole
// until the fetch ends. Past maxFetches under way, the hole stays.
func (e *Edge) fill(spaceID string, r *program.Ring, info SpaceInfo, from, to uint64) {
	if e.cfg.Fetch == nil {
		return
	}
	select {
	case e.fetches <- struct{}{}:
	default:
		return
	}
	r.Filling(1) // before Publish makes the hole visible
	go func() {
		defer func() { <-e.fetches }()
		defer r.Filling(-1)
		ctx, cancel := context.WithTimeout(context.Background(), e.cfg.FetchTimeout)
		defer cancel()
		cs, err := e.cfg.Fetch(ctx, spaceID, from, to)
		if err != nil {
			e.cfg.Logger.Debug("edge: fetch missed chunks", "space", spaceID, "from", from, "to", to, "err", err)
		}
		now := e.cfg.Now()
		for _, c := range cs {
			if c.Seq >= from && c.Seq < to && info.check(c, now) == "" && r.Fill(c) {
				e.filled.Add(1)
			}
		}
	}()
}

// addRing makes the space's ring for its first chunk c, looking up what its
// chunks are checked against outside the lock.
func (e *Edge) addRing(spaceID string, c *program.Chunk) (*program.Ring, SpaceInfo, error) {
	info := SpaceInfo{Serial: pageSerial(c.Page)}
	if e.cfg.Lookup != nil {
		var err error
		if info, err = e.cfg.Lookup(spaceID); err != nil {
			return nil, info, fmt.Errorf("edge: space %s: %w", spaceID, err)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if r := e.rings[spaceID]; r != nil { // made meanwhile by another Publish
		return r, e.spaces[spaceID], nil
	}
	e.dropEndedLocked()
	r := program.NewRing(program.Headers(info.Serial), e.cfg.RingChunks)
	if err := e.newHLS(spaceID, r, info); err != nil {
		return nil, info, fmt.Errorf("edge: space %s: %w", spaceID, err)
	}
	e.rings[spaceID], e.spaces[spaceID] = r, info
	close(e.added)
	e.added = make(chan struct{})
	return r, info, nil
}

func (e *Edge) dropEndedLocked() {
	now := e.cfg.Now()
	for id, at := range e.endedAt {
		if now.Sub(at) > endedRingLife {
			delete(e.rings, id)
			delete(e.endedAt, id)
			delete(e.spaces, id)
			delete(e.hls, id)
		}
	}
}

// pageSerial reads the bitstream serial number of a chunk's Ogg page. Every
// chunk came through program.ParseWire, which checked that its header
// parses.
func pageSerial(page []byte) uint32 {
	h, _ := ogg.ParseHeader(page)
	return h.Serial
}

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
		Listeners:  e.listeners.Load(),
		Served:     e.served.Load(),
		Bytes:      e.bytes.Load(),
		Chunks:     e.chunks.Load(),
		Stale:      e.stale.Load(),
		Missed:     e.missed.Load(),
		Filled:     e.filled.Load(),
		HLSSkipped: e.hlsSkipped.Load(),
		Ended:      e.ended(),
		Dropped: map[string]int64{
			DropSerial:  e.dropSerial.Load(),
			DropAhead:   e.dropAhead.Load(),
			DropUnknown: e.dropUnknown.Load(),
		},
	}
}

func (e *Edge) ended() map[EndReason]int64 {
	m := make(map[EndReason]int64, numEndReasons-1)
	for _, r := range EndReasons() {
		m[r] = e.ends[r].Load()
	}
	return m
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

// Close cuts every listener, streams in progress ending with EndClosed, and
// returns once every connection is closed and every writer has stopped.
func (e *Edge) Close() error {
	e.mu.Lock()
	if !e.closed {
		e.closed = true
		close(e.done)
	}
	e.mu.Unlock()
	e.wg.Wait()
	return nil
}

// responseHead starts every stream: the status line and headers, which
// end with the edge's name, if it has one, and the blank line. The body is
// delimited by the connection's close, as Icecast's are, so every player
// reads it without chunked encoding. Chromium probes with a request it
// aborts, then asks again with "Range: bytes=0-": both get this same 200.
func responseHead(node string) []byte {
	h := "HTTP/1.1 200 OK\r\n" +
		"Content-Type: audio/ogg\r\n" +
		"Cache-Control: no-cache, no-store\r\n" +
		"Access-Control-Allow-Origin: *\r\n" +
		"Access-Control-Expose-Headers: Amphi-Behind\r\n" +
		"X-Content-Type-Options: nosniff\r\n" +
		"Connection: close\r\n"
	if node != "" {
		// Which process serves the stream: load reports count per edge.
		h += "X-Amphi-Edge: " + node + "\r\n"
	}
	return []byte(h + "\r\n")
}

// Serve starts streaming ring's program to the request's client and returns
// once the stream is handed to the edge's writers, without waiting for it
// to end: the handler's goroutine and net/http's buffers are freed, and the
// stream goes on until the program ends, the client goes away or falls
// behind, or the edge closes, each counted in Stats.Ended. burst is the
// audio sent at once from behind the live edge; zero means the configured
// default.
//
// Serve takes over the connection (HTTP/1.1 hijack) and writes the response
// head, the header pages and the burst at once, without blocking. It returns
// 0 and nil once the stream is handed over; the reason and any error if the
// stream ended already (the edge is closed, the socket failed, or the whole
// program fitted in the first write). Only an *amphi.Error, returned when the
// connection cannot be taken over, comes before the response started.
//
// onEnd, if given, is called exactly once: with the stream's reason when it
// ends, from Serve or later from a writer's goroutine, or with 0 if Serve
// returned an *amphi.Error. It must not block: the writer serving other
// listeners waits for it.
func (e *Edge) Serve(w http.ResponseWriter, r *http.Request, ring *program.Ring, st Stream, onEnd ...func(reason EndReason)) (EndReason, error) {
	done := joinOnEnd(onEnd)
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		if st.Past != nil {
			st.Past.Close()
		}
		if done != nil {
			done(0)
		}
		return 0, amphi.Errorf(amphi.EUnsupported, "live audio needs HTTP/1.1")
	}
	// The closed check and wg.Add under one lock: Close waits for every
	// rewinding stream it did not see start.
	e.mu.Lock()
	closed := e.closed
	if !closed && st.Past != nil {
		e.wg.Add(1)
	}
	e.mu.Unlock()
	if closed {
		if st.Past != nil {
			st.Past.Close()
		}
		conn.Close()
		e.ends.add(EndClosed)
		if done != nil {
			done(EndClosed)
		}
		return EndClosed, nil
	}
	e.served.Add(1)
	e.listeners.Add(1)
	if st.Past != nil {
		go e.rewind(conn, ring, st, done)
		return 0, nil
	}
	next := ring.Next()
	pos := max(next-min(e.burstChunks(st.Burst), next), ring.Oldest())
	if st.Resume {
		pos = min(max(st.From, ring.Oldest(), next-min(e.maxLag, next)), next)
	}
	l := listener{pos: pos, batch: e.batchChunks(st.Flush), onEnd: done, stop: st.Stop}
	return e.stream(conn, ring, l, e.heads[min(next-pos, e.maxLag)])
}

// stream takes l's socket out of conn and writes what is due, starting
// with head when l has not written it, in one non-blocking writev, then
// hands l to one of ring's shards.
func (e *Edge) stream(conn net.Conn, ring *program.Ring, l listener, head []byte) (EndReason, error) {
	fd, wrapper, err := e.detach(conn)
	if err != nil {
		e.ends.add(EndWrite)
		e.listeners.Add(-1)
		e.cfg.Logger.Debug("edge: listener ended", "reason", EndWrite.String(), "err", err)
		if l.onEnd != nil {
			l.onEnd(EndWrite)
		}
		return EndWrite, err
	}
	if wrapper != nil {
		then := l.onEnd
		l.onEnd = func(reason EndReason) {
			wrapper.Close() // its socket is closed already: this is for its owner
			if then != nil {
				then(reason)
			}
		}
	}
	l.fd, l.progress = int32(fd), e.now()
	wr := newWriter(int(min(ring.Next()-min(l.pos, ring.Next())+2, maxIovecs)), head)
	reason, err := e.service(&l, ring, wr, l.progress)
	if reason == 0 && l.stage == stageHead {
		// The shards write the shared head, not this stream's: a socket
		// that cannot take a few hundred bytes at once is not worth it.
		reason, err = EndWrite, errors.New("edge: the socket took less than the response head")
	}
	if reason != 0 {
		e.end(&l, reason, err)
		return reason, err
	}
	if !e.handOver(ring, l) {
		e.end(&l, EndClosed, nil)
		return EndClosed, nil
	}
	return 0, nil
}

// headBehind is the response head of a stream whose first audio is behind
// the live edge by d, which it says (Amphi-Behind, in seconds): a player
// shows how far behind live it is from it.
func (e *Edge) headBehind(d time.Duration) []byte {
	head := e.head[: len(e.head)-2 : len(e.head)-2] // without the blank line
	head = append(head, "Amphi-Behind: "...)
	head = strconv.AppendFloat(head, d.Seconds(), 'f', 1, 64)
	return append(head, "\r\n\r\n"...)
}

// joinOnEnd makes Serve's callbacks one, nil if there are none.
func joinOnEnd(fs []func(EndReason)) func(EndReason) {
	switch len(fs) {
	case 0:
		return nil
	case 1:
		return fs[0]
	}
	return func(reason EndReason) {
		for _, f := range fs {
			if f != nil {
				f(reason)
			}
		}
	}
}

func (e *Edge) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

// Stream is what a listener's request asks of its stream.
type Stream struct {
	// Burst is the audio sent at once from behind the live edge. Zero
	// means Config.Burst; it is capped at Config.MaxBurst.
	Burst time.Duration
	// Flush is the longest chunks wait to be written together. Zero means
	// Config.Coalesce; it is at least one chunk and at most
	// Config.Coalesce.
	Flush time.Duration
	// Stop, when set, ends the stream (EndReplaced) at its writer's next
	// wake: the gate sets it when a newer stream of the same ticket
	// starts. Nil means none.
	Stop *atomic.Bool
	// Past, when set, rewinds the stream: it starts with the program's
	// recorded past, read as fast as the client takes it, and goes on live
	// from the chunk after it (Past.Next) without a hole. Burst and Resume
	// are then ignored. Serve closes it, however the stream ends.
	Past Past
	// Resume starts the stream at chunk From instead of a burst: a client
	// that lost its stream (its edge died, say) asks, here or at another
	// edge, for the chunk after the last it got, and hears no hole if that
	// is still in the ring and within MaxLag of the live edge. One older
	// starts MaxLag behind; one not yet made, at the live edge.
	Resume bool
	From   uint64
}

// batchChunks is how many chunks a listener asking for flush gets per write.
func (e *Edge) batchChunks(flush time.Duration) uint8 {
	if flush <= 0 || flush > e.cfg.Coalesce {
		flush = e.cfg.Coalesce
	}
	return uint8(max(1, min(flush/amphi.ChunkDuration, 255)))
}

func (e *Edge) burstChunks(burst time.Duration) uint64 {
	if burst <= 0 {
		burst = e.cfg.Burst
	}
	burst = min(burst, e.cfg.MaxBurst)
	return uint64((burst + amphi.ChunkDuration - 1) / amphi.ChunkDuration)
}

// detach takes the socket out of conn: it returns a duplicate of its file
// descriptor, non-blocking and bounded by TCP_NOTSENT_LOWAT, and closes the
// net.Conn, which takes the original out of Go's poller. The listener then
// costs its few bytes in a shard, not a net.Conn, a poll descriptor and two
// addresses.
//
// A conn that wraps the socket (a listener's accounting, say) is unwrapped
// through an Unwrap() net.Conn method. Only the socket underneath is closed
// now; the wrapper is returned, to be closed when the stream ends, so what
// it counts stays true.
func (e *Edge) detach(conn net.Conn) (fd int, wrapper net.Conn, err error) {
	inner := conn
	for {
		if _, ok := inner.(syscall.Conn); ok {
			break
		}
		u, ok := inner.(interface{ Unwrap() net.Conn })
		if !ok {
			conn.Close()
			return -1, nil, fmt.Errorf("edge: connection %T has no file descriptor", conn)
		}
		inner = u.Unwrap()
	}
	fd, err = dupSocket(inner.(syscall.Conn))
	if err != nil {
		conn.Close()
		return -1, nil, err
	}
	inner.Close()
	if inner != conn {
		wrapper = conn
	}
	// Best effort: without it a stuck listener is still cut, only later.
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, e.cfg.NotSentLowat)
	return fd, wrapper, nil
}

// dupSocket returns a non-blocking duplicate of sc's descriptor.
func dupSocket(sc syscall.Conn) (int, error) {
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("edge: connection: %w", err)
	}
	fd := -1
	var derr error
	if err := raw.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, fmt.Errorf("edge: connection: %w", err)
	}
	if derr != nil {
		return -1, fmt.Errorf("edge: dup: %w", derr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("edge: non-blocking: %w", err)
	}
	return fd, nil
}

// now is the listeners' clock: nanoseconds since New, monotonic when
// Config.Now is time.Now.
func (e *Edge) now() int64 { return int64(e.cfg.Now().Sub(e.start)) }

// end closes a listener's socket and counts its end. The reason is counted
// before the listener leaves Listeners, so a Drain that returned sees it.
func (e *Edge) end(l *listener, reason EndReason, err error) {
	unix.Close(int(l.fd))
	l.fd = -1
	e.ends.add(reason)
	e.listeners.Add(-1)
	if err != nil {
		e.cfg.Logger.Debug("edge: listener ended", "reason", reason.String(), "err", err)
	}
	if l.onEnd != nil {
		l.onEnd(reason)
		l.onEnd = nil
	}
}
