package dkg

import (
	"fmt"
	"io"
	"slices"

	"go.dedis.ch/kyber/v3"
	"go.dedis.ch/kyber/v3/share"
	pedersen "go.dedis.ch/kyber/v3/share/dkg/pedersen"
	vss "go.dedis.ch/kyber/v3/share/vss/pedersen"

	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/frost"
)

// reshare is what a resharing adds to a DKG: the key being reshared.
type reshare struct {
	old      *frost.PublicKey
	oldY     []kyber.Point // oldY[j-1]: participant j's verification share of the old polynomial
	selfDeal *pedersen.Deal
}

// NewReshare starts participant self's (1..n) side of the resharing of key old (k-of-n, its
// record endorsed by at least k nodes) to the participants of p (n = len(p.Public), the
// manifest's DKG keys as they are now: a replaced node's index carries its new identity's key).
// It is Wong, Wang and Wing's verifiable secret redistribution as kyber v3.1.0's
// share/dkg/pedersen implements it (Config.OldNodes and NewNodes both p.Public, OldThreshold
// and Threshold k): every participant holding a share of old (held, not nil) deals it on a
// fresh random polynomial of degree k-1 to every participant, itself included; every
// participant, holder or not, receives. The steps and messages are NewDKG's (Step, with the
// same signed, session-bound, recipient-encrypted envelopes); p.Session must name this run
// alone (the callers bind it to the key, its epoch and a random run id).
//
// The outcome is the same group key, a new share for every participant that took part, and new
// verification shares for all: the new polynomial is a combination of the dealers' random
// ones, so an old share (a lost node's, say) combines with no new one. A dealer is qualified
// as in the DKG (its deal certified by kyber and nobody's blame), and moreover only when its
// polynomial's constant commitment is its verification share in old: a holder that deals
// anything but its share is left out by every honest participant. The new shares are the
// Lagrange combination, at 0, of the subshares of the first k qualified dealers (by index), so
// every honest participant uses the same dealers and computes the same record; Qualified
// returns those k. Fewer than k qualified dealers is frost.ErrDKG: at least k holders must
// take part and be honest.
func NewReshare(self int, p scheme.DKGParams, old *frost.PublicKey, held *frost.SecretShare, rnd io.Reader) (*DKG, error) {
	if old == nil {
		return nil, fmt.Errorf("%w: %w: no key to reshare", scheme.ErrInvalidKey, frost.ErrDKG)
	}
	k, n := old.Threshold()
	if n != len(p.Public) {
		return nil, fmt.Errorf("%w: %w: a key of %d shares reshared among %d participants", scheme.ErrInvalidKey, frost.ErrDKG, n, len(p.Public))
	}
	d, err := newParticipant(self, k, p)
	if err != nil {
		return nil, err
	}
	re := &reshare{old: old}
	var ys []*share.PubShare
	for j := 1; j <= n; j++ {
		b, err := old.VerificationShare(j)
		if err != nil {
			return nil, fmt.Errorf("%w: %w: %w", scheme.ErrInvalidKey, frost.ErrDKG, err)
		}
		y, err := d.point(b)
		if err != nil {
			return nil, fmt.Errorf("%w: %w: verification share %d: %w", scheme.ErrInvalidKey, frost.ErrDKG, j, err)
		}
		re.oldY = append(re.oldY, y)
		ys = append(ys, &share.PubShare{I: j - 1, V: y})
	}
	// kyber wants the public polynomial's coefficients; the record holds its values. Every
	// value must lie on the polynomial the first k make, whose constant is the group key.
	poly, err := share.RecoverPubPoly(d.suite, ys, k, n)
	if err != nil {
		return nil, fmt.Errorf("%w: %w: %v", scheme.ErrInvalidKey, frost.ErrDKG, err)
	}
	group, err := d.point(old.Bytes())
	if err != nil || !poly.Commit().Equal(group) {
		return nil, fmt.Errorf("%w: %w: the verification shares do not interpolate to the group key", scheme.ErrInvalidKey, frost.ErrDKG)
	}
	for j, y := range re.oldY {
		if !poly.Eval(j).V.Equal(y) {
			return nil, fmt.Errorf("%w: %w: verification share %d is off the polynomial", scheme.ErrInvalidKey, frost.ErrDKG, j+1)
		}
	}
	_, coeffs := poly.Info()
	c := &pedersen.Config{Suite: d.suite, Longterm: d.long, OldNodes: d.pubs, NewNodes: d.pubs, Threshold: k, OldThreshold: k, Reader: rnd}
	if held != nil {
		if held.Index() != self {
			return nil, fmt.Errorf("%w: %w: share %d held by participant %d", scheme.ErrInvalidKey, frost.ErrDKG, held.Index(), self)
		}
		if err := held.Check(old); err != nil {
			return nil, fmt.Errorf("%w: %w: the share held: %w", scheme.ErrInvalidKey, frost.ErrDKG, err)
		}
		sb := held.Bytes()
		v, err := d.scalar(sb)
		clear(sb)
		if err != nil {
			return nil, fmt.Errorf("%w: %w: %w", scheme.ErrInvalidKey, frost.ErrDKG, err)
		}
		c.Share = &pedersen.DistKeyShare{Commits: coeffs, Share: &share.PriShare{I: self - 1, V: v}}
	} else {
		c.PublicCoeffs = coeffs
	}
	var gen *pedersen.DistKeyGenerator
	if err := safe(func() (err error) { gen, err = pedersen.NewDistKeyHandler(c); return }); err != nil {
		return nil, fmt.Errorf("%w: %v", frost.ErrDKG, err)
	}
	if c.Share != nil {
		c.Share.Share.V.Zero() // kyber's dealer keeps its own copy in its polynomial
	}
	d.gen, d.re = gen, re
	return d, nil
}

// reshareResult combines the first k qualified dealers' subshares: this participant's new
// share, the new public polynomial and from it every verification share, with the old group key.
func (d *DKG) reshareResult() error {
	deals := map[int]*vss.Deal{}
	var qual []int
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
		if int(deal.T) != d.k || len(deal.Commitments) != d.k || !d.goodCommitments(deal.Commitments) {
			continue
		}
		// A holder deals its own share: anything else is not a resharing of this key.
		if !deal.Commitments[0].Equal(d.re.oldY[i]) {
			continue
		}
		pp := share.NewPubPoly(d.suite, nil, deal.Commitments)
		if deal.SecShare.I != d.self-1 || !pp.Check(deal.SecShare) {
			return fmt.Errorf("%w: the subshare from dealer %d does not match its commitments", frost.ErrDKG, i+1)
		}
		deals[i+1] = deal
		qual = append(qual, i+1)
	}
	if len(qual) < d.k {
		return fmt.Errorf("%w: resharing: %d qualified dealers %v, need %d holders of the key; blamed: %s", frost.ErrDKG, len(qual), qual, d.k, d.blameString())
	}
	use := qual[:d.k]
	sum := d.suite.Scalar().Zero()
	defer sum.Zero()
	coeffs := make([]kyber.Point, d.k)
	for c := range coeffs {
		coeffs[c] = d.suite.Point().Null()
	}
	for _, j := range use {
		l := d.lagrange0(use, j)
		sum.Add(sum, d.suite.Scalar().Mul(l, deals[j].SecShare.V))
		for c := range coeffs {
			coeffs[c] = d.suite.Point().Add(coeffs[c], d.suite.Point().Mul(l, deals[j].Commitments[c]))
		}
	}
	poly := share.NewPubPoly(d.suite, nil, coeffs)
	oldGroup := d.re.old.Bytes()
	group, err := poly.Commit().MarshalBinary()
	if err != nil || !slices.Equal(group, oldGroup) {
		// Cannot happen with qualified dealers (each constant is checked): a bug, not a liar.
		return fmt.Errorf("%w: resharing: the new polynomial's constant is not the group key", frost.ErrDKG)
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
	if err != nil {
		return fmt.Errorf("%w: share: %w", frost.ErrDKG, err)
	}
	if err := sh.Check(pk); err != nil {
		sh.Wipe()
		return fmt.Errorf("%w: %w", frost.ErrDKG, err)
	}
	d.pk, d.share, d.qual = pk, sh, slices.Clone(use)
	return nil
}

// lagrange0 is the Lagrange coefficient of participant j (1-based) at 0 over the set xs.
func (d *DKG) lagrange0(xs []int, j int) kyber.Scalar {
	num, den := d.suite.Scalar().One(), d.suite.Scalar().One()
	for _, m := range xs {
		if m == j {
			continue
		}
		num.Mul(num, d.suite.Scalar().SetInt64(int64(m)))
		den.Mul(den, d.suite.Scalar().SetInt64(int64(m-j)))
	}
	return num.Div(num, den)
}
