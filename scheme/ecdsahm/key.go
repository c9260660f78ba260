package ecdsahm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"fmt"

	"filippo.io/nistec"
)

// PublicKey is a key's public parameters: n participants, threshold t (any t+1 shares determine
// the key; t learn nothing; presigning and signing need exactly 2t+1 participants), the public
// key Y = x·G, and the verification shares X_j = x_j·G of participants 1..n. Immutable.
type PublicKey struct {
	n, t int
	y    *nistec.P256Point
	xs   []*nistec.P256Point
	enc  []byte
	pub  *ecdsa.PublicKey
}

// checkParams checks n and t: 1 ≤ t, 2t+1 ≤ n ≤ MaxPlayers.
func checkParams(n, t int) error {
	if t < 1 || 2*t+1 > n || n > MaxPlayers {
		return fmt.Errorf("%w: n=%d t=%d (need 1 ≤ t and 2t+1 ≤ n ≤ %d)", ErrInvalidParams, n, t, MaxPlayers)
	}
	return nil
}

// N returns the number of participants, T the degree of the key's sharing, Signers 2t+1: the
// exact number of participants of a presigning and of a signature.
func (pk *PublicKey) N() int       { return pk.n }
func (pk *PublicKey) T() int       { return pk.t }
func (pk *PublicKey) Signers() int { return 2*pk.t + 1 }

// Public returns the key as a crypto/ecdsa public key (P-256).
func (pk *PublicKey) Public() *ecdsa.PublicKey { return pk.pub }

// Point returns Y's 65-byte uncompressed encoding (CKA_EC_POINT's content).
func (pk *PublicKey) Point() []byte { return pk.y.Bytes() }

// VerificationShare returns X_j = x_j·G's encoding.
func (pk *PublicKey) VerificationShare(j int) ([]byte, error) {
	if j < 1 || j > pk.n {
		return nil, fmt.Errorf("%w: participant %d of %d", ErrInvalidParams, j, pk.n)
	}
	return pk.xs[j-1].Bytes(), nil
}

// Equal reports whether two public keys are the same (every participant of a key generation
// must have computed the same one: the client compares their endorsements).
func (pk *PublicKey) Equal(o *PublicKey) bool { return o != nil && string(pk.enc) == string(o.enc) }

// keyVersion is the first byte of a public key's encoding.
const keyVersion = 1

// Marshal returns the key's encoding (for the key record):
//
//	version:u8 (1) || n:u8 || t:u8 || Y:65 || X_1:65 || … || X_n:65
func (pk *PublicKey) Marshal() []byte { return append([]byte(nil), pk.enc...) }

// newPublicKey checks the verification shares against Y (they must lie on one polynomial of
// degree t whose value at 0 is Y) and builds the key.
func newPublicKey(n, t int, y *nistec.P256Point, xs []*nistec.P256Point) (*PublicKey, error) {
	if err := checkParams(n, t); err != nil {
		return nil, err
	}
	if len(xs) != n {
		return nil, fmt.Errorf("%w: %d verification shares for n=%d", ErrInvalidEncoding, len(xs), n)
	}
	if y.IsInfinity() == 1 {
		return nil, fmt.Errorf("%w: the public key is the point at infinity", ErrInvalidPoint)
	}
	idx := make([]int, 0, n+1)
	pts := make([]*nistec.P256Point, 0, n+1)
	for j := 1; j <= n; j++ {
		if xs[j-1].IsInfinity() == 1 {
			return nil, fmt.Errorf("%w: verification share %d is the point at infinity", ErrInvalidPoint, j)
		}
		idx, pts = append(idx, j), append(pts, xs[j-1])
	}
	idx, pts = append(idx, 0), append(pts, y)
	if err := checkDegree(nil, idx, pts, t); err != nil {
		return nil, fmt.Errorf("%w: verification shares do not match the public key: %w", ErrInvalidEncoding, err)
	}
	enc := []byte{keyVersion, byte(n), byte(t)}
	enc = append(enc, y.Bytes()...)
	for _, x := range xs {
		enc = append(enc, x.Bytes()...)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), y.Bytes())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidPoint, err)
	}
	return &PublicKey{n: n, t: t, y: y, xs: xs, enc: enc, pub: pub}, nil
}

// DecodePublicKey decodes and checks a key's encoding (Marshal): the form, every point, and
// that the verification shares are shares of Y.
func DecodePublicKey(b []byte) (*PublicKey, error) {
	if len(b) < 3 || b[0] != keyVersion {
		return nil, fmt.Errorf("%w: public key: version", ErrInvalidEncoding)
	}
	n, t := int(b[1]), int(b[2])
	if err := checkParams(n, t); err != nil {
		return nil, err
	}
	if len(b) != 3+PointSize*(n+1) {
		return nil, fmt.Errorf("%w: public key: %d bytes for n=%d", ErrInvalidEncoding, len(b), n)
	}
	y, err := DecodePoint(b[3 : 3+PointSize])
	if err != nil {
		return nil, err
	}
	xs := make([]*nistec.P256Point, n)
	for j := range xs {
		off := 3 + PointSize*(j+1)
		if xs[j], err = DecodePoint(b[off : off+PointSize]); err != nil {
			return nil, err
		}
	}
	return newPublicKey(n, t, y, xs)
}

// SecretShare is participant Index's share x_i of the key. Never log one; Wipe it when done.
type SecretShare struct {
	index int
	x     *Scalar
}

// Index returns i.
func (s *SecretShare) Index() int { return s.index }

// Marshal returns x_i's 32 bytes.
func (s *SecretShare) Marshal() []byte { return s.x.Bytes() }

// Wipe overwrites the share.
func (s *SecretShare) Wipe() { s.x.Wipe() }

// ParseSecretShare decodes participant index's share (32 bytes below n, not zero).
func ParseSecretShare(index int, b []byte) (*SecretShare, error) {
	x, err := DecodeScalar(b)
	if err != nil {
		return nil, err
	}
	if x.IsZero() || index < 1 || index > MaxPlayers {
		return nil, fmt.Errorf("%w: share", ErrInvalidScalar)
	}
	return &SecretShare{index: index, x: x}, nil
}

// Check verifies x_i·G = X_i (constant time in x_i).
func (s *SecretShare) Check(pk *PublicKey) error {
	if s.index < 1 || s.index > pk.n {
		return fmt.Errorf("%w: share of participant %d for n=%d", ErrInvalidParams, s.index, pk.n)
	}
	if !pointEqual(baseMul(s.x), pk.xs[s.index-1]) {
		return fmt.Errorf("%w: the share does not match verification share %d", ErrInconsistent, s.index)
	}
	return nil
}
