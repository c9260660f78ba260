// Package keygen makes Shoup threshold RSA keys: the search for safe primes and key generation
// (GenerateKey), and the scheme.Dealer that generates and splits a key (Dealer). It is apart from
// package shoup so that what signs and verifies — the PKCS#11 module, the client — does not link
// the code that makes whole keys: `go list -deps ./p11shim` names neither it nor the dealer.
package keygen

import (
	"context"
	"fmt"
	"io"

	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/shoup"
)

// GenerateKey generates a key with safe primes and a modulus of exactly bits bits (bits even,
// shoup.MinBits..shoup.MaxBits). e is the public exponent (0 means shoup.DefaultE); it must be an odd prime.
// progress, if not nil, receives the candidates tested so far for the prime being searched.
func GenerateKey(ctx context.Context, rand io.Reader, bits, e int, progress func(tested int)) (*shoup.Key, error) {
	if bits < shoup.MinBits || bits > shoup.MaxBits || bits%2 != 0 {
		return nil, fmt.Errorf("%w: modulus of %d bits (want an even size from %d to %d)", shoup.ErrInvalidParams, bits, shoup.MinBits, shoup.MaxBits)
	}
	if e == 0 {
		e = shoup.DefaultE
	}
	if err := shoup.CheckExponent(e); err != nil {
		return nil, err
	}
	for {
		p, err := GenerateSafePrime(ctx, rand, bits/2, progress)
		if err != nil {
			return nil, err
		}
		q, err := GenerateSafePrime(ctx, rand, bits/2, progress)
		if err != nil {
			return nil, err
		}
		k, err := shoup.NewKeyFromPrimes(p, q, e)
		if err == nil && k.N.BitLen() == bits {
			return k, nil
		}
		// p == q or e divides p'q' (both astronomically rare): draw again.
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// Dealer is the scheme.Dealer of Shoup RSA: it generates a key with safe primes and splits it.
// The dealer service uses GenerateKey (through its pool of primes), shoup.NewKeyFromPrimes and
// shoup.Deal itself, for its pool and for imports.
type Dealer struct{}

var _ scheme.Dealer = Dealer{}

// Deal implements scheme.Dealer.
func (Dealer) Deal(ctx context.Context, rand io.Reader, p scheme.KeyParams) (scheme.PublicKey, []scheme.SecretShare, error) {
	key, err := GenerateKey(ctx, rand, p.Bits, p.E, nil)
	if err != nil {
		return nil, nil, err
	}
	defer key.Wipe()
	pk, shares, err := shoup.Deal(rand, key, p.K, p.N)
	if err != nil {
		return nil, nil, err
	}
	out := make([]scheme.SecretShare, len(shares))
	for i, s := range shares {
		out[i] = shoup.WrapShare(s)
	}
	return pk, out, nil
}
