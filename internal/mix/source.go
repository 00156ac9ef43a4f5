package mix

import (
	"sync"
	"sync/atomic"
	"time"

	"gopkg.in/hraban/opus.v2"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/opuspkt"
)

const (
	// maxPayload caps an RTP payload: nothing larger fits a 1500-byte MTU.
	maxPayload = 1500
	// maxPacketSamples is the longest Opus packet, 120 ms at 48 kHz.
	maxPacketSamples = opuspkt.MaxSamples
	// idleFrames is how long a source may send nothing, once its buffer is
	// empty, before it goes idle: silence instead of PLC, and a fresh
	// PlayoutDelay of buffering when packets come again.
	idleFrames = int(200 * time.Millisecond / amphi.FrameDuration)
	// overflowMargin is how far a buffer may grow past PlayoutDelay (a burst,
	// or a sender whose clock runs fast) before its oldest audio is dropped
	// to bring it back to PlayoutDelay.
	overflowMargin = 200 * time.Millisecond
	// maxGapSamples bounds the DTX silence played for a timestamp jump
	// between consecutive packets; a larger jump is a sender that reset its
	// clock, and playout just follows it.
	maxGapSamples = 2 * amphi.SampleRate
	// resyncAfter is how many packets in a row may be refused as late or
	// too far ahead before the source assumes its sender restarted the
	// sequence numbering and starts over from the next packet.
	resyncAfter = 50
)

// ringSlots sizes a jitter buffer: room for PlayoutDelay plus the overflow
// margin in 10 ms packets, with slack, as a power of two.
func ringSlots(delay time.Duration) int {
	need := int((delay+overflowMargin+100*time.Millisecond)/(10*time.Millisecond)) + 1
	n := 64
	for n < need {
		n *= 2
	}
	return n
}

// Source is one speaker's input to the mix: a jitter buffer fed by Push and
// drained by the mixer, one frame per 20 ms.
type Source struct {
	id    string
	m     *Mixer
	delay int // PlayoutDelay in samples
	// maxDepth is the buffered audio, in samples, past which the oldest is dropped.
	maxDepth int
	closed   atomic.Bool

	mu          sync.Mutex // guards the jitter buffer below; never held while decoding
	ring        []slot
	mask        int64
	count       int    // slots in use
	started     bool   // highest is valid
	highest     int64  // highest extended sequence number seen
	highTS      uint32 // its timestamp
	highSamples int    // and its duration
	low         int64  // lowest buffered sequence number while buffering
	next        int64  // next sequence number to play
	played      bool   // next is valid: anything below it is late
	playing     bool   // past the initial buffering
	playTS      uint32 // timestamp of the next sample to play
	lastSamples int    // duration of the last packet played, for PLC
	lastDTX     bool   // the last packet was a DTX frame: quiet, not lost
	waitFrames  int    // frames spent buffering
	quietFrames int    // frames since the last Push
	pushed      bool   // a packet came since the last frame
	refused     int    // packets refused in a row

	// Owned by the mixing goroutine.
	dec     *opus.Decoder
	pkt     [maxPayload]byte
	pcm     [amphi.FrameSamples + maxPacketSamples]int16
	have    int // decoded samples in pcm
	silence int // samples of DTX silence owed before the next packet

	packets, playedPkts, lost, concealed                             atomic.Uint64
	dropInvalid, dropDup, dropLate, dropFull, dropOver, dropUndecode atomic.Uint64
}

// slot holds one buffered packet.
type slot struct {
	used    bool
	ext     int64
	ts      uint32
	samples int
	n       int
	data    [maxPayload]byte
}

func newSource(m *Mixer, id string, dec *opus.Decoder) *Source {
	n := m.ringSlots
	return &Source{
		id:       id,
		m:        m,
		delay:    m.delay,
		maxDepth: m.delay + int(overflowMargin*amphi.SampleRate/time.Second),
		ring:     make([]slot, n),
		mask:     int64(n - 1),
		dec:      dec,
	}
}

// ID returns the id the source was added with.
func (s *Source) ID() string { return s.id }

// Close removes the source from the mix. Its buffered audio is dropped; the
// program goes on without a gap. Pushes after Close are ignored.
func (s *Source) Close() {
	if s.closed.Swap(true) {
		return
	}
	s.m.remove(s)
}

// Push buffers one RTP packet's Opus payload. It copies payload and never
// blocks for long: it is called from the speaker's RTP reader. Packets that
// are not Opus, duplicates, packets whose turn has passed and packets too far
// ahead to buffer are dropped and counted.
func (s *Source) Push(seq uint16, timestamp uint32, payload []byte) {
	if s.closed.Load() {
		return
	}
	samples, ok := opuspkt.Samples(payload)
	if !ok || len(payload) > maxPayload {
		s.dropInvalid.Add(1)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pushed = true
	ext := int64(seq)
	if s.started {
		// The sequence number closest to the highest seen: 16-bit wraparound.
		ext = s.highest + int64(int16(seq-uint16(s.highest)))
	}
	refused := s.store(ext, timestamp, samples, payload)
	if refused == nil {
		s.refused = 0
		s.packets.Add(1)
		return
	}
	if s.refused++; s.refused >= resyncAfter {
		s.resetLocked()
		if s.store(int64(seq), timestamp, samples, payload) == nil {
			s.packets.Add(1)
			return
		}
	}
	refused.Add(1)
}

// store buffers a packet and returns nil, or the counter of the reason it
// was refused. s.mu is held.
func (s *Source) store(ext int64, ts uint32, samples int, payload []byte) *atomic.Uint64 {
	if s.played && ext < s.next {
		return &s.dropLate
	}
	base := ext
	switch {
	case s.playing:
		base = s.next
	case s.count > 0:
		base = min(s.low, ext)
	}
	hi := ext
	if s.started {
		hi = max(hi, s.highest)
	}
	if hi-base >= int64(len(s.ring)) {
		if s.started && ext > s.highest {
			return &s.dropFull
		}
		return &s.dropLate
	}
	sl := &s.ring[ext&s.mask]
	if sl.used {
		if sl.ext == ext {
			return &s.dropDup
		}
		return &s.dropFull // unreachable: the window above fits the ring
	}
	sl.used, sl.ext, sl.ts, sl.samples = true, ext, ts, samples
	sl.n = copy(sl.data[:], payload)
	s.count++
	if !s.playing && (s.count == 1 || ext < s.low) {
		s.low = ext
	}
	if !s.started || ext > s.highest {
		s.started, s.highest, s.highTS, s.highSamples = true, ext, ts, samples
	}
	return nil
}

// resetLocked forgets everything buffered and the sequence numbering.
func (s *Source) resetLocked() {
	for i := range s.ring {
		s.ring[i].used = false
	}
	s.count, s.started, s.played, s.playing, s.waitFrames, s.refused = 0, false, false, false, 0, 0
}

// head returns the slot holding sequence number ext, or nil.
func (s *Source) head(ext int64) *slot {
	sl := &s.ring[ext&s.mask]
	if sl.used && sl.ext == ext {
		return sl
	}
	return nil
}

// tickLocked advances the buffer's state by one frame: start playing once
// enough is buffered, go idle after a silence, and drop the oldest audio when
// the buffer has grown too deep. s.mu is held.
func (s *Source) tickLocked() {
	if s.pushed {
		s.quietFrames = 0
	} else {
		s.quietFrames++
	}
	s.pushed = false
	if !s.playing {
		if s.count == 0 {
			return
		}
		s.waitFrames++
		first := s.head(s.low)
		if first == nil { // cannot happen: low is buffered until played
			s.resetLocked()
			return
		}
		span := int(int32(s.highTS + uint32(s.highSamples) - first.ts))
		if span >= s.delay || s.waitFrames*amphi.FrameSamples >= s.delay {
			s.playing, s.played = true, true
			s.next, s.playTS, s.lastSamples, s.lastDTX = s.low, first.ts, first.samples, false
			s.waitFrames = 0
		}
		return
	}
	if s.count == 0 {
		if s.quietFrames >= idleFrames {
			s.playing = false
		}
		return
	}
	if s.depth() <= s.maxDepth {
		return
	}
	for s.count > 1 && s.depth() > s.delay { // keep one packet, whatever the delay
		if sl := s.head(s.next); sl != nil {
			sl.used = false
			s.count--
			s.dropOver.Add(1)
		}
		s.next++
		if sl := s.head(s.next); sl != nil {
			s.playTS = sl.ts
		}
	}
}

// depth is the audio buffered ahead of the playout point, in samples.
func (s *Source) depth() int {
	return int(int32(s.highTS + uint32(s.highSamples) - s.playTS))
}

// What the mixing goroutine does next for a source.
type action int

const (
	actSilence action = iota // silence for the rest of the frame
	actGap                   // DTX: n samples of silence, then the next packet
	actDecode                // decode the n bytes copied to s.pkt
	actFEC                   // recover the lost packet from the n bytes of the next one
	actPLC                   // conceal s.lastSamples of lost audio
)

// nextLocked decides how to produce the next stretch of the source's audio,
// copying the packet to decode, if any, out of the buffer. rest is what the
// current frame still needs. s.mu is held.
func (s *Source) nextLocked(rest int) (action, int) {
	if !s.playing {
		return actSilence, 0
	}
	if sl := s.head(s.next); sl != nil {
		gap := int32(sl.ts - s.playTS)
		if gap > 0 && gap <= maxGapSamples {
			// Consecutive packets with a timestamp jump: the sender was
			// in DTX. Play silence for the gap, not PLC.
			s.playTS = sl.ts
			return actGap, int(gap)
		}
		// A negative gap is a packet that arrived after an underrun was
		// concealed: play it anyway, which deepens this source's buffer by
		// the jitter it has shown; tickLocked bounds the depth.
		n := copy(s.pkt[:], sl.data[:sl.n])
		s.playTS = sl.ts + uint32(sl.samples)
		s.lastSamples = sl.samples
		s.lastDTX = sl.n <= 2 // a TOC byte and at most a frame count: no audio
		sl.used = false
		s.count--
		s.next++
		s.playedPkts.Add(1)
		return actDecode, n
	}
	if s.count > 0 {
		// Its turn came and later packets are here: lost.
		s.next++
		s.playTS += uint32(s.lastSamples)
		s.lost.Add(1)
		if sl := s.head(s.next); sl != nil {
			return actFEC, copy(s.pkt[:], sl.data[:sl.n])
		}
		return actPLC, 0
	}
	// Underrun: nothing buffered. Conceal without giving up the sequence
	// number, in case the packet is only late.
	if s.lastDTX {
		s.playTS += uint32(rest)
		return actSilence, 0
	}
	s.playTS += uint32(s.lastSamples)
	return actPLC, 0
}

// fill makes sure the source has one frame of audio decoded and returns it.
// Only the mixing goroutine calls it.
func (s *Source) fill() []int16 {
	s.mu.Lock()
	s.tickLocked()
	s.mu.Unlock()
	for s.have < amphi.FrameSamples {
		if s.silence > 0 {
			k := min(s.silence, amphi.FrameSamples-s.have)
			clear(s.pcm[s.have : s.have+k])
			s.have += k
			s.silence -= k
			continue
		}
		s.mu.Lock()
		act, n := s.nextLocked(amphi.FrameSamples - s.have)
		s.mu.Unlock()
		switch act {
		case actSilence:
			clear(s.pcm[s.have:amphi.FrameSamples])
			s.have = amphi.FrameSamples
		case actGap:
			s.silence = n
		case actDecode:
			got, err := s.dec.Decode(s.pkt[:n], s.pcm[s.have:])
			if err != nil || got == 0 {
				s.dropUndecode.Add(1)
				s.conceal(nil)
				continue
			}
			s.have += got
		case actFEC:
			s.conceal(s.pkt[:n])
		case actPLC:
			s.conceal(nil)
		}
	}
	return s.pcm[:amphi.FrameSamples]
}

// conceal synthesises one lost packet's worth of audio, from the FEC data in
// next when there is some, else by PLC.
func (s *Source) conceal(next []byte) {
	l := s.lastSamples
	if l <= 0 || l > maxPacketSamples {
		l = amphi.FrameSamples
	}
	pcm := s.pcm[s.have : s.have+l : s.have+l] // libopus takes the length to conceal from cap
	var err error
	if len(next) > 0 {
		err = s.dec.DecodeFEC(next, pcm)
	} else {
		err = s.dec.DecodePLC(pcm)
	}
	if err != nil {
		clear(pcm)
	}
	s.have += l
	s.concealed.Add(1)
}

// consume removes the frame fill returned.
func (s *Source) consume() {
	s.have = copy(s.pcm[:], s.pcm[amphi.FrameSamples:s.have])
}

// SourceStats are one source's counters.
type SourceStats struct {
	// ID is the source's id.
	ID string
	// Packets is the number of packets accepted into the jitter buffer.
	Packets uint64
	// Played is the number of packets decoded in their turn.
	Played uint64
	// Lost is the number of packets whose turn came while later ones were
	// already buffered.
	Lost uint64
	// Concealed is the number of packets' worth of audio synthesised by
	// PLC or FEC, for losses and for underruns.
	Concealed uint64
	// Dropped counts the packets thrown away, by reason.
	Dropped Drops
}

// Drops counts a source's dropped packets by reason.
type Drops struct {
	// Invalid packets are not Opus (RFC 6716 framing) or exceed an RTP
	// payload's size.
	Invalid uint64
	// Duplicate packets repeat a buffered sequence number.
	Duplicate uint64
	// Late packets came after their turn, or too far behind the others.
	Late uint64
	// Full packets came too far ahead of the playout point to buffer.
	Full uint64
	// Overflow packets were dropped unplayed to bring a buffer that grew
	// past PlayoutDelay+200ms back to PlayoutDelay.
	Overflow uint64
	// Undecodable packets were framed right but refused by libopus.
	Undecodable uint64
}

func (s *Source) stats() SourceStats {
	return SourceStats{
		ID:        s.id,
		Packets:   s.packets.Load(),
		Played:    s.playedPkts.Load(),
		Lost:      s.lost.Load(),
		Concealed: s.concealed.Load(),
		Dropped: Drops{
			Invalid:     s.dropInvalid.Load(),
			Duplicate:   s.dropDup.Load(),
			Late:        s.dropLate.Load(),
			Full:        s.dropFull.Load(),
			Overflow:    s.dropOver.Load(),
			Undecodable: s.dropUndecode.Load(),
		},
	}
}
