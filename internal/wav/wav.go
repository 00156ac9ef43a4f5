// Package wav reads and writes RIFF WAVE audio as 16-bit PCM.
//
// amphi's tests and tools use it to feed speakers from files (Chromium's fake
// microphone, `amphi speak`) and to check what listeners heard. Read accepts
// the integer and float PCM layouts common tools write and converts them to
// 16-bit samples; Append writes plain 16-bit PCM, which every player and
// Chromium's fake capture take.
//
// The package uses only the standard library.
package wav

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Audio is interleaved 16-bit PCM.
type Audio struct {
	// SampleRate is in Hz.
	SampleRate int
	// Channels is the number of interleaved channels.
	Channels int
	// Samples holds len(Samples)/Channels frames, channels interleaved.
	Samples []int16
}

// Limits on what Read accepts. They keep a hostile or broken file from
// making Read allocate without bound or loop on nonsense.
const (
	// MaxDataSize is the largest data chunk Read accepts, in bytes.
	MaxDataSize = 1 << 30
	// MaxChannels is the most channels Read accepts.
	MaxChannels = 64
	// MaxSampleRate is the highest sample rate Read accepts, in Hz.
	MaxSampleRate = 768000
	// maxFmtSize bounds the fmt chunk, which is 16 to 40 bytes in practice.
	maxFmtSize = 1 << 10
	// maxPrealloc bounds the data bytes whose samples Read allocates
	// before they arrive.
	maxPrealloc = 4 << 20
)

// Format codes from the fmt chunk.
const (
	formatPCM        = 1
	formatFloat      = 3
	formatExtensible = 0xfffe
)

// ksdataformatSubtypeBase is the GUID of KSDATAFORMAT_SUBTYPE_PCM without its
// first two bytes, which hold the format code (1 for PCM, 3 for float).
var ksdataformatSubtypeBase = [14]byte{0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71}

// Errors that Read's errors wrap, for callers that branch on them.
var (
	// ErrNotWAV means the input is not a RIFF WAVE file.
	ErrNotWAV = errors.New("wav: not a RIFF WAVE file")
	// ErrUnsupported means the file is WAVE but in an encoding Read does
	// not convert (compressed formats, odd bit depths).
	ErrUnsupported = errors.New("wav: unsupported format")
	// ErrMalformed means the file's chunks or format fields are inconsistent.
	ErrMalformed = errors.New("wav: malformed file")
	// ErrTooLarge means a limit above was exceeded.
	ErrTooLarge = errors.New("wav: too large")
)

// format is the part of the fmt chunk that Read needs.
type format struct {
	code       uint16 // formatPCM or formatFloat, after resolving extensible
	channels   int
	sampleRate int
	blockAlign int
	bits       int // container bits per sample
}

// Read reads a WAVE file and returns its samples as 16-bit PCM. It takes
// integer PCM of 8, 16, 24 or 32 bits and IEEE float of 32 or 64 bits, in
// plain or WAVE_FORMAT_EXTENSIBLE form, skips chunks it does not know, and
// stops after the data chunk. Wider samples keep their top 16 bits; floats
// are scaled from [-1, 1] and clipped.
//
// A data chunk whose size is 0xffffffff (written by tools streaming to a
// pipe) is read to the end of the input. A data chunk cut short by the end of
// the input is accepted up to its last whole frame, since recordings of
// crashed programs end that way.
func Read(r io.Reader) (*Audio, error) {
	br := bufio.NewReader(r)
	var hdr [12]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("%w: %d-byte header", ErrNotWAV, len(hdr))
		}
		return nil, fmt.Errorf("wav: read header: %w", err)
	}
	if id := string(hdr[:4]); id != "RIFF" || string(hdr[8:12]) != "WAVE" {
		if id == "RF64" || id == "BW64" {
			return nil, fmt.Errorf("%w: %s (64-bit RIFF)", ErrUnsupported, id)
		}
		return nil, ErrNotWAV
	}

	var f *format
	for {
		var ch [8]byte
		if _, err := io.ReadFull(br, ch[:]); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return nil, fmt.Errorf("%w: no data chunk", ErrMalformed)
			}
			return nil, fmt.Errorf("wav: read chunk header: %w", err)
		}
		id := string(ch[:4])
		size := binary.LittleEndian.Uint32(ch[4:])
		switch id {
		case "fmt ":
			if f != nil {
				return nil, fmt.Errorf("%w: two fmt chunks", ErrMalformed)
			}
			var err error
			if f, err = readFormat(br, size); err != nil {
				return nil, err
			}
		case "data":
			if f == nil {
				return nil, fmt.Errorf("%w: data chunk before fmt chunk", ErrMalformed)
			}
			return readData(br, f, size)
		default:
			// Chunks are padded to an even size.
			skip := int64(size) + int64(size&1)
			if n, err := io.CopyN(io.Discard, br, skip); err != nil {
				if err == io.EOF {
					return nil, fmt.Errorf("%w: %q chunk truncated after %d of %d bytes", ErrMalformed, id, n, skip)
				}
				return nil, fmt.Errorf("wav: skip %q chunk: %w", id, err)
			}
		}
	}
}

// readFormat reads and checks a fmt chunk of the given size.
func readFormat(r io.Reader, size uint32) (*format, error) {
	if size < 16 || size > maxFmtSize {
		return nil, fmt.Errorf("%w: fmt chunk of %d bytes", ErrMalformed, size)
	}
	b := make([]byte, size+size&1)
	if _, err := io.ReadFull(r, b); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("%w: fmt chunk truncated", ErrMalformed)
		}
		return nil, fmt.Errorf("wav: read fmt chunk: %w", err)
	}
	f := &format{
		code:       binary.LittleEndian.Uint16(b[0:]),
		channels:   int(binary.LittleEndian.Uint16(b[2:])),
		sampleRate: int(binary.LittleEndian.Uint32(b[4:])),
		blockAlign: int(binary.LittleEndian.Uint16(b[12:])),
		bits:       int(binary.LittleEndian.Uint16(b[14:])),
	}
	if f.code == formatExtensible {
		// cbSize, valid bits, channel mask, then the subformat GUID.
		if size < 40 {
			return nil, fmt.Errorf("%w: extensible fmt chunk of %d bytes", ErrMalformed, size)
		}
		guid := b[24:40]
		if [14]byte(guid[2:]) != ksdataformatSubtypeBase {
			return nil, fmt.Errorf("%w: extensible subformat %x", ErrUnsupported, guid)
		}
		f.code = binary.LittleEndian.Uint16(guid)
	}
	switch {
	case f.code != formatPCM && f.code != formatFloat:
		return nil, fmt.Errorf("%w: format code %#x", ErrUnsupported, f.code)
	case f.code == formatPCM && f.bits != 8 && f.bits != 16 && f.bits != 24 && f.bits != 32:
		return nil, fmt.Errorf("%w: %d-bit integer PCM", ErrUnsupported, f.bits)
	case f.code == formatFloat && f.bits != 32 && f.bits != 64:
		return nil, fmt.Errorf("%w: %d-bit float", ErrUnsupported, f.bits)
	case f.channels == 0:
		return nil, fmt.Errorf("%w: 0 channels", ErrMalformed)
	case f.channels > MaxChannels:
		return nil, fmt.Errorf("%w: %d channels, at most %d", ErrTooLarge, f.channels, MaxChannels)
	case f.sampleRate == 0:
		return nil, fmt.Errorf("%w: sample rate 0", ErrMalformed)
	case f.sampleRate > MaxSampleRate:
		return nil, fmt.Errorf("%w: sample rate %d Hz, at most %d", ErrTooLarge, f.sampleRate, MaxSampleRate)
	case f.blockAlign != f.channels*f.bits/8:
		return nil, fmt.Errorf("%w: block align %d for %d channels of %d bits", ErrMalformed, f.blockAlign, f.channels, f.bits)
	}
	return f, nil
}

// readData reads a data chunk of the given size in the format f.
func readData(r io.Reader, f *format, size uint32) (*Audio, error) {
	limit := int64(size)
	if size == math.MaxUint32 {
		limit = MaxDataSize + 1 // read to the end, but no further than the cap
	} else if limit > MaxDataSize {
		return nil, fmt.Errorf("%w: data chunk of %d bytes, at most %d", ErrTooLarge, size, MaxDataSize)
	}
	width := f.bits / 8
	a := &Audio{SampleRate: f.sampleRate, Channels: f.channels}
	// Size the samples from the chunk header, but only up to what a few
	// MiB of input would hold: the header may lie.
	a.Samples = make([]int16, 0, min(limit, maxPrealloc)/int64(width))
	// Convert in blocks rather than reading the whole chunk first, so the
	// raw bytes and the samples are never both held, and a size field that
	// lies costs nothing until the bytes actually arrive.
	buf := make([]byte, 64<<10/f.blockAlign*f.blockAlign)
	var read int64
	for read < limit {
		n, err := io.ReadFull(r, buf[:min(int64(len(buf)), limit-read)])
		read += int64(n)
		n -= n % f.blockAlign // a trailing partial frame is dropped
		a.Samples = appendSamples(a.Samples, buf[:n], f.code, width)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("wav: read data: %w", err)
		}
	}
	if read > MaxDataSize {
		return nil, fmt.Errorf("%w: data over %d bytes", ErrTooLarge, MaxDataSize)
	}
	return a, nil
}

// appendSamples converts little-endian samples of width bytes to int16.
func appendSamples(dst []int16, b []byte, code uint16, width int) []int16 {
	switch {
	case code == formatFloat && width == 4:
		for i := 0; i+4 <= len(b); i += 4 {
			dst = append(dst, fromFloat(float64(math.Float32frombits(binary.LittleEndian.Uint32(b[i:])))))
		}
	case code == formatFloat:
		for i := 0; i+8 <= len(b); i += 8 {
			dst = append(dst, fromFloat(math.Float64frombits(binary.LittleEndian.Uint64(b[i:]))))
		}
	case width == 1:
		// 8-bit WAV is unsigned, centred on 128.
		for _, v := range b {
			dst = append(dst, int16(int(v)-128)<<8)
		}
	default:
		// Keep the top two bytes of each little-endian signed sample.
		for i := 0; i+width <= len(b); i += width {
			dst = append(dst, int16(binary.LittleEndian.Uint16(b[i+width-2:])))
		}
	}
	return dst
}

// fromFloat scales a float sample in [-1, 1] to int16, clipping what lies
// outside and mapping NaN to 0.
func fromFloat(v float64) int16 {
	switch {
	case math.IsNaN(v):
		return 0
	case v >= 1:
		return math.MaxInt16
	case v <= -1:
		return math.MinInt16
	}
	return int16(math.Round(v * 32767))
}

// Append appends a 16-bit PCM WAVE file holding a to dst and returns the
// extended buffer. a.Samples should hold whole frames of a.Channels
// samples each.
func Append(dst []byte, a *Audio) []byte {
	dataSize := 2 * len(a.Samples)
	blockAlign := 2 * a.Channels
	dst = append(dst, "RIFF"...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(4+8+16+8+dataSize))
	dst = append(dst, "WAVEfmt "...)
	dst = binary.LittleEndian.AppendUint32(dst, 16)
	dst = binary.LittleEndian.AppendUint16(dst, formatPCM)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(a.Channels))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(a.SampleRate))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(a.SampleRate*blockAlign))
	dst = binary.LittleEndian.AppendUint16(dst, uint16(blockAlign))
	dst = binary.LittleEndian.AppendUint16(dst, 16)
	dst = append(dst, "data"...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(dataSize))
	for _, s := range a.Samples {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(s))
	}
	return dst
}
