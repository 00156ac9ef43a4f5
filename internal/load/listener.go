package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/amphi-audio/amphi/internal/loopnet"
)

// headerPages is the pages a stream starts with (OpusHead, OpusTags),
// which hold no audio.
const headerPages = 2

// readBufferSize is each listener's one read buffer. The edge writes about
// 200 ms of pages (~1 KiB) at a time; a larger burst takes several reads.
const readBufferSize = 4 << 10

// rearmEvery is how often a reading listener pushes its read deadline
// forward: not on every read, which would reset a timer each time.
const rearmEvery = time.Second

// Share is one process's part of a run: the listeners whose global index i
// has i % Workers == Worker, joining on the scenario's schedule from Start.
type Share struct {
	// Scenario is normalized and names the space.
	Scenario Scenario `json:"scenario"`
	Worker   int      `json:"worker"`
	// Workers is how many shares the listeners are split into; at least 1.
	Workers int       `json:"workers"`
	Start   time.Time `json:"start"`
}

// count returns how many listeners the share holds.
func (sh *Share) count() int {
	n := sh.Scenario.Listeners / sh.Workers
	if sh.Worker < sh.Scenario.Listeners%sh.Workers {
		n++
	}
	return n
}

// joinAt returns when the share's k-th listener joins, after Start: the
// global schedule, so the shares together join at the scenario's rate.
func (sh *Share) joinAt(k int) time.Duration {
	if sh.Scenario.JoinRate == 0 {
		return time.Duration(sh.Scenario.HerdAt)
	}
	i := k*sh.Workers + sh.Worker
	return time.Duration(float64(i) / sh.Scenario.JoinRate * float64(time.Second))
}

// listenerSources is where listeners' source addresses start (127.1.0.0/16
// on), so the attackers of the same rehearsal, from 127.0.0.0/16, never
// share an address or a /24 with them.
const listenerSources = 256 * 253

// counters are a share's live numbers, read once a second for progress.
type counters struct {
	live, joins, stalls, failed, bytes atomic.Int64
}

// shareRun runs a share's listeners.
type shareRun struct {
	sh      Share
	addr    string
	host    string
	stream  string // a plain stream's path, without the join flow; "" for amphi
	join    string // path of the join flow
	live    string // path of the stream, up to the ticket
	query   string // after the ticket
	dialer  *loopnet.Dialer
	timeout time.Duration
	buffer  time.Duration
	// resume is how long a broken stream is resumed for; negative means
	// never.
	resume time.Duration
	c      counters
	// prevJoins is the joins counter at the last sample.
	prevJoins int64
	// sampled is how many of the share's first listeners measure latency.
	sampled int
	// polls polls the state for the listeners' pages; nil when the
	// scenario's pages do not poll.
	polls *poller

	mu     sync.Mutex
	report Report
}

// RunShare runs a share's listeners until the scenario's duration is over
// or ctx is done, calling onSample (if not nil) once a second, and returns
// the share's report. Listener failures are in the report, not errors.
func RunShare(ctx context.Context, sh Share, onSample func(Sample)) (*Report, error) {
	sc := &sh.Scenario
	if sh.Workers < 1 || sh.Worker < 0 || sh.Worker >= sh.Workers || (sc.SpaceID == "" && sc.Stream == "") {
		return nil, fmt.Errorf("load: share %d of %d for space %q is not a share", sh.Worker, sh.Workers, sc.SpaceID)
	}
	if err := sc.Normalize(); err != nil {
		return nil, err
	}
	u, err := url.Parse(sc.ListenServer)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	space := u.Path + "/spaces/" + url.PathEscape(sc.SpaceID)
	query := ""
	if sc.Burst > 0 {
		query = "&burst=" + time.Duration(sc.Burst).String()
	}
	if sc.Flush > 0 {
		query += "&flush=" + time.Duration(sc.Flush).String()
	}
	r := &shareRun{
		sh:     sh,
		addr:   addr,
		host:   u.Host,
		join:   space + "/join",
		live:   space + "/live.opus?ticket=",
		query:  query,
		stream: sc.Stream,
		dialer: &loopnet.Dialer{
			Sources: sc.Sources, Offset: listenerSources + sh.Worker, Stride: sh.Workers, PerPrefix: sc.PerPrefix,
		},
		timeout: time.Duration(sc.Timeout),
		buffer:  time.Duration(sc.PlayerBuffer),
		resume:  time.Duration(sc.Resume),
	}
	n := sh.count()
	r.report.Listeners.Target = n
	if sc.HLS {
		r.report.HLS = &HLSCounts{}
	}
	if sh.Worker == 0 {
		r.sampled = min(sc.LatencySample, n)
	}

	end := sh.Start.Add(time.Duration(sc.Duration))
	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()

	var sampler sync.WaitGroup
	sampler.Go(func() { r.sample(ctx, onSample) })
	if sc.PollState > 0 && n > 0 {
		r.polls = newPoller(&sh, n, "http://"+u.Host+space+"/state")
		sampler.Go(func() { r.polls.run(ctx) })
	}

	var wg sync.WaitGroup
	timer := time.NewTimer(0)
	<-timer.C
	for k := range n {
		if wait := time.Until(sh.Start.Add(sh.joinAt(k))); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
			case <-timer.C:
			}
		}
		if ctx.Err() != nil {
			break
		}
		r.c.joins.Add(1)
		var e *ear
		if k < r.sampled {
			if e, err = newEar(sc); err != nil {
				cancel()
				wg.Wait()
				return nil, fmt.Errorf("load: latency listener: %w", err)
			}
		}
		if sc.HLS {
			wg.Go(func() { r.record(r.listenHLS(ctx, k, time.Now())) })
			continue
		}
		wg.Go(func() {
			o := r.listen(ctx, k, time.Now(), e)
			r.record(o)
			if e != nil {
				r.recordEar(o, e)
			}
		})
	}
	timer.Stop()
	wg.Wait()
	cancel()
	sampler.Wait()

	rep := &r.report
	rep.Listeners.Joined = r.c.joins.Load()
	rep.Bytes.Total = r.c.bytes.Load()
	rep.Duration = Duration(min(time.Since(sh.Start), time.Duration(sc.Duration)))
	last := Sample{T: int((time.Duration(sc.Duration) + time.Second - 1) / time.Second)}
	r.fill(&last)
	rep.Timeline = append(rep.Timeline, last)
	if onSample != nil {
		onSample(last)
	}
	if r.polls != nil {
		rep.State = r.polls.report()
	}
	rep.summarize()
	return rep, nil
}

// sample takes a Sample at each whole second from the start, before the
// end of the run, until ctx is done; RunShare takes the last one itself.
func (r *shareRun) sample(ctx context.Context, onSample func(Sample)) {
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	for t := 1; time.Duration(t)*time.Second < time.Duration(r.sh.Scenario.Duration); t++ {
		timer.Reset(time.Until(r.sh.Start.Add(time.Duration(t) * time.Second)))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		s := Sample{T: t}
		r.fill(&s)
		r.mu.Lock()
		r.report.Timeline = append(r.report.Timeline, s)
		r.mu.Unlock()
		if onSample != nil {
			onSample(s)
		}
	}
}

// fill sets s from the counters. Only the sampler calls it, and RunShare
// once the sampler has stopped.
func (r *shareRun) fill(s *Sample) {
	joins := r.c.joins.Load()
	s.Live, s.Joins = r.c.live.Load(), joins-r.prevJoins
	r.prevJoins = joins
	s.Stalls, s.Failed, s.Bytes = r.c.stalls.Load(), r.c.failed.Load(), r.c.bytes.Load()
}

// outcome is how one listener fared.
type outcome struct {
	audio      bool   // received a 200 and audio
	cause      string // failure or disconnect cause
	err        error
	ttfa       time.Duration
	stalls     int
	listenTime time.Duration // from first audio to the end
	// edges are the edge processes that served the stream, in the order
	// first seen, with what happened there.
	edges []edgeUse
	// resumed holds each resume's time, from the break to the first new
	// audio.
	resumed []time.Duration
	// resumeFailed says the stream broke and no resume brought it back.
	resumeFailed bool
	// holes counts the jumps in the chunks received, missed the chunks
	// they skipped.
	holes, missed int64
}

// edgeUse is what one listener did on one edge.
type edgeUse struct {
	name string
	EdgeCounts
}

// recordEar adds what a sampled listener detected to the share's report.
func (r *shareRun) recordEar(o outcome, e *ear) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if o.audio {
		r.report.LatencyListeners++
	}
	r.report.Detections = append(r.report.Detections, e.dets...)
}

// record adds a listener's outcome to the share's report.
func (r *shareRun) record(o outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := &r.report
	for _, u := range o.edges {
		rep.addEdge(u.name, u.EdgeCounts)
	}
	if o.resumeFailed {
		rep.ResumesFailed++
	}
	rep.Resumes += int64(len(o.resumed))
	for _, d := range o.resumed {
		rep.ResumeHistogram.Add(d)
	}
	rep.Holes += o.holes
	rep.MissedChunks += o.missed
	if !o.audio && o.cause == causeEnded {
		rep.Listeners.Pending++
		return
	}
	if !o.audio {
		r.c.failed.Add(1)
		rep.Listeners.Failed++
		addCause(&rep.Listeners.FailedBy, o.cause, 1)
		if _, ok := rep.Errors[o.cause]; !ok && o.err != nil {
			if rep.Errors == nil {
				rep.Errors = map[string]string{}
			}
			rep.Errors[o.cause] = o.err.Error()
		}
		return
	}
	rep.TTFAHistogram.Add(o.ttfa)
	rep.Stalls += int64(o.stalls)
	rep.ListenerSeconds += o.listenTime.Seconds()
	addCause(&rep.Disconnects, o.cause, 1)
	switch {
	case o.stalls > 0:
		rep.Listeners.Stalled++
	case o.cause == causeEnded || o.cause == causeEOS:
		rep.Listeners.OK++
	default:
		rep.Listeners.Cut++
	}
}

// Causes of failures and disconnects.
const (
	causeEnded       = "ended" // by the run, at its end
	causeEOS         = "eos"   // the program ended
	causeEOF         = "eof"   // the server closed the connection early
	causeRefused     = "refused"
	causeReset       = "reset"
	causeTimeout     = "timeout"
	causeBadResponse = "bad_response"
	causeBadStream   = "bad_stream"
	causeNoFiles     = "no_files"
	causeNoAddress   = "no_address"
	causeError       = "error"
)

// classify names the cause of a network error.
func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return causeRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return causeReset
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return causeTimeout
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return causeNoFiles
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE):
		return causeNoAddress
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return causeEOF
	}
	return causeError
}

var (
	headerEnd = []byte("\r\n\r\n")
	http11    = []byte("HTTP/1.")
)

// listen is the share's k-th listener: it connects, asks for the stream and
// reads it as a player would, until the stream ends or ctx is done. Its
// page polls the state (r.polls) from its admission to its stream's end.
// A sampled listener also has an ear, which decodes the pages and finds the
// latency marks; others pass nil and do nothing more than count pages. An
// amphi stream that breaks is resumed (Scenario.Resume): the player and the
// ear play on across the new connection, as if nothing happened but a
// pause in the arrivals.
func (r *shareRun) listen(ctx context.Context, k int, start time.Time, e *ear) outcome {
	l := &listener{r: r, k: k, start: start, e: e, pl: newPlayer(r.buffer), buf: make([]byte, readBufferSize), from: -1}
	defer l.hangUp()
	defer func() {
		if l.polling {
			r.polls.close(k)
		}
		if l.o.audio {
			r.c.live.Add(-1)
		}
	}()
	if cause, err := l.open(ctx, time.Time{}); cause != "" {
		return outcome{cause: cause, err: err}
	}
	for {
		err := l.play(ctx)
		if l.o.cause != causeBadStream {
			l.o = r.ended(ctx, l.o, err, l.eos)
		}
		if l.eos || l.o.cause == causeEnded {
			break
		}
		l.o.edges[l.cur].Lost++
		if r.stream != "" || r.resume < 0 || l.o.cause == causeBadStream || !l.resume(ctx) {
			break
		}
		l.o.cause, l.o.err = "", nil
	}
	return l.finish()
}

// ended sets o's cause from the error that ended its stream.
func (r *shareRun) ended(ctx context.Context, o outcome, err error, eos bool) outcome {
	switch {
	case ctx.Err() != nil:
		o.cause = causeEnded
	case eos && errors.Is(err, io.EOF):
		o.cause = causeEOS
	default:
		o.cause, o.err = classify(err), err
	}
	return o
}

// statusCode parses the status line of an HTTP/1.x response.
func statusCode(head []byte) (int, bool) {
	if len(head) < 12 || !bytes.HasPrefix(head, http11) || head[8] != ' ' {
		return 0, false
	}
	code, err := strconv.Atoi(string(head[9:12]))
	return code, err == nil
}

func firstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\r'); i >= 0 {
		return b[:i]
	}
	return b
}
