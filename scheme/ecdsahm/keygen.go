package ecdsahm

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"

	"filippo.io/nistec"

	"github.com/tchsm/tchsm/scheme"
)

// KeyGen is one participant's side of the dealerless key generation: a joint-Feldman
// distributed key generation whose Feldman commitment vectors are committed to by hash before
// any is revealed (the "commit, then reveal" key generation of GG18's phase 1 and of the
// honest-majority ECDSA literature), among all n participants, with abort.
//
//	Step(nil)          → round 1, to each other participant j: H_i (the hash of my commitment
//	                     vector C_i = (a_i0·G … a_it·G)) and my share f_i(j), sealed to j
//	Step(round 1 in)   → round 2, to each j: C_i, sealed (authenticated) to j
//	Step(round 2 in)   → done: every C_j matches its H_j and my share from j matches C_j;
//	                     x_i = Σ_j f_j(i), Y = Σ_j C_j0, X_m = Σ_j C_j(m)
//
// The key is x = Σ_j f_j(0), a degree-t Shamir sharing among 1..n (DJNPØ20's key generation
// is [x] ← F_rand and Y = open([x]·G); the Feldman commitments make the opening: Y and the
// X_m are the public polynomial's values). Every participant must take part and behave:
// any missing message, a reveal that does not match its hash, or a share that does not match
// its commitments aborts the run (ErrProtocol, ErrInconsistent naming the dealer for the
// participant that saw it). Nothing is excluded and the run goes on, on purpose: see doc.go on
// bias. A dealer that sends different commitments to different participants makes their
// public keys differ; every participant endorses its PublicKey (Marshal) and the client
// accepts the key only when all n endorsements are of the same bytes.
type KeyGen struct {
	ch      *Channel
	n, t    int
	session []byte
	rnd     io.Reader

	step   int
	f      poly
	cs     []*nistec.P256Point // my commitment vector
	hashes map[int][]byte
	shares map[int]*Scalar // dealer → f_dealer(self)
	pk     *PublicKey
	share  *SecretShare
	err    error
}

var _ interface {
	Step([]scheme.Message) ([]scheme.Message, bool, error)
} = (*KeyGen)(nil)

// NewKeyGen starts participant ch.Self()'s side of the generation of a key of degree t among
// the channel's n participants, for session (the key id: 1 to 256 bytes, unique per key).
// rnd nil is crypto/rand.
func NewKeyGen(ch *Channel, t int, session []byte, rnd io.Reader) (*KeyGen, error) {
	if err := checkParams(ch.n, t); err != nil {
		return nil, err
	}
	if len(session) == 0 || len(session) > 256 {
		return nil, fmt.Errorf("%w: session of %d bytes", ErrInvalidParams, len(session))
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	return &KeyGen{ch: ch, n: ch.n, t: t, session: append([]byte(nil), session...), rnd: rnd,
		hashes: map[int][]byte{}, shares: map[int]*Scalar{}}, nil
}

func (g *KeyGen) commitHash(dealer int, cs []byte) []byte {
	h := sha256.New()
	h.Write([]byte("tchsm/ecdsahm/keygen/commit/v1"))
	h.Write(appendLP(nil, g.session))
	h.Write(binary.BigEndian.AppendUint16(nil, uint16(dealer)))
	h.Write([]byte{byte(g.n), byte(g.t)})
	h.Write(cs)
	return h.Sum(nil)
}

func (g *KeyGen) everyoneElse() []int {
	out := make([]int, 0, g.n-1)
	for j := 1; j <= g.n; j++ {
		if j != g.ch.self {
			out = append(out, j)
		}
	}
	return out
}

// Step runs the next step (see the type's doc). After an error the run is over.
func (g *KeyGen) Step(in []scheme.Message) (out []scheme.Message, done bool, err error) {
	if g.err != nil {
		return nil, false, g.err
	}
	switch g.step {
	case 0:
		out, err = g.round1(in)
	case 1:
		out, err = g.round2(in)
	case 2:
		err = g.finish(in)
		done = err == nil
	default:
		err = fmt.Errorf("%w: key generation already done", ErrProtocol)
	}
	if err != nil {
		g.abort(err)
		return nil, false, err
	}
	g.step++
	return out, done, nil
}

func (g *KeyGen) abort(err error) {
	g.err = err
	g.f.wipe()
	for _, s := range g.shares {
		s.Wipe()
	}
}

func (g *KeyGen) encodeCommitments() []byte {
	b := make([]byte, 0, PointSize*(g.t+1))
	for _, c := range g.cs {
		b = append(b, c.Bytes()...)
	}
	return b
}

func (g *KeyGen) round1(in []scheme.Message) ([]scheme.Message, error) {
	if len(in) != 0 {
		return nil, fmt.Errorf("%w: messages before the first round", ErrProtocol)
	}
	f, err := randomPoly(g.rnd, g.t, nil)
	if err != nil {
		return nil, err
	}
	if f[0].IsZero() {
		return nil, fmt.Errorf("%w: zero secret drawn", ErrProtocol) // probability 2^-256
	}
	g.f = f
	for _, a := range f {
		g.cs = append(g.cs, baseMul(a))
	}
	h := g.commitHash(g.ch.self, g.encodeCommitments())
	g.hashes[g.ch.self] = h
	g.shares[g.ch.self] = f.eval(g.ch.self)
	return sealAll(g.ch, protoKeyGen, g.session, 1, g.everyoneElse(), func(j int) []byte {
		s := f.eval(j)
		defer s.Wipe()
		body := append(append([]byte(nil), h...), s.Bytes()...)
		if keygenHook != nil {
			keygenHook(g, 1, j, body)
		}
		return body
	})
}

func (g *KeyGen) round2(in []scheme.Message) ([]scheme.Message, error) {
	got, err := collect(g.ch, protoKeyGen, g.session, 1, in, g.everyoneElse(), sha256.Size+ScalarSize)
	if err != nil {
		return nil, err
	}
	for j, body := range got {
		s, err := DecodeScalar(body[sha256.Size:])
		clear(body[sha256.Size:])
		if err != nil {
			return nil, fmt.Errorf("%w: participant %d's share: %w", ErrProtocol, j, err)
		}
		g.hashes[j] = append([]byte(nil), body[:sha256.Size]...)
		g.shares[j] = s
	}
	cs := g.encodeCommitments()
	return sealAll(g.ch, protoKeyGen, g.session, 2, g.everyoneElse(), func(j int) []byte {
		if keygenHook == nil {
			return cs
		}
		b := append([]byte(nil), cs...)
		keygenHook(g, 2, j, b)
		return b
	})
}

func (g *KeyGen) finish(in []scheme.Message) error {
	got, err := collect(g.ch, protoKeyGen, g.session, 2, in, g.everyoneElse(), PointSize*(g.t+1))
	if err != nil {
		return err
	}
	got[g.ch.self] = g.encodeCommitments()
	sum := make([]*nistec.P256Point, g.t+1) // Σ_j C_jk
	for k := range sum {
		sum[k] = nistec.NewP256Point()
	}
	x := NewScalar()
	self := ScalarFromUint(uint(g.ch.self))
	for j := 1; j <= g.n; j++ {
		body := got[j]
		if !ctEqual(g.commitHash(j, body), g.hashes[j]) {
			return fmt.Errorf("%w: participant %d's commitments do not match the hash it sent first", ErrInconsistent, j)
		}
		cj := make([]*nistec.P256Point, g.t+1)
		for k := range cj {
			if cj[k], err = DecodePoint(body[k*PointSize : (k+1)*PointSize]); err != nil {
				return fmt.Errorf("%w: participant %d's commitment %d: %w", ErrProtocol, j, k, err)
			}
		}
		// Feldman's check of my share from j: f_j(self)·G = Σ_k self^k·C_jk.
		if j != g.ch.self {
			want := nistec.NewP256Point()
			pow := ScalarFromUint(1)
			for k := range cj {
				want.Add(want, mul(cj[k], pow))
				pow.Mul(pow, self)
			}
			if !pointEqual(baseMul(g.shares[j]), want) {
				return fmt.Errorf("%w: participant %d's share does not match its commitments", ErrInconsistent, j)
			}
		}
		for k := range cj {
			sum[k].Add(sum[k], cj[k])
		}
		x.Add(x, g.shares[j])
	}
	// Y = Σ_j C_j0 and X_m = Σ_k m^k·(Σ_j C_jk).
	xs := make([]*nistec.P256Point, g.n)
	for m := 1; m <= g.n; m++ {
		xs[m-1] = nistec.NewP256Point()
		pow := ScalarFromUint(1)
		ms := ScalarFromUint(uint(m))
		for k := range sum {
			xs[m-1].Add(xs[m-1], mul(sum[k], pow))
			pow.Mul(pow, ms)
		}
	}
	pk, err := newPublicKey(g.n, g.t, sum[0], xs)
	if err != nil {
		return fmt.Errorf("%w: outcome: %w", ErrProtocol, err)
	}
	sh := &SecretShare{index: g.ch.self, x: x}
	if err := sh.Check(pk); err != nil {
		return err
	}
	g.pk, g.share = pk, sh
	g.f.wipe()
	for _, s := range g.shares {
		s.Wipe()
	}
	return nil
}

// Result returns the public key and this participant's share once Step reported done.
func (g *KeyGen) Result() (*PublicKey, *SecretShare, error) {
	if g.pk == nil {
		return nil, nil, fmt.Errorf("%w: key generation not done", ErrProtocol)
	}
	return g.pk, g.share, nil
}

// keygenHook, in tests, plays a cheating dealer. Nil outside tests.
var keygenHook func(g *KeyGen, round int, to int, body []byte)
