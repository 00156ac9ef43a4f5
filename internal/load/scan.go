package load

import (
	"fmt"

	"github.com/amphi-audio/amphi/internal/ogg"
)

// pageInfo is what a listener needs of one Ogg page.
type pageInfo struct {
	Flags   byte
	Granule int64
	// Seq is the page sequence number: an amphi chunk's number plus
	// headerPages.
	Seq uint32
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
	hdr  [ogg.HeaderSize + ogg.MaxSegments]byte
	have int        // bytes of hdr gathered
	need int        // bytes of hdr wanted: the fixed header, then its lacing values too
	body int        // body bytes of the current page still to skip; -1 in the header
	h    ogg.Header // the current page's fixed header, once gathered
	page pageInfo
}

// Next consumes bytes of b up to the end of one page. It returns how many
// it consumed and, when a page ended within them, the page and ok true.
// Call it again with b[n:] until b is consumed.
func (s *pageScanner) Next(b []byte) (n int, p pageInfo, ok bool, err error) {
	if s.need == 0 {
		s.need, s.body = ogg.HeaderSize, -1
	}
	for {
		if s.body < 0 {
			c := copy(s.hdr[s.have:s.need], b[n:])
			s.have += c
			n += c
			if s.have < s.need {
				return n, p, false, nil
			}
			if s.need == ogg.HeaderSize {
				if s.h, err = ogg.ParseHeader(s.hdr[:]); err != nil {
					return n, p, false, fmt.Errorf("load: listener stream: %w", err)
				}
				if s.h.Segments > 0 {
					s.need = s.h.Len()
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
		s.have, s.need, s.body = 0, ogg.HeaderSize, -1
		return n, p, true, nil
	}
}

// startBody reads the complete header gathered in hdr.
func (s *pageScanner) startBody() {
	body, packets := ogg.Lacing(s.hdr[ogg.HeaderSize:s.need])
	s.page = pageInfo{Flags: s.h.Flags, Granule: s.h.Granule, Seq: s.h.Seq, Packets: packets, Size: s.need + body}
	s.body = body
}
