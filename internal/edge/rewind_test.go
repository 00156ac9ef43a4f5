package edge_test

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/edge"
)

// pastPages is a recording's past in memory: the pages of chunks up to
// next.
type pastPages struct {
	*bytes.Reader
	next uint64
}

func (p *pastPages) Next() uint64          { return p.next }
func (p *pastPages) Behind() time.Duration { return 2 * time.Second }
func (p *pastPages) Close() error          { return nil }

// A rewound stream plays the recorded past, then the ring from the chunk
// after it: every chunk once, in order, with no hole where they meet.
func TestARewoundStreamGoesOnLiveWithoutAHole(t *testing.T) {
	te := startEdge(t, edge.Config{})
	var past bytes.Buffer
	for range 30 { // recorded before the ring had any
		past.Write(te.pack(t, false).Page)
	}
	next := te.seq
	te.past = func() edge.Past { return &pastPages{bytes.NewReader(past.Bytes()), next} }
	te.publish(t, 5, false)

	l := listen(t, te.addr, "?past")
	if got := l.resp.Header.Get("Amphi-Behind"); got != "2.0" {
		t.Errorf("Amphi-Behind: %q, want 2.0", got)
	}
	l.headers(t)
	te.publish(t, 5, true)
	for want := uint64(0); want < 40; want++ {
		if p := l.page(t); chunkSeq(p) != want {
			t.Fatalf("page of chunk %d, want %d", chunkSeq(p), want)
		}
	}
	if r := te.waitEnded(t); r != edge.EndProgram {
		t.Errorf("ended with %q, want %q", r, edge.EndProgram)
	}
}

// A rewinding listener that reads nothing is no reason for Close to hang.
func TestCloseCutsAStalledRewind(t *testing.T) {
	te := startEdge(t, edge.Config{})
	big := bytes.Repeat(te.pack(t, false).Page, 1<<14) // far more than any socket holds
	next := te.seq
	te.past = func() edge.Past { return &pastPages{bytes.NewReader(big), next} }
	te.publish(t, 1, false)

	conn := dialRaw(t, te.addr, 4096)
	sendRequest(t, conn, space+"?past")
	te.waitListeners(t, 1)
	time.Sleep(100 * time.Millisecond) // blocked in a write by now
	closed := make(chan struct{})
	go func() {
		te.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return while a rewind was stalled")
	}
	if r := te.waitEnded(t); r != edge.EndClosed {
		t.Errorf("ended with %q, want %q", r, edge.EndClosed)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.Copy(io.Discard, conn)
}

// Every stream says how far behind the live edge its first audio is: the
// burst asked for, or how far back a resume starts.
func TestAStreamSaysHowFarBehindLiveItStarts(t *testing.T) {
	te := startEdge(t, edge.Config{})
	te.publish(t, 20, false)
	for query, want := range map[string]string{"": "0.5", "?from=12": "0.8", "?from=20": "0.0"} {
		l := listen(t, te.addr, query)
		if got := l.resp.Header.Get("Amphi-Behind"); got != want {
			t.Errorf("GET %q: Amphi-Behind %q, want %q", query, got, want)
		}
		l.conn.Close()
	}
}
