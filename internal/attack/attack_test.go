package attack

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/loopnet"
)

// gateMimic stands in for the gate that does not exist yet: it refuses
// every join and every listen the way the gate will, with JSON errors, and
// counts what it saw.
type gateMimic struct {
	joins, listens atomic.Int64
	ids            sync.Map // space ids seen
}

func (g *gateMimic) handler() http.Handler {
	mux := http.NewServeMux()
	join := func(w http.ResponseWriter, r *http.Request) {
		g.joins.Add(1)
		g.ids.Store(r.PathValue("id"), true)
		var v map[string]any
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&v); err != nil {
			writeError(w, http.StatusBadRequest, "invalid", "the body is not a join request")
			return
		}
		writeError(w, http.StatusNotFound, "not_found", "unknown ticket")
	}
	mux.HandleFunc("POST /spaces/{id}/join", join)
	mux.HandleFunc("POST /v2/spaces/{id}/join", join)
	mux.HandleFunc("GET /spaces/{id}/live.opus", func(w http.ResponseWriter, r *http.Request) {
		g.listens.Add(1)
		g.ids.Store(r.PathValue("id"), true)
		if r.URL.Query().Get("ticket") == "" {
			writeError(w, http.StatusUnauthorized, "unauthorized", "a ticket is required")
			return
		}
		writeError(w, http.StatusNotFound, "not_found", "unknown ticket")
	})
	return mux
}

// hang never answers. It drains the body first: net/http notices that the
// client has gone (and cancels the request's context) only after that.
func hang(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	<-r.Context().Done()
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// sum adds a map's counts.
func sum[K comparable](m map[K]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// checkAccounts fails unless every start is accounted for once.
func checkAccounts(t *testing.T, s Stats) {
	t.Helper()
	if s.Started != s.Completed+sum(s.Errors) {
		t.Errorf("started %d != completed %d + errors %d: %v", s.Started, s.Completed, sum(s.Errors), s)
	}
}

func TestRunRefusesTargetsOffLoopback(t *testing.T) {
	for _, tc := range []struct {
		target       string
		notLoopback  bool // the error is loopnet.ErrNotLoopback
		otherRefusal bool
	}{
		{target: "http://10.0.0.1:8080", notLoopback: true},
		{target: "http://192.168.1.10/", notLoopback: true},
		{target: "http://example.com/", notLoopback: true},
		{target: "http://0.0.0.0:80/", notLoopback: true},
		{target: "http://[2001:db8::1]:80", notLoopback: true},
		{target: "https://127.0.0.1:8443", otherRefusal: true},
		{target: "", otherRefusal: true},
		{target: "127.0.0.1:8080", otherRefusal: true},
		{target: "http://127.0.0.1:99999", otherRefusal: true},
	} {
		for _, k := range Kinds {
			s, err := Run(context.Background(), Config{Kind: k, Target: tc.target, Count: 1})
			if err == nil {
				t.Fatalf("%s on %q: no error", k, tc.target)
			}
			if errors.Is(err, loopnet.ErrNotLoopback) != tc.notLoopback {
				t.Errorf("%s on %q: %v, want ErrNotLoopback=%v", k, tc.target, err, tc.notLoopback)
			}
			if s.Started != 0 {
				t.Errorf("%s on %q: started %d", k, tc.target, s.Started)
			}
		}
	}
}

func TestRunRefusesBadConfigs(t *testing.T) {
	for _, cfg := range []Config{
		{Kind: "ping-of-death"},
		{Kind: JoinFlood, Rate: -1},
		{Kind: JoinFlood, Count: -1},
		{Kind: JoinFlood, Duration: -time.Second},
		{Kind: Slowloris, Concurrency: -5},
		{Kind: ListenFlood, Path: "no-slash"},
	} {
		cfg.Target = "http://127.0.0.1:1"
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("Run(%+v): no error", cfg)
		}
	}
}

func TestFloodsCountEveryStatus(t *testing.T) {
	g := &gateMimic{}
	srv := httptest.NewServer(g.handler())
	defer srv.Close()
	const count = 50
	for _, tc := range []struct {
		name     string
		cfg      Config
		statuses map[int]int64
		seen     func() int64
		id       string // the only space id the server must see; "" for random ones
	}{
		{
			name: "join random spaces",
			cfg:  Config{Kind: JoinFlood},
			// Empty, garbage and truncated bodies are malformed; forged PoW
			// and tickets are well-formed and unknown.
			statuses: map[int]int64{400: 30, 404: 20},
			seen:     g.joins.Load,
		},
		{
			name:     "join one space on a moved route",
			cfg:      Config{Kind: JoinFlood, SpaceID: "nmc64ad3heyj7xeg", Path: "/v2/spaces/{id}/join"},
			statuses: map[int]int64{400: 30, 404: 20},
			seen:     g.joins.Load,
			id:       "nmc64ad3heyj7xeg",
		},
		{
			name:     "listen with and without forged tickets",
			cfg:      Config{Kind: ListenFlood, SpaceID: "abc"},
			statuses: map[int]int64{401: 25, 404: 25},
			seen:     g.listens.Load,
			id:       "abc",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g.ids.Clear()
			before := tc.seen()
			cfg := tc.cfg
			cfg.Target, cfg.Count, cfg.Rate = srv.URL, count, 2000
			s, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkAccounts(t, s)
			if s.Started != count || s.Completed != count || len(s.Errors) != 0 {
				t.Errorf("got %v, want %d requests answered", s, count)
			}
			if n := tc.seen() - before; n != count {
				t.Errorf("server saw %d requests, want %d", n, count)
			}
			for code, n := range tc.statuses {
				if s.ByStatus[code] != n {
					t.Errorf("status %d: %d, want %d (%v)", code, s.ByStatus[code], n, s.ByStatus)
				}
			}
			ids := 0
			g.ids.Range(func(k, _ any) bool {
				ids++
				if tc.id != "" && k != tc.id {
					t.Errorf("request for space %q, want only %q", k, tc.id)
				}
				return true
			})
			if tc.id == "" && ids < count/2 {
				t.Errorf("%d distinct space ids in %d requests, want fresh ones", ids, count)
			}
			if s.HeldMax < 1 || s.HeldMax > defaultFloodConcurrency {
				t.Errorf("held max %d", s.HeldMax)
			}
		})
	}
}

// TestRunKeepsRateOverTwoSeconds checks the pacing logic with a generous
// bound: ±20 % of the asked rate over two seconds, on a busy machine.
func TestRunKeepsRateOverTwoSeconds(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer((&gateMimic{}).handler())
	t.Cleanup(srv.Close) // after the parallel subtests, unlike a defer
	for _, tc := range []struct {
		kind Kind
		rate float64
	}{
		{ListenFlood, 250},
		{ConnExhaust, 100},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			t.Parallel()
			const d = 2 * time.Second
			s, err := Run(context.Background(), Config{Kind: tc.kind, Target: srv.URL, Rate: tc.rate, Count: 1 << 20, Duration: d})
			if err != nil {
				t.Fatal(err)
			}
			checkAccounts(t, s)
			if len(s.Errors) > 0 && (len(s.Errors) > 1 || s.Errors["stopped"] == 0) {
				t.Errorf("%v: want no errors but requests stopped at the end", s)
			}
			want := tc.rate * d.Seconds()
			if got := float64(s.Started); got < 0.8*want || got > 1.2*want {
				t.Errorf("started %v in %v, want %v ± 20%%: %v", got, d, want, s)
			}
		})
	}
}

func TestCountBoundsTheTotal(t *testing.T) {
	var accepted atomic.Int64
	srv := httptest.NewUnstartedServer((&gateMimic{}).handler())
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			accepted.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	for _, k := range Kinds {
		t.Run(string(k), func(t *testing.T) {
			before := accepted.Load()
			const count = 7
			s, err := Run(context.Background(), Config{Kind: k, Target: srv.URL, Rate: 1000, Count: count, Duration: 500 * time.Millisecond, Trickle: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			checkAccounts(t, s)
			if s.Started != count || s.Completed != count {
				t.Errorf("%v, want %d started and completed", s, count)
			}
			// The server counts a connection once it is accepted, which
			// may be just after the client's Run returned.
			for wait := time.Now().Add(5 * time.Second); accepted.Load()-before < count && time.Now().Before(wait); {
				time.Sleep(time.Millisecond)
			}
			if n := accepted.Load() - before; n != count {
				t.Errorf("server accepted %d connections, want %d", n, count)
			}
		})
	}
}

func TestConcurrencyIsNeverExceeded(t *testing.T) {
	var inFlight, most atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(50 * time.Millisecond) // keep requests in flight so they pile up
		w.WriteHeader(http.StatusNotFound)
	}))
	defer srv.Close()
	const limit = 4
	s, err := Run(context.Background(), Config{Kind: ListenFlood, Target: srv.URL, Rate: 1000, Count: 24, Concurrency: limit})
	if err != nil {
		t.Fatal(err)
	}
	checkAccounts(t, s)
	if s.HeldMax > limit || most.Load() > limit {
		t.Errorf("held max %d, server saw %d at once, limit %d", s.HeldMax, most.Load(), limit)
	}
	if s.ByStatus[404] != 24 {
		t.Errorf("%v, want 24 × 404", s)
	}
}

// TestDurationStopsEveryKind runs each attack against a server that never
// answers and never times out: only Duration can end it.
func TestDurationStopsEveryKind(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(hang))
	t.Cleanup(srv.Close) // after the parallel subtests, unlike a defer
	for _, k := range Kinds {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			const d = 300 * time.Millisecond
			start := time.Now()
			s, err := Run(context.Background(), Config{Kind: k, Target: srv.URL, Rate: 100, Count: 1000, Duration: d, Concurrency: 10})
			if err != nil {
				t.Fatal(err)
			}
			elapsed := time.Since(start)
			checkAccounts(t, s)
			// A hard stop, checked with room for a loaded machine.
			if elapsed < d || elapsed > d+2*time.Second {
				t.Errorf("ran %v, want about %v", elapsed, d)
			}
			if s.Started == 0 || s.Started >= 1000 {
				t.Errorf("started %d", s.Started)
			}
			if k.flood() && s.Errors["stopped"] == 0 {
				t.Errorf("%v: want requests in flight counted as stopped", s)
			}
			if !k.flood() && (s.ClosedByServer != 0 || s.HeldMax != 10) {
				t.Errorf("%v: want 10 connections held to the end", s)
			}
		})
	}
}

// TestHoldersAreCutByReadHeaderTimeout shows what a server's header timeout
// does to slowloris and idle connections, and that without one they are
// held until the attack stops.
func TestHoldersAreCutByReadHeaderTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 500 * time.Millisecond
	for _, tc := range []struct {
		kind    Kind
		timeout time.Duration
	}{
		{Slowloris, timeout},
		{Slowloris, 0},
		{ConnExhaust, timeout},
		{ConnExhaust, 0},
	} {
		name := string(tc.kind) + "/" + tc.timeout.String()
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewUnstartedServer((&gateMimic{}).handler())
			srv.Config.ReadHeaderTimeout = tc.timeout
			srv.Start()
			defer srv.Close()
			const count, d = 5, 1500 * time.Millisecond
			s, err := Run(context.Background(), Config{Kind: tc.kind, Target: srv.URL, Rate: 200, Count: count, Duration: d, Trickle: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			checkAccounts(t, s)
			t.Log(s)
			if s.Completed != count || s.HeldMax != count {
				t.Errorf("%v: want %d connections opened and held at once", s, count)
			}
			if tc.timeout == 0 {
				if s.ClosedByServer != 0 || s.HeldSeconds < 0.8*count*d.Seconds() {
					t.Errorf("%v: want all held until %v", s, d)
				}
				return
			}
			if s.ClosedByServer != count {
				t.Errorf("%v: want all %d cut by the server", s, count)
			}
			if s.MeanHold < timeout*8/10 || s.MeanHold > timeout*3 {
				t.Errorf("mean hold %v, want about the server's %v", s.MeanHold, timeout)
			}
		})
	}
}

// streamer is a live-stream handler that writes forever and, like the edge,
// cuts a listener whose writes stop going through.
type streamer struct {
	blocked atomic.Int64 // writes that timed out: the client was not reading
	written atomic.Int64 // bytes written to connections that then blocked
	refuse  bool         // answer 403 and close instead
}

func (s *streamer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.refuse {
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusForbidden, "forbidden", "no ticket")
		return
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	tc := conn.(*net.TCPConn)
	tc.SetWriteBuffer(16 << 10) // a bounded send buffer, as the edge keeps
	chunk := make([]byte, 4096)
	n, _ := io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Type: audio/ogg\r\n\r\n")
	total := int64(n)
	for {
		conn.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := conn.Write(chunk)
		total += int64(n)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				s.blocked.Add(1)
				s.written.Add(total)
			}
			tc.SetLinger(0) // reset, so the cut reaches a client that is not reading
			conn.Close()
			return
		}
	}
}

func TestSlowReaderNeverReads(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		refuse bool
		status int
	}{
		{"streamed then cut", false, 200},
		{"refused", true, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := &streamer{refuse: tc.refuse}
			srv := httptest.NewServer(st)
			defer srv.Close()
			const count = 3
			s, err := Run(context.Background(), Config{Kind: SlowReader, Target: srv.URL, SpaceID: "s", Rate: 100, Count: count, Duration: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			checkAccounts(t, s)
			t.Log(s)
			if !tc.refuse {
				if st.blocked.Load() != count {
					t.Errorf("the server's writes blocked on %d of %d connections: the attacker read", st.blocked.Load(), count)
				}
				t.Logf("the server wrote %d bytes per connection before blocking", st.written.Load()/count)
			}
			if s.ClosedByServer != count || s.ByStatus[tc.status] != count {
				t.Errorf("%v: want %d cut by the server after status %d", s, count, tc.status)
			}
		})
	}
}

func TestFloodErrorsAreCountedByCause(t *testing.T) {
	// A port with nothing listening refuses.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + ln.Addr().String()
	ln.Close()

	// A listener that accepts and closes, as a gate refusing at accept does.
	slam, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer slam.Close()
	go func() {
		for {
			c, err := slam.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	// A server that answers something that is not HTTP.
	junk, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer junk.Close()
	go func() {
		for {
			c, err := junk.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "SSH-2.0-OpenSSH_9.6\r\n")
			c.Close()
		}
	}()

	// A server that never answers, for the request timeout.
	silent := httptest.NewServer(http.HandlerFunc(hang))
	defer silent.Close()

	for _, tc := range []struct {
		name   string
		target string
		causes []string // what each failure may be counted as
	}{
		{"refused", closedURL, []string{"refused"}},
		{"closed at accept", "http://" + slam.Addr().String(), []string{"eof", "reset"}},
		{"not http", "http://" + junk.Addr().String(), []string{"malformed"}},
		{"timeout", silent.URL, []string{"timeout"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Run(context.Background(), Config{Kind: JoinFlood, Target: tc.target, Rate: 1000, Count: 10, Timeout: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			checkAccounts(t, s)
			var n int64
			for _, c := range tc.causes {
				n += s.Errors[c]
			}
			if n != 10 {
				t.Errorf("%v: want 10 errors counted as %v", s, tc.causes)
			}
		})
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return len(ents)
}

// TestRunLeaksNothing runs every attack against servers that answer, cut
// and stream, then checks goroutines and file descriptors settle back to
// where they were once the servers are closed. It is not parallel, so the
// counts are this test's alone.
func TestRunLeaksNothing(t *testing.T) {
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	func() {
		mux := http.NewServeMux()
		mux.Handle("/", (&gateMimic{}).handler())
		mux.Handle("GET /stream/{id}/live.opus", &streamer{})
		srv := httptest.NewUnstartedServer(mux)
		srv.Config.ReadHeaderTimeout = 200 * time.Millisecond
		srv.Start()
		defer srv.Close()
		for _, k := range Kinds {
			cfg := Config{Kind: k, Target: srv.URL, Rate: 500, Count: 20, Duration: 400 * time.Millisecond, Trickle: 50 * time.Millisecond}
			if k == SlowReader {
				cfg.Path = "/stream/{id}/live.opus"
			}
			s, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkAccounts(t, s)
			if s.Started != 20 {
				t.Errorf("%v: want 20 started", s)
			}
		}
		// And one stopped from outside mid-way.
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		if _, err := Run(ctx, Config{Kind: SlowReader, Target: srv.URL, Path: "/stream/x/live.opus", Rate: 500, Count: 20}); err != nil {
			t.Fatal(err)
		}
	}()
	// Servers' goroutines and the runtime's may take a moment to go.
	deadline := time.Now().Add(5 * time.Second)
	for {
		f, g := openFDs(t), runtime.NumGoroutine()
		if f <= fds && g <= goroutines {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("fds %d → %d, goroutines %d → %d:\n%s", fds, f, goroutines, g, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStatsStringIsOneLine(t *testing.T) {
	s := Stats{Kind: Slowloris, Started: 10, Completed: 9, ByStatus: map[int]int64{408: 2, 400: 1},
		Errors: map[string]int64{"refused": 1}, HeldMax: 9, HeldSeconds: 4.5, ClosedByServer: 9,
		MeanHold: 500 * time.Millisecond, Elapsed: 2 * time.Second}
	got := s.String()
	for _, want := range []string{"slowloris", "10 started", "400×1, 408×2", "refused×1", "held max 9", "9 cut by server after 500ms"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "\n") {
		t.Errorf("%q has a newline", got)
	}
}

func TestPacerKeepsScheduleAndBoundsBursts(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	for _, tc := range []struct {
		name string
		rate float64
		at   []time.Time // when reserve is called
		want []time.Duration
	}{
		{
			name: "on time",
			rate: 100,
			at:   []time.Time{ms(0), ms(10), ms(20)},
			want: []time.Duration{0, 0, 0},
		},
		{
			name: "early callers wait for their slot",
			rate: 100,
			at:   []time.Time{ms(0), ms(0), ms(0)},
			want: []time.Duration{0, 10 * time.Millisecond, 20 * time.Millisecond},
		},
		{
			name: "timer slack is caught up, not lost",
			rate: 100,
			at:   []time.Time{ms(0), ms(15), ms(15), ms(25)},
			want: []time.Duration{0, 0, 5 * time.Millisecond, 5 * time.Millisecond},
		},
		{
			name: "after a stall at most maxBurst goes out at once",
			rate: 100,
			// 1 s late: the schedule restarts 100 ms back, so 11 starts are
			// due now and the 12th waits.
			at:   repeat(ms(1000), 12),
			want: append(repeat(time.Duration(0), 11), 10*time.Millisecond),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPacer(tc.rate, t0)
			for i, at := range tc.at {
				if got := p.reserve(at); got != tc.want[i] {
					t.Errorf("reserve #%d at %v: %v, want %v", i, at.Sub(t0), got, tc.want[i])
				}
			}
		})
	}
}

func repeat[T any](v T, n int) []T {
	s := make([]T, n)
	for i := range s {
		s[i] = v
	}
	return s
}

func TestPacerSurvivesTinyRates(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := newPacer(1e-30, t0)
	if w := p.reserve(t0); w != 0 {
		t.Errorf("first start waits %v", w)
	}
	if w := p.reserve(t0); w <= 0 {
		t.Errorf("second start waits %v, want a very long time", w)
	}
}
