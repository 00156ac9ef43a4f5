package stage

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// discardSource is a mixer source that keeps nothing.
type discardSource struct{}

func (discardSource) Push(uint16, uint32, []byte) {}
func (discardSource) Close()                      {}

// BenchmarkDeliver measures one speaker's packet on its way to the mixer and
// to a full stage's 12 other speakers (slot tracks with no connection bound,
// so the SRTP and socket write are left out), muted and not: muting must add
// nothing but an atomic load, and neither path may allocate.
func BenchmarkDeliver(b *testing.B) {
	for _, muted := range []bool{false, true} {
		b.Run(fmt.Sprintf("muted=%v", muted), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.AddSource = func(string) (Source, error) { return discardSource{}, nil }
			cfg.Logger = slog.New(slog.DiscardHandler)
			st, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			sp := &speaker{id: "alice", source: discardSource{}}
			var routes []*outSlot
			for i := range 12 {
				track, err := webrtc.NewTrackLocalStaticRTP(opusCodec.RTPCodecCapability, fmt.Sprint("slot", i), "bench")
				if err != nil {
					b.Fatal(err)
				}
				o := &outSlot{index: i, track: track}
				o.assign(sp)
				routes = append(routes, o)
			}
			sp.routes.Store(&routes)
			sp.muted.Store(muted)
			pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: 1}, Payload: make([]byte, 80)}
			var line mixLine
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				pkt.SequenceNumber = uint16(i)
				pkt.Timestamp = uint32(i) * frameTicks
				st.deliver(sp, &line, &pkt)
			}
		})
	}
}
