package shoup

import (
	"errors"
	"fmt"
	"math/big"

	"filippo.io/bigmod"
)

// maxSubsets bounds how many k-subsets CombineAny tries before giving up.
const maxSubsets = 256

// Combine combines the first k shares into a signature on em and verifies it with the public
// exponent. It returns ErrBadSignature when the result does not verify (some share is wrong),
// and never an unverified signature. Shares must have distinct indices in 1..n.
func Combine(pk *PublicKey, em []byte, shares []*SigShare) ([]byte, error) {
	pre, err := pk.precompute()
	if err != nil {
		return nil, err
	}
	x, err := messageRep(pk, pre, em)
	if err != nil {
		return nil, err
	}
	if err := checkSigShares(pk, shares); err != nil {
		return nil, err
	}
	return combine(pk, pre, x, shares[:pk.K])
}

func checkSigShares(pk *PublicKey, shares []*SigShare) error {
	if len(shares) < pk.K {
		return fmt.Errorf("%w: have %d, need %d", ErrNotEnoughShares, len(shares), pk.K)
	}
	seen := make(map[int]bool, len(shares))
	for _, s := range shares {
		if s == nil || s.Index < 1 || s.Index > pk.L {
			return fmt.Errorf("%w: need 1..%d", ErrInvalidIndex, pk.L)
		}
		if seen[s.Index] {
			return fmt.Errorf("%w: %d", ErrDuplicateIndex, s.Index)
		}
		seen[s.Index] = true
		if s.X == nil || s.X.Sign() <= 0 || s.X.Cmp(pk.N) >= 0 {
			return fmt.Errorf("%w: node %d's share is out of range", ErrBadShare, s.Index)
		}
	}
	return nil
}

func combine(pk *PublicKey, pre *precomputed, x *big.Int, set []*SigShare) ([]byte, error) {
	// w = Π x_j^(2λ_j) with λ_j = Δ · Π_{j'≠j} j'/(j'-j), an integer; then y = w^a · x^b with
	// a·e' + b·e = 1, e' = 4Δ². Every exponent is small and every value public, so this runs on
	// bigmod's Montgomery arithmetic with variable-time short exponents. The costly step is the
	// modular inverse, so factors with negative exponents are collected in a denominator that is
	// inverted once at the end.
	ePrime := new(big.Int).Mul(pre.delta, pre.delta)
	ePrime.Lsh(ePrime, 2)
	a, b := new(big.Int), new(big.Int)
	if new(big.Int).GCD(a, b, ePrime, big.NewInt(int64(pk.E))).Cmp(big.NewInt(1)) != 0 {
		return nil, fmt.Errorf("%w: gcd(e, 4Δ²) != 1", ErrInvalidParams)
	}
	m := pre.mod
	wn, err := bigmod.NewNat().SetBytes([]byte{1}, m)
	if err != nil {
		return nil, err
	}
	wd, _ := bigmod.NewNat().SetBytes([]byte{1}, m)
	lambdaNum, lambdaDen, t := new(big.Int), new(big.Int), new(big.Int)
	for _, sj := range set {
		lambdaNum.Set(pre.delta)
		lambdaDen.SetInt64(1)
		for _, sk := range set {
			if sk.Index == sj.Index {
				continue
			}
			lambdaNum.Mul(lambdaNum, t.SetInt64(int64(sk.Index)))
			lambdaDen.Mul(lambdaDen, t.SetInt64(int64(sk.Index-sj.Index)))
		}
		exp := new(big.Int).Quo(lambdaNum, lambdaDen) // exact
		exp.Lsh(exp, 1)
		acc := wn
		if exp.Sign() < 0 {
			acc = wd
		}
		xj, err := natOf(sj.X, pre)
		if err != nil {
			return nil, fmt.Errorf("%w: node %d's share is out of range", ErrBadShare, sj.Index)
		}
		acc.Mul(expPublic(xj, exp.Abs(exp), m), m)
	}
	// y = w^a · x^b: exactly one of a, b is negative; gather numerator and denominator.
	absA := new(big.Int).Abs(a)
	num, den := expPublic(wn, absA, m), expPublic(wd, absA, m)
	if a.Sign() < 0 {
		num, den = den, num
	}
	xn, err := natOf(x, pre)
	if err != nil {
		return nil, err
	}
	if xb := expPublic(xn, new(big.Int).Abs(b), m); b.Sign() >= 0 {
		num.Mul(xb, m)
	} else {
		den.Mul(xb, m)
	}
	// math/big's inverse is several times faster than bigmod's constant-time one.
	inv := new(big.Int).ModInverse(new(big.Int).SetBytes(den.Bytes(m)), pk.N)
	if inv == nil {
		return nil, ErrBadSignature
	}
	y := new(big.Int).SetBytes(num.Bytes(m))
	y.Mul(y, inv).Mod(y, pk.N)
	if new(big.Int).Exp(y, big.NewInt(int64(pk.E)), pk.N).Cmp(x) != 0 {
		return nil, ErrBadSignature
	}
	return y.FillBytes(make([]byte, pre.size)), nil
}

func natOf(v *big.Int, pre *precomputed) (*bigmod.Nat, error) {
	return bigmod.NewNat().SetBytes(v.FillBytes(make([]byte, pre.size)), pre.mod)
}

// expPublic returns base^exp mod m for a public, non-negative exponent.
func expPublic(base *bigmod.Nat, exp *big.Int, m *bigmod.Modulus) *bigmod.Nat {
	if exp.IsUint64() && exp.Uint64() <= uint64(^uint(0)) {
		return bigmod.NewNat().ExpShortVarTime(base, uint(exp.Uint64()), m)
	}
	return bigmod.NewNat().Exp(base, exp.Bytes(), m)
}

// CombineAny combines like Combine, but when the first k shares give a bad signature and more
// than k shares are at hand, it tries other k-subsets (at most 256) and returns the first
// signature that verifies. It is the fallback when shares come without proofs.
func CombineAny(pk *PublicKey, em []byte, shares []*SigShare) ([]byte, error) {
	sig, err := Combine(pk, em, shares)
	if err == nil || !errors.Is(err, ErrBadSignature) || len(shares) == pk.K {
		return sig, err
	}
	pre, _ := pk.precompute()
	x, _ := messageRep(pk, pre, em)
	idx := make([]int, pk.K)
	for i := range idx {
		idx[i] = i
	}
	set := make([]*SigShare, pk.K)
	for tries := 0; tries < maxSubsets && nextSubset(idx, len(shares)); tries++ {
		for i, j := range idx {
			set[i] = shares[j]
		}
		if sig, err := combine(pk, pre, x, set); err == nil {
			return sig, nil
		}
	}
	return nil, ErrBadSignature
}

// nextSubset advances idx, a sorted k-subset of 0..n-1, to the next one in lexicographic order.
func nextSubset(idx []int, n int) bool {
	k := len(idx)
	for i := k - 1; i >= 0; i-- {
		if idx[i] < n-k+i {
			idx[i]++
			for j := i + 1; j < k; j++ {
				idx[j] = idx[j-1] + 1
			}
			return true
		}
	}
	return false
}

// Verify checks an RSA signature sig on the encoded message em with the public key.
func Verify(pk *PublicKey, em, sig []byte) error {
	pre, err := pk.precompute()
	if err != nil {
		return err
	}
	x, err := messageRep(pk, pre, em)
	if err != nil {
		return err
	}
	if len(sig) != pre.size {
		return ErrBadSignature
	}
	y := new(big.Int).SetBytes(sig)
	if y.Cmp(pk.N) >= 0 || new(big.Int).Exp(y, big.NewInt(int64(pk.E)), pk.N).Cmp(x) != 0 {
		return ErrBadSignature
	}
	return nil
}
