package trust

import (
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"filippo.io/edwards25519"

	"google.golang.org/protobuf/proto"

	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/frost"
)

// replaced returns c's manifest with node index i given a new identity (a replaced node).
func replaced(t *testing.T, c *cluster, i int, id string) (*Manifest, *Identity) {
	t.Helper()
	nid := mustIdentity(t, id, RoleNode)
	m := *c.m
	m.Nodes = append([]Member(nil), c.m.Nodes...)
	mem := nid.Public()
	mem.Index = i
	m.Nodes[i-1] = mem
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	return &m, nid
}

// frostRecord is a 2-of-3 FROST key record of c's cluster (random polynomial).
func frostRecord(t *testing.T) *tchsmpb.KeyRecord {
	t.Helper()
	rnd := func() *edwards25519.Scalar {
		var b [64]byte
		rand.Read(b[:])
		s, err := edwards25519.NewScalar().SetUniformBytes(b[:])
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a0, a1 := rnd(), rnd()
	var ys [][]byte
	for i := 1; i <= 3; i++ {
		var xb [32]byte
		xb[0] = byte(i)
		x, _ := edwards25519.NewScalar().SetCanonicalBytes(xb[:])
		f := edwards25519.NewScalar().MultiplyAdd(a1, x, a0)
		ys = append(ys, new(edwards25519.Point).ScalarBaseMult(f).Bytes())
	}
	pk, err := frost.NewPublicKey(2, new(edwards25519.Point).ScalarBaseMult(a0).Bytes(), ys)
	if err != nil {
		t.Fatal(err)
	}
	rec := &tchsmpb.KeyRecord{KeyId: "00112233445566778899aabbccddeeff", ClusterId: "test-cluster", CreatedUnix: 1_800_000_000}
	if err := (frost.Scheme{}).EncodePublic(pk, rec); err != nil {
		t.Fatal(err)
	}
	if scheme.Of(rec) != scheme.Ed25519FROST {
		t.Fatal("not a FROST record")
	}
	return rec
}

// TestRemovedNodeRefused: once the manifest no longer lists a node identity (the node at its
// index was replaced), every process refuses that identity's envelopes, whatever they carry,
// and its endorsements of key records no longer count, while the records the other nodes
// endorsed still verify with k endorsements by listed nodes.
func TestRemovedNodeRefused(t *testing.T) {
	c := newCluster(t)
	m2, node2b := replaced(t, c, 2, "node2b")
	old := c.nodes[1]
	opener := func(m *Manifest) *Opener {
		o, err := NewOpener(m, WithClock(c.clock.Now))
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	id := "00112233445566778899aabbccddeeff"
	for bt, msg := range map[tchsmpb.BodyType]proto.Message{
		tchsmpb.BodyType_BODY_TYPE_DKG_REPLY:       &tchsmpb.DKGReply{KeyId: id, Step: 1},
		tchsmpb.BodyType_BODY_TYPE_DKG_COMMIT_ACK:  &tchsmpb.DKGCommitAck{KeyId: id, Node: old.ID, Ok: true},
		tchsmpb.BodyType_BODY_TYPE_SIGNATURE_SHARE: &tchsmpb.SignatureShare{KeyId: id, Index: 2, X: []byte{1}},
		tchsmpb.BodyType_BODY_TYPE_HEALTH:          &tchsmpb.Health{Node: old.ID},
	} {
		raw, _, err := c.sealer(old).Seal(bt, msg, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := opener(c.m).Open(raw); err != nil {
			t.Fatalf("%v under the old manifest: %v", bt, err)
		}
		if _, err := opener(m2).Open(raw); !errors.Is(err, ErrUnknownSender) {
			t.Fatalf("%v from the removed identity under the new manifest: %v, want ErrUnknownSender", bt, err)
		}
		// The new identity at the same index is a node like any other.
		raw, _, err = c.sealer(node2b).Seal(bt, msg, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := opener(m2).Open(raw); err != nil {
			t.Fatalf("%v from the new identity: %v", bt, err)
		}
		if _, err := opener(c.m).Open(raw); !errors.Is(err, ErrUnknownSender) {
			t.Fatalf("%v from the new identity under the old manifest: %v", bt, err)
		}
	}

	rec := frostRecord(t)
	raw, _, err := EndorseKeyRecord(c.nodes[0], rec)
	if err != nil {
		t.Fatal(err)
	}
	endorse := func(ids ...*Identity) *tchsmpb.SignedKeyRecord {
		s := &tchsmpb.SignedKeyRecord{Record: raw}
		for _, i := range ids {
			s.Endorsements = append(s.Endorsements, EndorseRecordBytes(i, raw))
		}
		return s
	}
	// Endorsed by all three: under the new manifest, two listed endorsers remain (k = 2).
	if _, err := VerifyKeyRecord(m2, endorse(c.nodes[0], old, c.nodes[2])); err != nil {
		t.Fatalf("a record endorsed by k listed nodes and the removed one: %v", err)
	}
	// Endorsed by k nodes, one of them removed: below k under the new manifest.
	two := endorse(c.nodes[0], old)
	if _, err := VerifyKeyRecord(c.m, two); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyKeyRecord(m2, two); !errors.Is(err, ErrBadRecord) || !errors.Is(err, ErrFewEndorsements) {
		t.Fatalf("k endorsements of which one by the removed identity: %v, want ErrFewEndorsements", err)
	}
	// What a node stored before the replacement, and a resharing starts from.
	if got, full, err := VerifyKeyRecordBeforeReplacement(m2, two); err != nil || full || got.GetKeyId() != rec.KeyId {
		t.Fatalf("VerifyKeyRecordBeforeReplacement: full %v, %v", full, err)
	}
	if _, full, err := VerifyKeyRecordBeforeReplacement(m2, endorse(c.nodes[0], old, c.nodes[2])); err != nil || !full {
		t.Fatalf("a record k listed nodes endorsed: full %v, %v", full, err)
	}
	if _, _, err := VerifyKeyRecordBeforeReplacement(m2, endorse(old)); !errors.Is(err, ErrFewEndorsements) {
		t.Fatalf("no endorsement by a listed node: %v", err)
	}
	if err := VerifyEndorsement(m2, raw, EndorseRecordBytes(old, raw)); !errors.Is(err, ErrUnknownSender) {
		t.Fatalf("the removed identity's endorsement: %v", err)
	}
	// A listed node's bad endorsement still spoils the record (only unlisted ones are skipped);
	// the old key cannot speak for the new identity.
	forged := EndorseRecordBytes(old, raw)
	forged.Node = node2b.ID
	bad := endorse(c.nodes[0], c.nodes[2])
	bad.Endorsements = append(bad.Endorsements, forged)
	if _, err := VerifyKeyRecord(m2, bad); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("an endorsement under the new identity's name by the old key: %v", err)
	}
	// Endorsements by an identity never listed do not count towards k either.
	if _, err := VerifyKeyRecord(m2, endorse(c.nodes[0], c.mallory)); !errors.Is(err, ErrBadRecord) {
		t.Fatalf("one listed endorsement and an outsider's: %v", err)
	}
}
