package load

import (
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/latency"
	"github.com/amphi-audio/amphi/internal/ogg"
	"github.com/amphi-audio/amphi/internal/opuspkt"
	"gopkg.in/hraban/opus.v2"
)

// Bounds of a sampled listener's decoding.
const (
	// maxConcealFrames is the longest gap in the program (by granule
	// position) a sampled listener fills with concealment frames, 1 s;
	// after a longer one, a listener skipped ahead, and its detector starts
	// afresh rather than being fed a second of made-up audio.
	maxConcealFrames = 50
	// maxPacketSamples is the longest packet Opus allows, 120 ms.
	maxPacketSamples = opuspkt.MaxSamples
	// burstMargin is added to the burst a listener receives on joining to
	// get its warm-up (see ear.warmEnd).
	burstMargin = 500 * time.Millisecond
	// serverBurst is the burst the server sends when the scenario does not
	// ask for one (the edge's default).
	serverBurst = 500 * time.Millisecond
)

// ear is what a sampled listener adds to a plain one: it gathers each page,
// decodes its packets and finds the latency marks in them. Plain listeners
// have none and pay nothing.
type ear struct {
	dec  *opus.Decoder
	det  *latency.Detector
	mcfg latency.MarkerConfig
	page []byte   // the bytes of the page being received
	pkts [][]byte // the packets of the last page
	pcm  []int16
	// granule is the granule position of the last page decoded, -1 before
	// the first: it tells a gap in the program apart from a page that
	// follows.
	granule int64
	// warmup is how long after its first audio a listener ignores marks:
	// the burst it receives on joining holds pages up to a burst old, all
	// arriving at once, whose marks would read late by as much.
	warmup  time.Duration
	warmEnd time.Time
	dets    []latency.Detection
	// errs counts packets that did not decode and pages that did not parse.
	errs int
}

// newEar returns the ear of one sampled listener of sc.
func newEar(sc *Scenario) (*ear, error) {
	dec, err := opus.NewDecoder(amphi.SampleRate, 1)
	if err != nil {
		return nil, err
	}
	mcfg := markerConfig(sc)
	return &ear{
		dec:     dec,
		det:     latency.NewDetector(mcfg),
		mcfg:    mcfg,
		pcm:     make([]int16, maxPacketSamples),
		granule: -1,
		warmup:  max(time.Duration(sc.Burst), serverBurst) + burstMargin,
	}, nil
}

// markerConfig is the marks a scenario's bot sends and its listeners look
// for.
func markerConfig(sc *Scenario) latency.MarkerConfig {
	return latency.MarkerConfig{Interval: time.Duration(sc.LatencyInterval)}
}

// gather adds bytes of the page being received.
func (e *ear) gather(b []byte) { e.page = append(e.page, b...) }

// skip forgets a page that is not audio (the header pages).
func (e *ear) skip() { e.page = e.page[:0] }

// start is called at the listener's first audio.
func (e *ear) start(now time.Time) { e.warmEnd = now.Add(e.warmup) }

// hear decodes the page just gathered, which arrived at arrived, and feeds
// its frames to the detector.
func (e *ear) hear(p pageInfo, arrived time.Time) {
	var err error
	// amphi's pages hold whole packets; a piece continued across pages
	// would not be the program's.
	e.pkts, err = ogg.AppendPackets(e.pkts[:0], e.page)
	e.page = e.page[:0]
	if err != nil {
		e.errs++
		return
	}
	// Samples the page's packets hold, so a gap before it can be told.
	samples := int64(0)
	for _, pkt := range e.pkts {
		n, _ := opuspkt.Samples(pkt) // 0 for a malformed packet
		samples += int64(n)
	}
	if e.granule >= 0 {
		gap := (p.Granule - samples - e.granule) / amphi.FrameSamples
		switch {
		case gap > maxConcealFrames:
			e.det = latency.NewDetector(e.mcfg)
		case gap > 0:
			for range gap {
				e.conceal(arrived)
			}
		}
	}
	e.granule = p.Granule
	for _, pkt := range e.pkts {
		n, err := e.dec.Decode(pkt, e.pcm)
		if err != nil {
			e.errs++
			e.conceal(arrived)
			continue
		}
		e.feed(e.pcm[:n], arrived)
	}
}

// conceal feeds one frame of the decoder's concealment in place of a lost
// packet, as the detector asks.
func (e *ear) conceal(arrived time.Time) {
	pcm := e.pcm[:amphi.FrameSamples]
	if err := e.dec.DecodePLC(pcm); err != nil {
		clear(pcm)
	}
	e.feed(pcm, arrived)
}

// feed gives decoded audio to the detector 20 ms at a time and keeps the
// marks found after the warm-up.
func (e *ear) feed(pcm []int16, arrived time.Time) {
	for len(pcm) > 0 {
		n := min(len(pcm), amphi.FrameSamples)
		if d, ok := e.det.Add(pcm[:n], arrived); ok && !d.Arrived.Before(e.warmEnd) {
			e.dets = append(e.dets, d)
		}
		pcm = pcm[n:]
	}
}
