package api

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/gate"
)

// The lean path refuses a listen request with a bad ticket before net/http
// parses it (DESIGN.md principle 3: refusing is cheap). A flood of forged
// or expired tickets is the cheapest attack on a listener's door: through
// net/http each refusal costs a parsed request, a header map, the router,
// a response writer and a JSON encoding, more than a bare net/http server
// answering 401 (docs/BENCHMARKS.md). Here it costs a scan of the request
// head, the ticket check (no I/O, no allocation) and one write of a
// response built once per reason.
//
// LeanConn wraps each connection of the listeners' address. Until the
// first request it does not refuse, it reads request heads itself: a GET
// of /spaces/{id}/live.opus whose ?ticket= the listen limiter or the
// signer refuses is answered on the spot, exactly as the handler would
// answer it, and net/http never sees it. The first other request (or
// anything it does not understand) and everything after it go to net/http
// untouched: valid tickets, joins, pages, a request with a body or a
// cookie, HTTP/1.0, pipelining past the buffer. Deadlines net/http sets on
// the connection apply to the reads made here, so a slow client is cut by
// ReadHeaderTimeout as before.

// leanBufSize bounds the request head the lean path reads; a longer one
// goes to net/http, which applies MaxHeaderBytes.
const leanBufSize = 2048

// leanWriteTimeout bounds the write of one refusal to a client that does
// not read its answers; leanReadTimeout, the wait for the next request
// head after a refusal, as net/http's ReadHeaderTimeout does for the first.
const (
	leanWriteTimeout = 5 * time.Second
	leanReadTimeout  = 5 * time.Second
)

var leanBufs = sync.Pool{New: func() any { return new([leanBufSize]byte) }}

// LeanConn returns c wrapped for the lean refusal path. With trusted
// proxies configured it returns c: the client is then named by headers the
// lean path does not read.
func (s *Server) LeanConn(c net.Conn) net.Conn {
	if len(s.gate.cfg.TrustedProxies) > 0 {
		return c
	}
	lc := &leanConn{Conn: c, s: s}
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		lc.addr = ap.Addr().Unmap()
	}
	return lc
}

// leanConn is a connection in its lean phase (buf != nil) or passed on to
// net/http (buf == nil, pending drained).
type leanConn struct {
	net.Conn
	s    *Server
	addr netip.Addr

	buf     *[leanBufSize]byte // nil once passed on and drained
	n       int                // bytes held in buf
	pending []byte             // held bytes net/http has yet to read
	passed  bool
	// answered: the lean path refused at least one request here.
	answered bool
}

// Answered reports whether the lean path answered a request on the
// connection, which then counts as having sent a complete one.
func (c *leanConn) Answered() bool { return c.answered }

// Unwrap gives the edge the connection underneath.
func (c *leanConn) Unwrap() net.Conn { return c.Conn }

// Read serves net/http: in the lean phase it reads request heads, answers
// those it refuses and hands on the rest.
func (c *leanConn) Read(p []byte) (int, error) {
	for {
		if len(c.pending) > 0 {
			n := copy(p, c.pending)
			c.pending = c.pending[n:]
			if len(c.pending) == 0 {
				c.release()
			}
			return n, nil
		}
		if c.passed {
			return c.Conn.Read(p)
		}
		if c.buf == nil {
			c.buf = leanBufs.Get().(*[leanBufSize]byte)
		}
		// Answer every complete head held, then read more.
		for !c.passed {
			end := bytes.Index(c.buf[:c.n], crlfcrlf)
			if end < 0 {
				break
			}
			end += len(crlfcrlf)
			resp := c.refusal(c.buf[:end])
			if resp == nil {
				c.pass()
				break
			}
			c.answered = true
			if err := c.write(resp); err != nil {
				c.release()
				return 0, err
			}
			c.Conn.SetReadDeadline(time.Now().Add(leanReadTimeout))
			c.n = copy(c.buf[:], c.buf[end:c.n])
		}
		if c.passed {
			continue
		}
		if c.n == len(c.buf) {
			c.pass() // a head too long to be one we refuse
			continue
		}
		n, err := c.Conn.Read(c.buf[c.n:])
		c.n += n
		if err != nil {
			if c.n > 0 {
				c.pass() // net/http gets what came, then the error
				continue
			}
			c.release()
			return 0, err
		}
	}
}

// pass hands the connection on to net/http, held bytes first.
func (c *leanConn) pass() {
	c.passed = true
	c.pending = c.buf[:c.n]
	c.n = 0
	if len(c.pending) == 0 {
		c.release()
	}
}

func (c *leanConn) release() {
	if c.buf != nil {
		leanBufs.Put(c.buf)
		c.buf, c.pending = nil, nil
	}
}

func (c *leanConn) write(b []byte) error {
	c.Conn.SetWriteDeadline(time.Now().Add(leanWriteTimeout))
	_, err := c.Conn.Write(b)
	c.Conn.SetWriteDeadline(time.Time{})
	return err
}

func (c *leanConn) Close() error {
	c.release()
	return c.Conn.Close()
}

var (
	crlfcrlf = []byte("\r\n\r\n")
	crlf     = []byte("\r\n")
)

// refusal returns the response to a request head the lean path refuses, or
// nil to hand the request to net/http. It counts what it refuses as the
// handler would.
func (c *leanConn) refusal(head []byte) []byte {
	id, ticket, ok := leanListenRequest(head)
	if !ok {
		return nil
	}
	a, now := c.s.gate, c.s.cfg.Now()
	if c.addr.IsValid() {
		if d, reason := a.listen.Check(c.addr, now); d == gate.LimitRefuse {
			a.leanRefuse(reason, c.addr)
			return leanRateLimited
		}
	}
	_, err := a.signer.Verify(ticket, id, now)
	if err == nil {
		return nil
	}
	a.leanRefuse(refusalOf(err), c.addr)
	return leanResponse(err)
}

func (a *admission) leanRefuse(reason gate.Refusal, addr netip.Addr) {
	a.listenRequests.Add(1)
	a.lean.Add(1)
	a.refuse(reason, addr)
}

// leanListenRequest reports whether head is an HTTP/1.1 GET of
// /spaces/{id}/live.opus with a plain ?ticket=, a Host, and nothing the
// lean path leaves to net/http: a body, a cookie, Connection or Expect
// headers, an escaped or repeated ticket.
func leanListenRequest(head []byte) (id, ticket string, ok bool) {
	line, rest, _ := bytes.Cut(head, crlf)
	target, found := bytes.CutPrefix(line, []byte("GET /spaces/"))
	if !found {
		return "", "", false
	}
	target, found = bytes.CutSuffix(target, []byte(" HTTP/1.1"))
	if !found {
		return "", "", false
	}
	sp, query, found := bytes.Cut(target, []byte("/live.opus?"))
	if !found || len(sp) == 0 || len(sp) > gate.MaxSpaceLen || bytes.ContainsAny(sp, "/%?# ") {
		return "", "", false
	}
	var tok []byte
	for len(query) > 0 {
		var kv []byte
		kv, query, _ = bytes.Cut(query, []byte("&"))
		if v, isTicket := bytes.CutPrefix(kv, []byte("ticket=")); isTicket {
			if tok != nil || len(v) == 0 || len(v) > gate.MaxTokenLen || bytes.ContainsAny(v, "%+ ") {
				return "", "", false
			}
			tok = v
		}
	}
	if tok == nil {
		return "", "", false
	}
	host := false
	for len(rest) > 2 {
		var h []byte
		h, rest, _ = bytes.Cut(rest, crlf)
		name, _, _ := bytes.Cut(h, []byte(":"))
		host = host || bytes.EqualFold(name, []byte("Host"))
		for _, other := range leanPassHeaders {
			if bytes.EqualFold(name, other) {
				return "", "", false
			}
		}
	}
	return string(sp), string(tok), host
}

// leanPassHeaders are request headers that send a request to net/http.
var leanPassHeaders = [][]byte{
	[]byte("Content-Length"), []byte("Transfer-Encoding"), []byte("Cookie"),
	[]byte("Connection"), []byte("Expect"), []byte("Upgrade"),
}

// leanResponses holds the response built for each ticket refusal, which
// the gate preallocates: built once, written many times.
var leanResponses sync.Map // *gate.RefusalError → []byte

var leanRateLimited = buildLeanResponse(amphi.Errorf(amphi.ERateLimited, "too many requests from your network; retry in a few seconds"))

func leanResponse(err error) []byte {
	key, ok := err.(*gate.RefusalError)
	if !ok {
		return buildLeanResponse(err)
	}
	if b, ok := leanResponses.Load(key); ok {
		return b.([]byte)
	}
	b := buildLeanResponse(err)
	leanResponses.Store(key, b)
	return b
}

// buildLeanResponse writes the response s.error would: the same status,
// headers and JSON body.
func buildLeanResponse(err error) []byte {
	var body errorBody
	code := amphi.ErrorCode(err)
	body.Error.Code, body.Error.Message = code, amphi.ErrorMessage(err)
	js, _ := json.MarshalIndent(&body, "", "  ")
	js = append(js, '\n')
	st := StatusCode(code)
	b := []byte("HTTP/1.1 " + strconv.Itoa(st) + " " + http.StatusText(st) + "\r\n")
	b = append(b, "Content-Type: application/json\r\nCache-Control: no-store\r\n"...)
	if st == http.StatusUnauthorized {
		b = append(b, "Www-Authenticate: Bearer realm=\"amphi\"\r\n"...)
	}
	if code == amphi.ERateLimited {
		b = append(b, "Retry-After: 5\r\n"...)
	}
	b = append(b, "Content-Length: "+strconv.Itoa(len(js))+"\r\n\r\n"...)
	return append(b, js...)
}
