package trust

import (
	"bytes"
	"errors"
	"testing"
	"time"

	tchsmpb "github.com/tchsm/tchsm/proto"
	"google.golang.org/protobuf/proto"
)

func TestPairKeySymmetricAndDistinct(t *testing.T) {
	c := newCluster(t)
	node1 := c.m.Nodes[0]
	ab, err := pairKey(c.alice, node1, c.m.ClusterID)
	if err != nil {
		t.Fatal(err)
	}
	ba, err := pairKey(c.nodes[0], c.alice.Public(), c.m.ClusterID)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ab, ba) || len(ab) != 32 {
		t.Fatalf("alice->node1 %x, node1->alice %x: want the same 32 bytes", ab, ba)
	}
	other, _ := pairKey(c.alice, c.m.Nodes[1], c.m.ClusterID)
	bob, _ := pairKey(c.bob, node1, c.m.ClusterID)
	otherCluster, _ := pairKey(c.alice, node1, "other-cluster")
	for name, k := range map[string][]byte{"alice-node2": other, "bob-node1": bob, "other cluster": otherCluster} {
		if bytes.Equal(k, ab) {
			t.Errorf("%s shares alice-node1's key", name)
		}
	}
	// A low-order or malformed peer key gives an error, never a predictable key.
	bad := node1
	bad.EncPub = make([]byte, 32)
	if _, err := pairKey(c.alice, bad, c.m.ClusterID); !errors.Is(err, ErrInvalidIdentity) {
		t.Fatalf("all-zero peer key: %v", err)
	}
	bad.EncPub = []byte{1, 2, 3}
	if _, err := pairKey(c.alice, bad, c.m.ClusterID); !errors.Is(err, ErrInvalidIdentity) {
		t.Fatalf("short peer key: %v", err)
	}
}

func TestSealToRoundTripAndReply(t *testing.T) {
	c := newCluster(t)
	node1 := c.nodes[0]
	nodeOpener := c.opener(t, WithIdentity(node1))
	raw, msgID, err := c.aliceSealer.SealTo(c.m.Nodes[0], tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, signReq, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	op, err := nodeOpener.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	if op.Sender.ID != "alice" || op.Recipient != "node1" || !bytes.Equal(op.MessageID, msgID) {
		t.Fatalf("opened %+v", op)
	}
	// The answer carries a MAC for alice, and alice's opener accepts it as the answer.
	rep, err := c.sealer(node1).Reply(op, tchsmpb.BodyType_BODY_TYPE_SIGNATURE_SHARE,
		&tchsmpb.SignatureShare{KeyId: signReq.KeyId, Index: 1, X: []byte{5}}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	env := decodeEnvelope(t, rep)
	if len(env.Signature) != 0 || env.Recipient != "alice" || len(env.Mac) != macSize {
		t.Fatalf("reply to a MAC request: signature %d bytes, recipient %q, mac %d bytes", len(env.Signature), env.Recipient, len(env.Mac))
	}
	rop, err := c.opener(t, WithIdentity(c.alice)).Open(rep)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rop.InReplyTo, msgID) || rop.Sender.ID != "node1" {
		t.Fatalf("reply %+v", rop)
	}
	// The answer to a signed request is signed.
	signed, _, err := c.aliceSealer.Seal(tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, signReq, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	sop, err := nodeOpener.Open(signed)
	if err != nil {
		t.Fatal(err)
	}
	srep, err := c.sealer(node1).Reply(sop, tchsmpb.BodyType_BODY_TYPE_SIGNATURE_SHARE,
		&tchsmpb.SignatureShare{KeyId: signReq.KeyId, Index: 1, X: []byte{5}}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if e := decodeEnvelope(t, srep); len(e.Signature) == 0 || e.Recipient != "" || len(e.Mac) != 0 {
		t.Fatal("reply to a signed request is not signed")
	}
	if _, err := c.opener(t).Open(srep); err != nil {
		t.Fatalf("signed reply: %v", err)
	}
}

func TestOpenRejectsBadMACs(t *testing.T) {
	c := newCluster(t)
	node1, node2 := c.nodes[0], c.nodes[1]
	good, _, err := c.aliceSealer.SealTo(c.m.Nodes[0], tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, signReq, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// An answer from node1 to alice, to be reflected back at node1.
	op, err := c.opener(t, WithIdentity(node1)).Open(good)
	if err != nil {
		t.Fatal(err)
	}
	answer, err := c.sealer(node1).Reply(op, tchsmpb.BodyType_BODY_TYPE_SIGNATURE_SHARE,
		&tchsmpb.SignatureShare{KeyId: signReq.KeyId, Index: 1, X: []byte{5}}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Mallory is not in the manifest; bob is, but does not hold alice's pair key.
	fromBob, _, err := c.sealer(c.bob).SealTo(c.m.Nodes[0], tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, signReq, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		raw    []byte
		opener *Opener
		want   error
	}{
		{"tag flipped", tamper(t, good, func(e *tchsmpb.Envelope) { e.Mac[3] ^= 1 }), c.opener(t, WithIdentity(node1)), ErrBadSignature},
		{"short tag", tamper(t, good, func(e *tchsmpb.Envelope) { e.Mac = e.Mac[:16] }), c.opener(t, WithIdentity(node1)), ErrMalformed},
		{"tag and signature", tamper(t, good, func(e *tchsmpb.Envelope) { e.Signature = make([]byte, 64) }), c.opener(t, WithIdentity(node1)), ErrMalformed},
		{"tag without recipient", tamper(t, good, func(e *tchsmpb.Envelope) { e.Recipient = "" }), c.opener(t, WithIdentity(node1)), ErrMalformed},
		{"recipient without tag", tamper(t, good, func(e *tchsmpb.Envelope) { e.Mac = nil }), c.opener(t, WithIdentity(node1)), ErrMalformed},
		{"shown to another node", good, c.opener(t, WithIdentity(node2)), ErrBadSignature},
		{"readdressed to another node", tamper(t, good, func(e *tchsmpb.Envelope) { e.Recipient = "node2" }), c.opener(t, WithIdentity(node2)), ErrBadSignature},
		{"opener without identity", good, c.opener(t), ErrBadSignature},
		{"bob claims to be alice", tamper(t, fromBob, func(e *tchsmpb.Envelope) { e.Sender = "alice" }), c.opener(t, WithIdentity(node1)), ErrBadSignature},
		{"tampered body", tamper(t, good, func(e *tchsmpb.Envelope) { e.Body = append(e.Body, 0x18, 0x00) }), c.opener(t, WithIdentity(node1)), ErrBadSignature},
		{"tampered deadline", tamper(t, good, func(e *tchsmpb.Envelope) { e.Deadline += int64(time.Second) }), c.opener(t, WithIdentity(node1)), ErrBadSignature},
		{"answer reflected to its sender", answer, c.opener(t, WithIdentity(node1)), ErrBadSignature},
		{"answer readdressed to its sender", tamper(t, answer, func(e *tchsmpb.Envelope) { e.Recipient = "node1" }), c.opener(t, WithIdentity(node1)), ErrBadSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			op, err := tc.opener.Open(tc.raw)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open = %+v, %v; want %v", op, err, tc.want)
			}
		})
	}
	// The references open where they should.
	if _, err := c.opener(t, WithIdentity(node1)).Open(good); err != nil {
		t.Fatal(err)
	}
	if _, err := c.opener(t, WithIdentity(node1)).Open(fromBob); err != nil {
		t.Fatal(err)
	}
	if _, err := c.opener(t, WithIdentity(c.alice)).Open(answer); err != nil {
		t.Fatal(err)
	}
	// A replayed MAC envelope is refused like a signed one.
	o := c.opener(t, WithIdentity(node1))
	if _, err := o.Open(good); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Open(good); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay: %v", err)
	}
}

func TestSealToMalformedRecipient(t *testing.T) {
	c := newCluster(t)
	bad := c.m.Nodes[0]
	bad.EncPub = nil
	if _, _, err := c.aliceSealer.SealTo(bad, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, signReq, time.Second); err == nil {
		t.Fatal("SealTo a member without an encryption key succeeded")
	}
}

func BenchmarkSealOpen(b *testing.B) {
	c := newCluster(b)
	for _, mode := range []string{"signed", "mac"} {
		b.Run(mode, func(b *testing.B) {
			o := c.opener(b, WithIdentity(c.nodes[0]), WithMaxReplayEntries(1<<30))
			s := &Sealer{Identity: c.alice, ClusterID: c.m.ClusterID}
			o.clock = time.Now
			for b.Loop() {
				var raw []byte
				var err error
				if mode == "mac" {
					raw, _, err = s.SealTo(c.m.Nodes[0], tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, signReq, 10*time.Second)
				} else {
					raw, _, err = s.Seal(tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, signReq, 10*time.Second)
				}
				if err != nil {
					b.Fatal(err)
				}
				if _, err := o.Open(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func decodeEnvelope(t testing.TB, raw []byte) *tchsmpb.Envelope {
	t.Helper()
	e := new(tchsmpb.Envelope)
	if err := proto.Unmarshal(raw, e); err != nil {
		t.Fatal(err)
	}
	return e
}
