package frost

import (
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"io"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// This file is the ciphersuite FROST(Ed25519, SHA-512) of RFC 9591, section 6.1, on
// filippo.io/edwards25519: the group's (de)serialisation with every input check the RFC asks
// for, and H1..H5.

// contextString is the ciphersuite's context string (section 6.1).
const contextString = "FROST-ED25519-SHA512-v1"

// ElementSize and ScalarSize are Ne and Ns.
const (
	ElementSize = 32
	ScalarSize  = 32
)

// orderMinusOne is L-1, little-endian: [L]P is computed as [L-1]P + P because L itself is not a
// canonical scalar.
var orderMinusOne = mustScalar([]byte{
	0xec, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10})

func mustScalar(b []byte) *edwards25519.Scalar {
	s, err := edwards25519.NewScalar().SetCanonicalBytes(b)
	if err != nil {
		panic(err)
	}
	return s
}

var (
	identity  = edwards25519.NewIdentityPoint()
	generator = edwards25519.NewGeneratorPoint()
	zero      = edwards25519.NewScalar()
)

// DecodeElement is DeserializeElement of section 6.1: it accepts exactly the canonical RFC 8032
// encodings (filippo.io/edwards25519's SetBytes alone also accepts non-canonical y ≥ p and a
// negative zero x: canonical rejects those), and rejects the identity and points outside the
// prime-order subgroup ([L]P ≠ identity). All inputs are public; the checks run in variable
// time.
func DecodeElement(b []byte) (*edwards25519.Point, error) {
	if len(b) != ElementSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrInvalidElement, len(b))
	}
	p, err := new(edwards25519.Point).SetBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%w: not a point", ErrInvalidElement)
	}
	if !canonical(b, p) {
		return nil, fmt.Errorf("%w: non-canonical encoding", ErrInvalidElement)
	}
	if p.Equal(identity) == 1 {
		return nil, fmt.Errorf("%w: the identity", ErrInvalidElement)
	}
	if !primeOrder(p) {
		return nil, fmt.Errorf("%w: not in the prime-order subgroup", ErrInvalidElement)
	}
	return p, nil
}

// canonical reports whether b, which SetBytes decoded to p, is p's canonical encoding, as
// comparing b with p.Bytes() would, without the field inversion p.Bytes costs. SetBytes reduces
// y modulo p = 2^255-19 and takes the sign bit as x's sign unless x = 0, so the re-encoding
// differs from b exactly when y ≥ p, or when x = 0 and the sign bit is set (RFC 8032, 5.1.3,
// steps 1 and 4). FuzzDecodeElement checks the equivalence with the round trip.
func canonical(b []byte, p *edwards25519.Point) bool {
	// y ≥ p: the 255-bit y is 2^255-19 .. 2^255-1, that is ed..ff ff..ff 7f little-endian.
	if b[31]&0x7f == 0x7f && b[0] >= 0xed {
		high := true
		for _, v := range b[1:31] {
			if v != 0xff {
				high = false
				break
			}
		}
		if high {
			return false
		}
	}
	if b[31]&0x80 != 0 {
		// x = X/Z is zero exactly when X is.
		X, _, _, _ := p.ExtendedCoordinates()
		if X.Equal(new(field.Element)) == 1 {
			return false
		}
	}
	return true
}

// primeOrder reports whether [L]p is the identity. This is the exact test of membership in the
// prime-order subgroup: E(F_p) is cyclic of order 8·L, so a point is in the subgroup of order L
// exactly when [L] kills it. It costs one variable-time scalar multiplication, about 253
// doublings. No cheaper exact test is used: any scalar that kills exactly the subgroup of order L
// is a multiple of L, so no shorter scalar will do; and a batched test over a random linear
// combination, [L](Σ r_i P_i) = O, sees each torsion component only through r_i mod 8 (the
// torsion group has 8 elements), so a point with a component of order 2 passes whenever its r_i
// is even, with probability 1/2 whatever the length of r_i: that is no check. Ristretto255's decoding
// (RFC 9496) validates encodings of a quotient group, not arbitrary Edwards points, so it does
// not apply to RFC 9591's elements. What is saved instead
// is the number of checks: each element is checked once per process (ParseCommitments, and
// Participant.Sign checks every entry but its own).
func primeOrder(p *edwards25519.Point) bool {
	q := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(orderMinusOne, p, zero)
	q.Add(q, p)
	return q.Equal(identity) == 1
}

// encodeElement is SerializeElement; it refuses the identity, as the RFC's does.
func encodeElement(p *edwards25519.Point) ([]byte, error) {
	if p.Equal(identity) == 1 {
		return nil, fmt.Errorf("%w: the identity", ErrInvalidElement)
	}
	return p.Bytes(), nil
}

// DecodeScalar is DeserializeScalar: a canonical little-endian scalar, < L.
func DecodeScalar(b []byte) (*edwards25519.Scalar, error) {
	if len(b) != ScalarSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrInvalidScalar, len(b))
	}
	s, err := edwards25519.NewScalar().SetCanonicalBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%w: not below L", ErrInvalidScalar)
	}
	return s, nil
}

// identifierScalar is an identifier (1..MaxPlayers) as a scalar.
func identifierScalar(id int) *edwards25519.Scalar {
	var b [ScalarSize]byte
	binary.LittleEndian.PutUint16(b[:], uint16(id))
	return mustScalar(b[:])
}

func hashToScalar(parts ...[]byte) *edwards25519.Scalar {
	h := sha512.New()
	for _, p := range parts {
		h.Write(p)
	}
	s, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
	if err != nil {
		panic(err) // SHA-512 is 64 bytes
	}
	return s
}

// h1 .. h5 are the ciphersuite's hash functions (section 6.1). H2 has no context string, so
// that the challenge is RFC 8032's and the signature verifies as Ed25519.
func h1(m []byte) *edwards25519.Scalar        { return hashToScalar([]byte(contextString+"rho"), m) }
func h2(parts ...[]byte) *edwards25519.Scalar { return hashToScalar(parts...) }
func h3(m ...[]byte) *edwards25519.Scalar {
	return hashToScalar(append([][]byte{[]byte(contextString + "nonce")}, m...)...)
}
func h4(m []byte) []byte { return hashBytes([]byte(contextString+"msg"), m) }
func h5(m []byte) []byte { return hashBytes([]byte(contextString+"com"), m) }

func hashBytes(parts ...[]byte) []byte {
	h := sha512.New()
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// nonceGenerate is nonce_generate (section 4.1): H3(random_bytes(32) || SerializeScalar(secret)).
func nonceGenerate(rand io.Reader, secret *edwards25519.Scalar) (*edwards25519.Scalar, error) {
	var r [32]byte
	if _, err := io.ReadFull(rand, r[:]); err != nil {
		return nil, fmt.Errorf("frost: reading randomness: %w", err)
	}
	sb := secret.Bytes()
	n := h3(r[:], sb)
	clear(r[:])
	clear(sb)
	return n, nil
}
