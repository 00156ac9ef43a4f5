package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/program"
)

// testSerial is the Ogg serial number of the test program.
const testSerial = 7

// testProgram returns a program of n chunks of valid 20 ms Opus packets
// (TOC 0xf8: CELT, 20 ms, one frame) and its EOS chunk.
func testProgram(t *testing.T, n int) []*program.Chunk {
	t.Helper()
	p := program.NewPacker(testSerial)
	var chunks []*program.Chunk
	for i := range n * amphi.FramesPerChunk {
		c, err := p.Add([]byte{0xf8, byte(i), byte(i >> 8)})
		if err != nil {
			t.Fatal(err)
		}
		if c != nil {
			chunks = append(chunks, c)
		}
	}
	c, err := p.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return append(chunks, c)
}

// streamRequest is a GET of the stream as the fake edge saw it.
type streamRequest struct {
	host, ticket string
	from         int64 // from_seq; -1 when absent
}

// fakeEdge is an amphi server as issue 12's protocol describes it, for
// one space "s": a join admits at once with a new ticket; a stream
// request is answered with the header pages and the chunks plan says.
type fakeEdge struct {
	chunks []*program.Chunk
	// plan answers the n-th stream request (from 0, over every server of
	// the test): a status and, for a 200, the chunks [first, end) to send.
	// When end is before the EOS chunk the connection is then cut in the
	// middle of the next page.
	plan func(n int, r streamRequest) (status, first, end int)

	mu    sync.Mutex
	reqs  []streamRequest
	joins int
}

// cutAt returns a plan whose first response sends chunks [0, cut) and is
// cut; then answers the others.
func cutAt(cut int, then func(streamRequest) (status, first, end int)) func(int, streamRequest) (int, int, int) {
	return func(n int, r streamRequest) (int, int, int) {
		if n == 0 {
			return http.StatusOK, 0, cut
		}
		return then(r)
	}
}

func (f *fakeEdge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/spaces/s/join":
		f.mu.Lock()
		f.joins++
		ticket := "t" + strconv.Itoa(f.joins)
		f.mu.Unlock()
		json.NewEncoder(w).Encode(JoinAnswer{
			Status: amphi.JoinAdmitted, Listener: "l", Ticket: ticket,
			ListenURL: "http://" + r.Host + "/spaces/s/live.opus?ticket=" + ticket,
		})
	case r.Method == http.MethodGet && r.URL.Path == "/spaces/s/live.opus":
		q := r.URL.Query()
		sr := streamRequest{host: r.Host, ticket: q.Get("ticket"), from: -1}
		if v := q.Get("from_seq"); v != "" {
			sr.from, _ = strconv.ParseInt(v, 10, 64)
		}
		f.mu.Lock()
		n := len(f.reqs)
		f.reqs = append(f.reqs, sr)
		f.mu.Unlock()
		status, first, end := f.plan(n, sr)
		if status != http.StatusOK {
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"error":{"code":"refused","message":"status %d"}}`, status)
			return
		}
		// The edge's response: close-delimited, written straight to the
		// socket.
		conn, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		defer conn.Close()
		bw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: audio/ogg\r\nConnection: close\r\n\r\n")
		bw.Write(program.Headers(testSerial))
		for _, c := range f.chunks[first:end] {
			bw.Write(c.Page)
		}
		if end < len(f.chunks) {
			bw.Write(f.chunks[end].Page[:len(f.chunks[end].Page)/2])
		}
		bw.Flush()
	default:
		http.NotFound(w, r)
	}
}

// listenAt listens to space "s" at a server of f's, for 10 s at most.
func listenAt(t *testing.T, f *fakeEdge, opts ListenOptions) (*ListenStats, error) {
	t.Helper()
	srv := httptest.NewServer(f)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return New(srv.URL).Listen(ctx, "s", opts)
}

func (f *fakeEdge) requests() []streamRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]streamRequest(nil), f.reqs...)
}

func TestListenResumesWhereTheBrokenStreamStopped(t *testing.T) {
	const chunks = 10
	all := testProgram(t, chunks)
	var file bytes.Buffer // the whole program as one file
	file.Write(program.Headers(testSerial))
	for _, c := range all {
		file.Write(c.Page)
	}
	for _, tc := range []struct {
		name string
		// resumeAt is the first chunk the resumed response sends, where
		// from_seq asks for chunk 4.
		resumeAt int
		holes    int
		packets  int64
	}{
		{"from the chunk asked for", 4, 0, chunks * amphi.FramesPerChunk},
		{"from a later chunk", 5, 1, (chunks - 1) * amphi.FramesPerChunk},
		{"from earlier chunks, which are dropped", 1, 0, chunks * amphi.FramesPerChunk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeEdge{chunks: all, plan: cutAt(4, func(r streamRequest) (int, int, int) {
				return http.StatusOK, tc.resumeAt, len(all)
			})}
			var out bytes.Buffer
			st, err := listenAt(t, f, ListenOptions{Out: &out})
			if err != nil {
				t.Fatal(err)
			}
			reqs := f.requests()
			if len(reqs) != 2 || reqs[0].from != -1 || reqs[1].from != 4 || reqs[1].ticket != "t1" {
				t.Errorf("stream requests %+v, want a first one and a resume from_seq=4 with the same ticket", reqs)
			}
			if st.Resumes != 1 || st.Holes != tc.holes || !st.Ended || st.Packets != tc.packets {
				t.Errorf("stats %+v, want 1 resume, %d holes, %d packets and the end", st, tc.holes, tc.packets)
			}
			if st.LongestResume <= 0 || st.LongestResume > 5*time.Second {
				t.Errorf("longest resume %v", st.LongestResume)
			}
			if tc.holes == 0 && !bytes.Equal(out.Bytes(), file.Bytes()) {
				t.Errorf("Out holds %d bytes, want the program's %d: the headers once and each chunk once", out.Len(), file.Len())
			}
		})
	}
}

func TestListenJoinsAgainWhenTheResumedTicketIsRefused(t *testing.T) {
	all := testProgram(t, 6)
	f := &fakeEdge{chunks: all, plan: cutAt(3, func(r streamRequest) (int, int, int) {
		if r.ticket == "t1" {
			return http.StatusUnauthorized, 0, 0
		}
		return http.StatusOK, int(r.from), len(all)
	})}
	st, err := listenAt(t, f, ListenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reqs := f.requests()
	if len(reqs) != 3 || reqs[2].ticket != "t2" || reqs[2].from != 3 {
		t.Errorf("stream requests %+v, want the refused resume, then the new ticket's from chunk 3", reqs)
	}
	if st.Resumes != 1 || st.Holes != 0 || !st.Ended {
		t.Errorf("stats %+v, want 1 resume, no hole, the end", st)
	}
}

func TestListenResumesAtTheNextServer(t *testing.T) {
	all := testProgram(t, 6)
	f := &fakeEdge{chunks: all, plan: cutAt(2, func(r streamRequest) (int, int, int) {
		return http.StatusOK, int(r.from), len(all)
	})}
	a, b := httptest.NewServer(f), httptest.NewServer(f)
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := New(a.URL).Listen(ctx, "s", ListenOptions{Servers: []string{a.URL, b.URL + "/"}})
	if err != nil {
		t.Fatal(err)
	}
	reqs := f.requests()
	if len(reqs) != 2 || reqs[0].host != a.Listener.Addr().String() || reqs[1].host != b.Listener.Addr().String() || reqs[1].from != 2 {
		t.Errorf("stream requests %+v, want the first at %s and the resume at %s", reqs, a.URL, b.URL)
	}
	if st.Resumes != 1 || st.Holes != 0 || !st.Ended {
		t.Errorf("stats %+v, want 1 resume, no hole, the end", st)
	}
}

func TestListenGivesUpAfterResumeFor(t *testing.T) {
	all := testProgram(t, 4)
	f := &fakeEdge{chunks: all, plan: cutAt(2, func(r streamRequest) (int, int, int) {
		return http.StatusServiceUnavailable, 0, 0
	})}
	st, err := listenAt(t, f, ListenOptions{ResumeFor: 700 * time.Millisecond})
	if err == nil || st.Resumes != 0 || st.Ended {
		t.Fatalf("stats %+v, error %v: want no resume and an error", st, err)
	}
	// The first request, then tries at once, at 250 and at 500 ms, which
	// leaves too little time for another.
	if n := len(f.requests()); n != 4 {
		t.Errorf("%d stream requests, want the first and a try every 250 ms for 600 ms", n)
	}
}

func TestListenNeverResumesWhenAskedNotTo(t *testing.T) {
	all := testProgram(t, 4)
	f := &fakeEdge{chunks: all, plan: func(n int, r streamRequest) (int, int, int) { return http.StatusOK, 0, 2 }}
	st, err := listenAt(t, f, ListenOptions{ResumeFor: -1})
	if err == nil || st.Resumes != 0 || len(f.requests()) != 1 || st.Packets != 2*amphi.FramesPerChunk {
		t.Errorf("stats %+v, error %v after %d requests: want the cut (mid-page) as an error and no resume", st, err, len(f.requests()))
	}
}
