package edge_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/amphi-audio/amphi/internal/edge"
	"github.com/amphi-audio/amphi/internal/ogg"
	"github.com/amphi-audio/amphi/internal/program"
)

const (
	space  = "s1"
	serial = 0xa11ce
)

// testEdge is an edge behind a real HTTP server on loopback, whose handler
// does what the API's listen handler does: Ring, then Serve.
type testEdge struct {
	*edge.Edge
	addr   string
	seen   map[edge.EndReason]int64 // Stats.Ended already returned by endedNow
	onEnd  chan edge.EndReason      // Serve's onEnd calls
	packer *program.Packer
	frame  []byte
	seq    uint64
	// past, when set, rewinds the streams asked with ?past: Stream.Past.
	past func() edge.Past
}

func startEdge(t *testing.T, cfg edge.Config) *testEdge {
	t.Helper()
	cfg.Logger = slog.New(slog.DiscardHandler)
	te := &testEdge{
		Edge:   edge.New(cfg),
		seen:   make(map[edge.EndReason]int64),
		onEnd:  make(chan edge.EndReason, 16),
		packer: program.NewPacker(serial),
		frame:  bytes.Repeat([]byte{0x55}, 40),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /live/{id}", func(w http.ResponseWriter, r *http.Request) {
		ring := te.Ring(r.Context(), r.PathValue("id"))
		if ring == nil {
			http.Error(w, "no such program", http.StatusNotFound)
			return
		}
		// Serve returns once the stream is handed to the writers; how
		// streams end is counted in Stats and told to onEnd.
		var st edge.Stream
		if from := r.URL.Query().Get("from"); from != "" {
			st.Resume = true
			fmt.Sscan(from, &st.From)
		}
		if r.URL.Query().Has("past") && te.past != nil {
			st.Past = te.past()
		}
		te.Serve(w, r, ring, st, func(reason edge.EndReason) {
			select {
			case te.onEnd <- reason:
			default:
			}
		})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() {
		te.Close()
		srv.Close()
	})
	te.addr = ln.Addr().String()
	return te
}

// publish packs and publishes n chunks of the program, the last one the end
// if end is set.
func (te *testEdge) publish(t *testing.T, n int, end bool) {
	t.Helper()
	for i := range n {
		te.Publish(space, te.pack(t, end && i == n-1))
	}
}

// pack makes the program's next chunk, the end if end is set, without
// publishing it.
func (te *testEdge) pack(t *testing.T, end bool) *program.Chunk {
	t.Helper()
	var c *program.Chunk
	var err error
	if end {
		c, err = te.packer.Finish()
	} else {
		for c == nil && err == nil {
			c, err = te.packer.Add(te.frame)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	te.seq = c.Seq + 1
	return c
}

// waitEnded returns the reason of the next stream to end.
func (te *testEdge) waitEnded(t *testing.T) edge.EndReason {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if r := te.endedNow(); r != 0 {
			return r
		}
	}
	t.Fatal("no stream ended")
	return 0
}

// endedNow returns the reason of a stream that ended since the last call,
// from Stats.Ended, or 0 if none did.
func (te *testEdge) endedNow() edge.EndReason {
	s := te.Stats()
	for _, r := range []edge.EndReason{edge.EndProgram, edge.EndBehind, edge.EndWrite, edge.EndClosed} {
		if s.Ended[r] > te.seen[r] {
			te.seen[r]++
			return r
		}
	}
	return 0
}

// waitListeners waits until n listeners are connected: a stream's end is
// counted just before it leaves Listeners.
func (te *testEdge) waitListeners(t *testing.T, n int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); te.Stats().Listeners != n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Listeners = %d, want %d", te.Stats().Listeners, n)
		}
	}
}

// listener is a client reading the stream over a raw connection.
type listener struct {
	conn net.Conn
	resp *http.Response
	ogg  *ogg.Reader
}

func dialRaw(t *testing.T, addr string, rcvbuf int) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if rcvbuf > 0 {
		// Set before connect so the advertised window is small too.
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
			})
			return errors.Join(err, serr)
		}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func sendRequest(t *testing.T, conn net.Conn, path string) {
	t.Helper()
	if _, err := fmt.Fprintf(conn, "GET /live/%s HTTP/1.1\r\nHost: amphi\r\nRange: bytes=0-\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
}

// listen starts a stream of the space; query, if given, is the request's
// (such as "?from=12").
func listen(t *testing.T, addr string, query ...string) *listener {
	t.Helper()
	conn := dialRaw(t, addr, 0)
	sendRequest(t, conn, space+strings.Join(query, ""))
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	return &listener{conn: conn, resp: resp, ogg: ogg.NewReader(resp.Body)}
}

func (l *listener) page(t *testing.T) *ogg.Page {
	t.Helper()
	l.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	p, err := l.ogg.ReadPage()
	if err != nil {
		t.Fatalf("read page: %v", err)
	}
	return p
}

// headers reads the two header pages.
func (l *listener) headers(t *testing.T) {
	t.Helper()
	head := l.page(t)
	if _, err := ogg.ParseOpusHead(head.Packets[0]); err != nil || head.Flags != ogg.FlagBOS || head.Serial != serial {
		t.Fatalf("first page is not the OpusHead page: %v", err)
	}
	if tags := l.page(t); tags.Seq != 1 || !bytes.HasPrefix(tags.Packets[0], []byte("OpusTags")) {
		t.Fatalf("second page is not OpusTags: seq %d", tags.Seq)
	}
}

// chunkSeq is the program chunk a page carries.
func chunkSeq(p *ogg.Page) uint64 { return uint64(p.Seq) - 2 }

func TestListenerGetsHeadersBurstThenLiveChunksThenEOF(t *testing.T) {
	te := startEdge(t, edge.Config{})
	te.publish(t, 20, false)

	l := listen(t, te.addr)
	if l.resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", l.resp.StatusCode)
	}
	if ct := l.resp.Header.Get("Content-Type"); ct != "audio/ogg" {
		t.Errorf("Content-Type %q", ct)
	}
	if len(l.resp.TransferEncoding) != 0 || l.resp.ContentLength != -1 {
		t.Errorf("TransferEncoding %v ContentLength %d: the body must be delimited by close", l.resp.TransferEncoding, l.resp.ContentLength)
	}
	l.headers(t)

	// The default 500 ms burst is the newest 5 of the 20 chunks.
	for want := uint64(15); want < 20; want++ {
		if p := l.page(t); chunkSeq(p) != want {
			t.Fatalf("burst page for chunk %d, want %d", chunkSeq(p), want)
		}
	}
	// Live chunks are written in pairs (Coalesce 200 ms), so the last of
	// an odd run may wait for the next chunk; the end flushes it.
	te.publish(t, 6, false)
	for want := uint64(20); want < 25; want++ {
		if p := l.page(t); chunkSeq(p) != want {
			t.Fatalf("live page for chunk %d, want %d", chunkSeq(p), want)
		}
	}
	te.publish(t, 1, true)
	if p := l.page(t); chunkSeq(p) != 25 {
		t.Fatalf("live page for chunk %d, want 25", chunkSeq(p))
	}
	last := l.page(t)
	if chunkSeq(last) != 26 || last.Flags&ogg.FlagEOS == 0 {
		t.Fatalf("last page: chunk %d flags %#x", chunkSeq(last), last.Flags)
	}
	if _, err := l.ogg.ReadPage(); err != io.EOF {
		t.Fatalf("after the EOS page: %v, want EOF", err)
	}
	if r := te.waitEnded(t); r != edge.EndProgram {
		t.Errorf("ended with %q, want %q", r, edge.EndProgram)
	}
	if r := <-te.onEnd; r != edge.EndProgram {
		t.Errorf("onEnd(%q), want %q", r, edge.EndProgram)
	}

	te.Publish(space, &program.Chunk{Seq: 3, Page: program.Headers(serial)}) // old: ignored
	te.waitListeners(t, 0)
	s := te.Stats()
	if s.Listeners != 0 || s.Served != 1 || s.Chunks != 28 || s.Stale != 1 || s.Ended[edge.EndProgram] != 1 {
		t.Errorf("stats %+v", s)
	}
	if s.Bytes <= int64(len(program.Headers(serial))) {
		t.Errorf("Bytes %d", s.Bytes)
	}
}

func TestListenerBeforeFirstChunkGetsHeadersAtOnce(t *testing.T) {
	te := startEdge(t, edge.Config{RingWait: 5 * time.Second})
	te.publish(t, 1, false) // creates the ring
	l := listen(t, te.addr)
	l.headers(t)
	if p := l.page(t); chunkSeq(p) != 0 {
		t.Fatalf("first page chunk %d, want 0", chunkSeq(p))
	}
}

func TestSlowListenerIsCutWhileOthersKeepReceiving(t *testing.T) {
	te := startEdge(t, edge.Config{
		WriteTimeout: 300 * time.Millisecond,
		NotSentLowat: 4096,
		Coalesce:     time.Millisecond,
	})
	te.frame = bytes.Repeat([]byte{0x55}, 1000) // 5 KB chunks fill buffers fast
	te.publish(t, 1, false)

	good := listen(t, te.addr)
	good.headers(t)
	good.page(t)

	// The slow listener asks, then never reads; a tiny receive buffer keeps
	// the kernel from absorbing the stream for it.
	slow := dialRaw(t, te.addr, 1024)
	sendRequest(t, slow, space)

	received := make(chan uint64, 1024)
	go func() {
		defer close(received)
		for {
			good.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			p, err := good.ogg.ReadPage()
			if err != nil {
				return
			}
			received <- chunkSeq(p)
		}
	}()

	deadline := time.After(10 * time.Second)
	var cutAt uint64
	for cutAt == 0 {
		te.publish(t, 1, false)
		if r := te.endedNow(); r != 0 {
			if r != edge.EndWrite {
				t.Fatalf("slow listener ended with %q, want %q", r, edge.EndWrite)
			}
			cutAt = te.seq
			break
		}
		select {
		case <-deadline:
			t.Fatal("slow listener was never cut")
		case <-time.After(10 * time.Millisecond):
		}
	}
	te.publish(t, 3, false)
	for seq := range received {
		if seq >= cutAt+2 {
			break // the good listener got chunks published after the cut
		}
	}
	te.waitListeners(t, 1)
	s := te.Stats()
	if s.Ended[edge.EndWrite] != 1 || s.Listeners != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestListenerThatFallsOutOfTheRingIsCut(t *testing.T) {
	te := startEdge(t, edge.Config{RingChunks: 4, Coalesce: time.Millisecond, NotSentLowat: 4096})
	te.publish(t, 1, false)

	conn := dialRaw(t, te.addr, 1024)
	sendRequest(t, conn, space)
	// A 60 KB chunk the client does not read blocks the listener's write;
	// meanwhile the ring moves on by more than its size.
	time.Sleep(50 * time.Millisecond) // let the handler take its burst
	te.frame = bytes.Repeat([]byte{0x55}, 12000)
	te.publish(t, 1, false)
	te.frame = te.frame[:40]
	te.publish(t, 10, false)

	go io.Copy(io.Discard, conn) // unblock it: it finds itself behind
	if r := te.waitEnded(t); r != edge.EndBehind {
		t.Fatalf("ended with %q, want %q", r, edge.EndBehind)
	}
	if n := te.Stats().Ended[edge.EndBehind]; n != 1 {
		t.Errorf("Ended[behind] = %d", n)
	}
}

// TestListenerThatLagsBehindTheLiveEdgeIsCut: a reader too slow to keep up
// is cut once it is MaxLag behind, though the ring still holds its place,
// so no backlog grows for long; it may rejoin at the live edge.
func TestListenerThatLagsBehindTheLiveEdgeIsCut(t *testing.T) {
	te := startEdge(t, edge.Config{RingChunks: 300, Coalesce: time.Millisecond, NotSentLowat: 4096,
		MaxBurst: 100 * time.Millisecond, MaxLag: 500 * time.Millisecond, WriteTimeout: time.Minute})
	te.publish(t, 1, false)

	conn := dialRaw(t, te.addr, 1024)
	sendRequest(t, conn, space)
	time.Sleep(50 * time.Millisecond) // let the handler take its burst
	te.frame = bytes.Repeat([]byte{0x55}, 12000)
	te.publish(t, 1, false) // blocks the unread socket
	te.frame = te.frame[:40]
	te.publish(t, 8, false) // 0.8 s of program the listener cannot take

	go io.Copy(io.Discard, conn)
	if r := te.waitEnded(t); r != edge.EndBehind {
		t.Fatalf("ended with %q, want %q", r, edge.EndBehind)
	}
}

func TestCloseCutsListenersAndDrainReturns(t *testing.T) {
	te := startEdge(t, edge.Config{})
	te.publish(t, 3, false)
	a, b := listen(t, te.addr), listen(t, te.addr)
	a.headers(t)
	b.headers(t)

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	te.Drain(ctx) // listeners still there: returns at the deadline
	if te.Stats().Listeners != 2 {
		t.Fatalf("Listeners = %d, want 2", te.Stats().Listeners)
	}

	drained := make(chan struct{})
	go func() {
		te.Drain(t.Context())
		close(drained)
	}()
	te.Close()
	for range 2 {
		if r := te.waitEnded(t); r != edge.EndClosed {
			t.Errorf("ended with %q, want %q", r, edge.EndClosed)
		}
	}
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not return after the listeners went")
	}
	for _, l := range []*listener{a, b} {
		l.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, l.resp.Body); err != nil {
			t.Errorf("connection not closed cleanly: %v", err)
		}
	}

	// A listener arriving after Close is turned away at once.
	conn := dialRaw(t, te.addr, 0)
	sendRequest(t, conn, space)
	if r := te.waitEnded(t); r != edge.EndClosed {
		t.Errorf("late listener ended with %q", r)
	}
	if s := te.Stats(); s.Ended[edge.EndClosed] != 3 || s.Listeners != 0 {
		t.Errorf("stats %+v", s)
	}
	for range 3 {
		if r := <-te.onEnd; r != edge.EndClosed {
			t.Errorf("onEnd(%q), want %q", r, edge.EndClosed)
		}
	}
	select {
	case r := <-te.onEnd:
		t.Errorf("onEnd called once more, with %q", r)
	default:
	}
}

func TestDrainWaitsForProgramEnd(t *testing.T) {
	te := startEdge(t, edge.Config{})
	te.publish(t, 2, false)
	l := listen(t, te.addr)
	l.headers(t)
	drained := make(chan struct{})
	go func() {
		te.Drain(t.Context())
		close(drained)
	}()
	te.publish(t, 1, true)
	if _, err := io.Copy(io.Discard, l.resp.Body); err != nil {
		t.Fatal(err)
	}
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not return after the program ended")
	}
}

func TestRingWaitsForFirstChunk(t *testing.T) {
	t.Run("chunk arrives", func(t *testing.T) {
		te := startEdge(t, edge.Config{RingWait: 10 * time.Second})
		if te.HasRing(space) {
			t.Fatal("HasRing before any chunk")
		}
		got := make(chan *program.Ring, 1)
		go func() { got <- te.Ring(t.Context(), space) }()
		time.Sleep(20 * time.Millisecond)
		te.Publish("other", mustChunk(t)) // another space's ring wakes it, not ours
		te.publish(t, 1, false)
		select {
		case r := <-got:
			if r == nil || r.Next() != 1 || !te.HasRing(space) {
				t.Fatalf("Ring = %v", r)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Ring did not return after the first chunk")
		}
	})
	t.Run("none comes", func(t *testing.T) {
		te := startEdge(t, edge.Config{RingWait: 50 * time.Millisecond})
		if r := te.Ring(t.Context(), space); r != nil {
			t.Fatal("Ring returned a ring with no chunk")
		}
	})
	t.Run("context ends", func(t *testing.T) {
		te := startEdge(t, edge.Config{RingWait: time.Minute})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if r := te.Ring(ctx, space); r != nil {
			t.Fatal("Ring returned a ring with no chunk")
		}
	})
	t.Run("unknown space is 404", func(t *testing.T) {
		te := startEdge(t, edge.Config{RingWait: 10 * time.Millisecond})
		resp, err := http.Get("http://" + te.addr + "/live/nope")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
}

func mustChunk(t *testing.T) *program.Chunk {
	t.Helper()
	p := program.NewPacker(serial)
	c, err := p.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestServeRefusesHTTP2(t *testing.T) {
	// httptest's ResponseRecorder cannot be hijacked, as an HTTP/2 stream
	// cannot: Serve must say so rather than panic.
	e := edge.New(edge.Config{Logger: slog.New(slog.DiscardHandler)})
	e.Publish(space, mustChunk(t))
	rec := &noHijack{header: http.Header{}}
	req, _ := http.NewRequest("GET", "/", nil)
	var ended []edge.EndReason
	_, err := e.Serve(rec, req, e.Ring(t.Context(), space), edge.Stream{}, func(r edge.EndReason) { ended = append(ended, r) })
	if err == nil || !strings.Contains(err.Error(), "HTTP/1.1") {
		t.Errorf("err = %v", err)
	}
	if len(ended) != 1 || ended[0] != 0 {
		t.Errorf("onEnd calls %v, want one with 0", ended)
	}
}

type noHijack struct{ header http.Header }

func (n *noHijack) Header() http.Header         { return n.header }
func (n *noHijack) Write(b []byte) (int, error) { return len(b), nil }
func (n *noHijack) WriteHeader(int)             {}
