package hls

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/ogg"
	"github.com/amphi-audio/amphi/internal/program"
)

// livePages is a tone's program as pages of packets, at 32 kbit/s, to feed
// again and again under new granules; and the Opus bytes per second.
func livePages(b *testing.B) (pages [][][]byte, opusRate float64) {
	var bytes int
	for _, c := range toneProgram(b, 10) {
		pkts, err := ogg.AppendPackets(nil, c.Page)
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range pkts {
			bytes += len(p)
		}
		pages = append(pages, pkts)
	}
	return pages, float64(bytes) / 10
}

// program30s is a Segmenter already 30 s into a program, as in steady
// state, and a function adding the next part's two pages.
func program30s(b *testing.B) (seg *Segmenter, nextPart func(), opusRate float64) {
	pages, opusRate := livePages(b)
	cfg := DefaultConfig()
	cfg.PreSkip = program.PreSkip
	seg, err := NewSegmenter(cfg)
	if err != nil {
		b.Fatal(err)
	}
	var granule int64
	i := 0
	add := func() {
		granule += amphi.ChunkSamples
		if err := seg.Add(granule, pages[i%len(pages)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	for range 30 * time.Second / amphi.ChunkDuration {
		add()
	}
	return seg, func() {
		for range partSamples / amphi.ChunkSamples {
			add()
		}
	}, opusRate
}

// BenchmarkPartBuilt measures what one 200 ms part costs the node, once
// for all its listeners: the fragment, a segment every tenth part, the
// playlist rendered and gzipped.
func BenchmarkPartBuilt(b *testing.B) {
	_, nextPart, _ := program30s(b)
	b.ReportAllocs()
	for b.Loop() {
		nextPart()
	}
}

// countingListener counts the bytes the server writes to its connections.
type countingListener struct {
	net.Listener
	written *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	return countingConn{c, l.written}, err
}

type countingConn struct {
	net.Conn
	written *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

// BenchmarkListenerWire measures the bytes one listener costs on the
// wire, headers included, over HTTP/1.1 on loopback, gzip accepted as
// browsers do. A low-latency player (hls.js, AVPlayer) makes one blocking
// playlist reload and fetches one part per part (an op: 200 ms); a plain
// one (ffmpeg, players without LL-HLS) reloads the playlist and fetches
// one segment per segment (an op: 2 s).
func BenchmarkListenerWire(b *testing.B) {
	b.Run("parts", func(b *testing.B) {
		benchmarkWire(b, 1, func(snap *snapshot) (playlist, media string) {
			g := snap.segments[len(snap.segments)-1]
			msn, part := strconv.FormatUint(g.msn, 10), strconv.Itoa(len(g.parts)-1)
			return PlaylistName + "?_HLS_msn=" + msn + "&_HLS_part=" + part, msn + "." + part + segmentSuffix
		})
	})
	b.Run("segments", func(b *testing.B) {
		benchmarkWire(b, partsPerSegment, func(snap *snapshot) (playlist, media string) {
			g := snap.segments[len(snap.segments)-1]
			return PlaylistName, strconv.FormatUint(g.msn, 10) + segmentSuffix
		})
	})
}

// benchmarkWire adds parts per op and then fetches the playlist and the
// media that next names in the new snapshot.
func benchmarkWire(b *testing.B, parts int, next func(*snapshot) (playlist, media string)) {
	seg, nextPart, opusRate := program30s(b)
	h := &Handler{Prefix: "/hls/", Lookup: func(string) *Segmenter { return seg }}
	var written atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = countingListener{srv.Listener, &written}
	srv.Start()
	defer srv.Close()
	// The client counts bodies as they come: gzipped.
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	fetch := func(path string) int {
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/hls/x/"+path, nil)
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Accept-Encoding", "gzip")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("%s: status %d", path, resp.StatusCode)
		}
		return int(n)
	}
	var playlistBytes, mediaBytes int
	written.Store(0)
	for b.Loop() {
		for range parts {
			nextPart()
		}
		playlist, media := next(seg.state.Load())
		playlistBytes += fetch(playlist)
		mediaBytes += fetch(media)
	}
	seconds := float64(b.N*parts) * partSamples / amphi.SampleRate
	wire := float64(written.Load()) / seconds
	b.ReportMetric(wire, "wire-B/s")
	b.ReportMetric(float64(playlistBytes)/seconds, "playlist-B/s")
	b.ReportMetric(float64(mediaBytes)/seconds, "media-B/s")
	b.ReportMetric(opusRate, "opus-B/s")
	b.ReportMetric(wire/opusRate, "x-opus")
	b.ReportMetric(float64(mediaBytes)/seconds/opusRate, "media-x-opus")
}
