package mix

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"testing"
	"time"

	"gopkg.in/hraban/opus.v2"

	"github.com/amphi-audio/amphi"
)

// talker is a fake speaker: it encodes a sine tone with real libopus into
// 20 ms packets and numbers them as RTP would.
type talker struct {
	enc      *opus.Encoder
	channels int
	freq     float64
	n        int // samples generated
	seq      uint16
	ts       uint32
	pcm      []int16
	buf      []byte
}

func newTalker(t testing.TB, freq float64, channels int, seq uint16, ts uint32) *talker {
	t.Helper()
	enc, err := opus.NewEncoder(amphi.SampleRate, channels, opus.AppAudio)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.SetBitrate(48000); err != nil {
		t.Fatal(err)
	}
	return &talker{enc: enc, channels: channels, freq: freq, seq: seq, ts: ts,
		pcm: make([]int16, amphi.FrameSamples*channels), buf: make([]byte, 1500)}
}

// packet encodes the next 20 ms and returns it with its RTP numbers.
func (k *talker) packet(t testing.TB) (uint16, uint32, []byte) {
	t.Helper()
	for i := range amphi.FrameSamples {
		v := int16(8000 * math.Sin(2*math.Pi*k.freq*float64(k.n+i)/amphi.SampleRate))
		for c := range k.channels {
			k.pcm[i*k.channels+c] = v
		}
	}
	k.n += amphi.FrameSamples
	n, err := k.enc.Encode(k.pcm, k.buf)
	if err != nil {
		t.Fatal(err)
	}
	seq, ts := k.seq, k.ts
	k.seq++
	k.ts += uint32(amphi.FrameSamples)
	return seq, ts, append([]byte(nil), k.buf[:n]...)
}

// push encodes and pushes the next packet.
func (k *talker) push(t testing.TB, s *Source) {
	t.Helper()
	s.Push(k.packet(t))
}

// skip encodes the next packet and throws it away, as a lossy network would.
func (k *talker) skip(t testing.TB) { k.packet(t) }

// goertzel returns the power of freq in x.
func goertzel(x []int16, freq float64) float64 {
	w := 2 * math.Pi * freq / amphi.SampleRate
	c := 2 * math.Cos(w)
	var s1, s2 float64
	for _, v := range x {
		s0 := float64(v) + c*s1 - s2
		s2, s1 = s1, s0
	}
	return (s1*s1 + s2*s2 - c*s1*s2) / float64(len(x)*len(x))
}

func rms(x []int16) float64 {
	var e float64
	for _, v := range x {
		e += float64(v) * float64(v)
	}
	return math.Sqrt(e / float64(len(x)))
}

// decodeFrames decodes a program into one PCM frame per packet, failing the
// test unless every packet is exactly 20 ms.
func decodeFrames(t testing.TB, frames []Frame) [][]int16 {
	t.Helper()
	dec, err := opus.NewDecoder(amphi.SampleRate, 1)
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]int16, len(frames))
	for i, f := range frames {
		pcm := make([]int16, maxPacketSamples)
		n, err := dec.Decode(f.Packet, pcm)
		if err != nil {
			t.Fatalf("frame %d: decode program: %v", i, err)
		}
		if n != amphi.FrameSamples {
			t.Fatalf("frame %d: %d samples, want %d", i, n, amphi.FrameSamples)
		}
		out[i] = pcm[:n]
	}
	return out
}

func concat(frames [][]int16) []int16 {
	var all []int16
	for _, f := range frames {
		all = append(all, f...)
	}
	return all
}

func newTestMixer(t testing.TB, cfg Config) *Mixer {
	t.Helper()
	m, err := New(cfg, func(Frame) {})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func addSource(t testing.TB, m *Mixer, id string) *Source {
	t.Helper()
	s, err := m.AddSource(id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sourceStats(t testing.TB, m *Mixer, id string) SourceStats {
	t.Helper()
	for _, s := range m.Stats().Sources {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("no stats for source %q", id)
	return SourceStats{}
}

func TestMixerMixesTwoSpeakers(t *testing.T) {
	m := newTestMixer(t, Config{})
	a, b := addSource(t, m, "a"), addSource(t, m, "b")
	// b sends stereo: the mixer's mono decoder must downmix it.
	ta, tb := newTalker(t, 440, 1, 100, 5000), newTalker(t, 1000, 2, 65000, 1<<31)
	var frames []Frame
	for i := range 100 {
		ta.push(t, a)
		tb.push(t, b)
		frames = append(frames, m.mixFrame(uint64(i)))
	}
	pcm := concat(decodeFrames(t, frames)[20:])
	pa, pb, off := goertzel(pcm, 440), goertzel(pcm, 1000), goertzel(pcm, 700)
	if pa < 100*off || pb < 100*off {
		t.Errorf("tone power 440 Hz %.3g, 1000 Hz %.3g, off-tone 700 Hz %.3g: want both tones 100x above", pa, pb, off)
	}
	// Equal amplitudes in, so neither tone may drown the other.
	if r := pa / pb; r < 0.25 || r > 4 {
		t.Errorf("440/1000 Hz power ratio %.2f, want near 1", r)
	}
	if got := frames[len(frames)-1].Speaking; len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf("Speaking = %q, want [a b]", got)
	}
	for _, id := range []string{"a", "b"} {
		st := sourceStats(t, m, id)
		if st.Lost != 0 || st.Concealed != 0 || st.Dropped != (Drops{}) {
			t.Errorf("source %s: %+v, want no loss, concealment or drops", id, st)
		}
	}
}

func TestMixerPlaysSilenceWithoutSources(t *testing.T) {
	m := newTestMixer(t, Config{})
	var frames []Frame
	for i := range 10 {
		frames = append(frames, m.mixFrame(uint64(i)))
	}
	for i, f := range decodeFrames(t, frames) {
		if r := rms(f); r > 1 {
			t.Errorf("frame %d: rms %.1f, want silence", i, r)
		}
		if frames[i].Speaking != nil {
			t.Errorf("frame %d: Speaking = %q, want nil", i, frames[i].Speaking)
		}
	}
}

func TestMixerConcealsLostPacketsWithoutGap(t *testing.T) {
	m := newTestMixer(t, Config{})
	s := addSource(t, m, "a")
	k := newTalker(t, 440, 1, 0, 0)
	var frames []Frame
	skipped := 0
	for i := range 100 {
		if i > 10 && i < 90 && i%7 == 0 {
			k.skip(t)
			skipped++
		} else {
			k.push(t, s)
		}
		frames = append(frames, m.mixFrame(uint64(i)))
	}
	st := sourceStats(t, m, "a")
	if st.Lost != uint64(skipped) || st.Concealed != uint64(skipped) {
		t.Errorf("lost %d, concealed %d; want %d each", st.Lost, st.Concealed, skipped)
	}
	// PLC continues the tone: no frame after the start drops to silence.
	for i, f := range decodeFrames(t, frames) {
		if i < 5 {
			continue
		}
		if r := rms(f); r < 1000 {
			t.Errorf("frame %d: rms %.0f, want the tone (~5600) continued", i, r)
		}
	}
}

func TestMixerReordersAcrossSequenceWrap(t *testing.T) {
	m := newTestMixer(t, Config{})
	s := addSource(t, m, "a")
	k := newTalker(t, 440, 1, 65530, math.MaxUint32-3*uint32(amphi.FrameSamples))
	var pend []func()
	for i := range 60 {
		seq, ts, p := k.packet(t)
		pend = append(pend, func() { s.Push(seq, ts, p) })
		if i%2 == 1 { // swap every pair: p1, p0, p3, p2, ...
			pend[1]()
			pend[0]()
			pend = pend[:0]
		}
		m.mixFrame(uint64(i))
	}
	st := sourceStats(t, m, "a")
	if st.Lost != 0 || st.Concealed != 0 || st.Dropped != (Drops{}) {
		t.Errorf("stats %+v, want no loss, concealment or drops", st)
	}
	if st.Played < 50 {
		t.Errorf("played %d packets, want at least 50", st.Played)
	}
}

func TestMixerPlaysSilenceForDTXGap(t *testing.T) {
	m := newTestMixer(t, Config{})
	s := addSource(t, m, "a")
	k := newTalker(t, 440, 1, 0, 0)
	var frames []Frame
	for i := range 60 {
		if i == 20 {
			// DTX: the next packet keeps its sequence number but its
			// timestamp says 100 ms went by.
			k.ts += 5 * uint32(amphi.FrameSamples)
			k.n += 5 * amphi.FrameSamples
		}
		k.push(t, s)
		frames = append(frames, m.mixFrame(uint64(i)))
	}
	if st := sourceStats(t, m, "a"); st.Concealed != 0 || st.Lost != 0 {
		t.Errorf("stats %+v, want DTX played as silence, not concealed", st)
	}
	quiet := 0
	for _, f := range decodeFrames(t, frames)[5:] {
		if rms(f) < 100 {
			quiet++
		}
	}
	// 5 frames of gap; the codec's overlap may blur one on each side.
	if quiet < 3 || quiet > 6 {
		t.Errorf("%d quiet frames, want about 5", quiet)
	}
}

func TestMixerSourceGoesIdleThenRebuffers(t *testing.T) {
	m := newTestMixer(t, Config{})
	s := addSource(t, m, "a")
	k := newTalker(t, 440, 1, 0, 0)
	var frames []Frame
	for i := range 100 {
		if i < 30 || i >= 60 {
			k.push(t, s)
		} else {
			k.skip(t) // the speaker is away: nothing is sent
		}
		frames = append(frames, m.mixFrame(uint64(i)))
	}
	st := sourceStats(t, m, "a")
	// Its buffer covers 3 frames; PLC runs until 200 ms without packets.
	if st.Concealed > uint64(idleFrames) {
		t.Errorf("concealed %d, want at most %d before going idle", st.Concealed, idleFrames)
	}
	pcm := decodeFrames(t, frames)
	for i := 30 + idleFrames + 2; i < 60; i++ {
		if r := rms(pcm[i]); r > 100 {
			t.Errorf("frame %d: rms %.0f, want silence while idle", i, r)
		}
	}
	if r := rms(concat(pcm[70:])); r < 3000 {
		t.Errorf("rms after rejoining %.0f, want the tone back", r)
	}
	if st.Dropped != (Drops{}) {
		t.Errorf("drops %+v, want none", st.Dropped)
	}
}

func TestMixerDropsOldestWhenBufferGrows(t *testing.T) {
	m := newTestMixer(t, Config{})
	s := addSource(t, m, "a")
	k := newTalker(t, 440, 1, 0, 0)
	for i := range 100 {
		// A sender whose clock runs at twice the mixer's.
		k.push(t, s)
		k.push(t, s)
		m.mixFrame(uint64(i))
	}
	st := sourceStats(t, m, "a")
	if st.Dropped.Overflow == 0 {
		t.Fatalf("no overflow drops: %+v", st)
	}
	s.mu.Lock()
	depth := s.depth()
	s.mu.Unlock()
	if depth > s.maxDepth {
		t.Errorf("buffered %d samples, want at most %d", depth, s.maxDepth)
	}
	if st.Lost != 0 || st.Dropped.Full != 0 {
		t.Errorf("stats %+v, want overflow handled by dropping the oldest only", st)
	}
}

type push struct {
	seq     uint16
	payload []byte // nil: the talker's next packet for seq
}

func TestPushDropsAndCountsBadPackets(t *testing.T) {
	good := func() []byte {
		k := newTalker(t, 440, 1, 0, 0)
		_, _, p := k.packet(t)
		return p
	}()
	tests := []struct {
		name   string
		before []push // pushed, then 5 frames mixed
		after  []push
		want   Drops
	}{
		{name: "empty payload", before: []push{{0, []byte{}}}, want: Drops{Invalid: 1}},
		{name: "bad framing", before: []push{{0, []byte{0x01, 0x01, 0x02, 0x03}}, {1, []byte{0x03}}}, want: Drops{Invalid: 2}},
		{name: "oversized", before: []push{{0, make([]byte, 1600)}}, want: Drops{Invalid: 1}},
		{name: "duplicate", before: []push{{0, nil}, {1, nil}, {1, nil}}, want: Drops{Duplicate: 1}},
		{name: "late", before: []push{{0, nil}, {1, nil}, {2, nil}, {3, nil}}, after: []push{{1, nil}}, want: Drops{Late: 1}},
		{name: "far ahead", before: []push{{0, nil}, {1, nil}, {2, nil}}, after: []push{{2000, nil}}, want: Drops{Full: 1}},
		{name: "framed garbage is decoded or counted, never fatal", before: []push{{0, []byte{0xfc, 0xff, 0xff, 0xff, 0, 1, 2, 3}}, {1, append([]byte{0x78}, make([]byte, 200)...)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestMixer(t, Config{})
			s := addSource(t, m, "a")
			do := func(ps []push) {
				for _, p := range ps {
					payload := p.payload
					if payload == nil {
						payload = good
					}
					s.Push(p.seq, uint32(p.seq)*uint32(amphi.FrameSamples), payload)
				}
			}
			do(tt.before)
			for i := range 5 {
				m.mixFrame(uint64(i))
			}
			do(tt.after)
			for i := range 5 {
				m.mixFrame(uint64(5 + i))
			}
			got := sourceStats(t, m, "a").Dropped
			got.Undecodable = 0 // libopus may or may not take framed garbage
			if got != tt.want {
				t.Errorf("drops %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPushResyncsWhenSenderRestartsSequence(t *testing.T) {
	m := newTestMixer(t, Config{})
	s := addSource(t, m, "a")
	k := newTalker(t, 440, 1, 100, 0)
	for i := range 20 {
		k.push(t, s)
		m.mixFrame(uint64(i))
	}
	k.seq += 30000 // a new RTP session: numbering jumps
	for i := range 2 * resyncAfter {
		k.push(t, s)
		m.mixFrame(uint64(20 + i))
	}
	st := sourceStats(t, m, "a")
	if st.Played < 20+resyncAfter/2 {
		t.Errorf("played %d packets, want playback resumed after the jump: %+v", st.Played, st)
	}
}

func TestAddSourceRefusesPastMaxAndDuplicates(t *testing.T) {
	m := newTestMixer(t, Config{})
	var srcs []*Source
	for i := range amphi.MaxSpeakers {
		srcs = append(srcs, addSource(t, m, string(rune('a'+i))))
	}
	if _, err := m.AddSource("z"); amphi.ErrorCode(err) != amphi.EFull {
		t.Errorf("14th source: err %v, want code %s", err, amphi.EFull)
	}
	srcs[0].Close()
	if _, err := m.AddSource("b"); amphi.ErrorCode(err) != amphi.EConflict {
		t.Errorf("duplicate id: err %v, want code %s", err, amphi.EConflict)
	}
	if _, err := m.AddSource("a"); err != nil {
		t.Errorf("re-adding a closed id: %v", err)
	}
	if _, err := m.AddSource(""); amphi.ErrorCode(err) != amphi.EInvalid {
		t.Errorf("empty id: err %v, want code %s", err, amphi.EInvalid)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	out := func(Frame) {}
	tests := []struct {
		name string
		cfg  Config
		out  func(Frame)
	}{
		{"nil out", Config{}, nil},
		{"bitrate too low", Config{Bitrate: 100}, out},
		{"negative delay", Config{PlayoutDelay: -time.Millisecond}, out},
		{"negative max sources", Config{MaxSources: -1}, out},
	}
	for _, tt := range tests {
		if _, err := New(tt.cfg, tt.out); err == nil {
			t.Errorf("%s: New succeeded, want an error", tt.name)
		}
	}
}

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu   sync.Mutex
	t    time.Time
	read chan struct{} // closed once the clock has been read
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Unix(1e9, 0), read: make(chan struct{})}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.read:
	default:
		close(c.read)
	}
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// runMixer starts Run and returns the frames channel and a stop func that
// cancels Run and waits for it to return.
func runMixer(t *testing.T, m *Mixer, frames <-chan Frame) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func TestRunEmitsOneFramePer20msAcrossJoinsAndLeaves(t *testing.T) {
	clock := newFakeClock()
	ch := make(chan Frame, 1000)
	m, err := New(Config{Now: clock.Now, Logger: slog.New(slog.DiscardHandler)}, func(f Frame) { ch <- f })
	if err != nil {
		t.Fatal(err)
	}
	stop := runMixer(t, m, ch)
	<-clock.read // Run has taken its start time
	var got []Frame
	elapsed := time.Duration(0)
	// advance moves the clock and waits for exactly the frames now owed.
	advance := func(d time.Duration) {
		t.Helper()
		clock.Add(d)
		elapsed += d
		for uint64(len(got)) < uint64(elapsed/amphi.FrameDuration) {
			select {
			case f := <-ch:
				got = append(got, f)
			case <-time.After(10 * time.Second): // a hang, not a timing check
				t.Fatalf("after %v: %d frames, want %d", elapsed, len(got), elapsed/amphi.FrameDuration)
			}
		}
	}
	k := newTalker(t, 440, 1, 0, 0)
	advance(95 * time.Millisecond)
	s := addSource(t, m, "a")
	for range 20 {
		k.push(t, s)
		advance(amphi.FrameDuration)
	}
	b := addSource(t, m, "b")
	kb := newTalker(t, 1000, 2, 0, 0)
	for i := range 20 {
		k.push(t, s)
		if i%3 != 0 {
			kb.push(t, b) // lossy
		}
		advance(amphi.FrameDuration + time.Millisecond)
	}
	s.Close()
	s.Push(k.packet(t)) // after Close: ignored
	advance(333 * time.Millisecond)
	b.Close()
	advance(time.Second) // a long stall: caught up at once
	stop()
	for len(ch) > 0 {
		got = append(got, <-ch)
	}
	if want := int(elapsed / amphi.FrameDuration); len(got) != want {
		t.Fatalf("%d frames over %v, want %d", len(got), elapsed, want)
	}
	for i, f := range got {
		if f.Index != uint64(i) {
			t.Fatalf("frame %d has index %d", i, f.Index)
		}
	}
	decodeFrames(t, got) // every frame a valid 20 ms packet
	if st := m.Stats(); st.Frames != uint64(len(got)) || st.CaughtUp == 0 {
		t.Errorf("stats frames %d caught up %d, want %d and > 0", st.Frames, st.CaughtUp, len(got))
	}
	if err := m.Run(context.Background()); amphi.ErrorCode(err) != amphi.EConflict {
		t.Errorf("second Run: %v, want a conflict", err)
	}
}

// recordingClock is the real clock, remembering the first and last time it
// told.
type recordingClock struct {
	mu          sync.Mutex
	first, last time.Time
}

func (c *recordingClock) Now() time.Time {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.first.IsZero() {
		c.first = now
	}
	c.last = now
	return now
}

func TestRunCatchesUpAfterStall(t *testing.T) {
	clock := &recordingClock{}
	ch := make(chan Frame, 1000)
	m, err := New(Config{
		Now: clock.Now,
		Knobs: Knobs{BeforeFrame: func(i uint64) {
			if i == 3 {
				time.Sleep(100 * time.Millisecond)
			}
		}},
	}, func(f Frame) { ch <- f })
	if err != nil {
		t.Fatal(err)
	}
	s := addSource(t, m, "a")
	k := newTalker(t, 440, 1, 0, 0)
	stop := runMixer(t, m, ch)
	n := 0
	for n < 20 {
		select {
		case <-ch:
		case <-time.After(10 * time.Second): // a hang, not a timing check
			t.Fatalf("no frame after %d", n)
		}
		n++
		k.push(t, s)
	}
	stop()
	n += len(ch)
	clock.mu.Lock()
	elapsed := clock.last.Sub(clock.first)
	clock.mu.Unlock()
	// Run's last look at the clock decides the frames owed; they must all
	// be out.
	if want := int(elapsed / amphi.FrameDuration); n != want {
		t.Errorf("%d frames in %v, want %d", n, elapsed, want)
	}
	if st := m.Stats(); st.CaughtUp < 4 {
		t.Errorf("caught up %d frames after a 100 ms stall, want at least 4", st.CaughtUp)
	}
}

func TestMixFrameAllocatesOnlyThePacket(t *testing.T) {
	m := newTestMixer(t, Config{})
	s1, s2 := addSource(t, m, "a"), addSource(t, m, "b")
	k1, k2 := newTalker(t, 440, 1, 0, 0), newTalker(t, 1000, 2, 0, 0)
	const n = 64
	type pkt struct {
		seq     uint16
		ts      uint32
		payload []byte
	}
	var p1, p2 []pkt
	for range n {
		a, b, c := k1.packet(t)
		p1 = append(p1, pkt{a, b, c})
		a, b, c = k2.packet(t)
		p2 = append(p2, pkt{a, b, c})
	}
	i := 0
	step := func() {
		q1, q2 := p1[i%n], p2[i%n]
		// Keep numbering going past the prepared packets.
		off := uint16(i / n * n)
		s1.Push(q1.seq+off, q1.ts+uint32(off)*uint32(amphi.FrameSamples), q1.payload)
		s2.Push(q2.seq+off, q2.ts+uint32(off)*uint32(amphi.FrameSamples), q2.payload)
		m.mixFrame(uint64(i))
		i++
	}
	for range 20 {
		step()
	}
	if a := testing.AllocsPerRun(100, step); a > 1 {
		t.Errorf("%.1f allocations per frame, want 1 (the packet)", a)
	}
	if a := testing.AllocsPerRun(100, func() { s1.Push(1, 0, p1[0].payload) }); a != 0 {
		t.Errorf("%.1f allocations per Push, want 0", a)
	}
	if st := sourceStats(t, m, "a"); st.Lost != 0 || st.Concealed != 0 {
		t.Errorf("stats %+v: the benchmark loop is not steady", st)
	}
}

func TestErrorsAreWrapped(t *testing.T) {
	m := newTestMixer(t, Config{MaxSources: 1})
	addSource(t, m, "a")
	_, err := m.AddSource("b")
	var e *amphi.Error
	if !errors.As(err, &e) || e.Code != amphi.EFull {
		t.Fatalf("err %v, want an amphi.Error with code %s", err, amphi.EFull)
	}
}
