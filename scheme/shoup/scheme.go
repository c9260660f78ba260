package shoup

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"math/big"

	"filippo.io/bigmod"

	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
)

// Scheme is Shoup RSA behind the scheme boundary (scheme.ShoupRSA): a dealer generates and
// splits the key (Deal), a signature is one round (any k of the n nodes answer the PKCS#1 v1.5
// payload T with their share), and the audit round, asked only after a failed combination, is
// a proof of share correctness.
type Scheme struct{}

var (
	_ scheme.Scheme    = Scheme{}
	_ scheme.PublicKey = (*PublicKey)(nil)
)

// Limits on key records, checked by DecodePublic before the mathematics (Validate).
const (
	MinRecordBits = MinBits
	MaxRecordBits = MaxBits
)

// Algorithm is scheme.ShoupRSA.
func (Scheme) Algorithm() scheme.Algorithm { return scheme.ShoupRSA }

// Mechanisms are the PKCS#1 v1.5 signing mechanisms.
func (Scheme) Mechanisms() []scheme.Mechanism {
	return []scheme.Mechanism{scheme.RSAPKCS, scheme.SHA1RSAPKCS, scheme.SHA224RSAPKCS, scheme.SHA256RSAPKCS,
		scheme.SHA384RSAPKCS, scheme.SHA512RSAPKCS}
}

func publicOf(pk scheme.PublicKey) (*PublicKey, error) {
	p, ok := pk.(*PublicKey)
	if !ok || p == nil {
		return nil, fmt.Errorf("%w: %T is not a Shoup RSA key", scheme.ErrInvalidKey, pk)
	}
	return p, nil
}

// EncodePublic writes the record fields of the releases before scheme.Algorithm existed
// (bits, modulus, public_exponent, v, vk, safe_primes), so that they can read the record, and
// algorithm = ShoupRSA.
func (Scheme) EncodePublic(pk scheme.PublicKey, rec *tchsmpb.KeyRecord) error {
	p, err := publicOf(pk)
	if err != nil {
		return err
	}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%w: %w", scheme.ErrInvalidKey, err)
	}
	rec.Algorithm = uint32(scheme.ShoupRSA)
	rec.Bits = uint32(p.N.BitLen())
	rec.Modulus = p.N.Bytes()
	rec.PublicExponent = uint32(p.E)
	rec.K, rec.N = uint32(p.K), uint32(p.L)
	rec.V = p.V.Bytes()
	rec.Vk = nil
	for _, v := range p.VK {
		rec.Vk = append(rec.Vk, v.Bytes())
	}
	rec.SafePrimes = p.Safe
	rec.Params = nil
	return nil
}

// DecodePublic checks a record's RSA fields (a modulus of exactly bits bits, MinRecordBits to
// MaxRecordBits, an odd exponent larger than n, v and one vk per node in range) and builds the
// validated public key.
func (Scheme) DecodePublic(rec *tchsmpb.KeyRecord) (scheme.PublicKey, error) {
	if a := scheme.Of(rec); a != scheme.ShoupRSA {
		return nil, fmt.Errorf("%w: record of algorithm %v", scheme.ErrInvalidKey, a)
	}
	if len(rec.GetParams()) != 0 {
		return nil, fmt.Errorf("%w: RSA record with scheme parameters", scheme.ErrInvalidKey)
	}
	if rec.Bits < MinRecordBits || rec.Bits > MaxRecordBits {
		return nil, fmt.Errorf("%w: %d bits", scheme.ErrInvalidKey, rec.Bits)
	}
	if rec.N < 1 || rec.N > MaxPlayers || rec.K < 1 || rec.K > rec.N {
		return nil, fmt.Errorf("%w: k=%d n=%d", scheme.ErrInvalidKey, rec.K, rec.N)
	}
	if len(rec.Vk) != int(rec.N) {
		return nil, fmt.Errorf("%w: %d verification keys for n=%d", scheme.ErrInvalidKey, len(rec.Vk), rec.N)
	}
	nMod := new(big.Int).SetBytes(rec.Modulus)
	if nMod.BitLen() != int(rec.Bits) || nMod.Bit(0) == 0 {
		return nil, fmt.Errorf("%w: modulus is %d bits, record says %d", scheme.ErrInvalidKey, nMod.BitLen(), rec.Bits)
	}
	if rec.PublicExponent < 3 || rec.PublicExponent%2 == 0 || rec.PublicExponent <= rec.N || rec.PublicExponent > 1<<31-1 {
		return nil, fmt.Errorf("%w: public exponent %d", scheme.ErrInvalidKey, rec.PublicExponent)
	}
	inRange := func(b []byte) bool {
		x := new(big.Int).SetBytes(b)
		return x.Sign() > 0 && x.Cmp(nMod) < 0
	}
	if !inRange(rec.V) {
		return nil, fmt.Errorf("%w: v out of range", scheme.ErrInvalidKey)
	}
	for i, vk := range rec.Vk {
		if !inRange(vk) {
			return nil, fmt.Errorf("%w: vk[%d] out of range", scheme.ErrInvalidKey, i)
		}
	}
	pk := &PublicKey{N: nMod, E: int(rec.PublicExponent), K: int(rec.K), L: int(rec.N),
		V: new(big.Int).SetBytes(rec.V), Safe: rec.SafePrimes}
	for _, v := range rec.Vk {
		pk.VK = append(pk.VK, new(big.Int).SetBytes(v))
	}
	if err := pk.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", scheme.ErrInvalidKey, err)
	}
	return pk, nil
}

// secretShare is a KeyShare behind scheme.SecretShare (KeyShare's field Index takes the name).
type secretShare struct{ ks *KeyShare }

func (s secretShare) Index() int { return s.ks.Index }
func (s secretShare) Wipe()      { s.ks.Wipe() }

// WrapShare returns ks as a scheme.SecretShare (sharing ks, not copying it).
func WrapShare(ks *KeyShare) scheme.SecretShare { return secretShare{ks} }

// KeyShareOf returns the KeyShare behind a share of this scheme.
func KeyShareOf(s scheme.SecretShare) (*KeyShare, error) {
	ss, ok := s.(secretShare)
	if !ok || ss.ks == nil {
		return nil, fmt.Errorf("%w: %T is not a Shoup RSA share", scheme.ErrInvalidShare, s)
	}
	return ss.ks, nil
}

// MarshalShare returns s_i, big-endian, exactly pk.Size() bytes (a copy).
func (Scheme) MarshalShare(pk scheme.PublicKey, s scheme.SecretShare) ([]byte, error) {
	p, err := publicOf(pk)
	if err != nil {
		return nil, err
	}
	ks, err := KeyShareOf(s)
	if err != nil {
		return nil, err
	}
	if len(ks.S) != p.Size() {
		return nil, fmt.Errorf("%w: share of %d bytes, want %d", scheme.ErrInvalidShare, len(ks.S), p.Size())
	}
	return append([]byte(nil), ks.S...), nil
}

// ParseShare checks the index (1..n) and the length (the modulus length) and copies b.
func (Scheme) ParseShare(pk scheme.PublicKey, index int, b []byte) (scheme.SecretShare, error) {
	p, err := publicOf(pk)
	if err != nil {
		return nil, err
	}
	if index < 1 || index > p.L {
		return nil, fmt.Errorf("%w: index %d, need 1..%d", scheme.ErrInvalidShare, index, p.L)
	}
	if len(b) != p.Size() {
		return nil, fmt.Errorf("%w: share of %d bytes, want %d", scheme.ErrInvalidShare, len(b), p.Size())
	}
	return secretShare{&KeyShare{Index: index, S: append([]byte(nil), b...)}}, nil
}

// CheckShare checks v^s_i == vk_i mod N in constant time (s_i is secret).
func (Scheme) CheckShare(pk scheme.PublicKey, s scheme.SecretShare) error {
	p, err := publicOf(pk)
	if err != nil {
		return err
	}
	ks, err := KeyShareOf(s)
	if err != nil {
		return err
	}
	bad := fmt.Errorf("%w: share does not match its verification key", scheme.ErrInvalidShare)
	if ks.Index < 1 || ks.Index > len(p.VK) || len(ks.S) != p.Size() {
		return bad
	}
	mod, err := bigmod.NewModulus(p.N.Bytes())
	if err != nil {
		return bad
	}
	v, err := bigmod.NewNat().SetBytes(p.V.Bytes(), mod)
	if err != nil {
		return bad
	}
	want, err := bigmod.NewNat().SetBytes(p.VK[ks.Index-1].Bytes(), mod)
	if err != nil {
		return bad
	}
	if bigmod.NewNat().Exp(v, ks.S, mod).Equal(want) != 1 {
		return bad
	}
	return nil
}

// ---- PublicKey as a scheme.PublicKey

// Algorithm is scheme.ShoupRSA.
func (pk *PublicKey) Algorithm() scheme.Algorithm { return scheme.ShoupRSA }

// Threshold returns k and n.
func (pk *PublicKey) Threshold() (k, n int) { return pk.K, pk.L }

// Bits returns the modulus length in bits.
func (pk *PublicKey) Bits() int { return pk.N.BitLen() }

// Public returns the *rsa.PublicKey.
func (pk *PublicKey) Public() crypto.PublicKey { return pk.RSA() }

// Verify checks a PKCS#1 v1.5 signature on data under mech (data as Payload takes it).
func (pk *PublicKey) Verify(mech scheme.Mechanism, data, sig []byte) error {
	t, err := Payload(mech, data)
	if err != nil {
		return err
	}
	em, err := EncodePayload(pk.Size(), t)
	if err != nil {
		return err
	}
	if err := Verify(pk, em, sig); err != nil {
		return fmt.Errorf("%w: %w", scheme.ErrBadSignature, err)
	}
	return nil
}

// ---- signing sessions

// NewCoordinator starts a signing session: data under mech becomes the payload T and the
// encoded message EM, checked against the modulus here, before any node is asked.
func (Scheme) NewCoordinator(pk scheme.PublicKey, mech scheme.Mechanism, data []byte) (scheme.Coordinator, error) {
	p, err := publicOf(pk)
	if err != nil {
		return nil, err
	}
	t, err := Payload(mech, data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", scheme.ErrInvalidRequest, err)
	}
	em, err := EncodePayload(p.Size(), t)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", scheme.ErrInvalidRequest, err)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", scheme.ErrInvalidKey, err)
	}
	return &coordinator{pk: p, payload: t, em: em}, nil
}

// coordinator is one RSA signature on the client: one open round (any k shares), and the
// proof round as its audit.
type coordinator struct {
	pk      *PublicKey
	payload []byte // T, what the nodes are sent
	em      []byte // EM, what they sign
	held    []*SigShare
}

func (c *coordinator) Quorum() int { return c.pk.K }
func (c *coordinator) Open() bool  { return true }

func (c *coordinator) check(i int) error {
	if i < 1 || i > c.pk.L {
		return fmt.Errorf("%w: participant %d, need 1..%d", scheme.ErrInvalidRequest, i, c.pk.L)
	}
	return nil
}

func (c *coordinator) Request(i int) (scheme.Request, error) {
	if err := c.check(i); err != nil {
		return scheme.Request{}, err
	}
	return scheme.Request{Round: 1, Payload: c.payload}, nil
}

func (c *coordinator) find(i int) int {
	for j, s := range c.held {
		if s.Index == i {
			return j
		}
	}
	return -1
}

// Accept keeps x_i when it is in 1..N-1.
func (c *coordinator) Accept(i int, rep scheme.Reply) error {
	if err := c.check(i); err != nil {
		return err
	}
	x := new(big.Int).SetBytes(rep.Payload)
	if x.Sign() <= 0 || x.Cmp(c.pk.N) >= 0 {
		return fmt.Errorf("%w: share out of range", scheme.ErrBadShare)
	}
	if c.find(i) >= 0 {
		return fmt.Errorf("%w: a second share from participant %d", scheme.ErrBadShare, i)
	}
	c.held = append(c.held, &SigShare{Index: i, X: x})
	return nil
}

func (c *coordinator) Held() []int {
	out := make([]int, len(c.held))
	for j, s := range c.held {
		out[j] = s.Index
	}
	return out
}

func (c *coordinator) Drop(i int) {
	if j := c.find(i); j >= 0 {
		c.held = append(c.held[:j], c.held[j+1:]...)
	}
}

func (c *coordinator) Finish() ([]byte, error) {
	if len(c.held) < c.pk.K {
		return nil, fmt.Errorf("%w: have %d, need %d", scheme.ErrNotEnoughShares, len(c.held), c.pk.K)
	}
	return c.result(Combine(c.pk, c.em, c.held))
}

func (c *coordinator) FinishAny() ([]byte, error) {
	if len(c.held) < c.pk.K {
		return nil, fmt.Errorf("%w: have %d, need %d", scheme.ErrNotEnoughShares, len(c.held), c.pk.K)
	}
	return c.result(CombineAny(c.pk, c.em, c.held))
}

func (c *coordinator) result(sig []byte, err error) ([]byte, error) {
	switch {
	case err == nil:
		return sig, nil
	case errors.Is(err, ErrBadSignature):
		return nil, fmt.Errorf("%w: %w", scheme.ErrBadSignature, err)
	case errors.Is(err, ErrBadShare):
		return nil, fmt.Errorf("%w: %w", scheme.ErrBadShare, err)
	}
	return nil, err
}

// Audit asks for the share again, with its proof (the node's ProofRequest).
func (c *coordinator) Audit(i int) (scheme.Request, bool, error) {
	if err := c.check(i); err != nil {
		return scheme.Request{}, false, err
	}
	return scheme.Request{Round: 1, Audit: true, Payload: c.payload}, true, nil
}

// Judge checks that the proved share is the one held and that its proof verifies.
func (c *coordinator) Judge(i int, rep scheme.Reply) error {
	j := c.find(i)
	if j < 0 {
		return fmt.Errorf("%w: no share of participant %d held", scheme.ErrInvalidRequest, i)
	}
	sh := c.held[j]
	if len(rep.Proof) != 2 {
		c.Drop(i)
		return fmt.Errorf("%w: malformed proof", scheme.ErrBadShare)
	}
	if new(big.Int).SetBytes(rep.Payload).Cmp(sh.X) != 0 {
		c.Drop(i)
		return fmt.Errorf("%w: proved another share than it sent", scheme.ErrBadShare)
	}
	p := &Proof{C: new(big.Int).SetBytes(rep.Proof[0]), Z: new(big.Int).SetBytes(rep.Proof[1])}
	if err := VerifyShare(c.pk, c.em, sh, p); err != nil {
		c.Drop(i)
		if errors.Is(err, ErrBadShare) {
			return fmt.Errorf("%w: %w", scheme.ErrBadShare, err)
		}
		return err
	}
	return nil
}

// NewParticipant returns a node's side of a key: stateless, since RSA keeps no state between
// requests.
func (Scheme) NewParticipant(pk scheme.PublicKey, s scheme.SecretShare) (scheme.Participant, error) {
	p, err := publicOf(pk)
	if err != nil {
		return nil, err
	}
	ks, err := KeyShareOf(s)
	if err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", scheme.ErrInvalidKey, err)
	}
	return &participant{pk: p, ks: ks}, nil
}

type participant struct {
	pk *PublicKey
	ks *KeyShare
}

// Respond computes the share x_i on the payload T (the node builds EM itself, with the key's
// own modulus), and its proof when the request is an audit.
func (p *participant) Respond(_ context.Context, rand io.Reader, req scheme.Request) (scheme.Reply, error) {
	if req.Round > 1 || len(req.Session) != 0 || len(req.Relayed) != 0 {
		return scheme.Reply{}, fmt.Errorf("%w: Shoup RSA signs in one round", scheme.ErrInvalidRequest)
	}
	em, err := EncodePayload(p.pk.Size(), req.Payload)
	if err != nil {
		return scheme.Reply{}, fmt.Errorf("%w: payload: %w", scheme.ErrInvalidRequest, err)
	}
	ss, err := SignShare(p.pk, p.ks, em)
	if err != nil {
		return scheme.Reply{}, err
	}
	rep := scheme.Reply{Payload: ss.X.Bytes()}
	if req.Audit {
		pr, err := Prove(rand, p.pk, p.ks, em, ss)
		if err != nil {
			return scheme.Reply{}, err
		}
		rep.Proof = [][]byte{pr.C.Bytes(), pr.Z.Bytes()}
	}
	return rep, nil
}
