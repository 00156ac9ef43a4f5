// Package ogg writes and reads Ogg pages (RFC 3533) and the Ogg Opus
// identification and comment headers (RFC 7845).
//
// It knows nothing about amphi: the mixer's Opus packets and their granule
// positions go in, bytes come out. The edge serves those pages to listeners as
// progressive Ogg Opus, the recorder writes them to disk, and the recovery tool
// uses [ValidPrefix] to cut a recording killed mid-write back to its last
// complete page. Writers are append-style, like encoding/binary's Append
// functions, so the hot path can reuse one buffer and allocate nothing.
//
// The package uses only the standard library.
package ogg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// Header type flags (RFC 3533 §6), set in [Page.Flags].
const (
	// FlagContinued marks a page whose first packet continues one begun on
	// the previous page.
	FlagContinued = 1
	// FlagBOS marks the first page of a logical bitstream.
	FlagBOS = 2
	// FlagEOS marks the last page of a logical bitstream.
	FlagEOS = 4
)

// Sizes of the parts of a page, in bytes.
const (
	// HeaderSize is the fixed part of a page header, before the lacing values.
	HeaderSize = 27
	// MaxSegments is the most lacing values (segments) one page can hold.
	MaxSegments = 255
	// MaxPageSize is the largest possible page: header, 255 lacing values
	// and 255 segments of 255 bytes.
	MaxPageSize = HeaderSize + MaxSegments + MaxSegments*255
)

// NoGranule is the granule position of a page on which no packet ends.
const NoGranule int64 = -1

// Page is one Ogg page.
//
// When writing, Packets are whole packets, except that the first one is the
// tail of a packet begun on the previous page when Flags has FlagContinued,
// and the last one is the head of a packet finished on the next page when
// LastContinues is set. When reading, Packets are the packet pieces of the
// page in the same sense.
type Page struct {
	// Flags is a combination of FlagContinued, FlagBOS and FlagEOS.
	Flags byte
	// Granule is the granule position after the last packet that ends on the
	// page (for Opus: 48 kHz samples, pre-skip included), or NoGranule (-1)
	// when no packet ends on the page.
	Granule int64
	// Serial identifies the logical bitstream.
	Serial uint32
	// Seq is the page sequence number within the logical bitstream.
	Seq uint32
	// Packets holds the packets, or packet pieces, carried by the page.
	Packets [][]byte
	// LastContinues says the last element of Packets is not a whole packet:
	// it goes on at the start of the next page, which must have
	// FlagContinued. When writing, that piece's length must be a non-zero
	// multiple of 255, since a lacing value below 255 would end the packet.
	// False (the zero value) means the last packet ends on this page.
	LastContinues bool
}

// Errors returned by AppendPage.
var (
	// ErrTooManySegments means the packets need more than 255 lacing values;
	// split them over more pages.
	ErrTooManySegments = errors.New("ogg: packets need more than 255 segments")
	// ErrBadContinuation means LastContinues was set but the last packet is
	// empty or its length is not a multiple of 255.
	ErrBadContinuation = errors.New("ogg: continued piece must be a non-zero multiple of 255 bytes")
)

// AppendPage appends the page p, with its header, lacing values, data and
// checksum, to dst and returns the extended buffer. It allocates only when
// dst must grow, so a caller that reuses dst allocates nothing. On error dst
// is returned unchanged.
func AppendPage(dst []byte, p *Page) ([]byte, error) {
	nseg, ndata := 0, 0
	for i, pkt := range p.Packets {
		n := len(pkt)
		ndata += n
		if i == len(p.Packets)-1 && p.LastContinues {
			if n == 0 || n%255 != 0 {
				return dst, ErrBadContinuation
			}
			nseg += n / 255
			continue
		}
		// A packet of n bytes takes n/255 full segments and a final one
		// below 255, possibly 0, that marks its end.
		nseg += n/255 + 1
	}
	if nseg > MaxSegments {
		return dst, fmt.Errorf("%w: %d", ErrTooManySegments, nseg)
	}

	start := len(dst)
	dst = slices.Grow(dst, HeaderSize+nseg+ndata)
	dst = append(dst, 'O', 'g', 'g', 'S', 0, p.Flags)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(p.Granule))
	dst = binary.LittleEndian.AppendUint32(dst, p.Serial)
	dst = binary.LittleEndian.AppendUint32(dst, p.Seq)
	dst = append(dst, 0, 0, 0, 0, byte(nseg)) // checksum filled in below
	for i, pkt := range p.Packets {
		n := len(pkt)
		for ; n >= 255; n -= 255 {
			dst = append(dst, 255)
		}
		if !(i == len(p.Packets)-1 && p.LastContinues) {
			dst = append(dst, byte(n))
		}
	}
	for _, pkt := range p.Packets {
		dst = append(dst, pkt...)
	}
	binary.LittleEndian.PutUint32(dst[start+22:], Checksum(dst[start:]))
	return dst, nil
}

// crcTables are the tables for Ogg's CRC-32: polynomial 0x04c11db7, bits
// not reflected, initial value 0, no final xor (RFC 3533 §6). That differs
// from hash/crc32's IEEE variant, which is reflected and inverted.
// crcTables[0] is the classic byte-at-a-time table; crcTables[k][i] is the
// CRC of byte i followed by k zero bytes, which lets Checksum fold in eight
// bytes per step ("slicing-by-8"), about four times faster.
var crcTables = func() (t [8][256]uint32) {
	const poly = 0x04c11db7
	for i := range t[0] {
		r := uint32(i) << 24
		for range 8 {
			if r&0x80000000 != 0 {
				r = r<<1 ^ poly
			} else {
				r <<= 1
			}
		}
		t[0][i] = r
	}
	for k := 1; k < len(t); k++ {
		for i := range t[k] {
			prev := t[k-1][i]
			t[k][i] = prev<<8 ^ t[0][prev>>24]
		}
	}
	return t
}()

// Checksum returns the Ogg CRC-32 of b. For a page, b is the whole page with
// its checksum field (bytes 22 to 25) set to zero.
func Checksum(b []byte) uint32 {
	t := &crcTables
	var crc uint32
	for len(b) >= 8 {
		crc ^= binary.BigEndian.Uint32(b)
		crc = t[7][crc>>24] ^ t[6][crc>>16&0xff] ^ t[5][crc>>8&0xff] ^ t[4][crc&0xff] ^
			t[3][b[4]] ^ t[2][b[5]] ^ t[1][b[6]] ^ t[0][b[7]]
		b = b[8:]
	}
	for _, v := range b {
		crc = crc<<8 ^ t[0][byte(crc>>24)^v]
	}
	return crc
}
