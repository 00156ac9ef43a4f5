// Package latency measures mouth-to-ear latency through a live space: a
// speaker bot sends timing marks, a sample of listeners finds them in what
// they decode, and the two sides' clocks give one latency per mark.
//
// The marks are short tone bursts. A [Marker] makes the bot's PCM: silence
// (or a quiet noise background) with a burst at the start of every
// Interval, the k-th burst at frequency Freqs[k%len(Freqs)]. A [Detector]
// per listener is fed each decoded 20 ms frame with the time its packet
// arrived and reports every burst onset it finds, with the burst's slot
// (k%len(Freqs)) and the onset's arrival time. [Match] pairs those
// detections with the send times the bot recorded and returns latencies;
// [Summarize] and [Percentile] reduce them to p50/p99.
//
// What is measured:
//
//   - mouth: the time the bot handed the frame that holds the mark's first
//     sample to its WHIP track (the mark starts on that frame's first
//     sample; the load tool records it when [Marker.Frame] says ok);
//   - ear: the time the packet holding the onset arrived at the listener
//     (the arrival time of its Ogg page), plus the onset's offset inside
//     that packet's 20 ms of audio: the instant a player with no buffer,
//     which starts playing each packet the moment it arrives, would sound
//     the onset.
//
// So the latency includes everything on the way: the bot's encoder, the
// network, the stage's jitter buffer, the mixer's decode, frame alignment
// and re-encode (libopus adds 6.5 ms of delay per encode, 312 samples), the
// program's batching of 5 packets per Ogg page, the bus, the edge, and the
// edge's coalesced writes. The batching is part of it on purpose: a page is
// written only once its fifth packet exists, so the first packet of a page
// reaches the ear 80 ms after the last one would have, the last one 0 ms
// later; a mark whose onset lands in page position p (0..4) is reported
// (4-p)·20 ms late compared with per-packet delivery, plus however long the
// edge holds the page to coalesce writes. With Interval a multiple of
// 100 ms every mark lands in the same page position, so the whole run sees
// one batching offset between 0 and 80 ms; an Interval like 1.02 s walks
// the marks through all five positions (40 ms on average).
//
// Detection is by Goertzel power per 20 ms frame at the mark frequencies
// only, so other speakers' speech and tones at other frequencies pass
// unnoticed. An onset is a slot's power jumping from below a quiet level
// (30 dB under the expected burst power) to above an "on" level (10 dB
// under it) and at least 10 times every other mark frequency, within one
// frame, and staying on for two whole frames: a one-frame glitch is not a
// mark. The onset is then located inside its frame to well under a
// millisecond with a sliding 5 ms window.
//
// The package uses only the standard library and internal/tone.
package latency

import (
	"math"
	"time"

	"github.com/amphi-audio/amphi"
)

// minBurstFrames is the shortest burst, in frames: the mixer's frame
// boundaries fall anywhere relative to the bot's, and a burst of three
// frames always covers two whole program frames, which the detector needs
// to tell a mark from a glitch.
const minBurstFrames = 3

// rampSamples is the length of the raised-cosine fade at each end of a
// burst (1 ms): short enough to keep the onset sharp, long enough that the
// click of a hard start does not splash power onto the other mark
// frequencies.
const rampSamples = amphi.SampleRate / 1000

// MarkerConfig describes the marks. The same config must be given to the
// bot's [Marker], the listeners' [Detector]s and [Match].
type MarkerConfig struct {
	// Interval is the time between two marks' onsets, rounded to whole
	// 20 ms frames. Zero means 1 s. It is raised to at least Burst plus two
	// frames so that every burst is preceded by quiet.
	Interval time.Duration
	// Burst is the length of each tone burst, rounded up to whole frames.
	// Zero means 60 ms, which is also the minimum (see minBurstFrames).
	Burst time.Duration
	// Freqs are the burst frequencies in Hz, used in turn: mark k is at
	// Freqs[k%len(Freqs)], so a detector can tell apart marks up to
	// len(Freqs) intervals apart. Keep them at least 150 Hz apart (three
	// bins of a 20 ms analysis window) and away from the frequencies other
	// speakers use. Nil means 1200, 1500, ..., 3300 Hz (eight frequencies
	// 300 Hz apart: six bins, so after Opus each is ~30 dB clear of its
	// neighbours, and they tell apart marks up to 8 intervals late).
	Freqs []float64
	// Amplitude is the bursts' peak amplitude, 0..1 of full scale. The
	// detector's thresholds are relative to it, so the marks must reach
	// listeners within 10 dB of it (the mixer sums without gain). Zero
	// means 0.5.
	Amplitude float64
	// Background is the amplitude (0..1 of full scale) of white noise the
	// marker adds under the marks, for paths that treat digital silence
	// specially. Zero means pure silence between bursts. Keep it below
	// 0.05: the detector needs the mark frequencies quiet between bursts.
	Background float64
}

// DefaultConfig returns the config with every default filled in: marks
// every second, 60 ms long, at half of full scale, on eight frequencies
// from 1200 to 3300 Hz.
func DefaultConfig() MarkerConfig {
	return MarkerConfig{}.withDefaults()
}

// withDefaults returns c with zero fields set to their defaults and the
// durations rounded to whole frames. Freqs is copied so callers can't
// change a running detector's frequencies.
func (c MarkerConfig) withDefaults() MarkerConfig {
	if c.Burst <= 0 {
		c.Burst = minBurstFrames * amphi.FrameDuration
	}
	burst := max(minBurstFrames, int((c.Burst+amphi.FrameDuration-1)/amphi.FrameDuration))
	c.Burst = time.Duration(burst) * amphi.FrameDuration
	if c.Interval <= 0 {
		c.Interval = time.Second
	}
	interval := max(burst+2, int((c.Interval+amphi.FrameDuration/2)/amphi.FrameDuration))
	c.Interval = time.Duration(interval) * amphi.FrameDuration
	if len(c.Freqs) == 0 {
		c.Freqs = make([]float64, 8)
		for i := range c.Freqs {
			c.Freqs[i] = 1200 + 300*float64(i)
		}
	} else {
		c.Freqs = append([]float64(nil), c.Freqs...)
	}
	if c.Amplitude <= 0 {
		c.Amplitude = 0.5
	}
	return c
}

// intervalFrames and burstFrames return the config's durations in frames;
// the config must have its defaults set.
func (c MarkerConfig) intervalFrames() int { return int(c.Interval / amphi.FrameDuration) }
func (c MarkerConfig) burstFrames() int    { return int(c.Burst / amphi.FrameDuration) }

// Marker makes the PCM a speaker bot sends. It holds no state between
// frames, so it is safe for concurrent use and frames may be asked for in
// any order.
type Marker struct {
	cfg MarkerConfig
	// ramp is the fade-in gain of each of the first rampSamples samples of
	// a burst; the fade-out uses it backwards.
	ramp [rampSamples]float64
}

// NewMarker returns a Marker for cfg, its zero fields set to the defaults.
func NewMarker(cfg MarkerConfig) *Marker {
	m := &Marker{cfg: cfg.withDefaults()}
	for i := range m.ramp {
		m.ramp[i] = 0.5 - 0.5*math.Cos(math.Pi*float64(i)/rampSamples)
	}
	return m
}

// Config returns the marker's config with its defaults filled in.
func (m *Marker) Config() MarkerConfig { return m.cfg }

// Frame returns the PCM (amphi.FrameSamples samples, 48 kHz mono) of frame i of
// the bot's stream, frame i covering [i·20 ms, (i+1)·20 ms) of the bot's
// own timeline, written into dst when it has room. When a mark starts in
// this frame (on its first sample: marks start on frame boundaries) it also
// returns the mark's index k and ok = true; the caller records the time it
// hands this frame over as mark k's send time. Negative i gives silence.
func (m *Marker) Frame(dst []int16, i int) (pcm []int16, mark int, ok bool) {
	if cap(dst) < amphi.FrameSamples {
		dst = make([]int16, amphi.FrameSamples)
	}
	pcm = dst[:amphi.FrameSamples]
	clear(pcm)
	if i < 0 {
		return pcm, 0, false
	}
	if m.cfg.Background > 0 {
		noise(pcm, m.cfg.Background, uint64(i))
	}
	per, burst := m.cfg.intervalFrames(), m.cfg.burstFrames()
	k, f := i/per, i%per
	if f >= burst {
		return pcm, 0, false
	}
	freq := m.cfg.Freqs[k%len(m.cfg.Freqs)]
	step := 2 * math.Pi * freq / amphi.SampleRate
	scale := m.cfg.Amplitude * (math.MaxInt16)
	first := f * amphi.FrameSamples // the burst's sample number of pcm[0]
	last := burst * amphi.FrameSamples
	for j := range pcm {
		s := first + j
		v := scale * math.Sin(step*float64(s))
		switch {
		case s < rampSamples:
			v *= m.ramp[s]
		case last-1-s < rampSamples:
			v *= m.ramp[last-1-s]
		}
		pcm[j] = clip(float64(pcm[j]) + v)
	}
	if f != 0 {
		return pcm, 0, false
	}
	return pcm, k, true
}

// noise writes uniform white noise of the given amplitude into pcm, drawn
// from a generator seeded by the frame number so a frame's noise does not
// depend on which frames were made before (splitmix64).
func noise(pcm []int16, amplitude float64, seed uint64) {
	scale := amplitude * math.MaxInt16
	x := seed * 0x9e3779b97f4a7c15
	for j := range pcm {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		u := float64(z>>11)/(1<<53)*2 - 1
		pcm[j] = clip(scale * u)
	}
}

// clip rounds v to the nearest int16, saturating.
func clip(v float64) int16 {
	switch {
	case v >= math.MaxInt16:
		return math.MaxInt16
	case v <= math.MinInt16:
		return math.MinInt16
	}
	return int16(math.Round(v))
}

// tonePower is the Goertzel power of a sine of amplitude a (tone's scale).
func tonePower(a float64) float64 { return a * a / 2 }
