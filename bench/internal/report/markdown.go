package report

import (
	"fmt"
	"path/filepath"
	"strings"
)

func ms(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// Markdown renders the results for people; plots are file paths to embed.
func (r *Results) Markdown(plots []string) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	m := r.Machine
	w("# tchsm signing benchmark — %s, %s\n\n", r.Started.UTC().Format("2006-01-02 15:04 UTC"), m.Host)
	w("**Machine.** %s, %d cores (runtime.NumCPU), %d MiB RAM, Linux %s, %s %s/%s.  \n", m.CPUModel, m.Cores, m.MemTotalMB, m.Kernel, m.GoVersion, m.GOOS, m.GOARCH)
	w("Load average at start: %s; at end: %s.", m.LoadAvgStart, m.LoadAvgEnd)
	if m.SoftHSM != "" {
		w(" SoftHSM %s.", m.SoftHSM)
	}
	if m.OpenSSL != "" {
		w(" %s.", m.OpenSSL)
	}
	w("\n\n")
	c := r.Config
	mode := fmt.Sprintf("%gs per repetition", c.DurationS)
	if c.Count > 0 {
		mode = fmt.Sprintf("%d signatures per repetition", c.Count)
	}
	what := fmt.Sprintf("RSA-%d, PKCS#1 v1.5 over SHA-256 DigestInfo", c.Bits)
	if c.Alg == "ed25519" {
		what = "Ed25519 (CKM_EDDSA, pure Ed25519 over 150-byte messages; tchsm: FROST(Ed25519, SHA-512))"
	}
	w("**Run.** %s; concurrency 1, 2, 4, … up to %d, stopping when throughput gains stay below 5%% twice; %s after a %gs warm-up, %d repetitions per step (median shown); threshold k=%d of n=%d, C=%d cores. Every signature was verified against the public key: **%d invalid**.",
		what, c.MaxConcurrency, mode, c.WarmupS, c.Reps, c.K, c.N, c.Cores, r.Invalid)
	if c.Quick {
		w(" *Quick smoke run: figures are indicative only.*")
	}
	w("\n\n")
	if m.Load1Start > 0.5*float64(max(m.Cores, 1)) {
		w("> **Note.** The machine was not idle at start (load %s on %d cores): other work competed for the CPU and the figures are lower and noisier than on an idle machine.\n\n", m.LoadAvgStart, m.Cores)
	}
	if r.Unstable {
		w("> **Warning.** At least one repetition differed from its median by more than %.0f%% (marked ⚠ below): the machine was not quiet enough for a stable figure.\n\n", c.Tolerance*100)
	}

	w("## Summary\n\n| target | best sig/s | at concurrency | knee: concurrency | sig/s | p50 ms | p99 ms | vs SoftHSM2 | invalid |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, t := range r.Targets {
		switch {
		case t.Skipped != "":
			w("| %s | skipped: %s | | | | | | | |\n", t.Name, t.Skipped)
			continue
		case t.Sweep == nil || len(t.Sweep.Steps) == 0:
			w("| %s | failed: %s | | | | | | | |\n", t.Name, t.Error)
			continue
		}
		ratio := "—"
		if t.RatioToSoftHSM > 0 {
			ratio = fmt.Sprintf("%.2f×", t.RatioToSoftHSM)
		}
		w("| %s | %.0f | %d | %d | %.0f | %s | %s | %s | %d |\n", t.Name, t.BestSigPerSec, t.BestConcurrency, t.KneeConcurrency, t.KneeSigPerSec,
			ms(t.KneeLatency.P50), ms(t.KneeLatency.P99), ratio, t.Sweep.Invalid)
	}
	w("\nThe knee is the lowest concurrency reaching %.0f%% of the best throughput: past it, more concurrency mostly adds queueing latency. Latencies in this table and in the latency plots are at the knee.\n\n", 100*KneeFraction)
	r.ed25519Markdown(w)
	if l := r.Limit; l != nil {
		reps := ""
		if len(l.RepRates) > 1 {
			var rs []string
			for _, x := range l.RepRates {
				rs = append(rs, fmt.Sprintf("%.0f", x))
			}
			reps = fmt.Sprintf(", median of %d repetitions: %s", len(l.RepRates), strings.Join(rs, ", "))
			if l.Unstable {
				reps += fmt.Sprintf(" ⚠ ±%.0f%%", 100*l.MaxDeviation)
			}
		}
		w("**Threshold limit.** One signature share (shoup.SignShare, RSA-%d, one goroutine on one core, %d shares) costs %.2f ms of CPU time (%.2f ms wall clock under the load of the moment): r = %.0f shares/s per core%s. With C = %d cores shared by the nodes and k = %d, **limit = C·r/k = %.0f sig/s**",
			l.Bits, l.Shares, l.ShareMS, l.WallShareMS, l.ShareRate, reps, l.Cores, l.K, l.Limit)
		if l.ClusterBest > 0 {
			w("; the cluster's best measured throughput is %.0f sig/s = **%.0f%% of the limit**", l.ClusterBest, 100*l.RatioToLimit)
		} else {
			w("; the cluster was not measured in this run")
		}
		w(".")
		if l.ParallelLimit > 0 {
			why := "the cores compute independently"
			if l.ParallelRate < 0.95*l.ShareRate {
				why = "cores on this machine slow each other down"
			}
			w(" With all %d cores computing shares at once each core managed %.0f shares/s (%.0f%% of r: %s), which gives a **parallel limit of %.0f sig/s**",
				l.Cores, l.ParallelRate, 100*l.ParallelRate/l.ShareRate, why, l.ParallelLimit)
			if l.ClusterBest > 0 {
				w("; the cluster reaches %.0f%% of it", 100*l.ClusterBest/l.ParallelLimit)
			}
			w(".")
		}
		if l.ShareRateAfter > 0 {
			w(" Measured again after the targets ran, r was %.0f/s (%.0f%% drift", l.ShareRateAfter, 100*l.Drift)
			if l.Drift > 0.10 {
				w(" ⚠: the host's speed changed during the run, and the ratio to the limit is uncertain by as much")
			}
			w(").")
		}
		w(" (If every one of the n = %d nodes computed a share for every request, the bound would be C·r/n = %.0f sig/s.) Combining k shares on the client (with the final verification) took %.2f ms.", l.N, l.LimitAllNodes, l.CombineMS)
		if l.ClusterP50C1 > 0 {
			w(" At concurrency 1 the cluster's median latency is %.2f ms: one share (%.2f ms wall clock) plus %.2f ms of messaging, envelopes and combination.", l.ClusterP50C1, l.WallShareMS, l.OverheadMS)
		}
		if !l.SafePrimes {
			w(" The timed key was a crypto/rsa key imported with shoup.FromRSA: the share exponentiation costs the same as with safe primes.")
		}
		w("\n\n")
		if len(l.VsOpenSSL) > 0 {
			w("**Share vs OpenSSL.** One signature share (shoup.SignShare, engine %s) and OpenSSL's BN_mod_exp_mont_consttime on a full-length exponent (%s, operands prepared once), alternated on one thread and timed in CPU time in this run (goal: ratio ≤ 1.05):\n\n| RSA | share ms | r (shares/s/core) | OpenSSL ms | share/OpenSSL | pairs |\n|---:|---:|---:|---:|---:|---:|\n",
				l.VsOpenSSL[0].Engine, l.VsOpenSSL[0].OpenSSL)
			for _, v := range l.VsOpenSSL {
				w("| %d | %.2f | %.0f | %.2f | %.3f | %d |\n", v.Bits, v.ShareMS, v.ShareRate, v.OpenSSLMS, v.Ratio, v.Rounds)
			}
			w("\n")
		}
	}

	w("## Throughput and latency per concurrency\n\n| target | concurrency | sig/s | p50 ms | p95 ms | p99 ms | max ms | repetitions (sig/s) |\n|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, t := range r.Targets {
		if t.Sweep == nil {
			continue
		}
		for i, s := range t.Sweep.Steps {
			var reps []string
			for _, rp := range s.Reps {
				reps = append(reps, fmt.Sprintf("%.0f", rp.SigPerSec))
			}
			rs := strings.Join(reps, ", ")
			if s.Unstable {
				rs += fmt.Sprintf(" ⚠ ±%.0f%%", 100*s.MaxDeviation)
			}
			if s.Invalid > 0 {
				rs += fmt.Sprintf(" **%d INVALID**", s.Invalid)
			}
			if s.Errors > 0 {
				rs += fmt.Sprintf(" (%d errors)", s.Errors)
			}
			sps := fmt.Sprintf("%.0f", s.SigPerSec)
			if i == t.Sweep.Best {
				sps = "**" + sps + "**"
			}
			if k := t.KneeStep(); k != nil && k.Concurrency == s.Concurrency {
				sps += " ◆"
			}
			w("| %s | %d | %s | %s | %s | %s | %s | %s |\n", t.Name, s.Concurrency, sps, ms(s.Latency.P50), ms(s.Latency.P95), ms(s.Latency.P99), ms(s.Latency.Max), rs)
		}
	}
	w("\nBold: best throughput; ◆: knee. ")
	for _, t := range r.Targets {
		if t.Sweep != nil && len(t.Sweep.Steps) > 0 {
			why := "reached -max-concurrency"
			if t.Sweep.Saturated {
				why = "saturated"
			}
			w("%s: %s. ", t.Name, why)
		}
	}
	w("\n\n")

	var hs bool
	for _, t := range r.Targets {
		hs = hs || len(t.HSMSpeed) > 0 || t.HSMSpeedError != ""
	}
	if hs {
		w("## ods-hsmspeed (OpenDNSSEC libhsm, RSA/SHA-1 RRsets, temporary key)\n\n| target | threads | sig/s | repetitions |\n|---|---:|---:|---|\n")
		for _, t := range r.Targets {
			if t.HSMSpeedError != "" {
				w("| %s | | failed: %s | |\n", t.Name, t.HSMSpeedError)
			}
			for _, h := range t.HSMSpeed {
				var reps []string
				for _, rp := range h.Reps {
					reps = append(reps, fmt.Sprintf("%.0f", rp.SigPerSec))
				}
				rs := strings.Join(reps, ", ")
				if h.Unstable {
					rs += fmt.Sprintf(" ⚠ ±%.0f%%", 100*h.MaxDeviation)
				}
				w("| %s | %d | %.0f | %s |\n", t.Name, h.Threads, h.SigPerSec, rs)
			}
		}
		w("\n")
	}

	if l := r.Limit; l != nil && len(l.Model) > 0 {
		w("## Model: separate servers\n\nEach signature needs k = %d shares and a share costs 1/r = %.2f ms of one core, so n_servers servers of %d cores each, one node per server, with the client asking k of them in turn, sign at most\n\n    throughput ≈ n_servers · cores · r / k\n\n| servers | cores each | ≈ sig/s |\n|---:|---:|---:|\n", l.K, l.ShareMS, l.Cores)
		for _, p := range l.Model {
			w("| %d | %d | %.0f |\n", p.Servers, p.Cores, p.SigPerSec)
		}
		w("\nThe model leaves out the client's combination (%.2f ms per signature, on the signer host), the broker, and the network round trip, which add latency and cap throughput further; a client that asks all n nodes for every signature gets cores·r instead, whatever n is.\n\n", l.CombineMS)
	}

	if s := r.Scaling; s != nil {
		w("## Scaling (measured, all nodes on this machine)\n\n| k | n | sig/s | concurrency | p99 ms | limit C·r/k | |\n|---:|---:|---:|---:|---:|---:|---|\n")
		for _, p := range append(append([]ScalePoint{}, s.FixedK...), s.FixedN...) {
			w("| %d | %d | %.0f | %d | %s | %.0f | %s |\n", p.K, p.N, p.SigPerSec, p.Concurrency, ms(p.P99MS), p.Limit, p.Error)
		}
		w("\n")
	}

	if len(plots) > 0 {
		w("## Plots\n\n")
		for _, p := range plots {
			base := filepath.Base(p)
			w("![%s](%s)\n\n", strings.TrimSuffix(base, ".png"), base)
		}
	}

	w("## Targets\n\n")
	for _, t := range r.Targets {
		d := t.Description
		if t.Skipped != "" {
			d = "skipped: " + t.Skipped
		} else if t.Error != "" {
			d += " — error: " + t.Error
		}
		w("- **%s**: %s\n", t.Name, d)
	}
	if len(r.Warnings) > 0 {
		w("\n## Warnings\n\n")
		for _, x := range r.Warnings {
			w("- %s\n", x)
		}
	}
	w("\n## Method\n\nOne process; each target is loaded as a signer loads it. PKCS#11 targets: C_Initialize(CKF_OS_LOCKING_OK), token by label, one C_Login(CKU_USER), one RW session per worker goroutine, C_SignInit(CKM_RSA_PKCS) + C_Sign of a SHA-256 DigestInfo per signature (miekg/pkcs11 asks the length first). Latency is the time of those calls only. Throughput is valid signatures divided by the time from the start signal until the last worker's last signature. PKCS#1 v1.5 signatures are deterministic, so each of the digests signed is fully verified once (normally during warm-up) and every later signature is compared with it byte for byte. Percentiles are nearest-rank over all repetitions of a step.\n")
	if r.Config.Alg == "ed25519" {
		w("\nWith -alg ed25519 the mechanism is CKM_EDDSA over a 150-byte message instead (the whole message, as OpenDNSSEC passes an RRSIG's data and RRset), and the key is generated with CKM_EC_EDWARDS_KEY_PAIR_GEN. SoftHSM2's and crypto/ed25519's signatures are deterministic and cached as above; tchsm's FROST signatures carry a random nonce, so every one is verified in full with crypto/ed25519.Verify.\n")
	}
	return b.String()
}

// ed25519Markdown renders the Ed25519 figures: latency at concurrency 1, key generation, and
// the cluster's CPU per signature split into arithmetic and messaging.
func (r *Results) ed25519Markdown(w func(string, ...any)) {
	if r.Config.Alg != "ed25519" {
		return
	}
	w("## Ed25519\n\n| target | p50 ms at c=1 | p99 ms at c=1 | sig/s at c=1 | best sig/s (c) | key generation ms |\n|---|---:|---:|---:|---:|---:|\n")
	for _, t := range r.Targets {
		if t.Sweep == nil || len(t.Sweep.Steps) == 0 {
			continue
		}
		s := t.Sweep.Steps[0]
		kg := "—"
		if t.KeyGenMS > 0 {
			kg = fmt.Sprintf("%.0f", t.KeyGenMS)
		}
		w("| %s | %s | %s | %.0f | %.0f (%d) | %s |\n", t.Name, ms(s.Latency.P50), ms(s.Latency.P99), s.SigPerSec, t.BestSigPerSec, t.BestConcurrency, kg)
	}
	w("\ntchsm's key generation is C_GenerateKeyPair(CKM_EC_EDWARDS_KEY_PAIR_GEN) through libtchsm.so: the nodes' distributed key generation over the broker, end to end; SoftHSM2's is a local key pair.\n\n")
	if f := r.FROST; f != nil {
		w("FROST(Ed25519, SHA-512) %d-of-%d arithmetic per signature, timed in process (CPU time, %d signatures): nodes %.3f ms (k commitments and k shares), client %.3f ms (checking k commitments, session, aggregation and crypto/ed25519.Verify), total %.3f ms.\n\n",
			f.K, f.N, f.Signatures, f.NodeMS, f.ClientMS, f.TotalMS)
	}
	for _, t := range r.Targets {
		c := t.CPU
		if c == nil {
			continue
		}
		w("**CPU per signature, %s** (one extra repetition at concurrency %d, %d signatures, %.0f sig/s; from /proc; the broker left out): nodes %.2f ms, this process %.2f ms (client in libtchsm.so and the harness; its verification of each signature %.3f ms). Of that, arithmetic %.2f ms (nodes %.2f, client %.2f) and messaging %.2f ms (envelopes, broker client, protobuf, PKCS#11, scheduling).\n\n",
			t.Name, c.Concurrency, c.Signatures, c.SigPerSec, c.NodesMS, c.ClientMS, c.VerifyMS, c.ArithMS, c.NodeArithMS, c.ClientArithMS, c.MessagingMS)
	}
}
