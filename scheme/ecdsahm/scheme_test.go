package ecdsahm_test

// The scheme boundary, from the outside: what node and client will do with an ECDSAP256HM key,
// driven in process through package scheme's interfaces only (found in the registry by
// algorithm, as node and client find schemes).

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"testing"
	"time"

	"filippo.io/edwards25519"

	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/ecdsahm"
	"github.com/tchsm/tchsm/scheme/schemes"
)

const requester = "client-1"

// cluster is n nodes' participants of one key, and the key as a client decodes it.
type cluster struct {
	sch   scheme.Scheme
	pk    scheme.PublicKey
	rec   *tchsmpb.KeyRecord
	parts map[int]scheme.Participant
}

// longTermKeys returns n nodes' long-term DKG keys, as the manifest holds them.
func longTermKeys(tb testing.TB, n int) (secrets, publics [][]byte) {
	tb.Helper()
	for range n {
		var wide [64]byte
		rand.Read(wide[:])
		s, err := edwards25519.NewScalar().SetUniformBytes(wide[:])
		if err != nil {
			tb.Fatal(err)
		}
		secrets = append(secrets, s.Bytes())
		publics = append(publics, new(edwards25519.Point).ScalarBaseMult(s).Bytes())
	}
	return secrets, publics
}

// newCluster runs the key generation among n nodes through scheme.DKG (k = 2t+1 signers),
// writes and reads back the record, stores each share as a node does (Marshal, Parse, Check)
// and makes each node's participant.
func newCluster(tb testing.TB, k, n int) *cluster {
	tb.Helper()
	return newClusterOpts(tb, k, n, ecdsahm.Options{})
}

// newClusterOpts is newCluster with participants bounded by opt.
func newClusterOpts(tb testing.TB, k, n int, opt ecdsahm.Options) *cluster {
	tb.Helper()
	sch, err := schemes.Lookup(scheme.ECDSAP256HM)
	if err != nil {
		tb.Fatal(err)
	}
	secrets, publics := longTermKeys(tb, n)
	keyID := []byte("00112233445566778899aabbccddeeff")
	gens := map[int]scheme.KeyGeneration{}
	for i := 1; i <= n; i++ {
		g, err := sch.(scheme.DKG).NewDKG(i, scheme.KeyParams{K: k, N: n, DKG: scheme.DKGParams{Session: keyID, Secret: secrets[i-1], Public: publics}}, nil)
		if err != nil {
			tb.Fatal(err)
		}
		gens[i] = g
	}
	var msgs []scheme.Message
	for round := 0; ; round++ {
		if round > 5 {
			tb.Fatal("key generation does not end")
		}
		var next []scheme.Message
		all := true
		for i := 1; i <= n; i++ {
			var in []scheme.Message
			for _, m := range msgs {
				if m.To == i {
					in = append(in, m)
				}
			}
			out, done, err := gens[i].Step(in)
			if err != nil {
				tb.Fatalf("key generation, node %d: %v", i, err)
			}
			all = all && done
			next = append(next, out...)
		}
		if all {
			break
		}
		msgs = next
	}
	c := &cluster{sch: sch, parts: map[int]scheme.Participant{}}
	var first []byte
	for i := 1; i <= n; i++ {
		pk, sh, err := gens[i].Result()
		if err != nil {
			tb.Fatal(err)
		}
		// Every node endorses the same record: the client compares them.
		rec := &tchsmpb.KeyRecord{KeyId: string(keyID)}
		if err := sch.EncodePublic(pk, rec); err != nil {
			tb.Fatal(err)
		}
		if first == nil {
			first = rec.Params
			c.rec = rec
		} else if !bytes.Equal(first, rec.Params) {
			tb.Fatalf("node %d's record differs", i)
		}
		_, dpk, err := schemes.DecodePublic(rec)
		if err != nil {
			tb.Fatal(err)
		}
		b, err := sch.MarshalShare(dpk, sh)
		if err != nil {
			tb.Fatal(err)
		}
		sh.Wipe()
		stored, err := sch.ParseShare(dpk, i, b)
		if err != nil {
			tb.Fatal(err)
		}
		if err := sch.CheckShare(dpk, stored); err != nil {
			tb.Fatalf("node %d's share: %v", i, err)
		}
		p, err := ecdsahm.Scheme{Options: opt}.NewPeerParticipant(dpk, stored, scheme.DKGParams{Session: keyID, Secret: secrets[i-1], Public: publics})
		if err != nil {
			tb.Fatal(err)
		}
		c.parts[i] = p
		c.pk = dpk
	}
	return c
}

// ask sends participant i its request as the node would receive it.
func (c *cluster) ask(i int, req scheme.Request) (scheme.Reply, error) {
	req.Requester = requester
	return c.parts[i].Respond(context.Background(), rand.Reader, req)
}

// presign runs one batch among set through scheme.Presigner.
func (c *cluster) presign(tb testing.TB, set []int, count int) []scheme.Presignature {
	tb.Helper()
	batch := make([]byte, 16)
	rand.Read(batch)
	run, err := c.sch.(scheme.Presigner).NewPresigning(c.pk, set, batch, count)
	if err != nil {
		tb.Fatal(err)
	}
	for round := 1; ; round++ {
		if round > 4 {
			tb.Fatal("presigning does not end")
		}
		for _, i := range run.Set() {
			req, err := run.Request(i)
			if err != nil {
				tb.Fatal(err)
			}
			rep, err := c.ask(i, req)
			if err != nil {
				tb.Fatalf("presigning round %d, node %d: %v", round, i, err)
			}
			if err := run.Accept(i, rep); err != nil {
				tb.Fatalf("presigning round %d, node %d's reply: %v", round, i, err)
			}
		}
		ps, err := run.Finish()
		if errors.Is(err, scheme.ErrNextRound) {
			continue
		}
		if err != nil {
			tb.Fatal(err)
		}
		return ps
	}
}

// sign runs one signature through a Coordinator from NewPresignedSession; tamper may change a
// reply before it is accepted.
func (c *cluster) sign(mech scheme.Mechanism, data []byte, p scheme.Presignature, tamper func(round, i int, rep *scheme.Reply)) ([]byte, error) {
	co, err := c.sch.(scheme.Presigner).NewPresignedSession(c.pk, mech, data, p)
	if err != nil {
		return nil, err
	}
	if co.Open() || co.Quorum() != len(p.Set()) {
		return nil, fmt.Errorf("session: open %v, quorum %d", co.Open(), co.Quorum())
	}
	for round := 1; round <= 3; round++ {
		for _, i := range p.Set() {
			req, err := co.Request(i)
			if err != nil {
				return nil, err
			}
			rep, err := c.ask(i, req)
			if err != nil {
				return nil, fmt.Errorf("node %d, round %d: %w", i, round, err)
			}
			if tamper != nil {
				tamper(round, i, &rep)
			}
			if err := co.Accept(i, rep); err != nil {
				return nil, err
			}
		}
		sig, err := co.Finish()
		if errors.Is(err, scheme.ErrNextRound) {
			continue
		}
		return sig, err
	}
	return nil, errors.New("signature does not end")
}

func verify(t *testing.T, pk scheme.PublicKey, digest, sig []byte) {
	t.Helper()
	pub, ok := pk.Public().(*ecdsa.PublicKey)
	if !ok {
		t.Fatalf("Public is %T", pk.Public())
	}
	if len(sig) != 64 || !ecdsa.Verify(pub, digest, new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Fatalf("signature %x does not verify with crypto/ecdsa", sig)
	}
}

// TestBoundaryFullFlow: keygen → record → presign batch → sign with the echo round →
// combine → crypto/ecdsa.Verify, for both mechanisms and two different sets of one key.
func TestBoundaryFullFlow(t *testing.T) {
	c := newCluster(t, 3, 5) // t = 1: any 3 of 5
	if k, n := c.pk.Threshold(); k != 3 || n != 5 || c.pk.Bits() != 256 || c.pk.Algorithm() != scheme.ECDSAP256HM {
		t.Fatalf("key: %d/%d, %d bits, %v", k, n, c.pk.Bits(), c.pk.Algorithm())
	}
	if c.rec.K != 3 || c.rec.N != 5 || c.rec.Bits != 256 || c.rec.Algorithm != uint32(scheme.ECDSAP256HM) {
		t.Fatalf("record: %+v", c.rec)
	}
	// The record passes the trust layer's structural check, which every node and client runs.
	rec := &tchsmpb.KeyRecord{KeyId: c.rec.KeyId, ClusterId: "cluster-1", Algorithm: c.rec.Algorithm, K: c.rec.K, N: c.rec.N, Bits: c.rec.Bits, Params: c.rec.Params}
	if err := trust.CheckKeyRecord(rec); err != nil {
		t.Fatal(err)
	}
	if trust.Dealt(rec) {
		t.Fatal("an ECDSA P-256 record counts as dealt")
	}
	for _, set := range [][]int{{1, 3, 5}, {2, 3, 4}} {
		before := map[int]int{}
		for _, i := range set {
			before[i] = c.parts[i].(*ecdsahm.Participant).Held(requester)
		}
		ps := c.presign(t, set, 3)
		if len(ps) != 3 {
			t.Fatalf("%d presignatures of 3", len(ps))
		}
		for _, i := range set {
			if h := c.parts[i].(*ecdsahm.Participant).Held(requester); h != before[i]+3 {
				t.Fatalf("node %d holds %d presignatures, %d before", i, h, before[i])
			}
		}
		digest := sha256.Sum256([]byte("www.example. 3600 IN A 192.0.2.1"))
		sig, err := c.sign(scheme.ECDSA, digest[:], ps[0], nil)
		if err != nil {
			t.Fatal(err)
		}
		verify(t, c.pk, digest[:], sig)
		if err := c.pk.Verify(scheme.ECDSA, digest[:], sig); err != nil {
			t.Fatal(err)
		}
		msg := []byte("a whole RRset to hash")
		sig, err = c.sign(scheme.ECDSASHA256, msg, ps[1], nil)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(msg)
		verify(t, c.pk, h[:], sig)
		if err := c.pk.Verify(scheme.ECDSASHA256, msg, sig); err != nil {
			t.Fatal(err)
		}
		if err := c.pk.Verify(scheme.ECDSA, digest[:], sig); !errors.Is(err, scheme.ErrBadSignature) {
			t.Fatalf("a signature on another digest: %v", err)
		}
	}
}

// TestBoundarySplitViewRefused: a client asks one member of the set to sign another digest
// with the same presignature; the echo round shows it to every member, none releases a share,
// and the presignature is gone for good.
func TestBoundarySplitViewRefused(t *testing.T) {
	c := newCluster(t, 5, 5) // t = 2: all five sign
	ps := c.presign(t, []int{1, 2, 3, 4, 5}, 1)
	p := ps[0]
	h1 := sha256.Sum256([]byte("the digest the policy saw"))
	h2 := sha256.Sum256([]byte("another digest"))
	pr := c.sch.(scheme.Presigner)
	a, err := pr.NewPresignedSession(c.pk, scheme.ECDSA, h1[:], p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pr.NewPresignedSession(c.pk, scheme.ECDSA, h2[:], p)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range p.Set() {
		co := a
		if i == 3 {
			co = b // node 3 alone is asked for h2
		}
		req, err := co.Request(i)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := c.ask(i, req)
		if err != nil {
			t.Fatalf("prepare, node %d: %v", i, err)
		}
		if err := a.Accept(i, rep); err != nil { // the client relays every echo
			t.Fatal(err)
		}
	}
	if _, err := a.Finish(); !errors.Is(err, scheme.ErrNextRound) {
		t.Fatalf("after the echoes: %v", err)
	}
	for _, i := range p.Set() {
		req, err := a.Request(i)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := c.ask(i, req)
		if err == nil || len(rep.Payload) != 0 {
			t.Fatalf("node %d released a share under a split view: %x, %v", i, rep.Payload, err)
		}
		if !errors.Is(err, ecdsahm.ErrSplitView) || !errors.Is(err, scheme.ErrInvalidRequest) {
			t.Fatalf("node %d: %v, want a split view refused", i, err)
		}
	}
	// Never again, even with one consistent request.
	if _, err := c.sign(scheme.ECDSA, h1[:], p, nil); !errors.Is(err, scheme.ErrStale) {
		t.Fatalf("the presignature after the split view: %v", err)
	}
}

// TestBoundaryRefusals: reuse, wrong digest lengths, digest 0, a wrong share, a forged echo,
// a discarded set, inconsistent records and parameters.
func TestBoundaryRefusals(t *testing.T) {
	c := newCluster(t, 3, 4)
	set := []int{1, 2, 4}
	ps := c.presign(t, set, 5)
	digest := sha256.Sum256([]byte("x"))
	pr := c.sch.(scheme.Presigner)

	sig, err := c.sign(scheme.ECDSA, digest[:], ps[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	verify(t, c.pk, digest[:], sig)
	if _, err := c.sign(scheme.ECDSA, digest[:], ps[0], nil); !errors.Is(err, scheme.ErrStale) {
		t.Fatalf("reuse: %v", err)
	}

	for _, n := range []int{0, 20, 31, 33, 48, 64} {
		if _, err := pr.NewPresignedSession(c.pk, scheme.ECDSA, make([]byte, n), ps[1]); !errors.Is(err, scheme.ErrInvalidRequest) {
			t.Fatalf("CKM_ECDSA over %d bytes: %v", n, err)
		}
	}
	if _, err := pr.NewPresignedSession(c.pk, scheme.ECDSA, make([]byte, 32), ps[1]); !errors.Is(err, ecdsahm.ErrZeroDigest) {
		t.Fatalf("digest 0: %v", err)
	}
	if _, err := pr.NewPresignedSession(c.pk, scheme.EDDSA, digest[:], ps[1]); !errors.Is(err, scheme.ErrUnknownMechanism) {
		t.Fatalf("EDDSA: %v", err)
	}

	// A wrong share: detected (not attributable), the presignature spent.
	_, err = c.sign(scheme.ECDSA, digest[:], ps[1], func(round, i int, rep *scheme.Reply) {
		if round == 2 && i == 2 {
			rep.Payload = bytes.Clone(rep.Payload)
			rep.Payload[31] ^= 1
		}
	})
	if !errors.Is(err, scheme.ErrBadSignature) {
		t.Fatalf("a wrong share: %v", err)
	}

	// A forged echo (the relay flips a byte): the recipient refuses, no share.
	_, err = c.sign(scheme.ECDSA, digest[:], ps[2], func(round, i int, rep *scheme.Reply) {
		if round == 1 && i == 1 {
			rep.Messages[0].Payload = bytes.Clone(rep.Messages[0].Payload)
			rep.Messages[0].Payload[20] ^= 1
		}
	})
	if !errors.Is(err, ecdsahm.ErrProtocol) {
		t.Fatalf("a forged echo: %v", err)
	}

	// A request whose wire round disagrees with its payload is refused before it touches
	// the presignature.
	co, err := pr.NewPresignedSession(c.pk, scheme.ECDSA, digest[:], ps[3])
	if err != nil {
		t.Fatal(err)
	}
	req, _ := co.Request(1)
	req.Round = 2
	if _, err := c.ask(1, req); !errors.Is(err, scheme.ErrInvalidRequest) {
		t.Fatalf("prepare as round 2: %v", err)
	}
	if h := c.parts[1].(*ecdsahm.Participant).Held(requester); h != 2 { // ps[3] and ps[4]
		t.Fatalf("node 1 holds %d presignatures, want 2", h)
	}

	// A node of the set failed: its pool of that set is discarded.
	c.parts[4].(*ecdsahm.Participant).Discard(requester, 2)
	if _, err := c.sign(scheme.ECDSA, digest[:], ps[3], nil); !errors.Is(err, scheme.ErrStale) {
		t.Fatalf("after Discard: %v", err)
	}

	// Sets other than exactly 2t+1 members, and batches out of range.
	for _, s := range [][]int{{1, 2}, {1, 2, 3, 4}, {2, 1, 3}, {1, 2, 5}} {
		if _, err := pr.NewPresigning(c.pk, s, make([]byte, 16), 1); !errors.Is(err, scheme.ErrInvalidRequest) {
			t.Fatalf("set %v: %v", s, err)
		}
	}
	if _, err := pr.NewPresigning(c.pk, set, make([]byte, 15), 1); !errors.Is(err, scheme.ErrInvalidRequest) {
		t.Fatalf("short batch id: %v", err)
	}
	// A batch id run before is refused by the nodes.
	run, err := pr.NewPresigning(c.pk, set, make([]byte, 16), 1)
	if err != nil {
		t.Fatal(err)
	}
	req, _ = run.Request(1)
	if _, err := c.ask(1, req); err != nil {
		t.Fatal(err)
	}
	run2, _ := pr.NewPresigning(c.pk, set, make([]byte, 16), 1)
	req, _ = run2.Request(1)
	if _, err := c.ask(1, req); !errors.Is(err, scheme.ErrInvalidRequest) {
		t.Fatalf("a batch id again: %v", err)
	}

	// Records: k must be 2t+1, n the params' n, no RSA field.
	for name, mod := range map[string]func(*tchsmpb.KeyRecord){
		"k":      func(r *tchsmpb.KeyRecord) { r.K = 2 },
		"n":      func(r *tchsmpb.KeyRecord) { r.N = 5 },
		"bits":   func(r *tchsmpb.KeyRecord) { r.Bits = 255 },
		"rsa":    func(r *tchsmpb.KeyRecord) { r.Modulus = []byte{1} },
		"params": func(r *tchsmpb.KeyRecord) { r.Params = r.Params[:len(r.Params)-1] },
		"point":  func(r *tchsmpb.KeyRecord) { r.Params = bytes.Clone(r.Params); r.Params[10] ^= 1 },
	} {
		rec := &tchsmpb.KeyRecord{}
		*rec = tchsmpb.KeyRecord{Algorithm: c.rec.Algorithm, K: c.rec.K, N: c.rec.N, Bits: c.rec.Bits, Params: c.rec.Params}
		mod(rec)
		if _, err := c.sch.DecodePublic(rec); !errors.Is(err, scheme.ErrInvalidKey) {
			t.Fatalf("record with a wrong %s: %v", name, err)
		}
	}
	secrets, publics := longTermKeys(t, 4)
	for _, k := range []int{2, 4, 5} {
		if _, err := c.sch.(scheme.DKG).NewDKG(1, scheme.KeyParams{K: k, N: 4, DKG: scheme.DKGParams{Session: []byte("id"), Secret: secrets[0], Public: publics}}, nil); !errors.Is(err, scheme.ErrInvalidKey) {
			t.Fatalf("k=%d of 4: %v", k, err)
		}
	}
	if _, err := c.sch.NewCoordinator(c.pk, scheme.ECDSA, digest[:]); !errors.Is(err, scheme.ErrNotSupported) {
		t.Fatalf("NewCoordinator: %v", err)
	}
	if _, err := c.sch.NewParticipant(c.pk, nil); !errors.Is(err, scheme.ErrNotSupported) {
		t.Fatalf("NewParticipant: %v", err)
	}
}

// TestBoundaryConcurrentSignatures: a node's Participant serves many signatures of one set at
// once (the node answers requests in parallel); run with -race.
func TestBoundaryConcurrentSignatures(t *testing.T) {
	c := newCluster(t, 3, 3)
	ps := c.presign(t, []int{1, 2, 3}, 16)
	errs := make(chan error, len(ps))
	for k, p := range ps {
		go func() {
			digest := sha256.Sum256([]byte(fmt.Sprintf("rrset %d", k)))
			sig, err := c.sign(scheme.ECDSA, digest[:], p, nil)
			if err == nil {
				err = c.pk.Verify(scheme.ECDSA, digest[:], sig)
			}
			errs <- err
		}()
	}
	for range ps {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 3; i++ {
		if h := c.parts[i].(*ecdsahm.Participant).Held(requester); h != 0 {
			t.Fatalf("node %d still holds %d presignatures", i, h)
		}
	}
}

// FuzzRespond feeds a node's Participant arbitrary requests and relayed messages (a malicious
// client): it must never panic, and never answer with an unbounded reply.
func FuzzRespond(f *testing.F) {
	c := newClusterOpts(f, 3, 3, ecdsahm.Options{MaxPresignatures: 8, MaxRuns: 2})
	// Seeds: every kind of request of a real run, from the coordinator.
	run, err := c.sch.(scheme.Presigner).NewPresigning(c.pk, []int{1, 2, 3}, make([]byte, 16), 2)
	if err != nil {
		f.Fatal(err)
	}
	req, _ := run.Request(1)
	f.Add(req.Payload, []byte{}, 2)
	ps := c.presign(f, []int{1, 2, 3}, 2)
	digest := sha256.Sum256([]byte("seed"))
	co, err := c.sch.(scheme.Presigner).NewPresignedSession(c.pk, scheme.ECDSA, digest[:], ps[0])
	if err != nil {
		f.Fatal(err)
	}
	req, _ = co.Request(1)
	f.Add(req.Payload, []byte{}, 2)
	rep, err := c.ask(1, req)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{3, 0, 20}, rep.Messages[0].Payload, 1)
	f.Fuzz(func(t *testing.T, payload, relayed []byte, from int) {
		req := scheme.Request{Payload: payload, Relayed: []scheme.Message{{From: from, To: 1, Payload: relayed}}}
		if rep, err := c.ask(1, req); err == nil && len(rep.Payload) > 64*1024 {
			t.Fatalf("a %d-byte reply", len(rep.Payload))
		}
	})
}

// BenchmarkBoundarySign_5of5_t2: one signature through the boundary, all five members in one
// process: prepare (5 × seal 4 echoes), release (5 × open 4, share), combine and verify. The
// presignatures are made before the timer starts.
func BenchmarkBoundarySign_5of5_t2(b *testing.B) {
	c := newCluster(b, 5, 5)
	var ps []scheme.Presignature
	for len(ps) < b.N {
		ps = append(ps, c.presign(b, []int{1, 2, 3, 4, 5}, min(b.N-len(ps), ecdsahm.MaxBatch))...)
	}
	digest := sha256.Sum256([]byte("rrset"))
	b.ResetTimer()
	for i := range b.N {
		if _, err := c.sign(scheme.ECDSA, digest[:], ps[i], nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TestBoundaryParticipantLimits: runs in progress and prepared signatures are capped, and
// expire: an abandoned run is dropped (and wiped) when another starts after its TTL, a
// prepared presignature is burnt after its TTL.
func TestBoundaryParticipantLimits(t *testing.T) {
	now := time.Unix(1e9, 0)
	c := newClusterOpts(t, 3, 3, ecdsahm.Options{MaxRuns: 1, RunTTL: time.Minute, PreparedTTL: time.Minute, MaxPresignatures: 4,
		Now: func() time.Time { return now }})
	pr := c.sch.(scheme.Presigner)
	// start begins a run and asks node 1 for its round 1.
	start := func(b byte, count int) (scheme.Presigning, scheme.Reply, error) {
		run, err := pr.NewPresigning(c.pk, []int{1, 2, 3}, bytes.Repeat([]byte{b}, 16), count)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := run.Request(1)
		rep, err := c.ask(1, req)
		return run, rep, err
	}
	a, rep1, err := start(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Accept(1, rep1); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{2, 3} {
		req, _ := a.Request(i)
		rep, err := c.ask(i, req)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Accept(i, rep); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Finish(); !errors.Is(err, scheme.ErrNextRound) {
		t.Fatal(err)
	}
	if _, _, err := start(2, 1); !errors.Is(err, scheme.ErrInvalidRequest) {
		t.Fatalf("a second run beyond MaxRuns: %v", err)
	}
	now = now.Add(2 * time.Minute)
	if _, _, err := start(3, 5); !errors.Is(err, scheme.ErrInvalidRequest) {
		t.Fatalf("a run beyond MaxPresignatures: %v", err)
	}
	if _, _, err := start(4, 1); err != nil {
		t.Fatalf("a run after the first expired: %v", err)
	}
	// Run a is gone from node 1 (expired and wiped): its round 2 there is stale.
	req, _ := a.Request(1)
	if _, err := c.ask(1, req); !errors.Is(err, scheme.ErrStale) {
		t.Fatalf("round 2 of an expired run: %v", err)
	}

	// A prepared presignature not released within PreparedTTL is burnt.
	now = now.Add(2 * time.Minute) // the run of batch 4 expires too
	ps := c.presign(t, []int{1, 2, 3}, 1)
	digest := sha256.Sum256([]byte("late"))
	co, err := pr.NewPresignedSession(c.pk, scheme.ECDSA, digest[:], ps[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{1, 2, 3} {
		req, _ := co.Request(i)
		rep, err := c.ask(i, req)
		if err != nil {
			t.Fatal(err)
		}
		co.Accept(i, rep)
	}
	if _, err := co.Finish(); !errors.Is(err, scheme.ErrNextRound) {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	// Another prepare evicts the expired one (a fresh presignature for it).
	ps2 := c.presign(t, []int{1, 2, 3}, 1)
	co2, _ := pr.NewPresignedSession(c.pk, scheme.ECDSA, digest[:], ps2[0])
	req, _ = co2.Request(1)
	if _, err := c.ask(1, req); err != nil {
		t.Fatal(err)
	}
	req, _ = co.Request(1)
	if _, err := c.ask(1, req); !errors.Is(err, scheme.ErrStale) {
		t.Fatalf("release after PreparedTTL: %v", err)
	}
}
