package frost

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"filippo.io/edwards25519"

	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
)

// dealKey makes a k-of-n key with a dealer, for the tests that need a key and no DKG.
func dealKey(t testing.TB, k, n int) (*PublicKey, map[int]*SecretShare) {
	t.Helper()
	coef := make([]*edwards25519.Scalar, k)
	for i := range coef {
		var b [64]byte
		rand.Read(b[:])
		coef[i], _ = edwards25519.NewScalar().SetUniformBytes(b[:])
	}
	y := new(edwards25519.Point).ScalarBaseMult(coef[0]).Bytes()
	shares := map[int]*SecretShare{}
	var ys [][]byte
	for i := 1; i <= n; i++ {
		x, s := identifierScalar(i), edwards25519.NewScalar()
		for j := k - 1; j >= 0; j-- {
			s.MultiplyAdd(s, x, coef[j])
		}
		sh, err := NewSecretShare(i, s.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		shares[i] = sh
		ys = append(ys, new(edwards25519.Point).ScalarBaseMult(s).Bytes())
	}
	pk, err := NewPublicKey(k, y, ys)
	if err != nil {
		t.Fatal(err)
	}
	return pk, shares
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// Rejected element encodings (RFC 9591, section 6.1 DeserializeElement; RFC 8032, 5.1.3).
func TestDecodeElementRejects(t *testing.T) {
	g := edwards25519.NewGeneratorPoint().Bytes()
	if _, err := DecodeElement(g); err != nil {
		t.Fatal(err)
	}
	ident := edwards25519.NewIdentityPoint().Bytes()
	// A point of order 8 (torsion), and G plus it (outside the prime-order subgroup).
	torsion := mustHex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
	tp, _ := new(edwards25519.Point).SetBytes(torsion)
	mixed := new(edwards25519.Point).Add(edwards25519.NewGeneratorPoint(), tp).Bytes()
	// y = p (≥ p: non-canonical encoding of y = 0, the point (±1, 0)... of order 4) and
	// y = 1 + p, a non-canonical encoding of the identity; x = 0 with the sign bit set.
	yp := mustHex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
	y1p := mustHex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
	negZero := append([]byte(nil), ident...)
	negZero[31] |= 0x80
	notOnCurve := mustHex("0200000000000000000000000000000000000000000000000000000000000000")
	for name, b := range map[string][]byte{
		"identity": ident, "torsion": torsion, "G+torsion": mixed, "y=p": yp, "y=1+p": y1p,
		"-0": negZero, "not on curve": notOnCurve, "short": g[:31], "long": append(g, 0), "empty": nil,
	} {
		if _, err := DecodeElement(b); !errors.Is(err, ErrInvalidElement) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestDecodeScalarRejects(t *testing.T) {
	l := mustHex("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
	lm1 := append([]byte(nil), l...)
	lm1[0]--
	if _, err := DecodeScalar(lm1); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"L": l, "2^256-1": bytesOf(0xff, 32), "short": lm1[:31]} {
		if _, err := DecodeScalar(b); !errors.Is(err, ErrInvalidScalar) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := NewSecretShare(1, make([]byte, 32)); !errors.Is(err, ErrInvalidScalar) {
		t.Errorf("zero share: %v", err)
	}
}

func TestCheckListRejects(t *testing.T) {
	pk, shares := dealKey(t, 2, 3)
	parts := participants(t, pk, shares, Options{})
	c := map[int]Commitment{}
	for i := 1; i <= 3; i++ {
		cs, err := parts[i].Commit(rand.Reader, "c", 1)
		if err != nil {
			t.Fatal(err)
		}
		c[i] = cs[0]
	}
	if err := CheckList([]Commitment{c[1], c[3]}, 2, 3); err != nil {
		t.Fatal(err)
	}
	bad := c[2]
	bad.Hiding = [32]byte{1} // the identity's encoding
	bad.d, bad.e = nil, nil
	renum := func(x Commitment, id int) Commitment { x.Identifier = id; return x }
	for name, l := range map[string][]Commitment{
		"empty":       nil,
		"too few":     {c[1]},
		"too many":    {c[1], c[2], c[3], renum(c[3], 4)},
		"unsorted":    {c[3], c[1]},
		"repeated":    {c[1], c[1]},
		"id 0":        {renum(c[1], 0), c[2]},
		"id > n":      {c[1], renum(c[2], 4)},
		"bad element": {c[1], bad},
	} {
		if err := CheckList(l, 2, 3); !errors.Is(err, ErrInvalidCommitmentList) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestParticipantRules: the signer's round-two checks and the nonce store's rules.
func TestParticipantRules(t *testing.T) {
	pk, shares := dealKey(t, 2, 3)
	now := time.Unix(1000, 0)
	o := Options{MaxOutstanding: 4, TTL: time.Minute, Now: func() time.Time { return now }}
	parts := participants(t, pk, shares, o)
	msg := []byte("msg")
	get := func(i int, who string) Commitment {
		cs, err := parts[i].Commit(rand.Reader, who, 1)
		if err != nil || len(cs) != 1 {
			t.Fatal(err)
		}
		return cs[0]
	}
	c1, c2 := get(1, "a"), get(2, "a")
	list := []Commitment{c1, c2}
	if _, err := parts[1].Sign("b", msg, list); !errors.Is(err, ErrUnknownNonce) || !errors.Is(err, scheme.ErrStale) {
		t.Fatalf("another requester's nonce: %v", err)
	}
	z, err := parts[1].Sign("a", msg, list)
	if err != nil || len(z) != 32 {
		t.Fatal(err)
	}
	if _, err := parts[1].Sign("a", msg, list); !errors.Is(err, ErrUnknownNonce) {
		t.Fatalf("second use of a nonce: %v", err)
	}
	// Own commitment altered: refused, and the nonce is burnt all the same.
	c1 = get(1, "a")
	alt := c1
	alt.Binding = c2.Binding
	alt.d, alt.e = nil, nil
	if _, err := parts[1].Sign("a", msg, []Commitment{alt, c2}); !errors.Is(err, ErrInvalidCommitmentList) {
		t.Fatalf("altered own commitment: %v", err)
	}
	if _, err := parts[1].Sign("a", msg, []Commitment{c1, c2}); !errors.Is(err, ErrUnknownNonce) {
		t.Fatalf("nonce after a refused request: %v", err)
	}
	// Not in the list.
	if _, err := parts[3].Sign("a", msg, []Commitment{get(1, "a"), c2}); !errors.Is(err, ErrInvalidCommitmentList) {
		t.Fatalf("signer not in the list: %v", err)
	}
	// Expiry.
	c1 = get(1, "a")
	now = now.Add(2 * time.Minute)
	if _, err := parts[1].Sign("a", msg, []Commitment{c1, get(2, "a")}); !errors.Is(err, ErrUnknownNonce) {
		t.Fatalf("expired nonce: %v", err)
	}
	// Cap: a batch beyond it evicts the oldest.
	if _, err := parts[3].Commit(rand.Reader, "c", 3); err != nil {
		t.Fatal(err)
	}
	first, _ := parts[3].Commit(rand.Reader, "c", 1)
	if _, err := parts[3].Commit(rand.Reader, "c", 4); err != nil {
		t.Fatal(err)
	}
	if n := parts[3].Outstanding("c"); n != 4 {
		t.Fatalf("outstanding %d, cap 4", n)
	}
	if _, err := parts[3].Sign("c", msg, []Commitment{get(1, "c"), first[0]}); !errors.Is(err, ErrUnknownNonce) {
		t.Fatalf("evicted nonce: %v", err)
	}
	if _, err := parts[1].Commit(rand.Reader, "a", MaxBatch+1); !errors.Is(err, scheme.ErrInvalidRequest) {
		t.Fatalf("oversized batch: %v", err)
	}
	// Requests of the wrong shape.
	for name, req := range map[string]scheme.Request{
		"round 2": {Round: 2, Payload: []byte{tagCommit, 0, 1}},
		"audit":   {Round: 1, Audit: true, Payload: []byte{tagCommit, 0, 1}},
		"empty":   {Round: 1},
		"tag":     {Round: 1, Payload: []byte{9}},
		"count 0": {Round: 1, Payload: []byte{tagCommit, 0, 0}},
	} {
		if _, err := parts[1].Respond(context.Background(), rand.Reader, req); !errors.Is(err, scheme.ErrInvalidRequest) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestJudgeNamesLiar: a signer answering a wrong share makes Finish fail; Judge names it and
// only it; a new session with another set signs.
func TestJudgeNamesLiar(t *testing.T) {
	pk, shares := dealKey(t, 3, 5)
	parts := participants(t, pk, shares, Options{})
	var sch Scheme
	msg := []byte("rrset")
	commits := map[int]scheme.Commitment{}
	for _, i := range []int{1, 2, 4} {
		req, _ := sch.CommitRequest(pk, 2)
		rep, err := parts[i].Respond(context.Background(), rand.Reader, req)
		if err != nil {
			t.Fatal(err)
		}
		cs, ttl, err := sch.ParseCommitments(pk, i, rep)
		if err != nil || len(cs) != 2 || ttl != DefaultTTL {
			t.Fatal(err, ttl)
		}
		commits[i] = cs[0]
	}
	co, err := sch.NewSession(pk, scheme.EDDSA, msg, commits)
	if err != nil {
		t.Fatal(err)
	}
	if co.Open() || co.Quorum() != 3 {
		t.Fatal("FROST sessions have a fixed set of k")
	}
	if _, err := co.Request(3); !errors.Is(err, scheme.ErrInvalidRequest) {
		t.Fatalf("request to a non-member: %v", err)
	}
	for _, i := range []int{1, 2, 4} {
		req, _ := co.Request(i)
		rep, err := parts[i].Respond(context.Background(), rand.Reader, req)
		if err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			z, _ := DecodeScalar(rep.Payload)
			rep.Payload = z.Add(z, identifierScalar(1)).Bytes()
		}
		if err := co.Accept(i, rep); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			if _, err := co.Finish(); !errors.Is(err, scheme.ErrNotEnoughShares) {
				t.Fatalf("Finish with one share: %v", err)
			}
		}
	}
	if _, err := co.Finish(); !errors.Is(err, scheme.ErrBadSignature) {
		t.Fatalf("Finish with a wrong share: %v", err)
	}
	for _, i := range co.Held() {
		_, ask, err := co.Audit(i)
		if err != nil || ask {
			t.Fatalf("Audit(%d) = %v, %v", i, ask, err)
		}
		err = co.Judge(i, scheme.Reply{})
		if (i == 2) != errors.Is(err, scheme.ErrBadShare) {
			t.Fatalf("Judge(%d): %v", i, err)
		}
	}
	if h := co.Held(); len(h) != 2 {
		t.Fatalf("held after judging: %v", h)
	}
	// The hedge/retry: a new session, fresh commitments, without the liar.
	if _, _, err := signWith(t, pk, parts, []int{1, 3, 4}, msg); err != nil {
		t.Fatal(err)
	}
	// Malformed replies are the participant's fault.
	if err := co.Accept(1, scheme.Reply{Payload: bytesOf(0xff, 32)}); !errors.Is(err, scheme.ErrBadShare) {
		t.Fatalf("non-canonical share: %v", err)
	}
}

func TestSessionRejects(t *testing.T) {
	pk, shares := dealKey(t, 2, 3)
	parts := participants(t, pk, shares, Options{})
	var sch Scheme
	c1, _ := parts[1].Commit(rand.Reader, "", 1)
	var e1 scheme.Commitment = &poolCommitment{c: c1[0]}
	if _, err := sch.NewSession(pk, scheme.SHA256RSAPKCS, nil, map[int]scheme.Commitment{1: e1, 2: e1}); !errors.Is(err, scheme.ErrUnknownMechanism) {
		t.Fatalf("RSA mechanism: %v", err)
	}
	if _, err := sch.NewSession(pk, scheme.EDDSA, nil, map[int]scheme.Commitment{1: e1}); !errors.Is(err, scheme.ErrInvalidRequest) {
		t.Fatalf("one commitment for k=2: %v", err)
	}
	if _, err := sch.NewSession(pk, scheme.EDDSA, nil, map[int]scheme.Commitment{1: e1, 4: e1}); !errors.Is(err, scheme.ErrInvalidRequest) {
		t.Fatalf("participant 4 of 3: %v", err)
	}
	c2, _ := parts[2].Commit(rand.Reader, "", 1)
	e2 := &poolCommitment{c: c2[0]}
	if _, err := sch.NewSession(pk, scheme.EDDSA, nil, map[int]scheme.Commitment{1: e1, 3: e2}); !errors.Is(err, scheme.ErrInvalidRequest) {
		t.Fatalf("participant 2's commitment as participant 3's: %v", err)
	}
	if _, err := sch.NewSession(pk, scheme.EDDSA, nil, map[int]scheme.Commitment{1: e1, 2: nil}); !errors.Is(err, scheme.ErrInvalidRequest) {
		t.Fatalf("a nil commitment: %v", err)
	}
	if _, err := sch.NewSession(pk, scheme.EDDSA, nil, map[int]scheme.Commitment{1: e1, 2: (*poolCommitment)(nil)}); !errors.Is(err, scheme.ErrInvalidRequest) {
		t.Fatalf("a nil *poolCommitment: %v", err)
	}
	if _, err := sch.NewSession(pk, scheme.EDDSA, []byte("m"), map[int]scheme.Commitment{1: e1, 2: e2}); err != nil {
		t.Fatalf("a valid pair: %v", err)
	}
	if _, err := sch.NewCoordinator(pk, scheme.EDDSA, nil); !errors.Is(err, scheme.ErrNotSupported) {
		t.Fatalf("NewCoordinator: %v", err)
	}
}

func TestKeyRecord(t *testing.T) {
	pk, shares := dealKey(t, 3, 5)
	var sch Scheme
	rec := &tchsmpb.KeyRecord{}
	if err := sch.EncodePublic(pk, rec); err != nil {
		t.Fatal(err)
	}
	got, err := sch.DecodePublic(rec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.(*PublicKey).EncodeParams(), pk.EncodeParams()) || got.Bits() != 256 {
		t.Fatal("round trip")
	}
	for i, s := range shares {
		b, err := sch.MarshalShare(pk, s)
		if err != nil {
			t.Fatal(err)
		}
		s2, err := sch.ParseShare(got, i, b)
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.CheckShare(got, s2); err != nil {
			t.Fatal(err)
		}
	}
	wrong, _ := NewSecretShare(2, shares[1].Bytes())
	if err := sch.CheckShare(pk, wrong); !errors.Is(err, scheme.ErrInvalidShare) {
		t.Fatalf("share 1 as share 2: %v", err)
	}
	if _, err := sch.ParseShare(pk, 6, shares[1].Bytes()); !errors.Is(err, scheme.ErrInvalidShare) {
		t.Fatalf("index 6 of 5: %v", err)
	}
	mut := func(f func(r *tchsmpb.KeyRecord)) error {
		r := &tchsmpb.KeyRecord{}
		sch.EncodePublic(pk, r)
		f(r)
		_, err := sch.DecodePublic(r)
		return err
	}
	other, _ := dealKey(t, 3, 5)
	for name, f := range map[string]func(r *tchsmpb.KeyRecord){
		"rsa algorithm":  func(r *tchsmpb.KeyRecord) { r.Algorithm = 1 },
		"bits":           func(r *tchsmpb.KeyRecord) { r.Bits = 2048 },
		"modulus":        func(r *tchsmpb.KeyRecord) { r.Modulus = []byte{1} },
		"short params":   func(r *tchsmpb.KeyRecord) { r.Params = r.Params[:len(r.Params)-1] },
		"n":              func(r *tchsmpb.KeyRecord) { r.N = 4 },
		"k=0":            func(r *tchsmpb.KeyRecord) { r.K = 0 },
		"k>n":            func(r *tchsmpb.KeyRecord) { r.K = 6 },
		"k wrong":        func(r *tchsmpb.KeyRecord) { r.K = 2 },
		"shares swapped": func(r *tchsmpb.KeyRecord) { p := r.Params; copy(p[32:64], other.EncodeParams()[32:64]) },
		"group key":      func(r *tchsmpb.KeyRecord) { copy(r.Params[:32], other.EncodeParams()[:32]) },
		"identity share": func(r *tchsmpb.KeyRecord) { copy(r.Params[64:96], edwards25519.NewIdentityPoint().Bytes()) },
	} {
		if err := mut(f); !errors.Is(err, scheme.ErrInvalidKey) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestWireRoundTrip(t *testing.T) {
	pk, shares := dealKey(t, 2, 3)
	parts := participants(t, pk, shares, Options{})
	cs, _ := parts[1].Commit(rand.Reader, "", 3)
	ttl, back, err := DecodeCommitReply(1, EncodeCommitReply(time.Hour, cs))
	if err != nil || ttl != time.Hour || len(back) != 3 || back[2].Nonce != cs[2].Nonce || back[2].Hiding != cs[2].Hiding {
		t.Fatal(err)
	}
	b, err := EncodeSignRequest([]byte("m"), cs[:2])
	if err != nil {
		t.Fatal(err)
	}
	m, l, err := DecodeSignRequest(b)
	if err != nil || string(m) != "m" || len(l) != 2 || l[1].Binding != cs[1].Binding {
		t.Fatal(err)
	}
	if _, _, err := DecodeSignRequest(append(b, 0)); !errors.Is(err, ErrInvalidEncoding) {
		t.Fatalf("trailing byte: %v", err)
	}
	if _, err := EncodeSignRequest(make([]byte, MaxMessage+1), cs[:2]); !errors.Is(err, ErrInvalidEncoding) {
		t.Fatalf("oversized message: %v", err)
	}
}

// SignRequestMessage reads a sign request's message without decoding its commitments, says
// "no signature" for a commit request, and refuses anything else.
func TestSignRequestMessage(t *testing.T) {
	pk, shares := dealKey(t, 2, 3)
	p1, _ := NewParticipant(pk, shares[1], Options{})
	p2, _ := NewParticipant(pk, shares[2], Options{})
	c1, _ := p1.Commit(rand.Reader, "", 1)
	c2, _ := p2.Commit(rand.Reader, "", 1)
	b, err := EncodeSignRequest([]byte("the RRSIG"), append(c1, c2...))
	if err != nil {
		t.Fatal(err)
	}
	if msg, sign, err := SignRequestMessage(b); err != nil || !sign || string(msg) != "the RRSIG" {
		t.Fatalf("sign request: %q %v %v", msg, sign, err)
	}
	empty, _ := EncodeSignRequest(nil, append(c1, c2...))
	if msg, sign, err := SignRequestMessage(empty); err != nil || !sign || msg == nil || len(msg) != 0 {
		t.Fatalf("empty message: %v %v %v (want a non-nil empty message)", msg, sign, err)
	}
	cr, _ := EncodeCommitRequest(4)
	if msg, sign, err := SignRequestMessage(cr); err != nil || sign || msg != nil {
		t.Fatalf("commit request: %v %v %v", msg, sign, err)
	}
	for _, bad := range [][]byte{nil, {}, {0x03}, {tagCommit}, {tagSign, 0, 0, 0}, {tagSign, 0, 0, 0, 9, 1}, b[:len(b)-len(b)+6]} {
		if _, _, err := SignRequestMessage(bad); !errors.Is(err, ErrInvalidEncoding) {
			t.Errorf("SignRequestMessage(%x): %v, want ErrInvalidEncoding", bad, err)
		}
	}
}

// The node decodes a sign request's elements in Sign, not in the wire decoder (each once, its
// own entry not at all): a bad element anywhere in the list is still refused, through Respond,
// and so is the participant's own entry when it is not the commitment it handed out.
func TestRespondChecksEveryElement(t *testing.T) {
	pk, shares := dealKey(t, 3, 5)
	parts := participants(t, pk, shares, Options{})
	torsion := mustHex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
	tp, _ := new(edwards25519.Point).SetBytes(torsion)
	mixed := new(edwards25519.Point).Add(edwards25519.NewGeneratorPoint(), tp).Bytes()
	fresh := func() []Commitment {
		var list []Commitment
		for _, i := range []int{1, 2, 3} {
			cs, err := parts[i].Commit(rand.Reader, "c", 1)
			if err != nil {
				t.Fatal(err)
			}
			list = append(list, cs[0])
		}
		return list
	}
	respond := func(list []Commitment) error {
		b, err := EncodeSignRequest([]byte("m"), list)
		if err != nil {
			t.Fatal(err)
		}
		_, err = parts[1].Respond(context.Background(), rand.Reader, scheme.Request{Round: 1, Payload: b, Requester: "c"})
		return err
	}
	if err := respond(fresh()); err != nil {
		t.Fatalf("a valid list: %v", err)
	}
	for name, bad := range map[string][]byte{"torsion": torsion, "G+torsion": mixed, "identity": edwards25519.NewIdentityPoint().Bytes()} {
		for j, field := range []string{"hiding", "binding"} {
			for who := range 3 { // list position 0 is the responder's own entry
				list := fresh()
				if j == 0 {
					copy(list[who].Hiding[:], bad)
				} else {
					copy(list[who].Binding[:], bad)
				}
				list[who].d, list[who].e = nil, nil
				err := respond(list)
				if !errors.Is(err, scheme.ErrInvalidRequest) || (who > 0 && !errors.Is(err, ErrInvalidElement)) {
					t.Errorf("%s as %s of entry %d: %v", name, field, who, err)
				}
			}
		}
	}
}

// canonical agrees with the round trip it replaces (b == p.Bytes()) on the encodings where they
// could differ: y near and above p = 2^255-19, y = 0, ±1 (x = 0), either sign bit, and random.
func TestCanonicalMatchesRoundTrip(t *testing.T) {
	var encs [][]byte
	for low := 0xe0; low <= 0xff; low++ { // y = 2^255-32 .. 2^255-1, p is low 0xed
		b := bytesOf(0xff, 32)
		b[0], b[31] = byte(low), 0x7f
		encs = append(encs, b)
	}
	one := make([]byte, 32)
	one[0] = 1
	minusOne := mustHex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
	encs = append(encs, make([]byte, 32), one, minusOne)
	for range 200 {
		b := make([]byte, 32)
		rand.Read(b)
		encs = append(encs, b)
	}
	checked := 0
	for _, b := range encs {
		for _, sign := range []byte{0, 0x80} {
			e := append([]byte(nil), b...)
			e[31] = e[31]&0x7f | sign
			p, err := new(edwards25519.Point).SetBytes(e)
			if err != nil {
				continue
			}
			checked++
			if canonical(e, p) != (string(p.Bytes()) == string(e)) {
				t.Errorf("canonical(%x) = %v, round trip says otherwise", e, canonical(e, p))
			}
		}
	}
	if checked < 100 {
		t.Fatalf("only %d encodings decoded", checked)
	}
}
