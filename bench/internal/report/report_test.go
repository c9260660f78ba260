package report

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tchsm/tchsm/bench/internal/limit"
	"github.com/tchsm/tchsm/bench/internal/runner"
)

func TestNiceTicks(t *testing.T) {
	var labels []string
	for _, tk := range (niceTicks{}).Ticks(0, 2870) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	if got := strings.Join(labels, " "); got != "0 500 1000 1500 2000 2500" {
		t.Errorf("ticks %q", got)
	}
}

func step(c int, sps float64, unstable bool) runner.Step {
	q := make([]float64, 101)
	for i := range q {
		q[i] = 1 + float64(i)/10
	}
	return runner.Step{Concurrency: c, SigPerSec: sps, Unstable: unstable, Quantiles: q,
		Latency: runner.Latency{N: 10, P50: 1, P95: 2, P99: 3, Max: 4}, Reps: []runner.Rep{{SigPerSec: sps}}}
}

func TestFinishAndWrite(t *testing.T) {
	r := &Results{
		Config:  Config{Bits: 2048, K: 3, N: 5, Reps: 1, Cores: 2, Tolerance: 0.1},
		Machine: Machine{Host: "h", Cores: 2},
		Targets: []*Target{
			{Name: "softhsm", Sweep: &runner.Sweep{Steps: []runner.Step{step(1, 1000, false), step(2, 2000, false)}, Best: 1}},
			{Name: "tchsm", Sweep: &runner.Sweep{Steps: []runner.Step{step(1, 50, false), step(2, 100, true)}, Best: 1}},
			{Name: "p11", Skipped: "no module"},
		},
		Limit: &Threshold{Result: limit.Result{K: 3, N: 5, Cores: 2, ShareRate: 300, Limit: 200},
			VsOpenSSL: []limit.SizeRatio{{Bits: 3072, Engine: "openssl", OpenSSL: "OpenSSL 3.0.19", Rounds: 40, ShareMS: 6.5, OpenSSLMS: 6.4, ShareRate: 153.8, Ratio: 1.0156}}},
	}
	r.Finish()
	if r.Targets[1].RatioToSoftHSM != 0.05 || r.Targets[0].RatioToSoftHSM != 1 {
		t.Errorf("ratios %v %v", r.Targets[0].RatioToSoftHSM, r.Targets[1].RatioToSoftHSM)
	}
	if r.Limit.ClusterBest != 100 || r.Limit.RatioToLimit != 0.5 || r.Limit.ClusterP50C1 != 1 {
		t.Errorf("limit ratio %+v", r.Limit)
	}
	if !r.Unstable {
		t.Error("unstable step not propagated")
	}
	if len(r.Limit.Model) != 3 || r.Limit.Model[2].Servers != 5 || r.Limit.Model[2].SigPerSec != 1000 {
		t.Errorf("model %+v", r.Limit.Model)
	}
	dir := t.TempDir()
	files, err := r.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 6 {
		t.Errorf("files %v", files)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "results.md"))
	for _, want := range []string{"| tchsm | 100 | 2 |", "0.05×", "limit = C·r/k = 200 sig/s", "50% of the limit", "⚠", "skipped: no module",
		"| 3072 | 6.50 | 154 | 6.40 | 1.016 | 40 |", "engine openssl"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q", want)
		}
	}
}
