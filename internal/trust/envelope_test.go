package trust

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tchsmpb "github.com/tchsm/tchsm/proto"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

var signReq = &tchsmpb.SignRequest{KeyId: "0123456789abcdef0123456789abcdef", Payload: []byte("digestinfo"), WantProof: true}

// rawEnvelope builds and signs an envelope by hand, bypassing Sealer's own checks, as an
// attacker (or a buggy peer) could.
func rawEnvelope(t testing.TB, signer *Identity, mutate func(e *tchsmpb.Envelope)) []byte {
	t.Helper()
	body, err := proto.Marshal(signReq)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	e := &tchsmpb.Envelope{
		Version: 1, ClusterId: "test-cluster", Sender: signer.ID,
		MessageId: bytes.Repeat([]byte{7}, 16), IssuedAt: now.UnixNano(), Deadline: now.Add(10 * time.Second).UnixNano(),
		BodyType: tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, Body: body,
	}
	if mutate != nil {
		mutate(e)
	}
	e.Signature = ed25519.Sign(signer.SignKey, EnvelopeSigningInput(e))
	raw, err := proto.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// resign decodes raw, applies mutate to the decoded envelope without re-signing, and encodes it.
func tamper(t testing.TB, raw []byte, mutate func(e *tchsmpb.Envelope)) []byte {
	t.Helper()
	e := new(tchsmpb.Envelope)
	if err := proto.Unmarshal(raw, e); err != nil {
		t.Fatal(err)
	}
	mutate(e)
	out, err := proto.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSealOpenRoundTrip(t *testing.T) {
	c := newCluster(t)
	node1 := c.opener(t)
	raw, _, err := c.aliceSealer.Seal(tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, signReq, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	op, err := node1.Open(raw)
	if err != nil {
		t.Fatalf("node1 opening alice's sign request: %v", err)
	}
	if op.Sender.ID != "alice" || op.Sender.Role != RoleClient || op.Type != tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST {
		t.Fatalf("opened %+v", op)
	}
	if !proto.Equal(op.Message, signReq) {
		t.Fatalf("body %v, want %v", op.Message, signReq)
	}
	var got tchsmpb.SignRequest
	if err := op.Unmarshal(&got); err != nil || !proto.Equal(&got, signReq) {
		t.Fatalf("Unmarshal: %v %v", err, &got)
	}
	if err := op.Unmarshal(new(tchsmpb.Health)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Unmarshal into the wrong type: %v", err)
	}
	if len(op.MessageID) != MessageIDSize || op.InReplyTo != nil {
		t.Fatalf("ids %x %x", op.MessageID, op.InReplyTo)
	}
	if !op.Deadline.Equal(c.clock.Now().Add(10*time.Second)) || !op.IssuedAt.Equal(c.clock.Now()) {
		t.Fatalf("times %v %v", op.IssuedAt, op.Deadline)
	}

	// node1 answers; alice's opener sees the reply bound to her request.
	share := &tchsmpb.SignatureShare{KeyId: signReq.KeyId, Index: 1, X: []byte{1, 2, 3}, Proof: &tchsmpb.ShareProof{C: []byte{4}, Z: []byte{5}}}
	reply, err := c.sealer(c.nodes[0]).Reply(op, tchsmpb.BodyType_BODY_TYPE_SIGNATURE_SHARE, share, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	alice := c.opener(t)
	rop, err := alice.Open(reply)
	if err != nil {
		t.Fatal(err)
	}
	if rop.Sender.ID != "node1" || rop.Sender.Index != 1 || !bytes.Equal(rop.InReplyTo, op.MessageID) || !proto.Equal(rop.Message, share) {
		t.Fatalf("reply %+v", rop)
	}
	// Re-pointing the reply at another request breaks the signature.
	other := bytes.Repeat([]byte{9}, 16)
	if _, err := c.opener(t).Open(tamper(t, reply, func(e *tchsmpb.Envelope) { e.InReplyTo = other })); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("re-pointed reply: %v", err)
	}
}

func TestSealRefuses(t *testing.T) {
	c := newCluster(t)
	cases := []struct {
		name string
		s    *Sealer
		bt   tchsmpb.BodyType
		body proto.Message
		ttl  time.Duration
	}{
		{"body type mismatch", c.aliceSealer, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, &tchsmpb.Health{}, time.Second},
		{"nil body", c.aliceSealer, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, nil, time.Second},
		{"not a body", c.aliceSealer, tchsmpb.BodyType_BODY_TYPE_UNSPECIFIED, &tchsmpb.KeyShare{}, time.Second},
		{"zero ttl", c.aliceSealer, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, signReq, 0},
		{"client deals", c.aliceSealer, tchsmpb.BodyType_BODY_TYPE_KEY_SHARE_DELIVERY, &tchsmpb.KeyShareDelivery{}, time.Second},
		{"bad cluster id", &Sealer{Identity: c.alice, ClusterID: "bad cluster"}, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, signReq, time.Second},
		{"no identity", &Sealer{ClusterID: "test-cluster"}, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, signReq, time.Second},
	}
	for _, tc := range cases {
		if _, _, err := tc.s.Seal(tc.bt, tc.body, tc.ttl); err == nil {
			t.Errorf("%s: Seal succeeded", tc.name)
		}
	}
	if _, err := c.aliceSealer.Reply(&Opened{}, tchsmpb.BodyType_BODY_TYPE_LIST_KEYS, &tchsmpb.ListKeys{}, time.Second); err == nil {
		t.Error("Reply to an unopened request succeeded")
	}
}

func TestOpenRejects(t *testing.T) {
	c := newCluster(t)
	good, _, err := c.aliceSealer.Seal(tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, signReq, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	otherCluster := &Sealer{Identity: c.alice, ClusterID: "other-cluster", Clock: c.clock.Now}
	wrongCluster, _, err := otherCluster.Seal(tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, signReq, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	fromMallory, _, err := c.sealer(c.mallory).Seal(tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, signReq, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	withUnknownField := append(bytes.Clone(good), protowire.AppendTag(nil, 99, protowire.VarintType)...)
	withUnknownField = protowire.AppendVarint(withUnknownField, 1)

	cases := []struct {
		name string
		raw  []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"garbage", []byte("this is not a protobuf envelope at all"), ErrMalformed},
		{"truncated", good[:len(good)-10], ErrMalformed},
		{"unknown field", withUnknownField, ErrMalformed},
		{"version 0", rawEnvelope(t, c.alice, func(e *tchsmpb.Envelope) { e.Version = 0 }), ErrMalformed},
		{"version 2", rawEnvelope(t, c.alice, func(e *tchsmpb.Envelope) { e.Version = 2 }), ErrUnsupportedVersion},
		{"short message id", rawEnvelope(t, c.alice, func(e *tchsmpb.Envelope) { e.MessageId = e.MessageId[:8] }), ErrMalformed},
		{"bad in_reply_to length", rawEnvelope(t, c.alice, func(e *tchsmpb.Envelope) { e.InReplyTo = []byte{1} }), ErrMalformed},
		{"signed garbage body", rawEnvelope(t, c.alice, func(e *tchsmpb.Envelope) { e.Body = []byte{0xff, 0xff, 0xff} }), ErrMalformed},
		{"unknown body type", rawEnvelope(t, c.alice, func(e *tchsmpb.Envelope) { e.BodyType = 99 }), ErrUnsupportedBodyType},
		{"wrong cluster", wrongCluster, ErrWrongCluster},
		{"mallory, not in manifest", fromMallory, ErrUnknownSender},
		{"mallory signs as alice", rawEnvelope(t, c.mallory, func(e *tchsmpb.Envelope) { e.Sender = "alice" }), ErrBadSignature},
		{"tampered body", tamper(t, good, func(e *tchsmpb.Envelope) { e.Body = append(e.Body, 0x18, 0x00) }), ErrBadSignature},
		{"tampered deadline", tamper(t, good, func(e *tchsmpb.Envelope) { e.Deadline += int64(time.Second) }), ErrBadSignature},
		{"tampered issued_at", tamper(t, good, func(e *tchsmpb.Envelope) { e.IssuedAt-- }), ErrBadSignature},
		{"tampered message id", tamper(t, good, func(e *tchsmpb.Envelope) { e.MessageId[0] ^= 1 }), ErrBadSignature},
		{"tampered body type", tamper(t, good, func(e *tchsmpb.Envelope) { e.BodyType = tchsmpb.BodyType_BODY_TYPE_PROOF_REQUEST }), ErrBadSignature},
		{"sender swapped to bob", tamper(t, good, func(e *tchsmpb.Envelope) { e.Sender = "bob" }), ErrBadSignature},
		{"signature flipped", tamper(t, good, func(e *tchsmpb.Envelope) { e.Signature[5] ^= 0x40 }), ErrBadSignature},
		{"client sends a share delivery", rawEnvelope(t, c.alice, func(e *tchsmpb.Envelope) {
			e.BodyType = tchsmpb.BodyType_BODY_TYPE_KEY_SHARE_DELIVERY
			e.Body = nil
		}), ErrUnauthorized},
		{"node sends a sign request", rawEnvelope(t, c.nodes[1], nil), ErrUnauthorized},
		{"dealer sends a sign request", rawEnvelope(t, c.dealer, nil), ErrUnauthorized},
		{"future-dated beyond skew", rawEnvelope(t, c.alice, func(e *tchsmpb.Envelope) {
			e.IssuedAt += int64(6 * time.Second)
			e.Deadline += int64(6 * time.Second)
		}), ErrExpired},
		{"deadline passed", rawEnvelope(t, c.alice, func(e *tchsmpb.Envelope) {
			e.IssuedAt -= int64(time.Minute)
			e.Deadline = e.IssuedAt + int64(time.Second)
		}), ErrExpired},
		{"deadline before issue", rawEnvelope(t, c.alice, func(e *tchsmpb.Envelope) { e.Deadline = e.IssuedAt - 1 }), ErrExpired},
		{"lifetime too long", rawEnvelope(t, c.alice, func(e *tchsmpb.Envelope) { e.Deadline = e.IssuedAt + int64(DefaultMaxTTL) + 1 }), ErrExpired},
		{"lifetime overflows int64", rawEnvelope(t, c.alice, func(e *tchsmpb.Envelope) { e.IssuedAt = -1 << 63 }), ErrExpired},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			op, err := c.opener(t).Open(tc.raw)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v, %v; want %v", op, err, tc.want)
			}
		})
	}
	// The reference message itself opens: the cases above fail for the reason named.
	if _, err := c.opener(t).Open(good); err != nil {
		t.Fatal(err)
	}
	if _, err := c.opener(t).Open(rawEnvelope(t, c.alice, nil)); err != nil {
		t.Fatalf("hand-built reference envelope: %v", err)
	}
}

func TestOpenEveryTruncationAndBitFlip(t *testing.T) {
	c := newCluster(t)
	good, _, err := c.aliceSealer.Seal(tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, signReq, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	o := c.opener(t)
	sentinels := []error{ErrMalformed, ErrWrongCluster, ErrUnknownSender, ErrBadSignature, ErrUnauthorized, ErrExpired, ErrReplay,
		ErrUnsupportedVersion, ErrUnsupportedBodyType}
	isSentinel := func(err error) bool {
		for _, s := range sentinels {
			if errors.Is(err, s) {
				return true
			}
		}
		return false
	}
	for n := 0; n < len(good); n++ {
		if _, err := o.Open(good[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("prefix of %d/%d bytes: %v, want ErrMalformed", n, len(good), err)
		}
	}
	for i := range good {
		for bit := 0; bit < 8; bit++ {
			b := bytes.Clone(good)
			b[i] ^= 1 << bit
			op, err := o.Open(b)
			if err == nil {
				// A flip inside a length or tag can still decode to the same fields (for example
				// a non-minimal varint); only identical contents may pass.
				t.Fatalf("flip byte %d bit %d accepted: %+v", i, bit, op)
			}
			if !isSentinel(err) {
				t.Fatalf("flip byte %d bit %d: %v is no sentinel", i, bit, err)
			}
		}
	}
}

func TestReplay(t *testing.T) {
	c := newCluster(t)
	o := c.opener(t)
	raw, _, err := c.aliceSealer.Seal(tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, signReq, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Open(raw); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Open(raw); !errors.Is(err, ErrReplay) {
		t.Fatalf("second Open = %v, want ErrReplay", err)
	}
	// Another node (its own Opener) may still accept the broadcast once.
	if _, err := c.opener(t).Open(raw); err != nil {
		t.Fatalf("second node: %v", err)
	}
	// Once the deadline passes the id may leave the cache, and the message is expired anyway.
	c.clock.Advance(11 * time.Second)
	if _, err := o.Open(raw); !errors.Is(err, ErrExpired) {
		t.Fatalf("after deadline = %v, want ErrExpired", err)
	}
}

func TestReplayConcurrent(t *testing.T) {
	c := newCluster(t)
	o := c.opener(t)
	raw, _, err := c.aliceSealer.Seal(tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, signReq, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var ok, replays atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			_, err := o.Open(raw)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrReplay):
				replays.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || replays.Load() != 15 {
		t.Fatalf("%d accepted, %d replays; want 1 and 15", ok.Load(), replays.Load())
	}
}

// One sender over its quota is refused alone: the others go on (a flood from one client must
// not stall a node for everyone).
func TestReplayQuotaPerSender(t *testing.T) {
	c := newCluster(t)
	o := c.opener(t, WithReplayQuota(3))
	seal := func(s *Sealer) []byte {
		raw, _, err := s.Seal(tchsmpb.BodyType_BODY_TYPE_LIST_KEYS, &tchsmpb.ListKeys{}, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	bob := c.sealer(c.bob)
	for i := range 3 {
		if _, err := o.Open(seal(c.aliceSealer)); err != nil {
			t.Fatalf("alice's message %d: %v", i, err)
		}
	}
	if _, err := o.Open(seal(c.aliceSealer)); !errors.Is(err, ErrReplayCacheFull) || !strings.Contains(err.Error(), "alice") {
		t.Fatalf("alice over her quota: %v, want ErrReplayCacheFull naming her", err)
	}
	for i := range 3 {
		if _, err := o.Open(seal(bob)); err != nil {
			t.Fatalf("bob's message %d while alice is over her quota: %v", i, err)
		}
	}
	c.clock.Advance(10*time.Second + DefaultSkew + time.Nanosecond)
	if _, err := o.Open(seal(c.aliceSealer)); err != nil {
		t.Fatalf("alice after her ids expired: %v", err)
	}
	if n := o.replay.perSender["alice"]; n != 1 || o.replay.perSender["bob"] != 0 {
		t.Fatalf("per-sender counts after expiry: %v", o.replay.perSender)
	}
}

// A node refuses requests issued before it started (its replay cache is new), but still takes
// durable messages that waited for it.
func TestNotBefore(t *testing.T) {
	c := newCluster(t)
	old, _, err := c.aliceSealer.Seal(tchsmpb.BodyType_BODY_TYPE_LIST_KEYS, &tchsmpb.ListKeys{}, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	del, _, err := c.dealerS.Seal(tchsmpb.BodyType_BODY_TYPE_DELETE_KEY, &tchsmpb.DeleteKey{KeyId: signReq.KeyId}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c.clock.Advance(DefaultSkew + time.Second)
	o := c.opener(t, WithNotBefore(c.clock.Now()))
	if _, err := o.Open(old); !errors.Is(err, ErrExpired) || !strings.Contains(err.Error(), "before this process started") {
		t.Fatalf("a request issued before the start: %v, want ErrExpired", err)
	}
	if _, err := o.Open(del); err != nil {
		t.Fatalf("a deletion queued before the start: %v", err)
	}
	fresh, _, _ := c.aliceSealer.Seal(tchsmpb.BodyType_BODY_TYPE_LIST_KEYS, &tchsmpb.ListKeys{}, 20*time.Second)
	if _, err := o.Open(fresh); err != nil {
		t.Fatalf("a request issued after the start: %v", err)
	}
	// Within the allowed skew of the start: accepted (the clocks of two hosts differ).
	o = c.opener(t, WithNotBefore(c.clock.Now().Add(DefaultSkew/2)))
	again, _, _ := c.aliceSealer.Seal(tchsmpb.BodyType_BODY_TYPE_LIST_KEYS, &tchsmpb.ListKeys{}, 20*time.Second)
	if _, err := o.Open(again); err != nil {
		t.Fatalf("a request issued within the skew of the start: %v", err)
	}
}

func TestReplayCacheBounded(t *testing.T) {
	c := newCluster(t)
	o := c.opener(t, WithMaxReplayEntries(3))
	seal := func() []byte {
		raw, _, err := c.aliceSealer.Seal(tchsmpb.BodyType_BODY_TYPE_LIST_KEYS, &tchsmpb.ListKeys{}, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	for i := range 3 {
		if _, err := o.Open(seal()); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	// Full of unexpired ids: refuse rather than forget an id that could be replayed.
	if _, err := o.Open(seal()); !errors.Is(err, ErrReplayCacheFull) {
		t.Fatalf("4th message = %v, want ErrReplayCacheFull", err)
	}
	c.clock.Advance(10*time.Second + DefaultSkew + time.Nanosecond)
	if _, err := o.Open(seal()); err != nil {
		t.Fatalf("after the old ids expired: %v", err)
	}
	if n := len(o.replay.seen); n != 1 {
		t.Fatalf("cache holds %d ids after expiry, want 1", n)
	}
}

func TestTimeWindow(t *testing.T) {
	c := newCluster(t)
	// Sender's clock 3 s ahead: within the 5 s skew allowance.
	ahead := &fakeClock{t: c.clock.Now().Add(3 * time.Second)}
	s := &Sealer{Identity: c.alice, ClusterID: c.m.ClusterID, Clock: ahead.Now}
	raw, _, err := s.Seal(tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, signReq, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.opener(t).Open(raw); err != nil {
		t.Fatalf("3 s ahead: %v", err)
	}
	ahead.Advance(3 * time.Second) // now 6 s ahead
	raw, _, _ = s.Seal(tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, signReq, 10*time.Second)
	if _, err := c.opener(t).Open(raw); !errors.Is(err, ErrExpired) {
		t.Fatalf("6 s ahead: %v, want ErrExpired", err)
	}
	if _, err := c.opener(t, WithSkew(10*time.Second)).Open(raw); err != nil {
		t.Fatalf("6 s ahead with 10 s skew: %v", err)
	}

	// Key deliveries may live 24 h (durable queues), sign requests only DefaultMaxTTL.
	delivery := &tchsmpb.KeyShareDelivery{Recipient: "node1"}
	raw, _, err = c.dealerS.Seal(tchsmpb.BodyType_BODY_TYPE_KEY_SHARE_DELIVERY, delivery, 23*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	o := c.opener(t)
	c.clock.Advance(22 * time.Hour)
	if _, err := o.Open(raw); err != nil {
		t.Fatalf("delivery after 22 h: %v", err)
	}
	// Envelopes that live longer than their type allows (a Sealer refuses to make them).
	if _, _, err := c.dealerS.Seal(tchsmpb.BodyType_BODY_TYPE_KEY_SHARE_DELIVERY, delivery, 25*time.Hour); err == nil {
		t.Fatal("the sealer made a 25 h delivery")
	}
	tooLong := func(signer *Identity, bt tchsmpb.BodyType, body proto.Message, ttl time.Duration) []byte {
		b, err := proto.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		return rawEnvelope(t, signer, func(e *tchsmpb.Envelope) {
			e.ClusterId, e.BodyType, e.Body = c.m.ClusterID, bt, b
			e.IssuedAt = c.clock.Now().UnixNano()
			e.Deadline = c.clock.Now().Add(ttl).UnixNano()
		})
	}
	raw = tooLong(c.dealer, tchsmpb.BodyType_BODY_TYPE_KEY_SHARE_DELIVERY, delivery, 25*time.Hour)
	if _, err := o.Open(raw); !errors.Is(err, ErrExpired) {
		t.Fatalf("25 h delivery: %v, want ErrExpired", err)
	}
	if _, err := c.opener(t, WithMaxTTL(tchsmpb.BodyType_BODY_TYPE_KEY_SHARE_DELIVERY, 48*time.Hour)).Open(raw); err != nil {
		t.Fatalf("25 h delivery with a 48 h limit: %v", err)
	}
	raw = tooLong(c.alice, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, signReq, DefaultMaxTTL+time.Second)
	if _, err := o.Open(raw); !errors.Is(err, ErrExpired) {
		t.Fatalf("sign request living %v: %v, want ErrExpired", DefaultMaxTTL+time.Second, err)
	}
}

func TestOpenSizeLimit(t *testing.T) {
	c := newCluster(t)
	big := &tchsmpb.SignRequest{KeyId: signReq.KeyId, Payload: make([]byte, 2000)}
	raw, _, err := c.aliceSealer.Seal(tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, big, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.opener(t, WithMaxSize(1000)).Open(raw); !errors.Is(err, ErrMalformed) {
		t.Fatalf("oversized: %v", err)
	}
	if _, err := c.opener(t, WithMaxSize(len(raw))).Open(raw); err != nil {
		t.Fatal(err)
	}
}

func TestAllowedTable(t *testing.T) {
	want := map[Role][]tchsmpb.BodyType{
		RoleClient: {tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, tchsmpb.BodyType_BODY_TYPE_SIGN_BATCH, tchsmpb.BodyType_BODY_TYPE_PROOF_REQUEST,
			tchsmpb.BodyType_BODY_TYPE_LIST_KEYS, tchsmpb.BodyType_BODY_TYPE_HEALTH_REQUEST,
			tchsmpb.BodyType_BODY_TYPE_DELETE_KEY, tchsmpb.BodyType_BODY_TYPE_GENERATE_KEY_REQUEST, tchsmpb.BodyType_BODY_TYPE_RESTORE_KEY,
			tchsmpb.BodyType_BODY_TYPE_DKG_REQUEST, tchsmpb.BodyType_BODY_TYPE_DKG_COMMIT, tchsmpb.BodyType_BODY_TYPE_DKG_LATE_DEALS,
			tchsmpb.BodyType_BODY_TYPE_PIN_LOGIN, tchsmpb.BodyType_BODY_TYPE_PIN_CHANGE, tchsmpb.BodyType_BODY_TYPE_LOGGED_IN,
			tchsmpb.BodyType_BODY_TYPE_PIN_UNLOCK, tchsmpb.BodyType_BODY_TYPE_WITH_TICKETS,
			tchsmpb.BodyType_BODY_TYPE_MANIFEST_PUSH, tchsmpb.BodyType_BODY_TYPE_MANIFEST_FETCH, tchsmpb.BodyType_BODY_TYPE_RESHARE_REQUEST, tchsmpb.BodyType_BODY_TYPE_RESHARE_COMMIT},
		RoleDealer: {tchsmpb.BodyType_BODY_TYPE_KEY_SHARE_DELIVERY, tchsmpb.BodyType_BODY_TYPE_DELETE_KEY,
			tchsmpb.BodyType_BODY_TYPE_DELETE_KEY_ACK, tchsmpb.BodyType_BODY_TYPE_GENERATE_KEY_RESPONSE,
			tchsmpb.BodyType_BODY_TYPE_LIST_KEYS, tchsmpb.BodyType_BODY_TYPE_HEALTH_REQUEST,
			tchsmpb.BodyType_BODY_TYPE_HEALTH, tchsmpb.BodyType_BODY_TYPE_ERROR,
			tchsmpb.BodyType_BODY_TYPE_RESTORE_KEY, tchsmpb.BodyType_BODY_TYPE_RESTORE_KEY_ACK,
			tchsmpb.BodyType_BODY_TYPE_DKG_LATE_DEALS, tchsmpb.BodyType_BODY_TYPE_DKG_LATE_DEALS_ACK,
			tchsmpb.BodyType_BODY_TYPE_MANIFEST_PUSH, tchsmpb.BodyType_BODY_TYPE_MANIFEST_STATE, tchsmpb.BodyType_BODY_TYPE_MANIFEST_CHAIN},
		RoleNode: {tchsmpb.BodyType_BODY_TYPE_DELETE_KEY_ACK,
			tchsmpb.BodyType_BODY_TYPE_SIGNATURE_SHARE, tchsmpb.BodyType_BODY_TYPE_SIGN_BATCH_RESULT, tchsmpb.BodyType_BODY_TYPE_PROOF,
			tchsmpb.BodyType_BODY_TYPE_KEY_LIST, tchsmpb.BodyType_BODY_TYPE_HEALTH, tchsmpb.BodyType_BODY_TYPE_ERROR,
			tchsmpb.BodyType_BODY_TYPE_DKG_REPLY, tchsmpb.BodyType_BODY_TYPE_DKG_COMMIT_ACK, tchsmpb.BodyType_BODY_TYPE_PIN_RESULT,
			tchsmpb.BodyType_BODY_TYPE_MANIFEST_STATE, tchsmpb.BodyType_BODY_TYPE_MANIFEST_CHAIN},
	}
	all := append(tchsmpb.BodyTypes(), tchsmpb.BodyType_BODY_TYPE_UNSPECIFIED, 999)
	for _, role := range []Role{RoleClient, RoleDealer, RoleNode, "", "admin"} {
		for _, bt := range all {
			exp := false
			for _, w := range want[role] {
				exp = exp || w == bt
			}
			if got := Allowed(role, bt); got != exp {
				t.Errorf("Allowed(%q, %v) = %v, want %v", role, bt, got, exp)
			}
		}
	}
	// Nodes never send requests; no one but the dealer deals.
	for _, role := range []Role{RoleClient, RoleNode} {
		if Allowed(role, tchsmpb.BodyType_BODY_TYPE_KEY_SHARE_DELIVERY) {
			t.Errorf("%s may deal shares", role)
		}
	}
}

// Client roles: signers sign, list and check health; admins also generate, delete and restore;
// a client without a role is an admin (manifests of older releases). Other roles are not
// affected by a client role.
func TestPermitsByClientRole(t *testing.T) {
	signerMay := []tchsmpb.BodyType{tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, tchsmpb.BodyType_BODY_TYPE_SIGN_BATCH,
		tchsmpb.BodyType_BODY_TYPE_PROOF_REQUEST, tchsmpb.BodyType_BODY_TYPE_LIST_KEYS, tchsmpb.BodyType_BODY_TYPE_HEALTH_REQUEST,
		tchsmpb.BodyType_BODY_TYPE_PIN_LOGIN, tchsmpb.BodyType_BODY_TYPE_PIN_CHANGE, tchsmpb.BodyType_BODY_TYPE_LOGGED_IN,
		tchsmpb.BodyType_BODY_TYPE_WITH_TICKETS, tchsmpb.BodyType_BODY_TYPE_MANIFEST_FETCH}
	adminOnly := []tchsmpb.BodyType{tchsmpb.BodyType_BODY_TYPE_GENERATE_KEY_REQUEST, tchsmpb.BodyType_BODY_TYPE_DELETE_KEY,
		tchsmpb.BodyType_BODY_TYPE_RESTORE_KEY, tchsmpb.BodyType_BODY_TYPE_DKG_REQUEST, tchsmpb.BodyType_BODY_TYPE_DKG_COMMIT, tchsmpb.BodyType_BODY_TYPE_DKG_LATE_DEALS,
		tchsmpb.BodyType_BODY_TYPE_PIN_UNLOCK, tchsmpb.BodyType_BODY_TYPE_MANIFEST_PUSH, tchsmpb.BodyType_BODY_TYPE_RESHARE_REQUEST, tchsmpb.BodyType_BODY_TYPE_RESHARE_COMMIT}
	all := append(tchsmpb.BodyTypes(), tchsmpb.BodyType_BODY_TYPE_UNSPECIFIED, 999)
	for _, tc := range []struct {
		role ClientRole
		want []tchsmpb.BodyType
	}{
		{ClientRoleSigner, signerMay},
		{ClientRoleAdmin, append(slices.Clone(signerMay), adminOnly...)},
		{"", append(slices.Clone(signerMay), adminOnly...)},
		{"root", nil}, // not a valid role (the manifest refuses it): nothing
	} {
		mem := Member{ID: "c", Role: RoleClient, ClientRole: tc.role}
		for _, bt := range all {
			if got, exp := Permits(mem, bt), slices.Contains(tc.want, bt); got != exp {
				t.Errorf("Permits(client role %q, %v) = %v, want %v", tc.role, bt, got, exp)
			}
			// A client role never lets through what the role cannot send.
			if Permits(mem, bt) && !Allowed(RoleClient, bt) {
				t.Errorf("client role %q permits %v beyond the client role's table", tc.role, bt)
			}
		}
	}
	for _, role := range []Role{RoleDealer, RoleNode} {
		for _, bt := range all {
			if Permits(Member{Role: role}, bt) != Allowed(role, bt) {
				t.Errorf("Permits(%s, %v) differs from Allowed", role, bt)
			}
		}
	}
}
