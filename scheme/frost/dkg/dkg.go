package dkg

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"slices"
	"sort"

	"filippo.io/edwards25519"
	"go.dedis.ch/kyber/v3"
	kyed "go.dedis.ch/kyber/v3/group/edwards25519"
	"go.dedis.ch/kyber/v3/share"
	pedersen "go.dedis.ch/kyber/v3/share/dkg/pedersen"
	vss "go.dedis.ch/kyber/v3/share/vss/pedersen"
	"go.dedis.ch/kyber/v3/sign/schnorr"

	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/frost"
)

// DKG is one participant's side of Pedersen's distributed key generation, kyber v3.1.0's
// share/dkg/pedersen on kyber's edwards25519 group (the Ed25519 group: a kyber scalar is
// SerializeScalar's 32 little-endian bytes, a kyber point RFC 8032's encoding, so the outcome
// is a FROST key and an Ed25519 public key as they are). kyber's participant i (0-based) is
// tchsm's participant i+1 and its share is f(i+1), FROST's identifier.
//
// It runs in four steps (scheme.KeyGeneration), the coordinator (or the nodes' own queues)
// delivering each step's messages to their recipients for the next:
//
//	Step(nil)              → deals, one to each other participant (encrypted to it by kyber)
//	Step(deals to me)      → one broadcast: my responses to the deals, and my blames
//	Step(responses)        → one broadcast: justifications of my deal, if complained about, and blames
//	Step(justifications)   → done: Result
//
// A participant that sends nothing in a step is absent for that step (the synchronous model's
// timeout is the end of the step). A dealer is excluded from the key (not from holding a share
// of it) when its deal is not certified by kyber (too many absent verifiers, an unjustified
// complaint, a bad justification) or when any participant blames it: its deal to the blamer
// was missing, failed its signature, could not be decrypted or decoded (kyber cannot complain
// about those), or other participants' responses show it dealt different commitments to
// different participants. A blame is broadcast and signed, so every honest participant
// excludes the same dealers; a false blame can only exclude an honest dealer (liveness, never
// secrecy), and names its author (Blames). The key needs at least k qualified dealers, k of
// which are then at least one honest one when fewer than k are corrupt; fewer is frost.ErrDKG.
//
// A participant that took no part holds no share; the record still lists its verification
// share, and a resharing (NewReshare) can give it one.
type DKG struct {
	self, k, n int
	session    []byte
	params     scheme.DKGParams
	suite      *kyed.SuiteEd25519
	long       kyber.Scalar
	pubs       []kyber.Point
	gen        *pedersen.DistKeyGenerator

	step      int
	blames    map[int][]int     // dealer (1-based) → who blamed it
	justified map[int]*vss.Deal // dealer (0-based) → the deal it revealed for me
	dealt     map[int]bool      // dealers (1-based) whose deal reached me
	pk        *frost.PublicKey
	share     *frost.SecretShare
	qual      []int
	err       error
	re        *reshare // a resharing (NewReshare); nil for a key generation
}

var _ scheme.KeyGeneration = (*DKG)(nil)

// GenerateDKGKey makes a long-term DKG key pair (for the manifest): a kyber edwards25519
// scalar and point, 32 bytes each.
func GenerateDKGKey(rnd io.Reader) (secret, public []byte, err error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	var wide [64]byte
	if _, err := io.ReadFull(rnd, wide[:]); err != nil {
		return nil, nil, fmt.Errorf("frost: reading randomness: %w", err)
	}
	s, err := edwards25519.NewScalar().SetUniformBytes(wide[:])
	clear(wide[:])
	if err != nil {
		return nil, nil, err
	}
	return s.Bytes(), new(edwards25519.Point).ScalarBaseMult(s).Bytes(), nil
}

// NewDKG starts participant self's (1..n) side of a k-of-n key generation with the trusted
// parameters p (session, this participant's long-term secret, every participant's long-term
// public key; n = len(p.Public)). rand adds to crypto/rand's entropy for the dealer's
// polynomial.
func NewDKG(self, k int, p scheme.DKGParams, rnd io.Reader) (*DKG, error) {
	d, err := newParticipant(self, k, p)
	if err != nil {
		return nil, err
	}
	c := &pedersen.Config{Suite: d.suite, Longterm: d.long, NewNodes: d.pubs, Threshold: k}
	if rnd != nil {
		c.Reader = rnd // mixed with crypto/rand by kyber
	}
	gen, err := pedersen.NewDistKeyHandler(c)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", frost.ErrDKG, err)
	}
	d.gen = gen
	return d, nil
}

// newParticipant checks the trusted parameters of a key generation or a resharing and decodes
// the long-term keys.
func newParticipant(self, k int, p scheme.DKGParams) (*DKG, error) {
	n := len(p.Public)
	if n < 2 || n > frost.MaxPlayers || k < 2 || k > n || self < 1 || self > n {
		// kyber's VSS needs t ≥ 2: a 1-of-n key would be a key every node holds whole.
		return nil, fmt.Errorf("%w: %w: self=%d k=%d n=%d (need 2 ≤ k ≤ n ≤ %d)", scheme.ErrInvalidKey, frost.ErrDKG, self, k, n, frost.MaxPlayers)
	}
	if len(p.Session) == 0 || len(p.Session) > 256 {
		return nil, fmt.Errorf("%w: %w: session of %d bytes", scheme.ErrInvalidKey, frost.ErrDKG, len(p.Session))
	}
	d := &DKG{self: self, k: k, n: n, session: append([]byte(nil), p.Session...), params: p, suite: kyed.NewBlakeSHA256Ed25519(),
		blames: map[int][]int{}, justified: map[int]*vss.Deal{}, dealt: map[int]bool{}}
	long, err := d.scalar(p.Secret)
	if err != nil {
		return nil, fmt.Errorf("%w: %w: long-term secret: %w", scheme.ErrInvalidKey, frost.ErrDKG, err)
	}
	d.long = long
	seen := map[string]bool{}
	for i, b := range p.Public {
		pt, err := d.point(b)
		if err != nil {
			return nil, fmt.Errorf("%w: %w: long-term key of %d: %w", scheme.ErrInvalidKey, frost.ErrDKG, i+1, err)
		}
		if seen[string(b)] {
			return nil, fmt.Errorf("%w: %w: long-term key of %d repeated", scheme.ErrInvalidKey, frost.ErrDKG, i+1)
		}
		seen[string(b)] = true
		d.pubs = append(d.pubs, pt)
	}
	if !d.suite.Point().Mul(long, nil).Equal(d.pubs[self-1]) {
		return nil, fmt.Errorf("%w: %w: the long-term secret is not participant %d's", scheme.ErrInvalidKey, frost.ErrDKG, self)
	}
	return d, nil
}

// Step runs the next step (see the type's doc).
func (d *DKG) Step(in []scheme.Message) (out []scheme.Message, done bool, err error) {
	if d.err != nil {
		return nil, false, d.err
	}
	switch d.step {
	case 0:
		out, err = d.deals(in)
	case 1:
		out, err = d.respond(in)
	case 2:
		out, err = d.justify(in)
	case 3:
		err = d.finish(in)
		done = err == nil
	default:
		err = fmt.Errorf("%w: key generation already done", frost.ErrDKG)
	}
	if err != nil {
		d.err = err
		return nil, false, err
	}
	d.step++
	return out, done, nil
}

func (d *DKG) blame(dealer, by int) {
	if !slices.Contains(d.blames[dealer], by) {
		d.blames[dealer] = append(d.blames[dealer], by)
	}
}

// inbound filters messages to this participant from a valid other participant, opened.
func (d *DKG) inbound(in []scheme.Message, broadcast bool, tag byte, fn func(from int, body []byte)) {
	seen := map[int]bool{}
	for _, m := range in {
		if m.From < 1 || m.From > d.n || m.From == d.self || seen[m.From] {
			continue
		}
		if broadcast != (m.To == 0) || (!broadcast && m.To != d.self) {
			continue
		}
		body, err := d.open(m.From, m.To, tag, m.Payload)
		if err != nil {
			continue // not attributable to its claimed sender: as if absent
		}
		seen[m.From] = true
		fn(m.From, body)
	}
}

func (d *DKG) deals(in []scheme.Message) ([]scheme.Message, error) {
	if len(in) != 0 {
		return nil, fmt.Errorf("%w: messages before the first step", frost.ErrDKG)
	}
	var deals map[int]*pedersen.Deal
	if err := safe(func() (err error) { deals, err = d.gen.Deals(); return }); err != nil {
		return nil, fmt.Errorf("%w: dealing: %v", frost.ErrDKG, err)
	}
	idx := make([]int, 0, len(deals))
	for i := range deals {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	var out []scheme.Message
	for _, i := range idx {
		if i < 0 || i >= d.n {
			continue
		}
		if i == d.self-1 {
			// A resharing dealer verifies its own deal like every other recipient (kyber
			// expects its response); a key generation's dealer processed it already.
			if d.re != nil {
				d.re.selfDeal = deals[i]
			}
			continue
		}
		body := encodeDeal(deals[i])
		if equivocate != nil { // tests: a misbehaving dealer
			if b := equivocate(d, i+1); b != nil {
				body = b
			}
		}
		if corrupt != nil {
			corrupt(d.self, i+1, body)
		}
		p, err := d.seal(i+1, tagDeal, body)
		if err != nil {
			return nil, err
		}
		out = append(out, scheme.Message{From: d.self, To: i + 1, Payload: p})
	}
	if d.re == nil || d.re.selfDeal != nil {
		d.dealt[d.self] = true
	}
	return out, nil
}

func (d *DKG) respond(in []scheme.Message) ([]scheme.Message, error) {
	var rs []*pedersen.Response
	process := func(from int, dd *pedersen.Deal) {
		var r *pedersen.Response
		if err := safe(func() (err error) { r, err = d.gen.ProcessDeal(dd); return }); err != nil || r == nil {
			d.blame(from, d.self) // signed by the dealer yet unusable
			return
		}
		rs = append(rs, r)
	}
	if d.re != nil && d.re.selfDeal != nil {
		process(d.self, d.re.selfDeal)
		d.re.selfDeal = nil
	}
	d.inbound(in, false, tagDeal, func(from int, body []byte) {
		d.dealt[from] = true
		dd, err := decodeDeal(body)
		if err != nil || int(dd.Index) != from-1 {
			d.blame(from, d.self)
			return
		}
		process(from, dd)
	})
	for j := 1; j <= d.n; j++ {
		if !d.dealt[j] {
			d.blame(j, d.self)
		}
	}
	p, err := d.seal(0, tagResponses, encodeResponses(rs, d.myBlames()))
	if err != nil {
		return nil, err
	}
	return []scheme.Message{{From: d.self, To: 0, Payload: p}}, nil
}

func (d *DKG) myBlames() []int {
	var out []int
	for j := 1; j <= d.n; j++ {
		if slices.Contains(d.blames[j], d.self) {
			out = append(out, j)
		}
	}
	return out
}

func (d *DKG) justify(in []scheme.Message) ([]scheme.Message, error) {
	var js []*pedersen.Justification
	d.inbound(in, true, tagResponses, func(from int, body []byte) {
		rs, blames, err := decodeResponses(body, d.n)
		if err != nil {
			return
		}
		for _, j := range blames {
			d.blame(j, from)
		}
		for _, r := range rs {
			// A resharing dealer answers its own deal too (kyber counts that approval); a key
			// generation's dealer never does.
			if int(r.Response.Index) != from-1 || int(r.Index) >= d.n || (d.re == nil && int(r.Index) == from-1) {
				continue
			}
			// A response validly signed by its verifier about another session than the deal
			// this participant holds from the same dealer: the dealer equivocated.
			if v := d.gen.Verifiers()[r.Index]; v != nil && v.SessionID() != nil && !bytes.Equal(v.SessionID(), r.Response.SessionID) {
				if schnorr.Verify(d.suite, d.pubs[from-1], r.Response.Hash(d.suite), r.Response.Signature) == nil {
					d.blame(int(r.Index)+1, d.self)
				}
				continue
			}
			var j *pedersen.Justification
			if err := safe(func() (err error) { j, err = d.gen.ProcessResponse(r); return }); err == nil && j != nil {
				js = append(js, j)
			}
		}
	})
	body, err := d.encodeJustifications(js, d.myBlames())
	if err != nil {
		return nil, err
	}
	p, err := d.seal(0, tagJustifications, body)
	if err != nil {
		return nil, err
	}
	return []scheme.Message{{From: d.self, To: 0, Payload: p}}, nil
}

func (d *DKG) finish(in []scheme.Message) error {
	d.inbound(in, true, tagJustifications, func(from int, body []byte) {
		js, blames, err := d.decodeJustifications(body)
		if err != nil {
			return
		}
		for _, j := range blames {
			d.blame(j, from)
		}
		for _, j := range js {
			if int(j.Index) != from-1 {
				continue
			}
			if err := safe(func() error { return d.gen.ProcessJustification(j) }); err == nil && int(j.Justification.Index) == d.self-1 {
				d.justified[int(j.Index)] = j.Justification.Deal
			}
		}
	})
	d.gen.SetTimeout()
	if d.re != nil {
		return d.reshareResult()
	}
	return d.result()
}

// result sums the qualified deals: this participant's share, and the public polynomial whose
// values are the group key and the verification shares.
func (d *DKG) result() error {
	var (
		sum  = d.suite.Scalar().Zero()
		poly *share.PubPoly
		qual []int
	)
	for i := 0; i < d.n; i++ {
		v := d.gen.Verifiers()[uint32(i)]
		if v == nil || !v.DealCertified() || len(d.blames[i+1]) > 0 {
			continue
		}
		deal := v.Deal()
		if j := d.justified[i]; j != nil {
			deal = j
		}
		if deal == nil || deal.SecShare == nil {
			return fmt.Errorf("%w: dealer %d qualified but its deal is missing here", frost.ErrDKG, i+1)
		}
		// kyber takes the degree from the deal itself: a dealer whose polynomial is not of
		// degree k-1, or whose commitments are not all in the prime-order subgroup, is left
		// out (every honest participant holds the same commitments, so all leave it out).
		if int(deal.T) != d.k || len(deal.Commitments) != d.k || !d.goodCommitments(deal.Commitments) {
			continue
		}
		pp := share.NewPubPoly(d.suite, nil, deal.Commitments)
		if deal.SecShare.I != d.self-1 || !pp.Check(deal.SecShare) {
			return fmt.Errorf("%w: the share from dealer %d does not match its commitments", frost.ErrDKG, i+1)
		}
		sum.Add(sum, deal.SecShare.V)
		if poly == nil {
			poly = pp
		} else {
			var err error
			if poly, err = poly.Add(pp); err != nil {
				return fmt.Errorf("%w: %v", frost.ErrDKG, err)
			}
		}
		qual = append(qual, i+1)
	}
	if len(qual) < d.k {
		return fmt.Errorf("%w: %d qualified dealers %v, need %d; blamed: %s", frost.ErrDKG, len(qual), qual, d.k, d.blameString())
	}
	group, err := poly.Commit().MarshalBinary()
	if err != nil {
		return fmt.Errorf("%w: %v", frost.ErrDKG, err)
	}
	shares := make([][]byte, d.n)
	for i := range shares {
		if shares[i], err = poly.Eval(i).V.MarshalBinary(); err != nil {
			return fmt.Errorf("%w: %v", frost.ErrDKG, err)
		}
	}
	pk, err := frost.NewPublicKey(d.k, group, shares)
	if err != nil {
		return fmt.Errorf("%w: outcome: %w", frost.ErrDKG, err)
	}
	sb, err := sum.MarshalBinary()
	if err != nil {
		return fmt.Errorf("%w: %v", frost.ErrDKG, err)
	}
	sh, err := frost.NewSecretShare(d.self, sb)
	clear(sb)
	sum.Zero()
	if err != nil {
		return fmt.Errorf("%w: share: %w", frost.ErrDKG, err)
	}
	if err := sh.Check(pk); err != nil {
		return fmt.Errorf("%w: %w", frost.ErrDKG, err)
	}
	d.pk, d.share, d.qual = pk, sh, qual
	return nil
}

func (d *DKG) goodCommitments(cs []kyber.Point) bool {
	for _, c := range cs {
		b, err := c.MarshalBinary()
		if err != nil {
			return false
		}
		if _, err := frost.DecodeElement(b); err != nil {
			return false
		}
	}
	return true
}

func (d *DKG) blameString() string {
	var b bytes.Buffer
	for j := 1; j <= d.n; j++ {
		if len(d.blames[j]) > 0 {
			fmt.Fprintf(&b, "%d by %v; ", j, d.blames[j])
		}
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// Result returns the public key and this participant's share once Step reported done.
func (d *DKG) Result() (scheme.PublicKey, scheme.SecretShare, error) {
	if d.pk == nil {
		return nil, nil, fmt.Errorf("%w: not done", frost.ErrDKG)
	}
	return d.pk, d.share, nil
}

// Qualified returns the dealers (1-based) whose deals make the key.
func (d *DKG) Qualified() []int { return append([]int(nil), d.qual...) }

// Blames returns, for each dealer blamed, who blamed it.
func (d *DKG) Blames() map[int][]int {
	out := map[int][]int{}
	for k, v := range d.blames {
		out[k] = append([]int(nil), v...)
	}
	return out
}

// Test hooks for misbehaving dealers; nil outside tests.
var (
	corrupt    func(self, to int, body []byte)
	equivocate func(d *DKG, to int) []byte
)

// safe runs a kyber call, turning a panic (kyber panics on some malformed input, and decodes
// deals with a reflection-based protobuf decoder) into an error.
func safe(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f()
}
