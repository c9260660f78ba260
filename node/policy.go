package node

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/tchsm/tchsm/internal/dnspolicy"
	"github.com/tchsm/tchsm/internal/rpc"
	"github.com/tchsm/tchsm/internal/trust"
	"github.com/tchsm/tchsm/node/store"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/frost"
	"github.com/tchsm/tchsm/scheme/shoup"
)

// signInput is what one SignRequest asks a node to sign.
type signInput struct {
	payload []byte           // the round's payload: the one the node builds from message, or the request's
	mech    scheme.Mechanism // the mechanism of message; for a digest-only RSA request, the hash mechanism its DigestInfo names (RSAPKCS when none)
	message []byte           // nil: digest only
	commit  bool             // a FROST commit request: it signs nothing, so no policy and no audit line
}

// input reads what a SignRequest asks to sign. A request with a message names its mechanism;
// the node hashes the message and builds the payload itself (a payload sent along must be the
// same, so that a node and the client's combination agree), and signs only that. A request
// without one (an older client, CKM_RSA_PKCS, a message over dnspolicy.MaxMessage) is digest
// only: its payload is signed as it is.
func input(k *store.Key, req *tchsmpb.SignRequest) (signInput, *rpc.Failure) {
	if scheme.Of(k.Record) == scheme.Ed25519FROST {
		return frostInput(k, req)
	}
	msg := req.GetMessage()
	if len(msg) == 0 {
		in := signInput{payload: req.GetPayload(), mech: scheme.RSAPKCS}
		if scheme.Of(k.Record) == scheme.ShoupRSA {
			in.mech = hashMechanism(shoup.DigestInfoHash(in.payload))
		}
		return in, nil
	}
	if len(msg) > dnspolicy.MaxMessage {
		return signInput{}, rpc.Fail(tchsmpb.Error_BAD_REQUEST, k.ID, "a message of %d bytes, at most %d: larger ones go digest-only", len(msg), dnspolicy.MaxMessage)
	}
	mech := scheme.Mechanism(req.GetMechanism())
	if h, err := mech.Hash(); err != nil || h == 0 || !accepts(k.Scheme, mech) {
		return signInput{}, rpc.Fail(tchsmpb.Error_BAD_REQUEST, k.ID, "a message with mechanism %v, which is not a hash mechanism of this key", mech)
	}
	if scheme.Of(k.Record) != scheme.ShoupRSA {
		return signInput{}, rpc.Fail(tchsmpb.Error_BAD_REQUEST, k.ID, "a message field for a %v key", scheme.Of(k.Record))
	}
	t, err := shoup.Payload(mech, msg)
	if err != nil {
		return signInput{}, rpc.Fail(tchsmpb.Error_BAD_REQUEST, k.ID, "%v", err)
	}
	if p := req.GetPayload(); len(p) != 0 && !bytes.Equal(p, t) {
		return signInput{}, rpc.Fail(tchsmpb.Error_BAD_REQUEST, k.ID, "the payload is not the message's DigestInfo")
	}
	return signInput{payload: t, mech: mech, message: msg}, nil
}

// frostInput reads an Ed25519 key's request: its payload is a FROST commit request (no
// signature, no policy) or a sign request, which carries the whole message CKM_EDDSA signs
// (for DNSSEC, the RRSIG RDATA and the RRset), so the node's policy sees every one.
func frostInput(k *store.Key, req *tchsmpb.SignRequest) (signInput, *rpc.Failure) {
	if len(req.GetMessage()) != 0 {
		return signInput{}, rpc.Fail(tchsmpb.Error_BAD_REQUEST, k.ID, "a message field for a %v key: its message is in the payload", scheme.Of(k.Record))
	}
	msg, sign, err := frost.SignRequestMessage(req.GetPayload())
	if err != nil {
		return signInput{}, rpc.Fail(tchsmpb.Error_BAD_REQUEST, k.ID, "%v", err)
	}
	return signInput{payload: req.GetPayload(), mech: scheme.EDDSA, message: msg, commit: !sign}, nil
}

func accepts(s scheme.Scheme, m scheme.Mechanism) bool {
	for _, a := range s.Mechanisms() {
		if a == m {
			return true
		}
	}
	return false
}

// hashMechanism is the RSA hash mechanism of a DigestInfo's hash (RSAPKCS for none).
func hashMechanism(h crypto.Hash) scheme.Mechanism {
	switch h {
	case crypto.SHA1:
		return scheme.SHA1RSAPKCS
	case crypto.SHA224:
		return scheme.SHA224RSAPKCS
	case crypto.SHA256:
		return scheme.SHA256RSAPKCS
	case crypto.SHA384:
		return scheme.SHA384RSAPKCS
	case crypto.SHA512:
		return scheme.SHA512RSAPKCS
	}
	return scheme.RSAPKCS
}

// checkPolicy runs the node's signing policy on a request. A refusal is logged (at a bounded
// rate), counted by reason, and answered with POLICY_REFUSED.
func (n *node) checkPolicy(op *trust.Opened, k *store.Key, in signInput) (dnspolicy.Verdict, *rpc.Failure) {
	v := n.policy.Check(dnspolicy.Key{Record: k.Record, Public: k.Public.Public()}, in.mech, in.message, time.Now())
	if v.Refusal == nil {
		return v, nil
	}
	n.refused(op, k, string(v.Refusal.Reason), v.Refusal.Detail, v)
	return v, rpc.Fail(tchsmpb.Error_POLICY_REFUSED, k.ID, "%s: %v", n.id.ID, v.Refusal)
}

func (n *node) refused(op *trust.Opened, k *store.Key, reason, detail string, v dnspolicy.Verdict) {
	n.metrics.refusals.WithLabelValues(k.ID, reason).Inc()
	if ok, dropped := n.refusals.Allow(time.Now()); ok {
		attrs := []any{"key", k.ID, "label", k.Record.GetLabel(), "requester", op.Sender.ID, "reason", reason,
			"detail", detail, "policy", v.Policy, "not_logged_before", dropped}
		n.log.Warn("signature refused by policy", append(attrs, signedAttrs(v.Signed)...)...)
	}
}

// audit writes the audit line of one share signed and counts it.
func (n *node) audit(op *trust.Opened, k *store.Key, in signInput, v dnspolicy.Verdict) {
	input := "message"
	if in.message == nil {
		input = "digest"
	}
	n.metrics.signatures.WithLabelValues(k.ID, input, string(v.Mode)).Inc()
	attrs := []any{"key", k.ID, "label", k.Record.GetLabel(), "mechanism", in.mech.String(), "input", input,
		"policy", string(v.Mode), "requester", op.Sender.ID}
	n.log.Info("signed", append(attrs, signedAttrs(v.Signed)...)...)
}

// signedAttrs are the RRSIG fields of a parsed message, for the log.
func signedAttrs(d *dnspolicy.SignedData) []any {
	if d == nil {
		return []any{"dnssec", false}
	}
	now := time.Now()
	return []any{"dnssec", true, "algorithm", d.Algorithm, "type_covered", dnspolicy.TypeName(d.TypeCovered),
		"signer", d.SignerName(), "owner", d.OwnerName(), "key_tag", d.KeyTag,
		"inception", dnspolicy.SerialTime(d.Inception, now).UTC().Format(time.RFC3339),
		"expiration", dnspolicy.SerialTime(d.Expiration, now).UTC().Format(time.RFC3339)}
}

// signedPayloads remembers which payloads a node signed under a key's policy lately, so that
// it serves the proof round (ProofRequest, which carries only the payload and returns the
// share with its proof) of keys with a policy only for payloads its policy accepted: a
// ProofRequest must not be a way around the policy. Two generations of at most maxSigned
// entries each, rotated every signedFor: an entry lives between signedFor and twice that.
type signedPayloads struct {
	mu      sync.Mutex
	cur     map[[32]byte]struct{}
	prev    map[[32]byte]struct{}
	rotated time.Time
}

const (
	signedFor = time.Minute
	maxSigned = 1 << 16
)

func payloadID(keyID string, payload []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(keyID))
	h.Write([]byte{0})
	h.Write(payload)
	var id [32]byte
	h.Sum(id[:0])
	return id
}

func (s *signedPayloads) add(keyID string, payload []byte) {
	id := payloadID(keyID, payload)
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := time.Now(); s.cur == nil || len(s.cur) >= maxSigned || now.Sub(s.rotated) >= signedFor {
		s.prev, s.cur, s.rotated = s.cur, make(map[[32]byte]struct{}), now
	}
	s.cur[id] = struct{}{}
}

func (s *signedPayloads) has(keyID string, payload []byte) bool {
	id := payloadID(keyID, payload)
	s.mu.Lock()
	defer s.mu.Unlock()
	age := time.Since(s.rotated)
	_, a := s.cur[id]
	_, b := s.prev[id]
	return a && age < 2*signedFor || b && age < signedFor
}
