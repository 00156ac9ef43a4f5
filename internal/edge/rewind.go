package edge

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/program"
)

// Past is a live program's recorded past, which a rewound stream starts
// with (Stream.Past): whole Ogg pages of the program, read from its
// recording, up to where the recording has got.
type Past interface {
	// Read reads the pages after those read already; io.EOF means the
	// recording has none further for now.
	io.Reader
	// Next is the program's chunk after the pages read so far: where the
	// stream goes on from the ring.
	Next() uint64
	// Behind is how far the first audio read is behind the live edge.
	Behind() time.Duration
	io.Closer
}

const (
	// rewindPiece is what a rewound stream writes at once. A player that
	// rewound catches up by reading a little faster than live, so a
	// piece takes it a second or two: small enough that a socket taking
	// nothing for WriteTimeout is a stuck one.
	rewindPiece = 8 << 10
	// joinWait is how long a rewound stream waits at the recording's end
	// for the recorder, whose queue may be behind the ring, before it goes
	// on at the live edge instead (a paused recording stops there).
	joinWait = 2 * time.Second
)

// rewind serves a rewound stream on its own goroutine: the response head
// and header pages, then the past, written with blocking writes as fast as
// the client reads them, then the live program from the ring, handed to a
// shard as any other stream. One goroutine per rewinding listener is what
// the past costs; once caught up the listener costs what others do.
func (e *Edge) rewind(conn net.Conn, ring *program.Ring, st Stream, done func(EndReason)) {
	defer e.wg.Done()
	defer st.Past.Close()
	// Close cuts a rewinding stream too: its blocked write fails at once.
	stopped := make(chan struct{})
	go func() {
		select {
		case <-e.done:
			conn.SetWriteDeadline(time.Unix(1, 0))
		case <-stopped:
		}
	}()
	pos, reason, err := e.replay(conn, ring, st)
	close(stopped)
	if reason != 0 && e.isClosed() {
		reason = EndClosed // the write failed because Close cut it
	}
	if reason != 0 {
		conn.Close()
		e.ends.add(reason)
		e.listeners.Add(-1)
		if err != nil {
			e.cfg.Logger.Debug("edge: listener ended", "reason", reason.String(), "err", err)
		}
		if done != nil {
			done(reason)
		}
		return
	}
	l := listener{pos: pos, stage: stageChunks, batch: e.batchChunks(st.Flush), onEnd: done, stop: st.Stop}
	e.stream(conn, ring, l, e.head)
}

// replay writes the head, the header pages and the past, and returns the
// chunk the stream goes on from, or why it ended.
func (e *Edge) replay(conn net.Conn, ring *program.Ring, st Stream) (uint64, EndReason, error) {
	w := &patientWriter{conn: conn, timeout: e.cfg.WriteTimeout}
	head := append(e.headBehind(st.Past.Behind()), ring.Headers()...)
	if err := w.write(head); err != nil {
		return 0, w.reason(err), err
	}
	buf := make([]byte, rewindPiece)
	var waited time.Duration
	for {
		if st.Stop != nil && st.Stop.Load() {
			return 0, EndReplaced, nil
		}
		n, err := st.Past.Read(buf)
		if n > 0 {
			if err := w.write(buf[:n]); err != nil {
				return 0, w.reason(err), err
			}
			e.bytes.Add(int64(n))
			waited = 0
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, EndWrite, fmt.Errorf("edge: read the recording: %w", err)
		}
		// At the recording's end: go on from the ring once it is close
		// enough to the live edge for a shard to take it on.
		next, live := st.Past.Next(), ring.Next()
		if next >= ring.Oldest() && live-min(next, live) <= e.maxLag/2 {
			return next, 0, nil
		}
		if waited >= joinWait || ring.Ended() {
			return max(live-min(e.burstChunks(0), live), ring.Oldest()), 0, nil
		}
		time.Sleep(amphi.ChunkDuration)
		waited += amphi.ChunkDuration
	}
}

// patientWriter writes with blocking writes, failing only when the socket
// takes nothing for timeout: a reader that reads slowly is not cut.
type patientWriter struct {
	conn    net.Conn
	timeout time.Duration
}

func (w *patientWriter) write(p []byte) error {
	for len(p) > 0 {
		w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
		n, err := w.conn.Write(p)
		p = p[n:]
		if err != nil && (n == 0 || !errors.Is(err, os.ErrDeadlineExceeded)) {
			return err
		}
	}
	return nil
}

// reason tells a listener who left from a socket that failed.
func (w *patientWriter) reason(err error) EndReason {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return EndWrite
	}
	var op *net.OpError
	if errors.As(err, &op) && !op.Timeout() {
		return EndGone
	}
	return EndWrite
}
