package cluster_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/internal/testcluster"
	"github.com/tchsm/tchsm/scheme"
)

// generateEd has the cluster's nodes generate an Ed25519 key together.
func generateEd(t *testing.T, c *client.Client) client.KeyInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t0 := time.Now()
	k, err := c.GenerateKey(ctx, client.GenerateRequest{Algorithm: scheme.Ed25519FROST, Label: "ed", P11ID: []byte{0xed}})
	if err != nil {
		t.Fatalf("GenerateKey(ed25519): %v", err)
	}
	t.Logf("%d-of-%d DKG over the broker, node processes: %v", k.K, k.L, time.Since(t0).Round(time.Millisecond))
	return k
}

func signEdOK(t *testing.T, c *client.Client, k client.KeyInfo, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sig, err := c.Sign(ctx, k.ID, scheme.EDDSA, []byte(msg))
	if err != nil {
		t.Fatalf("Sign(%q): %v", msg, err)
	}
	if !ed25519.Verify(k.Public.(ed25519.PublicKey), []byte(msg), sig) {
		t.Fatalf("signature on %q does not verify", msg)
	}
}

// TestEd25519KillRestart: the nodes generate a key, sign under load, lose two nodes that hold
// commitments in the client's pool (killed between handing them out and signing), cannot sign
// with three down, and sign again once restarted (their nonces lost: stale commitments).
func TestEd25519KillRestart(t *testing.T) {
	tc := testcluster.Start(t, testcluster.Options{K: 3, N: 5})
	c := tc.Client()
	k := generateEd(t, c)
	if k.Algorithm != scheme.Ed25519FROST || k.K != 3 || k.L != 5 {
		t.Fatalf("key %+v", k)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 5 {
				signEdOK(t, c, k, fmt.Sprintf("busy %d %d", g, i))
			}
		})
	}
	wg.Wait()
	for id, st := range c.NodeStats() {
		if st.Shares < 2 {
			t.Errorf("node %s gave only %d shares: %v", id, st.Shares, c.NodeStats())
		}
	}
	tc.KillNode(1)
	tc.KillNode(4)
	t0 := time.Now()
	for i := range 10 {
		signEdOK(t, c, k, fmt.Sprintf("two down %d", i))
	}
	t.Logf("10 signatures right after two nodes were killed: %v", time.Since(t0).Round(time.Millisecond))

	tc.KillNode(2)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	_, err := c.Sign(ctx, k.ID, scheme.EDDSA, []byte("three down"))
	cancel()
	if !errors.Is(err, client.ErrNotEnoughNodes) {
		t.Fatalf("with 3 of 5 nodes down: err = %v, want ErrNotEnoughNodes", err)
	}
	for _, i := range []int{1, 2, 4} {
		tc.StartNode(i)
	}
	tc.WaitUp(5, 30*time.Second)
	for i := range 10 {
		signEdOK(t, c, k, fmt.Sprintf("restarted %d", i))
	}
	// A fresh process finds the key, endorsed by the nodes, and signs.
	c2 := tc.Client()
	signEdOK(t, c2, k, "second client")
}

// TestEd25519LyingNode replaces node 2 with an in-process node that corrupts every signature
// share: every signature verifies, node 2 is named and excluded.
func TestEd25519LyingNode(t *testing.T) {
	tc := testcluster.Start(t, testcluster.Options{K: 3, N: 5})
	c := tc.Client()
	k := generateEd(t, c)
	lies := startLiar(t, tc, 2, func(rep *scheme.Reply) bool {
		if len(rep.Payload) != 32 { // z_i (commitment batches are longer)
			return false
		}
		rep.Payload = append([]byte(nil), rep.Payload...)
		rep.Payload[5] ^= 0x40
		return true
	})
	untilLied(t, lies, func(i int) { signEdOK(t, c, k, fmt.Sprintf("until node 2 is asked %d", i)) })
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 4 {
				signEdOK(t, c, k, fmt.Sprintf("liar %d %d", g, i))
			}
		})
	}
	wg.Wait()
	untilExcluded(t, c, "node-2", func(i int) { signEdOK(t, c, k, fmt.Sprintf("until excluded %d", i)) })
	if lies.Load() == 0 {
		t.Fatal("the lying node was never asked; the test proves nothing")
	}
	if _, ok := c.Excluded()["node-2"]; !ok {
		t.Fatalf("node-2 lied %d times but is not excluded: %v", lies.Load(), c.Excluded())
	}
	if st := c.NodeStats()["node-2"]; st.Invalid == 0 {
		t.Fatalf("node-2's invalid shares not counted: %+v", st)
	}
}
