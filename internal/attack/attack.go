// Package attack is the attacker side of amphi's rehearsal: request floods on
// the join and listen endpoints with forged or missing tickets, slowloris,
// slow readers and connection exhaustion, so the gate can be tested against
// them before an event. `amphi load` drives it (package load); nothing in the
// server imports it.
//
// Every attack is bounded three ways (a count, a concurrency cap and a hard
// stop after a duration) and goes only to loopback addresses, through
// package loopnet: Run refuses any other target before it opens a socket.
// Requests are written by hand on raw connections, so each attack owns its
// file descriptors and deadlines and Run returns with every connection
// closed and every goroutine it started ended.
package attack

import (
	"context"
	"fmt"
	"maps"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/loopnet"
)

// Kind names an attack.
type Kind string

// The attacks. Floods make many short requests and count the statuses they
// get; holders open connections and keep them as long as the server lets
// them, counting how long that was.
const (
	// JoinFlood POSTs {base}/spaces/{id}/join with bodies that are empty,
	// garbage, malformed JSON, or JSON with a forged proof of work or a forged
	// ticket, one new connection per request, and counts the statuses.
	JoinFlood Kind = "join-flood"
	// ListenFlood GETs {base}/spaces/{id}/live.opus, every other request with
	// a forged ?ticket=, reads the status line and closes.
	ListenFlood Kind = "listen-flood"
	// Slowloris opens connections and trickles a request's header lines, one
	// every Trickle, never finishing the header.
	Slowloris Kind = "slowloris"
	// SlowReader sends a complete GET for the live stream on a connection
	// with a tiny receive buffer and never reads the response.
	SlowReader Kind = "slow-reader"
	// ConnExhaust opens TCP connections and sends nothing.
	ConnExhaust Kind = "conn-exhaust"
)

// Kinds lists every attack, floods first.
var Kinds = []Kind{JoinFlood, ListenFlood, Slowloris, SlowReader, ConnExhaust}

func (k Kind) flood() bool { return k == JoinFlood || k == ListenFlood }

// defaultPath is the path each kind aims at; {id} stands for the space.
func (k Kind) defaultPath() string {
	if k == JoinFlood {
		return "/spaces/{id}/join"
	}
	return "/spaces/{id}/live.opus"
}

// Config says what to attack, how hard and for how long.
type Config struct {
	// Kind is the attack. Required.
	Kind Kind
	// Target is the server's base URL, such as http://127.0.0.1:8080. Only
	// http and loopback hosts (127.0.0.0/8, ::1, localhost) are accepted; a
	// path in it prefixes every request's path. Required.
	Target string
	// SpaceID replaces {id} in the path. Empty means a fresh random id per
	// request: spaces that do not exist.
	SpaceID string
	// Rate is how many requests (floods) or connections (holders) start per
	// second, on average. Zero means 100.
	Rate float64
	// Count is how many requests or connections to start in all. Zero means
	// Rate × Duration.
	Count int
	// Concurrency caps the requests in flight or connections held at once;
	// starts wait for a free slot, so the rate drops rather than the cap
	// being exceeded. Zero means 64 for floods and 1000 for holders.
	Concurrency int
	// Duration is the hard stop: when it has passed every connection is
	// closed and Run returns. Zero means 10 s.
	Duration time.Duration
	// Timeout bounds one flood request (connect, write, status line) and a
	// holder's connect. Zero means 5 s.
	Timeout time.Duration
	// Trickle is the interval between slowloris header lines. Zero means 1 s.
	Trickle time.Duration
	// Sources is how many loopback source addresses to rotate over
	// (loopnet.Dialer.Sources). Zero means 1.
	Sources int
	// Path replaces the kind's default path, for when the gate's routes
	// change; {id} in it stands for the space and it may carry a query (a
	// real ticket for slow readers, say). Empty means /spaces/{id}/join for
	// JoinFlood and /spaces/{id}/live.opus for the others.
	Path string
}

// DefaultConfig returns a Config with every defaulted field set; Kind and
// Target are left for the caller.
func DefaultConfig() Config {
	return Config{
		Rate:     100,
		Duration: 10 * time.Second,
		Timeout:  5 * time.Second,
		Trickle:  time.Second,
		Sources:  1,
	}
}

// Concurrency defaults: a flood's requests are short, so a few dozen in
// flight keep up with thousands per second; holders are the attack, so many.
const (
	defaultFloodConcurrency = 64
	defaultHoldConcurrency  = 1000
)

// withDefaults fills zero fields and checks the rest.
func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	if !slices.Contains(Kinds, c.Kind) {
		return c, amphi.Errorf(amphi.EInvalid, "attack: unknown kind %q", c.Kind)
	}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) || c.Count < 0 || c.Concurrency < 0 ||
		c.Duration < 0 || c.Timeout < 0 || c.Trickle < 0 || c.Sources < 0 {
		return c, amphi.Errorf(amphi.EInvalid, "attack: negative or non-finite setting in %+v", c)
	}
	if c.Rate == 0 {
		c.Rate = d.Rate
	}
	if c.Duration == 0 {
		c.Duration = d.Duration
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.Trickle == 0 {
		c.Trickle = d.Trickle
	}
	if c.Sources == 0 {
		c.Sources = d.Sources
	}
	if c.Count == 0 {
		c.Count = int(min(math.Ceil(c.Rate*c.Duration.Seconds()), math.MaxInt32))
	}
	if c.Concurrency == 0 {
		c.Concurrency = defaultHoldConcurrency
		if c.Kind.flood() {
			c.Concurrency = defaultFloodConcurrency
		}
	}
	if c.Path == "" {
		c.Path = c.Kind.defaultPath()
	}
	if !strings.HasPrefix(c.Path, "/") {
		return c, amphi.Errorf(amphi.EInvalid, "attack: path %q does not start with /", c.Path)
	}
	return c, nil
}

// target is where requests go, parsed once.
type target struct {
	addr string // host:port to dial
	host string // Host header
	// pathBefore and pathAfter surround the space id in the request path.
	pathBefore, pathAfter string
	hasID                 bool // the path has an {id} to fill
	query                 bool // the path already has a query
}

func parseTarget(c Config) (target, error) {
	u, err := url.Parse(c.Target)
	if err != nil {
		return target{}, amphi.Errorf(amphi.EInvalid, "attack: target %q: %v", c.Target, err)
	}
	if u.Scheme != "http" || u.Host == "" {
		return target{}, amphi.Errorf(amphi.EInvalid, "attack: target %q: want http://HOST:PORT on loopback", c.Target)
	}
	if err := loopnet.CheckURL(c.Target); err != nil {
		return target{}, fmt.Errorf("attack: target %q: %w", c.Target, err)
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return target{}, amphi.Errorf(amphi.EInvalid, "attack: target %q: bad port", c.Target)
	}
	path := strings.TrimSuffix(u.EscapedPath(), "/") + c.Path
	before, after, hasID := strings.Cut(path, "{id}")
	if hasID && c.SpaceID != "" {
		before, after, hasID = before+url.PathEscape(c.SpaceID)+after, "", false
	}
	return target{
		addr:       u.Hostname() + ":" + port,
		host:       u.Host,
		pathBefore: before,
		pathAfter:  after,
		hasID:      hasID,
		query:      strings.Contains(path, "?"),
	}, nil
}

// Stats is what an attack did and what the server did to it.
type Stats struct {
	// Kind is the attack.
	Kind Kind
	// Started counts requests or connections attempted. When Run returns,
	// Started = Completed + the sum of Errors.
	Started int64
	// Completed counts flood requests that got a status line, and holders
	// whose connection was opened (however it ended).
	Completed int64
	// ByStatus counts the HTTP statuses received: every flood response, and
	// any response a holder got (a 408 to a slowloris, a 403 to a slow
	// reader seen by peeking at its buffer).
	ByStatus map[int]int64
	// Errors counts the attempts that failed, by cause: "refused", "reset",
	// "timeout" (our Timeout passed), "eof" (closed before a status line),
	// "malformed" (not an HTTP status line), "no-port" (source ports used
	// up), "no-fd" (file descriptors used up), "stopped" (in flight when
	// Duration or the context ended the attack) and "other".
	Errors map[string]int64
	// HeldMax is the most connections open at once.
	HeldMax int64
	// HeldSeconds is the connection-seconds held, summed over connections.
	HeldSeconds float64
	// ClosedByServer counts holders whose connection the server ended
	// (closed, reset or answered) before the attack stopped.
	ClosedByServer int64
	// MeanHold is how long the server let a holder hold on average, over
	// those it closed. Zero when it closed none.
	MeanHold time.Duration
	// Elapsed is how long Run ran.
	Elapsed time.Duration
}

// String is one line for a terminal.
func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d started in %.2fs", s.Kind, s.Started, s.Elapsed.Seconds())
	if s.Kind.flood() { // a holder's Elapsed is mostly holding
		fmt.Fprintf(&b, " (%.0f/s)", float64(s.Started)/max(s.Elapsed.Seconds(), 1e-9))
	}
	fmt.Fprintf(&b, ", %d completed", s.Completed)
	writeCounts(&b, " | status", s.ByStatus, strconv.Itoa)
	writeCounts(&b, " | errors", s.Errors, func(k string) string { return k })
	fmt.Fprintf(&b, " | held max %d, %.1f conn·s", s.HeldMax, s.HeldSeconds)
	if s.ClosedByServer > 0 {
		fmt.Fprintf(&b, ", %d cut by server after %s on average", s.ClosedByServer, s.MeanHold.Round(time.Millisecond))
	}
	return b.String()
}

func writeCounts[K int | string](b *strings.Builder, label string, m map[K]int64, name func(K) string) {
	if len(m) == 0 {
		return
	}
	b.WriteString(label)
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(b, " %s×%d", name(k), m[k])
	}
}

// Run attacks cfg.Target until cfg.Count requests or connections have been
// started and have finished, cfg.Duration has passed or ctx is done,
// whichever comes first, and returns what happened. It never has more than
// cfg.Concurrency in flight, and when it returns every connection it opened
// is closed and every goroutine it started has ended. It returns an error
// only for a Config it refuses, before sending anything: a target that is
// not loopback among them (errors.Is loopnet.ErrNotLoopback).
func Run(ctx context.Context, cfg Config) (Stats, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Stats{Kind: cfg.Kind}, err
	}
	tg, err := parseTarget(cfg)
	if err != nil {
		return Stats{Kind: cfg.Kind}, err
	}
	start := time.Now()
	r := &runner{cfg: cfg, target: tg, dialer: &loopnet.Dialer{Sources: cfg.Sources}, deadline: start.Add(cfg.Duration)}
	ctx, cancel := context.WithDeadline(ctx, r.deadline)
	defer cancel()

	slots := make(chan struct{}, cfg.Concurrency)
	var wg sync.WaitGroup
	p := newPacer(cfg.Rate, start)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
loop:
	for i := range cfg.Count {
		if wait := p.reserve(time.Now()); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				break loop
			}
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		if ctx.Err() != nil { // both cases were ready: stopping wins
			break
		}
		r.started.Add(1)
		wg.Go(func() {
			defer func() { <-slots }()
			if cfg.Kind.flood() {
				r.flood(ctx, i)
			} else {
				r.hold(ctx, i)
			}
		})
	}
	wg.Wait()
	s := r.stats()
	s.Elapsed = time.Since(start)
	return s, nil
}

// runner holds one Run's settings and counters; its attack goroutines
// update the counters with atomics only.
type runner struct {
	cfg      Config
	target   target
	dialer   *loopnet.Dialer
	deadline time.Time // start + Duration

	started, completed atomic.Int64
	status             [1000]atomic.Int64 // by HTTP status, which parseStatusLine keeps in 100-999
	errs               [numCauses]atomic.Int64
	open, openMax      atomic.Int64
	heldNanos          atomic.Int64
	cut, cutNanos      atomic.Int64
}

func (r *runner) countStatus(code int) {
	r.status[code%len(r.status)].Add(1)
}

// opened and closed track connections open at once, for HeldMax and
// HeldSeconds.
func (r *runner) opened() {
	n := r.open.Add(1)
	for {
		m := r.openMax.Load()
		if n <= m || r.openMax.CompareAndSwap(m, n) {
			return
		}
	}
}

func (r *runner) closed(held time.Duration) {
	r.open.Add(-1)
	r.heldNanos.Add(int64(held))
}

func (r *runner) stats() Stats {
	s := Stats{
		Kind:           r.cfg.Kind,
		Started:        r.started.Load(),
		Completed:      r.completed.Load(),
		ByStatus:       map[int]int64{},
		Errors:         map[string]int64{},
		HeldMax:        r.openMax.Load(),
		HeldSeconds:    time.Duration(r.heldNanos.Load()).Seconds(),
		ClosedByServer: r.cut.Load(),
	}
	for code := range r.status {
		if n := r.status[code].Load(); n > 0 {
			s.ByStatus[code] = n
		}
	}
	for c := range r.errs {
		if n := r.errs[c].Load(); n > 0 {
			s.Errors[cause(c).String()] = n
		}
	}
	if s.ClosedByServer > 0 {
		s.MeanHold = time.Duration(r.cutNanos.Load() / s.ClosedByServer)
	}
	return s
}

// maxBurst is how far behind its schedule the pacer may catch up at once:
// after a stall (every slot busy, a slow scheduler) at most this much of
// the schedule's starts go out back to back, and the rest are skipped.
const maxBurst = 100 * time.Millisecond

// pacer spaces starts 1/rate apart on a fixed schedule, so timer slack
// does not lower the average rate, with bursts bounded by maxBurst.
type pacer struct {
	interval time.Duration
	next     time.Time
}

func newPacer(rate float64, start time.Time) *pacer {
	// A rate so low its interval overflows a Duration starts once.
	interval := min(float64(time.Second)/rate, float64(math.MaxInt64/2))
	return &pacer{interval: time.Duration(interval), next: start}
}

// reserve takes the next start on the schedule and returns how long after
// now it is (zero when due).
func (p *pacer) reserve(now time.Time) time.Duration {
	if now.Sub(p.next) > maxBurst {
		p.next = now.Add(-maxBurst)
	}
	wait := p.next.Sub(now)
	p.next = p.next.Add(p.interval)
	return max(wait, 0)
}
