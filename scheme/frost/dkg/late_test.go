package dkg

import (
	"crypto/ed25519"
	"errors"
	"slices"
	"testing"

	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/frost"
)

// lateRun is a 3-of-5 DKG with participant 5 down: its key, the others' shares, and the deals
// the others addressed to 5.
func lateRun(t *testing.T) (*dkgRun, *frost.PublicKey, map[int]*frost.SecretShare, []int) {
	t.Helper()
	run, err := runDKGFull(t, 3, 5, []int{1, 2, 3, 4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pk, shares := keyOf(t, run.ds)
	qual := run.ds[1].Qualified()
	if !slices.Equal(qual, []int{1, 2, 3, 4}) {
		t.Fatalf("qualified %v", qual)
	}
	if len(run.lost) != 4 {
		t.Fatalf("%d deals to 5 kept, want 4", len(run.lost))
	}
	return run, pk, shares, qual
}

// TestLateShare: participant 5, down during the key generation, computes its share from the
// deals addressed to it; the share matches Y_5 and signs with two others through FROST.
func TestLateShare(t *testing.T) {
	run, pk, shares, qual := lateRun(t)
	s5, err := LateShare(5, 3, run.params(5), qual, run.lost, pk)
	if err != nil {
		t.Fatal(err)
	}
	if err := s5.Check(pk); err != nil {
		t.Fatal(err)
	}
	shares[5] = s5
	parts := participants(t, pk, shares, frost.Options{})
	msg := []byte("example.com. 3600 IN DNSKEY ...")
	for _, set := range [][]int{{1, 2, 5}, {3, 4, 5}} {
		sig, _, err := signWith(t, pk, parts, set, msg)
		if err != nil {
			t.Fatalf("set %v: %v", set, err)
		}
		if !ed25519.Verify(pk.Public().(ed25519.PublicKey), msg, sig) {
			t.Fatalf("set %v: crypto/ed25519 rejects the signature", set)
		}
	}
	// Idempotent: the same deals give the same share.
	again, err := LateShare(5, 3, run.params(5), qual, run.lost, pk)
	if err != nil || string(again.Bytes()) != string(s5.Bytes()) {
		t.Fatalf("second computation: %v", err)
	}
}

// TestLateShareRefused: every way the deals, the parameters or the outcome can be wrong gives
// an error wrapping ErrLateShare and frost.ErrDKG, never a share.
func TestLateShareRefused(t *testing.T) {
	run, pk, _, qual := lateRun(t)
	other, _, _, _ := lateRun(t) // another key, other long-term keys
	otherPK, _ := keyOf(t, other.ds)
	clone := func() []scheme.Message {
		out := make([]scheme.Message, len(run.lost))
		for i, m := range run.lost {
			out[i] = scheme.Message{From: m.From, To: m.To, Payload: slices.Clone(m.Payload)}
		}
		return out
	}
	wrongSession := run.params(5)
	wrongSession.Session = []byte("key-2")
	cases := map[string]struct {
		self   int
		k      int
		p      scheme.DKGParams
		qual   []int
		deals  func() []scheme.Message
		pk     *frost.PublicKey
		isType error
	}{
		"tampered deal": {deals: func() []scheme.Message {
			d := clone()
			d[1].Payload[len(d[1].Payload)-100] ^= 1
			return d
		}},
		"tampered signature": {deals: func() []scheme.Message {
			d := clone()
			d[2].Payload[len(d[2].Payload)-1] ^= 1
			return d
		}},
		"missing deal":      {deals: func() []scheme.Message { return clone()[1:] }},
		"no deals":          {deals: func() []scheme.Message { return nil }},
		"duplicate deal":    {deals: func() []scheme.Message { d := clone(); return append(d, d[0]) }},
		"relabelled dealer": {deals: func() []scheme.Message { d := clone(); d[0].From, d[1].From = d[1].From, d[0].From; return d }},
		"another's deals":   {deals: func() []scheme.Message { return other.lost }},
		"wrong session":     {p: wrongSession},
		"wrong secret":      {p: scheme.DKGParams{Session: []byte("key-1"), Secret: run.secrets[3], Public: run.pubs}},
		"qualified subset":  {qual: []int{1, 2, 3}},       // a sum of fewer deals: not Y_5
		"qualified extra":   {qual: []int{1, 2, 3, 4, 5}}, // 5 itself
		"qualified too few": {qual: []int{1, 2}},
		"qualified repeat":  {qual: []int{1, 1, 2, 3}},
		"qualified range":   {qual: []int{0, 1, 2, 3}},
		"another key":       {pk: otherPK},
		"k differs":         {k: 2},
		"nil key":           {pk: (*frost.PublicKey)(nil)},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			self, k, p, q, deals, key := 5, 3, run.params(5), qual, run.lost, pk
			if c.self != 0 {
				self = c.self
			}
			if c.k != 0 {
				k = c.k
			}
			if c.p.Session != nil {
				p = c.p
			}
			if c.qual != nil {
				q = c.qual
			}
			if c.deals != nil {
				deals = c.deals()
			}
			if c.pk != nil || name == "nil key" {
				key = c.pk
			}
			s, err := LateShare(self, k, p, q, deals, key)
			if err == nil || s != nil {
				t.Fatalf("accepted (share %v)", s != nil)
			}
			if !errors.Is(err, ErrLateShare) || !errors.Is(err, frost.ErrDKG) {
				t.Fatalf("error %v does not wrap ErrLateShare and frost.ErrDKG", err)
			}
		})
	}
}

// TestLateShareEquivocation: dealer 1 deals the absent participant from another polynomial
// (validly encrypted and signed, consistent with its own commitments). Nobody could see it
// during the run; the check against Y_5 refuses the share.
func TestLateShareEquivocation(t *testing.T) {
	var alt *DKG
	equivocate = func(d *DKG, to int) []byte {
		if d.self != 1 || to != 5 {
			return nil
		}
		if alt == nil {
			var err error
			if alt, err = NewDKG(1, d.k, d.params, nil); err != nil {
				t.Fatal(err)
			}
		}
		deals, err := alt.gen.Deals()
		if err != nil {
			t.Fatal(err)
		}
		return encodeDeal(deals[to-1])
	}
	defer func() { equivocate = nil }()
	run, pk, _, qual := lateRun(t)
	if _, err := LateShare(5, 3, run.params(5), qual, run.lost, pk); !errors.Is(err, ErrLateShare) || !errors.Is(err, scheme.ErrInvalidShare) {
		t.Fatalf("want ErrLateShare and scheme.ErrInvalidShare, got %v", err)
	}
}
