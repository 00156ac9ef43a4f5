package load

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amphi-audio/amphi/internal/loopnet"
)

// Bounds on the state polls of listeners' pages (Scenario.PollState).
const (
	MinPollState = 200 * time.Millisecond
	MaxPollState = time.Minute
)

const (
	// pollConns bounds a process's polls in flight and its connections
	// for them: pages are many, but their polls are short, so a small
	// keep-alive pool carries a crowd's worth without a socket per page.
	pollConns = 64
	// pollQueue bounds the polls waiting for a free connection; a poll
	// due when it is full is skipped and counted, not queued without end.
	pollQueue = 4 * pollConns
	// pollTick is how often the scheduler wakes to issue the polls that
	// have come due: fine enough that a second's polls stay even, coarse
	// enough that waking costs nothing beside the polls.
	pollTick = 10 * time.Millisecond
	// maxStateBody bounds the state read from one answer; the API caps
	// bodies at 64 KiB.
	maxStateBody = 64 << 10
)

// StatePolls is what the listeners' pages did polling GET
// /spaces/{id}/state (Scenario.PollState).
type StatePolls struct {
	// Interval is each page's time between polls.
	Interval Duration `json:"interval"`
	// Due counts the polls that came due for listeners whose stream ran.
	Due int64 `json:"due"`
	// Sent counts the polls sent; each is exactly one of OK, NotModified,
	// Failed or Ended.
	Sent int64 `json:"sent"`
	// Skipped counts due polls not sent: the page's previous poll was
	// still in flight, or every connection of the pool was busy.
	Skipped int64 `json:"skipped"`
	// OK counts 200 answers, NotModified 304 answers to If-None-Match.
	OK          int64 `json:"ok"`
	NotModified int64 `json:"not_modified"`
	// Failed counts polls with any other answer or none.
	Failed int64 `json:"failed"`
	// FailedBy counts failures by cause: "http_NNN" (the answer's
	// status), "refused", "reset", "timeout", "eof", "error" and the
	// other causes of ListenerCounts.FailedBy.
	FailedBy map[string]int64 `json:"failed_by,omitempty"`
	// Ended counts polls cut by the end of the run.
	Ended int64 `json:"ended"`
	// Latency is from sending a poll to reading its whole answer, over
	// the OK and NotModified ones.
	Latency Quantiles `json:"latency"`
	// PerSecond is Sent over the run's duration; TargetPerSecond is Due
	// over it: the rate the pages that were open asked for.
	PerSecond       float64 `json:"per_second"`
	TargetPerSecond float64 `json:"target_per_second"`
	// Histogram holds the latencies; Latency is read from it. Workers send
	// it so merged quantiles are exact.
	Histogram Histogram `json:"histogram"`
	// Errors holds one example message per failure cause.
	Errors map[string]string `json:"errors,omitempty"`
}

// Merge adds a share's polls to s.
func (s *StatePolls) Merge(o *StatePolls) {
	s.Interval = max(s.Interval, o.Interval)
	s.Due += o.Due
	s.Sent += o.Sent
	s.Skipped += o.Skipped
	s.OK += o.OK
	s.NotModified += o.NotModified
	s.Failed += o.Failed
	s.Ended += o.Ended
	for k, v := range o.FailedBy {
		addCause(&s.FailedBy, k, v)
	}
	for k, v := range o.Errors {
		if _, ok := s.Errors[k]; !ok {
			if s.Errors == nil {
				s.Errors = map[string]string{}
			}
			s.Errors[k] = v
		}
	}
	s.Histogram.Merge(&o.Histogram)
}

// summarize derives the summary fields from the raw ones, over a run of d.
func (s *StatePolls) summarize(d time.Duration) {
	h := &s.Histogram
	s.Latency = Quantiles{P50: Duration(h.Quantile(0.5)), P99: Duration(h.Quantile(0.99)), Max: h.Max}
	s.PerSecond, s.TargetPerSecond = 0, 0
	if d > 0 {
		s.PerSecond = float64(s.Sent) / d.Seconds()
		s.TargetPerSecond = float64(s.Due) / d.Seconds()
	}
}

// pollSlot is one listener's page.
type pollSlot struct {
	// open is set while the listener's stream runs.
	open atomic.Bool
	// busy is set while the page's poll is queued or in flight; whoever
	// sets it owns etag.
	busy atomic.Bool
	etag string
}

// poller polls the state for a share's listeners' pages: one scheduling
// goroutine walks the pages in order of their offsets in the interval,
// and a fixed pool of workers sends the polls through one client, so a
// crowd costs neither a goroutine nor a connection per page.
type poller struct {
	url    string
	period time.Duration
	start  time.Time
	// Slot k is the listener of global index first + k*stride of total:
	// its polls are at first + k*stride times period/total in each
	// interval, so the shares together spread all pages evenly.
	first, stride, total int
	slots                []pollSlot
	hc                   *http.Client
	// poll sends slot k's poll; nil means get. Tests replace it.
	poll func(ctx context.Context, k int)

	// next and cycle are the scheduler's cursor: the next slot due, in
	// which interval. Only the scheduling goroutine uses them, and due.
	next  int
	cycle int64
	due   int64

	queue   chan int
	skipped atomic.Int64

	mu    sync.Mutex
	stats StatePolls
}

// newPoller returns the poller of a share of n listeners; stateURL is the
// space's state.
func newPoller(sh *Share, n int, stateURL string) *poller {
	sc := &sh.Scenario
	p := &poller{
		url:    stateURL,
		period: time.Duration(sc.PollState),
		start:  sh.Start,
		first:  sh.Worker,
		stride: sh.Workers,
		total:  max(sc.Listeners, 1),
		slots:  make([]pollSlot, n),
		queue:  make(chan int, pollQueue),
		hc: &http.Client{
			Transport: &http.Transport{
				// The default source address, 127.0.0.2, as the run's
				// own API calls: pages share a few connections, as they
				// would share a cache in front of the server.
				DialContext:         (&loopnet.Dialer{Sources: 1}).DialContext,
				MaxConnsPerHost:     pollConns,
				MaxIdleConns:        pollConns,
				MaxIdleConnsPerHost: pollConns,
				IdleConnTimeout:     time.Minute,
			},
			Timeout: time.Duration(sc.Timeout),
		},
	}
	p.stats.Interval = sc.PollState
	return p
}

// offset returns when in each interval slot k polls.
func (p *poller) offset(k int) time.Duration {
	g := int64(p.first + k*p.stride)
	return time.Duration(g * int64(p.period) / int64(p.total))
}

// open marks listener k's stream as running: its page polls from now on.
func (p *poller) open(k int) { p.slots[k].open.Store(true) }

// close marks listener k's stream as over: its page polls no more.
func (p *poller) close(k int) { p.slots[k].open.Store(false) }

// advance calls fire for every open slot due at or before t after the
// start, in order, and moves the cursor past them. A scheduler fallen
// more than an interval behind jumps ahead: the pages it missed are
// counted as skipped, not sent in a burst that no crowd of pages makes.
func (p *poller) advance(t time.Duration, fire func(k int)) {
	if len(p.slots) == 0 {
		return
	}
	if behind := t - (time.Duration(p.cycle)*p.period + p.offset(p.next)); behind > p.period {
		jump := int64(behind / p.period)
		open := int64(0)
		for i := range p.slots {
			if p.slots[i].open.Load() {
				open++
			}
		}
		p.cycle += jump
		p.due += jump * open
		p.skipped.Add(jump * open)
	}
	for time.Duration(p.cycle)*p.period+p.offset(p.next) <= t {
		if p.slots[p.next].open.Load() {
			p.due++
			fire(p.next)
		}
		if p.next++; p.next == len(p.slots) {
			p.next, p.cycle = 0, p.cycle+1
		}
	}
}

// enqueue hands slot k's poll to the workers, or skips it when its last
// poll is still out or the queue is full.
func (p *poller) enqueue(k int) {
	s := &p.slots[k]
	if !s.busy.CompareAndSwap(false, true) {
		p.skipped.Add(1)
		return
	}
	select {
	case p.queue <- k:
	default:
		s.busy.Store(false)
		p.skipped.Add(1)
	}
}

// run polls until ctx is done, then waits for its workers.
func (p *poller) run(ctx context.Context) {
	poll := p.poll
	if poll == nil {
		poll = p.get
	}
	var workers sync.WaitGroup
	for range pollConns {
		workers.Go(func() {
			for k := range p.queue {
				if ctx.Err() != nil {
					p.skipped.Add(1) // due, but the run ended first
				} else {
					poll(ctx, k)
				}
				p.slots[k].busy.Store(false)
			}
		})
	}
	tick := time.NewTicker(pollTick)
	defer tick.Stop()
	if wait := time.Until(p.start); wait > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	for ctx.Err() == nil {
		p.advance(time.Since(p.start), p.enqueue)
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	close(p.queue)
	workers.Wait()
	p.hc.CloseIdleConnections()
}

// get sends slot k's poll, as a page does, and counts its answer.
func (p *poller) get(ctx context.Context, k int) {
	s := &p.slots[k]
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		p.fail(ctx, "error", err)
		return
	}
	req.Header.Set("User-Agent", "amphi-load")
	if s.etag != "" {
		req.Header.Set("If-None-Match", s.etag)
	}
	sent := time.Now()
	resp, err := p.hc.Do(req)
	if err != nil {
		p.fail(ctx, "", err)
		return
	}
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, maxStateBody))
	resp.Body.Close()
	took := time.Since(sent)
	switch {
	case err != nil:
		p.fail(ctx, "", err)
		return
	case resp.StatusCode == http.StatusOK:
		s.etag = resp.Header.Get("ETag")
	case resp.StatusCode == http.StatusNotModified:
	default:
		p.fail(ctx, "http_"+strconv.Itoa(resp.StatusCode), errorStatus(resp.Status))
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Sent++
	if resp.StatusCode == http.StatusOK {
		p.stats.OK++
	} else {
		p.stats.NotModified++
	}
	p.stats.Histogram.Add(took)
}

// errorStatus is an answer's status line as an example error.
type errorStatus string

func (e errorStatus) Error() string { return "load: state: " + string(e) }

// fail counts a poll that failed with cause, or with the cause of err
// when cause is empty; polls cut by the end of the run are Ended.
func (p *poller) fail(ctx context.Context, cause string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Sent++
	if ctx.Err() != nil {
		p.stats.Ended++
		return
	}
	if cause == "" {
		cause = classify(err)
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err // the URL is the same for every poll
		}
	}
	p.stats.Failed++
	addCause(&p.stats.FailedBy, cause, 1)
	if _, ok := p.stats.Errors[cause]; !ok {
		if p.stats.Errors == nil {
			p.stats.Errors = map[string]string{}
		}
		p.stats.Errors[cause] = err.Error()
	}
}

// report returns the polls counted; run must have returned.
func (p *poller) report() *StatePolls {
	s := p.stats
	s.Due = p.due
	s.Skipped = p.skipped.Load()
	return &s
}
