package stage

import (
	"errors"
	"io"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

const (
	// clockRate is Opus's RTP clock (RFC 7587 §4.1), whatever the sample rate.
	clockRate = 48000
	// frameTicks is one 20 ms frame in RTP timestamp units: the least a slot's
	// timestamp advances when it passes to another speaker.
	frameTicks = clockRate / 50
	// receiveMTU is the buffer for one incoming RTP packet; Pion's default
	// receive MTU is 1460, so nothing it delivers is larger.
	receiveMTU = 1500
)

// dropReason says why an incoming packet was not forwarded.
type dropReason int

const (
	dropNone        dropReason = iota
	dropMalformed              // the bytes are not an RTP packet
	dropPayloadType            // a payload type other than the negotiated Opus one
	dropReadError              // Pion reported an error for a packet that parsed
)

// classify parses b into pkt and says whether it may be forwarded: only RTP
// carrying the negotiated Opus payload type pt goes to the mixer and the
// other speakers. pkt's payload aliases b.
func classify(b []byte, pkt *rtp.Packet, pt uint8) dropReason {
	if err := pkt.Unmarshal(b); err != nil {
		return dropMalformed
	}
	if pkt.PayloadType != pt {
		return dropPayloadType
	}
	return dropNone
}

// outSlot is one outgoing audio stream in a listener-speaker's connection,
// answering one of the recvonly m-lines it offered. The stage assigns it to
// another speaker (from) and that speaker's read loop writes into it.
//
// The stream must look like one continuous RTP stream to the receiver even
// as the slot passes from speaker to speaker, or its jitter buffer would see
// a jump in sequence numbers and timestamps and drop or stall audio. So the
// slot keeps the last sequence number and timestamp it sent and offsets each
// new source onto them (splice).
type outSlot struct {
	index int
	track *webrtc.TrackLocalStaticRTP

	mu      sync.Mutex
	from    *speaker // guarded by mu and, for writers, by Stage.mu too
	fresh   bool     // from changed since the last packet: splice on the next
	srcSSRC uint32   // SSRC of the source the offsets were computed for
	seqOff  uint16
	tsOff   uint32
	marker  bool // set the marker bit on the next packet: a talkspurt begins
	sent    bool // anything was ever sent, so last* mean something
	lastSeq uint16
	lastTS  uint32
	lastAt  time.Time
}

// assign hands the slot to sp (nil frees it). Called with Stage.mu held.
func (o *outSlot) assign(sp *speaker) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.from != sp {
		o.from = sp
		o.fresh = true
	}
}

// owner returns the speaker the slot carries, nil if free.
func (o *outSlot) owner() *speaker {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.from
}

// forward writes a copy of src's packet into the slot, rewritten onto the
// slot's own sequence and timestamp line. A packet from a speaker that no
// longer owns the slot (a route read just before a reassignment) is ignored.
// resume says src was muted until this packet: the packets it sent meanwhile
// were never forwarded, so the slot splices as for a new source rather than
// show the receiver a run of lost packets.
func (o *outSlot) forward(src *speaker, in *rtp.Packet, now time.Time, resume bool) error {
	o.mu.Lock()
	if o.from != src {
		o.mu.Unlock()
		return nil
	}
	if o.fresh || resume || o.srcSSRC != in.SSRC {
		o.splice(in, now)
	}
	out := rtp.Packet{Header: in.Header, Payload: in.Payload}
	out.SequenceNumber = in.SequenceNumber + o.seqOff
	out.Timestamp = in.Timestamp + o.tsOff
	// Header extension IDs were negotiated on the sender's connection and
	// mean nothing on the receiver's; CSRCs and padding are not ours to pass on.
	out.Extension, out.ExtensionProfile, out.Extensions = false, 0, nil
	out.CSRC = nil
	out.Padding, out.PaddingSize = false, 0
	if o.marker {
		out.Marker = true
		o.marker = false
	}
	// Only move the slot's line forward: a reordered older packet must not
	// pull the splice point back.
	if !o.sent || int16(out.SequenceNumber-o.lastSeq) > 0 {
		o.lastSeq, o.lastTS, o.lastAt = out.SequenceNumber, out.Timestamp, now
	}
	o.sent = true
	o.mu.Unlock()
	// Written outside the lock: SRTP and the socket write take time, and the
	// lock only orders us against reassignment, which the owner check covers.
	return o.track.WriteRTP(&out)
}

// splice computes offsets that put in, the first packet of a new source,
// right after the last packet the slot sent: sequence number +1, timestamp
// advanced by the wall time since (at least one frame), so the receiver sees
// a pause, not a discontinuity. Called with o.mu held.
func (o *outSlot) splice(in *rtp.Packet, now time.Time) {
	o.fresh = false
	o.srcSSRC = in.SSRC
	o.marker = true
	if !o.sent {
		// The first source defines the slot's line.
		o.seqOff, o.tsOff = 0, 0
		return
	}
	ticks := uint32(frameTicks)
	if gap := now.Sub(o.lastAt); gap > 20*time.Millisecond {
		// Cap at an hour so the conversion cannot overflow; any gap that long
		// reads as a pause to the receiver anyway.
		gap = min(gap, time.Hour)
		ticks = uint32(int64(gap) * clockRate / int64(time.Second))
	}
	o.seqOff = o.lastSeq + 1 - in.SequenceNumber
	o.tsOff = o.lastTS + ticks - in.Timestamp
}

// readMic is the one goroutine per speaker's microphone track: it reads,
// classifies and delivers each packet. It reuses one buffer and one packet,
// so the steady state allocates nothing here.
func (s *Stage) readMic(sp *speaker, track *webrtc.TrackRemote) {
	pt := uint8(track.PayloadType())
	buf := make([]byte, receiveMTU)
	var pkt rtp.Packet
	var line mixLine
	for {
		n, _, err := track.Read(buf)
		if err != nil {
			if n == 0 || errors.Is(err, io.EOF) || sp.isClosing() {
				return
			}
			// Pion hands over a packet whose payload type was never
			// negotiated with an error; classify it so it is counted by why.
			reason := classify(buf[:n], &pkt, pt)
			if reason == dropNone {
				reason = dropReadError
			}
			s.drop(sp, reason)
			continue
		}
		if reason := classify(buf[:n], &pkt, pt); reason != dropNone {
			s.drop(sp, reason)
			continue
		}
		s.deliver(sp, &line, &pkt)
	}
}

// mixLine is a reader's state across mutes: the sequence numbers it hands
// the mixer are shifted so the first packet after an unmute follows the last
// one before, as after a DTX pause. A mute of more than half the 16-bit
// sequence space (minutes) would otherwise look like a packet from the past,
// and the mixer would refuse a burst of them before resyncing. Owned by the
// reader goroutine: no lock.
type mixLine struct {
	wasMuted bool   // the last packet was dropped as muted
	pushed   bool   // last means something
	last     uint16 // the highest sequence number handed to the mixer
	off      uint16 // added to the speaker's sequence numbers for the mixer
}

// deliver pushes one Opus packet from sp into its mixer source and writes a
// copy to sp's slot in every other speaker's connection, unless sp is muted:
// then it only counts it. Moderation costs the hot path one atomic load.
func (s *Stage) deliver(sp *speaker, line *mixLine, pkt *rtp.Packet) {
	now := s.now()
	// A muted speaker is still alive: its last packet says so.
	sp.lastPacket.Store(now.UnixNano())
	if sp.muted.Load() {
		sp.packetsMuted.Add(1)
		s.stats.packetsMuted.Add(1)
		line.wasMuted = true
		return
	}
	resume := line.wasMuted
	line.wasMuted = false
	if resume && line.pushed {
		line.off = line.last + 1 - pkt.SequenceNumber
	}
	seq := pkt.SequenceNumber + line.off
	// Only forward: a reordered older packet must not pull the line back.
	if !line.pushed || int16(seq-line.last) > 0 {
		line.last, line.pushed = seq, true
	}
	sp.packetsIn.Add(1)
	sp.bytesIn.Add(uint64(len(pkt.Payload)))
	s.stats.packetsIn.Add(1)
	sp.source.Push(seq, pkt.Timestamp, pkt.Payload)
	for _, o := range *sp.routes.Load() {
		if err := o.forward(sp, pkt, now, resume); err != nil {
			// A receiver going away fails its writes until it is removed;
			// count rather than log each one.
			s.stats.forwardErrors.Add(1)
			continue
		}
		s.stats.forwarded.Add(1)
	}
}

// drop counts a packet that was not forwarded.
func (s *Stage) drop(sp *speaker, reason dropReason) {
	sp.dropped.Add(1)
	switch reason {
	case dropMalformed:
		s.stats.droppedMalformed.Add(1)
	case dropPayloadType:
		s.stats.droppedPayloadType.Add(1)
	default:
		s.stats.droppedReadError.Add(1)
	}
}

// drainRTCP reads a slot sender's RTCP until its connection closes. Pion
// runs the interceptors (receiver reports, NACK responses) only as RTCP is
// read, so someone has to read it.
func drainRTCP(sender *webrtc.RTPSender) {
	buf := make([]byte, receiveMTU)
	for {
		if _, _, err := sender.Read(buf); err != nil {
			return
		}
	}
}
