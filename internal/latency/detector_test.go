package latency

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/tone"
	"gopkg.in/hraban/opus.v2"
)

// opusDelay is libopus's algorithmic delay at 48 kHz (2.5 ms lookahead +
// 4 ms delay compensation): a sample fed to the encoder comes out of the
// decoder this much later. It is part of every measured latency.
const opusDelay = 312 * time.Second / amphi.SampleRate

// t0 is the bot's frame 0 in the tests' synthetic clock.
var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// sendTime is the mouth time of the bot's frame i.
func sendTime(i int) time.Time { return t0.Add(time.Duration(i) * amphi.FrameDuration) }

// lead is how many frames of silence a listener decodes before the bot's
// frame 0: the listener joined first, so it has heard the mark
// frequencies quiet before mark 0 (a listener joining mid-burst misses it).
const lead = 5

// stream is a marker stream as one listener decodes it: frame j of frames
// is aligned with the bot's frame j-lead.
type stream struct {
	frames [][]int16   // decoded, amphi.FrameSamples each
	sent   []time.Time // send time of each mark
}

// streamOpts shapes the listener's stream.
type streamOpts struct {
	frames int     // how many 20 ms frames the bot sends
	shift  int     // samples of silence before the bot's first sample: where in the listener's frames the marks fall
	other  float64 // frequency of a tone mixed in (another speaker); 0 for none
	level  float64 // its amplitude
	noise  float64 // amplitude of white noise mixed in
	marks  bool    // whether the bot sends marks at all
}

// makeStream runs the Marker's frames (and whatever else is mixed in)
// through real libopus at the program's settings, mono 32 kbit/s, and
// decodes them.
func makeStream(t testing.TB, cfg MarkerConfig, o streamOpts) stream {
	t.Helper()
	enc, err := opus.NewEncoder(amphi.SampleRate, 1, opus.AppAudio)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.SetBitrate(32000); err != nil {
		t.Fatal(err)
	}
	dec, err := opus.NewDecoder(amphi.SampleRate, 1)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMarker(cfg)
	rng := rand.New(rand.NewPCG(1, 2))
	// The bot's samples, delayed by shift, in one line.
	line := make([]int16, lead*amphi.FrameSamples+o.shift, (lead+o.frames+1)*amphi.FrameSamples)
	var s stream
	var buf []int16
	for i := range o.frames {
		var mark int
		var ok bool
		if o.marks {
			buf, mark, ok = m.Frame(buf, i)
		} else {
			buf = make([]int16, amphi.FrameSamples)
		}
		if ok {
			if mark != len(s.sent) {
				t.Fatalf("frame %d starts mark %d, want %d", i, mark, len(s.sent))
			}
			s.sent = append(s.sent, sendTime(i))
		}
		line = append(line, buf...)
	}
	var phase float64
	other := make([]int16, amphi.FrameSamples)
	noise := make([]int16, amphi.FrameSamples)
	pkt := make([]byte, 1500)
	for i := range lead + o.frames {
		pcm := line[i*amphi.FrameSamples : (i+1)*amphi.FrameSamples]
		if o.other > 0 {
			other, phase = tone.Sine(other, o.other, o.level, amphi.SampleRate, phase)
			tone.Mix(pcm, other)
		}
		if o.noise > 0 {
			tone.Mix(pcm, tone.Noise(noise, o.noise, rng))
		}
		n, err := enc.Encode(pcm, pkt)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]int16, amphi.FrameSamples)
		got, err := dec.Decode(pkt[:n], out)
		if err != nil || got != amphi.FrameSamples {
			t.Fatalf("decode frame %d: %d samples, %v", i, got, err)
		}
		s.frames = append(s.frames, out)
	}
	return s
}

// detect feeds every frame of s to a Detector, the one aligned with the
// bot's frame i arriving at arrive(i), and returns what it found.
func detect(cfg MarkerConfig, s stream, arrive func(i int) time.Time) []Detection {
	d := NewDetector(cfg)
	var dets []Detection
	for j, f := range s.frames {
		if det, ok := d.Add(f, arrive(j-lead)); ok {
			dets = append(dets, det)
		}
	}
	return dets
}

// fixedDelay: every packet arrives D after the bot sent the frame.
func fixedDelay(D time.Duration) func(int) time.Time {
	return func(i int) time.Time { return sendTime(i).Add(D) }
}

// paged: packets come in Ogg pages of 5, the first page holding the
// frames from -phase; a page arrives D after its last packet was sent, plus
// a random 0-30 ms of its own.
func paged(D time.Duration, phase int, seed uint64) func(int) time.Time {
	rng := rand.New(rand.NewPCG(seed, 7))
	jitter := map[int]time.Duration{}
	return func(i int) time.Time {
		p := floorDiv(i+phase, 5)
		if _, ok := jitter[p]; !ok {
			jitter[p] = time.Duration(rng.Int64N(int64(30*time.Millisecond) + 1))
		}
		last := p*5 + 4 - phase
		return sendTime(last).Add(D + jitter[p])
	}
}

// floorDiv is a/b rounded down, for the frames before the bot's frame 0.
func floorDiv(a, b int) int {
	if a < 0 {
		return -((-a + b - 1) / b)
	}
	return a / b
}

func TestDetectorFindsEveryMarkOnce(t *testing.T) {
	tests := []struct {
		name string
		cfg  MarkerConfig
		o    streamOpts
	}{
		{"silence", MarkerConfig{}, streamOpts{}},
		{"440 Hz speaker at the marks' level", MarkerConfig{}, streamOpts{other: 440, level: 0.5}},
		{"two tone speakers", MarkerConfig{}, streamOpts{other: 660, level: 0.4, noise: 0.02}},
		{"background noise from the bot", MarkerConfig{Background: 0.01}, streamOpts{}},
		{"quiet marks", MarkerConfig{Amplitude: 0.1}, streamOpts{other: 440, level: 0.3}},
		{"mid-frame onsets", MarkerConfig{}, streamOpts{shift: 700, other: 440, level: 0.5}},
		{"dense marks, 3 slots", MarkerConfig{Interval: 200 * time.Millisecond, Freqs: []float64{1000, 2000, 3000}}, streamOpts{other: 440, level: 0.3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.o
			o.frames, o.marks = 600, true
			s := makeStream(t, tt.cfg, o)
			dets := detect(tt.cfg, s, fixedDelay(0))
			n := len(NewMarker(tt.cfg).Config().Freqs)
			// A mark whose burst is cut by the end of the stream can't be
			// confirmed.
			want := len(s.sent)
			if last := s.sent[want-1]; sendTime(o.frames).Sub(last) < 100*time.Millisecond {
				want--
			}
			if len(dets) != want {
				t.Fatalf("%d detections, want %d: %v", len(dets), want, dets)
			}
			for k, det := range dets {
				if det.Slot != k%n {
					t.Errorf("detection %d: slot %d, want %d", k, det.Slot, k%n)
				}
			}
		})
	}
}

func TestDetectorIgnoresWhatIsNotAMark(t *testing.T) {
	tests := []struct {
		name string
		o    streamOpts
	}{
		{"silence", streamOpts{}},
		{"440 Hz tone", streamOpts{other: 440, level: 0.5}},
		{"loud 440 Hz tone", streamOpts{other: 440, level: 0.9}},
		{"tone between two mark frequencies", streamOpts{other: 1350, level: 0.5}},
		{"loud white noise", streamOpts{noise: 0.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.o
			o.frames = 500 // 10 s
			s := makeStream(t, MarkerConfig{}, o)
			if dets := detect(MarkerConfig{}, s, fixedDelay(0)); len(dets) != 0 {
				t.Errorf("false detections: %v", dets)
			}
		})
	}
}

// A mark must persist for two whole frames: a 20 ms burst is not one.
func TestDetectorRejectsOneFrameGlitch(t *testing.T) {
	d := NewDetector(MarkerConfig{})
	pcm := make([]int16, amphi.FrameSamples)
	var phase float64
	for i := range 100 {
		clear(pcm)
		if i%10 == 5 { // a 20 ms burst at a mark frequency every 200 ms
			pcm, phase = tone.Sine(pcm, 1200, 0.5, amphi.SampleRate, phase)
		}
		if det, ok := d.Add(pcm, sendTime(i)); ok {
			t.Fatalf("frame %d: detected %v", i, det)
		}
	}
}

func TestDetectorLocatesOnsetWithinAMillisecond(t *testing.T) {
	var worst time.Duration
	for _, shift := range []int{0, 1, 137, 240, 480, 647, 720, 959} {
		o := streamOpts{frames: 300, marks: true, shift: shift, other: 440, level: 0.4}
		s := makeStream(t, MarkerConfig{}, o)
		dets := detect(MarkerConfig{}, s, fixedDelay(0))
		if len(dets) != len(s.sent) {
			t.Fatalf("shift %d: %d detections of %d marks", shift, len(dets), len(s.sent))
		}
		// The listener's stream is the bot's delayed by shift samples and
		// the codec: that is the latency to find.
		want := time.Duration(shift)*time.Second/amphi.SampleRate + opusDelay
		for k, det := range dets {
			err := det.Arrived.Sub(s.sent[k]) - want
			worst = max(worst, err, -err)
			if err.Abs() > time.Millisecond {
				t.Errorf("shift %d mark %d: onset off by %v", shift, k, err)
			}
		}
	}
	t.Logf("worst onset error %v", worst)
}

func TestMatchedLatencyIsTheDelay(t *testing.T) {
	for _, D := range []time.Duration{150 * time.Millisecond, 1700 * time.Millisecond} {
		for _, shift := range []int{0, 500} {
			cfg := MarkerConfig{}
			s := makeStream(t, cfg, streamOpts{frames: 600, marks: true, shift: shift, other: 440, level: 0.5})
			lats := Match(s.sent, detect(cfg, s, fixedDelay(D)), cfg)
			// The last mark's send time is in sent, but its burst arrives
			// after the stream ends: it is not detected.
			if len(lats) < len(s.sent)-1 {
				t.Fatalf("D %v: %d latencies for %d marks", D, len(lats), len(s.sent))
			}
			codec := time.Duration(shift)*time.Second/amphi.SampleRate + opusDelay
			for k, lat := range lats {
				if (lat - D).Abs() > 20*time.Millisecond {
					t.Errorf("D %v shift %d mark %d: latency %v", D, shift, k, lat)
				}
				if (lat - D - codec).Abs() > time.Millisecond {
					t.Errorf("D %v shift %d mark %d: latency %v, want %v + %v of shift and codec", D, shift, k, lat, D, codec)
				}
			}
			t.Logf("D %v shift %d: %v", D, shift, Summarize(lats))
		}
	}
}

// With pages of 5 packets, the onset's packet waits for the rest of its
// page: (4-p)·20 ms for page position p, plus the page's own 0-30 ms
// (15 ms in the middle), plus the codec's 6.5 ms. See the package comment.
func TestMatchedLatencyWithPages(t *testing.T) {
	tests := []struct {
		name     string
		interval time.Duration
		phase    int
		// batching is the documented batching offset for this layout: the
		// position's wait, at the median over the marks.
		batching time.Duration
	}{
		// Every mark's first frame opens a page: each waits 80 ms.
		{"marks open pages", time.Second, 0, 80 * time.Millisecond},
		// Every mark's first frame is third of its page: 40 ms.
		{"marks mid-page", time.Second, 2, 40 * time.Millisecond},
		// 51 frames apart, marks walk through the five positions: median 40 ms.
		{"marks walk the page", 1020 * time.Millisecond, 0, 40 * time.Millisecond},
	}
	for _, D := range []time.Duration{150 * time.Millisecond, 1700 * time.Millisecond} {
		for _, tt := range tests {
			cfg := MarkerConfig{Interval: tt.interval}
			s := makeStream(t, cfg, streamOpts{frames: 1100, marks: true, other: 440, level: 0.5})
			lats := Match(s.sent, detect(cfg, s, paged(D, tt.phase, uint64(D))), cfg)
			if len(lats) < len(s.sent)-1 {
				t.Fatalf("%s D %v: %d latencies for %d marks", tt.name, D, len(lats), len(s.sent))
			}
			want := D + opusDelay + tt.batching + 15*time.Millisecond
			sum := Summarize(lats)
			if (sum.P50 - want).Abs() > 20*time.Millisecond {
				t.Errorf("%s D %v: p50 %v, want %v ± 20 ms", tt.name, D, sum.P50, want)
			}
			t.Logf("%s D %v: %+v (p50 - D - codec - batching - 15 ms = %v)", tt.name, D, sum, sum.P50-want)
		}
	}
}

func TestBankMatchesToneGoertzel(t *testing.T) {
	freqs := []float64{440, 1200, 1500, 1800, 2100, 2400, 2700}
	b := newBank(freqs)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{amphi.FrameSamples, 480, 7} {
		x := make([]int16, n)
		tone.Noise(x, 0.3, rng)
		sine, _ := tone.Sine(make([]int16, n), 1500, 0.4, amphi.SampleRate, 0)
		tone.Mix(x, sine)
		got := make([]float64, len(freqs))
		b.power(got, x)
		for i, f := range freqs {
			want := tone.Goertzel(x, amphi.SampleRate, f)
			if math.Abs(got[i]-want) > 1e-9*max(want, 1e-6) {
				t.Errorf("n %d %v Hz: power %g, tone.Goertzel %g", n, f, got[i], want)
			}
		}
	}
}
