package limit

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
)

func TestMeasure(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	r, err := Measure(context.Background(), Config{Bits: 1024, K: 2, N: 3, Cores: 2, Duration: 50 * time.Millisecond, Reps: 3})
	if err != nil {
		t.Fatal(err)
	}
	if runtime.NumCPU() >= 2 && (r.ParallelRate <= 0 || r.ParallelLimit != 2*r.ParallelRate/2) {
		t.Errorf("parallel rate %v, limit %v", r.ParallelRate, r.ParallelLimit)
	}
	if len(r.RepRates) != 3 {
		t.Errorf("got %d repetitions, want 3", len(r.RepRates))
	}
	if runtime.GOMAXPROCS(0) != procs {
		t.Errorf("GOMAXPROCS not restored: %d", runtime.GOMAXPROCS(0))
	}
	if r.Shares < 3 || r.ShareRate <= 0 || r.ShareMS <= 0 || r.WallShareMS <= 0 || r.CPUS <= 0 {
		t.Fatalf("nothing measured: %+v", r)
	}
	if want := 2 * r.ShareRate / 2; r.Limit != want {
		t.Errorf("limit %v, want C·r/k = %v", r.Limit, want)
	}
	if want := 2 * r.ShareRate / 3; r.LimitAllNodes != want {
		t.Errorf("all-nodes limit %v, want %v", r.LimitAllNodes, want)
	}
	if d := r.ShareRate * r.ShareMS / 1000; d < 0.999 || d > 1.001 {
		t.Errorf("r = %v is not 1/share time %v ms", r.ShareRate, r.ShareMS)
	}
	t.Logf("RSA-1024 share: %.3f ms CPU, %.3f ms wall (r = %.0f/s), combine %.3f ms", r.ShareMS, r.WallShareMS, r.ShareRate, r.CombineMS)
}

func TestMeasureBadParams(t *testing.T) {
	for _, c := range []Config{{Bits: 1024, K: 3, N: 2, Cores: 1, Duration: time.Millisecond},
		{Bits: 1024, K: 0, N: 2, Cores: 1, Duration: time.Millisecond},
		{Bits: 1024, K: 2, N: 3, Cores: 0, Duration: time.Millisecond}} {
		if _, err := Measure(context.Background(), c); !errors.Is(err, ErrBadParams) {
			t.Errorf("Measure(%+v) err = %v", c, err)
		}
	}
}

func TestModel(t *testing.T) {
	if got := Model(5, 2, 300, 3); got != 1000 {
		t.Errorf("Model(5,2,300,3) = %v, want 1000", got)
	}
	if Model(5, 2, 300, 0) != 0 {
		t.Error("k=0 not rejected")
	}
}

func TestMeasureFROST(t *testing.T) {
	r, err := MeasureFROST(context.Background(), 3, 5, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r.Signatures < 3 || r.NodeMS <= 0 || r.ClientMS <= 0 {
		t.Fatalf("%+v", r)
	}
	t.Logf("FROST 3-of-5 arithmetic: nodes %.3f ms, client %.3f ms per signature (%d signatures)", r.NodeMS, r.ClientMS, r.Signatures)
}
