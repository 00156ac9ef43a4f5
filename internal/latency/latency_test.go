package latency

import (
	"slices"
	"testing"
	"time"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/tone"
)

func TestConfigDefaultsAndRounding(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name     string
		in       MarkerConfig
		interval time.Duration
		burst    time.Duration
		freqs    int
		amp      float64
	}{
		{"zero", MarkerConfig{}, time.Second, 60 * ms, 8, 0.5},
		{"burst under the minimum", MarkerConfig{Burst: 20 * ms}, time.Second, 60 * ms, 8, 0.5},
		{"burst rounded up", MarkerConfig{Burst: 70 * ms}, time.Second, 80 * ms, 8, 0.5},
		{"interval rounded to a frame", MarkerConfig{Interval: 1010 * ms}, 1020 * ms, 60 * ms, 8, 0.5},
		{"interval raised over the burst", MarkerConfig{Interval: 30 * ms}, 100 * ms, 60 * ms, 8, 0.5},
		{"own frequencies", MarkerConfig{Freqs: []float64{1000, 2000}, Amplitude: 0.2}, time.Second, 60 * ms, 2, 0.2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.in.withDefaults()
			if c.Interval != tt.interval || c.Burst != tt.burst || len(c.Freqs) != tt.freqs || c.Amplitude != tt.amp {
				t.Errorf("got %+v, want interval %v burst %v %d freqs amplitude %v", c, tt.interval, tt.burst, tt.freqs, tt.amp)
			}
		})
	}
	d := DefaultConfig()
	if want := []float64{1200, 1500, 1800, 2100, 2400, 2700, 3000, 3300}; !slices.Equal(d.Freqs, want) {
		t.Errorf("default freqs %v, want %v", d.Freqs, want)
	}
	own := []float64{1000, 2000}
	c := MarkerConfig{Freqs: own}.withDefaults()
	own[0] = 5
	if c.Freqs[0] != 1000 {
		t.Error("config shares the caller's Freqs")
	}
}

func TestMarkerFrame(t *testing.T) {
	m := NewMarker(MarkerConfig{})
	freqs := m.Config().Freqs
	tests := []struct {
		frame int
		freq  float64 // 0: silence
		mark  int
		ok    bool
	}{
		{-1, 0, 0, false},
		{0, 1200, 0, true},
		{1, 1200, 0, false},
		{2, 1200, 0, false},
		{3, 0, 0, false},
		{49, 0, 0, false},
		{50, 1500, 1, true},
		{52, 1500, 0, false},
		{7 * 50, 3300, 7, true},
		{8 * 50, 1200, 8, true}, // slots wrap
		{8*50 + 3, 0, 0, false},
	}
	for _, tt := range tests {
		pcm, mark, ok := m.Frame(nil, tt.frame)
		if len(pcm) != amphi.FrameSamples {
			t.Fatalf("frame %d: %d samples", tt.frame, len(pcm))
		}
		if mark != tt.mark || ok != tt.ok {
			t.Errorf("frame %d: mark %d %v, want %d %v", tt.frame, mark, ok, tt.mark, tt.ok)
		}
		if tt.freq == 0 {
			if l := tone.Level(pcm); l != 0 {
				t.Errorf("frame %d: level %v, want silence", tt.frame, l)
			}
			continue
		}
		var others []float64
		for _, f := range freqs {
			if f != tt.freq {
				others = append(others, f)
			}
		}
		if !tone.Present(pcm, amphi.SampleRate, tt.freq, others...) {
			t.Errorf("frame %d: %v Hz not present", tt.frame, tt.freq)
		}
	}
}

func TestMarkerFrameReusesDst(t *testing.T) {
	m := NewMarker(MarkerConfig{})
	dst := make([]int16, 2*amphi.FrameSamples)
	pcm, _, _ := m.Frame(dst, 0)
	if &pcm[0] != &dst[0] || len(pcm) != amphi.FrameSamples {
		t.Error("Frame did not write into dst")
	}
	if n := testing.AllocsPerRun(10, func() { m.Frame(dst, 1) }); n != 0 {
		t.Errorf("%v allocations per frame", n)
	}
}

func TestMarkerBackgroundIsQuietAndRepeatable(t *testing.T) {
	m := NewMarker(MarkerConfig{Background: 0.01})
	a, _, _ := m.Frame(nil, 20)
	b, _, _ := m.Frame(nil, 20)
	if !slices.Equal(a, b) {
		t.Error("the same frame twice differs")
	}
	c, _, _ := m.Frame(nil, 21)
	if slices.Equal(a, c) {
		t.Error("two frames have the same noise")
	}
	// Uniform noise of amplitude A has level A/√3.
	if l := tone.Level(a); l < 0.005 || l > 0.007 {
		t.Errorf("background level %v, want about 0.0058", l)
	}
}
