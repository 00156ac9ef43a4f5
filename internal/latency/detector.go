package latency

import (
	"math"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/tone"
)

// Detection thresholds, as fractions of the power a burst has at the
// configured amplitude. Through libopus at 32 kbit/s a tone's power moves
// by less than 3 dB (tone's TestToneSurvivesOpus), so "on" leaves 7 dB for
// a path that lowers the level, and "quiet" is far above what Opus leaks
// onto a mark frequency from silence or from a tone elsewhere.
const (
	// onFraction: a frame is on when its power at a mark frequency is at
	// least this fraction of the burst power (-10 dB)...
	onFraction = 0.1
	// dominance: ... and this many times the power at every other mark
	// frequency (10 dB), so broadband sound (speech, a click) is not a mark.
	dominance = tone.PresenceRatio
	// quietFraction: a frame is quiet at a frequency below this (-30 dB).
	quietFraction = 0.001
)

// Onset rules, in frames.
const (
	// onFrames is how many consecutive on frames make a mark: two, so a
	// one-frame glitch does not.
	onFrames = 2
	// maxRise is the most frames from the last quiet frame to the one that
	// confirms the mark: an onset mid-frame leaves one partial frame
	// between quiet and on, and anything slower is not a clear onset.
	maxRise = onFrames + 1
	// histFrames is how many frames the detector keeps to locate an onset:
	// the last quiet frame and the maxRise frames after it.
	histFrames = maxRise + 1
)

// Sub-frame location of the onset: a Hann-windowed Goertzel of subWindow
// samples slid by subHop. By symmetry of the window, its amplitude at the
// mark frequency reaches half the burst's when the onset is at the window's
// centre, so the onset is where the sliding amplitude crosses one half,
// interpolated between hops.
const (
	subWindow = amphi.SampleRate / 200  // 5 ms
	subHop    = amphi.SampleRate / 2000 // 0.5 ms
)

// Detection is one mark found by a listener.
type Detection struct {
	// Slot is the mark's index modulo len(Freqs): which frequency it had.
	Slot int
	// Arrived is the ear time of the onset: the arrival time of the packet
	// holding it plus the onset's offset within that packet's audio (see
	// the package comment).
	Arrived time.Time
}

// Detector finds marks in what one listener decodes. It is not safe for
// concurrent use; each listener has its own.
type Detector struct {
	freqs []float64
	on    float64 // power thresholds, from the amplitude
	quiet float64
	bank  bank
	pow   []float64 // this frame's power per slot
	slots []slotState
	hist  [histFrames]frame // a ring, frame n at hist[n%histFrames]
	n     int               // frames added
	buf   []int16           // the frames an onset is searched in, joined
}

// frame is one decoded frame kept for locating an onset.
type frame struct {
	pcm     []int16
	arrived time.Time
}

// slotState follows one mark frequency from frame to frame.
type slotState struct {
	armed      bool // quiet since the last detection (or ever)
	sinceQuiet int  // frames since the last quiet one; 0 when this one was
	onRun      int  // consecutive on frames ending at this one
}

// NewDetector returns a Detector for marks made with cfg, its zero fields
// set to the defaults.
func NewDetector(cfg MarkerConfig) *Detector {
	cfg = cfg.withDefaults()
	p := tonePower(cfg.Amplitude)
	d := &Detector{
		freqs: cfg.Freqs,
		on:    onFraction * p,
		quiet: quietFraction * p,
		pow:   make([]float64, len(cfg.Freqs)),
		slots: make([]slotState, len(cfg.Freqs)),
		bank:  newBank(cfg.Freqs),
		buf:   make([]int16, 0, histFrames*amphi.FrameSamples),
	}
	for i := range d.hist {
		d.hist[i].pcm = make([]int16, 0, amphi.FrameSamples)
	}
	return d
}

// Add feeds one decoded frame (amphi.FrameSamples samples, 48 kHz mono) and the
// time its packet arrived at the listener (the arrival of the Ogg page
// holding it). Frames must be fed in stream order, one per packet, with no
// gaps: feed a lost packet's concealment frame in its place.
//
// When a mark's onset has been confirmed it returns the detection and true.
// That happens on the second whole frame of the burst, one or two frames
// after the onset's own frame, but Detection.Arrived is the onset's time
// computed from its own frame's arrival. A burst is reported at most once,
// and only if its frequency was quiet just before; a listener that joins
// mid-burst misses that mark. Steady state allocates nothing.
func (d *Detector) Add(pcm []int16, arrived time.Time) (Detection, bool) {
	if len(pcm) == 0 {
		return Detection{}, false
	}
	h := &d.hist[d.n%histFrames]
	h.pcm = append(h.pcm[:0], pcm...)
	h.arrived = arrived
	d.n++

	d.bank.power(d.pow, pcm)
	var det Detection
	found := false
	for s := range d.slots {
		st := &d.slots[s]
		p := d.pow[s]
		if p < d.quiet {
			*st = slotState{armed: true}
			continue
		}
		st.sinceQuiet++
		if p >= d.on && d.dominates(s) {
			st.onRun++
		} else {
			st.onRun = 0
		}
		// One bot sends one mark at a time, so two onsets confirmed in the
		// same frame are not marks we know how to report: the second is
		// dropped.
		if st.armed && st.onRun == onFrames && st.sinceQuiet <= maxRise && !found {
			st.armed = false
			det, found = Detection{Slot: s, Arrived: d.locate(s, st.sinceQuiet)}, true
		}
	}
	return det, found
}

// dominates reports whether slot s's power is dominance times every other
// slot's in this frame.
func (d *Detector) dominates(s int) bool {
	for o, p := range d.pow {
		if o != s && d.pow[s] < dominance*p {
			return false
		}
	}
	return true
}

// locate returns the ear time of slot s's onset, searching the frames from
// the last quiet one (back frames before the newest) to the newest, which
// is a whole frame of the burst and gives the reference power.
func (d *Detector) locate(s, back int) time.Time {
	first := d.n - 1 - back
	d.buf = d.buf[:0]
	for n := first; n < d.n; n++ {
		d.buf = append(d.buf, d.hist[n%histFrames].pcm...)
	}
	freq := d.freqs[s]
	ref := d.pow[s]
	// Find the first window whose amplitude at freq is half the burst's.
	pos := float64(subWindow / 2)
	prev := -1.0
	for start := 0; start+subWindow <= len(d.buf); start += subHop {
		a := math.Sqrt(tone.Goertzel(d.buf[start:start+subWindow], amphi.SampleRate, freq) / ref)
		if a >= 0.5 {
			pos = float64(start + subWindow/2)
			if prev >= 0 && a > prev {
				pos -= subHop * (a - 0.5) / (a - prev)
			}
			break
		}
		prev = a
	}
	// The marker's fade-in reaches half amplitude half a ramp after the
	// burst's first sample, which is the onset we report.
	pos = max(0, pos-rampSamples/2)
	// Map the position back to its frame.
	for n := first; n < d.n; n++ {
		f := &d.hist[n%histFrames]
		if pos < float64(len(f.pcm)) || n == d.n-1 {
			return f.arrived.Add(time.Duration(pos * float64(time.Second) / amphi.SampleRate))
		}
		pos -= float64(len(f.pcm))
	}
	panic("unreachable")
}

// bank computes the Hann-windowed Goertzel power of several frequencies
// over one frame, on tone.Goertzel's scale (a sine of amplitude A gives
// A²/2). It windows each sample once and runs four frequencies' recurrences
// side by side, which is several times faster than one tone.Goertzel call
// per frequency: the recurrences are chains of dependent multiply-adds, and
// four independent chains keep the CPU busy.
type bank struct {
	coeff []float64 // 2cos(ω) per frequency, padded to a multiple of 4
	win   []float64 // Hann window for the last frame length
	scale float64   // 2/(Σwin·full scale)²
	xw    []float64 // the windowed frame
	out   []float64 // power per padded frequency
}

func newBank(freqs []float64) bank {
	n := (len(freqs) + 3) / 4 * 4
	b := bank{coeff: make([]float64, n), out: make([]float64, n)}
	for i, f := range freqs {
		b.coeff[i] = 2 * math.Cos(2*math.Pi*f/amphi.SampleRate)
	}
	b.setLen(amphi.FrameSamples)
	return b
}

// setLen prepares the window for frames of n samples. It is the same
// periodic Hann window as tone.Goertzel's.
func (b *bank) setLen(n int) {
	b.win = make([]float64, n)
	b.xw = make([]float64, n)
	var sum float64
	for k := range b.win {
		b.win[k] = 0.5 - 0.5*math.Cos(2*math.Pi*float64(k)/float64(n))
		sum += b.win[k]
	}
	b.scale = 0
	if sum > 0 {
		b.scale = 2 / (sum * 32768 * sum * 32768)
	}
}

// power writes the power of each frequency in x to dst[:len(freqs)].
func (b *bank) power(dst []float64, x []int16) {
	if len(x) != len(b.win) {
		b.setLen(len(x))
	}
	xw := b.xw[:len(x)]
	for k, v := range x {
		xw[k] = float64(v) * b.win[k]
	}
	for g := 0; g < len(b.coeff); g += 4 {
		c0, c1, c2, c3 := b.coeff[g], b.coeff[g+1], b.coeff[g+2], b.coeff[g+3]
		var a1, a2, b1, b2, e1, e2, f1, f2 float64
		for _, v := range xw {
			a1, a2 = v+c0*a1-a2, a1
			b1, b2 = v+c1*b1-b2, b1
			e1, e2 = v+c2*e1-e2, e1
			f1, f2 = v+c3*f1-f2, f1
		}
		b.out[g] = (a1*a1 + a2*a2 - c0*a1*a2) * b.scale
		b.out[g+1] = (b1*b1 + b2*b2 - c1*b1*b2) * b.scale
		b.out[g+2] = (e1*e1 + e2*e2 - c2*e1*e2) * b.scale
		b.out[g+3] = (f1*f1 + f2*f2 - c3*f1*f2) * b.scale
	}
	copy(dst, b.out)
}
