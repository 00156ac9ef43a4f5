package edge_test

import (
	"bufio"
	"bytes"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/edge"
	"github.com/amphi-audio/amphi/internal/program"
)

// TestManyListenersGetEveryChunk streams a 3 s program to 2000 listeners on
// loopback, all written by the edge's few shard goroutines: each must
// receive exactly the header pages and every chunk, then the end.
func TestManyListenersGetEveryChunk(t *testing.T) {
	if testing.Short() {
		t.Skip("3 s of real-time program")
	}
	const listeners, chunks = 2000, 30
	te := startEdge(t, edge.Config{})
	var want bytes.Buffer
	want.Write(program.Headers(serial))
	publish := func(end bool) {
		var c *program.Chunk
		var err error
		if end {
			c, err = te.packer.Finish()
		}
		for c == nil && err == nil {
			c, err = te.packer.Add(te.frame)
		}
		if err != nil {
			t.Fatal(err)
		}
		want.Write(c.Page)
		te.Publish(space, c)
	}
	publish(false) // creates the ring; every listener's burst starts here

	type result struct {
		n   int64
		sum uint32
		err error
	}
	results := make(chan result, listeners)
	var wg sync.WaitGroup
	for range listeners {
		conn, err := net.DialTimeout("tcp", te.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		sendRequest(t, conn, space)
		wg.Go(func() {
			conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				results <- result{err: err}
				return
			}
			h := crc32.NewIEEE()
			n, err := io.Copy(h, resp.Body)
			results <- result{n: n, sum: h.Sum32(), err: err}
		})
	}
	te.waitListeners(t, listeners)

	tick := time.NewTicker(amphi.ChunkDuration)
	defer tick.Stop()
	for i := 1; i < chunks; i++ {
		<-tick.C
		publish(i == chunks-1)
	}
	wg.Wait()
	close(results)
	wantSum := crc32.ChecksumIEEE(want.Bytes())
	bad := 0
	for r := range results {
		if r.err != nil || r.n != int64(want.Len()) || r.sum != wantSum {
			if bad++; bad <= 3 {
				t.Errorf("listener got %d bytes (crc %08x), want %d (%08x): %v", r.n, r.sum, want.Len(), wantSum, r.err)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d listeners did not get the whole program", bad, listeners)
	}
	te.waitListeners(t, 0)
	if s := te.Stats(); s.Ended[edge.EndProgram] != listeners || s.Served != listeners {
		t.Errorf("stats %+v", s)
	}
}
