package node_test

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/tchsm/tchsm/dealer"
	"github.com/tchsm/tchsm/node"
	"github.com/tchsm/tchsm/node/nodetest"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme/shoup"
)

// A SignBatch is answered item by item, in order: shares for the good requests (with a proof
// when asked), an Error for each bad one; the shares combine into valid signatures.
func TestSignBatch(t *testing.T) {
	c := nodetest.New(t, nodetest.Options{K: 2, N: 3})
	c.StartAll()
	d := c.Dealer(dealer.Options{})
	signed, _, _, err := d.GenerateKey(nodetest.Ctx(t, 60*time.Second), 1024, 0, "batch", nil)
	if err != nil {
		t.Fatal(err)
	}
	rec, pk := nodetest.RecordKey(t, c.Manifest, signed)
	client := c.Peer("client-1")

	var payloads [][]byte
	for _, msg := range []string{"first", "second", "third"} {
		digest := sha256.Sum256([]byte(msg))
		p, err := shoup.DigestInfo(crypto.SHA256, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		payloads = append(payloads, p)
	}
	batch := &tchsmpb.SignBatch{Requests: []*tchsmpb.SignRequest{
		{KeyId: rec.KeyId, Payload: payloads[0]},
		{KeyId: strings.Repeat("ab", 16), Payload: payloads[0]}, // unknown key
		{KeyId: rec.KeyId, Payload: payloads[1], WantProof: true},
		{KeyId: "../../etc/passwd", Payload: payloads[0]}, // bad key id
		{KeyId: rec.KeyId, Payload: make([]byte, 200)},    // payload too long
		{KeyId: rec.KeyId, Payload: payloads[2]},
	}}
	wantErr := map[int]tchsmpb.Error_Code{1: tchsmpb.Error_UNKNOWN_KEY, 3: tchsmpb.Error_BAD_REQUEST, 4: tchsmpb.Error_BAD_REQUEST}
	shares := map[int][]*shoup.SigShare{} // by request
	for _, i := range []int{1, 2} {
		op, err := client.CallNode(nodetest.Ctx(t, 10*time.Second), i, tchsmpb.BodyType_BODY_TYPE_SIGN_BATCH, batch)
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		res, ok := op.Message.(*tchsmpb.SignBatchResult)
		if !ok || len(res.Results) != len(batch.Requests) {
			t.Fatalf("node %d answered %T with %d results", i, op.Message, len(res.GetResults()))
		}
		for j, item := range res.Results {
			if code, bad := wantErr[j]; bad {
				if item.GetError().GetCode() != code {
					t.Errorf("node %d, request %d: %v, want error %v", i, j, item, code)
				}
				continue
			}
			ss := item.GetShare()
			if ss == nil || int(ss.Index) != i || ss.KeyId != rec.KeyId {
				t.Fatalf("node %d, request %d: %v", i, j, item)
			}
			share := &shoup.SigShare{Index: i, X: new(big.Int).SetBytes(ss.X)}
			em, _ := shoup.EncodePayload(pk.Size(), batch.Requests[j].Payload)
			if (ss.Proof != nil) != batch.Requests[j].WantProof {
				t.Errorf("node %d, request %d: proof %v", i, j, ss.Proof)
			}
			if ss.Proof != nil {
				proof := &shoup.Proof{C: new(big.Int).SetBytes(ss.Proof.C), Z: new(big.Int).SetBytes(ss.Proof.Z)}
				if err := shoup.VerifyShare(pk, em, share, proof); err != nil {
					t.Errorf("node %d, request %d: %v", i, j, err)
				}
			}
			shares[j] = append(shares[j], share)
		}
	}
	for j, msg := range map[int]string{0: "first", 2: "second", 5: "third"} {
		em, _ := shoup.EncodePayload(pk.Size(), batch.Requests[j].Payload)
		sig, err := shoup.Combine(pk, em, shares[j])
		if err != nil {
			t.Fatalf("request %d: %v", j, err)
		}
		digest := sha256.Sum256([]byte(msg))
		if err := rsa.VerifyPKCS1v15(pk.RSA(), crypto.SHA256, digest[:], sig); err != nil {
			t.Errorf("request %d: %v", j, err)
		}
	}

	// Empty and oversized batches are refused as a whole; the node goes on serving.
	big := &tchsmpb.SignBatch{}
	for range node.MaxBatch + 1 {
		big.Requests = append(big.Requests, batch.Requests[0])
	}
	for name, b := range map[string]*tchsmpb.SignBatch{"empty": {}, "oversized": big} {
		_, err := client.CallNode(nodetest.Ctx(t, 10*time.Second), 1, tchsmpb.BodyType_BODY_TYPE_SIGN_BATCH, b)
		if nodetest.Code(err) != tchsmpb.Error_BAD_REQUEST {
			t.Errorf("%s batch: %v, want BAD_REQUEST", name, err)
		}
	}
	big.Requests = big.Requests[:node.MaxBatch]
	op, err := client.CallNode(nodetest.Ctx(t, 20*time.Second), 1, tchsmpb.BodyType_BODY_TYPE_SIGN_BATCH, big)
	if err != nil {
		t.Fatalf("full batch: %v", err)
	}
	for j, item := range op.Message.(*tchsmpb.SignBatchResult).Results {
		if item.GetShare() == nil {
			t.Fatalf("full batch, request %d: %v", j, item)
		}
	}
}
