package edge

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/program"
)

// discardConn is a net.Conn that accepts every write and reads nothing: the
// cost of a listener without the kernel's. net.Buffers.WriteTo falls back to
// one Write per buffer on it, where a *net.TCPConn does one writev.
type discardConn struct{}

func (discardConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (discardConn) Write(b []byte) (int, error)      { return len(b), nil }
func (discardConn) Close() error                     { return nil }
func (discardConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (discardConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (discardConn) SetDeadline(time.Time) error      { return nil }
func (discardConn) SetReadDeadline(time.Time) error  { return nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }

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

// BenchmarkDeliverChunk measures delivering one chunk to every listener:
// for each, the listener.write path (its cursor into the ring, the reused
// vectors, a write deadline and net.Buffers.WriteTo). One op is one chunk to
// all listeners; ns/listener and allocs/listener divide it per listener.
// Publishing to the ring is outside the timed region.
func BenchmarkDeliverChunk(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("discard/listeners=%d", n), func(b *testing.B) {
			conns := make([]net.Conn, n)
			for i := range conns {
				conns[i] = discardConn{}
			}
			benchDeliver(b, conns)
		})
	}
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("tcp/listeners=%d", n), func(b *testing.B) {
			benchDeliver(b, tcpConns(b, n))
		})
	}
}

// tcpConns returns the server ends of n loopback TCP connections whose
// client ends are drained by goroutines until the benchmark ends.
func tcpConns(b *testing.B, n int) []net.Conn {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		go io.Copy(io.Discard, c)
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		conns[i] = s
		b.Cleanup(func() {
			s.Close()
			c.Close()
		})
	}
	return conns
}

func benchDeliver(b *testing.B, conns []net.Conn) {
	const ringSize, batch = 512, 256
	e := New(Config{RingChunks: ringSize, Logger: slog.New(slog.DiscardHandler)})
	ring := program.NewRing(program.Headers(1), ringSize)
	pages := benchChunks(b, batch)
	ls := make([]*listener, len(conns))
	for i, c := range conns {
		ls[i] = &listener{edge: e, conn: c, ring: ring, vec: make([][]byte, 0, 8)}
	}
	// Warm up: a connection's first writev allocates its iovec cache
	// (internal/poll.FD.Writev), once per connection, not per chunk.
	ring.Publish(&program.Chunk{Seq: 0, Page: pages[0].Page})
	for _, l := range ls {
		if _, err := l.write(1); err != nil {
			b.Fatal(err)
		}
	}
	var ms runtime.MemStats
	var untimed uint64 // mallocs while publishing, outside the timed region
	seq := uint64(1)
	b.ReportAllocs()
	runtime.ReadMemStats(&ms)
	start := ms.Mallocs
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%batch == 0 {
			b.StopTimer()
			runtime.ReadMemStats(&ms)
			m0 := ms.Mallocs
			for _, p := range pages {
				ring.Publish(&program.Chunk{Seq: seq, Page: p.Page})
				seq++
			}
			runtime.ReadMemStats(&ms)
			untimed += ms.Mallocs - m0
			b.StartTimer()
		}
		for _, l := range ls {
			if _, err := l.write(l.pos + 1); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms)
	per := float64(b.N) * float64(len(ls))
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/per, "ns/listener")
	b.ReportMetric(float64(ms.Mallocs-start-untimed)/per, "allocs/listener")
}
