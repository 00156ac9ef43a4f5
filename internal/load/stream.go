package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/ogg"
)

// resumeEvery is the pause between two tries at resuming a broken stream,
// as amphi's own client (package client) waits: a live process behind the
// same port answers the first or second.
const resumeEvery = 250 * time.Millisecond

// edgeHeader names the edge process that serves a stream, in its response.
var edgeHeader = []byte("X-Amphi-Edge:")

// listener is one listener of a share across the connections of its
// stream: a resumed stream keeps its player, its ear and its place in the
// program.
type listener struct {
	r     *shareRun
	k     int
	start time.Time // when it joined: its player's clock starts there
	e     *ear      // nil but for sampled listeners
	o     outcome
	pl    player
	buf   []byte
	// conn is the connection of the stream, nil between two; unwatch
	// stops the end of the run from closing it.
	conn    net.Conn
	unwatch func() bool
	// src is the source address of the first connection, which resumes
	// dial from, as a player reconnecting would.
	src    *net.TCPAddr
	ticket string
	// polling says its page polls the state (r.polls).
	polling bool
	// data and readErr are what the response head's last read left.
	data    []byte
	readErr error
	sc      pageScanner
	pages   int // pages of the response, header pages included
	eos     bool
	first   time.Time // the first audio's arrival
	// reported is how many of the player's stalls r.c.stalls has.
	reported int
	// from is the chunk wanted next, after the last one received; -1
	// before the first.
	from int64
	// cur and heard are the index in o.edges of the edge serving and of
	// the edge the last audio came from.
	cur, heard int
	// brokeAt is when the stream broke; zero while audio flows.
	brokeAt time.Time
}

// open connects, joins if the listener has no ticket, asks for the stream
// (from chunk l.from, once a chunk came) and reads the response's head.
// It returns "" on a 200, else the failure's cause and error. Each step
// must be done within the scenario's timeout, and by limit unless zero.
func (l *listener) open(ctx context.Context, limit time.Time) (string, error) {
	r := l.r
	by := func() time.Time {
		t := time.Now().Add(r.timeout)
		if !limit.IsZero() && limit.Before(t) {
			return limit
		}
		return t
	}
	dctx, cancel := context.WithDeadline(ctx, by())
	conn, err := l.dial(dctx)
	cancel()
	if err != nil {
		return l.fail(ctx, err)
	}
	// The end of the run closes the connection, which ends a blocked read.
	l.conn, l.unwatch = conn, context.AfterFunc(ctx, func() { conn.Close() })
	if err := conn.SetDeadline(by()); err != nil {
		return classify(err), err
	}
	target := r.stream
	if target == "" {
		if l.ticket == "" {
			ticket, _, o := r.joinFlow(ctx, conn)
			if ticket == "" {
				return o.cause, o.err
			}
			l.ticket = ticket
			if r.polls != nil && !l.polling {
				l.polling = true
				r.polls.open(l.k)
			}
			if err := conn.SetDeadline(by()); err != nil {
				return classify(err), err
			}
		}
		target = r.live + url.QueryEscape(l.ticket) + r.query
		if l.from >= 0 {
			target += "&from_seq=" + strconv.FormatInt(l.from, 10)
		}
	}
	req := fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: amphi-load\r\nAccept: */*\r\n\r\n", target, r.host)
	if _, err := conn.Write(req); err != nil {
		return l.fail(ctx, err)
	}

	buf := l.buf
	n, body := 0, -1
	for body < 0 {
		m, err := conn.Read(buf[n:])
		n += m
		l.readErr = err
		if i := bytes.Index(buf[:n], headerEnd); i >= 0 {
			body = i + len(headerEnd)
			break
		}
		if err != nil {
			return l.fail(ctx, err)
		}
		if n == len(buf) {
			return causeBadResponse, errors.New("load: response header over 4 KiB")
		}
	}
	if status, ok := statusCode(buf[:body]); !ok {
		return causeBadResponse, fmt.Errorf("load: response %q", firstLine(buf[:body]))
	} else if status != 200 {
		return "http_" + strconv.Itoa(status), fmt.Errorf("load: %s: %s", firstLine(buf[:body]), bytes.TrimSpace(buf[body:n]))
	}
	r.c.bytes.Add(int64(n))
	l.useEdge(string(headerValue(buf[:body], edgeHeader)))
	l.data, l.sc, l.pages = buf[body:n], pageScanner{}, 0
	if l.e != nil {
		l.e.skip() // a page the last connection cut short
	}
	return "", nil
}

// fail returns the cause and error of a failed step.
func (l *listener) fail(ctx context.Context, err error) (string, error) {
	o := l.r.ended(ctx, outcome{}, err, false)
	return o.cause, o.err
}

// dial connects to the server: the first time from the share's next
// source address, then from the same one again.
func (l *listener) dial(ctx context.Context) (net.Conn, error) {
	if l.src == nil {
		conn, err := l.r.dialer.DialContext(ctx, "tcp", l.r.addr)
		if err == nil {
			if a, ok := conn.LocalAddr().(*net.TCPAddr); ok {
				l.src = &net.TCPAddr{IP: a.IP}
			}
		}
		return conn, err
	}
	// No keepalive, as loopnet's: the connection is busy.
	d := net.Dialer{LocalAddr: l.src, KeepAlive: -1}
	return d.DialContext(ctx, "tcp", l.r.addr)
}

// hangUp closes the stream's connection, if it has one.
func (l *listener) hangUp() {
	if l.conn != nil {
		l.unwatch()
		l.conn.Close()
		l.conn = nil
	}
}

// useEdge notes that the edge named name serves the stream from now on.
func (l *listener) useEdge(name string) {
	first := len(l.o.edges) == 0
	l.cur = len(l.o.edges)
	for i, u := range l.o.edges {
		if u.name == name {
			l.cur = i
			break
		}
	}
	if l.cur == len(l.o.edges) {
		l.o.edges = append(l.o.edges, edgeUse{name: name})
	}
	if first {
		l.o.edges[l.cur].Started++
	}
}

// play reads the stream from the connection open opened until it breaks
// or ends, and returns the error that ended it.
func (l *listener) play(ctx context.Context) error {
	r := l.r
	data, readErr := l.data, l.readErr
	now := time.Now()
	var armed time.Time
	for {
		at := now.Sub(l.start)
		for len(data) > 0 {
			c, p, ok, err := l.sc.Next(data)
			if l.e != nil {
				l.e.gather(data[:c])
			}
			data = data[c:]
			if err != nil {
				l.o.cause, l.o.err = causeBadStream, err
				return err
			}
			if ok {
				l.page(p, now, at)
			}
		}
		if d := l.pl.stalls - l.reported; d > 0 {
			r.c.stalls.Add(int64(d))
			l.reported = l.pl.stalls
		}
		if readErr != nil {
			return readErr
		}
		if l.o.audio && now.Sub(armed) >= rearmEvery {
			armed = now
			if err := l.conn.SetReadDeadline(now.Add(r.timeout)); err != nil {
				readErr = err
				continue
			}
		}
		var m int
		m, readErr = l.conn.Read(l.buf)
		now = time.Now()
		r.c.bytes.Add(int64(m))
		data = l.buf[:m]
	}
}

// page takes a page that arrived at now (at on the listener's clock).
func (l *listener) page(p pageInfo, now time.Time, at time.Duration) {
	l.eos = l.eos || p.Flags&ogg.FlagEOS != 0
	chunk := int64(p.Seq) - headerPages
	// Header pages, empty pages and the chunks a resumed response repeats
	// are no new audio.
	if l.pages++; l.pages <= headerPages || p.Packets == 0 || chunk < l.from {
		if l.e != nil {
			l.e.skip()
		}
		return
	}
	if l.from >= 0 && chunk > l.from {
		l.o.holes++
		l.o.missed += chunk - l.from
	}
	l.from = chunk + 1
	if !l.o.audio {
		l.o.audio, l.o.ttfa, l.first = true, at, now
		l.r.c.live.Add(1)
		l.heard = l.cur
		if l.e != nil {
			l.e.start(now)
		}
	}
	if !l.brokeAt.IsZero() {
		l.o.resumed = append(l.o.resumed, now.Sub(l.brokeAt))
		l.o.edges[l.cur].Resumed++
		l.brokeAt = time.Time{}
	}
	stalls := l.pl.stalls
	l.pl.arrive(at, time.Duration(p.Packets)*amphi.FrameDuration)
	l.charge(stalls)
	l.heard = l.cur
	if l.e != nil {
		l.e.hear(p, now)
	}
}

// charge counts the player's stalls since it had stalls against the edge
// the audio before them came from: the one that stopped sending.
func (l *listener) charge(stalls int) {
	if d := l.pl.stalls - stalls; d > 0 {
		l.o.edges[l.heard].Stalls += int64(d)
	}
}

// resume asks for the stream again, from the chunk after the last one
// received, every resumeEvery while the scenario's Resume since it broke
// leaves time for a try. It reports whether a new response came; if not, l.o says why.
func (l *listener) resume(ctx context.Context) bool {
	if l.brokeAt.IsZero() { // else a resumed stream broke again before new audio
		l.brokeAt = time.Now()
	}
	deadline := l.brokeAt.Add(l.r.resume)
	wait := time.NewTimer(0)
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			l.o.cause, l.o.err = causeEnded, nil
			return false
		case <-wait.C:
		}
		l.hangUp()
		cause, err := l.open(ctx, deadline)
		switch {
		case cause == "":
			return true
		case cause == causeEnded:
			l.o.cause, l.o.err = causeEnded, nil
			return false
		case cause == "http_401":
			l.ticket = "" // expired or refused: join again, as at the start
		case strings.HasPrefix(cause, "http_4") && cause != "http_429":
			l.o.cause, l.o.err, l.o.resumeFailed = cause, err, true
			return false
		}
		// A try needs time for its connection and the response's head.
		if time.Until(deadline) < resumeEvery {
			l.o.resumeFailed = true
			return false
		}
		wait.Reset(resumeEvery)
	}
}

// finish closes the player model of a listener that received audio.
func (l *listener) finish() outcome {
	if !l.o.audio {
		return l.o
	}
	now := time.Now()
	stalls := l.pl.stalls
	l.pl.finish(now.Sub(l.start), l.o.cause == causeEOS)
	l.charge(stalls)
	l.r.c.stalls.Add(int64(l.pl.stalls - l.reported))
	l.o.stalls = l.pl.stalls
	l.o.listenTime = now.Sub(l.first)
	return l.o
}

// headerValue returns the value of the header line of head that starts
// with name (its colon included), in any case; nil if there is none.
func headerValue(head, name []byte) []byte {
	for len(head) > 0 {
		var line []byte
		line, head, _ = bytes.Cut(head, crlf)
		if len(line) >= len(name) && bytes.EqualFold(line[:len(name)], name) {
			return bytes.TrimSpace(line[len(name):])
		}
	}
	return nil
}

var crlf = []byte("\r\n")
