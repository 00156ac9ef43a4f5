// Package hls serves a live Opus program as Low-Latency HLS (RFC 8216bis):
// a Segmenter per space cuts the program's Opus packets into 200 ms parts
// and 2 s segments of fragmented MP4 (package fmp4), built once and shared
// by every listener, and renders the media playlist once per part; a
// Handler serves them, holding blocking playlist reloads on a channel that
// is closed when the next part exists, so thousands of waiting listeners
// cost one blocked goroutine each and no work per part. A Segmenter also
// takes another codec's frames (AddSamples), such as the AAC rendition's,
// and AppendMultivariant lists renditions for players to choose from.
//
// Everything it serves but the playlist is immutable and named so that any
// HTTP cache or CDN can fan it out (DESIGN.md: listening is a cacheable
// read). It knows nothing of amphi's spaces or tickets: the caller finds a
// space's Segmenter and may gate the playlist with a hook.
package hls

import (
	"errors"
	"fmt"
	"hash/crc32"
	"sync/atomic"
	"time"

	"github.com/amphi-audio/amphi/internal/fmp4"
	"github.com/amphi-audio/amphi/internal/opuspkt"
)

// The stream's shape. Opus packets are 20 ms, so a part is ten packets and
// a segment ten parts; every Opus packet decodes on its own, so every part
// is independent and a player may start at any of them.
const (
	// partSamples is a part's duration in 48 kHz samples: 200 ms, the
	// PART-TARGET, short enough for sub-second latency and long enough
	// that a part's 130-byte moof stays a small share of its audio.
	partSamples = fmp4.Timescale / 5
	// partsPerSegment makes 2 s segments: the TARGETDURATION.
	partsPerSegment = 10
	// programPacket is the duration of amphi's Opus packets, 20 ms, which
	// only sizes buffers: any packet duration works.
	programPacket = fmp4.Timescale / 50
	// segmentSamples is a segment's duration in 48 kHz samples.
	segmentSamples = partSamples * partsPerSegment
	// targetDuration is EXT-X-TARGETDURATION in seconds.
	targetDuration = segmentSamples / fmp4.Timescale
	// partListedSegments is how many complete segments keep their
	// EXT-X-PART lines: RFC 8216bis §6.2.2 drops part tags more than three
	// target durations from the end of the playlist.
	partListedSegments = 3
	// retainedUnlisted is how many segments stay downloadable after they
	// leave the playlist: §6.2.2 keeps a segment for its duration plus the
	// playlist's after it first appeared, which is about one segment past
	// its removal; two leave room for a slow client.
	retainedUnlisted = 2
	// minListed is the fewest segments a playlist lists: §6.2.2 forbids
	// a live playlist shorter than three target durations.
	minListed = 3
)

// Config is a Segmenter's setting; each field says what its zero value
// does.
type Config struct {
	// Channels is the program's channel count, 1 or 2. Zero means 1.
	Channels int
	// PreSkip is the encoder's pre-skip in 48 kHz samples, as in the
	// program's OpusHead. Zero means none.
	PreSkip uint16
	// InputRate is the original input's sample rate, for information.
	// Zero means unknown.
	InputRate uint32
	// Init is the track's init segment (package fmp4) for a track other
	// than the Opus program that Channels, PreSkip and InputRate describe,
	// such as an AAC rendition. Nil means that Opus track's.
	Init []byte
	// FrameSamples is the duration of every sample of a track whose
	// samples do not divide 200 ms, in 48 kHz samples: 1024 for AAC.
	// Parts still end on the timeline's 200 ms boundaries, at the first
	// sample that reaches one, so they hold whole samples and run up to
	// one sample longer: PART-TARGET is 200 ms rounded up to whole
	// samples (RFC 8216bis §4.4.3.7: no part may exceed it). Zero means
	// samples that divide 200 ms, as the program's 20 ms Opus packets do.
	FrameSamples uint32
	// Window is how much audio the playlist lists, rounded down to whole
	// segments. Zero means 30 s; less than 6 s means 6 s (three segments).
	Window time.Duration
	// Now gives the wall time for EXT-X-PROGRAM-DATE-TIME. Nil means
	// time.Now.
	Now func() time.Time
}

// DefaultConfig returns the configuration of a mono program with libopus's
// usual pre-skip.
func DefaultConfig() Config {
	return Config{Channels: 1, PreSkip: 312, InputRate: fmp4.Timescale, Window: 30 * time.Second, Now: time.Now}
}

// Errors returned by Segmenter.Add.
var (
	// ErrBackwards means a page starts before the end of the one before:
	// the program went back (a resumed program that renumbered). Listeners
	// cannot follow that in one playlist; the caller starts a new
	// Segmenter.
	ErrBackwards = errors.New("hls: program went backwards")
	// ErrEnded means Add was called after Finish.
	ErrEnded = errors.New("hls: program ended")
	// ErrPacket means a packet breaks Opus framing (RFC 6716 §3.4).
	ErrPacket = errors.New("hls: invalid Opus packet")
)

// part is one fragment: 200 ms of audio in its own moof + mdat.
type part struct {
	data     []byte
	duration uint32 // in 48 kHz samples
}

// segment is a parent segment. A complete one (data set) never changes; an
// in-progress one is copied on each new part, so every snapshot that holds
// it sees a fixed list of parts.
type segment struct {
	msn   uint64
	parts []part
	// data is the whole segment, once all its parts exist; nil before.
	// It is one fragment of all the segment's packets rather than its
	// parts back to back: one moof instead of ten saves a player that
	// fetches segments 11 % of the audio's bytes at 32 kbit/s. Both are CMAF segments;
	// parts are addressed by their own URIs, not as byte ranges of it.
	data     []byte
	start    int64  // granule at the segment's first sample
	duration uint32 // in 48 kHz samples, so far
	// pdt is the wall time of the segment's first sample.
	pdt time.Time
	// discontinuity marks a segment after a jump in the program's timeline.
	discontinuity bool
}

// snapshot is the stream as listeners see it between two parts. It is
// immutable; changed is closed when the next snapshot replaces it.
type snapshot struct {
	// segments are consecutive in msn, oldest first; the last one is in
	// progress unless the program ended.
	segments []*segment
	// listed is the index of the first segment the playlist lists.
	listed   int
	discSeq  uint64
	playlist []byte
	// gzipped is the playlist with gzip's Content-Encoding, which RFC
	// 8216bis §6.2.1 asks servers to offer: the playlist is most of a
	// low-latency listener's overhead, and it compresses about fivefold.
	gzipped []byte
	ended   bool
	changed chan struct{}
}

// Segmenter cuts one program into parts and segments. Add and Finish are
// called by one goroutine, in program order; the Handler reads it from any
// number of goroutines without locks.
type Segmenter struct {
	cfg      Config
	init     []byte
	initName string
	listedN  int
	header   string // the playlist's tags that never change
	// partTarget is the longest a part may be, in 48 kHz samples.
	partTarget uint32

	// The producer's state, touched only by Add and Finish.
	started  bool
	skipped  uint32        // samples dropped while waiting for a segment boundary
	next     int64         // the granule the next page must start at
	page     []fmp4.Sample // Add's packets, reused
	pending  []fmp4.Sample
	pendDur  uint32
	segSamp  []fmp4.Sample // the current segment's packets, for its whole fragment
	pendAt   int64         // granule at the start of pending
	msn      uint64
	cur      *segment // in progress, or nil between segments
	segs     []*segment
	discSeq  uint64 // EXT-X-DISCONTINUITY-SEQUENCE
	discNext bool   // the next segment follows a jump
	// unlistedFrom is the first msn whose discontinuity is not yet counted
	// in discSeq.
	unlistedFrom uint64
	anchor       time.Time
	anchorAt     int64 // the granule that was live at anchor
	ended        bool
	lastLen      int // the last playlist's length sizes the next one's buffer

	state atomic.Pointer[snapshot]
	// peak is the highest bit rate of a part so far, for Bandwidth.
	peak atomic.Uint64
}

// NewSegmenter returns a Segmenter for a program with cfg's format.
func NewSegmenter(cfg Config) (*Segmenter, error) {
	def := DefaultConfig()
	if cfg.Channels == 0 {
		cfg.Channels = def.Channels
	}
	if cfg.Window == 0 {
		cfg.Window = def.Window
	}
	if cfg.Now == nil {
		cfg.Now = def.Now
	}
	init := cfg.Init
	if init == nil {
		var err error
		if init, err = fmp4.AppendInit(nil, cfg.Channels, cfg.PreSkip, cfg.InputRate); err != nil {
			return nil, fmt.Errorf("hls: %w", err)
		}
	}
	partTarget := uint32(partSamples)
	if f := cfg.FrameSamples; f > 0 {
		partTarget = (partSamples + f - 1) / f * f
	}
	s := &Segmenter{
		cfg:        cfg,
		init:       init,
		partTarget: partTarget,
		header:     playlistHeader(partTarget),
		// The init segment is cached as immutable: naming it by its bytes
		// keeps a program of another format from ever getting it.
		initName: fmt.Sprintf("init-%08x.mp4", crc32.ChecksumIEEE(init)),
		listedN:  max(minListed, int(cfg.Window/(targetDuration*time.Second))),
		page:     make([]fmp4.Sample, 0, partSamples/programPacket),
		pending:  make([]fmp4.Sample, 0, partSamples/programPacket),
		segSamp:  make([]fmp4.Sample, 0, segmentSamples/programPacket),
	}
	s.state.Store(&snapshot{changed: make(chan struct{})})
	s.publish()
	return s, nil
}

// Add appends one Ogg page's worth of the program: its Opus packets, in
// order, and the granule position at the end of the last one (RFC 7845:
// 48 kHz samples since the program's start, pre-skip included). The
// Segmenter keeps the packets, which must not change afterwards.
//
// The first segment starts at the first packet on a 2 s boundary of the
// granule timeline, so that every node fed the same program names the same
// parts alike and builds the same bytes for them (an input that never
// lands on a boundary starts after 2 s anyway). Parts and segments end on
// the timeline's 200 ms and 2 s boundaries. A page that starts after
// the end of the previous one ends the current segment early and marks a
// discontinuity; one that starts before it is refused with ErrBackwards.
func (s *Segmenter) Add(granule int64, packets [][]byte) error {
	if s.ended {
		return ErrEnded
	}
	for i, p := range packets {
		n, ok := opuspkt.Samples(p)
		if !ok {
			clear(s.page)
			s.page = s.page[:0]
			return fmt.Errorf("%w: packet %d of the page ending at %d", ErrPacket, i, granule)
		}
		s.page = append(s.page, fmp4.Sample{Data: p, Duration: uint32(n)})
	}
	err := s.AddSamples(granule, s.page)
	clear(s.page) // drop the references to the packets
	s.page = s.page[:0]
	return err
}

// AddSamples appends samples of the track, in order, that end at end, in
// 48 kHz samples of the track's media timeline, as Add does with a page's
// Opus packets: the same boundaries, gaps and errors. It is how a track of
// another codec (Config.Init) is fed. The Segmenter keeps the samples'
// data, which must not change afterwards.
func (s *Segmenter) AddSamples(end int64, samples []fmp4.Sample) error {
	if s.ended {
		return ErrEnded
	}
	granule := end
	var total int64
	for _, smp := range samples {
		total += int64(smp.Duration)
	}
	at := granule - total
	if at < 0 {
		return fmt.Errorf("%w: a page of %d samples ends at %d, before the program began", ErrBackwards, total, granule)
	}
	if s.started && at != s.next {
		if at < s.next {
			return fmt.Errorf("%w: a page starts at %d, the last ended at %d", ErrBackwards, at, s.next)
		}
		s.closePart()
		s.closeSegment()
		s.discNext = true
		s.anchor, s.anchorAt = s.cfg.Now(), granule
	}
	if s.anchor.IsZero() {
		s.anchor, s.anchorAt = s.cfg.Now(), granule
	}
	parts := s.partCount()
	for _, smp := range samples {
		s.addPacket(at, smp)
		at += int64(smp.Duration)
	}
	s.next = granule
	if s.partCount() != parts {
		s.publish()
	}
	return nil
}

// partCount counts the parts made so far, to tell whether a page finished
// one.
func (s *Segmenter) partCount() uint64 {
	n := s.msn * partsPerSegment
	if s.cur != nil {
		n += uint64(len(s.cur.parts))
	}
	return n
}

func (s *Segmenter) addPacket(at int64, smp fmp4.Sample) {
	d := smp.Duration
	if !s.started {
		// A sample that starts on a boundary, or is the first after one
		// (samples that do not divide 2 s rarely start on one).
		if at%segmentSamples >= int64(d) && s.skipped < segmentSamples {
			s.skipped += d
			return
		}
		s.started = true
		s.msn = uint64(at) / segmentSamples
	}
	if len(s.pending) > 0 && s.pendDur+d > s.partTarget {
		s.closePart() // parts never exceed PART-TARGET
	}
	if len(s.pending) == 0 {
		s.pendAt = at
	}
	s.pending = append(s.pending, smp)
	s.pendDur += d
	// The part ends with the sample that reaches the next 200 ms boundary:
	// parts of every node, and every rendition, end alike.
	if at+int64(d) >= nextBoundary(s.pendAt, partSamples) {
		s.closePart()
	}
}

// nextBoundary returns the first multiple of unit after at.
func nextBoundary(at, unit int64) int64 {
	return (at/unit + 1) * unit
}

// closePart turns the pending packets into a part of the current segment,
// opening it if need be.
func (s *Segmenter) closePart() {
	if len(s.pending) == 0 {
		return
	}
	var c segment
	if s.cur != nil {
		c = *s.cur
	} else {
		c = segment{msn: s.msn, start: s.pendAt, pdt: s.wallTime(s.pendAt), discontinuity: s.discNext}
		s.discNext = false
	}
	// mfhd numbers grow across parts and segments alike: 10 a segment.
	seq := uint32(c.msn*partsPerSegment + uint64(len(c.parts)) + 1)
	data := fmp4.AppendFragment(make([]byte, 0, fmp4.FragmentSize(s.pending)), seq, uint64(s.pendAt), s.pending)
	c.parts = append(c.parts, part{data: data, duration: s.pendDur})
	if rate := uint64(len(data)) * 8 * fmp4.Timescale / uint64(s.pendDur); rate > s.peak.Load() {
		s.peak.Store(rate) // only this goroutine writes it
	}
	c.duration += s.pendDur
	s.cur = &c
	s.segSamp = append(s.segSamp, s.pending...)
	clear(s.pending) // drop the references to the packets
	end := s.pendAt + int64(s.pendDur)
	s.pending, s.pendDur = s.pending[:0], 0
	if len(c.parts) == partsPerSegment || end >= nextBoundary(c.start, segmentSamples) {
		s.closeSegment()
	}
}

// wallTime maps a granule to the wall clock, from the anchor taken when
// the stream (or its last discontinuity) began.
func (s *Segmenter) wallTime(granule int64) time.Time {
	return s.anchor.Add(time.Duration(granule-s.anchorAt) * time.Second / fmp4.Timescale)
}

// closeSegment completes the current segment with its whole fragment.
func (s *Segmenter) closeSegment() {
	if s.cur == nil {
		return
	}
	c := *s.cur
	// Numbered as its first part: mfhd numbers still grow for a player
	// that mixes segments and later parts.
	seq := uint32(c.msn*partsPerSegment + 1)
	c.data = fmp4.AppendFragment(make([]byte, 0, fmp4.FragmentSize(s.segSamp)), seq, uint64(c.start), s.segSamp)
	clear(s.segSamp)
	s.segSamp = s.segSamp[:0]
	s.segs = append(s.segs, &c)
	s.cur = nil
	s.msn = c.msn + 1
}

// Bandwidth returns the highest bit rate of a part so far, in bit/s, 0
// before the first: a multivariant playlist's BANDWIDTH, which RFC 8216bis
// §4.4.6.2 wants to be the peak rate. Parts are measured rather than
// segments because a low-latency player fetches parts, each with its own
// moof. It is safe to call from any goroutine.
func (s *Segmenter) Bandwidth() uint64 { return s.peak.Load() }

// Finish ends the program: the pending packets make a last, shorter part,
// and the playlist gets EXT-X-ENDLIST. Later Adds fail with ErrEnded.
func (s *Segmenter) Finish() {
	if s.ended {
		return
	}
	s.closePart()
	s.closeSegment()
	s.ended = true
	s.publish()
}

// publish makes the producer's state the one listeners see, renders its
// playlist, and wakes every request waiting for a change.
func (s *Segmenter) publish() {
	segs := make([]*segment, 0, len(s.segs)+1)
	segs = append(segs, s.segs...)
	if s.cur != nil {
		segs = append(segs, s.cur)
	}
	listed := max(0, len(segs)-s.listedN)
	// A discontinuity leaving the playlist moves into
	// EXT-X-DISCONTINUITY-SEQUENCE (RFC 8216bis §6.2.2), once.
	for _, g := range segs[:listed] {
		if g.msn >= s.unlistedFrom && g.discontinuity {
			s.discSeq++
		}
	}
	if listed > 0 {
		s.unlistedFrom = max(s.unlistedFrom, segs[listed-1].msn+1)
	}
	if drop := listed - retainedUnlisted; drop > 0 {
		clear(s.segs[:drop])
		s.segs = s.segs[drop:]
		segs, listed = segs[drop:], listed-drop
	}
	snap := &snapshot{
		segments: segs,
		listed:   listed,
		discSeq:  s.discSeq,
		ended:    s.ended,
		changed:  make(chan struct{}),
	}
	snap.playlist = s.render(make([]byte, 0, s.lastLen+256), snap)
	snap.gzipped = compress(snap.playlist)
	s.lastLen = len(snap.playlist)
	old := s.state.Swap(snap)
	close(old.changed)
}
