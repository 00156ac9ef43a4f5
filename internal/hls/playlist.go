package hls

import (
	"bytes"
	"compress/gzip"
	"strconv"
	"sync"

	"github.com/amphi-audio/amphi/internal/fmp4"
)

// playlistHeader returns the tags that never change, for parts of at
// most partTarget 48 kHz samples. EXT-X-VERSION is 6, the least that
// EXT-X-MAP needs in a playlist of media segments; RFC 8216bis §6.2.1 asks
// for no more than the tags need, and the low-latency tags (PART,
// PART-INF, SERVER-CONTROL, PRELOAD-HINT) need no version. PART-HOLD-BACK
// is three part targets, the least the RFC recommends: a player stays
// about 0.6 s behind the newest part. Every Opus packet and AAC frame
// decodes alone (after the first), so every segment is independent.
func playlistHeader(partTarget uint32) string {
	return "#EXTM3U\n" +
		"#EXT-X-VERSION:6\n" +
		"#EXT-X-TARGETDURATION:" + strconv.Itoa(targetDuration) + "\n" +
		"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=" + string(appendSeconds(nil, 3*partTarget)) + "\n" +
		"#EXT-X-PART-INF:PART-TARGET=" + string(appendSeconds(nil, partTarget)) + "\n" +
		"#EXT-X-INDEPENDENT-SEGMENTS\n"
}

// Names of the resources under a space's directory.
const (
	PlaylistName  = "index.m3u8"
	segmentSuffix = ".m4s"
)

// pdtLayout is EXT-X-PROGRAM-DATE-TIME's ISO 8601 form, to the
// millisecond.
const pdtLayout = "2006-01-02T15:04:05.000Z07:00"

// render appends the media playlist of snap to b.
func (s *Segmenter) render(b []byte, snap *snapshot) []byte {
	b = append(b, s.header...)
	listed := snap.segments[snap.listed:]
	first := s.msn
	if len(listed) > 0 {
		first = listed[0].msn
	}
	b = append(b, "#EXT-X-MEDIA-SEQUENCE:"...)
	b = strconv.AppendUint(b, first, 10)
	b = append(b, '\n')
	if snap.discSeq > 0 {
		b = append(b, "#EXT-X-DISCONTINUITY-SEQUENCE:"...)
		b = strconv.AppendUint(b, snap.discSeq, 10)
		b = append(b, '\n')
	}
	b = append(b, `#EXT-X-MAP:URI="`...)
	b = append(b, s.initName...)
	b = append(b, "\"\n"...)
	// Parts are listed for the segment in progress and the last complete
	// ones; older segments are listed whole.
	withParts := len(listed) - partListedSegments
	if len(listed) > 0 && listed[len(listed)-1].data == nil {
		withParts--
	}
	for i, g := range listed {
		if g.discontinuity {
			b = append(b, "#EXT-X-DISCONTINUITY\n"...)
		}
		// The date of the first segment dates every later one by their
		// durations; only a jump needs another (RFC 8216bis §6.2.1). Each
		// one more would cost every listener 50 bytes a reload.
		if i == 0 || g.discontinuity {
			b = append(b, "#EXT-X-PROGRAM-DATE-TIME:"...)
			b = g.pdt.UTC().AppendFormat(b, pdtLayout)
			b = append(b, '\n')
		}
		if i >= withParts {
			for j, p := range g.parts {
				b = append(b, "#EXT-X-PART:DURATION="...)
				b = appendSeconds(b, p.duration)
				b = append(b, `,URI="`...)
				b = appendPartName(b, g.msn, j)
				b = append(b, "\",INDEPENDENT=YES\n"...)
			}
		}
		if g.data != nil {
			b = append(b, "#EXTINF:"...)
			b = appendSeconds(b, g.duration)
			b = append(b, ",\n"...)
			b = strconv.AppendUint(b, g.msn, 10)
			b = append(b, segmentSuffix+"\n"...)
		}
	}
	if snap.ended {
		return append(b, "#EXT-X-ENDLIST\n"...)
	}
	if len(listed) == 0 {
		return b // the first part's name is not known before it starts
	}
	msn, next := s.msn, 0
	if s.cur != nil {
		msn, next = s.cur.msn, len(s.cur.parts)
	}
	b = append(b, `#EXT-X-PRELOAD-HINT:TYPE=PART,URI="`...)
	b = appendPartName(b, msn, next)
	return append(b, "\"\n"...)
}

// appendSeconds appends a duration in 48 kHz samples as decimal seconds,
// exactly: 9600 is "0.2".
func appendSeconds(b []byte, samples uint32) []byte {
	return strconv.AppendFloat(b, float64(samples)/fmp4.Timescale, 'f', -1, 64)
}

// appendPartName appends the name of part i of segment msn: "msn.i.m4s".
func appendPartName(b []byte, msn uint64, i int) []byte {
	b = strconv.AppendUint(b, msn, 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(i), 10)
	return append(b, segmentSuffix...)
}

// Variant is one rendition of a multivariant playlist.
type Variant struct {
	// URI is the rendition's media playlist, relative to the multivariant
	// playlist; it is written as it is, so it must hold no quote or line
	// break.
	URI string
	// Bandwidth is the rendition's peak bit rate in bit/s
	// (Segmenter.Bandwidth, or a floor for a stream still young).
	Bandwidth uint64
	// Codecs is the RFC 6381 codecs of the rendition: "opus" or
	// "mp4a.40.2" (AAC-LC).
	Codecs string
}

// AppendMultivariant appends a multivariant playlist that lists variants
// in order, the one a player should prefer first (RFC 8216bis §4.4.6.2):
// players pick among them by the codecs they can play and the bandwidth
// they have.
func AppendMultivariant(b []byte, variants []Variant) []byte {
	b = append(b, "#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n"...)
	for _, v := range variants {
		b = append(b, "#EXT-X-STREAM-INF:BANDWIDTH="...)
		b = strconv.AppendUint(b, v.Bandwidth, 10)
		b = append(b, `,CODECS="`...)
		b = append(b, v.Codecs...)
		b = append(b, "\"\n"...)
		b = append(b, v.URI...)
		b = append(b, '\n')
	}
	return b
}

// gzipWriters are shared by every Segmenter: a gzip.Writer holds a few
// hundred KiB of tables, and each is busy only while a playlist is
// compressed, once a part.
var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed) // a valid level: no error
	return w
}}

// compress returns b gzipped.
func compress(b []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(len(b)/4 + 64)
	w := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(w)
	w.Reset(&buf)
	w.Write(b) // a bytes.Buffer takes every byte
	w.Close()
	return buf.Bytes()
}
