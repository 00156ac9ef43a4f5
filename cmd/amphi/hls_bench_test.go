package main

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/ogg"
)

// wire counts the bytes a client's connections carry: down, from the
// server (responses), and up (requests).
type wire struct{ down, up atomic.Int64 }

func (w *wire) reset() { w.down.Store(0); w.up.Store(0) }

type countingConn struct {
	net.Conn
	w *wire
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.w.down.Add(int64(n))
	return n, err
}

func (c countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.w.up.Add(int64(n))
	return n, err
}

// countingClient is an HTTP client whose connections count their bytes
// in w.
func countingClient(w *wire) *http.Client {
	var d net.Dialer
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{c, w}, nil
	}}}
}

// BenchmarkHLSListenerWire measures, through amphi serve on loopback while
// a speaker speaks (a 440 Hz tone, the mixer at its 32 kbit/s), the bytes
// one low-latency HLS listener costs on the wire, each way, headers
// included (a blocking playlist reload, gzipped, and the part, per part),
// against a live.opus listener of the same program (?flush=200ms, the same
// cadence) and the program's Opus bytes. An op is one part, 200 ms of
// real time: run with
//
//	go test -run '^$' -bench HLSListenerWire -benchtime 50x ./cmd/amphi/
//
// The segmenter's CPU per part is internal/hls's BenchmarkPartBuilt.
func BenchmarkHLSListenerWire(b *testing.B) {
	m := MustRunMain(b, b.TempDir())
	defer m.Close()
	measureHLSWire(b, m, m.URL(), countingClient)
}

// measureHLSWire is BenchmarkHLSListenerWire with the HLS listener
// joining and playing at base (amphi, or a proxy in front of it) through
// the clients hc makes, which count their bytes in the wire they are
// given; the Ogg listener reads from amphi itself.
func measureHLSWire(b *testing.B, m *Main, base string, hc func(*wire) *http.Client) {
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	sp := createSpace(b, ctx, m.URL())
	c := client.New(m.URL())
	spk := dialSpeaker(b, ctx, c, sp.ID, sp.SpeakerToken)
	go spk.play(ctx, 440, 0, time.Hour, time.Hour)
	var hlsWire, oggWire wire
	// Two listeners, two tickets: a ticket's newest use ends its others.
	hlsClient := client.New(base)
	hlsClient.HTTP = hc(new(wire)) // the join is not counted
	hlsAdm, err := hlsClient.Join(ctx, sp.ID, nil)
	if err != nil {
		b.Fatal(err)
	}
	oggAdm, err := c.Join(ctx, sp.ID, nil)
	if err != nil {
		b.Fatal(err)
	}
	var opus atomic.Int64
	resp, err := countingClient(&oggWire).Get(oggAdm.ListenURL + "&flush=200ms")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	go func() {
		rd := ogg.NewReader(resp.Body)
		for {
			pkt, _, err := rd.ReadPacket()
			if err != nil {
				return
			}
			opus.Add(int64(len(pkt)))
		}
	}()
	time.Sleep(time.Second) // past the Ogg listener's burst
	var start time.Time
	parts := 0
	err = followHLS(b, ctx, hc(&hlsWire), hlsAdm.HLSURL, func(string, []byte) bool {
		if start.IsZero() { // the first part, once the player has started
			b.ResetTimer()
			start = time.Now()
			hlsWire.reset()
			oggWire.reset()
			opus.Store(0)
		}
		parts++
		return parts <= b.N
	})
	if err != nil {
		b.Fatal(err)
	}
	seconds := time.Since(start).Seconds()
	opusRate := float64(opus.Load()) / seconds
	hlsDown, oggDown := float64(hlsWire.down.Load())/seconds, float64(oggWire.down.Load())/seconds
	b.ReportMetric(hlsDown, "hls-down-B/s")
	b.ReportMetric(float64(hlsWire.up.Load())/seconds, "hls-up-B/s")
	b.ReportMetric(oggDown, "ogg-down-B/s")
	b.ReportMetric(opusRate, "opus-B/s")
	b.ReportMetric(hlsDown/opusRate, "hls-x-opus")
	b.ReportMetric(oggDown/opusRate, "ogg-x-opus")
}
