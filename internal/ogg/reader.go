package ogg

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MaxPacketSize is the largest packet ReadPacket reassembles. An Opus packet
// is at most a few kilobytes (120 ms at 510 kbit/s is under 8 KiB); the
// headers are small. The cap keeps a hostile stream from making the reader
// buffer without bound.
const MaxPacketSize = 1 << 20

// Errors for malformed input. Errors returned by Reader wrap one of these, or
// io.ErrUnexpectedEOF for a stream that ends inside a page.
var (
	// ErrCapture means the bytes where a page should start are not "OggS".
	ErrCapture = errors.New("ogg: missing capture pattern")
	// ErrVersion means a page header has a stream structure version other
	// than 0.
	ErrVersion = errors.New("ogg: unsupported stream structure version")
	// ErrChecksum means a page's CRC does not match its content.
	ErrChecksum = errors.New("ogg: checksum mismatch")
	// ErrPacketTooLarge means a packet spans more than MaxPacketSize bytes.
	ErrPacketTooLarge = errors.New("ogg: packet too large")
)

// Reader reads Ogg pages, or the packets they carry, from a stream. It
// buffers its input, so it may read past the last page it returns. Its
// memory is bounded: one page (at most MaxPageSize bytes) plus one packet
// being reassembled (at most MaxPacketSize bytes).
//
// After any error, every later call returns the same error. A Reader is not
// safe for concurrent use.
type Reader struct {
	r   *bufio.Reader
	off int64  // bytes of input consumed by whole pages so far
	raw []byte // the page being read, reused
	err error  // sticky

	// Packet reassembly state for ReadPacket.
	page     *Page  // page whose packets are being handed out
	next     int    // index in page.Packets of the next piece
	partial  []byte // packet begun on an earlier page, owned by the caller once returned
	inPacket bool   // partial holds the head of an unfinished packet
	serial   uint32 // logical stream of partial
}

// NewReader returns a Reader reading from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: bufio.NewReader(r)}
}

// readRaw reads and validates the next page into r.raw and returns it. It
// returns io.EOF when the input ends cleanly before a page, and an error
// wrapping io.ErrUnexpectedEOF when it ends inside one.
func (r *Reader) readRaw() ([]byte, error) {
	if cap(r.raw) < HeaderSize+MaxSegments {
		r.raw = make([]byte, 0, 4096)
	}
	hdr := r.raw[:HeaderSize]
	if _, err := io.ReadFull(r.r, hdr); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, r.wrap(err)
	}
	h, err := ParseHeader(hdr)
	if err != nil {
		return nil, r.wrap(err)
	}
	head := r.raw[:h.Len()]
	if err := readFull(r.r, head[HeaderSize:]); err != nil {
		return nil, r.wrap(err)
	}
	body, _ := Lacing(head[HeaderSize:])
	size := len(head) + body
	if cap(r.raw) < size {
		grown := make([]byte, size, max(size, MaxPageSize))
		copy(grown, head)
		r.raw = grown[:0]
	}
	page := r.raw[:size]
	if err := readFull(r.r, page[len(head):]); err != nil {
		return nil, r.wrap(err)
	}
	want, got := binary.LittleEndian.Uint32(page[22:]), pageChecksum(page)
	if got != want {
		return nil, r.wrap(fmt.Errorf("%w: stored %#08x, computed %#08x", ErrChecksum, want, got))
	}
	r.off += int64(size)
	return page, nil
}

// readFull is io.ReadFull where running out of input is always
// io.ErrUnexpectedEOF, since it is only used inside a page.
func readFull(r io.Reader, b []byte) error {
	_, err := io.ReadFull(r, b)
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// wrap adds the offset of the page being read to err.
func (r *Reader) wrap(err error) error {
	return fmt.Errorf("ogg: page at byte %d: %w", r.off, err)
}

// ReadPage reads the next page. It checks the capture pattern, the version
// and the checksum. The Packets of the returned page are its packet pieces
// as described on Page; they share one newly allocated buffer that the
// caller may keep. ReadPage returns io.EOF when the input ends between
// pages, and an error wrapping io.ErrUnexpectedEOF when it ends inside one.
//
// Calls to ReadPage and ReadPacket should not be mixed: ReadPacket may have
// read pages whose packets it has not returned yet.
func (r *Reader) ReadPage() (*Page, error) {
	if r.err != nil {
		return nil, r.err
	}
	raw, err := r.readRaw()
	if err != nil {
		r.err = err
		return nil, err
	}
	// The page's own checks passed in readRaw, so it parses.
	h, _ := ParseHeader(raw)
	_, npkt := Lacing(raw[HeaderSize:h.Len()])
	p := &Page{Flags: h.Flags, Granule: h.Granule, Serial: h.Serial, Seq: h.Seq}
	// One copy of the page that the pieces share, for the caller to keep.
	p.Packets, p.LastContinues, _ = appendPieces(make([][]byte, 0, npkt+1), h, bytes.Clone(raw))
	return p, nil
}

// ReadPacket returns the next packet, reassembled across pages when it
// spans several, and the granule position of the page it ends on (NoGranule
// if that page, wrongly, has none). It returns io.EOF at the clean end of
// the input. A packet larger than MaxPacketSize is an error.
//
// The stream is taken to hold one logical bitstream, as Ogg Opus does; pages
// of several are returned in page order. As libogg does, ReadPacket drops
// a piece whose start it never saw (a stream read from the middle), and a
// packet whose end never came (the next page does not continue it).
//
// The returned packet is the caller's to keep.
func (r *Reader) ReadPacket() (pkt []byte, granule int64, err error) {
	for {
		if r.page == nil || r.next == len(r.page.Packets) {
			p, err := r.ReadPage()
			if err != nil {
				return nil, 0, err
			}
			r.startPage(p)
			continue
		}
		p := r.page
		i := r.next
		r.next++
		piece := p.Packets[i]
		continues := i == len(p.Packets)-1 && p.LastContinues
		joins := i == 0 && p.Flags&FlagContinued != 0
		switch {
		case joins && !r.inPacket:
			// The tail of a packet we never saw the start of.
			continue
		case joins:
			if len(r.partial)+len(piece) > MaxPacketSize {
				r.err = fmt.Errorf("%w: over %d bytes", ErrPacketTooLarge, MaxPacketSize)
				return nil, 0, r.err
			}
			r.partial = append(r.partial, piece...)
		case continues:
			r.partial = append(make([]byte, 0, 2*len(piece)), piece...)
		default:
			return piece, p.Granule, nil
		}
		if continues {
			r.inPacket, r.serial = true, p.Serial
			continue
		}
		pkt, r.partial, r.inPacket = r.partial, nil, false
		return pkt, p.Granule, nil
	}
}

// startPage makes p the page ReadPacket hands out packets from, dropping an
// unfinished packet that p does not continue.
func (r *Reader) startPage(p *Page) {
	if r.inPacket && (p.Flags&FlagContinued == 0 || p.Serial != r.serial) {
		r.partial, r.inPacket = nil, false
	}
	r.page, r.next = p, 0
}

// ValidPrefix reads r to its end and returns the length n of the longest
// prefix of r made of complete pages with a correct capture pattern, version
// and checksum; the granule position of the last of those pages that has one
// (NoGranule if none); and how many pages the prefix holds.
//
// A crash-recovery tool truncates a recording cut off mid-write to n bytes.
// A torn or corrupt page ends the prefix and is not an error; err is only
// for failures to read r.
func ValidPrefix(r io.Reader) (n int64, lastGranule int64, pages int, err error) {
	p, err := ScanPrefix(r)
	return p.Len, p.Granule, p.Pages, err
}

// Prefix describes the longest prefix of a stream made of valid pages.
type Prefix struct {
	// Len is the prefix's length in bytes.
	Len int64
	// Pages is how many pages it holds.
	Pages int
	// Granule is the granule position of the last page that has one,
	// NoGranule if none does.
	Granule int64
	// Last is the header of its last page; the zero Header when Pages is 0.
	Last Header
}

// ScanPrefix reads r to its end and describes its longest prefix of
// complete, valid pages, as ValidPrefix does, with the last page's header:
// what a writer continuing the stream after a crash numbers its pages from.
func ScanPrefix(r io.Reader) (Prefix, error) {
	rd := NewReader(r)
	p := Prefix{Granule: NoGranule}
	for {
		page, err := rd.readRaw()
		switch {
		case err == nil:
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
			errors.Is(err, ErrCapture), errors.Is(err, ErrVersion), errors.Is(err, ErrChecksum):
			p.Len = rd.off
			return p, nil
		default:
			p.Len = rd.off
			return p, fmt.Errorf("ogg: valid prefix: %w", err)
		}
		p.Pages++
		p.Last, _ = ParseHeader(page)
		if p.Last.Granule != NoGranule {
			p.Granule = p.Last.Granule
		}
	}
}
