// Package report holds the benchmark's results and writes them: results.json (every figure),
// results.md (tables a person reads), PNG plots, and the description of the machine.
package report

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/tchsm/tchsm/bench/internal/hsmspeed"
	"github.com/tchsm/tchsm/bench/internal/limit"
	"github.com/tchsm/tchsm/bench/internal/runner"
	"github.com/tchsm/tchsm/bench/internal/stats"
)

// Results is everything one run measured.
type Results struct {
	Tool     string     `json:"tool"`
	Started  time.Time  `json:"started"`
	Finished time.Time  `json:"finished"`
	Args     []string   `json:"args"`
	Config   Config     `json:"config"`
	Machine  Machine    `json:"machine"`
	Targets  []*Target  `json:"targets"`
	Limit    *Threshold `json:"threshold_limit,omitempty"`
	// FROST is the arithmetic of one threshold Ed25519 signature, timed in process (-alg
	// ed25519): what the cluster's CPU per signature is compared with.
	FROST    *limit.FROSTArith `json:"frost_arithmetic,omitempty"`
	Scaling  *Scaling          `json:"scaling,omitempty"`
	Unstable bool              `json:"unstable"` // some repetition was > tolerance off its median
	Invalid  int               `json:"invalid_signatures"`
	Warnings []string          `json:"warnings,omitempty"`
	Extra    map[string]any    `json:"extra,omitempty"`
}

// Config records the parameters of the run.
type Config struct {
	Targets        []string `json:"targets"`
	Alg            string   `json:"alg,omitempty"` // "rsa" (empty in older reports) or "ed25519"
	Bits           int      `json:"bits"`
	K              int      `json:"k"`
	N              int      `json:"n"`
	DurationS      float64  `json:"duration_s"`
	Count          int      `json:"count,omitempty"`
	WarmupS        float64  `json:"warmup_s"`
	Reps           int      `json:"reps"`
	MaxConcurrency int      `json:"max_concurrency"`
	Tolerance      float64  `json:"tolerance"`
	Cores          int      `json:"cores"`
	Quick          bool     `json:"quick"`
}

// Target is one signer's results.
type Target struct {
	Name        string        `json:"name"`
	Description string        `json:"description,omitempty"`
	Skipped     string        `json:"skipped,omitempty"`
	Error       string        `json:"error,omitempty"`
	Sweep       *runner.Sweep `json:"sweep,omitempty"`
	// Best* repeat the best step of the sweep for readers of the JSON.
	BestSigPerSec   float64        `json:"best_sig_per_s"`
	BestConcurrency int            `json:"best_concurrency"`
	BestLatency     runner.Latency `json:"best_latency"`
	// Knee* describe the lowest concurrency within KneeFraction of the best throughput, where
	// latency is lowest for (nearly) the best throughput; latency plots use it.
	KneeSigPerSec   float64         `json:"knee_sig_per_s"`
	KneeConcurrency int             `json:"knee_concurrency"`
	KneeLatency     runner.Latency  `json:"knee_latency"`
	RatioToSoftHSM  float64         `json:"ratio_to_softhsm,omitempty"`
	HSMSpeed        []HSMSpeedPoint `json:"ods_hsmspeed,omitempty"`
	HSMSpeedError   string          `json:"ods_hsmspeed_error,omitempty"`
	// KeyGenMS is how long C_GenerateKeyPair took when the harness generated the key (for
	// tchsm's Ed25519 keys: the nodes' distributed key generation, end to end).
	KeyGenMS float64 `json:"keygen_ms,omitempty"`
	// CPU is the CPU time per signature of a cluster the harness started, at one concurrency.
	CPU *CPUSplit `json:"cpu_per_signature,omitempty"`
}

// CPUSplit is a cluster's CPU time per signature, from /proc, over one extra timed step at the
// best concurrency: the n node processes, and this process (the client inside libtchsm.so,
// the harness's workers and its verification of every signature). The broker is left out
// (the machine's RabbitMQ serves others too). ArithMS is the in-process arithmetic of one
// signature (Results.FROST); MessagingMS is everything else the nodes and the client spent.
type CPUSplit struct {
	Concurrency   int     `json:"concurrency"`
	Signatures    int     `json:"signatures"`
	SigPerSec     float64 `json:"sig_per_s"`
	NodesMS       float64 `json:"nodes_ms"`
	ClientMS      float64 `json:"client_ms"` // this process, verification included
	VerifyMS      float64 `json:"harness_verify_ms"`
	NodeArithMS   float64 `json:"node_arith_ms"`
	ClientArithMS float64 `json:"client_arith_ms"`
	ArithMS       float64 `json:"arith_ms"`
	MessagingMS   float64 `json:"messaging_ms"` // nodes + client − verification − arithmetic
}

// HSMSpeedPoint is ods-hsmspeed at one thread count, repeated.
type HSMSpeedPoint struct {
	Threads      int               `json:"threads"`
	SigPerSec    float64           `json:"sig_per_s"` // median of Reps
	Reps         []hsmspeed.Result `json:"reps"`
	MaxDeviation float64           `json:"max_deviation"`
	Unstable     bool              `json:"unstable"`
}

// Threshold is the threshold limit and how the cluster compares with it.
type Threshold struct {
	limit.Result
	ClusterBest  float64 `json:"cluster_best_sig_per_s,omitempty"`
	RatioToLimit float64 `json:"cluster_ratio_to_limit,omitempty"`
	// ClusterP50C1 is the cluster's median latency at concurrency 1; OverheadMS is what it
	// adds to one share's wall-clock time (messaging, envelopes, combination).
	ClusterP50C1 float64      `json:"cluster_p50_c1_ms,omitempty"`
	OverheadMS   float64      `json:"cluster_overhead_c1_ms,omitempty"`
	Model        []ModelPoint `json:"separate_servers_model"`
	// VsOpenSSL is one share against OpenSSL's constant-time exponentiation at each size of
	// -compare-sizes, timed in the same run (r per size and the ratio; issue 17).
	VsOpenSSL []limit.SizeRatio `json:"share_vs_openssl,omitempty"`
	// ShareRateAfter is r measured again after the targets ran: the host's speed can drift
	// (by a third within minutes on shared VMs), and a ratio is only as good as its r.
	ShareRateAfter float64 `json:"share_rate_after,omitempty"`
	Drift          float64 `json:"share_rate_drift,omitempty"` // |after - before| / before
}

// ModelPoint is the separate-servers model: Servers servers of Cores cores each.
type ModelPoint struct {
	Servers   int     `json:"servers"`
	Cores     int     `json:"cores_each"`
	SigPerSec float64 `json:"sig_per_s"`
}

// Scaling is tchsm throughput across n (fixed k) and across k (fixed n).
type Scaling struct {
	FixedK []ScalePoint `json:"fixed_k"`
	FixedN []ScalePoint `json:"fixed_n"`
}

// ScalePoint is one measured cluster shape.
type ScalePoint struct {
	K           int     `json:"k"`
	N           int     `json:"n"`
	SigPerSec   float64 `json:"sig_per_s"`
	Concurrency int     `json:"best_concurrency"`
	P99MS       float64 `json:"p99_ms"`
	Limit       float64 `json:"limit_sig_per_s"` // C·r/k
	Error       string  `json:"error,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	Host         string  `json:"host"`
	CPUModel     string  `json:"cpu_model"`
	Cores        int     `json:"cores"` // runtime.NumCPU
	MemTotalMB   int     `json:"mem_total_mb"`
	GoVersion    string  `json:"go_version"`
	GOOS         string  `json:"goos"`
	GOARCH       string  `json:"goarch"`
	Kernel       string  `json:"kernel"`
	LoadAvgStart string  `json:"loadavg_start"`
	LoadAvgEnd   string  `json:"loadavg_end,omitempty"`
	Load1Start   float64 `json:"load1_start"`
	SoftHSM      string  `json:"softhsm_version,omitempty"`
	OpenSSL      string  `json:"openssl_version,omitempty"`
}

// DescribeMachine reads /proc and the environment.
func DescribeMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH}
	m.Host, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.Atoi(f[1])
				m.MemTotalMB = kb / 1024
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.LoadAvgStart = LoadAvg()
	if f := strings.Fields(m.LoadAvgStart); len(f) > 0 {
		m.Load1Start, _ = strconv.ParseFloat(f[0], 64)
	}
	if out, err := exec.Command("openssl", "version").Output(); err == nil {
		m.OpenSSL = strings.TrimSpace(string(out))
	}
	return m
}

// Text is the machine description as "key: value" lines.
func (m Machine) Text() string {
	var b strings.Builder
	for _, kv := range [][2]string{
		{"host", m.Host}, {"cpu", m.CPUModel}, {"cores", strconv.Itoa(m.Cores)},
		{"memory", fmt.Sprintf("%d MiB", m.MemTotalMB)}, {"kernel", m.Kernel},
		{"go", fmt.Sprintf("%s %s/%s", m.GoVersion, m.GOOS, m.GOARCH)},
		{"loadavg at start", m.LoadAvgStart}, {"loadavg at end", m.LoadAvgEnd},
		{"softhsm", m.SoftHSM}, {"openssl", m.OpenSSL},
	} {
		if kv[1] != "" {
			fmt.Fprintf(&b, "%s: %s\n", kv[0], kv[1])
		}
	}
	return b.String()
}

// LoadAvg returns the first three fields of /proc/loadavg.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) > 3 {
		f = f[:3]
	}
	return strings.Join(f, " ")
}

// Write writes results.json, results.md and the plots into dir, returning the files written.
func (r *Results) Write(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	var files []string
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	p := filepath.Join(dir, "results.json")
	if err := os.WriteFile(p, append(js, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	files = append(files, p)
	p = filepath.Join(dir, "machine.txt")
	if err := os.WriteFile(p, []byte(r.Machine.Text()), 0o644); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	files = append(files, p)
	plots, perr := r.Plots(dir)
	files = append(files, plots...)
	p = filepath.Join(dir, "results.md")
	if err := os.WriteFile(p, []byte(r.Markdown(plots)), 0o644); err != nil {
		return files, fmt.Errorf("report: %w", err)
	}
	files = append(files, p)
	return files, perr
}

// KneeFraction defines the knee of a sweep: the first step reaching 95% of the best throughput.
const KneeFraction = 0.95

// KneeStep returns the knee of the target's sweep, or nil.
func (t *Target) KneeStep() *runner.Step {
	if t.Sweep == nil {
		return nil
	}
	tps := make([]float64, len(t.Sweep.Steps))
	for i, s := range t.Sweep.Steps {
		tps[i] = s.SigPerSec
	}
	if i := stats.Knee(tps, KneeFraction); i >= 0 {
		return &t.Sweep.Steps[i]
	}
	return nil
}

// Load reads a results.json written by Write.
func Load(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("report: %s: %w", path, err)
	}
	return &r, nil
}

// Finish fills the derived fields: best steps, ratios to SoftHSM2, the cluster's ratio to the
// threshold limit, flags.
func (r *Results) Finish() {
	var soft float64
	r.Invalid, r.Unstable = 0, false
	for _, t := range r.Targets {
		if t.Sweep == nil {
			continue
		}
		r.Invalid += t.Sweep.Invalid
		if b := t.Sweep.BestStep(); b != nil {
			t.BestSigPerSec, t.BestConcurrency, t.BestLatency = b.SigPerSec, b.Concurrency, b.Latency
		}
		if k := t.KneeStep(); k != nil {
			t.KneeSigPerSec, t.KneeConcurrency, t.KneeLatency = k.SigPerSec, k.Concurrency, k.Latency
		}
		for _, s := range t.Sweep.Steps {
			if s.Unstable {
				r.Unstable = true
			}
		}
		for _, h := range t.HSMSpeed {
			if h.Unstable {
				r.Unstable = true
			}
		}
		if t.Name == "softhsm" {
			soft = t.BestSigPerSec
		}
	}
	if r.Limit != nil && r.Limit.Unstable {
		r.Unstable = true
	}
	for _, t := range r.Targets {
		if soft > 0 && t.BestSigPerSec > 0 {
			t.RatioToSoftHSM = t.BestSigPerSec / soft
		}
		if r.Limit != nil && t.Name == "tchsm" && t.BestSigPerSec > 0 && r.Limit.Limit > 0 {
			r.Limit.ClusterBest = t.BestSigPerSec
			r.Limit.RatioToLimit = t.BestSigPerSec / r.Limit.Limit
			if s := t.Sweep.Steps[0]; s.Concurrency == 1 && s.Latency.N > 0 {
				r.Limit.ClusterP50C1 = s.Latency.P50
				r.Limit.OverheadMS = s.Latency.P50 - r.Limit.WallShareMS
			}
		}
	}
	if r.Limit != nil && r.Limit.Model == nil {
		for s := max(r.Limit.K, 1); s <= r.Limit.N; s++ {
			r.Limit.Model = append(r.Limit.Model, ModelPoint{Servers: s, Cores: r.Limit.Cores,
				SigPerSec: limit.Model(s, r.Limit.Cores, r.Limit.ShareRate, r.Limit.K)})
		}
	}
}
