// Package program is the program stream between the mixer and everyone who
// reads it: 20 ms Opus frames packed into sequence-numbered chunks, each one
// finished Ogg page, kept in an in-memory ring that listeners read as cursors.
//
// A chunk's page is built once, where the frames are packed, and every edge,
// listener and the recorder use the same bytes: page sequence numbers and
// granule positions follow from the chunk's sequence number, so any node that
// knows the space's Ogg serial number builds identical header pages.
package program

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/ogg"
)

// The program's Ogg Opus framing; its timing is amphi's media format
// (amphi.FrameDuration, amphi.FramesPerChunk).
const (
	// PreSkip is the encoder's lookahead at 48 kHz that players discard at
	// the start (RFC 7845 §4.2); libopus's is 312 samples in the VoIP and
	// audio applications.
	PreSkip = 312
	// headerPages is the number of pages before the first chunk: OpusHead
	// and OpusTags.
	headerPages = 2
)

// Chunk is one page of the program. Chunks are immutable once published:
// readers share them without locks.
type Chunk struct {
	// Seq counts chunks from 0 at the program's start.
	Seq uint64
	// End marks the program's last chunk; its page carries the EOS flag.
	End bool
	// Page is the complete Ogg page.
	Page []byte
}

// Duration returns the program time at the end of the chunk.
func (c *Chunk) Duration() time.Duration {
	return time.Duration(c.Seq+1) * amphi.ChunkDuration
}

// Headers returns the OpusHead and OpusTags pages of a program with the given
// Ogg serial number: what every listener receives first.
func Headers(serial uint32) []byte {
	var buf []byte
	head := ogg.AppendOpusHead(nil, 1, PreSkip, amphi.SampleRate)
	buf, err := ogg.AppendPage(buf, &ogg.Page{Flags: ogg.FlagBOS, Granule: 0, Serial: serial, Seq: 0, Packets: [][]byte{head}})
	if err != nil {
		panic(err) // one small packet always fits a page
	}
	tags := ogg.AppendOpusTags(nil, "amphi", "ENCODER=amphi")
	buf, err = ogg.AppendPage(buf, &ogg.Page{Granule: 0, Serial: serial, Seq: 1, Packets: [][]byte{tags}})
	if err != nil {
		panic(err)
	}
	return buf
}

// Packer groups the mixer's frames into chunks. It is used by one goroutine.
type Packer struct {
	serial  uint32
	seq     uint64
	frames  [][]byte
	lastEnd int64 // granule at the end of the last chunk
	done    bool
}

// NewPacker returns a packer for a program with the Ogg serial number.
func NewPacker(serial uint32) *Packer { return NewPackerAt(serial, Position{}) }

// Position is where a program goes on: the sequence number of its next
// chunk and the granule position its audio starts at. The zero Position is
// the program's start.
type Position struct {
	Seq     uint64
	Granule int64
}

// After returns the position after the program page with header h, a
// chunk's or the last header page (OpusTags): a program resumed after a
// crash goes on from the last page its recording holds, so its page numbers
// and granule positions never go back.
func After(h ogg.Header) Position {
	return Position{Seq: uint64(h.Seq) + 1 - headerPages, Granule: h.Granule}
}

// NewPackerAt returns a packer for a program with the Ogg serial number
// whose next chunk is at.
func NewPackerAt(serial uint32, at Position) *Packer {
	return &Packer{serial: serial, seq: at.Seq, lastEnd: at.Granule, frames: make([][]byte, 0, amphi.FramesPerChunk)}
}

// Add appends one frame; it returns a chunk when one is complete, nil
// otherwise. The packer keeps packet.
func (p *Packer) Add(packet []byte) (*Chunk, error) {
	if p.done {
		return nil, errors.New("program: frame after the end")
	}
	p.frames = append(p.frames, packet)
	if len(p.frames) < amphi.FramesPerChunk {
		return nil, nil
	}
	return p.flush(false)
}

// Finish returns the last chunk, holding the frames added since the last full
// chunk and the EOS flag. With no frames pending, the page is empty: an EOS
// page with the last granule position, which RFC 3533 allows.
func (p *Packer) Finish() (*Chunk, error) {
	if p.done {
		return nil, errors.New("program: finished twice")
	}
	return p.flush(true)
}

func (p *Packer) flush(end bool) (*Chunk, error) {
	granule := p.lastEnd + int64(len(p.frames)*amphi.FrameSamples)
	page := &ogg.Page{Granule: granule, Serial: p.serial, Seq: uint32(p.seq + headerPages), Packets: p.frames}
	if end {
		page.Flags |= ogg.FlagEOS
		p.done = true
	}
	buf, err := ogg.AppendPage(make([]byte, 0, 27+len(p.frames)+totalLen(p.frames)+len(p.frames)), page)
	if err != nil {
		return nil, fmt.Errorf("program: chunk %d: %w", p.seq, err)
	}
	c := &Chunk{Seq: p.seq, End: end, Page: buf}
	p.seq++
	p.lastEnd = granule
	p.frames = p.frames[:0]
	return c, nil
}

func totalLen(bs [][]byte) int {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	return n
}

// Wire format of a chunk on the bus: a version byte, flags, the sequence
// number, then the page. The page carries its own CRC.
const (
	wireVersion = 1
	wireHeader  = 1 + 1 + 8
	wireEnd     = 1 << 0
)

// AppendWire appends the chunk's bus encoding to dst.
func (c *Chunk) AppendWire(dst []byte) []byte {
	var flags byte
	if c.End {
		flags |= wireEnd
	}
	dst = append(dst, wireVersion, flags)
	dst = binary.BigEndian.AppendUint64(dst, c.Seq)
	return append(dst, c.Page...)
}

// ParseWire decodes a chunk from its bus encoding. The chunk's page is a
// copy, so msg may be reused. Its page header parses (ogg.ParseHeader), so
// readers of a chunk's header need not handle an error.
func ParseWire(msg []byte) (*Chunk, error) {
	if len(msg) < wireHeader {
		return nil, fmt.Errorf("program: wire chunk of %d bytes is too short", len(msg))
	}
	if msg[0] != wireVersion {
		return nil, fmt.Errorf("program: wire version %d, want %d", msg[0], wireVersion)
	}
	page := msg[wireHeader:]
	if _, err := ogg.ParseHeader(page); err != nil {
		return nil, fmt.Errorf("program: wire chunk does not hold an Ogg page: %w", err)
	}
	return &Chunk{
		Seq:  binary.BigEndian.Uint64(msg[2:]),
		End:  msg[1]&wireEnd != 0,
		Page: append([]byte(nil), page...),
	}, nil
}

// AppendWireList appends chunks' bus encodings to dst, each after its
// length (4 bytes, big-endian): the answer to an edge fetching the chunks
// it missed.
func AppendWireList(dst []byte, cs []*Chunk) []byte {
	for _, c := range cs {
		at := len(dst)
		dst = append(dst, 0, 0, 0, 0)
		dst = c.AppendWire(dst)
		binary.BigEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
	}
	return dst
}

// ParseWireList decodes what AppendWireList encoded.
func ParseWireList(msg []byte) ([]*Chunk, error) {
	var cs []*Chunk
	for len(msg) > 0 {
		if len(msg) < 4 {
			return nil, fmt.Errorf("program: wire list: %d bytes left, too few for a length", len(msg))
		}
		n := binary.BigEndian.Uint32(msg)
		if uint64(n) > uint64(len(msg)-4) {
			return nil, fmt.Errorf("program: wire list: a chunk of %d bytes in %d", n, len(msg)-4)
		}
		c, err := ParseWire(msg[4 : 4+n])
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
		msg = msg[4+n:]
	}
	return cs, nil
}
