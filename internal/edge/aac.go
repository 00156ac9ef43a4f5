package edge

import (
	"fmt"
	"time"

	"gopkg.in/hraban/opus.v2"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/aac"
	"github.com/amphi-audio/amphi/internal/fmp4"
	"github.com/amphi-audio/amphi/internal/hls"
	"github.com/amphi-audio/amphi/internal/program"
)

// maxPacketSamples is the most audio one Opus packet holds: 120 ms.
const maxPacketSamples = amphi.SampleRate * 120 / 1000

// aacRendition is a space's LL-HLS in AAC-LC, for players without Opus
// (Apple's before iOS 17): the program's Opus decoded and encoded once on
// this node, in the HLS feed's goroutine, whatever the number of
// listeners.
//
// Its media timeline is the program's granule timeline plus the encoder's
// delay, so that the access unit the encoder returns first starts where
// the program's audio it encodes starts, the edit list skips the delay
// and the pre-skip together, and both renditions present the same sample
// at the same time. Access units start on multiples of aac.FrameSize of
// that timeline: every node, whenever it joined the program, names and
// times the parts alike, as it does for the Opus rendition.
type aacRendition struct {
	seg *hls.Segmenter
	dec *opus.Decoder
	enc *aac.Encoder
	// fresh says enc has encoded nothing yet.
	fresh bool
	// next is the granule at which the next page must start to follow on.
	next int64
	// drop is the decoded samples still to skip to start on the grid.
	drop int
	// at is where the next access unit starts in the media timeline.
	at int64
	// delay is the encoder's, in samples.
	delay int64

	frame   []int16 // one packet's audio
	pcm     []int16 // one page's audio
	units   [][]byte
	samples []fmp4.Sample
}

// newAACRendition makes the AAC rendition of a program, with the hls
// configuration cfg (the clock and the window) and an init segment of its
// own.
func newAACRendition(cfg hls.Config) (*aacRendition, error) {
	dec, err := opus.NewDecoder(amphi.SampleRate, 1) // the program is mono
	if err != nil {
		return nil, fmt.Errorf("aac rendition: %w", err)
	}
	enc, err := aac.NewEncoder(amphi.SampleRate, 1, aac.DefaultBitrate)
	if err != nil {
		return nil, err
	}
	a := &aacRendition{
		dec: dec, enc: enc, fresh: true, next: -1, delay: int64(enc.Delay()),
		frame: make([]int16, maxPacketSamples),
		pcm:   make([]int16, 0, amphi.ChunkSamples),
	}
	// The segmenter dates what it is given as live when given, but the
	// access units lag the program's newest sample by what the encoder
	// holds: its delay and the input short of a frame. Dated back by
	// that, both renditions give a sample the same PROGRAM-DATE-TIME.
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	cfg.Now = func() time.Time {
		return now().Add(-time.Duration(a.next+a.delay-a.at) * time.Second / amphi.SampleRate)
	}
	cfg.Init, err = fmp4.AppendAACInit(nil, 1, uint32(a.delay+program.PreSkip), aac.DefaultBitrate, enc.Config())
	if err == nil {
		cfg.FrameSamples = aac.FrameSize
		if a.seg, err = hls.NewSegmenter(cfg); err == nil {
			return a, nil
		}
	}
	enc.Close()
	return nil, fmt.Errorf("aac rendition: %w", err)
}

// add transcodes one page that the Opus rendition took: its packets, the
// last ending at granule.
func (a *aacRendition) add(granule int64, packets [][]byte) error {
	a.pcm = a.pcm[:0]
	for _, p := range packets {
		n, err := a.dec.Decode(p, a.frame)
		if err != nil {
			return fmt.Errorf("aac rendition: decode: %w", err)
		}
		a.pcm = append(a.pcm, a.frame[:n]...)
	}
	if start := granule - int64(len(a.pcm)); start != a.next {
		if err := a.restart(start); err != nil {
			return err
		}
	}
	a.next = granule
	skip := min(a.drop, len(a.pcm))
	a.drop -= skip
	return a.encode(a.pcm[skip:])
}

// restart starts the encoder at the first multiple of aac.FrameSize from
// start: at the first page, or after a gap in the program, which the
// segmenter marks as a discontinuity. The old encoder's tail ends the
// audio before the gap.
func (a *aacRendition) restart(start int64) error {
	if !a.fresh {
		var err error
		if a.units, err = a.enc.Flush(a.units[:0]); err != nil {
			return err
		}
		if err := a.emit(); err != nil {
			return err
		}
		enc, err := aac.NewEncoder(amphi.SampleRate, 1, aac.DefaultBitrate)
		if err != nil {
			return err
		}
		a.enc.Close()
		a.enc = enc
	}
	a.fresh = false
	grid := (start + aac.FrameSize - 1) / aac.FrameSize * aac.FrameSize
	a.drop, a.at = int(grid-start), grid
	return nil
}

// encode encodes pcm and gives the access units it completes to the
// segmenter.
func (a *aacRendition) encode(pcm []int16) error {
	var err error
	if a.units, err = a.enc.Encode(a.units[:0], pcm); err != nil {
		return err
	}
	return a.emit()
}

// emit gives a.units to the segmenter, each starting aac.FrameSize after
// the one before.
func (a *aacRendition) emit() error {
	if len(a.units) == 0 {
		return nil
	}
	a.samples = a.samples[:0]
	for _, u := range a.units {
		a.samples = append(a.samples, fmp4.Sample{Data: u, Duration: aac.FrameSize})
	}
	a.at += int64(len(a.units)) * aac.FrameSize
	clear(a.units) // the segmenter holds them now
	err := a.seg.AddSamples(a.at, a.samples)
	clear(a.samples)
	return err
}

// finish encodes the audio the encoder still holds and ends the playlist.
func (a *aacRendition) finish() error {
	defer a.seg.Finish()
	if a.fresh {
		return nil
	}
	var err error
	if a.units, err = a.enc.Flush(a.units[:0]); err != nil {
		return err
	}
	return a.emit()
}

// close frees the encoder; the segmenter stays, for players.
func (a *aacRendition) close() { a.enc.Close() }
