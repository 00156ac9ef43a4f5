package load

import (
	"encoding/binary"
	"errors"
)

// Sizes of an Ogg page header (RFC 3533 §6): 27 fixed bytes, then one
// lacing value per segment.
const (
	oggHeaderSize  = 27
	oggMaxSegments = 255
)

// errNotOgg means the stream lost Ogg page framing.
var errNotOgg = errors.New("load: not an Ogg page")

// pageInfo is what a listener needs of one Ogg page.
type pageInfo struct {
	Flags   byte
	Granule int64
	// Packets counts the packets that end on the page (lacing values
	// below 255).
	Packets int
	// Size is the page's length in bytes, header included.
	Size int
}

// pageScanner finds Ogg page boundaries in a byte stream cut at arbitrary
// points, without copying page bodies or checking CRCs: a listener only
// needs to know when a page has arrived, its packets and granule position.
// The header of a page split across reads is gathered in hdr, so the
// scanner allocates nothing.
type pageScanner struct {
	hdr  [oggHeaderSize + oggMaxSegments]byte
	have int // bytes of hdr gathered
	need int // bytes of hdr wanted: 27, then 27 + segments
	body int // body bytes of the current page still to skip; -1 in the header
	page pageInfo
}

// Next consumes bytes of b up to the end of one page. It returns how many
// it consumed and, when a page ended within them, the page and ok true.
// Call it again with b[n:] until b is consumed.
func (s *pageScanner) Next(b []byte) (n int, p pageInfo, ok bool, err error) {
	if s.need == 0 {
		s.need, s.body = oggHeaderSize, -1
	}
	for {
		if s.body < 0 {
			c := copy(s.hdr[s.have:s.need], b[n:])
			s.have += c
			n += c
			if s.have < s.need {
				return n, p, false, nil
			}
			if s.need == oggHeaderSize {
				if string(s.hdr[:4]) != "OggS" || s.hdr[4] != 0 {
					return n, p, false, errNotOgg
				}
				if s.hdr[26] > 0 {
					s.need += int(s.hdr[26])
					continue
				}
			}
			s.startBody()
		}
		c := min(s.body, len(b)-n)
		s.body -= c
		n += c
		if s.body > 0 {
			return n, p, false, nil
		}
		p = s.page
		s.have, s.need, s.body = 0, oggHeaderSize, -1
		return n, p, true, nil
	}
}

// startBody reads the complete header gathered in hdr.
func (s *pageScanner) startBody() {
	body, packets := 0, 0
	for _, v := range s.hdr[oggHeaderSize:s.need] {
		body += int(v)
		if v < 255 {
			packets++
		}
	}
	s.page = pageInfo{
		Flags:   s.hdr[5],
		Granule: int64(binary.LittleEndian.Uint64(s.hdr[6:14])),
		Packets: packets,
		Size:    s.need + body,
	}
	s.body = body
}
