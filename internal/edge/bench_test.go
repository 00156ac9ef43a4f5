package edge

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/program"
)

// benchChunks makes n chunks of a 32 kbit/s program: five 80-byte frames,
// about 430 bytes a page.
func benchChunks(b *testing.B, n int) []*program.Chunk {
	p := program.NewPacker(1)
	frame := bytes.Repeat([]byte{0x78}, 80)
	var out []*program.Chunk
	for len(out) < n {
		c, err := p.Add(frame)
		if err != nil {
			b.Fatal(err)
		}
		if c != nil {
			out = append(out, c)
		}
	}
	return out
}

// BenchmarkDeliverChunk measures delivering one chunk to every listener
// through a shard's walk: for each listener, its cursor into the ring, the
// reused vectors and one non-blocking writev. One op is one chunk to all
// listeners; ns/listener and allocs/listener divide it per listener.
// Publishing to the ring is outside the timed region. On /dev/null the
// kernel's cost is nearly nil; on loopback TCP it includes the receiver's
// side of the stack (the readers' goroutines run beside the walk).
func BenchmarkDeliverChunk(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("devnull/listeners=%d", n), func(b *testing.B) {
			benchDeliver(b, devNullFDs(b, n))
		})
	}
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("tcp/listeners=%d", n), func(b *testing.B) {
			benchDeliver(b, tcpFDs(b, n))
		})
	}
}

// devNullFDs returns n descriptors of /dev/null.
func devNullFDs(b *testing.B, n int) []int {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	fds := make([]int, n)
	for i := range fds {
		if fds[i], err = unix.Dup(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	})
	return fds
}

// tcpFDs returns the server ends of n loopback TCP connections, detached as
// Serve detaches them, whose client ends are drained by goroutines until the
// benchmark ends.
func tcpFDs(b *testing.B, n int) []int {
	e := New(Config{Logger: slog.New(slog.DiscardHandler)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	fds := make([]int, n)
	for i := range fds {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		go io.Copy(io.Discard, c)
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		if fds[i], _, err = e.detach(s); err != nil {
			b.Fatal(err)
		}
		fd := fds[i]
		b.Cleanup(func() {
			unix.Close(fd)
			c.Close()
		})
	}
	return fds
}

func benchDeliver(b *testing.B, fds []int) {
	const ringSize = 512
	// Coalesce of one chunk: every walk writes each listener its one new
	// chunk, as the live path does every Coalesce with a batch.
	e := New(Config{RingChunks: ringSize, Coalesce: amphi.ChunkDuration, Logger: slog.New(slog.DiscardHandler)})
	ring := program.NewRing(program.Headers(1), ringSize)
	pages := benchChunks(b, 64)
	s := &shard{e: e, g: &group{ring: ring}, w: newWriter(maxIovecs+2, e.head)}
	for _, fd := range fds {
		s.ls = append(s.ls, listener{fd: int32(fd), stage: stageChunks})
	}
	seq := uint64(0)
	publish := func() {
		ring.Publish(&program.Chunk{Seq: seq, Page: pages[seq%uint64(len(pages))].Page})
		seq++
	}
	publish()
	s.walk(e.now()) // warm up
	if len(s.ls) != len(fds) {
		b.Fatalf("%d of %d listeners dropped", len(fds)-len(s.ls), len(fds))
	}

	var ms runtime.MemStats
	var mallocs uint64 // during the walks only
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		publish()
		runtime.ReadMemStats(&ms)
		m0 := ms.Mallocs
		b.StartTimer()
		s.walk(e.now())
		b.StopTimer()
		runtime.ReadMemStats(&ms)
		mallocs += ms.Mallocs - m0
		b.StartTimer()
	}
	b.StopTimer()
	if len(s.ls) != len(fds) {
		b.Fatalf("%d of %d listeners dropped", len(fds)-len(s.ls), len(fds))
	}
	per := float64(b.N) * float64(len(fds))
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/per, "ns/listener")
	b.ReportMetric(float64(mallocs)/per, "allocs/listener")
}

// BenchmarkIdleListenerMemory measures what an idle listener costs the
// server process once Serve has handed it over: 5000 listeners connect to a
// real net/http server, get their burst and stay, reading nothing. It
// reports the Go heap (live after GC, and in use with goroutine stacks) and
// goroutines per listener. The clients are raw blocking sockets outside Go's
// poller, so they add nothing to the heap; the kernel's memory for both
// ends' sockets is reported apart, as tcp-mem-B/listener (the TCP buffer
// pages of /proc/net/sockstat, both ends).
//
//	go test -run '^$' -bench IdleListenerMemory -benchtime 1x ./internal/edge/
func BenchmarkIdleListenerMemory(b *testing.B) {
	b.Run("tcp", func(b *testing.B) { benchIdleListenerMemory(b, false) })
	// As behind cmd/amphi's capped listener: the wrapper, and the closed
	// net.Conn it holds, stay until the stream ends.
	b.Run("wrapped", func(b *testing.B) { benchIdleListenerMemory(b, true) })
}

func benchIdleListenerMemory(b *testing.B, wrap bool) {
	const n = 5000
	needFiles(b, 2*n+200)
	var heap, inuse, gor, kern float64
	for range b.N {
		h, i, g, k := idleListenerMemory(b, n, wrap)
		heap, inuse, gor, kern = heap+h, inuse+i, gor+g, kern+k
	}
	runs := float64(b.N)
	b.ReportMetric(heap/runs, "heap-B/listener")
	b.ReportMetric(inuse/runs, "heap+stack-B/listener")
	b.ReportMetric(gor/runs, "goroutines/listener")
	b.ReportMetric(kern/runs, "tcp-mem-B/listener")
}

// rawServer is an edge behind a real net/http server on loopback, whose
// listeners are raw blocking client sockets outside Go's poller: they add
// nothing to the heap or the scheduler, and never read, so the kernel's
// receive buffers take the stream (about 4 KB a second each).
type rawServer struct {
	b       *testing.B
	e       *Edge
	packer  *program.Packer
	frame   []byte
	sa      *unix.SockaddrInet4
	srv     *http.Server
	clients []int
}

func newRawServer(b *testing.B, cfg Config, clients int, wrap bool) *rawServer {
	cfg.Logger = slog.New(slog.DiscardHandler)
	rs := &rawServer{
		b:       b,
		e:       New(cfg),
		packer:  program.NewPacker(1),
		frame:   bytes.Repeat([]byte{0x78}, 80),
		clients: make([]int, 0, clients),
	}
	rs.publish()
	ring := rs.e.Ring(b.Context(), "s")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rs.e.Serve(w, r, ring, Stream{})
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	if wrap {
		ln = wrapListener{ln}
	}
	go srv.Serve(ln)
	rs.sa = &unix.SockaddrInet4{Port: ln.Addr().(*net.TCPAddr).Port, Addr: [4]byte{127, 0, 0, 1}}
	rs.srv = srv
	return rs
}

// close frees everything, so the next run's descriptors fit the limit.
func (rs *rawServer) close() {
	rs.srv.Close()
	rs.e.Close()
	for _, fd := range rs.clients {
		unix.Close(fd)
	}
	rs.clients = nil
}

// publish adds the program's next chunk, 32 kbit/s.
func (rs *rawServer) publish() {
	var c *program.Chunk
	var err error
	for c == nil && err == nil {
		c, err = rs.packer.Add(rs.frame)
	}
	if err != nil {
		rs.b.Fatal(err)
	}
	rs.e.Publish("s", c)
}

var rawRequest = []byte("GET /live HTTP/1.1\r\nHost: amphi\r\n\r\n")

// connect opens n listeners and waits until the edge has them all.
func (rs *rawServer) connect(n int) {
	for range n {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			rs.b.Fatal(err)
		}
		rs.clients = append(rs.clients, fd)
		if err := unix.Connect(fd, rs.sa); err != nil {
			rs.b.Fatal(err)
		}
		if _, err := unix.Write(fd, rawRequest); err != nil {
			rs.b.Fatal(err)
		}
	}
	want := int64(len(rs.clients))
	for deadline := time.Now().Add(30 * time.Second); rs.e.Stats().Listeners != want; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			rs.b.Fatalf("Listeners = %d, want %d", rs.e.Stats().Listeners, want)
		}
	}
}

func needFiles(b *testing.B, n int) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(n) {
		b.Skipf("needs %d open files, the limit is %d", n, lim.Cur)
	}
}

func idleListenerMemory(b *testing.B, n int, wrap bool) (heap, inuse, goroutines, kernel float64) {
	b.StopTimer()
	rs := newRawServer(b, Config{}, n+1, wrap)
	defer rs.close()
	// One listener first, so the shard's goroutine and the server's accept
	// path are in the baseline.
	rs.connect(1)
	before := settle(runtime.NumGoroutine())
	kern0 := tcpMemPages()

	b.StartTimer()
	rs.connect(n)
	b.StopTimer()
	after := settle(before.goroutines)
	kern1 := tcpMemPages()

	per := float64(n)
	heap = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / per
	inuse = float64(int64(after.HeapInuse+after.StackInuse)-int64(before.HeapInuse+before.StackInuse)) / per
	goroutines = float64(after.goroutines-before.goroutines) / per
	kernel = float64(kern1-kern0) * float64(os.Getpagesize()) / per
	return heap, inuse, goroutines, kernel
}

// BenchmarkListenerSecond measures the whole process's CPU (user and
// system, getrusage) per listener-second while 5000 listeners receive a live
// 32 kbit/s program for 5 s, published in real time: the cost to compare
// with Icecast's 15-18 us. The clients never read, so they cost nothing; the
// loopback receive path runs in the writer's system time, as it would for
// listeners in another process on the same machine.
//
//	go test -run '^$' -bench ListenerSecond -benchtime 1x ./internal/edge/
func BenchmarkListenerSecond(b *testing.B) {
	for _, coalesce := range []time.Duration{200 * time.Millisecond, time.Second} {
		b.Run(fmt.Sprintf("coalesce=%v", coalesce), func(b *testing.B) {
			benchListenerSecond(b, Config{Coalesce: coalesce})
		})
	}
}

func benchListenerSecond(b *testing.B, cfg Config) {
	const n, seconds = 5000, 5
	needFiles(b, 2*n+200)
	var total float64
	for range b.N {
		b.StopTimer()
		rs := newRawServer(b, cfg, n, false)
		rs.connect(n)
		var r0, r1 unix.Rusage
		unix.Getrusage(unix.RUSAGE_SELF, &r0)
		b.StartTimer()
		tick := time.NewTicker(amphi.ChunkDuration)
		for range seconds * time.Second / amphi.ChunkDuration {
			<-tick.C
			rs.publish()
		}
		tick.Stop()
		b.StopTimer()
		unix.Getrusage(unix.RUSAGE_SELF, &r1)
		if s := rs.e.Stats(); s.Listeners != n {
			b.Fatalf("stats %+v", s)
		}
		rs.close()
		cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
		total += float64(cpu.Nanoseconds()) / 1e3 / (n * seconds)
	}
	b.ReportMetric(total/float64(b.N), "cpu-us/listener-second")
}

type memSnapshot struct {
	runtime.MemStats
	goroutines int
}

// settle waits for the server's per-connection goroutines to exit (down to
// want, for up to a second), then collects garbage and reads memory.
func settle(want int) memSnapshot {
	for deadline := time.Now().Add(time.Second); runtime.NumGoroutine() > want && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	var s memSnapshot
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&s.MemStats)
	s.goroutines = runtime.NumGoroutine()
	return s
}

// tcpMemPages reads the pages of TCP buffers the kernel holds, all sockets.
func tcpMemPages() int64 {
	data, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "TCP:") {
			continue
		}
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "mem" {
				n, _ := strconv.ParseInt(f[i+1], 10, 64)
				return n
			}
		}
	}
	return 0
}

// wrapListener wraps its connections in a type that is not a syscall.Conn.
type wrapListener struct{ net.Listener }

func (l wrapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &wrappedConn{Conn: c}, nil
}

type wrappedConn struct{ net.Conn }

func (c *wrappedConn) Unwrap() net.Conn { return c.Conn }
