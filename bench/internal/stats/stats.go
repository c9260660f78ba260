// Package stats holds the statistics of the benchmark harness: latency percentiles, the
// saturation rule that ends a concurrency sweep, and the stability check over repetitions.
package stats

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the p-th percentile (0 ≤ p ≤ 100) of sorted by the nearest-rank method:
// the smallest sample such that at least p% of the samples are less than or equal to it. It
// returns 0 for an empty slice. sorted must be in ascending order.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if p <= 0 {
		return sorted[0]
	}
	if p >= 100 {
		return sorted[n-1]
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}

// Summary describes a latency sample.
type Summary struct {
	N    int
	Min  time.Duration
	Mean time.Duration
	P50  time.Duration
	P95  time.Duration
	P99  time.Duration
	Max  time.Duration
}

// Summarize sorts lat in place and summarises it.
func Summarize(lat []time.Duration) Summary {
	if len(lat) == 0 {
		return Summary{}
	}
	slices.Sort(lat)
	var sum float64
	for _, d := range lat {
		sum += float64(d)
	}
	return Summary{
		N:    len(lat),
		Min:  lat[0],
		Mean: time.Duration(sum / float64(len(lat))),
		P50:  Percentile(lat, 50),
		P95:  Percentile(lat, 95),
		P99:  Percentile(lat, 99),
		Max:  lat[len(lat)-1],
	}
}

// Median returns the median of xs (the mean of the two middle values for an even count), or 0
// for an empty slice. xs is not modified.
func Median(xs []float64) float64 {
	n := len(xs)
	if n == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Stability is the outcome of comparing repetitions of one measurement with their median.
type Stability struct {
	Median float64
	// MaxDeviation is the largest |x - median| / median over the repetitions (0 when the
	// median is 0).
	MaxDeviation float64
	// Unstable is set when MaxDeviation exceeds the tolerance.
	Unstable bool
}

// CheckStability computes the median of reps and flags the set as unstable when any repetition
// is more than tol (a fraction: 0.10 for 10%) away from the median.
func CheckStability(reps []float64, tol float64) Stability {
	m := Median(reps)
	st := Stability{Median: m}
	if m == 0 {
		return st
	}
	for _, x := range reps {
		if d := math.Abs(x-m) / math.Abs(m); d > st.MaxDeviation {
			st.MaxDeviation = d
		}
	}
	st.Unstable = st.MaxDeviation > tol
	return st
}

// Saturation decides when a concurrency sweep has stopped paying off: a step is a significant
// gain when its throughput is at least (1+MinGain) times the best throughput before it; the
// sweep is saturated after Patience consecutive steps without a significant gain.
type Saturation struct {
	MinGain  float64 // e.g. 0.05
	Patience int     // e.g. 2
}

// DefaultSaturation stops when throughput gains stay below 5% twice in a row.
var DefaultSaturation = Saturation{MinGain: 0.05, Patience: 2}

// Saturated reports whether the sweep whose throughputs (in step order) are given should stop.
func (s Saturation) Saturated(throughputs []float64) bool {
	patience := s.Patience
	if patience < 1 {
		patience = 1
	}
	best := math.Inf(-1)
	miss := 0
	for i, x := range throughputs {
		switch {
		case i == 0:
			best = x
		case x >= best*(1+s.MinGain) && x > best:
			best = x
			miss = 0
		default:
			miss++
			best = max(best, x)
		}
	}
	return miss >= patience
}

// Best returns the index of the largest value in xs, or -1 for an empty slice.
func Best(xs []float64) int {
	bi := -1
	for i, x := range xs {
		if bi < 0 || x > xs[bi] {
			bi = i
		}
	}
	return bi
}

// Knee returns the index of the first value that reaches frac (e.g. 0.95) of the largest value
// in xs, or -1 for an empty slice. In a concurrency sweep it is the lowest concurrency that
// gives (nearly) the best throughput: beyond it, more concurrency mostly adds queueing latency.
func Knee(xs []float64, frac float64) int {
	b := Best(xs)
	if b < 0 {
		return -1
	}
	for i, x := range xs {
		if x >= frac*xs[b] {
			return i
		}
	}
	return b
}

// Concurrencies returns the sweep 1, 2, 4, ... up to max, ending with max itself when max is not
// a power of two. max < 1 is treated as 1.
func Concurrencies(maxC int) []int {
	if maxC < 1 {
		maxC = 1
	}
	var out []int
	for c := 1; c <= maxC; c *= 2 {
		out = append(out, c)
	}
	if out[len(out)-1] != maxC {
		out = append(out, maxC)
	}
	return out
}
