// Package tone makes test signals and finds them again: sine tones in, tone
// power and level out.
//
// Integration tests and the load tool give each speaker its own tone (say
// 440 Hz for one, 660 Hz for another), send it through the real stage,
// mixer, Opus and delivery path, and check what a listener decodes: the
// right tones present, the wrong ones absent, and not silence.
//
// Scales: samples are 16-bit with full scale 32768. Level is RMS relative to
// full scale, so a full-scale sine has level 1/√2 ≈ 0.707 and silence 0.
// Goertzel returns the power of one frequency on the square of that scale:
// a sine of amplitude A (0..1 of full scale) gives about A²/2, the same as
// its Level squared, so a full-scale sine gives 0.5 and a sine at 0.3 gives
// 0.045. White noise of RMS level σ adds about 3σ²/N at any frequency over
// N samples.
//
// Thresholds for callers: analyse at least 100 ms, and pick test
// frequencies at least three analysis bins apart, a bin being
// sampleRate/len(samples) Hz (30 Hz at 100 ms, 150 Hz at 20 ms). Then a
// tone is present when its power is above MinPower and at least
// PresenceRatio (10, i.e. 10 dB) times the power of every other test
// frequency; [Present] does exactly that. Through libopus at 32 kbit/s a
// tone's power changes by less than 3 dB, so those margins hold after
// coding (TestToneSurvivesOpus checks it).
//
// The package uses only the standard library.
package tone

import (
	"math"
	"math/rand/v2"
)

// fullScale is the magnitude that maps to 1.0: 16-bit samples reach -32768.
const fullScale = 32768

// Thresholds for deciding a tone is present; see the package comment.
const (
	// PresenceRatio is how many times stronger than every other test
	// frequency a tone must be to count as present.
	PresenceRatio = 10
	// MinPower is the least Goertzel power of a present tone: that of a
	// sine at amplitude 0.01 (-40 dBFS), far below any test tone, so that
	// near-silence never counts as a tone however clean it is.
	MinPower = 0.01 * 0.01 / 2
)

// Sine overwrites every sample of dst with a mono sine of frequency freq in
// Hz and amplitude 0..1 of full scale at sampleRate, starting at phase (in
// radians), and returns dst and the phase where the next sample would start.
// Passing that phase back in makes consecutive calls one continuous tone:
//
//	buf := make([]int16, 960) // 20 ms at 48 kHz
//	var phase float64
//	for {
//		buf, phase = tone.Sine(buf, 440, 0.3, 48000, phase)
//		// send buf
//	}
//
// The returned phase is kept in [0, 2π) so long runs do not lose precision.
func Sine(dst []int16, freq float64, amplitude float64, sampleRate int, phase float64) (out []int16, nextPhase float64) {
	step := 2 * math.Pi * freq / float64(sampleRate)
	scale := amplitude * (fullScale - 1) // keep +1 within int16
	for i := range dst {
		dst[i] = clip(scale * math.Sin(phase+step*float64(i)))
	}
	next := math.Mod(phase+step*float64(len(dst)), 2*math.Pi)
	if next < 0 {
		next += 2 * math.Pi
	}
	return dst, next
}

// Noise overwrites every sample of dst with white noise uniform in
// ±amplitude of full scale, drawn from rng so tests are repeatable. Its
// Level is amplitude/√3.
func Noise(dst []int16, amplitude float64, rng *rand.Rand) []int16 {
	scale := amplitude * (fullScale - 1)
	for i := range dst {
		dst[i] = clip(scale * (2*rng.Float64() - 1))
	}
	return dst
}

// Mix adds src into dst sample by sample, clipping at full scale, and
// returns dst. Only the first min(len(dst), len(src)) samples change.
func Mix(dst, src []int16) []int16 {
	for i := range min(len(dst), len(src)) {
		dst[i] = clip(float64(dst[i]) + float64(src[i]))
	}
	return dst
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

// Goertzel returns the power of frequency freq in Hz in mono samples taken
// at sampleRate, scaled so that a sine of amplitude A (0..1 of full scale)
// at that frequency gives about A²/2: 0.5 at full scale, 0 for silence.
//
// The samples are Hann-windowed, so a tone a few analysis bins away (a bin
// is sampleRate/len(samples) Hz) barely leaks into another frequency's
// power, and the frequency need not be a whole number of bins. Empty input
// has power 0.
func Goertzel(samples []int16, sampleRate int, freq float64) float64 {
	n := len(samples)
	if n == 0 {
		return 0
	}
	w := 2 * math.Pi * freq / float64(sampleRate)
	coeff := 2 * math.Cos(w)
	// The window is computed by recurrence (cos(k·d) from the two before)
	// to avoid a cos call per sample.
	d := 2 * math.Pi / float64(n)
	wc := 2 * math.Cos(d)
	c1, c2 := 1.0, math.Cos(d) // cos(k·d) and cos((k-1)·d), from k = 0
	var s1, s2, sum float64
	for _, x := range samples {
		win := 0.5 - 0.5*c1
		c1, c2 = wc*c1-c2, c1
		sum += win
		s0 := win*float64(x) + coeff*s1 - s2
		s2, s1 = s1, s0
	}
	if sum == 0 {
		// A single sample: the Hann window is all zero.
		return 0
	}
	// |X(ω)|² = s1² + s2² − coeff·s1·s2. A sine of amplitude a contributes
	// a·Σw/2 to |X|, so this scaling makes its power a²/2.
	mag2 := s1*s1 + s2*s2 - coeff*s1*s2
	return 2 * mag2 / (sum * fullScale * sum * fullScale)
}

// Level returns the RMS of samples relative to full scale: 0 for silence,
// about 0.707 for a full-scale sine, and 0 for empty input.
func Level(samples []int16) float64 {
	if len(samples) == 0 {
		return 0
	}
	var sum float64
	for _, x := range samples {
		v := float64(x)
		sum += v * v
	}
	return math.Sqrt(sum/float64(len(samples))) / fullScale
}

// Present reports whether the tone freq is in samples: its Goertzel power
// is at least MinPower and at least PresenceRatio times the power of each
// of the other frequencies, the other test tones a caller knows might be
// there instead.
func Present(samples []int16, sampleRate int, freq float64, others ...float64) bool {
	p := Goertzel(samples, sampleRate, freq)
	if p < MinPower {
		return false
	}
	for _, f := range others {
		if p < PresenceRatio*Goertzel(samples, sampleRate, f) {
			return false
		}
	}
	return true
}
