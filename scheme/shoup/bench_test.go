package shoup

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"testing"

	"filippo.io/bigmod"

	"github.com/tchsm/tchsm/scheme"
)

// The goals these benchmarks measure (issue 2; key generation's are in package keygen):
//   - BenchmarkSignShare_2048_3of5 <= 1.15 × BenchmarkModExpConstantTime_2048;
//   - BenchmarkCombine_2048_3of5 < 10% of BenchmarkSignShare_2048_3of5;
//   - issue 17: share/openssl ≤ 1.05 in BenchmarkShareVsOpenSSL_{2048,3072,4096}/openssl
//     (engine_test.go).
// Results with the machine they came from: scheme/shoup/BENCHMARKS.md.

// BenchmarkModExpConstantTime_2048 is one full-length constant-time modular exponentiation with
// filippo.io/bigmod, the floor for one signature share on the bigmod engine.
func BenchmarkModExpConstantTime_2048(b *testing.B) { benchModExp(b, 2048) }
func BenchmarkModExpConstantTime_3072(b *testing.B) { benchModExp(b, 3072) }

func benchModExp(b *testing.B, bits int) {
	key := testKey(b, bits)
	mod, _ := bigmod.NewModulus(key.N.Bytes())
	size := (bits + 7) / 8
	x, _ := bigmod.NewNat().SetBytes(new(big.Int).Sub(key.N, big.NewInt(3)).FillBytes(make([]byte, size)), mod)
	exp := new(big.Int).Sub(key.N, big.NewInt(12345)).FillBytes(make([]byte, size))
	for b.Loop() {
		bigmod.NewNat().Exp(x, exp, mod)
	}
}

func BenchmarkSignShare_2048_3of5(b *testing.B) { benchSignShare(b, 2048, 3, 5) }
func BenchmarkSignShare_3072_3of5(b *testing.B) { benchSignShare(b, 3072, 3, 5) }
func BenchmarkSignShare_4096_3of5(b *testing.B) { benchSignShare(b, 4096, 3, 5) }

func benchSignShare(b *testing.B, bits, k, n int) {
	_, pk, shares := dealt(b, bits, k, n)
	em := encode(b, pk, scheme.SHA256RSAPKCS, []byte("bench"))
	for b.Loop() {
		if _, err := SignShare(pk, shares[0], em); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkProve_2048_3of5(b *testing.B) {
	_, pk, shares := dealt(b, 2048, 3, 5)
	em := encode(b, pk, scheme.SHA256RSAPKCS, []byte("bench"))
	ss, _ := SignShare(pk, shares[0], em)
	for b.Loop() {
		if _, err := Prove(rand.Reader, pk, shares[0], em, ss); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyShare_2048_3of5(b *testing.B) {
	_, pk, shares := dealt(b, 2048, 3, 5)
	em := encode(b, pk, scheme.SHA256RSAPKCS, []byte("bench"))
	ss, _ := SignShare(pk, shares[0], em)
	p, _ := Prove(rand.Reader, pk, shares[0], em, ss)
	for b.Loop() {
		if err := VerifyShare(pk, em, ss, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCombine_2048_3of5(b *testing.B) { benchCombine(b, 2048, 3, 5) }
func BenchmarkCombine_2048_5of7(b *testing.B) { benchCombine(b, 2048, 5, 7) }

func benchCombine(b *testing.B, bits, k, n int) {
	_, pk, shares := dealt(b, bits, k, n)
	em := encode(b, pk, scheme.SHA256RSAPKCS, []byte("bench"))
	set := signWith(b, pk, shares, seq(1, k), em)
	for b.Loop() {
		if _, err := Combine(pk, em, set); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDeal_2048(b *testing.B) {
	key := testKey(b, 2048)
	for _, kn := range [][2]int{{3, 5}, {16, 32}} {
		b.Run(fmt.Sprintf("%dof%d", kn[0], kn[1]), func(b *testing.B) {
			for b.Loop() {
				if _, _, err := Deal(rand.Reader, key, kn[0], kn[1]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSignShareParallel_2048_3of5 computes shares on every P (run it with
// -cpu 1,2,...): ns/op at -cpu C times C against ns/op at -cpu 1 tells whether
// the host's cores really compute independently (C·r in the threshold limit
// assumes they do; hyperthreads or a busy hypervisor break it).
func BenchmarkSignShareParallel_2048_3of5(b *testing.B) {
	_, pk, shares := dealt(b, 2048, 3, 5)
	em := encode(b, pk, scheme.SHA256RSAPKCS, []byte("bench"))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := SignShare(pk, shares[0], em); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
