package main

import (
	"context"
	"io"
	"log/slog"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/load"
)

// plausibleLatency bounds a mouth-to-ear latency measured on loopback by
// a test: a few hundred milliseconds alone (scripts/bench/latency.sh
// measures it, docs/BENCHMARKS.md), more on a busy machine. It tells a
// working measurement from a broken one, not a fast server from a slow one.
const plausibleLatency = 2 * time.Second

// runLatency runs the load tool's latency measurement on the server at
// url: 5 listeners of which 3 decode, for d, marks every interval (0: the
// default), the listeners asking the server to write every flush.
func runLatency(t *testing.T, ctx context.Context, url string, d, interval, flush time.Duration) *load.Report {
	t.Helper()
	sc := load.DefaultScenario()
	sc.Server = url
	sc.Flush = load.Duration(flush)
	sc.Listeners = 5
	sc.LatencySample = 3
	sc.LatencyInterval = load.Duration(interval)
	sc.Duration = load.Duration(d)
	rep, err := load.Run(ctx, sc, load.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	rep.WriteText(&text)
	t.Logf("%s", text.String())
	if !strings.Contains(text.String(), "latency    p50 ") {
		t.Errorf("text report without its latency line:\n%s", text.String())
	}
	return rep
}

func TestLoadLatencyMeasuresTheMarksOfItsSpeakerBot(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()

	// The listeners ask for the writes amphi's own clients get.
	rep := runLatency(t, ctx, m.URL(), 8*time.Second, 0, 200*time.Millisecond)
	l := rep.Latency
	if l == nil {
		t.Fatal("no latency in the report")
	}
	t.Logf("latency: %d marks sent, %d matched over %d listeners: p50 %v, p99 %v, max %v",
		l.Sent, l.N, l.Listeners, l.P50, l.P99, l.Max)
	// Alone each listener matches nearly every mark; on a busy machine the
	// bot's packets reach the stage late and some marks are lost, as they
	// would be on a bad network. How many are matched is for
	// scripts/bench/latency.sh to measure; here some must be.
	if l.Listeners != 3 || l.N < 3 || l.Sent < 7 {
		t.Errorf("latency %+v: want 3 listeners matching some of about 8 marks each", *l)
	}
	// On loopback the path is the stage's jitter buffer, the mixer, the
	// program's 5-packet pages (0 to 80 ms) and the edge's writes every
	// 200 ms (0 or 100 ms): tens of milliseconds to a few hundred.
	if l.P50 <= 0 || l.P50 > load.Duration(plausibleLatency) || l.P99 < l.P50 || l.Max < l.P99 {
		t.Errorf("latency p50 %v, p99 %v, max %v: not plausible", l.P50, l.P99, l.Max)
	}
	if rep.Listeners.OK != 5 || len(rep.Detections) != 0 {
		t.Errorf("listeners %+v, %d raw detections left in the report", rep.Listeners, len(rep.Detections))
	}
	seconds := 0
	for _, s := range rep.Timeline {
		if s.Latency > 0 {
			seconds++
		}
	}
	if seconds < 2 {
		t.Errorf("%d seconds of the timeline have a latency, want several of 8", seconds)
	}
}

// TestLoadLatencyShowsADelayOnTheListenersPath puts a proxy between the
// listeners and the server that, from a given instant, holds every chunk
// of bytes for 300 ms before passing it on, and checks that the latency
// measured after that instant is about 300 ms more than before: between
// half and twice that, a margin a busy machine keeps (alone it reads
// within 20 ms of 300 ms, which the test logs).
//
// Both halves are one run with one speaker bot: the marks' positions in
// the program's pages (0 to 80 ms of batching) and in the edge's coalesced
// writes depend on the bot's phase against the mixer, which is new with
// every bot, so two separate runs differ by tens of milliseconds before
// any delay. With a mark every 1 s (50 packets, 10 pages) every mark of
// the run lands at the same position, and listeners asking for a flush of
// one chunk (100 ms) are written each page as it is published, so every
// listener sees every mark the same way and each second's median moves by
// the proxy's delay alone.
func TestLoadLatencyShowsADelayOnTheListenersPath(t *testing.T) {
	t.Parallel()
	const delay = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	p := startDelayProxy(t, strings.TrimPrefix(m.URL(), "http://"), delay)
	defer p.Close()

	// Setup takes a second or two; the switch leaves about 8 s of marks
	// on each side of it, of which a busy machine may lose a few.
	switchAt := time.Now().Add(10 * time.Second)
	p.delayFrom(switchAt)
	rep := runLatency(t, ctx, p.URL(), 20*time.Second, time.Second, 100*time.Millisecond)
	if rep.Latency == nil || rep.Listeners.OK != 5 {
		t.Fatalf("latency %+v, listeners %+v", rep.Latency, rep.Listeners)
	}

	// A second's latency is of the marks that arrived during it: before
	// the switch every byte passed at once; from switchAt+delay on, every
	// byte has been held.
	var before, after []time.Duration
	for _, s := range rep.Timeline {
		if s.Latency == 0 {
			continue
		}
		from := rep.Started.Add(time.Duration(s.T-1) * time.Second)
		to := from.Add(time.Second)
		switch {
		case !to.After(switchAt):
			before = append(before, time.Duration(s.Latency))
		case !from.Before(switchAt.Add(delay)):
			after = append(after, time.Duration(s.Latency))
		}
	}
	t.Logf("each second's median latency, direct: %v; held %v by the proxy: %v", before, delay, after)
	if len(before) < 3 || len(after) < 3 {
		t.Fatalf("%d seconds with marks before the switch and %d after, want 3 or more of each", len(before), len(after))
	}
	direct, held := median(before), median(after)
	got := held - direct
	t.Logf("latency p50 direct %v, through the proxy %v: %v more, the proxy holds %v", direct, held, got, delay)
	if got < delay/2 || got > 2*delay {
		t.Errorf("the proxy's %v showed as %v more latency (p50 %v, then %v), want about as much", delay, got, direct, held)
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// delayProxy is a TCP proxy on loopback that, from a given instant on,
// holds each chunk of bytes it reads, either way, for a fixed delay before
// writing it on: a path with that much more one-way latency. Chunks keep
// their order, and the upstream connection comes from the client's own
// source address, so the server's per-source limits see what they would.
type delayProxy struct {
	ln     net.Listener
	target string
	delay  time.Duration
	from   atomic.Int64 // unix ns from which chunks are held
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn
	done  bool
}

func startDelayProxy(t *testing.T, target string, delay time.Duration) *delayProxy {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &delayProxy{ln: ln, target: target, delay: delay}
	p.from.Store(math.MaxInt64)
	p.wg.Go(p.accept)
	return p
}

// URL is the proxy's base URL.
func (p *delayProxy) URL() string { return "http://" + p.ln.Addr().String() }

// delayFrom makes chunks read at or after at be held.
func (p *delayProxy) delayFrom(at time.Time) { p.from.Store(at.UnixNano()) }

// Close stops the proxy and cuts its connections.
func (p *delayProxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	p.done = true
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// track keeps c to be closed by Close; false when closed already.
func (p *delayProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		c.Close()
		return false
	}
	p.conns = append(p.conns, c)
	return true
}

func (p *delayProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		p.wg.Go(func() {
			src := c.RemoteAddr().(*net.TCPAddr)
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.IP}, Timeout: 5 * time.Second}
			up, err := d.Dial("tcp4", p.target)
			if err != nil {
				c.Close()
				return
			}
			if !p.track(up) {
				c.Close()
				return
			}
			p.wg.Go(func() { p.pipe(up, c) })
			p.pipe(c, up)
		})
	}
}

// chunk is what one read returned, and when.
type chunk struct {
	at   time.Time
	data []byte
}

// pipe copies src to dst, holding each chunk read from the switch on. A
// reader stamps the chunks and queues them, so the holding does not slow
// the reading; the writer sleeps until each is due.
func (p *delayProxy) pipe(dst, src net.Conn) {
	q := make(chan chunk, 4096)
	p.wg.Go(func() {
		defer close(q)
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{at: time.Now(), data: slices.Clone(buf[:n])}
			}
			if err != nil {
				return
			}
		}
	})
	for c := range q {
		due := c.at
		if c.at.UnixNano() >= p.from.Load() {
			due = due.Add(p.delay)
		}
		time.Sleep(time.Until(due))
		if _, err := dst.Write(c.data); err != nil {
			src.Close()
			for range q {
			}
			return
		}
	}
	// src ended: pass the end on, leaving the other way open.
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}
