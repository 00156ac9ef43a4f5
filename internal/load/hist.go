package load

import (
	"math"
	"time"
)

// Histogram buckets: logarithmic, each histGrowth wider than the last, from
// histMin up; a quantile read from them is within 2 % of the true value, and
// merging histograms from several processes is exact.
const (
	histMin     = 100 * time.Microsecond
	histGrowth  = 1.02
	histBuckets = 800 // up to histMin·1.02^800 ≈ 12 min
)

var logGrowth = math.Log(histGrowth)

// Histogram counts durations in fixed logarithmic buckets. Its zero value
// is empty and ready to use.
type Histogram struct {
	// Counts holds the count of each bucket; bucket i holds durations in
	// [histMin·1.02^(i-1), histMin·1.02^i), bucket 0 those below histMin.
	// Trailing empty buckets are left out.
	Counts []int64 `json:"counts,omitempty"`
	// N is the number of durations counted.
	N int64 `json:"n"`
	// Max is the largest duration counted.
	Max Duration `json:"max"`
}

func bucketOf(d time.Duration) int {
	if d < histMin {
		return 0
	}
	i := 1 + int(math.Log(float64(d)/float64(histMin))/logGrowth)
	return min(i, histBuckets-1)
}

// bucketValue is the middle of bucket i, as a duration.
func bucketValue(i int) time.Duration {
	if i == 0 {
		return histMin / 2
	}
	lo := float64(histMin) * math.Pow(histGrowth, float64(i-1))
	return time.Duration(lo * (1 + histGrowth) / 2)
}

// Add counts d.
func (h *Histogram) Add(d time.Duration) {
	i := bucketOf(d)
	if i >= len(h.Counts) {
		h.Counts = append(h.Counts, make([]int64, i+1-len(h.Counts))...)
	}
	h.Counts[i]++
	h.N++
	h.Max = max(h.Max, Duration(d))
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	if len(o.Counts) > len(h.Counts) {
		h.Counts = append(h.Counts, make([]int64, len(o.Counts)-len(h.Counts))...)
	}
	for i, c := range o.Counts {
		h.Counts[i] += c
	}
	h.N += o.N
	h.Max = max(h.Max, o.Max)
}

// Quantile returns the duration below which a fraction q of the counted
// ones lie, within a bucket's width, and never more than Max; 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.N == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.N)))
	if rank >= h.N {
		return time.Duration(h.Max)
	}
	rank = max(rank, 1)
	var seen int64
	for i, c := range h.Counts {
		seen += c
		if seen >= rank {
			return min(bucketValue(i), time.Duration(h.Max))
		}
	}
	return time.Duration(h.Max)
}

// quantiles summarises h.
func (h *Histogram) quantiles() Quantiles {
	return Quantiles{P50: Duration(h.Quantile(0.5)), P99: Duration(h.Quantile(0.99)), Max: h.Max}
}
