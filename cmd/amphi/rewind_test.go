package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/tone"
)

// ear keeps the packets a listener receives, in order.
type ear struct {
	mu   sync.Mutex
	pkts [][]byte
}

func (e *ear) add(pkt []byte, _ int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pkts = append(e.pkts, append([]byte(nil), pkt...))
}

// tones decodes what e received and names the tone of each 100 ms block
// ("440", "880" or "" for neither).
func (e *ear) tones(t *testing.T) []string {
	e.mu.Lock()
	pcm := decode(t, e.pkts)
	e.mu.Unlock()
	var out []string
	for i := 0; i+4800 <= len(pcm); i += 4800 {
		b := pcm[i : i+4800]
		switch {
		case tone.Present(b, amphi.SampleRate, 440, 880):
			out = append(out, "440")
		case tone.Present(b, amphi.SampleRate, 880, 440):
			out = append(out, "880")
		default:
			out = append(out, "")
		}
	}
	return out
}

// first returns the first tone heard and the block where the other was
// first heard after it (-1 if never).
func first(blocks []string) (tone string, other int) {
	other = -1
	for i, b := range blocks {
		switch {
		case b == "":
		case tone == "":
			tone = b
		case b != tone && other < 0:
			other = i
		}
	}
	return tone, other
}

// TestFromStartWhileLiveHearsTheFirstToneFirst rewinds a live space: a
// speaker played 440 Hz, then 880 Hz, which is what is live when the
// listeners come. One asking from=start hears 440 Hz first, then 880 Hz,
// and goes on live; one asking from=-1s hears 880 Hz at once.
func TestFromStartWhileLiveHearsTheFirstToneFirst(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	m := MustRunMain(t, t.TempDir())
	defer m.Close()
	c := client.New(m.URL())
	sp := newSpace(t, ctx, c, "Rewind")
	s := playTone(t, ctx, c, sp, 440, 200*time.Millisecond, 2200*time.Millisecond, 2200*time.Millisecond)
	stop := s.playUntilStopped(t, ctx, 880)
	defer stop()
	time.Sleep(3 * time.Second) // 880 Hz is live, 440 Hz long gone from the burst

	// The server says how far behind live a rewound stream starts.
	adm, err := c.Join(ctx, sp.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(adm.ListenURL + "&from=start")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if behind, err := strconv.ParseFloat(resp.Header.Get("Amphi-Behind"), 64); err != nil || behind < 4 {
		t.Errorf("from=start: Amphi-Behind %q, want at least the 5 s the space has been on", resp.Header.Get("Amphi-Behind"))
	}
	if resp, err := http.Get(adm.ListenURL + "&from=yesterday"); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("from=yesterday: %d, want 400", resp.StatusCode)
	}

	listen := func(from string, e *ear) *client.ListenStats {
		lctx, lcancel := context.WithTimeout(ctx, 4*time.Second)
		defer lcancel()
		st, err := c.Listen(lctx, sp.ID, client.ListenOptions{From: from, OnPacket: e.add, ResumeFor: -1})
		if err != nil {
			t.Errorf("listen from %s: %v", from, err)
		}
		return st
	}
	var fromStart, fromLast ear
	var st *client.ListenStats
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); st = listen("start", &fromStart) }()
	go func() { defer wg.Done(); listen("-1s", &fromLast) }()
	wg.Wait()

	blocks := fromStart.tones(t)
	if heard, then := first(blocks); heard != "440" || then < 0 {
		t.Errorf("from=start heard %q first and the other tone at block %d, want 440 Hz then 880 Hz: %q", heard, then, blocks)
	}
	// The past came at once and the stream went on live: it holds more
	// than the program had when it began (over 5 s), plus what followed.
	if st != nil && (st.Audio < 7*time.Second || st.Holes > 0) {
		t.Errorf("from=start received %v of audio in 4 s with %d holes, want the 5 s past and the live audio after it, with no hole where they meet", st.Audio, st.Holes)
	}
	if heard, _ := first(fromLast.tones(t)); heard != "880" {
		t.Errorf("from=-1s heard %q first, want 880 Hz", heard)
	}
}

// TestAnEdgeRewindsToTheStartFromTheOriginsRecording: an edge keeps only
// the last few seconds (a 3.2 s ring here), yet its listener asking
// from=start hears the space from its beginning, read from the origin's
// recording over the bus, then goes on live with no hole.
func TestAnEdgeRewindsToTheStartFromTheOriginsRecording(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	originDir := t.TempDir()
	origin := MustRunMainWith(t, originDir, func(m *Main) { m.Config.Role = RoleOrigin })
	defer origin.Close()
	edge := MustRunMainWith(t, t.TempDir(), func(m *Main) {
		m.Config.Role = RoleEdge
		m.Config.Bus.URL = origin.BusURL()
		m.Config.GateKeyFile = filepath.Join(originDir, "gate.key")
		m.Config.Edge.RingChunks = 32
	})
	defer edge.Close()
	sp := createSpace(t, ctx, origin.URL())
	knownAt(t, []*Main{edge}, sp.ID)
	s := playTone(t, ctx, client.New(origin.URL()), sp, 440, 200*time.Millisecond, 2200*time.Millisecond, 2200*time.Millisecond)
	stop := s.playUntilStopped(t, ctx, 880)
	defer stop()
	time.Sleep(4 * time.Second) // 440 Hz has left the edge's ring

	var e ear
	lctx, lcancel := context.WithTimeout(ctx, 4*time.Second)
	defer lcancel()
	st, err := client.New(edge.URL()).Listen(lctx, sp.ID, client.ListenOptions{From: "start", OnPacket: e.add, ResumeFor: -1})
	if err != nil {
		t.Fatal(err)
	}
	blocks := e.tones(t)
	if heard, then := first(blocks); heard != "440" || then < 0 {
		t.Errorf("from=start at the edge heard %q first and the other tone at block %d, want 440 Hz then 880 Hz: %q", heard, then, blocks)
	}
	if st.Audio < 8*time.Second || st.Holes > 0 {
		t.Errorf("received %v of audio in 4 s with %d holes, want the 6 s past and the live audio after it, with no hole", st.Audio, st.Holes)
	}
}

// TestRewindsGiveBackTheirPlaceInThePast: with room for one listener in
// the recorded past (MaxRewinds 1) and a ring of 3.2 s, listeners who
// rewind one after another each get the whole past: a rewind that joined
// the live edge gives its place back.
func TestRewindsGiveBackTheirPlaceInThePast(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m := MustRunMainWith(t, t.TempDir(), func(m *Main) {
		m.Config.Edge.RingChunks = 32
		m.Config.API.MaxRewinds = 1
	})
	defer m.Close()
	c := client.New(m.URL())
	sp := newSpace(t, ctx, c, "One at a time")
	s := dialSpeaker(t, ctx, c, sp.ID, sp.SpeakerToken)
	defer s.playUntilStopped(t, ctx, 440)()
	time.Sleep(5 * time.Second)
	for i := range 3 {
		adm, err := c.Join(ctx, sp.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, adm.ListenURL+"&from=start", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body) // the past, then live until the second is up
		resp.Body.Close()
		rcancel()
		if behind, _ := strconv.ParseFloat(resp.Header.Get("Amphi-Behind"), 64); behind < 4 {
			t.Errorf("rewind %d started %q s behind, want the whole past (over 4 s), more than the ring's 3.2 s", i+1, resp.Header.Get("Amphi-Behind"))
		}
	}
}
