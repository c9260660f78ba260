package ecdsahm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"fmt"
	"io"
	"math/big"

	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
)

// Scheme is the honest-majority threshold ECDSA P-256 behind the scheme boundary
// (scheme.ECDSAP256HM): keys from the dealerless key generation (scheme.DKG), presignatures
// made in batches by a fixed set of exactly 2t+1 participants (scheme.Presigner), signatures
// with the echo round (two rounds for the nodes), participants that talk to each other through
// the coordinator (scheme.PeerParticipants). The one-round path without the echo (Sign) is not
// reachable through the boundary: binding alone does not stop a split-view client (doc.go).
//
// Thresholds at the boundary: KeyParams.K and the record's k are the number of signers, 2t+1
// (odd, 3..n); t = (k-1)/2 is explicit in the record's params (Marshal: version, n, t, Y,
// X_1..X_n) and checked against k and n on decoding.
type Scheme struct {
	// Options bound the state of the participants NewPeerParticipant makes.
	Options Options
}

var (
	_ scheme.Scheme           = Scheme{}
	_ scheme.DKG              = Scheme{}
	_ scheme.Presigner        = Scheme{}
	_ scheme.PeerParticipants = Scheme{}
)

// Algorithm is scheme.ECDSAP256HM.
func (Scheme) Algorithm() scheme.Algorithm { return scheme.ECDSAP256HM }

// Mechanisms are ECDSA (a 32-byte digest) and ECDSA_SHA256 (the message, hashed by the
// coordinator: the nodes see the digest only).
func (Scheme) Mechanisms() []scheme.Mechanism {
	return []scheme.Mechanism{scheme.ECDSA, scheme.ECDSASHA256}
}

// schemeKey is a *PublicKey as a scheme.PublicKey (whose Public returns a crypto.PublicKey).
type schemeKey struct{ pk *PublicKey }

// SchemeKey returns pk as a scheme.PublicKey.
func SchemeKey(pk *PublicKey) scheme.PublicKey { return schemeKey{pk} }

// KeyOf returns the *PublicKey behind a scheme.PublicKey of this scheme.
func KeyOf(pk scheme.PublicKey) (*PublicKey, error) {
	k, ok := pk.(schemeKey)
	if !ok || k.pk == nil {
		return nil, fmt.Errorf("%w: %T is not an ECDSA P-256 (honest majority) key", scheme.ErrInvalidKey, pk)
	}
	return k.pk, nil
}

func (schemeKey) Algorithm() scheme.Algorithm { return scheme.ECDSAP256HM }

// Threshold returns (2t+1, n): a signature needs exactly 2t+1 participants.
func (k schemeKey) Threshold() (int, int)    { return k.pk.Signers(), k.pk.n }
func (schemeKey) Bits() int                  { return 256 }
func (k schemeKey) Public() crypto.PublicKey { return k.pk.pub }
func (k schemeKey) Verify(mech scheme.Mechanism, data, sig []byte) error {
	digest, err := digestFor(mech, data)
	if err != nil {
		return err
	}
	if len(sig) != 2*ScalarSize {
		return fmt.Errorf("%w: %d-byte ECDSA signature, want 64 (r || s)", scheme.ErrBadSignature, len(sig))
	}
	if !ecdsa.Verify(k.pk.pub, digest, new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return scheme.ErrBadSignature
	}
	return nil
}

// maxMessage bounds the message of ECDSA_SHA256 (as the other schemes bound theirs).
const maxMessage = 64 << 10

// digestFor returns the digest mech signs for data: data itself for ECDSA (exactly 32 bytes),
// its SHA-256 for ECDSA_SHA256.
func digestFor(mech scheme.Mechanism, data []byte) ([]byte, error) {
	switch mech {
	case scheme.ECDSA:
		if len(data) != scheme.ECDSADigestSize {
			return nil, fmt.Errorf("%w: CKM_ECDSA with a P-256 key signs a %d-byte digest, not %d bytes",
				scheme.ErrInvalidRequest, scheme.ECDSADigestSize, len(data))
		}
		return append([]byte(nil), data...), nil
	case scheme.ECDSASHA256:
		if len(data) > maxMessage {
			return nil, fmt.Errorf("%w: %d-byte message, at most %d", scheme.ErrInvalidRequest, len(data), maxMessage)
		}
		h := sha256.Sum256(data)
		return h[:], nil
	}
	return nil, fmt.Errorf("%w: %v for an ECDSA P-256 key", scheme.ErrUnknownMechanism, mech)
}

// EncodePublic writes algorithm, k = 2t+1, n, bits = 256 and params (PublicKey.Marshal:
// version, n, t, Y, X_1..X_n) and clears the RSA fields.
func (Scheme) EncodePublic(pk scheme.PublicKey, rec *tchsmpb.KeyRecord) error {
	p, err := KeyOf(pk)
	if err != nil {
		return err
	}
	rec.Algorithm = uint32(scheme.ECDSAP256HM)
	rec.K, rec.N = uint32(p.Signers()), uint32(p.n)
	rec.Bits = 256
	rec.Params = p.Marshal()
	rec.Modulus, rec.PublicExponent, rec.V, rec.Vk, rec.SafePrimes = nil, 0, nil, nil, false
	return nil
}

// DecodePublic accepts a record of algorithm ECDSAP256HM with bits 256, no RSA field, and
// params that DecodePublicKey accepts, whose n is the record's n and 2t+1 the record's k.
func (Scheme) DecodePublic(rec *tchsmpb.KeyRecord) (scheme.PublicKey, error) {
	if a := scheme.Of(rec); a != scheme.ECDSAP256HM {
		return nil, fmt.Errorf("%w: record of algorithm %v", scheme.ErrInvalidKey, a)
	}
	if rec.Bits != 256 || len(rec.Modulus) != 0 || rec.PublicExponent != 0 || len(rec.V) != 0 || len(rec.Vk) != 0 || rec.SafePrimes {
		return nil, fmt.Errorf("%w: ECDSA P-256 record with RSA fields or bits %d", scheme.ErrInvalidKey, rec.Bits)
	}
	pk, err := DecodePublicKey(rec.Params)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", scheme.ErrInvalidKey, err)
	}
	if uint32(pk.n) != rec.N || uint32(pk.Signers()) != rec.K {
		return nil, fmt.Errorf("%w: record says k=%d n=%d, params n=%d t=%d (k must be 2t+1)", scheme.ErrInvalidKey, rec.K, rec.N, pk.n, pk.t)
	}
	return schemeKey{pk}, nil
}

func shareOf(s scheme.SecretShare) (*SecretShare, error) {
	ss, ok := s.(*SecretShare)
	if !ok || ss == nil {
		return nil, fmt.Errorf("%w: %T is not an ECDSA P-256 share", scheme.ErrInvalidShare, s)
	}
	return ss, nil
}

// MarshalShare returns x_i's 32 bytes.
func (Scheme) MarshalShare(pk scheme.PublicKey, s scheme.SecretShare) ([]byte, error) {
	p, err := KeyOf(pk)
	if err != nil {
		return nil, err
	}
	ss, err := shareOf(s)
	if err != nil {
		return nil, err
	}
	if ss.index < 1 || ss.index > p.n {
		return nil, fmt.Errorf("%w: index %d of %d", scheme.ErrInvalidShare, ss.index, p.n)
	}
	return ss.Marshal(), nil
}

// ParseShare checks the index (1..n) and decodes a non-zero scalar below the order.
func (Scheme) ParseShare(pk scheme.PublicKey, index int, b []byte) (scheme.SecretShare, error) {
	p, err := KeyOf(pk)
	if err != nil {
		return nil, err
	}
	if index < 1 || index > p.n {
		return nil, fmt.Errorf("%w: index %d, need 1..%d", scheme.ErrInvalidShare, index, p.n)
	}
	s, err := ParseSecretShare(index, b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", scheme.ErrInvalidShare, err)
	}
	return s, nil
}

// CheckShare checks x_i·G = X_i.
func (Scheme) CheckShare(pk scheme.PublicKey, s scheme.SecretShare) error {
	p, err := KeyOf(pk)
	if err != nil {
		return err
	}
	ss, err := shareOf(s)
	if err != nil {
		return err
	}
	if err := ss.Check(p); err != nil {
		return fmt.Errorf("%w: %w", scheme.ErrInvalidShare, err)
	}
	return nil
}

// NewCoordinator is not how a signature starts: it needs a presignature
// (scheme.Presigner.NewPresignedSession).
func (Scheme) NewCoordinator(scheme.PublicKey, scheme.Mechanism, []byte) (scheme.Coordinator, error) {
	return nil, fmt.Errorf("%w: an ECDSA P-256 signature needs a presignature: use scheme.Presigner.NewPresignedSession", scheme.ErrNotSupported)
}

// NewParticipant is not how a node's side of a key is made: its participants talk to each
// other (scheme.PeerParticipants.NewPeerParticipant).
func (Scheme) NewParticipant(scheme.PublicKey, scheme.SecretShare) (scheme.Participant, error) {
	return nil, fmt.Errorf("%w: an ECDSA P-256 participant needs the nodes' long-term keys: use scheme.PeerParticipants.NewPeerParticipant", scheme.ErrNotSupported)
}

// NewDKG starts participant self's side of a key generation among p.N participants whose
// signatures take p.K = 2t+1 of them (odd, 3..n); p.DKG gives the session (the key id) and the
// long-term keys. Every one of the n must take part (no late shares).
func (Scheme) NewDKG(self int, p scheme.KeyParams, rnd io.Reader) (scheme.KeyGeneration, error) {
	if p.K < 3 || p.K%2 == 0 || p.K > p.N {
		return nil, fmt.Errorf("%w: k=%d of n=%d: an ECDSA P-256 key's k is its exact signer count 2t+1 (odd, 3..n)", scheme.ErrInvalidKey, p.K, p.N)
	}
	if len(p.DKG.Public) != p.N {
		return nil, fmt.Errorf("%w: %d long-term keys for n=%d", scheme.ErrInvalidKey, len(p.DKG.Public), p.N)
	}
	ch, err := NewChannel(self, p.DKG.Secret, p.DKG.Public)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", scheme.ErrInvalidKey, err)
	}
	g, err := NewKeyGen(ch, (p.K-1)/2, p.DKG.Session, rnd)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", scheme.ErrInvalidKey, err)
	}
	return keyGeneration{g}, nil
}

// keyGeneration is a KeyGen as a scheme.KeyGeneration.
type keyGeneration struct{ g *KeyGen }

func (k keyGeneration) Step(in []scheme.Message) ([]scheme.Message, bool, error) { return k.g.Step(in) }

func (k keyGeneration) Result() (scheme.PublicKey, scheme.SecretShare, error) {
	pk, s, err := k.g.Result()
	if err != nil {
		return nil, nil, err
	}
	return schemeKey{pk}, s, nil
}
