package ecdsahm

import (
	"crypto/rand"
	"fmt"
	"io"

	"filippo.io/nistec"

	"github.com/tchsm/tchsm/scheme"
)

// PresignParams name one presigning run: trusted by the node only as far as it checks them
// (the key's n and t come from its own key record, never from here).
type PresignParams struct {
	// KeyID names the key (its record's id); every message and presignature is bound to it.
	KeyID []byte
	// Set is the signer set: exactly 2t+1 participants, strictly increasing. The
	// presignatures can only ever be used by this set.
	Set []int
	// Batch names the run (chosen by the coordinator, 16 to 64 bytes, never used twice for a
	// key; the node's pool refuses a presignature id it already holds). Presignature b of the
	// run has the id Batch || b (u32, big-endian).
	Batch []byte
	// Count is the number of presignatures, 1..MaxBatch.
	Count int
}

// Presign is one participant's side of a presigning run, DJNPØ20's preprocessing of signature
// tuples, three rounds for a batch of Count presignatures among the 2t+1 participants of Set:
//
//	Step(nil)        → round 1, to each j of the set, sealed: for each presignature, my shares
//	                   of fresh random sharings: k, a of degree t (F_rand), b, e of degree 2t
//	                   with constant term 0 (F_zero)
//	Step(round 1 in) → sum the dealings: k_i, a_i, b_i, e_i; R_i = k_i·G; w_i = a_i·k_i + b_i
//	                   (a degree-2t sharing of w = a·k, re-randomised by b); round 2, to each j:
//	                   (R_i, w_i)
//	Step(round 2 in) → R = open([k]·G) with error detection (all 2t+1 on one degree-t
//	                   polynomial), R ≠ ∞, r = x(R) mod n ≠ 0; w = open([w]) (degree 2t: all
//	                   2t+1 shares, no redundancy), w ≠ 0; round 3, to each j: W_i = a_i·R
//	Step(round 3 in) → W = open([a]·R) with error detection, and the check W = w·G, which
//	                   catches a wrong w_i (w·G = a·k·G = a·R only for the right w; a is
//	                   uniform and hidden, so a cheater's offset passes with probability 0);
//	                   done: c_i = a_i·w^-1 (a share of k^-1), β_i = c_i·x_i (a degree-2t share
//	                   of k^-1·x), e_i; Result
//
// This is the protocol as specified step by step in near/mpc's docs/ecdsa/robust_ecdsa
// (DJNPØ20 with the online work moved into the preprocessing), without its extra zero sharing
// d (α_i = c_i + d_i; e alone re-randomises the share s_i) and without its presignature
// re-randomisation and key derivation (Groth–Shoup: tchsm derives no keys).
//
// Any inconsistency aborts the run (ErrInconsistent): the honest-majority protocol is secure
// with abort, and an opening that fails its check cannot say who lied. A missing or repeated
// message is ErrProtocol. After an error the run is over and its secrets wiped.
type Presign struct {
	ch    *Channel
	pk    *PublicKey
	share *SecretShare
	p     PresignParams
	rnd   io.Reader

	session []byte
	others  []int
	step    int
	// per presignature
	own     [][4]*Scalar // my dealing's value at my own index: k, a, b, e
	polys   [][4]poly    // my dealing, kept only for round 1
	k, a, e []*Scalar
	w       []*Scalar // w_i, then the opened w
	rs      []*nistec.P256Point
	pubR    []*nistec.P256Point
	myW     []*nistec.P256Point // W_i = a_i·R
	out     []*Presignature
	err     error
}

// NewPresign starts participant ch.Self()'s side of a presigning run for the key pk (decoded
// from the node's own record) with its share.
func NewPresign(ch *Channel, pk *PublicKey, share *SecretShare, p PresignParams, rnd io.Reader) (*Presign, error) {
	if ch.n != pk.n || share.index != ch.self {
		return nil, fmt.Errorf("%w: channel of %d/%d for share %d of an n=%d key", ErrInvalidParams, ch.self, ch.n, share.index, pk.n)
	}
	if err := checkSet(p.Set, pk.n, pk.t, ch.self); err != nil {
		return nil, err
	}
	if len(p.KeyID) == 0 || len(p.KeyID) > 256 || len(p.Batch) < 16 || len(p.Batch) > 64 {
		return nil, fmt.Errorf("%w: key id of %d bytes, batch id of %d", ErrInvalidParams, len(p.KeyID), len(p.Batch))
	}
	if p.Count < 1 || p.Count > MaxBatch {
		return nil, fmt.Errorf("%w: batch of %d presignatures (1..%d)", ErrInvalidParams, p.Count, MaxBatch)
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	p.KeyID = append([]byte(nil), p.KeyID...)
	p.Set = append([]int(nil), p.Set...)
	p.Batch = append([]byte(nil), p.Batch...)
	session := appendLP(nil, p.KeyID)
	session = appendLP(session, p.Batch)
	session = append(session, encodeSet(p.Set)...)
	return &Presign{ch: ch, pk: pk, share: share, p: p, rnd: rnd, session: session, others: others(p.Set, ch.self)}, nil
}

// Step runs the next step (see the type's doc).
func (s *Presign) Step(in []scheme.Message) (out []scheme.Message, done bool, err error) {
	if s.err != nil {
		return nil, false, s.err
	}
	switch s.step {
	case 0:
		out, err = s.round1(in)
	case 1:
		out, err = s.round2(in)
	case 2:
		out, err = s.round3(in)
	case 3:
		err = s.finish(in)
		done = err == nil
	default:
		err = fmt.Errorf("%w: presigning already done", ErrProtocol)
	}
	if err != nil {
		s.abort(err)
		return nil, false, err
	}
	s.step++
	return out, done, nil
}

func (s *Presign) abort(err error) {
	s.err = err
	s.wipe()
	for _, p := range s.out {
		p.burn()
	}
	s.out = nil
}

func (s *Presign) wipe() {
	for _, ps := range s.polys {
		for _, p := range ps {
			p.wipe()
		}
	}
	s.polys = nil
	for _, o := range s.own {
		for _, v := range o {
			v.Wipe()
		}
	}
	s.own = nil
	for _, v := range [][]*Scalar{s.k, s.a, s.e} {
		for _, x := range v {
			x.Wipe()
		}
	}
	s.k, s.a, s.e = nil, nil, nil
}

const r1Item = 4 * ScalarSize

func (s *Presign) round1(in []scheme.Message) ([]scheme.Message, error) {
	if len(in) != 0 {
		return nil, fmt.Errorf("%w: messages before the first round", ErrProtocol)
	}
	t := s.pk.t
	s.polys = make([][4]poly, s.p.Count)
	s.own = make([][4]*Scalar, s.p.Count)
	zero := NewScalar()
	for b := range s.polys {
		var err error
		ps := &s.polys[b]
		if ps[0], err = randomPoly(s.rnd, t, nil); err != nil { // k
			return nil, err
		}
		if ps[1], err = randomPoly(s.rnd, t, nil); err != nil { // a
			return nil, err
		}
		if ps[2], err = randomPoly(s.rnd, 2*t, zero); err != nil { // b
			return nil, err
		}
		if ps[3], err = randomPoly(s.rnd, 2*t, zero); err != nil { // e
			return nil, err
		}
		for v := range ps {
			s.own[b][v] = ps[v].eval(s.ch.self)
		}
	}
	out, err := sealAll(s.ch, protoPresign, s.session, 1, s.others, func(j int) []byte {
		body := make([]byte, 0, s.p.Count*r1Item)
		for b := range s.polys {
			for _, p := range s.polys[b] {
				v := p.eval(j)
				body = append(body, v.Bytes()...)
				v.Wipe()
			}
		}
		if presignHook != nil {
			presignHook(s, 1, j, body)
		}
		return body
	})
	for _, ps := range s.polys {
		for _, p := range ps {
			p.wipe()
		}
	}
	s.polys = nil
	return out, err
}

const r2Item = PointSize + ScalarSize

func (s *Presign) round2(in []scheme.Message) ([]scheme.Message, error) {
	got, err := collect(s.ch, protoPresign, s.session, 1, in, s.others, s.p.Count*r1Item)
	if err != nil {
		return nil, err
	}
	cnt := s.p.Count
	s.k, s.a, s.e, s.w = make([]*Scalar, cnt), make([]*Scalar, cnt), make([]*Scalar, cnt), make([]*Scalar, cnt)
	s.rs = make([]*nistec.P256Point, cnt)
	bs := make([]*Scalar, cnt)
	defer func() {
		for _, v := range bs {
			v.Wipe()
		}
	}()
	for b := range cnt {
		s.k[b], s.a[b], bs[b], s.e[b] = s.own[b][0].Copy(), s.own[b][1].Copy(), s.own[b][2].Copy(), s.own[b][3].Copy()
	}
	for _, j := range s.others {
		body := got[j]
		for b := range cnt {
			for v, dst := range []*Scalar{s.k[b], s.a[b], bs[b], s.e[b]} {
				off := b*r1Item + v*ScalarSize
				x, err := DecodeScalar(body[off : off+ScalarSize])
				if err != nil {
					clear(body)
					return nil, fmt.Errorf("%w: participant %d's dealing: %w", ErrProtocol, j, err)
				}
				dst.Add(dst, x)
				x.Wipe()
			}
		}
		clear(body)
	}
	for _, o := range s.own {
		for _, v := range o {
			v.Wipe()
		}
	}
	s.own = nil
	for b := range cnt {
		s.rs[b] = baseMul(s.k[b])
		s.w[b] = NewScalar().Mul(s.a[b], s.k[b])
		s.w[b].Add(s.w[b], bs[b])
		s.k[b].Wipe() // k_i is not needed again: R_i and w_i carry what the protocol uses
	}
	body := make([]byte, 0, cnt*r2Item)
	for b := range cnt {
		body = append(body, s.rs[b].Bytes()...)
		body = append(body, s.w[b].Bytes()...)
	}
	return sealAll(s.ch, protoPresign, s.session, 2, s.others, func(j int) []byte { return hooked(s, 2, j, body) })
}

func (s *Presign) round3(in []scheme.Message) ([]scheme.Message, error) {
	got, err := collect(s.ch, protoPresign, s.session, 2, in, s.others, s.p.Count*r2Item)
	if err != nil {
		return nil, err
	}
	set, t, cnt := s.p.Set, s.pk.t, s.p.Count
	l2t := lagrangeAt(set, 0) // degree-2t interpolation over the whole set
	s.pubR = make([]*nistec.P256Point, cnt)
	s.myW = make([]*nistec.P256Point, cnt)
	ws := make([]*Scalar, cnt)
	body := make([]byte, 0, cnt*PointSize)
	for b := range cnt {
		pts := make([]*nistec.P256Point, len(set))
		w := NewScalar()
		for a, j := range set {
			var (
				pt *nistec.P256Point
				wj *Scalar
			)
			if j == s.ch.self {
				pt, wj = s.rs[b], s.w[b]
			} else {
				off := b * r2Item
				if pt, err = DecodePoint(got[j][off : off+PointSize]); err != nil {
					return nil, fmt.Errorf("%w: participant %d's R_i: %w", ErrProtocol, j, err)
				}
				if wj, err = DecodeScalar(got[j][off+PointSize : off+r2Item]); err != nil {
					return nil, fmt.Errorf("%w: participant %d's w_i: %w", ErrProtocol, j, err)
				}
			}
			pts[a] = pt
			w.Add(w, NewScalar().Mul(l2t[a], wj))
		}
		R, err := openInExponent(s.rnd, set, pts, t)
		if err != nil {
			return nil, fmt.Errorf("presignature %d: R: %w", b, err)
		}
		if R.IsInfinity() == 1 {
			return nil, fmt.Errorf("%w: presignature %d: R is the point at infinity", ErrInconsistent, b)
		}
		if r, ok := xScalar(R); !ok || r.IsZero() {
			return nil, fmt.Errorf("%w: presignature %d: r = 0", ErrInconsistent, b)
		}
		if w.IsZero() {
			return nil, fmt.Errorf("%w: presignature %d: w = 0", ErrInconsistent, b)
		}
		s.pubR[b], ws[b] = R, w
		s.myW[b] = mul(R, s.a[b])
		body = append(body, s.myW[b].Bytes()...)
	}
	s.w = ws
	return sealAll(s.ch, protoPresign, s.session, 3, s.others, func(j int) []byte { return hooked(s, 3, j, body) })
}

func (s *Presign) finish(in []scheme.Message) error {
	got, err := collect(s.ch, protoPresign, s.session, 3, in, s.others, s.p.Count*PointSize)
	if err != nil {
		return err
	}
	set, t := s.p.Set, s.pk.t
	out := make([]*Presignature, 0, s.p.Count)
	for b := range s.p.Count {
		pts := make([]*nistec.P256Point, len(set))
		for a, j := range set {
			if j == s.ch.self {
				pts[a] = s.myW[b]
				continue
			}
			if pts[a], err = DecodePoint(got[j][b*PointSize : (b+1)*PointSize]); err != nil {
				return fmt.Errorf("%w: participant %d's W_i: %w", ErrProtocol, j, err)
			}
		}
		W, err := openInExponent(s.rnd, set, pts, t)
		if err != nil {
			return fmt.Errorf("presignature %d: W: %w", b, err)
		}
		if !pointEqual(W, baseMul(s.w[b])) {
			return fmt.Errorf("%w: presignature %d: W ≠ w·G (a wrong share of w)", ErrInconsistent, b)
		}
		winv, ok := NewScalar().InvertVarTime(s.w[b]) // w is public among the set
		if !ok {
			return fmt.Errorf("%w: presignature %d: w = 0", ErrInconsistent, b)
		}
		c := NewScalar().Mul(s.a[b], winv)
		beta := NewScalar().Mul(c, s.share.x)
		r, _ := xScalar(s.pubR[b])
		out = append(out, &Presignature{
			keyID: s.p.KeyID, set: s.p.Set, self: s.ch.self, t: t,
			id: append(append([]byte(nil), s.p.Batch...), u32(uint32(b))...),
			R:  s.pubR[b], r: r, c: c, beta: beta, e: s.e[b].Copy(),
		})
	}
	s.wipe()
	s.out = out
	return nil
}

// Result returns the run's presignatures once Step reported done (each usable once), and
// hands them over: a second call returns none.
func (s *Presign) Result() ([]*Presignature, error) {
	if s.err != nil {
		return nil, s.err
	}
	if s.step != 4 {
		return nil, fmt.Errorf("%w: presigning not done", ErrProtocol)
	}
	out := s.out
	s.out = nil
	return out, nil
}

// presignHook, in tests, plays a cheating participant: it may change a body before it is
// sealed to participant to. Nil outside tests.
var presignHook func(s *Presign, round int, to int, body []byte)

func hooked(s *Presign, round, to int, body []byte) []byte {
	if presignHook == nil {
		return body
	}
	b := append([]byte(nil), body...)
	presignHook(s, round, to, b)
	return b
}
