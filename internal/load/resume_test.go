package load

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// edgePages returns the pages of a program of n chunks, as scan_test's
// programStream has them: two header pages, the chunks, the EOS chunk.
func edgePages(t *testing.T, n int) [][]byte {
	t.Helper()
	var pages [][]byte
	for b := programStream(t, n); len(b) > 0; {
		n := pageLen(b)
		pages, b = append(pages, b[:n]), b[n:]
	}
	return pages
}

// liveRequest is a stream request as the edges saw it.
type liveRequest struct {
	ticket string
	from   int // from_seq; -1 when absent
}

// edgeAnswer is how an edge answers a stream request: a status, the edge's
// name (X-Amphi-Edge) and, for a 200, the chunks [first, end) it sends;
// before the EOS chunk, it then cuts the connection in the middle of a
// page, as a dying process does.
type edgeAnswer struct {
	status     int
	name       string
	first, end int
}

// edges are edge processes behind one address, as with SO_REUSEPORT, for
// space "abc": a join admits at once with a ticket of its own; answer says
// how each stream request is answered.
type edges struct {
	pages  [][]byte // the program's, header pages first
	answer func(liveRequest) edgeAnswer

	mu    sync.Mutex
	reqs  []liveRequest
	joins int
}

func (s *edges) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method + " " + r.URL.Path {
	case "POST /spaces/abc/join":
		s.mu.Lock()
		s.joins++
		ticket := "t" + strconv.Itoa(s.joins)
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":"admitted","ticket":%q}`, ticket)
	case "GET /spaces/abc/live.opus":
		q := r.URL.Query()
		req := liveRequest{ticket: q.Get("ticket"), from: -1}
		if v := q.Get("from_seq"); v != "" {
			req.from, _ = strconv.Atoi(v)
		}
		s.mu.Lock()
		s.reqs = append(s.reqs, req)
		s.mu.Unlock()
		a := s.answer(req)
		if a.status != http.StatusOK {
			http.Error(w, `{"error":{"code":"refused"}}`, a.status)
			return
		}
		conn, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		defer conn.Close()
		fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Type: audio/ogg\r\nConnection: close\r\nX-Amphi-Edge: %s\r\n\r\n", a.name)
		chunks := s.pages[headerPages:]
		for _, p := range append(s.pages[:headerPages:headerPages], chunks[a.first:a.end]...) {
			bw.Write(p)
		}
		if a.end < len(chunks) {
			bw.Write(chunks[a.end][:20])
		}
		bw.Flush()
	default:
		http.NotFound(w, r)
	}
}

func (s *edges) requests() []liveRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]liveRequest(nil), s.reqs...)
}

// runEdges runs a share of listeners against s, each of whose streams ends
// with the program, well before the run would.
func runEdges(t *testing.T, s *edges, listeners int, edit func(*Scenario)) *Report {
	t.Helper()
	ts := httptest.NewServer(s)
	defer ts.Close()
	sc := DefaultScenario()
	sc.Server, sc.SpaceID, sc.Listeners, sc.Duration = ts.URL, "abc", listeners, Duration(20*time.Second)
	if edit != nil {
		edit(&sc)
	}
	rep, err := RunShare(context.Background(), Share{Scenario: sc, Workers: 1, Start: time.Now()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(rep.Duration) > 10*time.Second {
		t.Errorf("the run lasted %v: the listeners did not end with the program", rep.Duration)
	}
	return rep
}

func TestListenersResumeOntoAnotherEdgeWithoutAHole(t *testing.T) {
	const listeners, cut = 3, 4
	all := edgePages(t, 10)
	for _, tc := range []struct {
		name string
		// skip is how far from from_seq the resumed response starts.
		skip          int
		holes, missed int64
	}{
		{"from the chunk asked for", 0, 0, 0},
		{"from chunks already received, dropped", -3, 0, 0},
		{"past a chunk", 1, listeners, listeners},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &edges{pages: all, answer: func(r liveRequest) edgeAnswer {
				if r.from < 0 {
					return edgeAnswer{http.StatusOK, "edge-a", 0, cut}
				}
				return edgeAnswer{http.StatusOK, "edge-b", r.from + tc.skip, len(all) - headerPages}
			}}
			rep := runEdges(t, s, listeners, nil)
			for _, r := range s.requests() {
				if r.from != -1 && r.from != cut {
					t.Errorf("resumed from_seq=%d, want %d: the chunk after the last whole one", r.from, cut)
				}
			}
			if rep.Resumes != listeners || rep.ResumesFailed != 0 || rep.Holes != tc.holes || rep.MissedChunks != tc.missed {
				t.Errorf("%d resumes, %d failed, %d holes, %d missed; want %d, 0, %d, %d", rep.Resumes, rep.ResumesFailed, rep.Holes, rep.MissedChunks, listeners, tc.holes, tc.missed)
			}
			if l := rep.Listeners; l.OK != listeners || rep.Disconnects[causeEOS] != listeners || rep.Stalls != 0 {
				t.Errorf("listeners %+v, ended by %v, %d stalls: want all ok to the program's end", l, rep.Disconnects, rep.Stalls)
			}
			if rep.ResumeHistogram.N != listeners || rep.ResumeTime.Max <= 0 || time.Duration(rep.ResumeTime.Max) > 5*time.Second {
				t.Errorf("resume time %+v of %d", rep.ResumeTime, rep.ResumeHistogram.N)
			}
			want := map[string]EdgeCounts{"edge-a": {Started: listeners, Lost: listeners}, "edge-b": {Resumed: listeners}}
			if fmt.Sprint(rep.Edges) != fmt.Sprint(want) {
				t.Errorf("edges %+v, want %+v", rep.Edges, want)
			}
			var text strings.Builder
			if err := rep.WriteText(&text); err != nil || !strings.Contains(text.String(), "edge-b") || !strings.Contains(text.String(), "resumes    3") {
				t.Errorf("text report (%v):\n%s", err, text.String())
			}
		})
	}
}

func TestListenersJoinAgainWhenTheResumedTicketIsRefused(t *testing.T) {
	all := edgePages(t, 6)
	s := &edges{pages: all, answer: func(r liveRequest) edgeAnswer {
		switch {
		case r.from < 0:
			return edgeAnswer{http.StatusOK, "", 0, 3}
		case r.ticket == "t1":
			return edgeAnswer{status: http.StatusUnauthorized}
		}
		return edgeAnswer{http.StatusOK, "", r.from, len(all) - headerPages}
	}}
	rep := runEdges(t, s, 1, nil)
	reqs := s.requests()
	if len(reqs) != 3 || reqs[2] != (liveRequest{"t2", 3}) {
		t.Errorf("stream requests %+v, want the refused resume, then the new ticket's from chunk 3", reqs)
	}
	if rep.Resumes != 1 || rep.Holes != 0 || rep.Listeners.OK != 1 || len(rep.Edges) != 1 {
		t.Errorf("%d resumes, %d holes, listeners %+v, edges %v: want one resume without a hole on the one unnamed edge", rep.Resumes, rep.Holes, rep.Listeners, rep.Edges)
	}
}

func TestListenersGiveUpResumingAfterScenarioResume(t *testing.T) {
	all := edgePages(t, 6)
	for _, tc := range []struct {
		name     string
		resume   time.Duration
		requests int
		failed   int64
	}{
		// The first request, then tries at once and at 250 ms, which
		// leaves too little time for another.
		{"for 400ms", 400 * time.Millisecond, 3, 1},
		{"never", -1, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &edges{pages: all, answer: func(r liveRequest) edgeAnswer {
				if r.from < 0 {
					return edgeAnswer{http.StatusOK, "", 0, 3}
				}
				return edgeAnswer{status: http.StatusServiceUnavailable}
			}}
			rep := runEdges(t, s, 1, func(sc *Scenario) { sc.Resume = Duration(tc.resume) })
			if n := len(s.requests()); n != tc.requests {
				t.Errorf("%d stream requests, want %d", n, tc.requests)
			}
			if rep.Resumes != 0 || rep.ResumesFailed != tc.failed || rep.Listeners.Cut != 1 || rep.Disconnects[causeEOF] != 1 {
				t.Errorf("%d resumes, %d failed, listeners %+v, ended by %v: want the listener cut by the first edge's end", rep.Resumes, rep.ResumesFailed, rep.Listeners, rep.Disconnects)
			}
		})
	}
}

func TestAStallAcrossAResumeIsChargedToTheEdgeThatStopped(t *testing.T) {
	all := edgePages(t, 30)
	var mu sync.Mutex
	var cutAt time.Time
	s := &edges{pages: all, answer: func(r liveRequest) edgeAnswer {
		mu.Lock()
		defer mu.Unlock()
		if r.from < 0 {
			cutAt = time.Now()
			return edgeAnswer{http.StatusOK, "edge-a", 0, 4}
		}
		// No edge takes the stream for 2 s: the player, which played the
		// 400 ms it had, runs dry for more than StallAfter.
		if time.Since(cutAt) < 2*time.Second {
			return edgeAnswer{status: http.StatusServiceUnavailable}
		}
		return edgeAnswer{http.StatusOK, "edge-b", r.from, len(all) - headerPages}
	}}
	rep := runEdges(t, s, 1, func(sc *Scenario) { sc.PlayerBuffer = Duration(100 * time.Millisecond) })
	if rep.Resumes != 1 || rep.Holes != 0 || time.Duration(rep.ResumeTime.Max) < 2*time.Second {
		t.Errorf("%d resumes in %v, %d holes: want one of over 2s without a hole", rep.Resumes, rep.ResumeTime.Max, rep.Holes)
	}
	want := map[string]EdgeCounts{"edge-a": {Started: 1, Lost: 1, Stalls: 1}, "edge-b": {Resumed: 1}}
	if rep.Stalls != 1 || rep.Listeners.Stalled != 1 || fmt.Sprint(rep.Edges) != fmt.Sprint(want) {
		t.Errorf("%d stalls, listeners %+v, edges %+v; want the one stall on edge-a: %+v", rep.Stalls, rep.Listeners, rep.Edges, want)
	}
}

func TestMergedReportsAddResumesAndEdges(t *testing.T) {
	ms := time.Millisecond
	mk := func(resumes []time.Duration, failed, holes int64, edges map[string]EdgeCounts) *Report {
		r := &Report{ResumesFailed: failed, Holes: holes, MissedChunks: 2 * holes}
		for _, d := range resumes {
			r.Resumes++
			r.ResumeHistogram.Add(d)
		}
		for name, c := range edges {
			r.addEdge(name, c)
		}
		return viaJSON(t, r)
	}
	var all Report
	for _, r := range []*Report{
		mk([]time.Duration{300 * ms, 400 * ms}, 1, 1, map[string]EdgeCounts{"a": {Started: 2, Lost: 2, Stalls: 1}, "": {Started: 1}}),
		{},
		mk([]time.Duration{2 * time.Second}, 0, 2, map[string]EdgeCounts{"a": {Resumed: 1}, "b": {Started: 1, Resumed: 2}}),
	} {
		all.Merge(r)
	}
	if all.Resumes != 3 || all.ResumesFailed != 1 || all.Holes != 3 || all.MissedChunks != 6 || all.ResumeHistogram.N != 3 || time.Duration(all.ResumeTime.Max) != 2*time.Second {
		t.Errorf("merged resumes %d (%d failed) in %+v, holes %d (%d chunks)", all.Resumes, all.ResumesFailed, all.ResumeTime, all.Holes, all.MissedChunks)
	}
	want := map[string]EdgeCounts{"": {Started: 1}, "a": {Started: 2, Resumed: 1, Lost: 2, Stalls: 1}, "b": {Started: 1, Resumed: 2}}
	if fmt.Sprint(all.Edges) != fmt.Sprint(want) {
		t.Errorf("merged edges %+v, want %+v", all.Edges, want)
	}
	var text strings.Builder
	if err := all.WriteText(&text); err != nil || !strings.Contains(text.String(), "(unnamed)") || !strings.Contains(text.String(), "3 holes, 6 chunks never received") {
		t.Errorf("text report (%v):\n%s", err, text.String())
	}
}
