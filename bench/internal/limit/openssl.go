package limit

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"math/big"
	"runtime"
	"time"

	"github.com/tchsm/tchsm/internal/modexp"
	// The share's engine as the node links it, so that r here is the nodes' r.
	_ "github.com/tchsm/tchsm/internal/modexp/openssl"
	"github.com/tchsm/tchsm/internal/modexp/opensslref"
	"github.com/tchsm/tchsm/scheme/shoup"
)

// SizeRatio is one RSA size's signature share against OpenSSL's constant-time exponentiation,
// timed in the same run (issue 17: the goal is Ratio ≤ 1.05 at 2048, 3072 and 4096 bits).
type SizeRatio struct {
	Bits      int     `json:"bits"`
	Engine    string  `json:"engine"`          // internal/modexp's engine computing the share
	OpenSSL   string  `json:"openssl_version"` // the libcrypto of the yardstick
	Rounds    int     `json:"rounds"`          // share + OpenSSL pairs timed
	ShareMS   float64 `json:"share_ms"`        // CPU time of one SignShare
	OpenSSLMS float64 `json:"openssl_ms"`      // CPU time of one BN_mod_exp_mont_consttime
	ShareRate float64 `json:"share_rate_per_core"`
	Ratio     float64 `json:"share_over_openssl"`
}

// CompareOpenSSL times, for each size, shoup.SignShare (k of n, the engine in use) and OpenSSL's
// BN_mod_exp_mont_consttime on a full-length exponent with BN_FLG_CONSTTIME (package
// opensslref: operands and Montgomery context prepared once, OpenSSL's best case), alternating
// one of each on one locked OS thread for dur per size and counting the thread's CPU time of
// each: on a shared machine both suffer the same load. The key is a crypto/rsa key imported
// with shoup.FromRSA (the exponentiation costs what it costs with safe primes).
func CompareOpenSSL(ctx context.Context, sizes []int, k, n int, dur time.Duration) ([]SizeRatio, error) {
	engine, err := modexp.Selected()
	if err != nil {
		return nil, fmt.Errorf("limit: %w", err)
	}
	var out []SizeRatio
	for _, bits := range sizes {
		r, err := compareSize(ctx, bits, k, n, dur)
		if err != nil {
			return out, err
		}
		r.Engine, r.OpenSSL = engine.Name(), opensslref.Version()
		out = append(out, r)
	}
	return out, nil
}

func compareSize(ctx context.Context, bits, k, n int, dur time.Duration) (SizeRatio, error) {
	res := SizeRatio{Bits: bits}
	priv, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return res, fmt.Errorf("limit: generate key: %w", err)
	}
	key, _, err := shoup.FromRSA(priv)
	if err != nil {
		return res, fmt.Errorf("limit: import key: %w", err)
	}
	pk, shares, em, err := dealToSign(key, k, n, "tchsm bench share vs openssl")
	if err != nil {
		return res, err
	}
	defer wipeAll(shares)
	base := new(big.Int).Sub(pk.N, big.NewInt(3))
	exp := new(big.Int).Sub(pk.N, big.NewInt(12345)) // full length, like a share or d
	ref, err := opensslref.New(pk.N.Bytes(), base.Bytes(), exp.FillBytes(make([]byte, pk.Size())))
	if err != nil {
		return res, fmt.Errorf("limit: %w", err)
	}
	defer ref.Close()

	procs := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(procs)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var share, ossl time.Duration
	deadline := time.Now().Add(dur)
	for i := -1; i < 3 || time.Now().Before(deadline); i++ { // round -1 warms up, untimed
		if err := ctx.Err(); err != nil {
			return res, err
		}
		c0, err := threadCPU()
		if err != nil {
			return res, err
		}
		if _, err := shoup.SignShare(pk, shares[0], em); err != nil {
			return res, fmt.Errorf("limit: sign share: %w", err)
		}
		c1, _ := threadCPU()
		if err := ref.Exp(); err != nil {
			return res, fmt.Errorf("limit: %w", err)
		}
		c2, _ := threadCPU()
		if i >= 0 {
			share += c1 - c0
			ossl += c2 - c1
			res.Rounds++
		}
	}
	res.ShareMS = float64(share) / float64(res.Rounds) / float64(time.Millisecond)
	res.OpenSSLMS = float64(ossl) / float64(res.Rounds) / float64(time.Millisecond)
	res.ShareRate = 1000 / res.ShareMS
	res.Ratio = res.ShareMS / res.OpenSSLMS
	return res, nil
}
