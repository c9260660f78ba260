package shoup

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/tchsm/tchsm/internal/modexp"
)

// SigShare is node Index's signature share x_i = x^(2Δs_i) mod N.
type SigShare struct {
	Index int
	X     *big.Int
}

// Proof is Shoup's non-interactive proof that a share is correct: c is the Fiat-Shamir challenge
// (SHA-256), z = s_i·c + r the response.
type Proof struct {
	C, Z *big.Int
}

// proofRandBits is the length of the prover's r beyond the modulus: 2·L1 with L1 = 256, the
// challenge length (Shoup, section 3, with statistical hiding of s_i·c).
const proofRandBits = 2 * 256

// messageRep checks em and returns x = OS2IP(em).
func messageRep(pk *PublicKey, pre *precomputed, em []byte) (*big.Int, error) {
	if len(em) != pre.size {
		return nil, fmt.Errorf("%w: %d bytes for a %d-byte modulus", ErrInvalidMessage, len(em), pre.size)
	}
	x := new(big.Int).SetBytes(em)
	if x.Sign() == 0 || x.Cmp(pk.N) >= 0 {
		return nil, fmt.Errorf("%w: out of range", ErrInvalidMessage)
	}
	return x, nil
}

func checkShare(pk *PublicKey, pre *precomputed, share *KeyShare) error {
	if share == nil || share.Index < 1 || share.Index > pk.L {
		return fmt.Errorf("%w: need 1..%d", ErrInvalidIndex, pk.L)
	}
	if len(share.S) != pre.size {
		return fmt.Errorf("%w: share of %d bytes, want %d", ErrInvalidKey, len(share.S), pre.size)
	}
	return nil
}

// ctExp returns base^exp mod N with engine e (internal/modexp: OpenSSL's
// BN_mod_exp_mont_consttime in the node, filippo.io/bigmod where OpenSSL is not linked), in
// constant time with respect to exp (which must be secret-sized and fixed-length); base is public.
func ctExp(e modexp.Engine, pre *precomputed, base *big.Int, exp []byte) (*big.Int, error) {
	out, err := e.Exp(pre.ct, base.FillBytes(make([]byte, pre.size)), exp)
	if errors.Is(err, modexp.ErrInput) {
		return nil, fmt.Errorf("%w: %v", ErrInvalidMessage, err)
	}
	if err != nil {
		return nil, fmt.Errorf("shoup: %w", err)
	}
	return new(big.Int).SetBytes(out), nil
}

// engine is the exponentiation engine in use (modexp.Selected).
func engine() (modexp.Engine, error) {
	e, err := modexp.Selected()
	if err != nil {
		return nil, fmt.Errorf("shoup: %w", err)
	}
	return e, nil
}

// SignShare computes node share.Index's signature share on the encoded message em (exactly
// pk.Size() bytes, as built by EncodePayload). The exponentiation by the secret share is
// constant time.
func SignShare(pk *PublicKey, share *KeyShare, em []byte) (*SigShare, error) {
	e, err := engine()
	if err != nil {
		return nil, err
	}
	return signShare(e, pk, share, em)
}

func signShare(e modexp.Engine, pk *PublicKey, share *KeyShare, em []byte) (*SigShare, error) {
	pre, err := pk.precompute()
	if err != nil {
		return nil, err
	}
	if err := checkShare(pk, pre, share); err != nil {
		return nil, err
	}
	x, err := messageRep(pk, pre, em)
	if err != nil {
		return nil, err
	}
	// x^(2Δ) is public; only the exponent s_i is secret.
	xt := new(big.Int).Exp(x, new(big.Int).Lsh(pre.delta, 1), pk.N)
	xi, err := ctExp(e, pre, xt, share.S)
	if err != nil {
		return nil, err
	}
	return &SigShare{Index: share.Index, X: xi}, nil
}

// Prove returns the proof that ss is share.Index's correct share on em.
func Prove(rand io.Reader, pk *PublicKey, share *KeyShare, em []byte, ss *SigShare) (*Proof, error) {
	e, err := engine()
	if err != nil {
		return nil, err
	}
	pre, err := pk.precompute()
	if err != nil {
		return nil, err
	}
	if err := checkShare(pk, pre, share); err != nil {
		return nil, err
	}
	if ss == nil || ss.Index != share.Index || ss.X == nil {
		return nil, fmt.Errorf("%w: signature share does not belong to this key share", ErrInvalidIndex)
	}
	x, err := messageRep(pk, pre, em)
	if err != nil {
		return nil, err
	}
	xTilde := new(big.Int).Exp(x, new(big.Int).Lsh(pre.delta, 2), pk.N)
	rbuf := make([]byte, (pk.N.BitLen()+proofRandBits+7)/8)
	if _, err := io.ReadFull(rand, rbuf); err != nil {
		return nil, fmt.Errorf("shoup: reading randomness: %w", err)
	}
	defer clear(rbuf)
	vPrime, err := ctExp(e, pre, pk.V, rbuf)
	if err != nil {
		return nil, err
	}
	xPrime, err := ctExp(e, pre, xTilde, rbuf)
	if err != nil {
		return nil, err
	}
	xi2 := new(big.Int).Mul(ss.X, ss.X)
	xi2.Mod(xi2, pk.N)
	c := challenge(pk, pre, share.Index, xTilde, xi2, vPrime, xPrime)
	s := new(big.Int).SetBytes(share.S)
	z := new(big.Int).Mul(s, c)
	z.Add(z, new(big.Int).SetBytes(rbuf))
	wipeInt(s)
	return &Proof{C: c, Z: z}, nil
}

// VerifyShare checks ss against its proof. It returns ErrBadShare (wrapped, naming the index)
// when the share is wrong.
func VerifyShare(pk *PublicKey, em []byte, ss *SigShare, p *Proof) error {
	pre, err := pk.precompute()
	if err != nil {
		return err
	}
	if ss == nil || ss.Index < 1 || ss.Index > pk.L {
		return fmt.Errorf("%w: need 1..%d", ErrInvalidIndex, pk.L)
	}
	x, err := messageRep(pk, pre, em)
	if err != nil {
		return err
	}
	bad := fmt.Errorf("%w: node %d", ErrBadShare, ss.Index)
	if p == nil || p.C == nil || p.Z == nil || p.C.Sign() < 0 || p.C.BitLen() > 256 || p.Z.Sign() < 0 ||
		p.Z.BitLen() > pk.N.BitLen()+proofRandBits+257 {
		return bad
	}
	if ss.X == nil || ss.X.Sign() <= 0 || ss.X.Cmp(pk.N) >= 0 {
		return bad
	}
	vi := pk.VK[ss.Index-1]
	viInv := new(big.Int).ModInverse(vi, pk.N)
	xi2 := new(big.Int).Mul(ss.X, ss.X)
	xi2.Mod(xi2, pk.N)
	xi2Inv := new(big.Int).ModInverse(xi2, pk.N)
	if viInv == nil || xi2Inv == nil {
		return bad
	}
	xTilde := new(big.Int).Exp(x, new(big.Int).Lsh(pre.delta, 2), pk.N)
	// v' = v^z · v_i^(-c), x' = x̃^z · (x_i^2)^(-c)
	vPrime := new(big.Int).Exp(pk.V, p.Z, pk.N)
	vPrime.Mul(vPrime, new(big.Int).Exp(viInv, p.C, pk.N)).Mod(vPrime, pk.N)
	xPrime := new(big.Int).Exp(xTilde, p.Z, pk.N)
	xPrime.Mul(xPrime, new(big.Int).Exp(xi2Inv, p.C, pk.N)).Mod(xPrime, pk.N)
	if challenge(pk, pre, ss.Index, xTilde, xi2, vPrime, xPrime).Cmp(p.C) != 0 {
		return bad
	}
	return nil
}

// challenge hashes a domain-separated, length-prefixed encoding of the statement and the
// commitments: the key (N, e, k, n, v), the node's index and v_i, x̃, x_i², v', x'.
func challenge(pk *PublicKey, pre *precomputed, index int, xTilde, xi2, vPrime, xPrime *big.Int) *big.Int {
	h := sha256.New()
	h.Write([]byte("tchsm threshold-rsa share proof v1\x00"))
	var num [8]byte
	for _, n := range []int{pk.E, pk.K, pk.L, index} {
		binary.BigEndian.PutUint64(num[:], uint64(n))
		h.Write(num[:])
	}
	buf := make([]byte, pre.size)
	for _, v := range []*big.Int{pk.N, pk.V, pk.VK[index-1], xTilde, xi2, vPrime, xPrime} {
		binary.BigEndian.PutUint64(num[:], uint64(pre.size))
		h.Write(num[:])
		h.Write(v.FillBytes(buf))
	}
	return new(big.Int).SetBytes(h.Sum(nil))
}
