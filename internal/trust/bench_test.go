package trust

import (
	"testing"
	"time"

	tchsmpb "github.com/tchsm/tchsm/proto"
)

func BenchmarkSeal_SignRequest(b *testing.B) {
	c := newCluster(b)
	for b.Loop() {
		if _, _, err := c.aliceSealer.Seal(tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, signReq, 10*time.Second); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen_SignRequest(b *testing.B) {
	c := newCluster(b)
	o := c.opener(b, WithMaxReplayEntries(1<<30))
	raws := make([][]byte, 0, 1024)
	for range cap(raws) {
		raw, _, err := c.aliceSealer.Seal(tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, signReq, 10*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		raws = append(raws, raw)
	}
	i := 0
	for b.Loop() {
		if i == len(raws) {
			b.StopTimer()
			o = c.opener(b, WithMaxReplayEntries(1<<30))
			i = 0
			b.StartTimer()
		}
		if _, err := o.Open(raws[i]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkEncryptDecryptShare_4096(b *testing.B) {
	c := newCluster(b)
	share := &tchsmpb.KeyShare{KeyId: keyA, Index: 1, S: make([]byte, 512)}
	for b.Loop() {
		enc, ct, err := EncryptShare(c.m.Nodes[0], c.m.ClusterID, keyA, share)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := DecryptShare(c.nodes[0], c.m.ClusterID, keyA, enc, ct); err != nil {
			b.Fatal(err)
		}
	}
}
