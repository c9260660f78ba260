// Package harness is the command line of the benchmark (`go run ./bench`): flags, the order of
// the measurements, and writing the results.
package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tchsm/tchsm/bench/internal/cluster"
	"github.com/tchsm/tchsm/bench/internal/hsmspeed"
	"github.com/tchsm/tchsm/bench/internal/limit"
	"github.com/tchsm/tchsm/bench/internal/progress"
	"github.com/tchsm/tchsm/bench/internal/report"
	"github.com/tchsm/tchsm/bench/internal/runner"
	"github.com/tchsm/tchsm/bench/internal/stats"
	"github.com/tchsm/tchsm/bench/internal/target"
)

// Sentinel errors.
var (
	ErrUsage   = errors.New("bench: usage")
	ErrInvalid = errors.New("bench: invalid signatures")
	ErrFailed  = errors.New("bench: a target failed")
)

// devPIN is the user PIN `tchsm dev up` gives its token unless told otherwise (internal/cli).
const devPIN = "1234"

// KnownTargets are the target names -targets accepts.
var KnownTargets = []string{"softhsm", "gorsa", "goed25519", "tchsm", "p11"}

// Options are the parsed flags.
type Options struct {
	Targets        []string
	Alg            string // "rsa" or "ed25519"
	Bits           int
	K, N           int
	Duration       time.Duration
	Count          int
	Warmup         time.Duration
	MaxConcurrency int
	Reps           int
	Tolerance      float64
	Quick          bool
	Out            string
	Cores          int
	ShareTime      time.Duration
	SafePrimes     bool
	NoLimit        bool
	CompareSizes   []int // RSA sizes at which the share is timed against OpenSSL (issue 17)

	HSMSpeed        bool
	HSMSpeedThreads []int

	SoftHSMModule string
	KeepKey       bool

	P11Module, P11Token, P11PIN string

	TchsmModule, TchsmConfig, TchsmLabel, TchsmPIN string
	TchsmLaunch                                    string
	TchsmBuild                                     bool

	Scaling   bool
	ScalingNs []int
	ScalingKs []int

	TmpDir string
	Args   []string
	From   string // re-render the report from this results.json instead of measuring

	built *built            // tools built by -tchsm-launch auto / -tchsm-build, removed at the end of Run
	frost *limit.FROSTArith // the run's FROST arithmetic, for the CPU split
}

// built holds binaries the harness built from this repository.
type built struct {
	dir    string
	tchsm  string // cmd/tchsm
	module string // libtchsm.so
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("%w: %q is not a positive integer", ErrUsage, f)
		}
		out = append(out, v)
	}
	return out, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// Parse parses the command line.
func Parse(args []string, stderr io.Writer) (*Options, error) {
	o := &Options{Args: args}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	targets := fs.String("targets", "", "comma-separated targets: "+strings.Join(KnownTargets, ", ")+" (default softhsm,gorsa,tchsm; with -alg ed25519 softhsm,goed25519,tchsm)")
	fs.StringVar(&o.Alg, "alg", "rsa", "key type: rsa (PKCS#1 v1.5, -bits) or ed25519 (CKM_EDDSA over 150-byte messages; the threshold limit, -compare-sizes and ods-hsmspeed are RSA-only and skipped, the FROST arithmetic is timed instead)")
	fs.IntVar(&o.Bits, "bits", 2048, "RSA modulus size: 1024, 2048, 3072 or 4096")
	fs.IntVar(&o.K, "k", 3, "threshold k (shares needed per signature)")
	fs.IntVar(&o.N, "n", 5, "number of nodes n")
	fs.DurationVar(&o.Duration, "duration", 3*time.Second, "length of each timed repetition")
	fs.IntVar(&o.Count, "count", 0, "signatures per repetition instead of -duration (0: use -duration)")
	fs.DurationVar(&o.Warmup, "warmup", 500*time.Millisecond, "warm-up before each concurrency step")
	fs.IntVar(&o.MaxConcurrency, "max-concurrency", 32, "largest concurrency tried")
	fs.IntVar(&o.Reps, "reps", 3, "repetitions per step (the median is reported)")
	fs.Float64Var(&o.Tolerance, "tolerance", 0.10, "flag a step when a repetition is more than this fraction off the median")
	fs.BoolVar(&o.Quick, "quick", false, "short smoke run (~10 s): -duration 250ms -warmup 50ms -reps 2 -max-concurrency 4 -share-time 200ms -hsmspeed-threads 1, unless given")
	fs.StringVar(&o.Out, "out", "", "output directory (default bench/results/<date>-<host>)")
	fs.IntVar(&o.Cores, "cores", runtime.NumCPU(), "C: cores the cluster's nodes share, for the threshold limit C·r/k")
	fs.DurationVar(&o.ShareTime, "share-time", 500*time.Millisecond, "how long to time shoup.SignShare for r (per repetition)")
	fs.BoolVar(&o.SafePrimes, "limit-safe-primes", false, "time SignShare with a real safe-prime key (slow to generate; same exponentiation cost)")
	fs.BoolVar(&o.NoLimit, "no-limit", false, "skip the threshold-limit measurement")
	fs.BoolVar(&o.HSMSpeed, "hsmspeed", true, "also run ods-hsmspeed against softhsm, tchsm and p11")
	hsThreads := fs.String("hsmspeed-threads", "1,2,4", "ods-hsmspeed thread counts")
	cmpSizes := fs.String("compare-sizes", "2048,3072,4096", "RSA sizes at which one share is timed against OpenSSL's BN_mod_exp_mont_consttime in the same run (r per size and the ratio); empty: none")
	fs.StringVar(&o.SoftHSMModule, "softhsm-module", "", "SoftHSM2 module (default: found in the usual places)")
	fs.BoolVar(&o.KeepKey, "keep-key", false, "keep keys the harness generated in tchsm or p11 tokens (default: destroy them at the end)")
	fs.StringVar(&o.P11Module, "p11-module", os.Getenv("P11_MODULE"), "p11 target: PKCS#11 module path ($P11_MODULE)")
	fs.StringVar(&o.P11Token, "p11-token", os.Getenv("P11_TOKEN"), "p11 target: token label ($P11_TOKEN)")
	fs.StringVar(&o.P11PIN, "p11-pin", "", "p11 target: user PIN (default $P11_PIN)")
	fs.StringVar(&o.TchsmModule, "tchsm-module", os.Getenv("TCHSM_MODULE"), "tchsm target: path of libtchsm.so ($TCHSM_MODULE)")
	fs.StringVar(&o.TchsmConfig, "tchsm-config", os.Getenv("TCHSM_CONFIG"), "tchsm target: TCHSM_CONFIG for the module ($TCHSM_CONFIG)")
	fs.StringVar(&o.TchsmLabel, "tchsm-label", envOr("TCHSM_TOKEN_LABEL", "tchsm"), "tchsm target: token label ($TCHSM_TOKEN_LABEL)")
	fs.StringVar(&o.TchsmPIN, "tchsm-pin", "", "tchsm target: user PIN (default $TCHSM_PIN, else the `tchsm dev up` PIN; random for -tchsm-launch)")
	fs.StringVar(&o.TchsmLaunch, "tchsm-launch", "", "start a local cluster: `auto` builds ./cmd/tchsm and ./p11shim from this repository, or give the launcher command (e.g. \"tchsm\"); runs `<cmd> dev up --dir D --k K --n N`")
	fs.BoolVar(&o.TchsmBuild, "tchsm-build", false, "build libtchsm.so from ./p11shim (go build -buildmode=c-shared) when no module is given")
	fs.BoolVar(&o.Scaling, "scaling", false, "measure tchsm across n (fixed k) and across k (fixed n); needs -tchsm-launch")
	sNs := fs.String("scaling-n", "", "n values for the fixed-k series (default k..n+2)")
	sKs := fs.String("scaling-k", "", "k values for the fixed-n series (default 2..n)")
	fs.StringVar(&o.From, "from", "", "measure nothing: re-render results.md and the plots from this results.json (into -out, default its directory)")
	fs.StringVar(&o.TmpDir, "tmp", "", "directory for temporary tokens and configs (default $TMPDIR)")
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected arguments %q", ErrUsage, fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.Quick {
		if !set["duration"] {
			o.Duration = 250 * time.Millisecond
		}
		if !set["warmup"] {
			o.Warmup = 50 * time.Millisecond
		}
		if !set["reps"] {
			o.Reps = 2
		}
		if !set["max-concurrency"] {
			o.MaxConcurrency = 4
		}
		if !set["share-time"] {
			o.ShareTime = 200 * time.Millisecond
		}
		if !set["hsmspeed-threads"] {
			*hsThreads = "1"
		}
	}
	if o.P11PIN == "" {
		o.P11PIN = os.Getenv("P11_PIN")
	}
	if o.TchsmPIN == "" {
		o.TchsmPIN = os.Getenv("TCHSM_PIN")
	}
	if o.TchsmPIN == "" && o.TchsmLaunch == "" {
		o.TchsmPIN = devPIN
	}
	switch o.Alg {
	case "rsa", "ed25519":
	default:
		return nil, fmt.Errorf("%w: -alg %q (rsa or ed25519)", ErrUsage, o.Alg)
	}
	if *targets == "" {
		*targets = "softhsm,gorsa,tchsm"
		if o.Alg == "ed25519" {
			*targets = "softhsm,goed25519,tchsm"
		}
	}
	for _, t := range strings.Split(*targets, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		if !slices.Contains(KnownTargets, t) {
			return nil, fmt.Errorf("%w: unknown target %q (known: %s)", ErrUsage, t, strings.Join(KnownTargets, ", "))
		}
		if (t == "gorsa" && o.Alg != "rsa") || (t == "goed25519" && o.Alg != "ed25519") {
			return nil, fmt.Errorf("%w: target %s with -alg %s", ErrUsage, t, o.Alg)
		}
		if !slices.Contains(o.Targets, t) {
			o.Targets = append(o.Targets, t)
		}
	}
	var err error
	if o.HSMSpeedThreads, err = intList(*hsThreads); err != nil {
		return nil, err
	}
	if strings.TrimSpace(*cmpSizes) != "" {
		if o.CompareSizes, err = intList(*cmpSizes); err != nil {
			return nil, err
		}
		for _, b := range o.CompareSizes {
			if !target.ValidBits(b) {
				return nil, fmt.Errorf("%w: -compare-sizes %d (1024, 2048, 3072 or 4096)", ErrUsage, b)
			}
		}
	}
	switch {
	case !target.ValidBits(o.Bits):
		return nil, fmt.Errorf("%w: -bits %d (1024, 2048, 3072 or 4096)", ErrUsage, o.Bits)
	case o.K < 1 || o.N < o.K:
		return nil, fmt.Errorf("%w: need 1 <= k <= n, got k=%d n=%d", ErrUsage, o.K, o.N)
	case o.Reps < 1 || o.MaxConcurrency < 1 || o.Cores < 1:
		return nil, fmt.Errorf("%w: -reps, -max-concurrency and -cores must be positive", ErrUsage)
	case o.Count < 0 || (o.Count == 0 && o.Duration <= 0):
		return nil, fmt.Errorf("%w: need -duration > 0 or -count > 0", ErrUsage)
	case o.Tolerance <= 0:
		return nil, fmt.Errorf("%w: -tolerance must be positive", ErrUsage)
	}
	if o.ScalingNs, err = intList(*sNs); err != nil {
		return nil, err
	}
	if o.ScalingKs, err = intList(*sKs); err != nil {
		return nil, err
	}
	if len(o.ScalingNs) == 0 {
		for n := o.K; n <= o.N+2; n++ {
			o.ScalingNs = append(o.ScalingNs, n)
		}
	}
	if len(o.ScalingKs) == 0 {
		for k := min(2, o.N); k <= o.N; k++ {
			o.ScalingKs = append(o.ScalingKs, k)
		}
	}
	if o.Alg == "ed25519" {
		// RSA-only measurements: shoup's share rate, the OpenSSL comparison, ods-hsmspeed
		// (which generates and signs with RSA keys).
		o.NoLimit, o.CompareSizes, o.HSMSpeed = true, nil, false
	}
	if o.Out == "" && o.From != "" {
		o.Out = filepath.Dir(o.From)
	}
	if o.Out == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "host"
		}
		o.Out = filepath.Join("bench", "results", time.Now().UTC().Format("2006-01-02T1504Z")+"-"+host)
	}
	return o, nil
}

// Main runs the benchmark and returns the process exit code.
func Main(args []string, stdout, stderr *os.File) int {
	o, err := Parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var res *report.Results
	if o.From != "" {
		if res, err = report.Load(o.From); err == nil {
			res.Finish() // derived fields of older reports
		}
	} else {
		res, err = Run(ctx, o, progress.New(stderr))
	}
	if res != nil {
		files, werr := res.Write(o.Out)
		if werr != nil {
			fmt.Fprintln(stderr, werr)
		}
		fmt.Fprint(stdout, res.Markdown(nil))
		fmt.Fprintf(stdout, "\nResults: %s\n", strings.Join(files, ", "))
		if werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// Run measures everything o asks for. It returns whatever was measured, even with an error.
func Run(ctx context.Context, o *Options, bar *progress.Bar) (*report.Results, error) {
	res := &report.Results{
		Tool:    "tchsm-bench",
		Started: time.Now().UTC(),
		Args:    o.Args,
		Config: report.Config{Targets: o.Targets, Alg: o.Alg, Bits: o.Bits, K: o.K, N: o.N, DurationS: o.Duration.Seconds(), Count: o.Count,
			WarmupS: o.Warmup.Seconds(), Reps: o.Reps, MaxConcurrency: o.MaxConcurrency, Tolerance: o.Tolerance, Cores: o.Cores, Quick: o.Quick},
		Machine: report.DescribeMachine(),
	}
	m := res.Machine
	keyDesc := fmt.Sprintf("RSA-%d", o.Bits)
	if o.Alg == "ed25519" {
		keyDesc = "Ed25519"
	}
	bar.Logf("tchsm bench: %s, %d cores, load %s, %s; %s, k=%d n=%d, targets %s",
		m.CPUModel, m.Cores, m.LoadAvgStart, m.GoVersion, keyDesc, o.K, o.N, strings.Join(o.Targets, ","))
	if m.Load1Start > 0.5*float64(m.Cores) {
		w := fmt.Sprintf("machine busy at start (load average %s on %d cores): figures will be low and noisy", m.LoadAvgStart, m.Cores)
		res.Warnings = append(res.Warnings, w)
		bar.Logf("WARNING: %s", w)
	}
	if v, err := exec.Command("softhsm2-util", "--version").Output(); err == nil {
		res.Machine.SoftHSM = strings.TrimSpace(string(v))
	}
	var errs []error
	defer func() {
		if o.built != nil {
			os.RemoveAll(o.built.dir)
			o.built = nil
		}
	}()
	if !o.NoLimit {
		bar.Infof("threshold limit: timing shoup.SignShare (RSA-%d) for %v", o.Bits, o.ShareTime)
		waitQuiet(ctx, 15*time.Second)
		lr, err := limit.Measure(ctx, limit.Config{Bits: o.Bits, K: o.K, N: o.N, Cores: o.Cores, Duration: o.ShareTime, SafePrimes: o.SafePrimes,
			Reps: o.Reps, Tolerance: o.Tolerance})
		if err != nil {
			errs = append(errs, err)
			res.Warnings = append(res.Warnings, err.Error())
		} else {
			res.Limit = &report.Threshold{Result: lr}
			line := fmt.Sprintf("threshold limit: share %.2f ms, r = %.0f/s/core, C·r/k = %d·%.0f/%d = %.0f sig/s",
				lr.ShareMS, lr.ShareRate, lr.Cores, lr.ShareRate, lr.K, lr.Limit)
			if lr.ParallelLimit > 0 {
				line += fmt.Sprintf("; all cores at once: %.0f/s/core, limit %.0f sig/s", lr.ParallelRate, lr.ParallelLimit)
			}
			bar.Done(line)
		}
		if len(o.CompareSizes) > 0 {
			bar.Infof("share vs OpenSSL: timing shoup.SignShare and BN_mod_exp_mont_consttime at %v bits, %v each", o.CompareSizes, o.ShareTime)
			rs, err := limit.CompareOpenSSL(ctx, o.CompareSizes, o.K, o.N, o.ShareTime)
			if err != nil {
				errs = append(errs, err)
				res.Warnings = append(res.Warnings, err.Error())
			}
			if res.Limit != nil {
				res.Limit.VsOpenSSL = rs
			}
			for _, r := range rs {
				bar.Done(fmt.Sprintf("share vs OpenSSL, RSA-%d: share %.2f ms (r = %.0f/s/core, engine %s), OpenSSL %.2f ms: ratio %.3f",
					r.Bits, r.ShareMS, r.ShareRate, r.Engine, r.OpenSSLMS, r.Ratio))
			}
		}
	}
	if o.Alg == "ed25519" {
		bar.Infof("FROST arithmetic: timing whole %d-of-%d signatures in process for %v", o.K, o.N, o.ShareTime)
		waitQuiet(ctx, 15*time.Second)
		fr, err := limit.MeasureFROST(ctx, o.K, o.N, max(o.ShareTime, time.Second))
		if err != nil {
			errs = append(errs, err)
			res.Warnings = append(res.Warnings, err.Error())
		} else {
			res.FROST, o.frost = fr, fr
			bar.Done(fmt.Sprintf("FROST %d-of-%d arithmetic per signature: nodes %.3f ms, client %.3f ms (CPU time, %d signatures)",
				fr.K, fr.N, fr.NodeMS, fr.ClientMS, fr.Signatures))
		}
	}
	rcfg := runner.Config{MaxConcurrency: o.MaxConcurrency, Duration: o.Duration, Count: o.Count, Warmup: o.Warmup,
		Reps: o.Reps, Saturation: stats.DefaultSaturation, Tolerance: o.Tolerance, Bar: bar}
	for _, name := range o.Targets {
		if ctx.Err() != nil {
			break
		}
		tr := &report.Target{Name: name}
		res.Targets = append(res.Targets, tr)
		if err := runTarget(ctx, o, name, rcfg, tr, bar); err != nil {
			tr.Error = err.Error()
			errs = append(errs, err)
			bar.Logf("%s: %v", name, err)
		}
		if tr.Skipped != "" {
			res.Warnings = append(res.Warnings, name+" skipped: "+tr.Skipped)
			bar.Logf("%s: skipped: %s", name, tr.Skipped)
		}
	}
	if res.Limit != nil && ctx.Err() == nil {
		// r again, after the load: a drifting host makes the ratio to the limit meaningless. The
		// cluster's teardown (vhost deletion by rabbitmqctl, the broker's cleanup) first.
		waitQuiet(ctx, 15*time.Second)
		lr, err := limit.Measure(ctx, limit.Config{Bits: o.Bits, K: o.K, N: o.N, Cores: o.Cores, Duration: o.ShareTime,
			Reps: o.Reps, Tolerance: o.Tolerance})
		if err == nil {
			res.Limit.ShareRateAfter = lr.ShareRate
			res.Limit.Drift = math.Abs(lr.ShareRate-res.Limit.ShareRate) / res.Limit.ShareRate
			bar.Done(fmt.Sprintf("threshold limit: r after the targets %.0f/s/core (before %.0f, drift %.0f%%)",
				lr.ShareRate, res.Limit.ShareRate, 100*res.Limit.Drift))
			if res.Limit.Drift > o.Tolerance {
				res.Warnings = append(res.Warnings, fmt.Sprintf("threshold limit: r drifted %.0f%% during the run (%.0f/s before, %.0f/s after): the host's speed changed; ratios to the limit are uncertain by as much",
					100*res.Limit.Drift, res.Limit.ShareRate, lr.ShareRate))
			}
		}
	}
	if o.Scaling && ctx.Err() == nil {
		sc, err := runScaling(ctx, o, rcfg, res, bar)
		res.Scaling = sc
		if err != nil {
			errs = append(errs, err)
			res.Warnings = append(res.Warnings, err.Error())
		}
	}
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
		res.Warnings = append(res.Warnings, "interrupted: results are partial")
	}
	res.Finish()
	for _, t := range res.Targets {
		if t.Sweep == nil {
			continue
		}
		for _, s := range t.Sweep.Steps {
			if s.Errors > 0 {
				res.Warnings = append(res.Warnings, fmt.Sprintf("%s c=%d: %d signing errors, first: %s", t.Name, s.Concurrency, s.Errors, s.FirstError))
			}
			if s.Unstable {
				res.Warnings = append(res.Warnings, fmt.Sprintf("%s c=%d: a repetition is %.0f%% off the median (tolerance %.0f%%)",
					t.Name, s.Concurrency, 100*s.MaxDeviation, 100*o.Tolerance))
			}
		}
		for _, h := range t.HSMSpeed {
			if h.Unstable {
				res.Warnings = append(res.Warnings, fmt.Sprintf("%s ods-hsmspeed -t %d: a repetition is %.0f%% off the median", t.Name, h.Threads, 100*h.MaxDeviation))
			}
		}
	}
	if res.Limit != nil && res.Limit.Unstable {
		res.Warnings = append(res.Warnings, fmt.Sprintf("threshold limit: a repetition of r is %.0f%% off the median", 100*res.Limit.MaxDeviation))
	}
	if res.Unstable {
		bar.Logf("WARNING: some repetitions were more than %.0f%% off their median (see results)", 100*o.Tolerance)
	}
	if res.Invalid > 0 {
		errs = append(errs, fmt.Errorf("%w: %d signatures did not verify", ErrInvalid, res.Invalid))
	}
	res.Machine.LoadAvgEnd = report.LoadAvg()
	res.Finished = time.Now().UTC()
	return res, errors.Join(errs...)
}

// open returns the target called name, or a skip reason.
func open(ctx context.Context, o *Options, name string, cl *cluster.Cluster, bar *progress.Bar) (target.Target, string, error) {
	switch name {
	case "gorsa":
		bar.Infof("gorsa: generating RSA-%d key", o.Bits)
		t, err := target.NewGoRSA(o.Bits)
		return t, "", err
	case "goed25519":
		t, err := target.NewGoEd25519()
		return t, "", err
	case "softhsm":
		bar.Infof("softhsm: creating a temporary token and an %s key", keyName(o))
		t, err := target.OpenSoftHSMKey(ctx, o.SoftHSMModule, o.Bits, o.Alg == "ed25519", o.TmpDir)
		return t, "", err
	case "p11":
		if o.P11Module == "" || o.P11Token == "" {
			return nil, "give -p11-module and -p11-token", nil
		}
		t, err := target.OpenPKCS11(target.PKCS11Config{Name: "p11", Module: o.P11Module, TokenLabel: o.P11Token,
			PIN: o.P11PIN, Bits: o.Bits, Ed25519: o.Alg == "ed25519", KeepKey: o.KeepKey})
		return t, "", err
	case "tchsm":
		module, config, label, pin := o.TchsmModule, o.TchsmConfig, o.TchsmLabel, o.TchsmPIN
		if cl != nil {
			config = cl.Env["TCHSM_CONFIG"]
			if v := cl.Env["TCHSM_MODULE"]; v != "" && module == "" {
				module = v
			}
			if v := cl.Env["TCHSM_TOKEN_LABEL"]; v != "" {
				label = v
			}
			if v := cl.Env["TCHSM_PIN"]; v != "" {
				pin = v
			}
		}
		if module == "" && (o.TchsmBuild || o.TchsmLaunch == "auto") {
			b, err := build(ctx, o, false, bar)
			if err != nil {
				return nil, "", err
			}
			module = b.module
		}
		if module == "" || config == "" {
			return nil, "no tchsm cluster: give -tchsm-module and -tchsm-config or -tchsm-launch auto to start a local cluster", nil
		}
		bar.Infof("tchsm: loading %s (TCHSM_CONFIG=%s), finding or generating an %s key", module, config, keyName(o))
		t, err := target.OpenPKCS11(target.PKCS11Config{Name: "tchsm", Module: module, TokenLabel: label, PIN: pin,
			Bits: o.Bits, Ed25519: o.Alg == "ed25519", KeepKey: o.KeepKey, Env: map[string]string{"TCHSM_CONFIG": config}})
		return t, "", err
	}
	return nil, "", fmt.Errorf("%w: unknown target %q", ErrUsage, name)
}

// build builds, once per run, the tchsm CLI (when withCLI) and libtchsm.so from this repository
// into a temp dir removed at the end of Run.
func build(ctx context.Context, o *Options, withCLI bool, bar *progress.Bar) (*built, error) {
	if o.built == nil {
		dir, err := os.MkdirTemp(o.TmpDir, "tchsm-bench-build-")
		if err != nil {
			return nil, err
		}
		o.built = &built{dir: dir}
	}
	b := o.built
	run := func(args ...string) error {
		bar.Infof("tchsm: go %s", strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, "go", args...)
		if msg, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("bench: go %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(msg)))
		}
		return nil
	}
	if b.module == "" {
		out := filepath.Join(b.dir, "libtchsm.so")
		if err := run("build", "-buildmode=c-shared", "-o", out, "./p11shim"); err != nil {
			return nil, err
		}
		b.module = out
	}
	if withCLI && b.tchsm == "" {
		out := filepath.Join(b.dir, "tchsm")
		if err := run("build", "-o", out, "./cmd/tchsm"); err != nil {
			return nil, err
		}
		b.tchsm = out
	}
	return b, nil
}

func runTarget(ctx context.Context, o *Options, name string, rcfg runner.Config, tr *report.Target, bar *progress.Bar) (err error) {
	var cl *cluster.Cluster
	if name == "tchsm" && o.TchsmLaunch != "" {
		// Start a local cluster with the launcher (package cluster).
		dir, err := os.MkdirTemp(o.TmpDir, "tchsm-bench-cluster-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		command := cluster.ParseCommand(o.TchsmLaunch)
		if o.TchsmLaunch == "auto" {
			b, err := build(ctx, o, true, bar)
			if err != nil {
				return err
			}
			command = []string{b.tchsm}
		}
		if o.TchsmPIN == "" {
			o.TchsmPIN = randomPIN()
		}
		bar.Infof("tchsm: starting a %d-of-%d cluster with %q", o.K, o.N, strings.Join(command, " "))
		var logw io.Writer
		if progress.IsTerminal(os.Stderr) {
			logw = os.Stderr
		}
		l := cluster.Launcher{Command: command, Log: logw,
			UpArgs: []string{"--token-label", o.TchsmLabel, "--pin", o.TchsmPIN}}
		if _, err := exec.LookPath("rabbitmqctl"); err == nil {
			l.VHost = "tchsm-bench-"
		}
		cl, err = l.Up(ctx, dir, o.K, o.N)
		if err != nil {
			return err
		}
		defer func() {
			if derr := cl.Down(); derr != nil && err == nil {
				err = derr
			}
		}()
	}
	t, skip, err := open(ctx, o, name, cl, bar)
	if skip != "" {
		tr.Skipped = skip
		return nil
	}
	if err != nil {
		return err
	}
	defer func() {
		if cerr := t.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	tr.Description = t.Describe()
	if kg, ok := t.(interface{ KeyGenTime() time.Duration }); ok && kg.KeyGenTime() > 0 {
		tr.KeyGenMS = float64(kg.KeyGenTime()) / float64(time.Millisecond)
		bar.Done(fmt.Sprintf("%-8s key generation (C_GenerateKeyPair) %.0f ms", name, tr.KeyGenMS))
	}
	sw, err := runner.Run(ctx, t, rcfg)
	tr.Sweep = sw
	if err != nil {
		return err
	}
	if name == "tchsm" && cl != nil && o.Alg == "ed25519" {
		if err := measureCPU(ctx, o, t, cl, sw, rcfg, tr, bar); err != nil {
			bar.Logf("tchsm: CPU per signature: %v", err)
			tr.Error = "CPU per signature: " + err.Error()
		}
	}
	if o.HSMSpeed && name != "gorsa" {
		if r, ok := t.(interface{ Repo() target.Repo }); ok {
			best := 0.0
			if b := sw.BestStep(); b != nil {
				best = b.SigPerSec
			}
			runHSMSpeed(ctx, o, r.Repo(), best, tr, bar)
		}
	}
	return nil
}

// randomPIN is the user PIN of a cluster the harness starts itself.
func randomPIN() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func runHSMSpeed(ctx context.Context, o *Options, repo target.Repo, best float64, tr *report.Target, bar *progress.Bar) {
	if !hsmspeed.Available() {
		tr.HSMSpeedError = hsmspeed.ErrNotInstalled.Error()
		return
	}
	dur := o.Duration
	if o.Count > 0 || dur <= 0 {
		dur = time.Second
	}
	for _, th := range o.HSMSpeedThreads {
		// Size the run to last about -duration at the rate the sweep measured.
		iters := max(20, int(best*dur.Seconds()/float64(th)))
		pt := report.HSMSpeedPoint{Threads: th}
		var rates []float64
		for rep := range o.Reps {
			bar.Start(fmt.Sprintf("%-8s ods-hsmspeed -t %d rep %d/%d", tr.Name, th, rep+1, o.Reps), dur, nil, 0)
			r, err := hsmspeed.Run(ctx, repo, o.Bits, th, iters, o.TmpDir)
			if err != nil {
				bar.Done("")
				tr.HSMSpeedError = err.Error()
				bar.Logf("%s: %v", tr.Name, err)
				return
			}
			pt.Reps = append(pt.Reps, r)
			rates = append(rates, r.SigPerSec)
		}
		st := stats.CheckStability(rates, o.Tolerance)
		pt.SigPerSec, pt.MaxDeviation, pt.Unstable = st.Median, st.MaxDeviation, st.Unstable
		tr.HSMSpeed = append(tr.HSMSpeed, pt)
		line := fmt.Sprintf("%-8s ods-hsmspeed -t %d: %.0f sig/s", tr.Name, th, pt.SigPerSec)
		if pt.Unstable {
			line += fmt.Sprintf("  UNSTABLE (±%.0f%%)", 100*pt.MaxDeviation)
		}
		bar.Done(line)
	}
}

// runScaling measures tchsm for each (k, n) of the two series, one cluster at a time.
func runScaling(ctx context.Context, o *Options, rcfg runner.Config, res *report.Results, bar *progress.Bar) (*report.Scaling, error) {
	if o.TchsmLaunch == "" {
		return nil, fmt.Errorf("%w: -scaling needs the cluster launcher (-tchsm-launch)", cluster.ErrNoLauncher)
	}
	if o.TchsmLaunch == "auto" {
		// Build once here: the per-point option copies below share o.built.
		if _, err := build(ctx, o, true, bar); err != nil {
			return nil, err
		}
	}
	sc := &report.Scaling{}
	r := 0.0
	if res.Limit != nil {
		r = res.Limit.ShareRate
	}
	point := func(k, n int) report.ScalePoint {
		p := report.ScalePoint{K: k, N: n, Limit: limit.Model(1, o.Cores, r, k)}
		oo := *o
		oo.K, oo.N, oo.HSMSpeed = k, n, false
		tr := &report.Target{Name: "tchsm"}
		bar.Logf("scaling: k=%d n=%d", k, n)
		if err := runTarget(ctx, &oo, "tchsm", rcfg, tr, bar); err != nil {
			p.Error = err.Error()
		}
		if tr.Skipped != "" {
			p.Error = "skipped: " + tr.Skipped
		}
		if tr.Sweep != nil {
			if b := tr.Sweep.BestStep(); b != nil {
				p.SigPerSec, p.Concurrency, p.P99MS = b.SigPerSec, b.Concurrency, b.Latency.P99
			}
		}
		return p
	}
	for _, n := range o.ScalingNs {
		if n >= o.K && ctx.Err() == nil {
			sc.FixedK = append(sc.FixedK, point(o.K, n))
		}
	}
	for _, k := range o.ScalingKs {
		if k <= o.N && ctx.Err() == nil {
			sc.FixedN = append(sc.FixedN, point(k, o.N))
		}
	}
	return sc, ctx.Err()
}

// waitQuiet waits until the machine's CPUs were at least 85 % idle over half a second (from
// /proc/stat), or max passed: processes that are shutting down must not slow a timing down.
func waitQuiet(ctx context.Context, max time.Duration) {
	idle := func() (idle, total float64, ok bool) {
		b, err := os.ReadFile("/proc/stat")
		if err != nil {
			return 0, 0, false
		}
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		if len(f) < 5 || f[0] != "cpu" {
			return 0, 0, false
		}
		for i, x := range f[1:] {
			v, _ := strconv.ParseFloat(x, 64)
			total += v
			if i == 3 || i == 4 { // idle, iowait
				idle += v
			}
		}
		return idle, total, true
	}
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		i0, t0, ok := idle()
		time.Sleep(500 * time.Millisecond)
		i1, t1, ok1 := idle()
		if !ok || !ok1 || t1 <= t0 || (i1-i0)/(t1-t0) >= 0.85 {
			return
		}
	}
}

func keyName(o *Options) string {
	if o.Alg == "ed25519" {
		return "Ed25519"
	}
	return fmt.Sprintf("RSA-%d", o.Bits)
}

// measureCPU runs one more timed repetition at the sweep's best concurrency (no warm-up) and
// reads the CPU time the cluster's node processes and this process spent during it from /proc;
// it splits the total per signature into the FROST arithmetic (timed in process before the
// targets) and the rest, the messaging. The verification of every signature by the harness is
// timed separately and taken out of the client's share.
func measureCPU(ctx context.Context, o *Options, t target.Target, cl *cluster.Cluster, sw *runner.Sweep, rcfg runner.Config,
	tr *report.Target, bar *progress.Bar) error {
	best := sw.BestStep()
	if best == nil {
		return errors.New("no step")
	}
	pids, err := cluster.NodePids(cl.Dir)
	if err != nil {
		return err
	}
	if len(pids) != o.N {
		return fmt.Errorf("%d node processes found in %s, want %d", len(pids), cl.Dir, o.N)
	}
	v, err := target.NewVerifier(t.PublicKey(), 128)
	if err != nil {
		return err
	}
	cfg := rcfg
	cfg.Warmup, cfg.Reps = 0, 1
	nodes0, err := procCPU(pids...)
	if err != nil {
		return err
	}
	self0, err := procCPU(os.Getpid())
	if err != nil {
		return err
	}
	st, err := runner.RunStep(ctx, t, v, best.Concurrency, cfg)
	if err != nil {
		return err
	}
	nodes1, err := procCPU(pids...)
	if err != nil {
		return err
	}
	self1, err := procCPU(os.Getpid())
	if err != nil {
		return err
	}
	sigs := st.Reps[0].Signatures
	if sigs == 0 {
		return errors.New("no signature in the CPU step")
	}
	per := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(sigs) }
	c := &report.CPUSplit{Concurrency: best.Concurrency, Signatures: sigs, SigPerSec: st.SigPerSec,
		NodesMS: per(nodes1 - nodes0), ClientMS: per(self1 - self0), VerifyMS: limit.Ed25519VerifyMS(200 * time.Millisecond)}
	if fr := o.frost; fr != nil {
		c.NodeArithMS, c.ClientArithMS, c.ArithMS = fr.NodeMS, fr.ClientMS, fr.TotalMS
	}
	c.MessagingMS = c.NodesMS + c.ClientMS - c.VerifyMS - c.ArithMS
	tr.CPU = c
	bar.Done(fmt.Sprintf("tchsm CPU per signature at c=%d (%.0f sig/s): nodes %.2f ms, client %.2f ms (verification %.3f); arithmetic %.2f ms, messaging %.2f ms",
		c.Concurrency, c.SigPerSec, c.NodesMS, c.ClientMS, c.VerifyMS, c.ArithMS, c.MessagingMS))
	return nil
}

// procCPU is the user+system CPU time of the processes so far (/proc/PID/stat fields 14 and 15,
// in clock ticks of USER_HZ = 100 on Linux).
func procCPU(pids ...int) (time.Duration, error) {
	var total time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, err
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')') // the command name may hold spaces
		if i < 0 {
			return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 13 {
			return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
		}
		u, err1 := strconv.ParseInt(f[11], 10, 64)
		k, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("/proc/%d/stat: utime/stime", pid)
		}
		total += time.Duration(u+k) * 10 * time.Millisecond
	}
	return total, nil
}
