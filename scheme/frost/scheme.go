package frost

import (
	"fmt"
	"time"

	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
)

// Scheme is FROST(Ed25519, SHA-512) behind the scheme boundary (scheme.Ed25519FROST): keys
// from a distributed key generation (DKG), commitments handed out in advance (Precommitter),
// one signing round with a fixed set.
type Scheme struct {
	// Options bound the nonce stores of the participants NewParticipant makes.
	Options Options
}

var (
	_ scheme.Scheme       = Scheme{}
	_ scheme.Precommitter = Scheme{}
)

// Algorithm is scheme.Ed25519FROST.
func (Scheme) Algorithm() scheme.Algorithm { return scheme.Ed25519FROST }

// Mechanisms is EDDSA alone.
func (Scheme) Mechanisms() []scheme.Mechanism { return []scheme.Mechanism{scheme.EDDSA} }

func publicOf(pk scheme.PublicKey) (*PublicKey, error) {
	p, ok := pk.(*PublicKey)
	if !ok || p == nil {
		return nil, fmt.Errorf("%w: %T is not a FROST key", scheme.ErrInvalidKey, pk)
	}
	return p, nil
}

func shareOf(s scheme.SecretShare) (*SecretShare, error) {
	ss, ok := s.(*SecretShare)
	if !ok || ss == nil {
		return nil, fmt.Errorf("%w: %T is not a FROST share", scheme.ErrInvalidShare, s)
	}
	return ss, nil
}

// EncodePublic writes algorithm, k, n, bits = 256 and params (EncodeParams) and clears the RSA
// fields.
func (Scheme) EncodePublic(pk scheme.PublicKey, rec *tchsmpb.KeyRecord) error {
	p, err := publicOf(pk)
	if err != nil {
		return err
	}
	rec.Algorithm = uint32(scheme.Ed25519FROST)
	rec.K, rec.N = uint32(p.k), uint32(p.n)
	rec.Bits = 256
	rec.Params = p.EncodeParams()
	rec.Modulus, rec.PublicExponent, rec.V, rec.Vk, rec.SafePrimes = nil, 0, nil, nil, false
	return nil
}

// DecodePublic accepts a record of algorithm Ed25519FROST with bits 256, no RSA field, and
// params that DecodeParams accepts for the record's k and n.
func (Scheme) DecodePublic(rec *tchsmpb.KeyRecord) (scheme.PublicKey, error) {
	if a := scheme.Of(rec); a != scheme.Ed25519FROST {
		return nil, fmt.Errorf("%w: record of algorithm %v", scheme.ErrInvalidKey, a)
	}
	if rec.Bits != 256 || len(rec.Modulus) != 0 || rec.PublicExponent != 0 || len(rec.V) != 0 || len(rec.Vk) != 0 || rec.SafePrimes {
		return nil, fmt.Errorf("%w: Ed25519 record with RSA fields or bits %d", scheme.ErrInvalidKey, rec.Bits)
	}
	if rec.N > MaxPlayers {
		return nil, fmt.Errorf("%w: n=%d", scheme.ErrInvalidKey, rec.N)
	}
	pk, err := DecodeParams(int(rec.K), int(rec.N), rec.Params)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", scheme.ErrInvalidKey, err)
	}
	return pk, nil
}

// MarshalShare returns SerializeScalar(s_i), 32 bytes.
func (Scheme) MarshalShare(pk scheme.PublicKey, s scheme.SecretShare) ([]byte, error) {
	p, err := publicOf(pk)
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
	return ss.Bytes(), nil
}

// ParseShare checks the index (1..n) and decodes a canonical non-zero scalar.
func (Scheme) ParseShare(pk scheme.PublicKey, index int, b []byte) (scheme.SecretShare, error) {
	p, err := publicOf(pk)
	if err != nil {
		return nil, err
	}
	if index < 1 || index > p.n {
		return nil, fmt.Errorf("%w: index %d, need 1..%d", scheme.ErrInvalidShare, index, p.n)
	}
	s, err := NewSecretShare(index, b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", scheme.ErrInvalidShare, err)
	}
	return s, nil
}

// CheckShare checks [s_i]G == Y_i.
func (Scheme) CheckShare(pk scheme.PublicKey, s scheme.SecretShare) error {
	p, err := publicOf(pk)
	if err != nil {
		return err
	}
	ss, err := shareOf(s)
	if err != nil {
		return err
	}
	return ss.Check(p)
}

// NewCoordinator is not how a FROST session starts: it needs a commitment from each signer
// (NewSession).
func (Scheme) NewCoordinator(scheme.PublicKey, scheme.Mechanism, []byte) (scheme.Coordinator, error) {
	return nil, fmt.Errorf("%w: a FROST session needs commitments: use scheme.Precommitter.NewSession", scheme.ErrNotSupported)
}

// NewParticipant makes a node's side of a key, with s.Options.
func (s Scheme) NewParticipant(pk scheme.PublicKey, sh scheme.SecretShare) (scheme.Participant, error) {
	p, err := publicOf(pk)
	if err != nil {
		return nil, err
	}
	ss, err := shareOf(sh)
	if err != nil {
		return nil, err
	}
	return NewParticipant(p, ss, s.Options)
}

// CommitRequest asks for count commitments (1..MaxBatch).
func (Scheme) CommitRequest(pk scheme.PublicKey, count int) (scheme.Request, error) {
	if _, err := publicOf(pk); err != nil {
		return scheme.Request{}, err
	}
	b, err := EncodeCommitRequest(count)
	if err != nil {
		return scheme.Request{}, fmt.Errorf("%w: %w", scheme.ErrInvalidRequest, err)
	}
	return scheme.Request{Round: 1, Payload: b}, nil
}

// ParseCommitments decodes participant i's commit reply into pool commitments, every element
// decoded and checked here, once: NewSession uses the decoded points.
func (Scheme) ParseCommitments(pk scheme.PublicKey, i int, rep scheme.Reply) ([]scheme.Commitment, time.Duration, error) {
	p, err := publicOf(pk)
	if err != nil {
		return nil, 0, err
	}
	if i < 1 || i > p.n {
		return nil, 0, fmt.Errorf("%w: participant %d, need 1..%d", scheme.ErrInvalidRequest, i, p.n)
	}
	ttl, cs, err := DecodeCommitReply(i, rep.Payload)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: participant %d: %w", scheme.ErrBadShare, i, err)
	}
	out := make([]scheme.Commitment, len(cs))
	for j := range cs {
		out[j] = &poolCommitment{c: cs[j]}
	}
	return out, ttl, nil
}

// poolCommitment is a Commitment as ParseCommitments returns it (a scheme.Commitment): decoded
// and checked, and out of reach of the pool that holds it, so that its bytes and its decoded
// points cannot come apart.
type poolCommitment struct{ c Commitment }

// Signer is the participant that handed the commitment out.
func (p *poolCommitment) Signer() int { return p.c.Identifier }

// NewSession starts a signature with one pool commitment per signer (exactly k), each from
// ParseCommitments for that signer.
func (Scheme) NewSession(pk scheme.PublicKey, mech scheme.Mechanism, data []byte, commitments map[int]scheme.Commitment) (scheme.Coordinator, error) {
	p, err := publicOf(pk)
	if err != nil {
		return nil, err
	}
	if mech != scheme.EDDSA {
		return nil, fmt.Errorf("%w: %v for an Ed25519 key", scheme.ErrUnknownMechanism, mech)
	}
	list := make([]Commitment, 0, len(commitments))
	for i, sc := range commitments {
		if i < 1 || i > p.n {
			return nil, fmt.Errorf("%w: participant %d, need 1..%d", scheme.ErrInvalidRequest, i, p.n)
		}
		pc, ok := sc.(*poolCommitment)
		if !ok || pc == nil {
			return nil, fmt.Errorf("%w: participant %d: %T is not a FROST commitment", scheme.ErrInvalidRequest, i, sc)
		}
		if pc.c.Identifier != i {
			return nil, fmt.Errorf("%w: participant %d: a commitment of participant %d", scheme.ErrInvalidRequest, i, pc.c.Identifier)
		}
		list = append(list, pc.c)
	}
	return NewCoordinator(p, data, list)
}
