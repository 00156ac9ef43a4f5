// Package replay serves an ended space's Ogg Opus recording as HLS VOD
// (RFC 8216bis §6.2.1, EXT-X-PLAYLIST-TYPE:VOD): a playlist of 6 s CMAF
// fMP4 segments, each made on request from the recording's packets, with
// no re-encoding and nothing stored beside the recording. Safari, iOS and
// any HTTP cache play and keep it; the bytes of a segment depend only on
// the recording, so every cache and every node serves the same.
//
// A segment is found by bisection over the recording's pages (package
// clip), so making one costs what it copies, whatever the recording's
// length.
package replay

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/amphi-audio/amphi/internal/clip"
	"github.com/amphi-audio/amphi/internal/fmp4"
)

// SegmentSamples is each segment's length in 48 kHz samples: 6 s, what
// Apple's authoring guidelines advise for VOD.
const SegmentSamples = 6 * fmp4.Timescale

// ErrSegment means a segment number beyond the recording.
var ErrSegment = errors.New("replay: no such segment")

// Segments is the number of segments of rec.
func Segments(rec *clip.Recording) int {
	return int((max(rec.End(), 1) + SegmentSamples - 1) / SegmentSamples)
}

// Playlist is rec's VOD media playlist; the init segment is named
// "init.mp4" and segment n "n.m4s", relative to the playlist.
func Playlist(rec *clip.Recording) []byte {
	n, pre := Segments(rec), int64(rec.Head().PreSkip)
	b := []byte("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:")
	b = strconv.AppendInt(b, SegmentSamples/fmp4.Timescale, 10)
	b = append(b, "\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"init.mp4\"\n"...)
	for i := range n {
		// What each segment plays: the pre-skip is taken off the first,
		// as the init segment's edit list does.
		from, to := int64(i)*SegmentSamples, min(int64(i+1)*SegmentSamples, rec.End())
		if i == 0 {
			from = pre
		}
		b = append(b, "#EXTINF:"...)
		b = strconv.AppendFloat(b, float64(max(to-from, 0))/fmp4.Timescale, 'f', 3, 64)
		b = append(b, ",\n"...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, ".m4s\n"...)
	}
	return append(b, "#EXT-X-ENDLIST\n"...)
}

// Init is rec's init segment.
func Init(rec *clip.Recording) ([]byte, error) {
	h := rec.Head()
	return fmp4.AppendInit(nil, h.Channels, h.PreSkip, h.InputRate)
}

// Segment is rec's segment n: one fragment of the packets starting in its
// 6 s, which start at its tfdt.
func Segment(rec *clip.Recording, n int) ([]byte, error) {
	if n < 0 || n >= Segments(rec) {
		return nil, ErrSegment
	}
	from := int64(n) * SegmentSamples
	pkts, err := rec.Packets(from, from+SegmentSamples)
	if err != nil {
		return nil, err
	}
	if len(pkts) == 0 {
		return nil, fmt.Errorf("replay: segment %d has no audio", n)
	}
	samples := make([]fmp4.Sample, len(pkts))
	for i, p := range pkts {
		samples[i] = fmp4.Sample{Data: p.Data, Duration: uint32(p.End - p.Start)}
	}
	// mfhd numbers fragments from 1 in the order they play.
	return fmp4.AppendFragment(make([]byte, 0, fmp4.FragmentSize(samples)), uint32(n+1), uint64(pkts[0].Start), samples), nil
}
