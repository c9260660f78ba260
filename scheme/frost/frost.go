package frost

import (
	"encoding/binary"
	"fmt"
	"io"

	"filippo.io/edwards25519"
)

// This file is RFC 9591's two-round signing protocol (sections 4 and 5) for the ciphersuite of
// group.go, as pure functions: commit, the commitment list's encoding, binding factors, the group
// commitment, the challenge, sign, verify_signature_share and aggregate.

// Commitment is one participant's round-one output: the identifier, the public commitments
// (D, E) to its hiding and binding nonces, and Nonce, the id under which the participant keeps
// the nonces (tchsm's, not part of the RFC's encoding). Hiding and Binding are decoded with
// DecodeElement when the commitment is decoded.
type Commitment struct {
	Identifier      int
	Nonce           uint64
	Hiding, Binding [ElementSize]byte

	d, e *edwards25519.Point
}

// NewCommitment decodes and checks a commitment.
func NewCommitment(id int, nonce uint64, hiding, binding []byte) (Commitment, error) {
	c := Commitment{Identifier: id, Nonce: nonce}
	if len(hiding) != ElementSize || len(binding) != ElementSize {
		return c, fmt.Errorf("%w: commitment of %d+%d bytes", ErrInvalidElement, len(hiding), len(binding))
	}
	copy(c.Hiding[:], hiding)
	copy(c.Binding[:], binding)
	return c, c.decode()
}

func (c *Commitment) decode() error {
	if c.d != nil && c.e != nil {
		return nil
	}
	d, err := DecodeElement(c.Hiding[:])
	if err != nil {
		return fmt.Errorf("hiding commitment of %d: %w", c.Identifier, err)
	}
	e, err := DecodeElement(c.Binding[:])
	if err != nil {
		return fmt.Errorf("binding commitment of %d: %w", c.Identifier, err)
	}
	c.d, c.e = d, e
	return nil
}

// Nonces are a participant's secret round-one nonces (d, e). Wipe them once used.
type Nonces struct {
	hiding, binding edwards25519.Scalar
}

// Wipe overwrites the nonces with zero.
func (n *Nonces) Wipe() {
	n.hiding = edwards25519.Scalar{}
	n.binding = edwards25519.Scalar{}
}

// commit is RFC 9591's commit (section 5.1): two nonces from nonce_generate over the secret
// share, and their commitments. It reads 64 bytes from rand, the hiding nonce's randomness first.
func commit(rand io.Reader, sk *edwards25519.Scalar) (*Nonces, *edwards25519.Point, *edwards25519.Point, error) {
	d, err := nonceGenerate(rand, sk)
	if err != nil {
		return nil, nil, nil, err
	}
	e, err := nonceGenerate(rand, sk)
	if err != nil {
		return nil, nil, nil, err
	}
	n := &Nonces{hiding: *d, binding: *e}
	*d, *e = edwards25519.Scalar{}, edwards25519.Scalar{}
	D := new(edwards25519.Point).ScalarBaseMult(&n.hiding)
	E := new(edwards25519.Point).ScalarBaseMult(&n.binding)
	return n, D, E, nil
}

// CheckList validates a commitment list for a key of n participants that needs k: between k and
// n commitments, identifiers strictly increasing (sorted, unique) within 1..n, every element
// decoded and checked (DecodeElement). RFC 9591, section 5.2 asks the signer to validate the list
// before it signs; the coordinator checks the same before it sends it.
func CheckList(list []Commitment, k, n int) error {
	if len(list) < k || len(list) > n || len(list) == 0 {
		return fmt.Errorf("%w: %d commitments, need %d to %d", ErrInvalidCommitmentList, len(list), k, n)
	}
	prev := 0
	for i := range list {
		c := &list[i]
		if c.Identifier <= prev || c.Identifier > n {
			return fmt.Errorf("%w: identifier %d after %d (need increasing, 1..%d)", ErrInvalidCommitmentList, c.Identifier, prev, n)
		}
		prev = c.Identifier
		if err := c.decode(); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidCommitmentList, err)
		}
	}
	return nil
}

// encodeCommitmentList is encode_group_commitment_list (section 4.3).
func encodeCommitmentList(list []Commitment) []byte {
	out := make([]byte, 0, len(list)*(ScalarSize+2*ElementSize))
	for _, c := range list {
		out = append(out, identifierScalar(c.Identifier).Bytes()...)
		out = append(out, c.Hiding[:]...)
		out = append(out, c.Binding[:]...)
	}
	return out
}

// bindingFactorInputs returns rho_input for each participant of the list (section 4.4).
func bindingFactorInputs(pk []byte, list []Commitment, msg []byte) [][]byte {
	prefix := append(append(append([]byte(nil), pk...), h4(msg)...), h5(encodeCommitmentList(list))...)
	out := make([][]byte, len(list))
	for i, c := range list {
		out[i] = append(append([]byte(nil), prefix...), identifierScalar(c.Identifier).Bytes()...)
	}
	return out
}

// session is what signers, the aggregator and the share verifier all derive from (group key,
// commitment list, message): binding factors, the group commitment R and the challenge c. A
// participant's Lagrange coefficient (a scalar inversion) is computed only where it is used: by
// that participant's sign, and by verifyShare. The list must have passed CheckList.
type session struct {
	list []Commitment
	rho  []*edwards25519.Scalar
	r    []byte // SerializeElement(R)
	c    *edwards25519.Scalar
}

func newSession(pk []byte, list []Commitment, msg []byte) (*session, error) {
	s := &session{list: list}
	for _, in := range bindingFactorInputs(pk, list, msg) {
		s.rho = append(s.rho, h1(in))
	}
	// compute_group_commitment (section 4.5): sum of D_i + [rho_i]E_i, the second sum as one
	// variable-time multi-scalar multiplication (public values only).
	R := edwards25519.NewIdentityPoint()
	es := make([]*edwards25519.Point, len(list))
	for i := range list {
		c := &list[i]
		if err := c.decode(); err != nil {
			return nil, err
		}
		R.Add(R, c.d)
		es[i] = c.e
	}
	R.Add(R, new(edwards25519.Point).VarTimeMultiScalarMult(s.rho, es))
	r, err := encodeElement(R)
	if err != nil {
		return nil, fmt.Errorf("group commitment: %w", err)
	}
	s.r = r
	// compute_challenge (section 4.6): H2(R || PK || msg).
	s.c = h2(r, pk, msg)
	return s, nil
}

// lagrange is derive_interpolating_value(L, x_i) at 0 for L the list's identifiers (unique,
// which CheckList guarantees).
func lagrange(list []Commitment, i int) *edwards25519.Scalar {
	num := mustScalar(identifierScalar(1).Bytes())
	den := mustScalar(identifierScalar(1).Bytes())
	xi := identifierScalar(list[i].Identifier)
	for j, c := range list {
		if j == i {
			continue
		}
		xj := identifierScalar(c.Identifier)
		num.Multiply(num, xj)
		den.Multiply(den, new(edwards25519.Scalar).Subtract(xj, xi))
	}
	return num.Multiply(num, den.Invert(den))
}

func (s *session) index(id int) int {
	for i, c := range s.list {
		if c.Identifier == id {
			return i
		}
	}
	return -1
}

// sign is round two (section 5.2) for the participant at position i of the list:
// z_i = d_i + e_i·rho_i + lambda_i·s_i·c. It runs in constant time in the secrets.
func (s *session) sign(i int, sk *edwards25519.Scalar, n *Nonces) *edwards25519.Scalar {
	lc := new(edwards25519.Scalar).Multiply(lagrange(s.list, i), s.c)
	z := new(edwards25519.Scalar).MultiplyAdd(lc, sk, &n.hiding)
	return z.MultiplyAdd(&n.binding, s.rho[i], z)
}

// verifyShare is verify_signature_share (section 5.4) for the participant at position i:
// [z_i]G == D_i + [rho_i]E_i + [c·lambda_i]Y_i.
func (s *session) verifyShare(i int, y *edwards25519.Point, z *edwards25519.Scalar) bool {
	c := &s.list[i]
	if c.decode() != nil {
		return false
	}
	l := new(edwards25519.Point).ScalarBaseMult(z)
	cl := new(edwards25519.Scalar).Multiply(s.c, lagrange(s.list, i))
	r := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(s.rho[i], c.e, zero)
	r.Add(r, c.d)
	r.Add(r, new(edwards25519.Point).VarTimeDoubleScalarBaseMult(cl, y, zero))
	return l.Equal(r) == 1
}

// aggregate is section 5.3: the signature R || z with z the sum of the shares (in list order).
func (s *session) aggregate(z []*edwards25519.Scalar) []byte {
	sum := edwards25519.NewScalar()
	for _, zi := range z {
		sum.Add(sum, zi)
	}
	return append(append([]byte(nil), s.r...), sum.Bytes()...)
}

// putU16 and friends keep the encodings of wire.go and dkgwire.go short.
func putU16(b []byte, v int) []byte    { return binary.BigEndian.AppendUint16(b, uint16(v)) }
func putU32(b []byte, v int) []byte    { return binary.BigEndian.AppendUint32(b, uint32(v)) }
func putU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }
