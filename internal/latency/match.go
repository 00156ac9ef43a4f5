package latency

import (
	"math"
	"slices"
	"sort"
	"time"
)

// Match pairs detections with the marks a speaker bot sent and returns one
// latency per paired detection, in the order of dets. sent[k] is mark k's
// send time (its mouth time), nondecreasing in k; zero times at the end
// (marks made but not sent yet) are ignored. A detection is paired with the sent mark
// of its slot (k%len(Freqs) == Slot) whose send time is the latest before
// its Arrived and at most len(Freqs)·Interval before it; a detection with
// no such mark (a false detection, or clocks apart) is dropped. Latencies
// must therefore stay under len(Freqs)·Interval, 8 s by default.
//
// The bot and the listeners must share a clock: in `amphi load` they are
// one process, or machines synchronised well below the precision wanted.
func Match(sent []time.Time, dets []Detection, cfg MarkerConfig) []time.Duration {
	cfg = cfg.withDefaults()
	n := len(cfg.Freqs)
	window := time.Duration(n) * cfg.Interval
	for len(sent) > 0 && sent[len(sent)-1].IsZero() {
		sent = sent[:len(sent)-1]
	}
	var out []time.Duration
	for _, det := range dets {
		if det.Slot < 0 || det.Slot >= n {
			continue
		}
		// The first mark sent at or after the arrival; candidates are
		// before it.
		i := sort.Search(len(sent), func(i int) bool { return !sent[i].Before(det.Arrived) })
		for k := i - 1; k >= 0 && k >= i-n; k-- {
			if k%n != det.Slot {
				continue
			}
			if lat := det.Arrived.Sub(sent[k]); lat <= window {
				out = append(out, lat)
			}
			break
		}
	}
	return out
}

// Percentile returns the nearest-rank p-quantile of ds (p in 0..1): the
// smallest value at least a fraction p of the values are at or below. It
// returns 0 for no values; p ≤ 0 gives the minimum, p ≥ 1 the maximum. ds
// is not modified.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return percentileSorted(s, p)
}

// percentileSorted is Percentile on sorted values.
func percentileSorted(s []time.Duration, p float64) time.Duration {
	// The epsilon keeps p·n that is whole in decimal (0.99·100) from
	// rounding up past its rank in binary.
	rank := int(math.Ceil(p*float64(len(s)) - 1e-9))
	return s[min(max(rank, 1), len(s))-1]
}

// Summary is the distribution of a set of latencies.
type Summary struct {
	N   int           // how many latencies
	P50 time.Duration // nearest-rank median
	P99 time.Duration // nearest-rank 99th percentile
	Max time.Duration
}

// Summarize returns the Summary of ds; all zero for no values. ds is not
// modified.
func Summarize(ds []time.Duration) Summary {
	if len(ds) == 0 {
		return Summary{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return Summary{
		N:   len(s),
		P50: percentileSorted(s, 0.5),
		P99: percentileSorted(s, 0.99),
		Max: s[len(s)-1],
	}
}
