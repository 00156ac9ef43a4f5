package mix

import (
	"fmt"
	"testing"

	"github.com/amphi-audio/amphi"
)

// recorded is a speaker's prepared packets, replayed with RTP numbering that
// keeps counting so the jitter buffer sees one endless talk spurt.
type recorded struct {
	src      *Source
	payloads [][]byte
	seq      uint16
	ts       uint32
}

func (r *recorded) push(i int) {
	r.src.Push(r.seq, r.ts, r.payloads[i%len(r.payloads)])
	r.seq++
	r.ts += uint32(amphi.FrameSamples)
}

// BenchmarkMixFrame13 measures one 20 ms program frame with 13 speakers all
// talking: 13 pushes and decodes, the mix and one encode. It must stay far
// under 20 ms of one core.
func BenchmarkMixFrame13(b *testing.B) {
	m := newTestMixer(b, Config{})
	var rs []*recorded
	for i := range amphi.MaxSpeakers {
		k := newTalker(b, 200+float64(i)*150, 1+i%2, 0, 0)
		r := &recorded{src: addSource(b, m, fmt.Sprint("s", i))}
		for range 50 {
			_, _, p := k.packet(b)
			r.payloads = append(r.payloads, p)
		}
		rs = append(rs, r)
	}
	var i int
	step := func() {
		for _, r := range rs {
			r.push(i)
		}
		m.mixFrame(uint64(i))
		i++
	}
	for range 10 {
		step()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		step()
	}
	b.StopTimer()
	if st := sourceStats(b, m, "s0"); st.Concealed != 0 || st.Lost != 0 {
		b.Fatalf("not steady: %+v", st)
	}
}

// BenchmarkPush measures one speaker packet entering its jitter buffer, the
// cost on the stage's RTP reader goroutine, plus the mixer taking it out again
// (without decoding) so the buffer neither fills nor drains.
func BenchmarkPush(b *testing.B) {
	m := newTestMixer(b, Config{})
	k := newTalker(b, 440, 1, 0, 0)
	r := &recorded{src: addSource(b, m, "a")}
	for range 50 {
		_, _, p := k.packet(b)
		r.payloads = append(r.payloads, p)
	}
	s := r.src
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.push(i)
		i++
		s.mu.Lock()
		s.tickLocked()
		if s.playing {
			s.nextLocked(amphi.FrameSamples)
		}
		s.mu.Unlock()
	}
	b.StopTimer()
	if st := sourceStats(b, m, "a"); st.Lost != 0 || st.Dropped != (Drops{}) {
		b.Fatalf("not steady: %+v", st)
	}
}
