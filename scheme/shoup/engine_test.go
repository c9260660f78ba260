package shoup

import (
	"bytes"
	"math/big"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tchsm/tchsm/internal/modexp"
	"github.com/tchsm/tchsm/internal/modexp/openssl"
	"github.com/tchsm/tchsm/internal/modexp/opensslref"
	"github.com/tchsm/tchsm/scheme"
)

// Linking the openssl engine here makes this package's tests and benchmarks use the node's
// engine; $TCHSM_MODEXP=bigmod runs them on the other one (make test does both).
var _ = openssl.Linked

// TestSignShareEveryEngine: at 2048, 3072 and 4096 bits every linked engine computes the share
// math/big computes, x^(2Δ·s_i) mod N, and shares from different engines combine.
func TestSignShareEveryEngine(t *testing.T) {
	sizes := []int{2048, 3072, 4096}
	if testing.Short() {
		sizes = sizes[:1]
	}
	engines := modexp.Engines()
	if openssl.Linked && len(engines) != 2 {
		t.Fatalf("%d engines linked, want bigmod and openssl", len(engines))
	}
	for _, bits := range sizes {
		_, pk, shares := dealt(t, bits, 3, 5)
		pre, err := pk.precompute()
		if err != nil {
			t.Fatal(err)
		}
		em := encode(t, pk, scheme.SHA256RSAPKCS, []byte("every engine"))
		x := new(big.Int).SetBytes(em)
		var set []*SigShare
		for i, s := range shares[:3] {
			want := new(big.Int).Mul(new(big.Int).Lsh(pre.delta, 1), new(big.Int).SetBytes(s.S))
			want.Exp(x, want, pk.N)
			for j, e := range engines {
				ss, err := signShare(e, pk, s, em)
				if err != nil {
					t.Fatalf("%d bits, %s: %v", bits, e.Name(), err)
				}
				if ss.X.Cmp(want) != 0 {
					t.Errorf("%d bits, %s: share %d differs from math/big", bits, e.Name(), s.Index)
				}
				if j == i%len(engines) {
					set = append(set, ss)
				}
			}
		}
		if _, err := Combine(pk, em, set); err != nil {
			t.Errorf("%d bits: shares from mixed engines do not combine: %v", bits, err)
		}
	}
}

// BenchmarkShareVsOpenSSL_2048 times, on one locked OS thread and interleaved in one loop, a
// whole signature share (SignShare, with each linked engine) and OpenSSL 3's
// BN_mod_exp_mont_consttime on a full-length exponent at its best (package opensslref: operands
// and Montgomery context prepared once). It reports the CPU time of each (CLOCK_THREAD_CPUTIME_ID,
// robust to other load on the machine) and their ratio; the goal of issue 17 is
// share/openssl ≤ 1.05 at every size.
func BenchmarkShareVsOpenSSL_2048(b *testing.B) { benchShareVsOpenSSL(b, 2048) }
func BenchmarkShareVsOpenSSL_3072(b *testing.B) { benchShareVsOpenSSL(b, 3072) }
func BenchmarkShareVsOpenSSL_4096(b *testing.B) { benchShareVsOpenSSL(b, 4096) }

func benchShareVsOpenSSL(b *testing.B, bits int) {
	_, pk, shares := dealt(b, bits, 3, 5)
	em := encode(b, pk, scheme.SHA256RSAPKCS, []byte("bench"))
	// OpenSSL's operands: a base below N and an exponent as long as a share (the modulus's
	// length), full-length like d in RSA without CRT.
	base := new(big.Int).Sub(pk.N, big.NewInt(3))
	exp := new(big.Int).Sub(pk.N, big.NewInt(12345))
	ref, err := opensslref.New(pk.N.Bytes(), base.Bytes(), exp.FillBytes(make([]byte, pk.Size())))
	if err != nil {
		b.Skip(err)
	}
	defer ref.Close()
	if err := ref.Exp(); err != nil {
		b.Fatal(err)
	}
	got, _ := ref.Result()
	if want := new(big.Int).Exp(base, exp, pk.N).FillBytes(make([]byte, pk.Size())); !bytes.Equal(got, want) {
		b.Fatal("opensslref differs from math/big")
	}
	for _, e := range modexp.Engines() {
		b.Run(e.Name(), func(b *testing.B) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var share, ossl time.Duration
			for b.Loop() {
				c0 := threadCPU(b)
				if _, err := signShare(e, pk, shares[0], em); err != nil {
					b.Fatal(err)
				}
				c1 := threadCPU(b)
				if err := ref.Exp(); err != nil {
					b.Fatal(err)
				}
				c2 := threadCPU(b)
				share += c1 - c0
				ossl += c2 - c1
			}
			b.ReportMetric(float64(share)/float64(b.N)/1e6, "share-ms")
			b.ReportMetric(float64(ossl)/float64(b.N)/1e6, "openssl-ms")
			b.ReportMetric(float64(share)/float64(ossl), "share/openssl")
		})
	}
}

func threadCPU(b *testing.B) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ts.Nano())
}
