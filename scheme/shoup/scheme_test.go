package shoup

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"math/big"
	"testing"

	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
)

// A key record written by EncodePublic decodes to the same key, with the old RSA fields set
// (releases that predate scheme.Algorithm read them) and algorithm = ShoupRSA.
func TestSchemeRecordRoundTrip(t *testing.T) {
	_, pk, _ := dealt(t, 1024, 2, 3)
	rec := &tchsmpb.KeyRecord{}
	if err := (Scheme{}).EncodePublic(pk, rec); err != nil {
		t.Fatal(err)
	}
	if rec.Algorithm != uint32(scheme.ShoupRSA) || rec.Bits != 1024 || len(rec.Vk) != 3 || rec.PublicExponent != uint32(pk.E) {
		t.Fatalf("record fields: %+v", rec)
	}
	got, err := (Scheme{}).DecodePublic(rec)
	if err != nil {
		t.Fatal(err)
	}
	g := got.(*PublicKey)
	if g.N.Cmp(pk.N) != 0 || g.V.Cmp(pk.V) != 0 || g.K != 2 || g.L != 3 || g.Safe != pk.Safe {
		t.Fatal("decoded key differs")
	}
	// A record of before the algorithm field decodes the same.
	rec.Algorithm = 0
	if _, err := (Scheme{}).DecodePublic(rec); err != nil {
		t.Fatal(err)
	}
	for name, tamper := range map[string]func(r *tchsmpb.KeyRecord){
		"other algorithm": func(r *tchsmpb.KeyRecord) { r.Algorithm = 99 },
		"params":          func(r *tchsmpb.KeyRecord) { r.Params = []byte{1} },
		"bits":            func(r *tchsmpb.KeyRecord) { r.Bits = 2048 },
		"even exponent":   func(r *tchsmpb.KeyRecord) { r.PublicExponent = 65536 },
		"exponent <= n":   func(r *tchsmpb.KeyRecord) { r.PublicExponent = 3 },
		"k > n":           func(r *tchsmpb.KeyRecord) { r.K = 4 },
		"missing vk":      func(r *tchsmpb.KeyRecord) { r.Vk = r.Vk[:2] },
		"v zero":          func(r *tchsmpb.KeyRecord) { r.V = nil },
		"vk >= N":         func(r *tchsmpb.KeyRecord) { r.Vk[1] = r.Modulus },
	} {
		r := &tchsmpb.KeyRecord{}
		if err := (Scheme{}).EncodePublic(pk, r); err != nil {
			t.Fatal(err)
		}
		tamper(r)
		if _, err := (Scheme{}).DecodePublic(r); !errors.Is(err, scheme.ErrInvalidKey) {
			t.Errorf("%s: %v, want ErrInvalidKey", name, err)
		}
	}
}

func TestSchemeShares(t *testing.T) {
	_, pk, shares := dealt(t, 1024, 2, 3)
	s := Scheme{}
	b, err := s.MarshalShare(pk, WrapShare(shares[1]))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.ParseShare(pk, 2, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckShare(pk, got); err != nil {
		t.Fatal(err)
	}
	// The right bytes under another index, a short share, a flipped bit: refused.
	if other, err := s.ParseShare(pk, 3, b); err != nil || s.CheckShare(pk, other) == nil {
		t.Errorf("share under another index: parse %v, check passed", err)
	}
	if _, err := s.ParseShare(pk, 2, b[1:]); !errors.Is(err, scheme.ErrInvalidShare) {
		t.Errorf("short share: %v", err)
	}
	if _, err := s.ParseShare(pk, 0, b); !errors.Is(err, scheme.ErrInvalidShare) {
		t.Errorf("index 0: %v", err)
	}
	b[len(b)-1] ^= 1
	flipped, _ := s.ParseShare(pk, 2, b)
	if err := s.CheckShare(pk, flipped); !errors.Is(err, scheme.ErrInvalidShare) {
		t.Errorf("flipped share: %v", err)
	}
}

// runSession plays a coordinator and n participants as the client does: ask the first k, on a
// failed combination audit every held reply and drop the liars, ask the others.
func runSession(t *testing.T, pk *PublicKey, shares []*KeyShare, lie func(i int, rep *scheme.Reply), data []byte) ([]byte, []int) {
	t.Helper()
	s := Scheme{}
	co, err := s.NewCoordinator(pk, scheme.SHA256RSAPKCS, data)
	if err != nil {
		t.Fatal(err)
	}
	if !co.Open() || co.Quorum() != pk.K {
		t.Fatal("RSA sessions are open, with quorum k")
	}
	parts := make([]scheme.Participant, len(shares))
	for i, ks := range shares {
		if parts[i], err = s.NewParticipant(pk, WrapShare(ks)); err != nil {
			t.Fatal(err)
		}
	}
	ask := func(i int, req scheme.Request) scheme.Reply {
		rep, err := parts[i-1].Respond(context.Background(), rand.Reader, req)
		if err != nil {
			t.Fatal(err)
		}
		lie(i, &rep)
		return rep
	}
	var liars []int
	next := 1
	for next <= pk.L {
		for len(co.Held()) < co.Quorum() && next <= pk.L {
			req, err := co.Request(next)
			if err != nil {
				t.Fatal(err)
			}
			if err := co.Accept(next, ask(next, req)); err != nil {
				t.Fatal(err)
			}
			next++
		}
		sig, err := co.Finish()
		if err == nil {
			return sig, liars
		}
		if !errors.Is(err, scheme.ErrBadSignature) {
			t.Fatal(err)
		}
		for _, i := range co.Held() {
			req, send, err := co.Audit(i)
			if err != nil || !send {
				t.Fatal(err)
			}
			if err := co.Judge(i, ask(i, req)); errors.Is(err, scheme.ErrBadShare) {
				liars = append(liars, i)
			} else if err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Fatal("no signature")
	return nil, nil
}

func TestSchemeSession(t *testing.T) {
	_, pk, shares := dealt(t, 2048, 3, 5)
	data := []byte("a session")
	digest := sha256.Sum256(data)
	honest := func(int, *scheme.Reply) {}
	sig, liars := runSession(t, pk, shares, honest, data)
	if len(liars) != 0 {
		t.Fatalf("liars %v among honest nodes", liars)
	}
	if err := rsa.VerifyPKCS1v15(pk.Public().(*rsa.PublicKey), crypto.SHA256, digest[:], sig); err != nil {
		t.Fatal(err)
	}
	if err := pk.Verify(scheme.SHA256RSAPKCS, data, sig); err != nil {
		t.Fatal(err)
	}
	if err := pk.Verify(scheme.SHA256RSAPKCS, []byte("other"), sig); !errors.Is(err, scheme.ErrBadSignature) {
		t.Fatalf("wrong message verified: %v", err)
	}
	// Node 2 lies in every answer, its audits included: it is named, and nodes 1, 3 and 4 sign.
	liar := func(i int, rep *scheme.Reply) {
		if i == 2 {
			x := new(big.Int).SetBytes(rep.Payload)
			rep.Payload = x.Add(x, big.NewInt(1)).Bytes()
		}
	}
	sig, liars = runSession(t, pk, shares, liar, data)
	if len(liars) != 1 || liars[0] != 2 {
		t.Fatalf("liars %v, want [2]", liars)
	}
	if err := pk.Verify(scheme.SHA256RSAPKCS, data, sig); err != nil {
		t.Fatal(err)
	}
}

func TestSchemeRefuses(t *testing.T) {
	_, pk, shares := dealt(t, 1024, 2, 3)
	s := Scheme{}
	if _, err := s.NewCoordinator(pk, scheme.RSAPKCS, make([]byte, 200)); !errors.Is(err, scheme.ErrInvalidRequest) {
		t.Errorf("payload longer than the modulus: %v", err)
	}
	if _, err := s.NewCoordinator(pk, scheme.Mechanism(99), nil); !errors.Is(err, scheme.ErrUnknownMechanism) {
		t.Errorf("unknown mechanism: %v", err)
	}
	co, _ := s.NewCoordinator(pk, scheme.SHA256RSAPKCS, []byte("x"))
	if err := co.Accept(1, scheme.Reply{Payload: pk.N.Bytes()}); !errors.Is(err, scheme.ErrBadShare) {
		t.Errorf("share = N: %v", err)
	}
	if err := co.Accept(1, scheme.Reply{}); !errors.Is(err, scheme.ErrBadShare) {
		t.Errorf("empty share: %v", err)
	}
	if _, err := co.Request(4); err == nil {
		t.Error("participant 4 of 3 asked")
	}
	if _, err := co.Finish(); !errors.Is(err, scheme.ErrNotEnoughShares) {
		t.Errorf("finish with nothing: %v", err)
	}
	p, _ := s.NewParticipant(pk, WrapShare(shares[0]))
	for name, req := range map[string]scheme.Request{
		"round 2":  {Round: 2, Payload: []byte("x")},
		"session":  {Session: []byte{1}, Payload: []byte("x")},
		"too long": {Round: 1, Payload: make([]byte, 200)},
		"relayed":  {Round: 1, Payload: []byte("x"), Relayed: []scheme.Message{{From: 2}}},
	} {
		if _, err := p.Respond(context.Background(), rand.Reader, req); !errors.Is(err, scheme.ErrInvalidRequest) {
			t.Errorf("%s: %v, want ErrInvalidRequest", name, err)
		}
	}
}

// The share-versus-vk check refuses every share but the right one (moved from the node, which
// ran it itself before the scheme boundary).
func TestCheckShare(t *testing.T) {
	_, pk, shares := dealt(t, 1024, 2, 3)
	s := Scheme{}
	for _, ks := range shares {
		if err := s.CheckShare(pk, WrapShare(ks)); err != nil {
			t.Fatalf("share %d refused: %v", ks.Index, err)
		}
	}
	if s.CheckShare(pk, WrapShare(&KeyShare{Index: 2, S: shares[0].S})) == nil {
		t.Fatal("share 1 accepted as share 2")
	}
	for _, idx := range []int{0, 4, -1} {
		if s.CheckShare(pk, WrapShare(&KeyShare{Index: idx, S: shares[0].S})) == nil {
			t.Fatalf("index %d accepted", idx)
		}
	}
	if s.CheckShare(pk, WrapShare(&KeyShare{Index: 1, S: shares[0].S[1:]})) == nil {
		t.Fatal("short share accepted")
	}
}

// TestEDDSANotRSA: EDDSA (an Ed25519 mechanism that hashes nothing) is not taken for RSAPKCS.
func TestEDDSANotRSA(t *testing.T) {
	if _, err := Payload(scheme.EDDSA, []byte("data")); !errors.Is(err, scheme.ErrUnknownMechanism) {
		t.Fatalf("Payload(EDDSA): %v", err)
	}
}
