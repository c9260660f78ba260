package node_test

import (
	"bytes"
	"crypto"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tchsm/tchsm/dealer"
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/dnspolicy/dnspolicytest"
	"github.com/tchsm/tchsm/node"
	"github.com/tchsm/tchsm/node/nodetest"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/shoup"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// The wire side of a node's policy: what an old client sends (payload only), what a new one
// sends (message, mechanism and payload), a payload that is not the message's, a message over
// 64 KiB, and the proof round, which a node with a policy serves only for payloads it signed.
func TestPolicyWire(t *testing.T) {
	c := nodetest.NewInMemory(t, nodetest.Options{K: 2, N: 2})
	logs := &syncBuf{}
	c.Nodes[0].SigningPolicy = &config.SigningPolicy{Keys: []config.KeyPolicy{{Label: "policed", Zones: []string{"example.test"}}}}
	c.StartNode(1, node.Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	c.StartNode(2, node.Options{})
	d := c.Dealer(dealer.Options{})
	var recs []*tchsmpb.KeyRecord
	var pks []*shoup.PublicKey
	for _, label := range []string{"policed", "free"} {
		signed, _, _, err := d.GenerateKey(nodetest.Ctx(t, 60*time.Second), 1024, 0, label, nil)
		if err != nil {
			t.Fatal(err)
		}
		rec, pk := nodetest.RecordKey(t, c.Manifest, signed)
		recs, pks = append(recs, rec), append(pks, pk)
	}
	policed, free := recs[0].KeyId, recs[1].KeyId
	now := time.Now()
	msg := dnspolicytest.ZoneA(pks[0].RSA(), "example.test", now.Add(-time.Hour), now.Add(24*time.Hour))
	payload, _ := shoup.Payload(scheme.SHA256RSAPKCS, msg)
	p := c.Peer("client-1")
	sign := func(req *tchsmpb.SignRequest) error {
		_, err := p.CallNode(nodetest.Ctx(t, 10*time.Second), 1, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, req)
		return err
	}
	prove := func(keyID string, payload []byte) error {
		_, err := p.CallNode(nodetest.Ctx(t, 10*time.Second), 1, tchsmpb.BodyType_BODY_TYPE_PROOF_REQUEST,
			&tchsmpb.ProofRequest{KeyId: keyID, Payload: payload})
		return err
	}
	mech := uint32(scheme.SHA256RSAPKCS)
	for name, tc := range map[string]struct {
		req  *tchsmpb.SignRequest
		want tchsmpb.Error_Code
	}{
		"old client, no policy":           {&tchsmpb.SignRequest{KeyId: free, Payload: payload}, 0},
		"old client, policy":              {&tchsmpb.SignRequest{KeyId: policed, Payload: payload}, tchsmpb.Error_POLICY_REFUSED},
		"new client":                      {&tchsmpb.SignRequest{KeyId: policed, Payload: payload, Message: msg, Mechanism: mech}, 0},
		"message only":                    {&tchsmpb.SignRequest{KeyId: policed, Message: msg, Mechanism: mech}, 0},
		"new client, no policy":           {&tchsmpb.SignRequest{KeyId: free, Payload: payload, Message: msg, Mechanism: mech}, 0},
		"payload not the message's":       {&tchsmpb.SignRequest{KeyId: policed, Payload: payload[:len(payload)-1], Message: msg, Mechanism: mech}, tchsmpb.Error_BAD_REQUEST},
		"payload not the message's, free": {&tchsmpb.SignRequest{KeyId: free, Payload: bytes.Repeat([]byte{1}, 51), Message: msg, Mechanism: mech}, tchsmpb.Error_BAD_REQUEST},
		"message without mechanism":       {&tchsmpb.SignRequest{KeyId: free, Payload: payload, Message: msg}, tchsmpb.Error_BAD_REQUEST},
		"message under RSA_PKCS":          {&tchsmpb.SignRequest{KeyId: free, Message: msg, Mechanism: uint32(scheme.RSAPKCS)}, tchsmpb.Error_BAD_REQUEST},
		"message under EDDSA":             {&tchsmpb.SignRequest{KeyId: free, Message: msg, Mechanism: uint32(scheme.EDDSA)}, tchsmpb.Error_BAD_REQUEST},
		"message over 64 KiB":             {&tchsmpb.SignRequest{KeyId: free, Message: make([]byte, 64<<10+1), Mechanism: mech}, tchsmpb.Error_BAD_REQUEST},
		"SHA-1 DigestInfo, policy":        {&tchsmpb.SignRequest{KeyId: policed, Payload: digestInfo(crypto.SHA1, msg)}, tchsmpb.Error_POLICY_REFUSED},
	} {
		if err := sign(tc.req); nodetest.Code(err) != tc.want || (tc.want == 0) != (err == nil) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	// The proof round: the policed key's payload was signed above; another payload was not.
	if err := prove(policed, payload); err != nil {
		t.Errorf("proof of a payload signed: %v", err)
	}
	other := digestInfo(crypto.SHA256, []byte("forged"))
	if err := prove(policed, other); nodetest.Code(err) != tchsmpb.Error_POLICY_REFUSED {
		t.Errorf("proof of a payload never signed: %v", err)
	}
	if err := prove(free, other); err != nil {
		t.Errorf("proof on a key without policy: %v", err)
	}
	// The audit line of a signature and the refusal's log line.
	out := logs.String()
	for _, want := range []string{`"msg":"signed"`, `"signer":"example.test."`, `"type_covered":"A"`, `"input":"message"`,
		`"policy":"enforced"`, `"requester":"client-1"`, `"input":"digest"`, `"msg":"signature refused by policy"`, `"reason":"digest_only"`,
		`"reason":"proof_not_signed"`} {
		if !strings.Contains(out, want) {
			t.Errorf("node log lacks %s", want)
		}
	}
}

func digestInfo(h crypto.Hash, msg []byte) []byte {
	hh := h.New()
	hh.Write(msg)
	di, _ := shoup.DigestInfo(h, hh.Sum(nil))
	return di
}
