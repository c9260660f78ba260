package ecdsahm

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"io"

	"filippo.io/nistec"
)

// This file is the P-256 group on filippo.io/nistec (constant time; kyber's P-256 is variable
// time): the strict point encoding, scalar multiplications, and the opening "in the exponent"
// of a degree-t sharing with error detection, which the presigning protocol uses for R = k·G
// and W = a·R.

// PointSize is the length of a point's encoding: SEC 1 uncompressed, 0x04 || X || Y, 65 bytes
// (what CKA_EC_POINT carries inside its DER OCTET STRING). The point at infinity has no
// encoding of that length, so it never decodes.
const PointSize = 65

// DecodePoint decodes a 65-byte uncompressed point, which must be on the curve (nistec checks
// the curve equation and the coordinates' range). The input is public; the checks are those
// of nistec's SetBytes.
func DecodePoint(b []byte) (*nistec.P256Point, error) {
	if len(b) != PointSize || b[0] != 4 {
		return nil, fmt.Errorf("%w: not a 65-byte uncompressed point", ErrInvalidPoint)
	}
	p, err := nistec.NewP256Point().SetBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%w: not on the curve", ErrInvalidPoint)
	}
	return p, nil
}

// encodePoint returns p's 65-byte encoding; p must not be the point at infinity.
func encodePoint(p *nistec.P256Point) ([]byte, error) {
	if p.IsInfinity() == 1 {
		return nil, fmt.Errorf("%w: the point at infinity", ErrInvalidPoint)
	}
	return p.Bytes(), nil
}

// baseMul returns s·G (constant time).
func baseMul(s *Scalar) *nistec.P256Point {
	p, err := nistec.NewP256Point().ScalarBaseMult(s.Bytes())
	if err != nil {
		panic(err) // 32 bytes always
	}
	return p
}

// mul returns s·P (constant time).
func mul(p *nistec.P256Point, s *Scalar) *nistec.P256Point {
	q, err := nistec.NewP256Point().ScalarMult(p, s.Bytes())
	if err != nil {
		panic(err)
	}
	return q
}

func pointEqual(p, q *nistec.P256Point) bool { return p.Equal(q) == 1 }

// xScalar returns r = x(R) mod n, ECDSA's conversion of a point to a scalar, and false for the
// point at infinity.
func xScalar(p *nistec.P256Point) (*Scalar, bool) {
	x, err := p.BytesX()
	if err != nil {
		return nil, false
	}
	r, err := scalarReduce(x)
	if err != nil {
		return nil, false
	}
	return r, true
}

// openInExponent opens a degree-t sharing in the exponent with error detection: pts[a] is
// participant set[a]'s share P_i = s_i·G of a secret s, for a set of exactly 2t+1 distinct
// indices (t ≥ 1). It returns s·G, or ErrInconsistent when the 2t+1 points do not lie on one
// polynomial of degree t (in the exponent).
//
// With at most t of the 2t+1 corrupt, the t+1 honest points determine the polynomial, so a
// view that passes the check yields the honest value whatever the corrupt participants sent,
// and sent to whom: no broadcast channel is needed. This is DJNPØ20's opening with error
// detection for degree-t sharings among 2t+1 parties, the property the protocol builds on.
func openInExponent(rnd io.Reader, set []int, pts []*nistec.P256Point, t int) (*nistec.P256Point, error) {
	if t < 1 || len(set) != 2*t+1 || len(pts) != len(set) {
		return nil, fmt.Errorf("%w: opening %d points of a degree-%d sharing", ErrInvalidParams, len(pts), t)
	}
	if err := checkDegree(rnd, set, pts, t); err != nil {
		return nil, err
	}
	return interpolate(set[:t+1], pts[:t+1], 0), nil
}

// checkDegree reports ErrInconsistent unless the points pts[a] at the distinct indices idx[a]
// (more than t+1 of them) lie on one polynomial of degree t in the exponent.
//
// The check is a random linear combination of the parity equations "interpolating the first
// t+1 points to index m gives P_m", one for each other index m: with ρ_m uniform and secret to
// this verifier, an inconsistent set passes with probability at most 1/n. It costs one scalar
// multiplication per point instead of (t+1) per equation.
func checkDegree(rnd io.Reader, idx []int, pts []*nistec.P256Point, t int) error {
	if t < 0 || len(idx) <= t+1 || len(pts) != len(idx) {
		return fmt.Errorf("%w: degree check of %d points, degree %d", ErrInvalidParams, len(pts), t)
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	base, rest := idx[:t+1], idx[t+1:]
	// coef[a] = Σ_m ρ_m λ_a(m) for the base points; -ρ_m for the others.
	coef := make([]*Scalar, len(idx))
	for a := range base {
		coef[a] = NewScalar()
	}
	for b, m := range rest {
		rho, err := RandomScalar(rnd)
		if err != nil {
			return err
		}
		lm := lagrangeAt(base, m)
		for a := range base {
			coef[a].Add(coef[a], NewScalar().Mul(rho, lm[a]))
		}
		coef[t+1+b] = NewScalar().Neg(rho)
	}
	check := nistec.NewP256Point()
	for a := range idx {
		check.Add(check, mul(pts[a], coef[a]))
	}
	if check.IsInfinity() != 1 {
		return fmt.Errorf("%w: the points are not on one degree-%d polynomial", ErrInconsistent, t)
	}
	return nil
}

// interpolate returns Σ λ_a(at)·pts[a] over the distinct indices idx.
func interpolate(idx []int, pts []*nistec.P256Point, at int) *nistec.P256Point {
	l := lagrangeAt(idx, at)
	out := nistec.NewP256Point()
	for a := range idx {
		out.Add(out, mul(pts[a], l[a]))
	}
	return out
}

// ctEqual compares two byte strings in constant time (hashes, statements).
func ctEqual(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
