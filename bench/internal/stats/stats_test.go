package stats

import (
	"math"
	"slices"
	"testing"
	"time"
)

func ms(xs ...int) []time.Duration {
	out := make([]time.Duration, len(xs))
	for i, x := range xs {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentileNearestRank(t *testing.T) {
	// 1..100 ms: the p-th percentile by nearest rank is exactly p ms.
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want int
	}{{0, 1}, {1, 1}, {50, 50}, {95, 95}, {99, 99}, {99.5, 100}, {100, 100}, {150, 100}, {-3, 1}} {
		if got := Percentile(s, tc.p); got != time.Duration(tc.want)*time.Millisecond {
			t.Errorf("Percentile(1..100, %v) = %v, want %dms", tc.p, got, tc.want)
		}
	}
	// Classic nearest-rank example (Wikipedia): 15, 20, 35, 40, 50.
	w := ms(15, 20, 35, 40, 50)
	for _, tc := range []struct {
		p    float64
		want int
	}{{5, 15}, {30, 20}, {40, 20}, {50, 35}, {100, 50}} {
		if got := Percentile(w, tc.p); got != time.Duration(tc.want)*time.Millisecond {
			t.Errorf("Percentile(%v, %v) = %v, want %dms", w, tc.p, got, tc.want)
		}
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("Percentile(nil) = %v, want 0", got)
	}
	if got := Percentile(ms(7), 99); got != 7*time.Millisecond {
		t.Errorf("Percentile(single) = %v", got)
	}
}

func TestSummarize(t *testing.T) {
	lat := ms(5, 1, 4, 2, 3, 10, 9, 8, 7, 6)
	s := Summarize(lat)
	if !slices.IsSorted(lat) {
		t.Error("Summarize did not sort its input")
	}
	want := Summary{N: 10, Min: ms(1)[0], Mean: 5500 * time.Microsecond, P50: ms(5)[0], P95: ms(10)[0], P99: ms(10)[0], Max: ms(10)[0]}
	if s != want {
		t.Errorf("Summarize = %+v, want %+v", s, want)
	}
	if (Summarize(nil) != Summary{}) {
		t.Error("Summarize(nil) not zero")
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		in := slices.Clone(tc.in)
		if got := Median(tc.in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		if !slices.Equal(in, tc.in) {
			t.Errorf("Median modified its input")
		}
	}
}

func TestCheckStability(t *testing.T) {
	for _, tc := range []struct {
		name     string
		reps     []float64
		unstable bool
		dev      float64
	}{
		{"identical", []float64{100, 100, 100}, false, 0},
		{"within 10%", []float64{95, 100, 109}, false, 0.09},
		{"exactly 10% is fine", []float64{90, 100, 110}, false, 0.10},
		{"one low outlier", []float64{100, 101, 80}, true, 0.20},
		{"one high outlier", []float64{100, 99, 120}, true, 0.20},
		{"single rep", []float64{42}, false, 0},
		{"all zero", []float64{0, 0, 0}, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := CheckStability(tc.reps, 0.10)
			if st.Unstable != tc.unstable {
				t.Errorf("Unstable = %v, want %v (%+v)", st.Unstable, tc.unstable, st)
			}
			if math.Abs(st.MaxDeviation-tc.dev) > 1e-9 {
				t.Errorf("MaxDeviation = %v, want %v", st.MaxDeviation, tc.dev)
			}
		})
	}
}

func TestSaturation(t *testing.T) {
	r := DefaultSaturation
	for _, tc := range []struct {
		name string
		tp   []float64
		want bool
	}{
		{"empty", nil, false},
		{"one step", []float64{100}, false},
		{"still doubling", []float64{100, 190, 370, 700}, false},
		{"one flat step", []float64{100, 190, 195}, false},
		{"two flat steps", []float64{100, 190, 195, 196}, true},
		{"two drops", []float64{100, 190, 150, 120}, true},
		{"flat then gain resets", []float64{100, 102, 150, 151}, false},
		{"creeping 4% gains", []float64{100, 104, 108.16}, true},
		{"exactly 5% counts as a gain", []float64{100, 105, 110.25}, false},
		{"non-consecutive misses", []float64{100, 101, 120, 121, 140}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.Saturated(tc.tp); got != tc.want {
				t.Errorf("Saturated(%v) = %v, want %v", tc.tp, got, tc.want)
			}
		})
	}
	if !(Saturation{MinGain: 0.05, Patience: 1}).Saturated([]float64{100, 101}) {
		t.Error("patience 1 should stop after one miss")
	}
}

func TestBestAndConcurrencies(t *testing.T) {
	if Best(nil) != -1 || Best([]float64{1, 5, 3}) != 1 || Best([]float64{2, 2}) != 0 {
		t.Error("Best wrong")
	}
	if Knee(nil, 0.95) != -1 || Knee([]float64{100, 190, 196, 200}, 0.95) != 1 || Knee([]float64{100, 150, 200}, 0.95) != 2 ||
		Knee([]float64{300, 100}, 0.95) != 0 {
		t.Error("Knee wrong")
	}
	for _, tc := range []struct {
		max  int
		want []int
	}{{0, []int{1}}, {1, []int{1}}, {2, []int{1, 2}}, {8, []int{1, 2, 4, 8}}, {12, []int{1, 2, 4, 8, 12}}} {
		if got := Concurrencies(tc.max); !slices.Equal(got, tc.want) {
			t.Errorf("Concurrencies(%d) = %v, want %v", tc.max, got, tc.want)
		}
	}
}
