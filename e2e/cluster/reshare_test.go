package cluster_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/internal/testcluster"
	"github.com/tchsm/tchsm/scheme"
)

// TestReplaceTwoNodesReshare is issue 19's goal "an Ed25519 key survives replacing two of five
// nodes one after the other with its public key unchanged", with real node processes over
// RabbitMQ (its own vhost): node 2 is killed, its folder and store deleted, a new identity
// takes index 2 in the manifest and every process restarts with it; `ReshareKey` gives every
// node a new share of the same key; then node 4 the same way. After each replacement the key
// signs with a signer set that must include the new node (two others paused), and the
// signatures verify under the public key the DKG made.
func TestReplaceTwoNodesReshare(t *testing.T) {
	tc := testcluster.Start(t, testcluster.Options{K: 3, N: 5})
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // the test's budget after start-up
	defer cancel()
	k := generateEd(t, tc.Client())
	pub := k.Public.(ed25519.PublicKey)
	signEdOK(t, tc.Client(), k, "before any replacement")
	rk := generate(t, tc.Client(), 1024) // an RSA key: not reshared, it signs on with the others
	var c *client.Client

	for round, rep := range []struct{ idx, pause1, pause2 int }{{2, 1, 5}, {4, 1, 3}} {
		// 1: ReshareKey; 2: the operator's command, tchsm keys reshare -all.
		tr := time.Now()
		newID := tc.ReplaceNode(rep.idx)
		c = tc.Client() // the new manifest
		signOK(t, c, rk, fmt.Sprintf("RSA after replacing node %d", rep.idx))
		if round == 0 {
			res, err := c.ReshareKey(ctx, k.ID)
			if err != nil {
				tc.DumpLogs()
				t.Fatalf("replacing node %d by %s: ReshareKey: %v", rep.idx, newID, err)
			}
			t.Logf("node %d replaced by %s and the key reshared in %v (resharing: dealers %v, epoch %d)",
				rep.idx, newID, time.Since(tr).Round(time.Millisecond), res.Dealers, res.Epoch)
			if res.Epoch != 1 || len(res.Stored) != 5 || len(res.Missing) != 0 || len(res.Dealers) != 3 {
				t.Fatalf("resharing: %+v", res)
			}
			if !slices.Contains(res.Receivers, newID) || slices.Contains(res.Holders, newID) || len(res.Holders) != 4 {
				t.Fatalf("holders %v, receivers %v (new node %s)", res.Holders, res.Receivers, newID)
			}
			if !pub.Equal(res.Key.Public) {
				t.Fatal("the public key changed")
			}
		} else {
			// The operator's command: the plan first, then every key.
			out, errOut, err := tchsm(t, tc, tc.ClientConfig, "keys", "reshare", "-all", "-plan")
			if err != nil || !strings.Contains(out, k.ID) || !strings.Contains(out, "reshare (same public key") || !strings.Contains(out, rk.ID) || !strings.Contains(out, "DNSSEC key rollover") {
				t.Fatalf("keys reshare -all -plan: %v\n%s%s", err, out, errOut)
			}
			out, errOut, err = tchsm(t, tc, tc.ClientConfig, "keys", "reshare", "-all")
			if err != nil || !strings.Contains(out, "key "+k.ID+" (ed): reshared") || !strings.Contains(out, "epoch 2") {
				tc.DumpLogs()
				t.Fatalf("keys reshare -all: %v\n%s%s", err, out, errOut)
			}
			t.Logf("node %d replaced by %s and the key reshared by `tchsm keys reshare -all` in %v:\n%s",
				rep.idx, newID, time.Since(tr).Round(time.Millisecond), out)
		}
		// Every node holds the key, the new one included.
		st, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range st {
			if !s.OK || !slices.Contains(s.Keys, k.ID) {
				t.Fatalf("node %s: up %v, keys %v", s.ID, s.OK, s.Keys)
			}
		}
		// A fresh client finds the new epoch and signs with the new node in the set.
		signer := tc.Signer()
		tc.PauseNode(rep.pause1)
		tc.PauseNode(rep.pause2)
		for i := range 3 {
			msg := fmt.Sprintf("after replacing node %d, %d", rep.idx, i)
			sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
			sig, err := signer.Sign(sctx, k.ID, scheme.EDDSA, []byte(msg))
			scancel()
			if err != nil {
				tc.DumpLogs()
				t.Fatalf("%s: %v", msg, err)
			}
			if !ed25519.Verify(pub, []byte(msg), sig) {
				t.Fatalf("%s: the signature does not verify under the original public key", msg)
			}
		}
		if st := signer.NodeStats()[newID]; st.Shares == 0 {
			t.Fatalf("the new node %s gave no share: %v", newID, signer.NodeStats())
		}
		tc.ResumeNode(rep.pause1)
		tc.ResumeNode(rep.pause2)
		tc.WaitUp(5, 20*time.Second)
	}
	signEdOK(t, c, k, "after both replacements")
	signOK(t, c, rk, "RSA after both replacements (three of five nodes hold it)")
	t.Logf("two replacements, two resharings and the signatures: %v", time.Since(t0).Round(time.Millisecond))
}
