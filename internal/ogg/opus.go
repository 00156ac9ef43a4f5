package ogg

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// OpusHead is the content of an Ogg Opus identification header
// (RFC 7845 §5.1).
type OpusHead struct {
	// Channels is the output channel count, 1 to 255.
	Channels int
	// PreSkip is the number of 48 kHz samples to discard from the start of
	// the decoded stream.
	PreSkip uint16
	// InputRate is the sample rate of the original input, in Hz, for
	// information only; 0 means unspecified. Opus always decodes at 48 kHz.
	InputRate uint32
	// Gain is the output gain in Q7.8 dB to apply when decoding.
	Gain int16
	// MappingFamily is the channel mapping family: 0 for mono or stereo
	// without a mapping table.
	MappingFamily byte
}

// Errors returned by ParseOpusHead.
var (
	// ErrNotOpusHead means the packet does not start with "OpusHead".
	ErrNotOpusHead = errors.New("ogg: not an OpusHead packet")
	// ErrOpusHeadVersion means the header's major version is not 0, so this
	// package cannot know its layout.
	ErrOpusHeadVersion = errors.New("ogg: unsupported OpusHead version")
	// ErrBadOpusHead means the header is truncated or its fields are invalid.
	ErrBadOpusHead = errors.New("ogg: malformed OpusHead")
)

const (
	opusHeadMagic = "OpusHead"
	opusTagsMagic = "OpusTags"
	// opusHeadSize is the size of an identification header with channel
	// mapping family 0, which has no mapping table.
	opusHeadSize = 19
)

// AppendOpusHead appends an Ogg Opus identification header (RFC 7845 §5.1)
// to dst: version 1, output gain 0 and channel mapping family 0, which
// covers mono and stereo. It goes alone on the first page, with FlagBOS and
// granule 0.
func AppendOpusHead(dst []byte, channels int, preSkip uint16, inputRate uint32) []byte {
	dst = append(dst, opusHeadMagic...)
	dst = append(dst, 1, byte(channels))
	dst = binary.LittleEndian.AppendUint16(dst, preSkip)
	dst = binary.LittleEndian.AppendUint32(dst, inputRate)
	dst = binary.LittleEndian.AppendUint16(dst, 0) // output gain
	return append(dst, 0)                          // mapping family
}

// AppendOpusTags appends an Ogg Opus comment header (RFC 7845 §5.2) to dst,
// with the vendor string and user comments, each of the form "KEY=value".
// It goes on the page after the identification header, with granule 0.
func AppendOpusTags(dst []byte, vendor string, comments ...string) []byte {
	dst = append(dst, opusTagsMagic...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(vendor)))
	dst = append(dst, vendor...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(comments)))
	for _, c := range comments {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(c)))
		dst = append(dst, c...)
	}
	return dst
}

// ParseOpusHead parses an Ogg Opus identification header. It accepts every
// version whose major part is 0 (0 to 15), as RFC 7845 §5.1 asks, and checks
// that a mapping table, when present, fits in the packet.
func ParseOpusHead(pkt []byte) (OpusHead, error) {
	if len(pkt) < len(opusHeadMagic) || string(pkt[:len(opusHeadMagic)]) != opusHeadMagic {
		return OpusHead{}, ErrNotOpusHead
	}
	if len(pkt) < opusHeadSize {
		return OpusHead{}, fmt.Errorf("%w: %d bytes, want at least %d", ErrBadOpusHead, len(pkt), opusHeadSize)
	}
	if v := pkt[8]; v>>4 != 0 {
		return OpusHead{}, fmt.Errorf("%w: %d", ErrOpusHeadVersion, v)
	}
	h := OpusHead{
		Channels:      int(pkt[9]),
		PreSkip:       binary.LittleEndian.Uint16(pkt[10:]),
		InputRate:     binary.LittleEndian.Uint32(pkt[12:]),
		Gain:          int16(binary.LittleEndian.Uint16(pkt[16:])),
		MappingFamily: pkt[18],
	}
	if h.Channels == 0 {
		return OpusHead{}, fmt.Errorf("%w: 0 channels", ErrBadOpusHead)
	}
	if h.MappingFamily == 0 {
		if h.Channels > 2 {
			return OpusHead{}, fmt.Errorf("%w: %d channels with mapping family 0", ErrBadOpusHead, h.Channels)
		}
		return h, nil
	}
	// Other families carry stream count, coupled count and one mapping
	// byte per channel.
	if want := opusHeadSize + 2 + h.Channels; len(pkt) < want {
		return OpusHead{}, fmt.Errorf("%w: %d bytes, want %d for the mapping table", ErrBadOpusHead, len(pkt), want)
	}
	return h, nil
}
