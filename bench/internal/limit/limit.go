// Package limit measures the threshold limit of a tchsm cluster: every signature needs k
// signature shares, and a share costs one full-length modular exponentiation (no CRT: nodes do
// not know p, q). With r shares per second per core and C cores shared by the nodes, the
// cluster cannot sign faster than C·r/k signatures per second, whatever the transport does.
package limit

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tchsm/tchsm/bench/internal/stats"
	"github.com/tchsm/tchsm/scheme/shoup"
	"github.com/tchsm/tchsm/scheme/shoup/keygen"
)

// ErrBadParams is returned for impossible parameters.
var ErrBadParams = errors.New("limit: bad parameters")

// Config selects what to measure.
type Config struct {
	Bits      int
	K, N      int
	Cores     int           // C: cores the nodes share
	Duration  time.Duration // how long to time SignShare (single goroutine), per repetition
	Reps      int           // repetitions (median reported); default 1
	Tolerance float64       // stability tolerance, default 0.10
	// SafePrimes generates a real Shoup key (safe primes, seconds to minutes). By default a
	// crypto/rsa key is imported with shoup.FromRSA: the share exponentiation has the same
	// cost (a modulus-length exponent), only the proofs' soundness differs, and they are not
	// timed here.
	SafePrimes bool
}

// Result is the measured share rate and the limit derived from it.
type Result struct {
	Bits        int     `json:"bits"`
	K           int     `json:"k"`
	N           int     `json:"n"`
	Cores       int     `json:"cores"`
	SafePrimes  bool    `json:"safe_primes"`
	Shares      int     `json:"shares_timed"`
	ElapsedS    float64 `json:"elapsed_s"`
	ShareMS     float64 `json:"share_ms"`            // CPU time of one SignShare (median)
	ShareRate   float64 `json:"share_rate_per_core"` // r = 1/ShareMS, shares/s on one core
	WallShareMS float64 `json:"wall_share_ms"`       // wall-clock time of one SignShare (median)
	CPUS        float64 `json:"cpu_s"`               // process CPU time while timing
	// RepRates are r for each repetition; ShareRate is their median.
	RepRates     []float64 `json:"share_rate_reps"`
	MaxDeviation float64   `json:"max_deviation"`
	Unstable     bool      `json:"unstable"`
	CombineMS    float64   `json:"combine_ms"`      // client-side Combine of k shares (incl. verification)
	Limit        float64   `json:"limit_sig_per_s"` // C·r/k
	// ParallelRate is shares/s per core of CPU time with C goroutines on C cores at once;
	// ParallelLimit = C·ParallelRate/k. Zero when C is 1 or more than the machine's CPUs.
	ParallelRate  float64 `json:"parallel_share_rate_per_core,omitempty"`
	ParallelLimit float64 `json:"parallel_limit_sig_per_s,omitempty"`
	LimitAllNodes float64 `json:"limit_all_nodes_sig_per_s"` // C·r/n, if every node computes a share for every request
}

// Measure times shoup.SignShare for one share at the key size on one goroutine.
func Measure(ctx context.Context, cfg Config) (Result, error) {
	res := Result{Bits: cfg.Bits, K: cfg.K, N: cfg.N, Cores: cfg.Cores, SafePrimes: cfg.SafePrimes}
	if cfg.K < 1 || cfg.N < cfg.K || cfg.Cores < 1 || cfg.Duration <= 0 {
		return res, fmt.Errorf("%w: k=%d n=%d cores=%d duration=%v", ErrBadParams, cfg.K, cfg.N, cfg.Cores, cfg.Duration)
	}
	var key *shoup.Key
	if cfg.SafePrimes {
		k, err := keygen.GenerateKey(ctx, rand.Reader, cfg.Bits, 0, nil)
		if err != nil {
			return res, fmt.Errorf("limit: generate key: %w", err)
		}
		key = k
	} else {
		priv, err := rsa.GenerateKey(rand.Reader, cfg.Bits)
		if err != nil {
			return res, fmt.Errorf("limit: generate key: %w", err)
		}
		k, _, err := shoup.FromRSA(priv)
		if err != nil {
			return res, fmt.Errorf("limit: import key: %w", err)
		}
		key = k
	}
	pk, shares, em, err := dealToSign(key, cfg.K, cfg.N, "tchsm bench threshold limit")
	if err != nil {
		return res, err
	}
	defer wipeAll(shares)

	// Check first that the shares we time are real: k of them must combine into a signature
	// that crypto/rsa accepts.
	sigShares := make([]*shoup.SigShare, 0, cfg.K)
	for _, s := range shares[:cfg.K] {
		ss, err := shoup.SignShare(pk, s, em)
		if err != nil {
			return res, fmt.Errorf("limit: sign share: %w", err)
		}
		sigShares = append(sigShares, ss)
	}
	c0 := time.Now()
	sig, err := shoup.Combine(pk, em, sigShares)
	res.CombineMS = float64(time.Since(c0)) / float64(time.Millisecond)
	if err != nil {
		return res, fmt.Errorf("limit: combine: %w", err)
	}
	digest := sha256.Sum256([]byte("tchsm bench threshold limit"))
	if err := rsa.VerifyPKCS1v15(pk.RSA(), crypto.SHA256, digest[:], sig); err != nil {
		return res, fmt.Errorf("limit: combined signature does not verify: %w", err)
	}

	// r is computed from the CPU time of the threads that compute the shares
	// (CLOCK_THREAD_CPUTIME_ID), not from wall-clock time: on a machine shared with other work
	// the wall clock measures the scheduler, while the CPU cost of a share is what bounds a
	// cluster. Not the process's CPU time either: the harness process also hosts the PKCS#11
	// modules under test (libtchsm.so brings its own Go runtime), whose threads must not count.
	// GOMAXPROCS is 1 while timing, so no idle GC workers run on a second core.
	procs := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(procs)
	// Warm up (caches, page faults, a CPU clocked down while the machine was idle) untimed.
	if _, _, _, err := timeShares(ctx, pk, shares, em, 1, min(cfg.Duration, 300*time.Millisecond)); err != nil {
		return res, err
	}
	reps := max(cfg.Reps, 1)
	tol := cfg.Tolerance
	if tol <= 0 {
		tol = 0.10
	}
	var wallMS []float64
	for range reps {
		n, el, cpu, err := timeShares(ctx, pk, shares, em, 1, cfg.Duration)
		if err != nil {
			return res, err
		}
		res.Shares += n
		res.ElapsedS += el.Seconds()
		res.CPUS += cpu.Seconds()
		wallMS = append(wallMS, float64(el)/float64(time.Millisecond)/float64(n))
		res.RepRates = append(res.RepRates, float64(n)/cpu.Seconds())
	}
	st := stats.CheckStability(res.RepRates, tol)
	res.ShareRate, res.MaxDeviation, res.Unstable = st.Median, st.MaxDeviation, st.Unstable
	res.ShareMS = 1000 / res.ShareRate
	res.WallShareMS = stats.Median(wallMS)

	// The same with all C cores busy at once: on SMT siblings or a shared host a core computes
	// fewer shares when its neighbours work too, which C·r (one busy core, C times) hides.
	if cfg.Cores > 1 && cfg.Cores <= runtime.NumCPU() {
		runtime.GOMAXPROCS(cfg.Cores)
		var rates []float64
		for range reps {
			n, _, cpu, err := timeShares(ctx, pk, shares, em, cfg.Cores, cfg.Duration)
			if err != nil {
				return res, err
			}
			rates = append(rates, float64(n)/cpu.Seconds())
		}
		res.ParallelRate = stats.Median(rates)
		res.ParallelLimit = float64(cfg.Cores) * res.ParallelRate / float64(cfg.K)
	}
	res.Limit = float64(cfg.Cores) * res.ShareRate / float64(cfg.K)
	res.LimitAllNodes = float64(cfg.Cores) * res.ShareRate / float64(cfg.N)
	return res, nil
}

// timeShares runs SignShare on workers goroutines for dur (at least 3 shares each) and returns
// the number of shares, the wall-clock time and the CPU time of the threads that ran them.
func timeShares(ctx context.Context, pk *shoup.PublicKey, shares []*shoup.KeyShare, em []byte, workers int, dur time.Duration) (int, time.Duration, time.Duration, error) {
	runtime.GC()
	start := time.Now()
	deadline := start.Add(dur)
	counts := make([]int, workers)
	cpus := make([]time.Duration, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // the thread's CPU clock then counts this goroutine alone
			defer runtime.UnlockOSThread()
			cpu0, err := threadCPU()
			if err != nil {
				errs[w] = err
				return
			}
			for n := 0; n < 3 || time.Now().Before(deadline); n++ {
				if err := ctx.Err(); err != nil {
					errs[w] = err
					return
				}
				if _, err := shoup.SignShare(pk, shares[(w+n)%len(shares)], em); err != nil {
					errs[w] = fmt.Errorf("limit: sign share: %w", err)
					return
				}
				counts[w]++
			}
			cpu1, err := threadCPU()
			cpus[w], errs[w] = cpu1-cpu0, err
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return 0, 0, 0, err
	}
	n := 0
	var cpu time.Duration
	for w := range counts {
		n += counts[w]
		cpu += cpus[w]
	}
	if cpu <= 0 {
		cpu = el * time.Duration(workers)
	}
	return n, el, cpu, nil
}

// threadCPU is the CPU time of the calling OS thread so far.
func threadCPU() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, fmt.Errorf("limit: clock_gettime: %w", err)
	}
	return time.Duration(ts.Nano()), nil
}

// Model is what separate servers would give: n_servers servers with cores cores each, every
// signature needing k shares, is ≈ n_servers·cores·r/k signatures per second.
func Model(nServers, cores int, r float64, k int) float64 {
	if k < 1 {
		return 0
	}
	return float64(nServers*cores) * r / float64(k)
}

// dealToSign deals key (and wipes it) into k-of-n shares and encodes a SHA-256 DigestInfo of msg
// for the key: what a node exponentiates. The caller wipes the shares (wipeAll).
func dealToSign(key *shoup.Key, k, n int, msg string) (*shoup.PublicKey, []*shoup.KeyShare, []byte, error) {
	pk, shares, err := shoup.Deal(rand.Reader, key, k, n)
	key.Wipe()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("limit: deal: %w", err)
	}
	digest := sha256.Sum256([]byte(msg))
	t, err := shoup.DigestInfo(crypto.SHA256, digest[:])
	if err == nil {
		var em []byte
		if em, err = shoup.EncodePayload(pk.Size(), t); err == nil {
			return pk, shares, em, nil
		}
	}
	wipeAll(shares)
	return nil, nil, nil, fmt.Errorf("limit: %w", err)
}

func wipeAll(shares []*shoup.KeyShare) {
	for _, s := range shares {
		s.Wipe()
	}
}
