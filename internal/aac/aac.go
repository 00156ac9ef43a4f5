// Package aac encodes PCM into AAC-LC with libavcodec's native encoder,
// through cgo: raw access units (no ADTS), as MP4 carries them, and the
// AudioSpecificConfig that an MP4 sample entry's esds box needs.
//
// It exists for the LL-HLS rendition that Apple devices before iOS 17 can
// play (Apple's HLS authoring guidelines list no Opus): the edge decodes
// the program's Opus once per space and encodes it here once, whatever the
// number of listeners. It knows nothing of amphi.
//
// A build with the noaac tag has no libavcodec (scripts/build-static.sh:
// Debian's libavcodec cannot be linked statically): Available is false
// and NewEncoder fails.
package aac

import "errors"

// FrameSize is the samples (per channel) in every AAC-LC access unit.
const FrameSize = 1024

// DefaultBitrate is the bit rate of amphi's AAC rendition, in bit/s:
// AAC-LC does less with a bit than Opus, so the rendition gets twice the
// program's default 32 kbit/s.
const DefaultBitrate = 64000

// ErrClosed is returned by an Encoder used after Close.
var ErrClosed = errors.New("aac: encoder closed")

// ErrUnavailable is returned by NewEncoder in a build without libavcodec.
var ErrUnavailable = errors.New("aac: built without libavcodec (the noaac tag)")
