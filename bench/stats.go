package bench

import (
	"math"
	"slices"
	"time"
)

// Summary condenses one series of samples.
type Summary struct {
	Count  int           `json:"count"`
	Median time.Duration `json:"median_ns"`
	P95    time.Duration `json:"p95_ns"`
	Min    time.Duration `json:"min_ns"`
	Max    time.Duration `json:"max_ns"`
	// MaxRSS is the median of the operations' peak resident sets, in KiB.
	MaxRSS int64 `json:"maxrss_kib"`
	// MaxRSSPeak is the largest of them.
	MaxRSSPeak int64 `json:"maxrss_peak_kib"`
}

func summarize(samples []Sample) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	d := make([]time.Duration, len(samples))
	r := make([]int64, len(samples))
	for i, s := range samples {
		d[i], r[i] = s.Wall, s.MaxRSS
	}
	slices.Sort(d)
	slices.Sort(r)
	return Summary{
		Count: len(d), Median: median(d), P95: percentile(d, 95), Min: d[0], Max: d[len(d)-1],
		MaxRSS: median(r), MaxRSSPeak: r[len(r)-1],
	}
}

// median of sorted values; the mean of the middle two for an even count.
func median[T ~int64](sorted []T) T {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// percentile of sorted values by the nearest-rank method.
func percentile[T ~int64](sorted []T, p float64) T {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

func medianFloat(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
