package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/ogg"
	"github.com/amphi-audio/amphi/internal/opuspkt"
)

// DefaultResumeFor is how long Listen tries to resume a broken stream when
// ListenOptions.ResumeFor is zero.
const DefaultResumeFor = 10 * time.Second

// resumeEvery is the pause between two tries at resuming: a live process
// behind the same port, or the next address, answers the first or second,
// well within the 3 s a listener may be without audio (issue 12).
const resumeEvery = 250 * time.Millisecond

// headerPages is how many pages every response starts with: OpusHead and
// OpusTags. Chunk n is page n+headerPages.
const headerPages = 2

// ListenOptions tune a listen.
type ListenOptions struct {
	// Burst asks the server for this much audio at once on connect. Zero
	// means the server's default.
	Burst time.Duration
	// From rewinds the stream: "start" begins at the space's beginning,
	// "-5m" five minutes behind live. The past comes as fast as it is
	// read, then the stream goes on live. Empty means live.
	From string
	// Flush asks the server to write at least this often. Zero means 200
	// ms: amphi's own clients want low latency; plain players get the
	// server's default of about a second.
	Flush time.Duration
	// ResumeFor is how long a stream that breaks before the program's end
	// (its edge process died, the connection dropped) is asked for again,
	// every 250 ms, from the chunk after the last one received (from_seq),
	// so that nothing is missed. Zero means DefaultResumeFor; negative
	// means never: the stream's break ends Listen.
	ResumeFor time.Duration
	// Servers are base URLs of the same service at other addresses (edges
	// that do not share one port): each try at resuming goes to the next
	// of them, in turn, after the one in use. Empty means resumes go to the
	// listen URL the join gave.
	Servers []string
	// Out receives the stream as one Ogg Opus file, page by page as pages
	// arrive: the header pages once and each chunk once, across resumes.
	// Nil means none.
	Out io.Writer
	// OnPacket receives each audio packet (not the headers) with the granule
	// position of the page it ends on. The packet is only valid during the
	// call.
	OnPacket func(pkt []byte, granule int64)
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// ListenStats describe what a listener received, over all the connections
// of its stream.
type ListenStats struct {
	Bytes   int64
	Packets int64
	// Audio is the playable time received.
	Audio time.Duration
	// FirstAudio is the time from the request to the first audio packet.
	FirstAudio time.Duration
	// LongestGap is the longest wall-clock time without new audio after the
	// first packet: what a player with no buffer would hear as silence.
	LongestGap time.Duration
	// Holes counts jumps in the program's timeline (granule positions
	// that do not follow on), resumes included: audio the listener never
	// received.
	Holes int
	// Resumes counts the times the stream broke and audio flowed again on
	// a new connection.
	Resumes int
	// LongestResume is the longest time from a break to the first new
	// audio after it.
	LongestResume time.Duration
	// Ended reports that the stream ended with the program (an EOS page).
	Ended bool
}

// Listen joins a space (Join) and receives its live stream until the
// program ends or ctx is done; ctx ending is not an error. A stream that
// breaks is resumed (ListenOptions.ResumeFor); Listen fails when it cannot
// be, or when what arrives is not an amphi program.
func (c *Client) Listen(ctx context.Context, spaceID string, opts ListenOptions) (*ListenStats, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Flush == 0 {
		opts.Flush = 200 * time.Millisecond
	}
	if opts.ResumeFor == 0 {
		opts.ResumeFor = DefaultResumeFor
	}
	adm, err := c.Join(ctx, spaceID, nil)
	if err != nil {
		return nil, err
	}
	l := &listening{c: c, spaceID: spaceID, opts: opts, st: &ListenStats{}, from: -1, granule: -1}
	l.setURL(adm.ListenURL)
	l.start = opts.Now()
	body, err := l.get(ctx, l.target(), time.Time{})
	if err != nil {
		return nil, err
	}
	for {
		err = l.read(ctx, body)
		body.Close()
		var p permanent
		switch {
		case ctx.Err() != nil, l.st.Ended && err == nil:
			return l.st, nil
		case opts.ResumeFor < 0, errors.As(err, &p):
			return l.st, err
		}
		if body, err = l.resume(ctx, err); err != nil {
			if ctx.Err() != nil {
				return l.st, nil
			}
			return l.st, err
		}
	}
}

// listening is one Listen's state across the connections of its stream.
type listening struct {
	c       *Client
	spaceID string
	opts    ListenOptions
	// base and path are the listen URL, with the ticket: base is the
	// server's, path from /spaces/ on.
	base, path string
	// server is the index in opts.Servers of base; -1 when none.
	server int
	st     *ListenStats
	start  time.Time
	// last is when audio last arrived.
	last time.Time
	// from is the chunk wanted next, after the last one received; -1
	// before the first.
	from int64
	// granule is the granule position at the end of the last audio
	// received; -1 before the first.
	granule int64
	// brokeAt is when the stream broke, zero while audio flows; giveUp is
	// when resuming it stops, on the wall clock, as net's deadlines are.
	brokeAt, giveUp time.Time
	// outHeaders counts the header pages written to opts.Out: a resumed
	// response repeats them, and the file holds them once.
	outHeaders int
	page       []byte // a page being written to opts.Out
}

// permanent marks an error a new connection would not cure.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// setURL takes a listen URL the join gave apart: its server's base URL,
// which resumes may replace with the next of opts.Servers, and the rest.
func (l *listening) setURL(u string) {
	l.base, l.path = "", u
	if i := strings.LastIndex(u, "/spaces/"); i >= 0 {
		l.base, l.path = u[:i], u[i:]
	}
	l.server = slices.IndexFunc(l.opts.Servers, func(s string) bool { return strings.TrimRight(s, "/") == l.base })
}

// nextServer moves on to the next of opts.Servers, if there are some.
func (l *listening) nextServer() {
	if n := len(l.opts.Servers); n > 0 && l.base != "" {
		l.server = (l.server + 1) % n
		l.base = strings.TrimRight(l.opts.Servers[l.server], "/")
	}
}

// target returns the URL of the next request for the stream: from the
// chunk after the last one received, once one was.
func (l *listening) target() string {
	u := l.base + l.path + "&flush=" + l.opts.Flush.String()
	switch {
	case l.from >= 0:
		u += "&from_seq=" + strconv.FormatInt(l.from, 10)
	case l.opts.From != "":
		u += "&from=" + url.QueryEscape(l.opts.From)
	case l.opts.Burst > 0:
		u += "&burst=" + l.opts.Burst.String()
	}
	return u
}

// get asks for the stream at url and returns the body of a 200. With a
// non-zero by, the response's head must have come by then.
func (l *listening) get(ctx context.Context, url string, by time.Time) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	inTime := func() bool { return true }
	if !by.IsZero() {
		inTime = time.AfterFunc(time.Until(by), cancel).Stop
	}
	resp, err := l.c.HTTP.Do(req)
	if late := !inTime(); err != nil || late {
		cancel()
		if err == nil {
			resp.Body.Close()
			err = errors.New("listen: no answer in time")
		}
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		return nil, ResponseError(resp)
	}
	return &stream{ReadCloser: resp.Body, cancel: cancel}, nil
}

// stream is a response's body whose Close also releases its request's
// context.
type stream struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (s *stream) Close() error {
	s.cancel()
	return s.ReadCloser.Close()
}

// resume asks for the stream again, every resumeEvery while ResumeFor since
// it broke leaves time for a try, and returns the new response's body.
// broke is why it broke, nil when the server closed it.
func (l *listening) resume(ctx context.Context, broke error) (io.ReadCloser, error) {
	if l.brokeAt.IsZero() { // else a resumed stream broke again before new audio
		l.brokeAt, l.giveUp = l.opts.Now(), time.Now().Add(l.opts.ResumeFor)
	}
	deadline := l.giveUp
	wait := time.NewTimer(0)
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wait.C:
		}
		body, err := l.try(ctx, deadline)
		var e *Error
		switch {
		case err == nil:
			return body, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.As(err, &e) && e.Status < 500 && e.Status != http.StatusTooManyRequests:
			return nil, fmt.Errorf("listen: resuming the stream: %w", err)
		}
		// A try needs time for its connection and the response's head.
		if time.Until(deadline) < resumeEvery {
			if broke == nil {
				broke = errors.New("the server closed it")
			}
			return nil, fmt.Errorf("listen: the stream broke (%v) and did not resume within %v: %w", broke, l.opts.ResumeFor, err)
		}
		wait.Reset(resumeEvery)
	}
}

// try is one try at resuming. A ticket refused (expired, or unknown to the
// edge's signing key) is replaced by joining again, as at the start.
func (l *listening) try(ctx context.Context, deadline time.Time) (io.ReadCloser, error) {
	l.nextServer()
	body, err := l.get(ctx, l.target(), deadline)
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusUnauthorized {
		return body, err
	}
	jctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	adm, err := l.c.Join(jctx, l.spaceID, nil)
	if err != nil {
		return nil, fmt.Errorf("listen: joining again: %w", err)
	}
	l.setURL(adm.ListenURL)
	return l.get(ctx, l.target(), deadline)
}

// read reads one response's pages. It reads pages rather than packets so it
// sees the EOS flag; an amphi program never splits a packet across pages.
// It checks and skips the response's header pages, and drops the chunks
// received already, which a resumed response may repeat.
func (l *listening) read(ctx context.Context, body io.Reader) error {
	rd := ogg.NewReader(&countingReader{r: body, n: &l.st.Bytes})
	for headers := 0; ; {
		page, err := rd.ReadPage()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		if headers < headerPages {
			if headers == 0 && len(page.Packets) > 0 {
				if _, err := ogg.ParseOpusHead(page.Packets[0]); err != nil {
					return permanent{fmt.Errorf("listen: %w", err)}
				}
			}
			headers++
			if l.outHeaders < headerPages {
				l.outHeaders++
				if err := l.write(page); err != nil {
					return err
				}
			}
			continue
		}
		chunk := int64(page.Seq) - headerPages
		if chunk < l.from {
			continue
		}
		l.from = chunk + 1
		if err := l.count(page); err != nil {
			return err
		}
		if err := l.write(page); err != nil {
			return err
		}
		if l.opts.OnPacket != nil {
			for _, pkt := range page.Packets {
				l.opts.OnPacket(pkt, page.Granule)
			}
		}
		if page.Flags&ogg.FlagEOS != 0 {
			l.st.Ended = true
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// count adds a new page's audio to the stats.
func (l *listening) count(page *ogg.Page) error {
	st := l.st
	var samples int64
	for _, pkt := range page.Packets {
		n, ok := opuspkt.Samples(pkt)
		if !ok {
			return permanent{fmt.Errorf("listen: packet %d is not Opus", st.Packets)}
		}
		samples += int64(n)
	}
	if len(page.Packets) > 0 {
		now := l.opts.Now()
		if st.Packets == 0 {
			st.FirstAudio = now.Sub(l.start)
		} else if gap := now.Sub(l.last); gap > st.LongestGap {
			st.LongestGap = gap
		}
		l.last = now
		if !l.brokeAt.IsZero() {
			st.Resumes++
			st.LongestResume = max(st.LongestResume, now.Sub(l.brokeAt))
			l.brokeAt = time.Time{}
		}
		// A page's granule is the end of its last packet.
		if l.granule >= 0 && page.Granule-samples != l.granule {
			st.Holes++
		}
		l.granule = page.Granule
	}
	st.Packets += int64(len(page.Packets))
	st.Audio += time.Duration(samples) * time.Second / amphi.SampleRate
	return nil
}

// write writes a page to opts.Out, if any.
func (l *listening) write(page *ogg.Page) error {
	if l.opts.Out == nil {
		return nil
	}
	var err error
	if l.page, err = ogg.AppendPage(l.page[:0], page); err != nil {
		return permanent{fmt.Errorf("listen: %w", err)}
	}
	if _, err := l.opts.Out.Write(l.page); err != nil {
		return permanent{fmt.Errorf("listen: writing the stream: %w", err)}
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n *int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	*c.n += int64(n)
	return n, err
}
