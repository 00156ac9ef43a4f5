package attack

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// cause is why an attempt failed; Stats.Errors is keyed by its name.
type cause int

const (
	causeRefused cause = iota
	causeReset
	causeTimeout
	causeEOF
	causeMalformed
	causeNoPort
	causeNoFD
	causeStopped
	causeOther
	numCauses
)

var causeNames = [numCauses]string{"refused", "reset", "timeout", "eof", "malformed", "no-port", "no-fd", "stopped", "other"}

func (c cause) String() string { return causeNames[c] }

// classify names an I/O error. It does not know about stopping: the caller
// checks its context first.
func classify(err error) cause {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return causeRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return causeReset
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return causeEOF
	case errors.Is(err, errMalformed):
		return causeMalformed
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE):
		return causeNoPort
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return causeNoFD
	// A flood's connection is closed under it only when its request's
	// deadline passes (the Run's own stop is checked before classify).
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded), errors.Is(err, net.ErrClosed):
		return causeTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return causeTimeout
	}
	return causeOther
}

// stopping reports whether the attack is ending. The deadline is checked
// too: a dial or read bounded by it can fail a moment before the context
// says it is done.
func (r *runner) stopping(ctx context.Context) bool {
	return ctx.Err() != nil || !time.Now().Before(r.deadline)
}

// fail counts a failed attempt: as stopped if the attack was ending, else by
// its cause.
func (r *runner) fail(ctx context.Context, err error) {
	c := classify(err)
	if r.stopping(ctx) {
		c = causeStopped
	}
	r.errs[c].Add(1)
}

var (
	errMalformed = errors.New("attack: response is not an HTTP/1.x status line")
	errShort     = errors.New("attack: status line incomplete")
)

// statusLineMin is the shortest complete status line prefix:
// "HTTP/1.1 404" and the space or line end after the code.
const statusLineMin = len("HTTP/1.1 404 ")

// parseStatusLine returns the status code at the start of b, the first
// bytes of a response. It returns errShort while b is a proper prefix of a
// status line and errMalformed once it cannot be one. Codes are 100-999.
func parseStatusLine(b []byte) (int, error) {
	const pattern = "HTTP/d.d ddd" // d: a digit
	for i := 0; i < len(pattern) && i < len(b); i++ {
		c := b[i]
		if p := pattern[i]; p == 'd' && (c < '0' || c > '9') || p != 'd' && c != p {
			return 0, errMalformed
		}
	}
	if len(b) < statusLineMin {
		return 0, errShort
	}
	if c := b[statusLineMin-1]; c != ' ' && c != '\r' && c != '\n' {
		return 0, errMalformed
	}
	code := int(b[9]-'0')*100 + int(b[10]-'0')*10 + int(b[11]-'0')
	if code < 100 {
		return 0, errMalformed
	}
	return code, nil
}

// scratch is one flood request's buffers, pooled so a flood allocates
// little beyond what dialing costs.
type scratch struct {
	req  []byte
	body []byte
	resp [512]byte
}

var scratchPool = sync.Pool{New: func() any { return &scratch{req: make([]byte, 0, 1024), body: make([]byte, 0, 256)} }}

// flood makes request i on a new connection and counts its status.
func (r *runner) flood(ctx context.Context, i int) {
	reqCtx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	conn, err := r.dialer.DialContext(reqCtx, "tcp", r.target.addr)
	if err != nil {
		r.fail(ctx, err)
		return
	}
	opened := time.Now()
	r.opened()
	// Closing the connection is what unblocks a Write or Read when the
	// request's deadline passes or the attack stops.
	stop := context.AfterFunc(reqCtx, func() { conn.Close() })
	sc := scratchPool.Get().(*scratch)
	code, err := r.exchange(conn, sc, i)
	scratchPool.Put(sc)
	stop()
	conn.Close()
	r.closed(time.Since(opened))
	if err != nil {
		r.fail(ctx, err)
		return
	}
	r.countStatus(code)
	r.completed.Add(1)
}

// exchange writes request i and reads the response's status line; the rest
// of the response is left unread (closing then resets the connection, which
// costs the server no more than a polite close).
func (r *runner) exchange(conn net.Conn, sc *scratch, i int) (int, error) {
	sc.req = r.appendFloodRequest(sc.req[:0], sc, i)
	if _, err := conn.Write(sc.req); err != nil {
		return 0, err
	}
	return readStatus(conn, sc.resp[:])
}

// readStatus reads until buf holds a status line.
func readStatus(conn net.Conn, buf []byte) (int, error) {
	n := 0
	for {
		m, err := conn.Read(buf[n:])
		n += m
		code, perr := parseStatusLine(buf[:n])
		if perr != errShort {
			return code, perr
		}
		if err != nil {
			if err == io.EOF && n > 0 {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
	}
}

// The bodies a join flood cycles through: what a bot that does not know the
// protocol sends, and what one that does but cannot solve or sign sends.
const (
	joinEmpty = iota
	joinGarbage
	joinTruncatedJSON
	joinForgedPoW
	joinForgedTicket
	numJoinBodies
)

// appendFloodRequest appends request i of a flood: a complete HTTP/1.1
// request that asks the server to close afterwards.
func (r *runner) appendFloodRequest(dst []byte, sc *scratch, i int) []byte {
	if r.cfg.Kind == ListenFlood {
		dst = r.appendRequestLine(dst, "GET", i%2 == 0)
		dst = append(dst, "Connection: close\r\n\r\n"...)
		return dst
	}
	body := sc.body[:0]
	ctype := "application/json"
	switch i % numJoinBodies {
	case joinEmpty:
		ctype = ""
	case joinGarbage:
		for range 8 {
			body = appendUint64(body, rand.Uint64())
		}
	case joinTruncatedJSON:
		body = append(body, `{"ticket":"`...)
		body = appendRandom(body, b64URL, 12)
	case joinForgedPoW:
		body = append(body, `{"challenge":"`...)
		body = appendRandom(body, b64URL, 43)
		body = append(body, `","nonce":"`...)
		body = appendRandom(body, hexDigits, 16)
		body = append(body, `","difficulty":20}`...)
	case joinForgedTicket:
		body = append(body, `{"ticket":"`...)
		body = appendForgedTicket(body)
		body = append(body, `"}`...)
	}
	sc.body = body
	dst = r.appendRequestLine(dst, "POST", false)
	if ctype != "" {
		dst = append(dst, "Content-Type: "...)
		dst = append(dst, ctype...)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, "Content-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(body)), 10)
	dst = append(dst, "\r\nConnection: close\r\n\r\n"...)
	return append(dst, body...)
}

// appendRequestLine appends the request line and the headers every attack
// sends, with a forged ticket in the query if ticket is set.
func (r *runner) appendRequestLine(dst []byte, method string, ticket bool) []byte {
	t := &r.target
	dst = append(dst, method...)
	dst = append(dst, ' ')
	dst = append(dst, t.pathBefore...)
	if t.hasID {
		dst = appendRandom(dst, base32Lower, 16)
		dst = append(dst, t.pathAfter...)
	}
	if ticket {
		if t.query {
			dst = append(dst, '&')
		} else {
			dst = append(dst, '?')
		}
		dst = append(dst, "ticket="...)
		dst = appendForgedTicket(dst)
	}
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, t.host...)
	dst = append(dst, "\r\nUser-Agent: amphi-load/attack\r\n"...)
	return dst
}

// Alphabets of 32 and 64 symbols, so 5 or 6 random bits pick one.
const (
	base32Lower = "abcdefghijklmnopqrstuvwxyz234567"
	b64URL      = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	hexDigits   = "0123456789abcdef"
)

// appendRandom appends n random symbols of alphabet, whose length is a
// power of two up to 64.
func appendRandom(dst []byte, alphabet string, n int) []byte {
	mask := uint64(len(alphabet) - 1)
	for n > 0 {
		v := rand.Uint64()
		for k := 0; k < 10 && n > 0; k++ {
			dst = append(dst, alphabet[v&mask])
			v >>= 6
			n--
		}
	}
	return dst
}

// appendForgedTicket appends something shaped like a signed ticket
// (version, payload, signature), signed by nobody.
func appendForgedTicket(dst []byte) []byte {
	dst = append(dst, "v1."...)
	dst = appendRandom(dst, b64URL, 32)
	dst = append(dst, '.')
	return appendRandom(dst, b64URL, base64.RawURLEncoding.EncodedLen(32))
}

func appendUint64(dst []byte, v uint64) []byte {
	for range 8 {
		dst = append(dst, byte(v))
		v >>= 8
	}
	return dst
}
