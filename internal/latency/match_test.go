package latency

import (
	"slices"
	"testing"
	"time"
)

func TestMatch(t *testing.T) {
	// Twenty marks, one a second, eight slots.
	sent := make([]time.Time, 20)
	for k := range sent {
		sent[k] = t0.Add(time.Duration(k) * time.Second)
	}
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	ms := time.Millisecond
	tests := []struct {
		name string
		det  Detection
		want []time.Duration
	}{
		{"short delay", Detection{Slot: 2, Arrived: at(2150 * ms)}, []time.Duration{150 * ms}},
		{"delay over an interval", Detection{Slot: 2, Arrived: at(3700 * ms)}, []time.Duration{1700 * ms}},
		{"delay of seven intervals", Detection{Slot: 2, Arrived: at(9500 * ms)}, []time.Duration{7500 * ms}},
		{"slot wraps", Detection{Slot: 0, Arrived: at(8500 * ms)}, []time.Duration{500 * ms}},
		{"arrived before its slot's first mark", Detection{Slot: 3, Arrived: at(2900 * ms)}, nil},
		{"beyond eight intervals", Detection{Slot: 0, Arrived: at(30 * time.Second)}, nil},
		{"slot out of range", Detection{Slot: 8, Arrived: at(9 * time.Second)}, nil},
		{"negative slot", Detection{Slot: -1, Arrived: at(9 * time.Second)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Match(sent, []Detection{tt.det}, MarkerConfig{})
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	// Marks not sent yet, at the end, are never paired.
	unsent := append(slices.Clone(sent[:3]), time.Time{}, time.Time{})
	if got := Match(unsent, []Detection{{Slot: 1, Arrived: at(1100 * ms)}, {Slot: 3, Arrived: at(3100 * ms)}}, MarkerConfig{}); !slices.Equal(got, []time.Duration{100 * ms}) {
		t.Errorf("with unsent marks: got %v, want [100ms]", got)
	}
}

func TestPercentileAndSummary(t *testing.T) {
	ms := time.Millisecond
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(100-i) * ms // 100..1 ms, unsorted
	}
	tests := []struct {
		name     string
		ds       []time.Duration
		p        float64
		want     time.Duration
		summary  Summary
		checkSum bool
	}{
		{"empty", nil, 0.5, 0, Summary{}, true},
		{"one", []time.Duration{7 * ms}, 0.99, 7 * ms, Summary{1, 7 * ms, 7 * ms, 7 * ms}, true},
		{"two: median is the lower", []time.Duration{9 * ms, 3 * ms}, 0.5, 3 * ms, Summary{2, 3 * ms, 9 * ms, 9 * ms}, true},
		{"hundred p50", hundred, 0.5, 50 * ms, Summary{100, 50 * ms, 99 * ms, 100 * ms}, true},
		{"hundred p99", hundred, 0.99, 99 * ms, Summary{}, false},
		{"hundred p0 is the minimum", hundred, 0, 1 * ms, Summary{}, false},
		{"hundred p1 is the maximum", hundred, 1, 100 * ms, Summary{}, false},
		{"ten p99 is the maximum", hundred[90:], 0.99, 10 * ms, Summary{10, 5 * ms, 10 * ms, 10 * ms}, true},
		{"ten p90", hundred[90:], 0.9, 9 * ms, Summary{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := slices.Clone(tt.ds)
			if got := Percentile(tt.ds, tt.p); got != tt.want {
				t.Errorf("Percentile(%v) = %v, want %v", tt.p, got, tt.want)
			}
			if tt.checkSum {
				if got := Summarize(tt.ds); got != tt.summary {
					t.Errorf("Summarize = %+v, want %+v", got, tt.summary)
				}
			}
			if !slices.Equal(tt.ds, before) {
				t.Error("input modified")
			}
		})
	}
}
