package tone

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os/exec"
	"testing"
)

const rate = 48000

// testFreqs are the frequencies the tests look for, as a caller would
// give each speaker one.
var testFreqs = []float64{440, 660, 1000, 1500}

func sine(n int, freq, amplitude float64) []int16 {
	s, _ := Sine(make([]int16, n), freq, amplitude, rate, 0)
	return s
}

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol }

func TestGoertzelScale(t *testing.T) {
	tests := []struct {
		name    string
		samples []int16
		freq    float64
		want    float64
		tol     float64
	}{
		{"full-scale sine gives 0.5", sine(rate, 440, 1), 440, 0.5, 0.005},
		{"amplitude 0.3 gives 0.045", sine(rate, 440, 0.3), 440, 0.045, 0.0005},
		{"20 ms window, not whole cycles", sine(960, 440, 0.3), 440, 0.045, 0.001},
		{"frequency between bins", sine(4800, 437.3, 0.5), 437.3, 0.125, 0.002},
		{"other frequency sees almost nothing", sine(rate, 440, 1), 1000, 0, 1e-6},
		{"silence", make([]int16, rate), 440, 0, 0},
		{"empty", nil, 440, 0, 0},
		{"one sample", []int16{1000}, 440, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Goertzel(tt.samples, rate, tt.freq); !near(got, tt.want, tt.tol) {
				t.Fatalf("Goertzel = %g, want %g±%g", got, tt.want, tt.tol)
			}
		})
	}
}

func TestLevel(t *testing.T) {
	tests := []struct {
		name    string
		samples []int16
		want    float64
	}{
		{"full-scale sine", sine(rate, 440, 1), 1 / math.Sqrt2},
		{"sine at 0.3", sine(rate, 1000, 0.3), 0.3 / math.Sqrt2},
		{"uniform noise at 0.3", Noise(make([]int16, rate), 0.3, rand.New(rand.NewPCG(1, 2))), 0.3 / math.Sqrt(3)},
		{"full-scale square", []int16{-32768, 32767, -32768, 32767}, 1},
		{"silence", make([]int16, 100), 0},
		{"empty", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Level(tt.samples); !near(got, tt.want, 0.002) {
				t.Fatalf("Level = %g, want %g", got, tt.want)
			}
		})
	}
}

func TestSineIsContinuousAcrossCalls(t *testing.T) {
	whole := sine(1000, 440, 0.5)
	var pieces []int16
	phase := 0.0
	for _, n := range []int{1, 0, 959, 40} {
		var buf []int16
		buf, phase = Sine(make([]int16, n), 440, 0.5, rate, phase)
		pieces = append(pieces, buf...)
	}
	for i := range whole {
		if d := int(whole[i]) - int(pieces[i]); d < -1 || d > 1 {
			t.Fatalf("sample %d: %d in pieces, %d in one call", i, pieces[i], whole[i])
		}
	}
	if phase < 0 || phase >= 2*math.Pi {
		t.Fatalf("next phase %g outside [0, 2π)", phase)
	}
}

func TestSineStaysInRange(t *testing.T) {
	s, _ := Sine(make([]int16, rate), 1000, 1, rate, 0)
	lo, hi := int16(0), int16(0)
	for _, v := range s {
		lo, hi = min(lo, v), max(hi, v)
	}
	if hi != 32767 || lo != -32767 {
		t.Fatalf("full-scale sine spans %d..%d, want -32767..32767", lo, hi)
	}
}

// toneInNoise returns 1 s of the tones at amplitude 0.3 plus uniform noise
// at amplitude noise, from a fixed seed.
func toneInNoise(noise float64, freqs ...float64) []int16 {
	out := Noise(make([]int16, rate), noise, rand.New(rand.NewPCG(7, 7)))
	for _, f := range freqs {
		Mix(out, sine(rate, f, 0.3))
	}
	return out
}

func TestPresentFindsTheToneAndNotTheOthers(t *testing.T) {
	tests := []struct {
		name    string
		samples []int16
		present []float64
	}{
		{"440 Hz in light noise", toneInNoise(0.05, 440), []float64{440}},
		{"440 Hz in noise as loud as the tone", toneInNoise(0.3, 440), []float64{440}},
		{"440 Hz, 100 ms", toneInNoise(0.1, 440)[:4800], []float64{440}},
		{"two speakers", toneInNoise(0.05, 440, 1000), []float64{440, 1000}},
		{"noise alone", toneInNoise(0.3), nil},
		{"silence", make([]int16, rate), nil},
		{"tone too quiet", sine(rate, 440, 0.005), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, f := range testFreqs {
				var others []float64
				for _, o := range testFreqs {
					if o != f && !contains(tt.present, o) {
						others = append(others, o)
					}
				}
				want := contains(tt.present, f)
				if got := Present(tt.samples, rate, f, others...); got != want {
					t.Errorf("Present(%g Hz) = %v, want %v (power %g)", f, got, want, Goertzel(tt.samples, rate, f))
				}
			}
		})
	}
}

func contains(fs []float64, f float64) bool {
	for _, v := range fs {
		if v == f {
			return true
		}
	}
	return false
}

func TestMixClips(t *testing.T) {
	got := Mix([]int16{30000, -30000, 5, 7}, []int16{30000, -30000, -5})
	want := []int16{32767, -32768, 0, 7}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Mix = %v, want %v", got, want)
		}
	}
}

// TestToneSurvivesOpus checks the thresholds in the package comment after
// a round trip through libopus at 32 kbit/s, as the program stream does.
func TestToneSurvivesOpus(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skip("ffmpeg not on PATH")
	}
	in := toneInNoise(0.05, 440)
	var raw bytes.Buffer
	for _, v := range in {
		binary.Write(&raw, binary.LittleEndian, v)
	}
	encode := exec.CommandContext(t.Context(), ffmpeg, "-nostdin", "-v", "error",
		"-f", "s16le", "-ar", "48000", "-ac", "1", "-i", "-",
		"-c:a", "libopus", "-b:a", "32k", "-f", "ogg", "-")
	encode.Stdin = &raw
	ogg, err := encode.Output()
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	decode := exec.CommandContext(t.Context(), ffmpeg, "-nostdin", "-v", "error",
		"-i", "-", "-f", "s16le", "-ar", "48000", "-ac", "1", "-")
	decode.Stdin = bytes.NewReader(ogg)
	pcm, err := decode.Output()
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	out := make([]int16, len(pcm)/2)
	for i := range out {
		out[i] = int16(binary.LittleEndian.Uint16(pcm[2*i:]))
	}
	if len(out) < rate*9/10 {
		t.Fatalf("decoded %d samples, want about %d", len(out), rate)
	}
	if !Present(out, rate, 440, 660, 1000, 1500) {
		t.Fatalf("440 Hz not present after Opus: powers %g / %g / %g / %g", Goertzel(out, rate, 440),
			Goertzel(out, rate, 660), Goertzel(out, rate, 1000), Goertzel(out, rate, 1500))
	}
	if Present(out, rate, 1000, 440, 660, 1500) {
		t.Fatal("1000 Hz present after Opus")
	}
	before, after := Goertzel(in, rate, 440), Goertzel(out, rate, 440)
	if db := 10 * math.Log10(after/before); math.Abs(db) > 3 {
		t.Fatalf("440 Hz power changed by %.1f dB through Opus", db)
	}
}
