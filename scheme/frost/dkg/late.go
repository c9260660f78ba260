package dkg

import (
	"fmt"
	"slices"

	"go.dedis.ch/kyber/v3/share"
	vss "go.dedis.ch/kyber/v3/share/vss/pedersen"

	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/frost"
)

// ErrLateShare wraps every reason LateShare gives no share (with frost.ErrDKG).
var ErrLateShare = fmt.Errorf("%w: no late share", frost.ErrDKG)

// LateShare computes the share of participant self (1..n), which took no part in a k-of-n key
// generation, from the deals the qualified dealers addressed to it in the first step (their
// step-0 messages with To == self, kept by whoever relayed the run). p are the trusted
// parameters of that run (session, self's long-term secret, every long-term public key, from
// local configuration); qualified are the dealers (1-based) whose deals make the key, and pk
// the key, both from a record at least k nodes endorsed.
//
// Each qualified dealer must have exactly one deal for self among deals, with a valid envelope
// signature by the dealer over this session; kyber then checks the dealer's signature of the
// deal, decrypts it with self's long-term key, and checks the share against the dealer's
// commitments; as in result(), the commitments must be k points that pass DecodeElement. The
// sum of the shares must match pk's verification share Y_self: that last check also covers a
// dealer that dealt self commitments other than those that made the group key. Deals from
// dealers not in qualified, or to another participant, are ignored. Any failure is an error
// wrapping ErrLateShare; a share is returned only when it matches Y_self.
//
// self must not be a qualified dealer: its deal to itself was never sent, and a node that dealt
// and then left has lost it with its memory. Such a node gets a share only by a resharing.
func LateShare(self, k int, p scheme.DKGParams, qualified []int, deals []scheme.Message, pk *frost.PublicKey) (*frost.SecretShare, error) {
	if pk == nil {
		return nil, fmt.Errorf("%w: no public key", ErrLateShare)
	}
	if pk.Algorithm() != scheme.Ed25519FROST {
		return nil, fmt.Errorf("%w: not a FROST key", ErrLateShare)
	}
	if kk, nn := pk.Threshold(); kk != k || nn != len(p.Public) {
		return nil, fmt.Errorf("%w: the key is %d-of-%d, the run %d-of-%d", ErrLateShare, kk, nn, k, len(p.Public))
	}
	// A fresh participant with the same configuration: its long-term key decrypts the deals,
	// its verifiers (one per dealer) check them. Its own deal is never used.
	d, err := NewDKG(self, k, p, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLateShare, err)
	}
	n := d.n
	qual := slices.Clone(qualified)
	slices.Sort(qual)
	if len(qual) < k || len(slices.Compact(slices.Clone(qual))) != len(qual) {
		return nil, fmt.Errorf("%w: qualified dealers %v (need %d distinct)", ErrLateShare, qualified, k)
	}
	for _, q := range qual {
		if q < 1 || q > n {
			return nil, fmt.Errorf("%w: qualified dealer %d of %d", ErrLateShare, q, n)
		}
		if q == self {
			return nil, fmt.Errorf("%w: participant %d is a qualified dealer: its own deal is lost", ErrLateShare, self)
		}
	}
	byDealer := map[int][]byte{}
	for _, m := range deals {
		if m.To != self || !slices.Contains(qual, m.From) {
			continue
		}
		if _, dup := byDealer[m.From]; dup {
			return nil, fmt.Errorf("%w: two deals from dealer %d", ErrLateShare, m.From)
		}
		byDealer[m.From] = m.Payload
	}
	sum := d.suite.Scalar().Zero()
	defer sum.Zero()
	for _, q := range qual {
		payload, ok := byDealer[q]
		if !ok {
			return nil, fmt.Errorf("%w: no deal from qualified dealer %d", ErrLateShare, q)
		}
		v, err := d.lateDeal(q, payload)
		if err != nil {
			return nil, fmt.Errorf("%w: the deal of dealer %d: %w", ErrLateShare, q, err)
		}
		sum.Add(sum, v.SecShare.V)
		v.SecShare.V.Zero()
	}
	sb, err := sum.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLateShare, err)
	}
	sh, err := frost.NewSecretShare(self, sb)
	clear(sb)
	if err != nil {
		return nil, fmt.Errorf("%w: share: %w", ErrLateShare, err)
	}
	if err := sh.Check(pk); err != nil {
		sh.Wipe()
		return nil, fmt.Errorf("%w: %w", ErrLateShare, err)
	}
	return sh, nil
}

// lateDeal opens, decrypts and checks dealer q's deal to this participant and returns it.
func (d *DKG) lateDeal(q int, payload []byte) (*vss.Deal, error) {
	body, err := d.open(q, d.self, tagDeal, payload)
	if err != nil {
		return nil, err
	}
	dd, err := decodeDeal(body)
	if err != nil {
		return nil, err
	}
	if int(dd.Index) != q-1 {
		return nil, fmt.Errorf("%w: a deal of dealer %d inside dealer %d's envelope", frost.ErrInvalidEncoding, dd.Index+1, q)
	}
	var deal *vss.Deal
	err = safe(func() error {
		// ProcessDeal checks the dealer's signature, decrypts, and approves the deal only when
		// the share matches the commitments (index, threshold and session checked by kyber).
		r, err := d.gen.ProcessDeal(dd)
		if err != nil {
			return err
		}
		if r == nil || r.Response == nil || r.Response.Status != vss.StatusApproval {
			return fmt.Errorf("share does not verify against the dealer's commitments")
		}
		// kyber hands a deal out only once it is certified by enough responses; this check
		// does not rest on other verifiers (the record's verification share decides), so
		// record approvals for the others to read the deal this participant just verified.
		v := d.gen.Verifiers()[dd.Index]
		for i := range d.n {
			v.UnsafeSetResponseDKG(uint32(i), vss.StatusApproval)
		}
		deal = v.Deal()
		return nil
	})
	if err != nil {
		return nil, err
	}
	if deal == nil || deal.SecShare == nil || deal.SecShare.V == nil {
		return nil, fmt.Errorf("%w: deal not readable", frost.ErrDKG)
	}
	if int(deal.T) != d.k || len(deal.Commitments) != d.k || !d.goodCommitments(deal.Commitments) {
		return nil, fmt.Errorf("%w: commitments of degree %d, want %d", frost.ErrDKG, len(deal.Commitments)-1, d.k-1)
	}
	if deal.SecShare.I != d.self-1 || !share.NewPubPoly(d.suite, nil, deal.Commitments).Check(deal.SecShare) {
		return nil, fmt.Errorf("%w: share does not match the commitments", frost.ErrDKG)
	}
	return deal, nil
}
