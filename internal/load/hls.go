package load

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bounds on what an HLS listener reads, far above what amphi sends: a
// playlist lists 30 s (~150 parts, a few KiB) and a part is 200 ms of
// audio (~1 KiB).
const (
	maxPlaylistBytes = 512 << 10
	maxMediaBytes    = 1 << 20
	// maxEntryHops bounds the redirects and multivariant playlists
	// between hls_url and a media playlist.
	maxEntryHops = 4
)

// hlsStartParts is how far behind the newest part an HLS listener starts,
// in parts: PART-HOLD-BACK is at least three part targets (RFC 8216bis
// §4.4.3.8), and low-latency players start there, fetching those parts
// back to back to fill their buffer.
const hlsStartParts = 3

// hlsMaxBlock is the longest a server holds a blocking reload: three
// target durations of 2 s (RFC 8216bis §6.2.5.2), as amphi does.
const hlsMaxBlock = 6 * time.Second

// defaultPartTarget is the wait between two reloads of a playlist that
// names no next part (no preload hint), when it gives no PART-TARGET.
const defaultPartTarget = 200 * time.Millisecond

// HLSCounts is what LL-HLS listeners (Scenario.HLS) did, summed.
type HLSCounts struct {
	// Parts counts the parts received, PartBytes their bodies.
	Parts     int64 `json:"parts"`
	PartBytes int64 `json:"part_bytes"`
	// Playlists counts the playlists answered: the entry's, redirects and
	// multivariant playlists included. Reloads counts those that were
	// blocking reloads (_HLS_msn and _HLS_part) and ReloadsFailed those
	// of them answered with an error the player retried (503: the part
	// did not come within the server's block).
	Playlists     int64 `json:"playlists"`
	Reloads       int64 `json:"reloads"`
	ReloadsFailed int64 `json:"reloads_failed"`
	// PlaylistBytes is the playlists' bodies as received (gzipped when
	// the server gzipped them).
	PlaylistBytes int64 `json:"playlist_bytes"`
	// Gzipped counts the playlists that came gzipped.
	Gzipped int64 `json:"gzipped"`
	// Requests counts every HTTP request after the join, playlists and
	// parts, those the run's end cut short included; the other counts
	// are of answers received.
	Requests int64 `json:"requests"`
	// Reconnects counts the connections a listener opened again after
	// the server (or a proxy) closed its keep-alive one.
	Reconnects int64 `json:"reconnects"`
	// Skipped counts the parts listeners never fetched because the
	// playlist no longer or never listed them (a hole, or a listener
	// that fell a window behind).
	Skipped int64 `json:"skipped"`
	// PartsPerListenerSecond and PlaylistsPerListenerSecond are Parts
	// and Playlists over Report.ListenerSeconds: 5 and at most about 5
	// for a player that keeps up (a reload may list two new parts).
	PartsPerListenerSecond     float64 `json:"parts_per_listener_second"`
	PlaylistsPerListenerSecond float64 `json:"playlists_per_listener_second"`
}

func (c *HLSCounts) add(o *HLSCounts) {
	c.Parts += o.Parts
	c.PartBytes += o.PartBytes
	c.Playlists += o.Playlists
	c.Reloads += o.Reloads
	c.ReloadsFailed += o.ReloadsFailed
	c.PlaylistBytes += o.PlaylistBytes
	c.Gzipped += o.Gzipped
	c.Requests += o.Requests
	c.Reconnects += o.Reconnects
	c.Skipped += o.Skipped
}

func (c *HLSCounts) summarize(listenerSeconds float64) {
	c.PartsPerListenerSecond, c.PlaylistsPerListenerSecond = 0, 0
	if listenerSeconds > 0 {
		c.PartsPerListenerSecond = float64(c.Parts) / listenerSeconds
		c.PlaylistsPerListenerSecond = float64(c.Playlists) / listenerSeconds
	}
}

// gzipReaders are shared by a process's HLS listeners: a reader holds a
// 32 KiB window and tables, and each is busy only while a playlist is read.
var gzipReaders sync.Pool

// partKey orders parts: segment (media sequence number), then part.
type partKey struct{ msn, part int64 }

func (a partKey) less(b partKey) bool {
	return a.msn < b.msn || a.msn == b.msn && a.part < b.part
}

// listedPart is a part a playlist lists, its URI as offsets into the
// listener's playlist buffer, so a reload allocates nothing per part.
type listedPart struct {
	key      partKey
	uri      [2]int
	duration time.Duration
}

// hlsListener is one LL-HLS listener: a listener (its connection, source
// address, player and outcome) that plays a media playlist part by part
// over its one keep-alive connection, the one its join used.
type hlsListener struct {
	listener
	br     *bufio.Reader
	closed bool // the server said Connection: close; dial again first
	// served says the connection answered a request: one closed while
	// idle is no failure.
	served bool
	// playlist is the media playlist's path and query (the ticket's);
	// body holds its last answer (decompressed), media the last part's.
	playlist   string
	body       bytes.Buffer
	media      bytes.Buffer
	req        []byte
	parts      []listedPart
	hint       partKey
	hasHint    bool
	ended      bool
	partTarget time.Duration
	c          HLSCounts
}

// countingConn counts what is read from a connection into the share's
// bytes, as the Ogg listeners' reads are.
type countingConn struct {
	net.Conn
	r *shareRun
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.r.c.bytes.Add(int64(n))
	return n, err
}

// listenHLS is the share's k-th listener playing LL-HLS as a low-latency
// player does: it joins, follows hls_url to the media playlist, starts
// hlsStartParts behind the newest part, and then fetches each next part
// once a blocking reload lists it, until the playlist ends or ctx is
// done. One connection a listener, kept alive: a player's requests are
// sequential, and a process may open 20 000 files.
func (r *shareRun) listenHLS(ctx context.Context, k int, start time.Time) outcome {
	h := &hlsListener{listener: listener{r: r, k: k, start: start, pl: newPlayer(r.buffer), from: -1}, partTarget: defaultPartTarget}
	defer h.hangUp()
	defer func() {
		if h.polling {
			r.polls.close(k)
		}
		if h.o.audio {
			r.c.live.Add(-1)
		}
		r.mu.Lock()
		r.report.HLS.add(&h.c) // RunShare made it for an HLS scenario
		r.mu.Unlock()
	}()
	err := h.play(ctx)
	switch {
	case ctx.Err() != nil:
		h.o.cause, h.o.err = causeEnded, nil
	case err == nil:
		h.o.cause = causeEOS
	case h.o.cause == "":
		h.o.cause, h.o.err = classify(err), err
	default:
		h.o.err = err
	}
	if h.o.audio && h.o.cause != causeEnded && h.o.cause != causeEOS {
		h.o.edges[h.cur].Lost++
	}
	return h.finish()
}

// play joins and plays; it returns nil when the playlist ended, else the
// error that stopped it, with h.o.cause set when the error's class is not
// the cause (an HTTP status, a bad playlist).
func (h *hlsListener) play(ctx context.Context) error {
	hlsURL, err := h.connect(ctx)
	if err != nil {
		return err
	}
	if err := h.entry(ctx, hlsURL); err != nil {
		return err
	}
	// Start hlsStartParts behind the newest part, or at the hinted one
	// when none is listed yet.
	next := h.hint
	if n := len(h.parts); n > 0 {
		next = h.parts[max(n-hlsStartParts, 0)].key
	} else if !h.hasHint && !h.ended {
		next = partKey{-1, -1}
	}
	// reloaded says the last request was a reload that listed nothing
	// new: the next waits a part target, so that a server or cache that
	// answers at once with a stale playlist is not asked in a loop.
	reloaded := false
	for {
		i := 0
		for i < len(h.parts) && h.parts[i].key.less(next) {
			i++
		}
		if i < len(h.parts) {
			reloaded = false
			p := h.parts[i]
			if next.msn >= 0 && next != p.key && h.o.audio {
				h.c.Skipped++ // a hole, or fell out of the window
			}
			if err := h.part(ctx, p); err != nil {
				return err
			}
			switch {
			case i+1 < len(h.parts):
				next = h.parts[i+1].key
			case h.hasHint:
				next = h.hint
			default:
				next = partKey{p.key.msn, p.key.part + 1}
			}
			continue
		}
		if h.ended {
			return nil
		}
		if reloaded {
			if err := sleep(ctx, h.partTarget); err != nil {
				return err
			}
		}
		if err := h.reload(ctx, next); err != nil {
			return err
		}
		reloaded = true
	}
}

// connect dials (from the listener's first source address again, once it
// has one) and, the first time, joins on the new connection and returns
// the admission's hls_url.
func (h *hlsListener) connect(ctx context.Context) (string, error) {
	r := h.r
	dctx, cancel := context.WithTimeout(ctx, r.timeout)
	conn, err := h.dial(dctx)
	cancel()
	if err != nil {
		return "", err
	}
	h.conn, h.unwatch = conn, context.AfterFunc(ctx, func() { conn.Close() })
	h.closed, h.served = false, false
	if h.br == nil {
		_, hlsURL, o := r.joinFlow(ctx, conn)
		if hlsURL == "" {
			if o.cause == "" {
				o.cause, o.err = causeBadResponse, errors.New("load: the admission names no hls_url")
			}
			h.o.cause = o.cause
			return "", o.err
		}
		if r.polls != nil {
			h.polling = true
			r.polls.open(h.k)
		}
		h.br = bufio.NewReaderSize(countingConn{conn, r}, readBufferSize)
		h.served = true // the join kept it alive
		return hlsURL, nil
	}
	h.c.Reconnects++
	h.br.Reset(countingConn{conn, r})
	return "", nil
}

// entry follows hls_url to the media playlist, through redirects and a
// multivariant playlist's first variant (Opus, the one amphi lists first),
// and reads the media playlist.
func (h *hlsListener) entry(ctx context.Context, hlsURL string) error {
	u, err := url.Parse(hlsURL)
	if err != nil || u.Host != h.r.host {
		// amphi names its URLs after the Host asked, so the answer of the
		// listen server names the listen server.
		h.o.cause = causeBadResponse
		return fmt.Errorf("load: hls_url %q is not on %s", hlsURL, h.r.host)
	}
	for range maxEntryHops {
		h.playlist = u.RequestURI()
		h.req = append(h.newRequest(), h.playlist...)
		resp, err := h.get(ctx, &h.body, true)
		if err != nil {
			return err
		}
		h.c.Playlists++
		loc := ""
		switch {
		case resp.StatusCode >= 300 && resp.StatusCode < 400:
			loc = resp.Header.Get("Location")
		case resp.StatusCode != http.StatusOK:
			return h.status("playlist", resp)
		default:
			loc = firstVariant(h.body.Bytes())
		}
		if loc == "" {
			h.useEdge(resp.Header.Get("X-Amphi-Edge"))
			return h.parse()
		}
		ref, err := url.Parse(loc)
		if err == nil {
			u = u.ResolveReference(ref)
		}
		if err != nil || u.Host != h.r.host {
			h.o.cause = causeBadResponse
			return fmt.Errorf("load: %s leads to %q, not on %s", h.playlist, loc, h.r.host)
		}
	}
	h.o.cause = causeBadResponse
	return fmt.Errorf("load: no media playlist within %d hops of %s", maxEntryHops, hlsURL)
}

// reload asks for the playlist once it lists next (a blocking reload), or
// plainly after a part target when next is unknown (-1).
func (h *hlsListener) reload(ctx context.Context, next partKey) error {
	h.req = append(h.newRequest(), h.playlist...)
	if next.msn >= 0 {
		h.req = append(h.req, "&_HLS_msn="...)
		h.req = strconv.AppendInt(h.req, next.msn, 10)
		h.req = append(h.req, "&_HLS_part="...)
		h.req = strconv.AppendInt(h.req, next.part, 10)
	} else if err := sleep(ctx, h.partTarget); err != nil {
		return err
	}
	resp, err := h.get(ctx, &h.body, true)
	if err != nil {
		return err
	}
	h.c.Playlists++
	if next.msn >= 0 {
		h.c.Reloads++
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return h.parse()
	case http.StatusServiceUnavailable:
		// The part did not come within the server's block (the program
		// paused): a player asks again; the player model counts the gap.
		h.c.ReloadsFailed++
		h.parts = h.parts[:0]
		return nil // play waits a part target before the next
	}
	return h.status("playlist", resp)
}

// part fetches a listed part and plays it.
func (h *hlsListener) part(ctx context.Context, p listedPart) error {
	h.req = appendPath(h.newRequest(), h.playlist, h.body.Bytes()[p.uri[0]:p.uri[1]])
	resp, err := h.get(ctx, &h.media, false)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return h.status("part", resp)
	}
	now := time.Now()
	at := now.Sub(h.start)
	h.c.Parts++
	h.c.PartBytes += int64(h.media.Len()) // never compressed
	if !h.o.audio {
		h.o.audio, h.o.ttfa, h.first = true, at, now
		h.r.c.live.Add(1)
		h.heard = h.cur
	}
	d := p.duration
	if d <= 0 { // a part without its DURATION: take the target
		d = h.partTarget
	}
	stalls := h.pl.stalls
	h.pl.arrive(at, d)
	h.charge(stalls)
	if d := h.pl.stalls - h.reported; d > 0 {
		h.r.c.stalls.Add(int64(d))
		h.reported = h.pl.stalls
	}
	return nil
}

// status sets the cause of an unexpected answer: what was asked and its
// status, such as playlist_http_401.
func (h *hlsListener) status(what string, resp *http.Response) error {
	h.o.cause = what + "_http_" + strconv.Itoa(resp.StatusCode)
	return fmt.Errorf("load: %s: %s", what, resp.Status)
}

// newRequest starts the next request in h.req: the caller appends its
// target and calls get. Building it in place allocates nothing.
func (h *hlsListener) newRequest() []byte {
	return append(h.req[:0], "GET "...)
}

// get sends the GET started in h.req (newRequest) on the listener's
// connection and reads the answer's body into buf, gunzipped when asked
// for gzip and sent so. A kept-alive connection the server closed meanwhile is dialled
// again, as a player's would be, once per request.
func (h *hlsListener) get(ctx context.Context, buf *bytes.Buffer, gz bool) (*http.Response, error) {
	r := h.r
	h.req = append(h.req, " HTTP/1.1\r\nHost: "...)
	h.req = append(h.req, r.host...)
	h.req = append(h.req, "\r\nUser-Agent: amphi-load\r\n"...)
	if gz {
		h.req = append(h.req, "Accept-Encoding: gzip\r\n"...)
	}
	h.req = append(h.req, "\r\n"...)
	for try := 0; ; try++ {
		if h.closed || h.conn == nil {
			h.hangUp()
			if _, err := h.connect(ctx); err != nil {
				return nil, err
			}
		}
		// A blocking reload waits up to three target durations (6 s) at
		// the server: Timeout must exceed it, as DefaultTimeout does.
		if err := h.conn.SetDeadline(time.Now().Add(r.timeout)); err != nil {
			return nil, err
		}
		h.c.Requests++
		_, err := h.conn.Write(h.req)
		var resp *http.Response
		if err == nil {
			resp, err = http.ReadResponse(h.br, nil)
		}
		if err != nil {
			// Only a connection that served before may have been closed
			// while idle; a new one that fails is a failure.
			if try == 0 && ctx.Err() == nil && h.served && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || classify(err) == causeReset) {
				h.closed = true
				continue
			}
			return nil, err
		}
		size, gzipped, err := readBody(resp, buf, gz)
		resp.Body.Close()
		if gz {
			h.c.PlaylistBytes += size
			if gzipped {
				h.c.Gzipped++
			}
		}
		h.closed, h.served = resp.Close, true
		if err != nil {
			return nil, err
		}
		return resp, nil
	}
}

// readBody reads resp's body into buf, bounded, gunzipping it when it
// came gzipped, and returns the body's size as sent.
func readBody(resp *http.Response, buf *bytes.Buffer, gz bool) (int64, bool, error) {
	buf.Reset()
	limit := int64(maxMediaBytes)
	if gz {
		limit = maxPlaylistBytes
	}
	body := &countingReader{r: io.LimitReader(resp.Body, limit+1)}
	gzipped := gz && resp.Header.Get("Content-Encoding") == "gzip"
	if gzipped {
		zr, _ := gzipReaders.Get().(*gzip.Reader)
		var err error
		if zr == nil {
			zr, err = gzip.NewReader(body)
		} else {
			err = zr.Reset(body)
		}
		if err != nil {
			return body.n, true, fmt.Errorf("load: gzip: %w", err)
		}
		defer gzipReaders.Put(zr)
		_, err = buf.ReadFrom(io.LimitReader(zr, limit+1))
		if err == nil {
			// The rest of the body (gzip's trailer) must be read for
			// the connection to be reused.
			_, err = io.Copy(io.Discard, body)
		}
		if err != nil {
			return body.n, true, fmt.Errorf("load: gzip: %w", err)
		}
	} else if _, err := buf.ReadFrom(body); err != nil {
		return body.n, false, err
	}
	if int64(buf.Len()) > limit || body.n > limit {
		return body.n, gzipped, fmt.Errorf("load: a body over %d bytes", limit)
	}
	return body.n, gzipped, nil
}

// countingReader counts what is read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

// parse reads the media playlist in h.body: its parts, preload hint, part
// target and whether it ended.
func (h *hlsListener) parse() error {
	b := h.body.Bytes()
	if !bytes.HasPrefix(b, []byte("#EXTM3U")) {
		h.o.cause = causeBadResponse
		return fmt.Errorf("load: playlist %q is not an M3U8 playlist", firstLine(b))
	}
	h.parts, h.hasHint, h.ended = h.parts[:0], false, false
	for off := 0; off < len(b); {
		line := b[off:]
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i]
		}
		start := off
		off += len(line) + 1
		switch {
		case bytes.HasPrefix(line, tagPart):
			uri, ok := attr(line, uriAttr)
			key, okKey := partName(uri)
			if !ok || !okKey {
				h.o.cause = causeBadResponse
				return fmt.Errorf("load: playlist line %q", line)
			}
			d, _ := attr(line, durationAttr)
			at := start + bytes.Index(line, uriAttr) + len(uriAttr)
			h.parts = append(h.parts, listedPart{key: key, uri: [2]int{at, at + len(uri)}, duration: seconds(d)})
		case bytes.HasPrefix(line, tagHint):
			uri, _ := attr(line, uriAttr)
			h.hint, h.hasHint = partName(uri)
		case bytes.HasPrefix(line, tagPartInf):
			if v, ok := attr(line, partTargetAttr); ok && seconds(v) > 0 {
				h.partTarget = seconds(v)
			}
		case bytes.HasPrefix(line, tagEndList):
			h.ended = true
		}
	}
	return nil
}

var (
	tagPart        = []byte("#EXT-X-PART:")
	tagHint        = []byte("#EXT-X-PRELOAD-HINT:")
	tagPartInf     = []byte("#EXT-X-PART-INF:")
	tagEndList     = []byte("#EXT-X-ENDLIST")
	tagStreamInf   = []byte("#EXT-X-STREAM-INF:")
	uriAttr        = []byte(`URI="`)
	durationAttr   = []byte("DURATION=")
	partTargetAttr = []byte("PART-TARGET=")
)

// attr returns the value of the attribute that starts with name (its = and
// opening quote included) in a tag line; a quoted value ends at its quote.
func attr(line, name []byte) ([]byte, bool) {
	i := bytes.Index(line, name)
	if i < 0 {
		return nil, false
	}
	v := line[i+len(name):]
	end := byte(',')
	if name[len(name)-1] == '"' {
		end = '"'
	}
	if j := bytes.IndexByte(v, end); j >= 0 {
		v = v[:j]
	} else if end == '"' {
		return nil, false
	}
	return v, true
}

// partName parses a part's URI, "{msn}.{part}.m4s", as amphi names them.
func partName(uri []byte) (partKey, bool) {
	if i := bytes.LastIndexByte(uri, '/'); i >= 0 {
		uri = uri[i+1:]
	}
	msn, rest, ok := digits(uri)
	if !ok || len(rest) == 0 || rest[0] != '.' {
		return partKey{}, false
	}
	part, rest, ok := digits(rest[1:])
	if !ok || !bytes.Equal(rest, []byte(".m4s")) {
		return partKey{}, false
	}
	return partKey{msn, part}, true
}

// digits parses the decimal number b starts with.
func digits(b []byte) (int64, []byte, bool) {
	var n int64
	i := 0
	for ; i < len(b) && i < 18 && b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + int64(b[i]-'0')
	}
	return n, b[i:], i > 0
}

// seconds parses a decimal number of seconds, such as "0.2"; zero if it is
// none.
func seconds(b []byte) time.Duration {
	whole, rest, ok := digits(b)
	if !ok {
		return 0
	}
	d := time.Duration(whole) * time.Second
	if len(rest) > 1 && rest[0] == '.' {
		scale := time.Second / 10
		for _, c := range rest[1:] {
			if c < '0' || c > '9' || scale == 0 {
				break
			}
			d += time.Duration(c-'0') * scale
			scale /= 10
		}
	}
	return d
}

// firstVariant returns the URI of a multivariant playlist's first variant,
// or "" when b is a media playlist.
func firstVariant(b []byte) string {
	i := bytes.Index(b, tagStreamInf)
	if i < 0 {
		return ""
	}
	rest := b[i:]
	_, rest, _ = bytes.Cut(rest, []byte("\n"))
	uri, _, _ := bytes.Cut(rest, []byte("\n"))
	return string(bytes.TrimSpace(uri))
}

// appendPath appends the path of a URI relative to a playlist's path,
// without the playlist's query: media names are plain and ungated.
func appendPath(dst []byte, playlist string, uri []byte) []byte {
	if !bytes.HasPrefix(uri, []byte("/")) {
		dir, _, _ := strings.Cut(playlist, "?")
		dst = append(dst, dir[:strings.LastIndexByte(dir, '/')+1]...)
	}
	return append(dst, uri...)
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
