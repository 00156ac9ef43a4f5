// Package clip cuts a range of an Ogg Opus recording into a standalone Ogg
// Opus file without re-encoding: the Opus packets of the range, with a
// pre-roll before it so the decoder has converged by the first sample
// asked for, a pre-skip that drops the pre-roll, and an end trimmed to the
// sample by the last page's granule position (RFC 7845 §4).
//
// Finding the range costs a bisection over the file's pages by granule
// position (RFC 7845 §6's seeking), about log2(size/64 KiB) reads, so a cut
// costs what it copies, whatever the recording's length: no index to keep.
//
// Cutting uses only the standard library and package ogg; drawing a
// clip's waveform (Waveform) decodes it with libopus.
package clip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"

	"github.com/amphi-audio/amphi/internal/ogg"
	"github.com/amphi-audio/amphi/internal/opuspkt"
)

// rate is Opus's granule rate: 48 kHz samples.
const rate = 48000

// PreRoll is how much audio before a clip's start it carries for the
// decoder to converge, dropped by the clip's pre-skip. RFC 7845 §4.6 asks
// for at least 80 ms; measured with libopus on a tone, 80 ms leaves the
// clip's samples up to 130 LSB off the recording's (CELT predicts each
// frame's energy from the last), 160 ms and more 1 LSB, the rounding of
// its float output to 16 bits; 320 ms leaves a margin for speech, whose
// SILK frames keep longer state. It costs 1.3 KB a clip at 32 kbit/s.
const PreRoll = 320 * time.Millisecond

// window is how much a bisection step reads to find a page: one page at
// most spans MaxPageSize.
const window = ogg.MaxPageSize + ogg.HeaderSize

// Errors for recordings and ranges that cannot be cut.
var (
	// ErrNotOpus means the file does not start with Ogg Opus headers.
	ErrNotOpus = errors.New("clip: not an Ogg Opus recording")
	// ErrRange means the range is empty or not within the recording.
	ErrRange = errors.New("clip: the range is not within the recording")
)

// Recording is an Ogg Opus recording opened for cutting.
type Recording struct {
	r      io.ReaderAt
	size   int64
	head   ogg.OpusHead
	serial uint32
	audio  int64 // offset of the first page after the header pages
	end    int64 // granule position of the last page
}

// Open reads the headers and the last page of the recording of size bytes
// in r. A recording still being written can be opened: it ends at its last
// complete page.
func Open(r io.ReaderAt, size int64) (*Recording, error) {
	rec := &Recording{r: r, size: size}
	first, err := rec.pageAt(0)
	if err != nil || first.h.Flags&ogg.FlagBOS == 0 || len(first.packets) != 1 {
		return nil, ErrNotOpus
	}
	if rec.head, err = ogg.ParseOpusHead(first.packets[0]); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotOpus, err)
	}
	rec.serial = first.h.Serial
	// The comment header ends on the first page with a granule position
	// (zero); the audio starts after it.
	off := first.next
	for {
		p, err := rec.pageAt(off)
		if err != nil || p.h.Serial != rec.serial {
			return nil, fmt.Errorf("%w: no comment header", ErrNotOpus)
		}
		off = p.next
		if p.h.Granule != ogg.NoGranule {
			break
		}
	}
	rec.audio = off
	last, err := rec.lastPage()
	if err != nil {
		return nil, err
	}
	rec.end = last.h.Granule
	return rec, nil
}

// Duration is how long the recording plays.
func (rec *Recording) Duration() time.Duration {
	return samplesToDuration(max(rec.end-int64(rec.head.PreSkip), 0))
}

// Head is the recording's identification header.
func (rec *Recording) Head() ogg.OpusHead { return rec.head }

// Seek returns the offset of the page to read a recording from to hear it
// from at, and the recording time that page starts at (at most a page
// before at): what a listener rewinding into a live space's recording
// starts with. A time before the audio is its start.
func (rec *Recording) Seek(at time.Duration) (int64, time.Duration, error) {
	pre := int64(rec.head.PreSkip)
	g := pre + durationToSamples(max(at, 0))
	off, err := rec.seek(g)
	if err != nil {
		return 0, 0, err
	}
	p, err := rec.pageAt(off)
	if err != nil || p.h.Granule > g {
		return rec.audio, 0, nil // at is within the first page
	}
	// The page found ends at or before at: the next one holds it.
	return p.next, samplesToDuration(max(p.h.Granule-pre, 0)), nil
}

// Range is what a cut took: the asked range, to the sample, and the bytes
// written.
type Range struct {
	From, To time.Duration
	Bytes    int64
}

// Cut writes to w the range [from, to) of the recording as a standalone
// Ogg Opus stream whose comment header holds comments ("KEY=value", e.g.
// "TITLE=…"). The range is cut to the sample: the first packet's start is
// moved back by the pre-roll and dropped by pre-skip, and the last page's
// granule ends it exactly.
func (rec *Recording) Cut(w io.Writer, from, to time.Duration, comments ...string) (Range, error) {
	pre := int64(rec.head.PreSkip)
	gFrom, gTo := pre+durationToSamples(from), pre+durationToSamples(to)
	if from < 0 || gTo <= gFrom || gTo > rec.end {
		return Range{}, ErrRange
	}
	pkts, err := rec.packets(max(gFrom-durationToSamples(PreRoll), 0), gTo)
	if err != nil {
		return Range{}, err
	}
	if len(pkts) == 0 || pkts[0].Start > gFrom || pkts[len(pkts)-1].End < gTo {
		return Range{}, fmt.Errorf("clip: the recording has no audio for all of [%v, %v)", from, to)
	}
	base := pkts[0].Start
	cw := &countingWriter{w: w}
	out := writer{w: cw, serial: rec.clipSerial(from, to)}
	if err := out.headers(rec.head, gFrom-base, comments); err != nil {
		return Range{}, err
	}
	for i, p := range pkts {
		granule := p.End - base
		last := i == len(pkts)-1
		if last {
			granule = gTo - base // end trimming: the decoder drops the rest
		}
		if err := out.add(p.Data, granule, last); err != nil {
			return Range{}, err
		}
	}
	return Range{From: from, To: to, Bytes: cw.n}, nil
}

// Packet is one Opus packet of a recording: its bytes and the granule
// positions it spans.
type Packet struct {
	Data       []byte
	Start, End int64
}

// Packets returns the recording's packets that start at granule positions
// in [from, to): consecutive ranges share none, so a recording can be
// served as segments (an HLS replay).
func (rec *Recording) Packets(from, to int64) ([]Packet, error) {
	pkts, err := rec.packets(from, to)
	if err != nil {
		return nil, err
	}
	first := 0
	for first < len(pkts) && pkts[first].Start < from {
		first++
	}
	return pkts[first:], nil
}

// End is the granule position the recording's audio ends at.
func (rec *Recording) End() int64 { return rec.end }

// packets returns the recording's packets that end after from, up to the
// first that starts at or after to.
func (rec *Recording) packets(from, to int64) ([]Packet, error) {
	off, err := rec.seek(from)
	if err != nil {
		return nil, err
	}
	var out []Packet
	var partial []byte // a packet begun on an earlier page
	for off < rec.size {
		p, err := rec.pageAt(off)
		if err != nil {
			break // a torn last page: the recording ends before it
		}
		off = p.next
		if p.h.Serial != rec.serial {
			continue
		}
		pieces := p.packets
		// Join a packet continued from the previous page; one whose
		// beginning was before our first page is dropped.
		if p.h.Flags&ogg.FlagContinued != 0 && len(pieces) > 0 {
			if partial != nil {
				pieces[0] = append(partial, pieces[0]...)
			} else {
				pieces = pieces[1:]
			}
			partial = nil
		}
		if p.lastContinues && len(pieces) > 0 {
			partial = append([]byte(nil), pieces[len(pieces)-1]...)
			pieces = pieces[:len(pieces)-1]
		}
		if p.h.Granule == ogg.NoGranule {
			continue
		}
		// The packets ending on the page end at its granule position:
		// work their spans out backwards.
		end := p.h.Granule
		spans := make([]Packet, len(pieces))
		for i := len(pieces) - 1; i >= 0; i-- {
			n, ok := opuspkt.Samples(pieces[i])
			if !ok {
				return nil, fmt.Errorf("clip: a malformed Opus packet in page %d", p.h.Seq)
			}
			spans[i] = Packet{Data: pieces[i], Start: end - int64(n), End: end}
			end -= int64(n)
		}
		for _, sp := range spans {
			if sp.Start >= to {
				return out, nil
			}
			if sp.End > from {
				out = append(out, sp)
			}
		}
	}
	return out, nil
}

// seek returns the offset of the last audio page whose granule position is
// at most g (the audio's first page if none), found by bisection: reading
// on from there, the first packet ending after it is met.
func (rec *Recording) seek(g int64) (int64, error) {
	lo, hi := rec.audio, rec.size
	for hi-lo > window {
		mid := lo + (hi-lo)/2
		p, err := rec.syncGranule(mid, hi)
		if err != nil || p.h.Granule > g {
			hi = mid
			continue
		}
		lo = p.off
	}
	// A short walk from lo to the last page at or before g.
	best := rec.audio
	for off := lo; off < rec.size; {
		p, err := rec.pageAt(off)
		if err != nil {
			break
		}
		if p.h.Granule != ogg.NoGranule {
			if p.h.Granule > g {
				break
			}
			best = p.off
		}
		off = p.next
	}
	return best, nil
}

// syncGranule returns the first page at or after off, and before limit,
// that belongs to the recording and has a granule position.
func (rec *Recording) syncGranule(off, limit int64) (page, error) {
	for off < limit {
		p, err := rec.sync(off, limit)
		if err != nil {
			return page{}, err
		}
		if p.h.Serial == rec.serial && p.h.Granule != ogg.NoGranule {
			return p, nil
		}
		off = p.next
	}
	return page{}, io.EOF
}

// sync returns the first valid page that starts at or after off and
// before limit: its capture pattern found, its checksum right.
func (rec *Recording) sync(off, limit int64) (page, error) {
	buf := make([]byte, window)
	for off < limit {
		n, err := rec.r.ReadAt(buf, off)
		if n == 0 {
			if err == nil {
				err = io.EOF
			}
			return page{}, err
		}
		b := buf[:n]
		for i := 0; ; i++ {
			j := bytes.Index(b[i:], []byte("OggS"))
			if j < 0 || off+int64(i+j) >= limit {
				break
			}
			i += j
			if p, err := rec.pageAt(off + int64(i)); err == nil {
				return p, nil
			}
		}
		if n < len(buf) {
			break
		}
		off += int64(n) - 3 // a pattern across the boundary is seen next time
	}
	return page{}, io.EOF
}

// lastPage returns the recording's last valid page, searching back from
// the end a window at a time.
func (rec *Recording) lastPage() (page, error) {
	for from := rec.size; from > rec.audio; {
		start := max(from-window, rec.audio)
		var last page
		found := false
		for off := start; off < from; {
			p, err := rec.sync(off, from)
			if err != nil {
				break
			}
			if p.h.Serial == rec.serial && p.h.Granule != ogg.NoGranule {
				last, found = p, true
			}
			off = p.next
		}
		if found {
			return last, nil
		}
		from = start
	}
	return page{}, fmt.Errorf("clip: the recording has no audio pages")
}

// page is one page read from the recording.
type page struct {
	h             ogg.Header
	off, next     int64
	packets       [][]byte // its packet pieces
	lastContinues bool
}

// pageAt reads and checks the page at off.
func (rec *Recording) pageAt(off int64) (page, error) {
	var hdr [ogg.HeaderSize + ogg.MaxSegments]byte
	n, err := rec.r.ReadAt(hdr[:], off)
	if n < ogg.HeaderSize {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return page{}, err
	}
	h, err := ogg.ParseHeader(hdr[:n])
	if err != nil {
		return page{}, err
	}
	if n < h.Len() {
		return page{}, io.ErrUnexpectedEOF
	}
	body, _ := ogg.Lacing(hdr[ogg.HeaderSize:h.Len()])
	raw := make([]byte, h.Len()+body)
	if n, _ := rec.r.ReadAt(raw, off); n < len(raw) {
		return page{}, io.ErrUnexpectedEOF
	}
	sum := binary.LittleEndian.Uint32(raw[22:26])
	clear(raw[22:26])
	if ogg.Checksum(raw) != sum {
		return page{}, ogg.ErrChecksum
	}
	binary.LittleEndian.PutUint32(raw[22:26], sum)
	p := page{h: h, off: off, next: off + int64(len(raw))}
	p.packets, p.lastContinues, err = ogg.AppendPieces(nil, raw)
	return p, err
}

// clipSerial is the clip's stream serial: a function of the recording and
// the range, so that the same cut gives the same bytes.
func (rec *Recording) clipSerial(from, to time.Duration) uint32 {
	var b [20]byte
	binary.LittleEndian.PutUint32(b[:], rec.serial)
	binary.LittleEndian.PutUint64(b[4:], uint64(from))
	binary.LittleEndian.PutUint64(b[12:], uint64(to))
	return crc32.ChecksumIEEE(b[:])
}

// pagePackets bounds the packets on one page of a clip: a second of 20 ms
// packets, as ffmpeg writes them.
const pagePackets = 50

// writer writes a clip's pages.
type writer struct {
	w      io.Writer
	serial uint32
	seq    uint32
	page   ogg.Page
	// segments is the lacing values page's packets take.
	segments int
	buf      []byte
}

func (o *writer) headers(head ogg.OpusHead, preSkip int64, comments []string) error {
	if preSkip < 0 || preSkip > 0xffff {
		return fmt.Errorf("clip: pre-skip %d out of range", preSkip)
	}
	idHeader := ogg.AppendOpusHead(nil, head.Channels, uint16(preSkip), head.InputRate)
	if err := o.write(&ogg.Page{Flags: ogg.FlagBOS, Packets: [][]byte{idHeader}}); err != nil {
		return err
	}
	return o.write(&ogg.Page{Packets: [][]byte{ogg.AppendOpusTags(nil, "amphi", comments...)}})
}

// add puts a packet ending at granule on the current page, writing the
// page when it is full or the packet is the last.
func (o *writer) add(pkt []byte, granule int64, last bool) error {
	segments := len(pkt)/255 + 1
	if o.segments+segments > ogg.MaxSegments {
		// It does not fit: the page goes out without it.
		if err := o.flush(); err != nil {
			return err
		}
	}
	o.page.Packets = append(o.page.Packets, pkt)
	o.segments += segments
	o.page.Granule = granule
	if last {
		o.page.Flags |= ogg.FlagEOS
	}
	if last || len(o.page.Packets) == pagePackets {
		return o.flush()
	}
	return nil
}

func (o *writer) flush() error {
	err := o.write(&o.page)
	o.page.Packets, o.page.Flags, o.segments = o.page.Packets[:0], 0, 0
	return err
}

func (o *writer) write(p *ogg.Page) error {
	p.Serial, p.Seq = o.serial, o.seq
	o.seq++
	var err error
	if o.buf, err = ogg.AppendPage(o.buf[:0], p); err != nil {
		return err
	}
	_, err = o.w.Write(o.buf)
	return err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

func durationToSamples(d time.Duration) int64 {
	return int64(d) * rate / int64(time.Second)
}

func samplesToDuration(n int64) time.Duration {
	return time.Duration(n * int64(time.Second) / rate)
}
