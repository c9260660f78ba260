package ecdsahm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"testing"

	"github.com/tchsm/tchsm/scheme"
)

func digestOf(s string) []byte { d := sha256.Sum256([]byte(s)); return d[:] }

func verify(t *testing.T, pk *PublicKey, digest, sig []byte) {
	t.Helper()
	if len(sig) != 64 {
		t.Fatalf("signature of %d bytes", len(sig))
	}
	if !ecdsa.Verify(pk.Public(), digest, new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Fatal("signature does not verify")
	}
}

// signAll has every member of the set sign presignature b for digest (binding only) and
// combines.
func signAll(t *testing.T, c *cluster, pres map[int][]*Presignature, b int, digest []byte) ([]byte, error) {
	t.Helper()
	pp := c.public(t, pres, b)
	shares := map[int][]byte{}
	for i, ps := range pres {
		s, err := ps[b].Sign(c.request(ps[b], digest))
		if err != nil {
			t.Fatalf("participant %d: %v", i, err)
		}
		shares[i] = s
	}
	return Combine(c.pk, pp, digest, shares)
}

// TestSignProperty: many random keys (n, t), random sets, random digests: every combined
// signature verifies with crypto/ecdsa.Verify, with the one-round and the echo path.
func TestSignProperty(t *testing.T) {
	params := [][2]int{{3, 1}, {4, 1}, {5, 1}, {5, 2}, {7, 2}, {7, 3}}
	for trial, nt := range params {
		n, tt := nt[0], nt[1]
		t.Run(fmt.Sprintf("n%d_t%d", n, tt), func(t *testing.T) {
			for key := range 3 {
				signProperty(t, trial*10+key, n, tt)
			}
		})
	}
}

func signProperty(t *testing.T, trial, n, tt int) {
	c := newCluster(t, n, tt)
	for _, i := range []int{1, n} {
		if err := c.shares[i-1].Check(c.pk); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 3 {
		set := randomSet(n, tt)
		pres, err := c.presign(t, set, 3, nil)
		if err != nil {
			t.Fatal(err)
		}
		for b := range 2 {
			d := digestOf(fmt.Sprintf("%d/%d/%d", trial, round, b))
			sig, err := signAll(t, c, pres, b, d)
			if err != nil {
				t.Fatalf("set %v: %v", set, err)
			}
			verify(t, c.pk, d, sig)
		}
		// The third with the echo round.
		d := digestOf(fmt.Sprintf("echo/%d/%d", trial, round))
		sig, err := echoSign(t, c, pres, 2, func(int) []byte { return d })
		if err != nil {
			t.Fatal(err)
		}
		verify(t, c.pk, d, sig)
	}
}

// echoSign runs Prepare, relays the echoes, Release and Combine; digestFor gives each member
// the digest it is asked to sign (the same for an honest coordinator).
func echoSign(t *testing.T, c *cluster, pres map[int][]*Presignature, b int, digestFor func(i int) []byte) ([]byte, error) {
	t.Helper()
	pp := c.public(t, pres, b)
	var echoes []scheme.Message
	for i, ps := range pres {
		e, err := ps[b].Prepare(c.chs[i-1], c.request(ps[b], digestFor(i)))
		if err != nil {
			return nil, err
		}
		echoes = append(echoes, e...)
	}
	shares := map[int][]byte{}
	var firstErr error
	for i, ps := range pres {
		s, err := ps[b].Release(c.chs[i-1], echoes)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		shares[i] = s
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return Combine(c.pk, pp, digestFor(pp.Set[0]), shares)
}

func TestReuseRefused(t *testing.T) {
	c := newCluster(t, 5, 2)
	pres, err := c.presign(t, []int{1, 2, 3, 4, 5}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := digestOf("a")
	sig, err := signAll(t, c, pres, 0, d)
	if err != nil {
		t.Fatal(err)
	}
	verify(t, c.pk, d, sig)
	for _, ps := range pres {
		if _, err := ps[0].Sign(c.request(ps[0], d)); !errors.Is(err, ErrUsed) {
			t.Fatalf("second Sign, same digest: %v, want ErrUsed", err)
		}
		if _, err := ps[0].Prepare(c.chs[0], c.request(ps[0], digestOf("b"))); !errors.Is(err, ErrUsed) && !errors.Is(err, ErrInvalidParams) {
			t.Fatalf("Prepare after Sign: %v", err)
		}
	}
	// A refused request consumes too: "never reuse, even after an abort".
	pres, err = c.presign(t, []int{1, 2, 3, 4, 5}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := pres[1][0]
	if _, err := p.Sign(c.request(p, make([]byte, 32))); !errors.Is(err, ErrZeroDigest) {
		t.Fatalf("digest 0: %v", err)
	}
	if _, err := p.Sign(c.request(p, d)); !errors.Is(err, ErrUsed) {
		t.Fatalf("after a refused request: %v, want ErrUsed", err)
	}
	// The pool hands a presignature out once and refuses a replayed id.
	pool := NewPool()
	if err := pool.Add(pres[2]); err != nil {
		t.Fatal(err)
	}
	if err := pool.Add(pres[2]); !errors.Is(err, ErrUsed) {
		t.Fatalf("re-adding: %v", err)
	}
	// The refused batch is burnt: what Take hands out then refuses to sign.
	if q, err := pool.Take(pres[2][0].ID()); err != nil {
		t.Fatal(err)
	} else if _, err := q.Sign(c.request(q, d)); !errors.Is(err, ErrUsed) {
		t.Fatalf("a presignature of a refused batch signed: %v", err)
	}
	pool2 := NewPool()
	pres3, _ := c.presign(t, []int{1, 2, 3, 4, 5}, 2, nil)
	if err := pool2.Add(pres3[3]); err != nil {
		t.Fatal(err)
	}
	if _, err := pool2.Take(pres3[3][0].ID()); err != nil {
		t.Fatal(err)
	}
	if _, err := pool2.Take(pres3[3][0].ID()); !errors.Is(err, ErrUsed) {
		t.Fatalf("second Take: %v", err)
	}
	if err := pool2.Begin([]byte("batch-1")); err != nil {
		t.Fatal(err)
	}
	if err := pool2.Begin([]byte("batch-1")); !errors.Is(err, ErrUsed) {
		t.Fatalf("a batch id twice: %v", err)
	}
	pool2.Discard(4)
	if pool2.Len() != 0 || !pres3[3][1].Used() {
		t.Fatal("Discard left a presignature of a set with the failed node")
	}
}

// TestDigestZeroRefused: digests ≡ 0 mod n (0 and n itself) are refused by the signer and by
// Combine.
func TestDigestZeroRefused(t *testing.T) {
	c := newCluster(t, 3, 1)
	pres, err := c.presign(t, []int{1, 2, 3}, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	for b, d := range [][]byte{make([]byte, 32), append([]byte(nil), orderBytes...)} {
		p := pres[1][b]
		if _, err := p.Sign(c.request(p, d)); !errors.Is(err, ErrZeroDigest) {
			t.Fatalf("digest %x: %v", d, err)
		}
		if _, err := Combine(c.pk, p.Public(), d, map[int][]byte{1: make([]byte, 32), 2: make([]byte, 32), 3: make([]byte, 32)}); !errors.Is(err, ErrZeroDigest) {
			t.Fatalf("Combine, digest %x: %v", d, err)
		}
	}
}

// TestWrongShareDetected: one member's share off by anything: Combine refuses (the signature
// is verified before it is returned); a malformed share is named.
func TestWrongShareDetected(t *testing.T) {
	c := newCluster(t, 5, 2)
	set := []int{1, 2, 3, 4, 5}
	pres, err := c.presign(t, set, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := digestOf("zone")
	pp := c.public(t, pres, 0)
	shares := map[int][]byte{}
	for i, ps := range pres {
		shares[i], _ = ps[0].Sign(c.request(ps[0], d))
	}
	good := shares[3]
	bad := append([]byte(nil), good...)
	bad[31] ^= 1
	shares[3] = bad
	if _, err := Combine(c.pk, pp, d, shares); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("wrong share: %v", err)
	}
	shares[3] = bytes.Repeat([]byte{0xff}, 32)
	if _, err := Combine(c.pk, pp, d, shares); !errors.Is(err, scheme.ErrBadShare) {
		t.Fatalf("out-of-range share: %v", err)
	}
	shares[3] = good
	if sig, err := Combine(c.pk, pp, d, shares); err != nil {
		t.Fatal(err)
	} else {
		verify(t, c.pk, d, sig)
	}
	// The presignature's R reported differently by one member: Agree refuses it.
	reps := map[int]PresignPublic{}
	for i, ps := range pres {
		reps[i] = ps[1].Public()
	}
	other := pres[1][0].Public()
	reps[4] = PresignPublic{ID: reps[4].ID, Set: reps[4].Set, R: other.R}
	if _, err := Agree(c.pk, reps); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("differing R: %v", err)
	}
}

// TestMissingNodeRefused: a set of fewer (or more) than 2t+1, and a presigning run with a
// member silent, are refused; so is a combination with a share missing.
func TestMissingNodeRefused(t *testing.T) {
	c := newCluster(t, 5, 1)
	if _, err := c.presign(t, []int{1, 2}, 1, nil); !errors.Is(err, ErrInvalidParams) {
		t.Fatalf("set of 2 for t=1: %v", err)
	}
	if _, err := c.presign(t, []int{1, 2, 3, 4, 5}, 1, nil); !errors.Is(err, ErrInvalidParams) {
		t.Fatalf("set of 5 for t=1: %v", err)
	}
	// Member 3 silent in round 2.
	drop := func(round int, m *scheme.Message) {
		if round == 2 && m.From == 3 {
			m.Payload = nil
		}
	}
	if _, err := c.presign(t, []int{1, 3, 5}, 1, drop); !errors.Is(err, ErrProtocol) {
		t.Fatalf("silent member: %v", err)
	}
	// A key generation with one node silent in round 2 does not complete.
	chs := channels(t, 5)
	parts := map[int]stepper{}
	for i := range 5 {
		g, _ := NewKeyGen(chs[i], 2, []byte("key"), nil)
		parts[i+1] = g
	}
	if _, err := run(parts, func(round int, m *scheme.Message) {
		if round == 2 && m.From == 5 {
			m.Payload = nil
		}
	}); !errors.Is(err, ErrProtocol) {
		t.Fatalf("key generation with a silent node: %v", err)
	}
	pres, err := c.presign(t, []int{2, 3, 4}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := digestOf("x")
	pp := c.public(t, pres, 0)
	shares := map[int][]byte{}
	for _, i := range []int{2, 3} {
		shares[i], _ = pres[i][0].Sign(c.request(pres[i][0], d))
	}
	if _, err := Combine(c.pk, pp, d, shares); !errors.Is(err, ErrInvalidParams) {
		t.Fatalf("2 of 3 shares: %v", err)
	}
	// Another key's parameters: a presignature of set {2,3,4} cannot sign for {1,2,3}.
	p := pres[4][0]
	req := c.request(p, d)
	req.Set = []int{1, 2, 3}
	if _, err := p.Sign(req); !errors.Is(err, ErrBinding) {
		t.Fatalf("another set: %v", err)
	}
}

// TestSplitViewRefused plays the malicious coordinator of the issue: one presignature, and
// different members asked to sign different digests (or with different sets, or another
// presignature id). Binding alone refuses a second use on each node; the echo round refuses
// before any share leaves.
func TestSplitViewRefused(t *testing.T) {
	c := newCluster(t, 5, 2)
	set := []int{1, 2, 3, 4, 5}
	pres, err := c.presign(t, set, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	d1, d2 := digestOf("approved"), digestOf("evil")
	// Echo path, two digests: no member releases its share.
	_, err = echoSign(t, c, pres, 0, func(i int) []byte {
		if i <= 2 {
			return d1
		}
		return d2
	})
	if !errors.Is(err, ErrSplitView) {
		t.Fatalf("split view with the echo round: %v", err)
	}
	for i, ps := range pres {
		if !ps[0].Used() {
			t.Fatalf("member %d's presignature survived a split view", i)
		}
		if _, err := ps[0].Sign(c.request(ps[0], d1)); !errors.Is(err, ErrUsed) {
			t.Fatalf("member %d signs after the split view was refused: %v", i, err)
		}
	}
	// Echo path, a corrupt member echoes something else to everyone: refused too.
	var echoes []scheme.Message
	for i, ps := range pres {
		req := c.request(ps[1], d1)
		ch := c.chs[i-1]
		if i == 4 { // corrupt: tells the others it was asked d2
			req.Digest = d2
		}
		e, err := ps[1].Prepare(ch, req)
		if err != nil {
			t.Fatal(err)
		}
		echoes = append(echoes, e...)
	}
	if _, err := pres[1][1].Release(c.chs[0], echoes); !errors.Is(err, ErrSplitView) {
		t.Fatalf("a lying echo: %v", err)
	}
	// A relay that forges an echo (re-addresses 2's echo to 1 as if from 3) is not believed.
	var forged []scheme.Message
	for _, m := range echoes {
		if m.From == 2 && m.To == 3 {
			forged = append(forged, scheme.Message{From: 2, To: 1, Payload: m.Payload})
		} else if m.To == 1 && m.From != 2 {
			forged = append(forged, m)
		}
	}
	if _, err := pres[2][1].Release(c.chs[1], forged); !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrSplitView) {
		t.Fatalf("member 2 released with forged echoes: %v", err)
	}
	// Binding alone: a member gives at most one share per presignature: a second digest, or
	// the same presignature under another set, is refused.
	p := pres[5][2]
	if _, err := p.Sign(c.request(p, d1)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Sign(c.request(p, d2)); !errors.Is(err, ErrUsed) {
		t.Fatalf("second digest: %v", err)
	}
	q := pres[4][2]
	req := c.request(q, d2)
	req.Set = []int{1, 2, 3, 4, 5}
	req.ID = pres[4][1].ID()
	if _, err := q.Sign(req); !errors.Is(err, ErrBinding) {
		t.Fatalf("another presignature id: %v", err)
	}
}

// TestCheatingInPresignDetected: a member that sends a wrong w_i, a wrong R_i, a wrong W_i or
// an inconsistent dealing makes the run abort (ErrInconsistent) before any presignature is
// usable; a relay that flips a bit is not believed (ErrProtocol).
func TestCheatingInPresignDetected(t *testing.T) {
	c := newCluster(t, 5, 2)
	set := []int{1, 2, 3, 4, 5}
	cases := []struct {
		name string
		how  func(p *Presign, round int, body []byte)
	}{
		{"wrong w_i", func(p *Presign, round int, body []byte) {
			if round == 2 {
				body[PointSize+31] ^= 1 // a w_i below n stays below n with the last bit flipped, almost surely
			}
		}},
		{"wrong R_i", func(p *Presign, round int, body []byte) {
			if round == 2 {
				copy(body[:PointSize], baseMul(ScalarFromUint(7)).Bytes())
			}
		}},
		{"wrong W_i", func(p *Presign, round int, body []byte) {
			if round == 3 {
				copy(body[:PointSize], baseMul(ScalarFromUint(9)).Bytes())
			}
		}},
		{"zero sharing with a non-zero constant", func(p *Presign, round int, body []byte) {
			if round == 1 {
				// Shift b's share to every recipient by 1: the constant of b becomes non-zero.
				v, _ := DecodeScalar(body[2*ScalarSize : 3*ScalarSize])
				copy(body[2*ScalarSize:], v.Add(v, ScalarFromUint(1)).Bytes())
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			presignHook = func(p *Presign, round int, to int, body []byte) {
				if p.ch.self == 4 {
					tc.how(p, round, body)
				}
			}
			defer func() { presignHook = nil }()
			_, err := c.presign(t, set, 1, nil)
			if !errors.Is(err, ErrInconsistent) {
				t.Fatalf("got %v, want ErrInconsistent", err)
			}
		})
	}
	flip := func(round int, m *scheme.Message) {
		if round == 2 && m.From == 2 && m.To == 1 {
			m.Payload = append([]byte(nil), m.Payload...)
			m.Payload[len(m.Payload)-1] ^= 1
		}
	}
	if _, err := c.presign(t, set, 1, flip); !errors.Is(err, ErrProtocol) {
		t.Fatalf("tampered relay: %v", err)
	}
}

// TestKeyGenCheating: a dealer whose share does not match its commitments, or whose reveal
// does not match its hash, aborts the generation.
func TestKeyGenCheating(t *testing.T) {
	for _, tc := range []struct {
		name  string
		round int
	}{{"bad share", 1}, {"bad reveal", 2}} {
		t.Run(tc.name, func(t *testing.T) {
			keygenHook = func(g *KeyGen, round int, to int, body []byte) {
				if g.ch.self == 2 && round == tc.round && to == 3 {
					body[len(body)-1] ^= 1
				}
			}
			defer func() { keygenHook = nil }()
			chs := channels(t, 5)
			parts := map[int]stepper{}
			for i := range 5 {
				g, _ := NewKeyGen(chs[i], 2, []byte("key"), nil)
				parts[i+1] = g
			}
			who, err := run(parts, nil)
			if !errors.Is(err, ErrInconsistent) && !errors.Is(err, ErrProtocol) {
				t.Fatalf("got %v", err)
			}
			if who != 3 {
				t.Fatalf("reported by %d, want 3 (the recipient)", who)
			}
		})
	}
}

// TestScalarArithmetic cross-checks the field against math/big on random inputs.
func TestScalarArithmetic(t *testing.T) {
	nBig := new(big.Int).SetBytes(orderBytes)
	rnd := func() (*Scalar, *big.Int) {
		s, err := RandomScalar(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return s, new(big.Int).SetBytes(s.Bytes())
	}
	eq := func(what string, s *Scalar, b *big.Int) {
		t.Helper()
		want := make([]byte, 32)
		b.FillBytes(want)
		if !bytes.Equal(s.Bytes(), want) {
			t.Fatalf("%s: %x, want %x", what, s.Bytes(), want)
		}
	}
	for range 2000 {
		x, xb := rnd()
		y, yb := rnd()
		eq("add", NewScalar().Add(x, y), new(big.Int).Mod(new(big.Int).Add(xb, yb), nBig))
		eq("sub", NewScalar().Sub(x, y), new(big.Int).Mod(new(big.Int).Sub(xb, yb), nBig))
		eq("mul", NewScalar().Mul(x, y), new(big.Int).Mod(new(big.Int).Mul(xb, yb), nBig))
		eq("neg", NewScalar().Neg(x), new(big.Int).Mod(new(big.Int).Neg(xb), nBig))
		if xb.Sign() != 0 {
			inv := new(big.Int).ModInverse(xb, nBig)
			eq("invert", NewScalar().Invert(x), inv)
			v, ok := NewScalar().InvertVarTime(x)
			if !ok {
				t.Fatal("InvertVarTime failed")
			}
			eq("invertvartime", v, inv)
		}
		// Aliasing: the receiver as an operand.
		z := x.Copy()
		z.Mul(z, z)
		eq("square aliased", z, new(big.Int).Mod(new(big.Int).Mul(xb, xb), nBig))
		// Reduction of 32 arbitrary bytes (digests).
		var raw [32]byte
		rand.Read(raw[:])
		if raw[0] < 0xf0 {
			raw[0] |= 0xff // exercise values ≥ n often
		}
		h, err := digestScalar(raw[:])
		if err != nil {
			t.Fatal(err)
		}
		eq("digest", h, new(big.Int).Mod(new(big.Int).SetBytes(raw[:]), nBig))
	}
	// Edges.
	if _, err := DecodeScalar(orderBytes); !errors.Is(err, ErrInvalidScalar) {
		t.Fatalf("n decoded: %v", err)
	}
	nm1 := new(big.Int).Sub(nBig, big.NewInt(1)).FillBytes(make([]byte, 32))
	if s, err := DecodeScalar(nm1); err != nil || !NewScalar().Add(s, ScalarFromUint(1)).IsZero() {
		t.Fatalf("n-1: %v", err)
	}
	if !NewScalar().Invert(NewScalar()).IsZero() {
		t.Fatal("0^-1 is not 0")
	}
	if _, ok := NewScalar().InvertVarTime(NewScalar()); ok {
		t.Fatal("InvertVarTime(0) succeeded")
	}
	w := ScalarFromUint(5)
	old := w.v
	w.Wipe()
	if !w.IsZero() || old.IsZero() != 1 {
		t.Fatal("Wipe left a value")
	}
	// A long digest uses its leftmost 32 bytes, as crypto/ecdsa does.
	long := append(digestOf("x"), 0xaa, 0xbb)
	h1, _ := digestScalar(long)
	h2, _ := digestScalar(long[:32])
	if !h1.Equal(h2) {
		t.Fatal("long digest not truncated")
	}
	// Lagrange coefficients at 0 over a set sum to 1 and reproduce a polynomial.
	p, _ := randomPoly(rand.Reader, 2, nil)
	set := []int{2, 5, 9}
	l := lagrangeAt(set, 0)
	acc := NewScalar()
	for a, i := range set {
		acc.Add(acc, NewScalar().Mul(l[a], p.eval(i)))
	}
	if !acc.Equal(p[0]) {
		t.Fatal("Lagrange interpolation")
	}
}

// TestPointDecoding: the strict point decoder.
func TestPointDecoding(t *testing.T) {
	g := baseMul(ScalarFromUint(1)).Bytes()
	if _, err := DecodePoint(g); err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), g...)
	bad[64] ^= 1
	for _, b := range [][]byte{bad, g[:64], {0}, baseMul(ScalarFromUint(1)).BytesCompressed(), append([]byte{2}, g[1:]...)} {
		if _, err := DecodePoint(b); !errors.Is(err, ErrInvalidPoint) {
			t.Fatalf("accepted %x", b)
		}
	}
	if _, err := DecodePublicKey([]byte{1, 3, 1}); err == nil {
		t.Fatal("short key accepted")
	}
	c := newCluster(t, 3, 1)
	k, err := DecodePublicKey(c.pk.Marshal())
	if err != nil || !k.Equal(c.pk) {
		t.Fatalf("key round trip: %v", err)
	}
	// A key whose verification shares do not match Y.
	enc := c.pk.Marshal()
	copy(enc[3+PointSize:], baseMul(ScalarFromUint(3)).Bytes())
	if _, err := DecodePublicKey(enc); !errors.Is(err, ErrInvalidEncoding) {
		t.Fatalf("inconsistent key: %v", err)
	}
	// A share from another participant does not check.
	sh := &SecretShare{index: 2, x: c.shares[0].x}
	if err := sh.Check(c.pk); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("wrong share: %v", err)
	}
}

// TestSplitViewAttackOnBindingAlone plays the attacker of doc.go against the one-round path
// (binding alone): a malicious coordinator with the t corrupt members 4 and 5 of the set
// asks honest members 1 and 2 for digest h1 and honest member 3 for a digest h2 it computed,
// each honest member signing once as binding allows, and comes out with a valid signature on
// a digest A that no member was asked to sign. Key secrecy holds (one presignature, one
// signature), but a node's policy on what it signs does not: that is why the echo round
// (Prepare, Release) comes before any share when nodes check messages, and the echo path
// refuses the same attack (TestSplitViewRefused).
func TestSplitViewAttackOnBindingAlone(t *testing.T) {
	c := newCluster(t, 5, 2)
	set := []int{1, 2, 3, 4, 5}
	pres, err := c.presign(t, set, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	pp := c.public(t, pres, 0)
	target := digestOf("a digest no node approved")
	A, _ := digestScalar(target)
	h1s := digestOf("approved")
	h1, _ := digestScalar(h1s)

	// The corrupt members know their own parts.
	c4, c5 := pres[4][0].c.Copy(), pres[5][0].c.Copy()
	// c_3 = L0(3)·k^-1 + L4(3)·c_4 + L5(3)·c_5 over {0, 4, 5}; λ_3 the set's coefficient.
	L := lagrangeAt([]int{0, 4, 5}, 3)
	lam := lagrangeAt(set, 0)
	mu := NewScalar().Mul(lam[2], L[0])
	v3 := NewScalar().Add(NewScalar().Mul(L[1], c4), NewScalar().Mul(L[2], c5))
	// h2 = h1 + (A - h1)/μ, so that Σ λ_i c_i h_i carries k^-1·A.
	muInv, _ := NewScalar().InvertVarTime(mu)
	h2 := NewScalar().Add(h1, NewScalar().Mul(NewScalar().Sub(A, h1), muInv))

	shares := map[int][]byte{}
	for _, i := range []int{1, 2, 4, 5} {
		shares[i], err = pres[i][0].Sign(c.request(pres[i][0], h1s))
		if err != nil {
			t.Fatal(err)
		}
	}
	shares[3], err = pres[3][0].Sign(c.request(pres[3][0], h2.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	// s = Σ λ_i s_i, minus the known λ_3·v_3·(h2 - h1).
	s := NewScalar()
	for a, j := range set {
		sj, _ := DecodeScalar(shares[j])
		s.Add(s, NewScalar().Mul(lam[a], sj))
	}
	s.Sub(s, NewScalar().Mul(NewScalar().Mul(lam[2], v3), NewScalar().Sub(h2, h1)))
	R, _ := DecodePoint(pp.R)
	r, _ := xScalar(R)
	sig := append(r.Bytes(), s.Bytes()...)
	verify(t, c.pk, target, sig) // the attack works: binding alone does not protect policy
	if _, err := Combine(c.pk, pp, h1s, shares); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("the split shares combined for h1: %v", err)
	}
}

// TestAbortAfterPrepare: a coordinator that prepares and then gives up (never relays the
// echoes) cannot come back to the presignature with another request; Release runs once.
func TestAbortAfterPrepare(t *testing.T) {
	c := newCluster(t, 3, 1)
	set := []int{1, 2, 3}
	pres, err := c.presign(t, set, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := digestOf("a")
	var echoes []scheme.Message
	for _, i := range set {
		e, err := pres[i][0].Prepare(c.chs[i-1], c.request(pres[i][0], d))
		if err != nil {
			t.Fatal(err)
		}
		echoes = append(echoes, e...)
	}
	p := pres[1][0]
	if _, err := p.Sign(c.request(p, digestOf("b"))); !errors.Is(err, ErrUsed) {
		t.Fatalf("Sign after Prepare: %v", err)
	}
	if _, err := p.Prepare(c.chs[0], c.request(p, d)); !errors.Is(err, ErrUsed) {
		t.Fatalf("Prepare twice: %v", err)
	}
	if _, err := p.Release(c.chs[0], echoes); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Release(c.chs[0], echoes); !errors.Is(err, ErrUsed) {
		t.Fatalf("Release twice: %v", err)
	}
	// Release on a fresh presignature burns it without a share.
	pres, _ = c.presign(t, set, 1, nil)
	q := pres[2][0]
	if _, err := q.Release(c.chs[1], nil); !errors.Is(err, ErrUsed) || !q.Used() {
		t.Fatalf("Release without Prepare: %v", err)
	}
	// A presigning run that aborted hands out nothing.
	drop := func(round int, m *scheme.Message) {
		if round == 3 && m.From == 2 {
			m.Payload = nil
		}
	}
	if _, err := c.presign(t, set, 4, drop); !errors.Is(err, ErrProtocol) {
		t.Fatalf("aborted run: %v", err)
	}
}
