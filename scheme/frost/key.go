package frost

import (
	"crypto"
	"crypto/ed25519"
	"fmt"

	"filippo.io/edwards25519"

	"github.com/tchsm/tchsm/scheme"
)

// PublicKey is a FROST key's public parameters: the group key Y (an Ed25519 public key) and
// the verification share Y_i = [s_i]G of each participant 1..n. It is immutable.
type PublicKey struct {
	k, n   int
	group  *edwards25519.Point
	enc    []byte // SerializeElement(Y), the Ed25519 public key
	shares []*edwards25519.Point
}

var _ scheme.PublicKey = (*PublicKey)(nil)

// NewPublicKey checks and builds a public key from k, the group key and the n verification
// shares (each 32 bytes): 1 ≤ k ≤ n ≤ MaxPlayers, every element canonical, not the identity,
// in the prime-order subgroup, and the shares on one polynomial of degree k-1 whose value at 0
// is the group key (the first k interpolate to Y and to every other share). The last check is
// what makes a key record whose shares were mixed up, or a DKG outcome two nodes disagree on,
// fail here rather than at signing.
func NewPublicKey(k int, group []byte, shares [][]byte) (*PublicKey, error) {
	n := len(shares)
	if n < 1 || n > MaxPlayers || k < 1 || k > n {
		return nil, fmt.Errorf("%w: k=%d n=%d", ErrInvalidKey, k, n)
	}
	y, err := DecodeElement(group)
	if err != nil {
		return nil, fmt.Errorf("%w: group key: %w", ErrInvalidKey, err)
	}
	pk := &PublicKey{k: k, n: n, group: y, enc: append([]byte(nil), group...)}
	for i, b := range shares {
		p, err := DecodeElement(b)
		if err != nil {
			return nil, fmt.Errorf("%w: verification share %d: %w", ErrInvalidKey, i+1, err)
		}
		pk.shares = append(pk.shares, p)
	}
	if err := pk.consistent(); err != nil {
		return nil, err
	}
	return pk, nil
}

// consistent checks that Y and every Y_j (j > k) are what Y_1..Y_k interpolate to.
func (pk *PublicKey) consistent() error {
	base := make([]int, pk.k)
	for i := range base {
		base[i] = i + 1
	}
	at := func(x int) *edwards25519.Point {
		acc := edwards25519.NewIdentityPoint()
		for _, i := range base {
			acc.Add(acc, new(edwards25519.Point).VarTimeDoubleScalarBaseMult(lagrangeAt(base, i, x), pk.shares[i-1], zero))
		}
		return acc
	}
	if at(0).Equal(pk.group) != 1 {
		return fmt.Errorf("%w: verification shares do not interpolate to the group key", ErrInvalidKey)
	}
	for j := pk.k + 1; j <= pk.n; j++ {
		if at(j).Equal(pk.shares[j-1]) != 1 {
			return fmt.Errorf("%w: verification share %d is off the polynomial", ErrInvalidKey, j)
		}
	}
	return nil
}

// lagrangeAt is the Lagrange coefficient of xi among xs, evaluated at x.
func lagrangeAt(xs []int, xi, x int) *edwards25519.Scalar {
	num := identifierScalar(1)
	den := identifierScalar(1)
	X, Xi := identifierScalar(x), identifierScalar(xi)
	for _, xj := range xs {
		if xj == xi {
			continue
		}
		Xj := identifierScalar(xj)
		num.Multiply(num, new(edwards25519.Scalar).Subtract(X, Xj))
		den.Multiply(den, new(edwards25519.Scalar).Subtract(Xi, Xj))
	}
	return num.Multiply(num, den.Invert(den))
}

// Algorithm is scheme.Ed25519FROST.
func (pk *PublicKey) Algorithm() scheme.Algorithm { return scheme.Ed25519FROST }

// Threshold returns k and n.
func (pk *PublicKey) Threshold() (k, n int) { return pk.k, pk.n }

// Bits is 256, the key length DNSSEC tools ask for (`<Algorithm length="256">`).
func (pk *PublicKey) Bits() int { return 256 }

// Public returns the ed25519.PublicKey (a copy).
func (pk *PublicKey) Public() crypto.PublicKey {
	return ed25519.PublicKey(append([]byte(nil), pk.enc...))
}

// Bytes returns the group key, 32 bytes (a copy): CKA_EC_POINT's content and the DNSKEY's.
func (pk *PublicKey) Bytes() []byte { return append([]byte(nil), pk.enc...) }

// VerificationShare returns Y_i, 32 bytes, for i in 1..n.
func (pk *PublicKey) VerificationShare(i int) ([]byte, error) {
	if i < 1 || i > pk.n {
		return nil, fmt.Errorf("%w: participant %d, need 1..%d", ErrInvalidKey, i, pk.n)
	}
	return pk.shares[i-1].Bytes(), nil
}

// Verify checks an Ed25519 signature on data; mech must be scheme.EDDSA.
func (pk *PublicKey) Verify(mech scheme.Mechanism, data, sig []byte) error {
	if mech != scheme.EDDSA {
		return fmt.Errorf("%w: %v for an Ed25519 key", scheme.ErrUnknownMechanism, mech)
	}
	if !ed25519.Verify(ed25519.PublicKey(pk.enc), data, sig) {
		return fmt.Errorf("%w: %w", scheme.ErrBadSignature, ErrBadSignature)
	}
	return nil
}

// params encoding, KeyRecord.params for algorithm Ed25519FROST:
//
//	params = Y || Y_1 || ... || Y_n
//
// each a 32-byte SerializeElement, n = the record's n, k the record's k: exactly 32·(n+1)
// bytes, no version byte (a new layout would be a new algorithm). DecodeParams checks
// everything NewPublicKey checks.

// EncodeParams returns the params bytes of pk.
func (pk *PublicKey) EncodeParams() []byte {
	out := append(make([]byte, 0, ElementSize*(pk.n+1)), pk.enc...)
	for _, y := range pk.shares {
		out = append(out, y.Bytes()...)
	}
	return out
}

// DecodeParams decodes a record's params for threshold k of n.
func DecodeParams(k, n int, b []byte) (*PublicKey, error) {
	if n < 1 || n > MaxPlayers {
		return nil, fmt.Errorf("%w: n=%d", ErrInvalidKey, n)
	}
	if len(b) != ElementSize*(n+1) {
		return nil, fmt.Errorf("%w: params of %d bytes for n=%d, want %d", ErrInvalidEncoding, len(b), n, ElementSize*(n+1))
	}
	shares := make([][]byte, n)
	for i := range shares {
		shares[i] = b[ElementSize*(i+1) : ElementSize*(i+2)]
	}
	return NewPublicKey(k, b[:ElementSize], shares)
}

// SecretShare is participant Index's share s_i of the group secret. Never log it; Wipe it when
// done.
type SecretShare struct {
	index int
	s     edwards25519.Scalar
}

var _ scheme.SecretShare = (*SecretShare)(nil)

// NewSecretShare decodes a share: a canonical, non-zero 32-byte scalar (little-endian, as
// SerializeScalar writes it), for participant index.
func NewSecretShare(index int, b []byte) (*SecretShare, error) {
	if index < 1 || index > MaxPlayers {
		return nil, fmt.Errorf("%w: index %d", ErrInvalidScalar, index)
	}
	s, err := DecodeScalar(b)
	if err != nil {
		return nil, err
	}
	if s.Equal(zero) == 1 {
		return nil, fmt.Errorf("%w: zero share", ErrInvalidScalar)
	}
	return &SecretShare{index: index, s: *s}, nil
}

// Index is the participant's identifier, 1..n.
func (s *SecretShare) Index() int { return s.index }

// Bytes returns SerializeScalar(s_i), 32 bytes (a copy the caller wipes).
func (s *SecretShare) Bytes() []byte { return s.s.Bytes() }

// Wipe overwrites the share with zero.
func (s *SecretShare) Wipe() { s.s = edwards25519.Scalar{} }

// Check reports whether [s_i]G is pk's verification share Y_i (constant time in s_i).
func (s *SecretShare) Check(pk *PublicKey) error {
	if s.index < 1 || s.index > pk.n {
		return fmt.Errorf("%w: share of participant %d, key of %d", scheme.ErrInvalidShare, s.index, pk.n)
	}
	if new(edwards25519.Point).ScalarBaseMult(&s.s).Equal(pk.shares[s.index-1]) != 1 {
		return fmt.Errorf("%w: share does not match its verification share", scheme.ErrInvalidShare)
	}
	return nil
}
