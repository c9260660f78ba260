// Package runner drives a Target: for each concurrency 1, 2, 4, ... it opens one Worker per
// goroutine, warms up, then runs timed repetitions, recording every signature's latency and
// checking every signature against the public key, until throughput saturates.
package runner

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tchsm/tchsm/bench/internal/progress"
	"github.com/tchsm/tchsm/bench/internal/stats"
	"github.com/tchsm/tchsm/bench/internal/target"
)

// ErrNoSignatures is returned when a step produced no valid signature at all.
var ErrNoSignatures = errors.New("runner: no valid signatures")

// maxConsecutiveErrors stops a worker whose signer keeps failing, so a dead signer does not
// spin for the whole step.
const maxConsecutiveErrors = 20

// Config is one sweep's parameters.
type Config struct {
	MaxConcurrency int
	Duration       time.Duration // per repetition (ignored when Count > 0)
	Count          int           // signatures per repetition (0: use Duration)
	Warmup         time.Duration // per step, before the repetitions
	Reps           int
	Saturation     stats.Saturation
	Tolerance      float64 // stability tolerance, 0.10 = 10%
	Digests        int     // distinct digests signed (default 128)
	Bar            *progress.Bar
}

func (c *Config) defaults() {
	if c.Reps < 1 {
		c.Reps = 1
	}
	if c.MaxConcurrency < 1 {
		c.MaxConcurrency = 1
	}
	if c.Duration <= 0 && c.Count <= 0 {
		c.Duration = 3 * time.Second
	}
	if c.Tolerance <= 0 {
		c.Tolerance = 0.10
	}
	if c.Digests <= 0 {
		c.Digests = 128
	}
	if c.Saturation.Patience == 0 {
		c.Saturation = stats.DefaultSaturation
	}
}

// Latency is a latency summary in milliseconds.
type Latency struct {
	N    int     `json:"n"`
	Min  float64 `json:"min_ms"`
	Mean float64 `json:"mean_ms"`
	P50  float64 `json:"p50_ms"`
	P95  float64 `json:"p95_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
}

func toMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// LatencyOf converts a stats.Summary.
func LatencyOf(s stats.Summary) Latency {
	return Latency{N: s.N, Min: toMS(s.Min), Mean: toMS(s.Mean), P50: toMS(s.P50), P95: toMS(s.P95), P99: toMS(s.P99), Max: toMS(s.Max)}
}

// Rep is one timed repetition.
type Rep struct {
	Signatures int     `json:"signatures"` // valid signatures completed
	Invalid    int     `json:"invalid"`    // signatures that did not verify
	Errors     int     `json:"errors"`     // failed Sign calls
	ElapsedS   float64 `json:"elapsed_s"`
	SigPerSec  float64 `json:"sig_per_s"`
	Latency    Latency `json:"latency"`
}

// Step is one concurrency level.
type Step struct {
	Concurrency int     `json:"concurrency"`
	SigPerSec   float64 `json:"sig_per_s"` // median over repetitions
	Latency     Latency `json:"latency"`   // over all repetitions' signatures
	// Quantiles[i] is the i-th percentile of latency in ms (i = 0..100), for CDF plots.
	Quantiles    []float64 `json:"latency_quantiles_ms"`
	Reps         []Rep     `json:"reps"`
	MaxDeviation float64   `json:"max_deviation"` // largest |rep - median| / median
	Unstable     bool      `json:"unstable"`      // MaxDeviation > tolerance
	Invalid      int       `json:"invalid"`
	Errors       int       `json:"errors"`
	FirstError   string    `json:"first_error,omitempty"`
	WarmupSigs   int       `json:"warmup_signatures"`
}

// Sweep is a target's whole concurrency sweep.
type Sweep struct {
	Steps     []Step `json:"steps"`
	Best      int    `json:"best_step"` // index into Steps of the highest median throughput
	Saturated bool   `json:"saturated"` // stopped by the saturation rule (not by the maximum)
	Invalid   int    `json:"invalid"`
	Errors    int    `json:"errors"`
}

// BestStep returns the step with the highest throughput, or nil.
func (s *Sweep) BestStep() *Step {
	if s.Best < 0 || s.Best >= len(s.Steps) {
		return nil
	}
	return &s.Steps[s.Best]
}

// Run sweeps concurrency 1, 2, 4, ... for t until saturation or cfg.MaxConcurrency. On error
// it returns the steps completed so far with the error.
func Run(ctx context.Context, t target.Target, cfg Config) (*Sweep, error) {
	cfg.defaults()
	v, err := target.NewVerifier(t.PublicKey(), cfg.Digests)
	if err != nil {
		return nil, err
	}
	return RunWith(ctx, t, v, cfg)
}

// RunWith is Run with a caller-supplied verifier (tests use one holding the wrong key).
func RunWith(ctx context.Context, t target.Target, v *target.Verifier, cfg Config) (*Sweep, error) {
	cfg.defaults()
	sw := &Sweep{Best: -1}
	var tps []float64
	for _, c := range stats.Concurrencies(cfg.MaxConcurrency) {
		st, err := RunStep(ctx, t, v, c, cfg)
		if err != nil {
			return sw, err
		}
		sw.Steps = append(sw.Steps, st)
		sw.Invalid += st.Invalid
		sw.Errors += st.Errors
		tps = append(tps, st.SigPerSec)
		sw.Best = stats.Best(tps)
		if cfg.Saturation.Saturated(tps) {
			sw.Saturated = true
			break
		}
	}
	return sw, nil
}

type workerOut struct {
	lat     []time.Duration
	ok      int
	invalid int
	errs    int
	firstEr error
	end     time.Time
}

// RunStep runs one concurrency level: c workers, warm-up, cfg.Reps timed repetitions.
func RunStep(ctx context.Context, t target.Target, v *target.Verifier, c int, cfg Config) (Step, error) {
	cfg.defaults()
	st := Step{Concurrency: c}
	workers := make([]target.Worker, 0, c)
	defer func() {
		for _, w := range workers {
			w.Close()
		}
	}()
	for range c {
		w, err := t.NewWorker()
		if err != nil {
			return st, fmt.Errorf("runner: %s c=%d: %w", t.Name(), c, err)
		}
		workers = append(workers, w)
	}
	if cfg.Warmup > 0 {
		if cfg.Bar != nil {
			cfg.Bar.Start(fmt.Sprintf("%-8s c=%-3d warm-up", t.Name(), c), cfg.Warmup, nil, 0)
		}
		outs := runRep(ctx, workers, v, cfg.Warmup, 0, nil)
		for _, o := range outs {
			st.WarmupSigs += o.ok
			st.Invalid += o.invalid
			st.Errors += o.errs
			if o.firstEr != nil && st.FirstError == "" {
				st.FirstError = o.firstEr.Error()
			}
		}
	}
	var all []time.Duration
	var rates []float64
	for rep := range cfg.Reps {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		var done atomic.Int64
		if cfg.Bar != nil {
			cfg.Bar.Start(fmt.Sprintf("%-8s c=%-3d rep %d/%d", t.Name(), c, rep+1, cfg.Reps), cfg.Duration, &done, int64(cfg.Count))
		}
		start := time.Now()
		outs := runRep(ctx, workers, v, cfg.Duration, cfg.Count, &done)
		var r Rep
		var lat []time.Duration
		end := start
		for _, o := range outs {
			r.Signatures += o.ok
			r.Invalid += o.invalid
			r.Errors += o.errs
			lat = append(lat, o.lat...)
			if o.end.After(end) {
				end = o.end
			}
			if o.firstEr != nil && st.FirstError == "" {
				st.FirstError = o.firstEr.Error()
			}
		}
		el := end.Sub(start)
		r.ElapsedS = el.Seconds()
		if el > 0 {
			r.SigPerSec = float64(r.Signatures) / el.Seconds()
		}
		all = append(all, lat...)
		r.Latency = LatencyOf(stats.Summarize(lat))
		st.Reps = append(st.Reps, r)
		st.Invalid += r.Invalid
		st.Errors += r.Errors
		rates = append(rates, r.SigPerSec)
	}
	stab := stats.CheckStability(rates, cfg.Tolerance)
	st.SigPerSec, st.MaxDeviation, st.Unstable = stab.Median, stab.MaxDeviation, stab.Unstable
	st.Latency = LatencyOf(stats.Summarize(all))
	st.Quantiles = make([]float64, 101)
	for i := range st.Quantiles {
		st.Quantiles[i] = toMS(stats.Percentile(all, float64(i)))
	}
	if cfg.Bar != nil {
		cfg.Bar.Done(StepLine(t.Name(), st))
	}
	if len(all) == 0 {
		msg := st.FirstError
		if msg == "" {
			msg = "every signature failed verification"
		}
		return st, fmt.Errorf("%w: %s c=%d: %s", ErrNoSignatures, t.Name(), c, msg)
	}
	return st, nil
}

// StepLine is the one-line summary of a step.
func StepLine(name string, st Step) string {
	s := fmt.Sprintf("%-8s c=%-3d %9.1f sig/s  p50 %7.2f ms  p95 %7.2f ms  p99 %7.2f ms  max %7.2f ms",
		name, st.Concurrency, st.SigPerSec, st.Latency.P50, st.Latency.P95, st.Latency.P99, st.Latency.Max)
	if len(st.Reps) > 1 {
		s += "  reps"
		for _, r := range st.Reps {
			s += fmt.Sprintf(" %.0f", r.SigPerSec)
		}
	}
	if st.Unstable {
		s += fmt.Sprintf("  UNSTABLE (±%.0f%%)", st.MaxDeviation*100)
	}
	if st.Invalid > 0 {
		s += fmt.Sprintf("  INVALID %d", st.Invalid)
	}
	if st.Errors > 0 {
		s += fmt.Sprintf("  errors %d (%s)", st.Errors, st.FirstError)
	}
	return s
}

// runRep runs every worker concurrently, for dur or until count signatures (when count > 0).
func runRep(ctx context.Context, workers []target.Worker, v *target.Verifier, dur time.Duration, count int, done *atomic.Int64) []workerOut {
	var (
		stop    atomic.Bool
		tickets atomic.Int64
		wg      sync.WaitGroup
		begin   = make(chan struct{})
	)
	outs := make([]workerOut, len(workers))
	for i, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := &outs[i]
			o.lat = make([]time.Duration, 0, 1024)
			idx := i * v.Len() / len(workers)
			consecutive := 0
			<-begin
			for !stop.Load() {
				if count > 0 && tickets.Add(1) > int64(count) {
					break
				}
				d := v.Digest(idx)
				t0 := time.Now()
				sig, err := w.Sign(d)
				el := time.Since(t0)
				if err != nil {
					o.errs++
					if o.firstEr == nil {
						o.firstEr = err
					}
					if consecutive++; consecutive >= maxConsecutiveErrors {
						break
					}
					continue
				}
				consecutive = 0
				if !v.Check(idx, sig) {
					o.invalid++
				} else {
					o.ok++
					o.lat = append(o.lat, el)
					if done != nil {
						done.Add(1)
					}
				}
				idx++
			}
			o.end = time.Now()
		}()
	}
	close(begin)
	if count <= 0 {
		timer := time.NewTimer(dur)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
		}
		stop.Store(true)
	} else {
		finished := make(chan struct{})
		defer close(finished)
		go func() {
			select {
			case <-ctx.Done():
				stop.Store(true)
			case <-finished:
			}
		}()
	}
	wg.Wait()
	return outs
}
