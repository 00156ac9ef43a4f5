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
func (o *outSlot) forward(src *speaker, in *rtp.Packet, now time.Time) error {
	o.mu.Lock()
	if o.from != src {
		o.mu.Unlock()
		return nil
	}
	if o.fresh || o.srcSSRC != in.SSRC {
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

// readMic is the one goroutine per speaker's microphone track: it pushes each
// packet into the speaker's mixer source and writes a copy to the speaker's
// slot in every other speaker's connection. It reuses one buffer and one
// packet, so the steady state allocates nothing here.
func (s *Stage) readMic(sp *speaker, track *webrtc.TrackRemote) {
	pt := uint8(track.PayloadType())
	buf := make([]byte, receiveMTU)
	var pkt rtp.Packet
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
		now := s.now()
		sp.packetsIn.Add(1)
		sp.bytesIn.Add(uint64(len(pkt.Payload)))
		sp.lastPacket.Store(now.UnixNano())
		s.stats.packetsIn.Add(1)
		sp.source.Push(pkt.SequenceNumber, pkt.Timestamp, pkt.Payload)
		for _, o := range *sp.routes.Load() {
			if err := o.forward(sp, &pkt, now); err != nil {
				// A receiver going away fails its writes until it is removed;
				// count rather than log each one.
				s.stats.forwardErrors.Add(1)
				continue
			}
			s.stats.forwarded.Add(1)
		}
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
