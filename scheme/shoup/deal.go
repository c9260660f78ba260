package shoup

import (
	"crypto/rsa"
	"fmt"
	"io"
	"math/big"
	"sync"

	"filippo.io/bigmod"

	"github.com/tchsm/tchsm/internal/modexp"
)

// PublicKey is everything about a dealt key that is not secret: the RSA public key, the
// threshold K, the number of nodes L (Shoup's l, tchsm's n), and the verification keys.
type PublicKey struct {
	N    *big.Int
	E    int
	K, L int
	// V generates the squares modulo N; VK[i-1] = V^(s_i) is node i's verification key.
	V  *big.Int
	VK []*big.Int
	// Safe reports whether the key was made from safe primes (KeyRecord.safe_primes): without
	// them the share proofs are not sound, and a liar can only be found by trying subsets.
	Safe bool

	once sync.Once
	pre  *precomputed
	perr error
}

type precomputed struct {
	mod   *bigmod.Modulus
	ct    *modexp.Modulus // the same modulus, for the share's constant-time exponentiation
	delta *big.Int        // n!
	size  int
}

// KeyShare is node Index's secret share s_i, big-endian, exactly Size() bytes long so that its
// length says nothing about its value.
type KeyShare struct {
	Index int
	S     []byte
}

// Wipe zeroes the share.
func (s *KeyShare) Wipe() { clear(s.S) }

// Size returns the modulus length in bytes.
func (pk *PublicKey) Size() int { return (pk.N.BitLen() + 7) / 8 }

// RSA returns the ordinary RSA public key.
func (pk *PublicKey) RSA() *rsa.PublicKey { return &rsa.PublicKey{N: new(big.Int).Set(pk.N), E: pk.E} }

// Validate checks a public key, for instance one decoded from a message, for consistency.
func (pk *PublicKey) Validate() error {
	_, err := pk.precompute()
	return err
}

func (pk *PublicKey) precompute() (*precomputed, error) {
	pk.once.Do(func() { pk.pre, pk.perr = pk.check() })
	return pk.pre, pk.perr
}

func (pk *PublicKey) check() (*precomputed, error) {
	if pk.N == nil || pk.N.Sign() <= 0 || pk.N.Bit(0) == 0 {
		return nil, fmt.Errorf("%w: modulus missing or even", ErrInvalidKey)
	}
	if b := pk.N.BitLen(); b < MinBits || b > MaxBits {
		return nil, fmt.Errorf("%w: modulus of %d bits", ErrInvalidKey, b)
	}
	if pk.L < 1 || pk.L > MaxPlayers || pk.K < 1 || pk.K > pk.L {
		return nil, fmt.Errorf("%w: k=%d, n=%d", ErrInvalidParams, pk.K, pk.L)
	}
	if err := CheckExponent(pk.E); err != nil {
		return nil, err
	}
	if pk.E <= pk.L {
		return nil, fmt.Errorf("%w: e=%d must be larger than n=%d", ErrInvalidParams, pk.E, pk.L)
	}
	if len(pk.VK) != pk.L {
		return nil, fmt.Errorf("%w: %d verification keys for n=%d", ErrInvalidKey, len(pk.VK), pk.L)
	}
	for _, v := range append([]*big.Int{pk.V}, pk.VK...) {
		if v == nil || v.Sign() <= 0 || v.Cmp(pk.N) >= 0 {
			return nil, fmt.Errorf("%w: verification key out of range", ErrInvalidKey)
		}
	}
	ct, err := modexp.NewModulus(pk.N.Bytes())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return &precomputed{mod: ct.Bigmod(), ct: ct, delta: factorial(pk.L), size: pk.Size()}, nil
}

func factorial(n int) *big.Int {
	f := big.NewInt(1)
	for i := 2; i <= n; i++ {
		f.Mul(f, big.NewInt(int64(i)))
	}
	return f
}

// Deal splits key into n shares, any k of which can sign. It checks 1 <= k <= n <= MaxPlayers
// and that e is larger than n (so that gcd(e, 4Δ²) = 1).
func Deal(rand io.Reader, key *Key, k, n int) (*PublicKey, []*KeyShare, error) {
	if key == nil || key.d == nil || key.m == nil {
		return nil, nil, fmt.Errorf("%w: key missing or wiped", ErrInvalidKey)
	}
	if n < 1 || n > MaxPlayers || k < 1 || k > n {
		return nil, nil, fmt.Errorf("%w: k=%d, n=%d (want 1 <= k <= n <= %d)", ErrInvalidParams, k, n, MaxPlayers)
	}
	if key.E <= n {
		return nil, nil, fmt.Errorf("%w: e=%d must be larger than n=%d", ErrInvalidParams, key.E, n)
	}
	m := key.m
	coeffs := make([]*big.Int, k)
	coeffs[0] = key.d
	defer func() {
		for _, c := range coeffs[1:] {
			wipeInt(c)
		}
	}()
	for i := 1; i < k; i++ {
		c, err := randInt(rand, m)
		if err != nil {
			return nil, nil, err
		}
		coeffs[i] = c
	}
	// v: a random square; for safe primes it generates the squares with overwhelming probability.
	r, err := randUnit(rand, key.N)
	if err != nil {
		return nil, nil, err
	}
	pk := &PublicKey{N: new(big.Int).Set(key.N), E: key.E, K: k, L: n, V: r.Mul(r, r).Mod(r, key.N), Safe: key.Safe}
	size := pk.Size()
	shares := make([]*KeyShare, n)
	s := new(big.Int)
	for i := 1; i <= n; i++ {
		// Horner: s = f(i) mod m.
		s.SetInt64(0)
		x := big.NewInt(int64(i))
		for j := k - 1; j >= 0; j-- {
			s.Mul(s, x).Add(s, coeffs[j]).Mod(s, m)
		}
		pk.VK = append(pk.VK, new(big.Int).Exp(pk.V, s, pk.N))
		shares[i-1] = &KeyShare{Index: i, S: s.FillBytes(make([]byte, size))}
	}
	wipeInt(s)
	if err := pk.Validate(); err != nil {
		return nil, nil, err
	}
	return pk, shares, nil
}

// randInt returns a uniform integer in [0, max).
func randInt(rand io.Reader, max *big.Int) (*big.Int, error) {
	buf := make([]byte, (max.BitLen()+7)/8+16)
	// 128 extra bits make the bias of the reduction negligible (below 2^-128).
	if _, err := io.ReadFull(rand, buf); err != nil {
		return nil, fmt.Errorf("shoup: reading randomness: %w", err)
	}
	x := new(big.Int).SetBytes(buf)
	clear(buf)
	return x.Mod(x, max), nil
}

// randUnit returns a uniform element of Z_N^*.
func randUnit(rand io.Reader, n *big.Int) (*big.Int, error) {
	g := new(big.Int)
	for {
		x, err := randInt(rand, n)
		if err != nil {
			return nil, err
		}
		if x.Sign() > 0 && g.GCD(nil, nil, x, n).Cmp(big.NewInt(1)) == 0 {
			return x, nil
		}
	}
}
