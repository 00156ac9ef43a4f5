package edge_test

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/edge"
	"github.com/amphi-audio/amphi/internal/program"
)

// countingListener wraps its connections, as a server that counts open
// sockets does; the edge reaches the socket through Unwrap.
type countingListener struct {
	net.Listener
	open atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.open.Add(1)
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l      *countingListener
	closed atomic.Bool
}

func (c *countedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.open.Add(-1)
	}
	return c.Conn.Close()
}

func (c *countedConn) Unwrap() net.Conn { return c.Conn }

func TestWrappedConnIsStreamedAndClosedAtTheEnd(t *testing.T) {
	te := &testEdge{
		Edge:   edge.New(edge.Config{Logger: slog.New(slog.DiscardHandler)}),
		seen:   make(map[edge.EndReason]int64),
		packer: program.NewPacker(serial),
		frame:  make([]byte, 40),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		te.Serve(w, r, te.Ring(r.Context(), space), edge.Stream{})
	})}
	go srv.Serve(cl)
	t.Cleanup(func() {
		te.Close()
		srv.Close()
	})
	te.addr = ln.Addr().String()
	te.publish(t, 2, false)

	l := listen(t, te.addr)
	l.headers(t)
	l.page(t)
	te.waitListeners(t, 1)
	if n := cl.open.Load(); n != 1 {
		t.Fatalf("%d connections counted open while streaming, want 1", n)
	}
	te.publish(t, 1, true)
	if _, err := io.Copy(io.Discard, l.resp.Body); err != nil {
		t.Fatal(err)
	}
	if r := te.waitEnded(t); r != edge.EndProgram {
		t.Fatalf("ended with %q", r)
	}
	for deadline := time.Now().Add(5 * time.Second); cl.open.Load() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections counted open after the end", cl.open.Load())
		}
	}
}
