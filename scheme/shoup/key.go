package shoup

import (
	"crypto/rsa"
	"fmt"
	"math/big"
)

// DefaultE is the public exponent used when none is given.
const DefaultE = 65537

// Key is a whole RSA key on the dealer, before it is dealt. Nothing but the dealer ever holds
// one; call Wipe as soon as the shares are out.
type Key struct {
	N    *big.Int
	E    int
	P, Q *big.Int
	// m is the modulus the secret exponent and the shares live in: p'q' for safe primes, λ(N)
	// for an imported key with ordinary primes.
	m *big.Int
	d *big.Int
	// Safe reports whether P and Q are safe primes; without them the proofs lose soundness.
	Safe bool
}

// CheckExponent checks a public exponent: an odd prime below 2^31 (Deal also wants it above the
// number of players).
func CheckExponent(e int) error {
	if e < 3 || e%2 == 0 || e > 1<<31-1 || !big.NewInt(int64(e)).ProbablyPrime(20) {
		return fmt.Errorf("%w: public exponent %d is not an odd prime below 2^31", ErrInvalidParams, e)
	}
	return nil
}

// NewKeyFromPrimes builds a key from two distinct safe primes, for instance from a pool of
// pre-generated ones.
func NewKeyFromPrimes(p, q *big.Int, e int) (*Key, error) {
	if err := CheckExponent(e); err != nil {
		return nil, err
	}
	if !IsSafePrime(p) || !IsSafePrime(q) {
		return nil, ErrNotSafePrime
	}
	if p.Cmp(q) == 0 {
		return nil, fmt.Errorf("%w: p equals q", ErrInvalidKey)
	}
	pp := new(big.Int).Rsh(p, 1)
	qq := new(big.Int).Rsh(q, 1)
	return newKey(p, q, e, new(big.Int).Mul(pp, qq), true)
}

// FromRSA imports an existing RSA private key with two primes. safe reports whether its primes
// are safe primes; when they are not, the shares still sign correctly but the proofs of
// correctness are no longer sound (Shoup's analysis needs the group of squares to be cyclic of
// order p'q'), so a lying node can only be found by trying subsets.
func FromRSA(priv *rsa.PrivateKey) (k *Key, safe bool, err error) {
	if priv == nil || len(priv.Primes) != 2 || priv.E < 3 {
		return nil, false, fmt.Errorf("%w: need an RSA key with exactly two primes", ErrInvalidKey)
	}
	if err := CheckExponent(priv.E); err != nil {
		return nil, false, err
	}
	p, q := priv.Primes[0], priv.Primes[1]
	if new(big.Int).Mul(p, q).Cmp(priv.N) != 0 {
		return nil, false, fmt.Errorf("%w: primes do not multiply to the modulus", ErrInvalidKey)
	}
	if bits := priv.N.BitLen(); bits < MinBits || bits > MaxBits {
		return nil, false, fmt.Errorf("%w: modulus of %d bits", ErrInvalidParams, bits)
	}
	if IsSafePrime(p) && IsSafePrime(q) {
		k, err := NewKeyFromPrimes(p, q, priv.E)
		return k, err == nil, err
	}
	one := big.NewInt(1)
	p1 := new(big.Int).Sub(p, one)
	q1 := new(big.Int).Sub(q, one)
	g := new(big.Int).GCD(nil, nil, p1, q1)
	lambda := new(big.Int).Mul(p1, q1)
	lambda.Div(lambda, g)
	k, err = newKey(p, q, priv.E, lambda, false)
	return k, false, err
}

func newKey(p, q *big.Int, e int, m *big.Int, safe bool) (*Key, error) {
	d := new(big.Int).ModInverse(big.NewInt(int64(e)), m)
	if d == nil {
		return nil, fmt.Errorf("%w: e is not invertible", ErrInvalidKey)
	}
	return &Key{
		N: new(big.Int).Mul(p, q), E: e,
		P: new(big.Int).Set(p), Q: new(big.Int).Set(q),
		m: m, d: d, Safe: safe,
	}, nil
}

// RSA returns the key as a crypto/rsa key. Only tests and the import path's self-check use it:
// a dealt key must never be reassembled.
func (k *Key) RSA() *rsa.PrivateKey {
	priv := &rsa.PrivateKey{
		PublicKey: rsa.PublicKey{N: new(big.Int).Set(k.N), E: k.E},
		Primes:    []*big.Int{new(big.Int).Set(k.P), new(big.Int).Set(k.Q)},
	}
	one := big.NewInt(1)
	phi := new(big.Int).Mul(new(big.Int).Sub(k.P, one), new(big.Int).Sub(k.Q, one))
	priv.D = new(big.Int).ModInverse(big.NewInt(int64(k.E)), phi)
	priv.Precompute()
	return priv
}

// Wipe overwrites the key's secret numbers. The key is unusable afterwards. (math/big may have
// left copies in memory it has since released; Go offers no way to reach those.)
func (k *Key) Wipe() {
	for _, x := range []*big.Int{k.P, k.Q, k.m, k.d} {
		wipeInt(x)
	}
	k.P, k.Q, k.m, k.d = nil, nil, nil, nil
}

func wipeInt(x *big.Int) {
	if x == nil {
		return
	}
	w := x.Bits()
	clear(w[:cap(w)])
	x.SetInt64(0)
}

// IsSafePrime reports whether p and (p-1)/2 are both (probably) prime.
func IsSafePrime(p *big.Int) bool {
	if p.Sign() <= 0 || p.Bit(0) == 0 || p.BitLen() < 3 {
		return false
	}
	q := new(big.Int).Rsh(p, 1)
	return q.ProbablyPrime(20) && p.ProbablyPrime(20)
}
