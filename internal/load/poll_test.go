package load

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pollShare returns share w of workers of a scenario of listeners whose
// pages poll every period.
func pollShare(t testing.TB, listeners, w, workers int, period time.Duration) *Share {
	t.Helper()
	sc := DefaultScenario()
	sc.SpaceID, sc.Listeners, sc.Duration, sc.PollState = "abc", listeners, Duration(time.Minute), Duration(period)
	if err := sc.Normalize(); err != nil {
		t.Fatal(err)
	}
	return &Share{Scenario: sc, Worker: w, Workers: workers}
}

func TestPollerSpreadsPagesEvenlyOverTheInterval(t *testing.T) {
	const period = 2 * time.Second
	for _, tc := range []struct {
		name               string
		listeners, workers int
		closed             []int // global indexes of listeners whose stream is not running
	}{
		{"one process", 10, 1, nil},
		{"three shares", 7, 3, nil},
		{"pages of closed streams do not poll", 12, 2, []int{0, 5, 11}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var offsets []time.Duration
			for w := range tc.workers {
				sh := pollShare(t, tc.listeners, w, tc.workers, period)
				n := sh.count()
				p := newPoller(sh, n, "http://127.0.0.1:1/state")
				open := 0
				for k := range n {
					g := k*tc.workers + w
					if want := time.Duration(g) * period / time.Duration(tc.listeners); p.offset(k) != want {
						t.Errorf("share %d: listener %d polls at %v, want %v", w, g, p.offset(k), want)
					}
					offsets = append(offsets, p.offset(k))
					if !slices.Contains(tc.closed, g) {
						p.open(k)
						open++
					}
				}
				// Step through two intervals in steps finer than the
				// spacing: after each step, exactly the open pages due by
				// then have fired, each once per interval, in order.
				fired := map[int64][]int{} // by interval
				step := period / time.Duration(4*tc.listeners)
				for at := time.Duration(0); at < 2*period; at += step {
					p.advance(at, func(k int) {
						c := int64(at / period)
						if off := at - time.Duration(c)*period; p.offset(k) > off {
							t.Errorf("listener %d fired at %v into the interval, before its offset %v", k, off, p.offset(k))
						}
						fired[c] = append(fired[c], k)
					})
					due := 0
					for k := range n {
						if !p.slots[k].open.Load() {
							continue
						}
						for c := range int64(2) {
							if time.Duration(c)*period+p.offset(k) <= at {
								due++
							}
						}
					}
					if got := len(fired[0]) + len(fired[1]); got != due {
						t.Fatalf("at %v: %d polls fired, want %d", at, got, due)
					}
				}
				for c, ks := range fired {
					if len(ks) != open || !slices.IsSorted(ks) || len(slices.Compact(slices.Clone(ks))) != open {
						t.Errorf("share %d interval %d fired %v, want each of its %d open pages once, in order", w, c, ks, open)
					}
				}
				if p.due != int64(2*open) {
					t.Errorf("share %d: due %d, want %d", w, p.due, 2*open)
				}
			}
			// Together the shares' pages are evenly spread.
			slices.Sort(offsets)
			gap := period / time.Duration(tc.listeners)
			for i := 1; i < len(offsets); i++ {
				if d := offsets[i] - offsets[i-1]; d < gap-1 || d > gap+1 {
					t.Errorf("pages %d and %d are %v apart, want %v", i-1, i, d, gap)
				}
			}
		})
	}
}

func TestPollerFallenBehindSkipsRatherThanBursts(t *testing.T) {
	p := newPoller(pollShare(t, 10, 0, 1, time.Second), 10, "http://127.0.0.1:1/state")
	for k := range 10 {
		p.open(k)
	}
	fired := 0
	p.advance(5*time.Second+time.Millisecond, func(int) { fired++ })
	if fired > 10 || p.due != int64(fired)+p.skipped.Load() || p.skipped.Load() == 0 {
		t.Errorf("after 5 intervals at once: fired %d, due %d, skipped %d; want at most one interval fired, the rest skipped", fired, p.due, p.skipped.Load())
	}
}

func TestPollerStopsWithTheRun(t *testing.T) {
	sh := pollShare(t, 500, 0, 1, MinPollState)
	sh.Start = time.Now()
	p := newPoller(sh, 500, "http://127.0.0.1:1/state")
	for k := range 500 {
		p.open(k)
	}
	var calls, inFlight atomic.Int64
	started := make(chan struct{})
	var once sync.Once
	// Polls block until the run ends, as polls of a server that does not
	// answer would.
	p.poll = func(ctx context.Context, k int) {
		calls.Add(1)
		inFlight.Add(1)
		defer inFlight.Add(-1)
		once.Do(func() { close(started) })
		<-ctx.Done()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.run(ctx)
	}()
	<-started
	cancel()
	<-done
	if n := inFlight.Load(); n != 0 {
		t.Errorf("%d polls still in flight after the run", n)
	}
	if n := calls.Load(); n > pollConns {
		t.Errorf("%d polls at once, more than the %d connections", n, pollConns)
	}
	for k := range p.slots {
		if p.slots[k].busy.Load() {
			t.Fatalf("page %d still busy after the run", k)
		}
	}
	if _, ok := <-p.queue; ok {
		t.Errorf("the queue is still open")
	}
	if r := p.report(); r.Due != calls.Load()+r.Skipped {
		t.Errorf("due %d, want the %d sent plus the %d skipped", r.Due, calls.Load(), r.Skipped)
	}
}

// stateServer mimics an amphi space for polling pages: a join that admits
// at once, a stream that sends nothing, and a state with an ETag that
// changes every hundredth poll (every fifth of a page,
// with 20 pages), where every seventh poll fails.
type stateServer struct {
	polls, ok, notModified, failed, conditional atomic.Int64
}

func (s *stateServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method + " " + r.URL.Path {
	case "POST /spaces/abc/join":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"admitted","ticket":"t"}`)
	case "GET /spaces/abc/live.opus":
		w.Header().Set("Content-Type", "audio/ogg")
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	case "GET /spaces/abc/state":
		n := s.polls.Add(1)
		if n%7 == 0 {
			s.failed.Add(1)
			http.Error(w, `{"error":"unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		etag := fmt.Sprintf(`"v%d"`, n/100)
		w.Header().Set("ETag", etag)
		w.Header().Set("Cache-Control", "public, max-age=1")
		if inm := r.Header.Get("If-None-Match"); inm != "" {
			s.conditional.Add(1)
			if inm == etag {
				s.notModified.Add(1)
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
		s.ok.Add(1)
		fmt.Fprintf(w, `{"id":"abc","state":"live","listeners":20,"at":%q}`, etag)
	default:
		http.NotFound(w, r)
	}
}

func TestRunSharePollsTheStateAsPagesDo(t *testing.T) {
	srv := &stateServer{}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	sc := DefaultScenario()
	sc.Server, sc.SpaceID, sc.Listeners = ts.URL, "abc", 20
	sc.Duration, sc.PollState = Duration(2*time.Second), Duration(MinPollState)
	rep, err := RunShare(context.Background(), Share{Scenario: sc, Workers: 1, Start: time.Now()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := rep.State
	if s == nil {
		t.Fatal("no state section in the report")
	}
	if s.Sent == 0 || s.OK == 0 || s.NotModified == 0 || s.FailedBy["http_503"] == 0 {
		t.Fatalf("state %+v: want 200s, 304s and 503s", *s)
	}
	if s.OK+s.NotModified+s.Failed+s.Ended != s.Sent || s.Sent+s.Skipped != s.Due || s.Failed != s.FailedBy["http_503"] {
		t.Errorf("state %+v does not add up", *s)
	}
	// The server may have answered polls the run's end cut; none it never
	// saw are counted as answered.
	if s.OK > srv.ok.Load() || s.NotModified > srv.notModified.Load() || s.FailedBy["http_503"] > srv.failed.Load() || s.Sent < srv.polls.Load() {
		t.Errorf("counted %+v, the server saw %d polls: %d 200, %d 304, %d 503", *s, srv.polls.Load(), srv.ok.Load(), srv.notModified.Load(), srv.failed.Load())
	}
	if srv.conditional.Load() == 0 {
		t.Errorf("no poll sent If-None-Match")
	}
	// At most one poll per page per interval, plus the one at the start.
	if limit := int64(sc.Listeners) * (int64(time.Duration(sc.Duration)/MinPollState) + 1); s.Due > limit {
		t.Errorf("%d polls due, more than %d", s.Due, limit)
	}
	if s.Latency.Max == 0 || s.Histogram.N != s.OK+s.NotModified || s.Interval != sc.PollState {
		t.Errorf("latency %+v of %d, interval %v", s.Latency, s.Histogram.N, s.Interval)
	}
	var text strings.Builder
	if err := rep.WriteText(&text); err != nil || !strings.Contains(text.String(), "polls/s") || !strings.Contains(text.String(), "http_503") {
		t.Errorf("text report (%v):\n%s", err, text.String())
	}
}

func TestMergedStatePollsEqualOnePollerOfEverything(t *testing.T) {
	ms := time.Millisecond
	// Two workers' reports, through JSON as they travel, and one without
	// polls (a worker of an older scenario has none).
	mk := func(lat []time.Duration, nm, failed int64) *Report {
		s := &StatePolls{Interval: Duration(2 * time.Second), OK: 1, NotModified: nm, Failed: failed}
		for _, d := range lat {
			s.Histogram.Add(d)
		}
		s.Sent = s.OK + s.NotModified + s.Failed
		s.Due = s.Sent + 1
		s.Skipped = 1
		if failed > 0 {
			s.FailedBy = map[string]int64{"http_503": failed}
			s.Errors = map[string]string{"http_503": "load: state: 503 Service Unavailable"}
		}
		return viaJSON(t, &Report{Duration: Duration(10 * time.Second), State: s})
	}
	var all Report
	for _, r := range []*Report{mk([]time.Duration{ms, 2 * ms}, 1, 0), {Duration: Duration(10 * time.Second)}, mk([]time.Duration{3 * ms, 4 * ms, 500 * ms}, 2, 3)} {
		all.Merge(r)
	}
	s := all.State
	if s == nil || s.Sent != 8 || s.Due != 10 || s.Skipped != 2 || s.OK != 2 || s.NotModified != 3 || s.Failed != 3 || s.FailedBy["http_503"] != 3 {
		t.Fatalf("merged %+v", s)
	}
	if s.Histogram.N != 5 || time.Duration(s.Latency.Max) != 500*ms || s.Latency.P50 < Duration(2900*time.Microsecond) || s.Latency.P50 > Duration(3100*time.Microsecond) {
		t.Errorf("latency %+v of %d", s.Latency, s.Histogram.N)
	}
	if s.PerSecond != 0.8 || s.TargetPerSecond != 1 {
		t.Errorf("%v polls/s of %v", s.PerSecond, s.TargetPerSecond)
	}
}
