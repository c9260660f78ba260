package node_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/tchsm/tchsm/dealer"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/node/nodetest"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme/shoup"
)

// benchNode starts a 1-of-1 cluster whose node holds an imported 2048-bit key (signing costs the
// same as with a generated one: one full-length constant-time exponentiation per share).
func benchNode(b *testing.B, workers int) (*nodetest.Peer, string, []byte) {
	c := nodetest.New(b, nodetest.Options{K: 1, N: 1})
	c.Nodes[0].Workers = workers
	c.StartAll()
	d := c.Dealer(dealer.Options{NoPool: true})
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	signed, acked, _, err := d.Import(ctx, priv, "bench", nil)
	if err != nil || len(acked) != 1 {
		b.Fatalf("Import: %v %v", err, acked)
	}
	rec, _ := nodetest.RecordKey(b, c.Manifest, signed)
	digest := sha256.Sum256([]byte("bench"))
	payload, _ := shoup.DigestInfo(crypto.SHA256, digest[:])
	return c.Peer("client-1"), rec.KeyId, payload
}

func signOnce(b *testing.B, p *nodetest.Peer, q transport.Address, keyID string, payload []byte, proof bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.Call(ctx, "node-1", q, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST,
		&tchsmpb.SignRequest{KeyId: keyID, Payload: payload, WantProof: proof}); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSignRequest_2048 measures one node answering sealed SignRequests over the broker:
// client sealing, AMQP round trip, node opening, EncodePayload, SignShare, sealing the reply,
// client opening it. Serial: one request at a time (latency). Parallel: as many requests in
// flight as GOMAXPROCS×4, against a node with 2 workers (throughput).
func BenchmarkSignRequest_2048(b *testing.B) {
	for _, proof := range []bool{false, true} {
		name := "share"
		if proof {
			name = "share+proof"
		}
		b.Run(name+"/serial", func(b *testing.B) {
			p, keyID, payload := benchNode(b, 2)
			q := transport.Node("node-1")
			b.ResetTimer()
			for b.Loop() {
				signOnce(b, p, q, keyID, payload, proof)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "signs/s")
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			p, keyID, payload := benchNode(b, 2)
			q := transport.Node("node-1")
			b.SetParallelism(4)
			b.ResetTimer()
			t0 := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					signOnce(b, p, q, keyID, payload, proof)
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "signs/s")
		})
	}
}
