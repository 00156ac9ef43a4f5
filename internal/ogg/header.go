package ogg

import (
	"encoding/binary"
	"io"
)

// Header is the fixed part of a page header (RFC 3533 §6), read in place:
// what the edge, the recorder and the load tool's listeners need of a page
// without copying it or checking its CRC.
type Header struct {
	// Flags is a combination of FlagContinued, FlagBOS and FlagEOS.
	Flags byte
	// Granule is the page's granule position, NoGranule when no packet
	// ends on it.
	Granule int64
	// Serial identifies the logical bitstream.
	Serial uint32
	// Seq is the page sequence number.
	Seq uint32
	// Segments is how many lacing values follow the fixed header.
	Segments int
}

// Len returns the length of the whole header: the fixed part and the
// lacing values.
func (h Header) Len() int { return HeaderSize + h.Segments }

// ParseHeader reads the fixed header at the start of b. It fails with
// io.ErrUnexpectedEOF when b is shorter than HeaderSize, ErrCapture when b
// does not start with "OggS" and ErrVersion for a version other than 0. It
// does not check the checksum, and it allocates nothing.
func ParseHeader(b []byte) (Header, error) {
	switch {
	case len(b) < HeaderSize:
		return Header{}, io.ErrUnexpectedEOF
	case string(b[:4]) != "OggS":
		return Header{}, ErrCapture
	case b[4] != 0:
		return Header{}, ErrVersion
	}
	return Header{
		Flags:    b[5],
		Granule:  int64(binary.LittleEndian.Uint64(b[6:])),
		Serial:   binary.LittleEndian.Uint32(b[14:]),
		Seq:      binary.LittleEndian.Uint32(b[18:]),
		Segments: int(b[26]),
	}, nil
}

// Lacing sums a page's lacing values: the size of its body in bytes, and how
// many packets end on the page (values below 255).
func Lacing(values []byte) (body, packets int) {
	for _, v := range values {
		body += int(v)
		if v < 255 {
			packets++
		}
	}
	return body, packets
}

// AppendPackets appends to dst the packets that begin and end on page, one
// whole page with its header, as slices of page capped at their length, and
// returns the extended slice. The tail of a packet begun on the previous page
// (FlagContinued) and the head of one finished on the next are left out: a
// reader that joins a stream mid-way, or whose pages each hold whole
// packets, needs no reassembly. It fails with io.ErrUnexpectedEOF when page
// is shorter than its lacing values say, and allocates only when dst must
// grow.
func AppendPackets(dst [][]byte, page []byte) ([][]byte, error) {
	h, err := ParseHeader(page)
	if err != nil {
		return dst, err
	}
	n := len(dst)
	dst, last, err := appendPieces(dst, h, page)
	if err != nil {
		return dst[:n], err
	}
	if last {
		dst = dst[:len(dst)-1]
	}
	if h.Flags&FlagContinued != 0 && len(dst) > n {
		dst = append(dst[:n], dst[n+1:]...)
	}
	return dst, nil
}

// AppendPieces appends to dst the packet pieces of page, one whole page
// with its header, as slices of page capped at their length, and reports
// whether the last piece goes on in the next page: what a reader that
// joins packets across pages needs (the first piece is the tail of a
// packet begun on the previous page when the header has FlagContinued).
func AppendPieces(dst [][]byte, page []byte) (pieces [][]byte, lastContinues bool, err error) {
	h, err := ParseHeader(page)
	if err != nil {
		return dst, false, err
	}
	return appendPieces(dst, h, page)
}

// appendPieces is AppendPieces for a page whose header is h.
func appendPieces(dst [][]byte, h Header, page []byte) (pieces [][]byte, lastContinues bool, err error) {
	if len(page) < h.Len() {
		return dst, false, io.ErrUnexpectedEOF
	}
	lacing := page[HeaderSize:h.Len()]
	start, end := h.Len(), h.Len()
	for _, v := range lacing {
		end += int(v)
		if end > len(page) {
			return dst, false, io.ErrUnexpectedEOF
		}
		if v < 255 {
			dst = append(dst, page[start:end:end])
			start = end
		}
	}
	if lastContinues = len(lacing) > 0 && lacing[len(lacing)-1] == 255; lastContinues {
		dst = append(dst, page[start:end:end])
	}
	return dst, lastContinues, nil
}

// Renumber sets the granule position and sequence number of page, one whole
// page, in place and recomputes its checksum: how a writer moves a page
// already built to another place in its stream.
func Renumber(page []byte, granule int64, seq uint32) {
	binary.LittleEndian.PutUint64(page[6:], uint64(granule))
	binary.LittleEndian.PutUint32(page[18:], seq)
	binary.LittleEndian.PutUint32(page[22:], pageChecksum(page))
}

// pageChecksum returns the checksum of page, one whole page, computed with
// its checksum field zeroed as RFC 3533 says; page is left as it was.
func pageChecksum(page []byte) uint32 {
	stored := binary.LittleEndian.Uint32(page[22:])
	binary.LittleEndian.PutUint32(page[22:], 0)
	sum := Checksum(page)
	binary.LittleEndian.PutUint32(page[22:], stored)
	return sum
}
