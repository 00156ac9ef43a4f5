package api

import (
	"net/http"
	"time"
)

// writeProgress is how long one write of a long response may take before
// the connection is cut: a reader that stops must not hold its connection,
// and its place under the per-source cap, for good. A player that pauses
// reading for longer asks again with Range.
const writeProgress = 10 * time.Second

// progressWriter gives each write of a response writeProgress to complete,
// extending the connection's write deadline as the response goes on. Its
// only methods are ResponseWriter's: io.Copy writes through Write, in
// pieces of 32 KiB, rather than handing the file to sendfile(2) with no
// deadline of ours between its parts.
type progressWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
}

// newProgressWriter wraps w. The returned func, called once the handler
// has written the response, flushes what net/http still buffers under the
// same deadline, then clears it for the next request on a kept-alive
// connection.
func newProgressWriter(w http.ResponseWriter) (*progressWriter, func()) {
	pw := &progressWriter{ResponseWriter: w, rc: http.NewResponseController(w)}
	return pw, func() {
		if pw.extend() == nil && pw.rc.Flush() == nil {
			pw.rc.SetWriteDeadline(time.Time{})
		}
	}
}

func (w *progressWriter) Write(b []byte) (int, error) {
	if err := w.extend(); err != nil {
		return 0, err
	}
	return w.ResponseWriter.Write(b)
}

func (w *progressWriter) extend() error {
	return w.rc.SetWriteDeadline(time.Now().Add(writeProgress))
}
