// Package fmp4 writes fragmented MP4 (CMAF) for one Opus or AAC audio
// track: the init segment that describes the track and the media fragments
// (moof + mdat) that carry its packets, as "Encapsulation of Opus in ISO
// Base Media File Format" (opus-codec.org), ISO/IEC 14496-14 (AAC's esds)
// and ISO/IEC 14496-12 define them.
//
// It is the container of amphi's LL-HLS delivery: the hls package cuts the
// program's Opus packets into 200 ms parts and 2 s segments and calls
// AppendFragment once for each; every listener then shares those bytes. Like the ogg package, it
// takes raw Opus packets (as found in Ogg pages) with their durations in
// 48 kHz samples, knows nothing of amphi, and uses only the standard
// library. Writers append to a caller's slice, as encoding/binary's Append
// functions do, so a fragment costs one allocation of its exact size
// (FragmentSize) or none.
package fmp4

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Timescale is the track's clock: Opus always decodes at 48 kHz, so media
// times and sample durations are counted in 48 kHz samples, the unit of Ogg
// Opus granule positions.
const Timescale = 48000

// trackID is the one track's number, shared by tkhd, trex and tfhd.
const trackID = 1

// Sample is one Opus packet and its duration in 48 kHz samples.
type Sample struct {
	// Data is the raw Opus packet (RFC 6716), as it is carried in an Ogg
	// page.
	Data []byte
	// Duration is the audio the packet holds, in 48 kHz samples (960 for
	// 20 ms); opuspkt.Samples reads it from the packet.
	Duration uint32
}

// ErrChannels is returned by AppendInit and AppendAACInit for a channel
// count other than 1 or 2: more channels need a channel mapping (Opus
// family 1, an AAC program_config_element), which amphi never produces.
var ErrChannels = errors.New("fmp4: only mono and stereo are supported")

// ErrConfig is returned by AppendAACInit for an AudioSpecificConfig too
// long for the one-byte descriptor sizes it writes.
var ErrConfig = errors.New("fmp4: AudioSpecificConfig too long")

// AppendInit appends the init segment (ftyp and moov) of an Opus track with
// channels output channels, the encoder's pre-skip in 48 kHz samples and
// the original input's sample rate (information only; 0 if unknown).
//
// The pre-skip is written twice, as the Opus encapsulation asks: in the
// dOps box, for decoders, and as the media_time of an edit list, so that
// presentation time is media time minus pre-skip, which is exactly how an
// Ogg Opus granule position maps to playback time (RFC 7845 §4.1).
func AppendInit(dst []byte, channels int, preSkip uint16, inputRate uint32) ([]byte, error) {
	if channels != 1 && channels != 2 {
		return dst, fmt.Errorf("%w: %d channels", ErrChannels, channels)
	}
	return appendInit(dst, "Opus", uint32(preSkip), func(dst []byte) []byte {
		return appendOpusEntry(dst, channels, preSkip, inputRate)
	}), nil
}

// AppendAACInit appends the init segment of an AAC track at 48 kHz (the
// track's Timescale) with channels channels: an mp4a sample entry whose
// esds box carries config, the encoder's AudioSpecificConfig (ISO/IEC
// 14496-3 §1.6.2.1), and bitrate in bit/s (information for players).
//
// delay is where presentation starts in the media timeline, in 48 kHz
// samples: the encoder's priming (1024 for libavcodec), plus any offset
// the caller's timeline has. It goes to the edit list, as an Opus track's
// pre-skip does, which is how ISO/IEC 14496-12 and Apple's players skip
// AAC priming.
func AppendAACInit(dst []byte, channels int, delay, bitrate uint32, config []byte) ([]byte, error) {
	if channels != 1 && channels != 2 {
		return dst, fmt.Errorf("%w: %d channels", ErrChannels, channels)
	}
	if len(config) > maxConfig {
		return dst, fmt.Errorf("%w: %d bytes", ErrConfig, len(config))
	}
	return appendInit(dst, "caac", delay, func(dst []byte) []byte {
		return appendAACEntry(dst, channels, bitrate, config)
	}), nil
}

// appendInit writes an init segment whose ftyp names brand (the codec's
// CMAF or encapsulation brand), whose edit list starts presentation at
// editStart, and whose one sample entry entry writes.
func appendInit(dst []byte, brand string, editStart uint32, entry func([]byte) []byte) []byte {
	ftyp := start(dst, "ftyp")
	dst = append(ftyp.dst, "iso6"...)           // major brand: ISO BMFF with movie fragments
	dst = binary.BigEndian.AppendUint32(dst, 0) // minor version
	dst = append(dst, "iso6cmfc"...)            // compatible: CMAF
	dst = append(dst, brand...)
	dst = ftyp.end(dst)

	moov := start(dst, "moov")
	dst = appendMvhd(moov.dst)
	trak := start(dst, "trak")
	dst = appendTkhd(trak.dst)
	dst = appendEdts(dst, editStart)
	mdia := start(dst, "mdia")
	dst = appendMdhd(mdia.dst)
	dst = appendHdlr(dst)
	minf := start(dst, "minf")
	smhd := startFull(minf.dst, "smhd", 0, 0)
	dst = append(smhd.dst, 0, 0, 0, 0) // balance, reserved
	dst = smhd.end(dst)
	dst = appendDinf(dst)
	dst = appendStbl(dst, entry)
	dst = minf.end(dst)
	dst = mdia.end(dst)
	dst = trak.end(dst)
	dst = appendMvex(dst)
	return moov.end(dst)
}

// unity is the transformation matrix that leaves a presentation as it is
// (ISO/IEC 14496-12 §8.2.2.3): fixed-point 16.16, except w in 2.30.
var unity = [9]uint32{0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000}

func appendMatrix(dst []byte) []byte {
	for _, v := range unity {
		dst = binary.BigEndian.AppendUint32(dst, v)
	}
	return dst
}

func appendMvhd(dst []byte) []byte {
	b := startFull(dst, "mvhd", 0, 0)
	dst = binary.BigEndian.AppendUint32(b.dst, 0) // creation time
	dst = binary.BigEndian.AppendUint32(dst, 0)   // modification time
	dst = binary.BigEndian.AppendUint32(dst, Timescale)
	dst = binary.BigEndian.AppendUint32(dst, 0)          // duration: unknown, the movie is fragmented
	dst = binary.BigEndian.AppendUint32(dst, 0x00010000) // rate 1.0
	dst = binary.BigEndian.AppendUint16(dst, 0x0100)     // volume 1.0
	dst = append(dst, make([]byte, 2+8)...)              // reserved
	dst = appendMatrix(dst)
	dst = append(dst, make([]byte, 6*4)...) // pre_defined
	dst = binary.BigEndian.AppendUint32(dst, trackID+1)
	return b.end(dst)
}

// tkhdEnabled marks the track enabled and used in the presentation.
const tkhdEnabled = 0x000001 | 0x000002

func appendTkhd(dst []byte) []byte {
	b := startFull(dst, "tkhd", 0, tkhdEnabled)
	dst = binary.BigEndian.AppendUint32(b.dst, 0) // creation time
	dst = binary.BigEndian.AppendUint32(dst, 0)   // modification time
	dst = binary.BigEndian.AppendUint32(dst, trackID)
	dst = binary.BigEndian.AppendUint32(dst, 0)      // reserved
	dst = binary.BigEndian.AppendUint32(dst, 0)      // duration
	dst = append(dst, make([]byte, 8)...)            // reserved
	dst = binary.BigEndian.AppendUint16(dst, 0)      // layer
	dst = binary.BigEndian.AppendUint16(dst, 0)      // alternate group
	dst = binary.BigEndian.AppendUint16(dst, 0x0100) // volume 1.0: an audio track
	dst = binary.BigEndian.AppendUint16(dst, 0)      // reserved
	dst = appendMatrix(dst)
	dst = binary.BigEndian.AppendUint32(dst, 0) // width
	dst = binary.BigEndian.AppendUint32(dst, 0) // height
	return b.end(dst)
}

// appendEdts writes one edit that starts the presentation editStart
// samples into the media. Its segment_duration is 0: in a fragmented file whose
// length is not known, an empty duration means the edit runs to the end of
// the media (ISO/IEC 14496-12 §8.6.6), which is what CMAF writers do.
func appendEdts(dst []byte, editStart uint32) []byte {
	edts := start(dst, "edts")
	elst := startFull(edts.dst, "elst", 0, 0)
	dst = binary.BigEndian.AppendUint32(elst.dst, 1)     // entry count
	dst = binary.BigEndian.AppendUint32(dst, 0)          // segment duration
	dst = binary.BigEndian.AppendUint32(dst, editStart)  // media time
	dst = binary.BigEndian.AppendUint32(dst, 0x00010000) // media rate 1.0
	dst = elst.end(dst)
	return edts.end(dst)
}

// undetermined is the ISO 639-2 code "und" packed in three 5-bit letters.
const undetermined = ('u'-0x60)<<10 | ('n'-0x60)<<5 | ('d' - 0x60)

func appendMdhd(dst []byte) []byte {
	b := startFull(dst, "mdhd", 0, 0)
	dst = binary.BigEndian.AppendUint32(b.dst, 0) // creation time
	dst = binary.BigEndian.AppendUint32(dst, 0)   // modification time
	dst = binary.BigEndian.AppendUint32(dst, Timescale)
	dst = binary.BigEndian.AppendUint32(dst, 0) // duration
	dst = binary.BigEndian.AppendUint16(dst, undetermined)
	dst = binary.BigEndian.AppendUint16(dst, 0) // pre_defined
	return b.end(dst)
}

func appendHdlr(dst []byte) []byte {
	b := startFull(dst, "hdlr", 0, 0)
	dst = binary.BigEndian.AppendUint32(b.dst, 0) // pre_defined
	dst = append(dst, "soun"...)
	dst = append(dst, make([]byte, 3*4)...) // reserved
	dst = append(dst, "SoundHandler\x00"...)
	return b.end(dst)
}

// drefSelfContained says the media data is in the same file (here: in the
// fragments that follow the init segment).
const drefSelfContained = 0x000001

func appendDinf(dst []byte) []byte {
	dinf := start(dst, "dinf")
	dref := startFull(dinf.dst, "dref", 0, 0)
	dst = binary.BigEndian.AppendUint32(dref.dst, 1) // entry count
	url := startFull(dst, "url ", 0, drefSelfContained)
	dst = url.end(url.dst)
	dst = dref.end(dst)
	return dinf.end(dst)
}

func appendStbl(dst []byte, entry func([]byte) []byte) []byte {
	stbl := start(dst, "stbl")
	stsd := startFull(stbl.dst, "stsd", 0, 0)
	dst = binary.BigEndian.AppendUint32(stsd.dst, 1) // entry count
	dst = entry(dst)
	dst = stsd.end(dst)
	// The sample tables are empty: every sample is described by the
	// fragments' trun boxes.
	dst = appendEmptyTable(dst, "stts")
	dst = appendEmptyTable(dst, "stsc")
	stsz := startFull(dst, "stsz", 0, 0)
	dst = binary.BigEndian.AppendUint32(stsz.dst, 0) // sample size: they vary
	dst = binary.BigEndian.AppendUint32(dst, 0)      // sample count
	dst = stsz.end(dst)
	dst = appendEmptyTable(dst, "stco")
	return stbl.end(dst)
}

// appendEmptyTable writes a sample table FullBox with no entries.
func appendEmptyTable(dst []byte, typ string) []byte {
	b := startFull(dst, typ, 0, 0)
	return b.end(binary.BigEndian.AppendUint32(b.dst, 0)) // entry count
}

// appendOpusEntry writes the Opus sample entry: an AudioSampleEntry whose
// sample rate is always 48 kHz, then the OpusSpecificBox, the Ogg
// OpusHead's fields in big-endian order without its magic, version 0.
func appendOpusEntry(dst []byte, channels int, preSkip uint16, inputRate uint32) []byte {
	entry := start(dst, "Opus")
	dst = appendAudioEntryFields(entry.dst, channels)
	dops := start(dst, "dOps")
	dst = append(dops.dst, 0, byte(channels)) // version, output channel count
	dst = binary.BigEndian.AppendUint16(dst, preSkip)
	dst = binary.BigEndian.AppendUint32(dst, inputRate)
	dst = binary.BigEndian.AppendUint16(dst, 0) // output gain
	dst = append(dst, 0)                        // channel mapping family 0: mono or stereo
	dst = dops.end(dst)
	return entry.end(dst)
}

// appendAudioEntryFields writes the fields of an AudioSampleEntry
// (ISO/IEC 14496-12 §12.2.3) after its box header: 48 kHz, 16 bits.
func appendAudioEntryFields(dst []byte, channels int) []byte {
	dst = append(dst, make([]byte, 6)...)       // reserved
	dst = binary.BigEndian.AppendUint16(dst, 1) // data reference index
	dst = append(dst, make([]byte, 8)...)       // reserved
	dst = binary.BigEndian.AppendUint16(dst, uint16(channels))
	dst = binary.BigEndian.AppendUint16(dst, 16) // sample size
	dst = binary.BigEndian.AppendUint32(dst, 0)  // pre_defined, reserved
	return binary.BigEndian.AppendUint32(dst, Timescale<<16)
}

// MPEG-4 Systems descriptor tags and values (ISO/IEC 14496-1 §7.2).
const (
	esDescrTag             = 0x03
	decoderConfigDescrTag  = 0x04
	decSpecificInfoTag     = 0x05
	slConfigDescrTag       = 0x06
	objectTypeAudio14496_3 = 0x40 // MPEG-4 Audio: AAC's object type comes from the AudioSpecificConfig
	streamTypeAudio        = 0x05
	slPredefinedMP4        = 0x02 // the SLConfig an MP4 file uses
	// aacBufferPerChannel is the decoder input buffer AAC needs, in bytes
	// a channel: 6144 bits (ISO/IEC 14496-3 §4.5.3.1).
	aacBufferPerChannel = 6144 / 8
)

// Fixed sizes of the esds box's descriptors, in bytes, without the
// AudioSpecificConfig. Every descriptor's size fits the one-byte form of
// the expandable size field (below 128), which bounds the
// AudioSpecificConfig to maxConfig bytes, ample for AAC-LC's 2 to 5.
const (
	descrHeader      = 2 // tag and one-byte size
	esDescrFixed     = 3
	decoderConfFixed = 13
	slConfigSize     = descrHeader + 1
	esDescrOverhead  = esDescrFixed + descrHeader + decoderConfFixed + descrHeader + slConfigSize
	maxConfig        = 127 - esDescrOverhead
)

// appendAACEntry writes the mp4a sample entry: an AudioSampleEntry and
// its esds box (ISO/IEC 14496-14 §5.6), whose ES_Descriptor holds the
// DecoderConfigDescriptor with the AudioSpecificConfig as its
// DecSpecificInfo.
func appendAACEntry(dst []byte, channels int, bitrate uint32, config []byte) []byte {
	entry := start(dst, "mp4a")
	dst = appendAudioEntryFields(entry.dst, channels)
	esds := startFull(dst, "esds", 0, 0)
	dst = append(esds.dst, esDescrTag, byte(esDescrOverhead+len(config)))
	dst = binary.BigEndian.AppendUint16(dst, 0) // ES_ID: 0 in a file (ISO/IEC 14496-14 §3.1.2)
	dst = append(dst, 0)                        // no dependence, URL or OCR stream; priority 0
	dst = append(dst, decoderConfigDescrTag, byte(decoderConfFixed+descrHeader+len(config)))
	dst = append(dst, objectTypeAudio14496_3, streamTypeAudio<<2|1) // upstream 0, reserved 1
	buffer := uint32(aacBufferPerChannel * channels)
	dst = append(dst, byte(buffer>>16), byte(buffer>>8), byte(buffer))
	dst = binary.BigEndian.AppendUint32(dst, bitrate) // max bitrate
	dst = binary.BigEndian.AppendUint32(dst, bitrate) // average bitrate
	dst = append(dst, decSpecificInfoTag, byte(len(config)))
	dst = append(dst, config...)
	dst = append(dst, slConfigDescrTag, 1, slPredefinedMP4)
	dst = esds.end(dst)
	return entry.end(dst)
}

func appendMvex(dst []byte) []byte {
	mvex := start(dst, "mvex")
	trex := startFull(mvex.dst, "trex", 0, 0)
	dst = binary.BigEndian.AppendUint32(trex.dst, trackID)
	dst = binary.BigEndian.AppendUint32(dst, 1) // sample description index
	dst = binary.BigEndian.AppendUint32(dst, 0) // default duration: in each tfhd or trun
	dst = binary.BigEndian.AppendUint32(dst, 0) // default size: in each trun
	// Default flags 0: every sample is a sync sample. An Opus packet
	// decodes alone; a decoder that starts mid-stream converges within
	// the 80 ms pre-roll the encapsulation mentions, a glitch far below
	// what a listener joining live notices.
	dst = binary.BigEndian.AppendUint32(dst, 0)
	dst = trex.end(dst)
	return mvex.end(dst)
}

// Fragment box flags (ISO/IEC 14496-12 §8.8.7, §8.8.8).
const (
	tfhdDefaultDuration = 0x000008
	tfhdBaseIsMoof      = 0x020000
	trunDataOffset      = 0x000001
	trunSampleDuration  = 0x000100
	trunSampleSize      = 0x000200
)

// Fixed sizes of a fragment's boxes, in bytes.
const (
	boxHeader     = 8
	fullBoxHeader = boxHeader + 4
	mfhdSize      = fullBoxHeader + 4
	tfdtSize      = fullBoxHeader + 8
	tfhdSize      = fullBoxHeader + 4 // without the default duration
	trunSize      = fullBoxHeader + 4 + 4
)

// FragmentSize returns the size of the fragment AppendFragment writes for
// samples, so that a caller can allocate it exactly once.
func FragmentSize(samples []Sample) int {
	n, _, _ := fragmentLayout(samples)
	return n
}

// fragmentLayout returns the fragment's size, the moof's size and whether
// every sample lasts as long as the first (then tfhd carries the duration
// once and trun only sizes: 4 bytes a sample instead of 8).
func fragmentLayout(samples []Sample) (total, moof int, uniform bool) {
	uniform = len(samples) > 0
	payload := 0
	for _, s := range samples {
		payload += len(s.Data)
		uniform = uniform && s.Duration == samples[0].Duration
	}
	perSample, tfhd := 8, tfhdSize
	if uniform {
		perSample, tfhd = 4, tfhdSize+4
	}
	moof = boxHeader + mfhdSize + boxHeader + tfhd + tfdtSize + trunSize + perSample*len(samples)
	return moof + boxHeader + payload, moof, uniform
}

// AppendFragment appends one media fragment to dst: a moof numbered seq
// (mfhd's sequence number, which must grow from one fragment to the next,
// starting at 1) whose samples start at baseTime in the track's timescale
// (tfdt), then the mdat holding the packets. For an Ogg Opus program,
// baseTime is the granule position where the first packet starts: the edit
// list of AppendInit subtracts the pre-skip, as an Ogg player does.
//
// The track runs from moof: tfhd sets default-base-is-moof, so a fragment
// means the same wherever it is served or stored, as CMAF requires.
func AppendFragment(dst []byte, seq uint32, baseTime uint64, samples []Sample) []byte {
	total, moofSize, uniform := fragmentLayout(samples)
	if total > math.MaxUint32 {
		panic("fmp4: a fragment of 4 GiB or more") // parts are a fraction of a second
	}
	moof := start(dst, "moof")
	mfhd := startFull(moof.dst, "mfhd", 0, 0)
	dst = mfhd.end(binary.BigEndian.AppendUint32(mfhd.dst, seq))
	traf := start(dst, "traf")
	tfhdFlags, trunFlags := uint32(tfhdBaseIsMoof), uint32(trunDataOffset|trunSampleSize)
	if uniform {
		tfhdFlags |= tfhdDefaultDuration
	} else {
		trunFlags |= trunSampleDuration
	}
	tfhd := startFull(traf.dst, "tfhd", 0, tfhdFlags)
	dst = binary.BigEndian.AppendUint32(tfhd.dst, trackID)
	if tfhdFlags&tfhdDefaultDuration != 0 {
		dst = binary.BigEndian.AppendUint32(dst, samples[0].Duration)
	}
	dst = tfhd.end(dst)
	tfdt := startFull(dst, "tfdt", 1, 0) // version 1: 64-bit, as 32 bits of 48 kHz last only 24.8 hours
	dst = tfdt.end(binary.BigEndian.AppendUint64(tfdt.dst, baseTime))
	trun := startFull(dst, "trun", 0, trunFlags)
	dst = binary.BigEndian.AppendUint32(trun.dst, uint32(len(samples)))
	dst = binary.BigEndian.AppendUint32(dst, uint32(moofSize+boxHeader)) // data offset: the first byte of mdat's payload
	for _, s := range samples {
		if trunFlags&trunSampleDuration != 0 {
			dst = binary.BigEndian.AppendUint32(dst, s.Duration)
		}
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(s.Data)))
	}
	dst = trun.end(dst)
	dst = traf.end(dst)
	dst = moof.end(dst)
	mdat := start(dst, "mdat")
	dst = mdat.dst
	for _, s := range samples {
		dst = append(dst, s.Data...)
	}
	return mdat.end(dst)
}

// box is an open box: dst holds its header with the size still zero; end
// writes the size once the contents are appended.
type box struct {
	dst []byte
	at  int
}

func start(dst []byte, typ string) box {
	at := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	return box{dst: append(dst, typ...), at: at}
}

// startFull opens a FullBox: a box with a version and 24 bits of flags.
func startFull(dst []byte, typ string, version byte, flags uint32) box {
	b := start(dst, typ)
	b.dst = binary.BigEndian.AppendUint32(b.dst, uint32(version)<<24|flags&0xffffff)
	return b
}

func (b box) end(dst []byte) []byte {
	binary.BigEndian.PutUint32(dst[b.at:], uint32(len(dst)-b.at))
	return dst
}
