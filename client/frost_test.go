package client

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/transport/memory"
	"github.com/tchsm/tchsm/node"
	"github.com/tchsm/tchsm/node/nodetest"
	"github.com/tchsm/tchsm/scheme"
)

// Ed25519 (FROST) over the in-memory network with real nodes: the nodes generate the key
// together (the client only relays), then sign with commitments handed out in advance.

// newEdCluster starts n nodes (hooks[i] is node i's ShareHook) and has them generate a key.
func newEdCluster(t *testing.T, k, n int, hooks map[int]func(*scheme.Reply)) (*memCluster, *Client) {
	t.Helper()
	mc := startMem(t, k, n, hooks, nil)
	return mc, mc.generateEd(t)
}

// generateEd generates an Ed25519 key with the nodes' DKG, makes it mc.key and returns the
// client that generated it.
func (mc *memCluster) generateEd(t *testing.T) *Client {
	t.Helper()
	cl := mc.client(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t0 := time.Now()
	info, err := cl.GenerateKey(ctx, GenerateRequest{Algorithm: scheme.Ed25519FROST, Label: "ed", P11ID: []byte{7}})
	if err != nil {
		t.Fatalf("GenerateKey: %v\n%s", err, mc.logs)
	}
	t.Logf("%d-of-%d DKG through the client: %v", mc.Manifest.Threshold, len(mc.Nodes), time.Since(t0))
	mc.key = info
	return cl
}

func (mc *memCluster) signEd(t *testing.T, c *Client, msg string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sig, err := c.Sign(ctx, mc.key.ID, scheme.EDDSA, []byte(msg))
	if err != nil {
		return err
	}
	if !ed25519.Verify(mc.key.Public.(ed25519.PublicKey), []byte(msg), sig) {
		t.Fatalf("signature over %q does not verify", msg)
	}
	return nil
}

func TestEdGenerateAndSign(t *testing.T) {
	mc, cl := newEdCluster(t, 3, 5, nil)
	if mc.key.Algorithm != scheme.Ed25519FROST || mc.key.Bits != 256 || mc.key.K != 3 || mc.key.L != 5 || mc.key.Label != "ed" {
		t.Fatalf("key info %+v", mc.key)
	}
	ctx := nodetest.Ctx(t, 10*time.Second)
	for i := range 20 {
		if err := mc.signEd(t, cl, fmt.Sprint("ed message ", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Another client (a fresh process) finds the key through the nodes' listings.
	other := mc.client(t, nil)
	keys, err := other.Keys(ctx)
	if err != nil || len(keys) != 1 || keys[0].ID != mc.key.ID || keys[0].Algorithm != scheme.Ed25519FROST {
		t.Fatalf("Keys: %v %+v", err, keys)
	}
	if err := mc.signEd(t, other, "from another client"); err != nil {
		t.Fatal(err)
	}
	// Wrong mechanism.
	if _, err := cl.Sign(ctx, mc.key.ID, scheme.SHA256RSAPKCS, []byte("x")); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("RSA mechanism on an Ed25519 key: %v", err)
	}
}

func TestEdLiarExcluded(t *testing.T) {
	lie := func(r *scheme.Reply) {
		if len(r.Payload) == 32 { // a signature share (commit replies are longer)
			r.Payload = append([]byte(nil), r.Payload...)
			r.Payload[0] ^= 1
		}
	}
	mc, cl := newEdCluster(t, 3, 5, map[int]func(*scheme.Reply){2: lie})
	for i := range 15 {
		if err := mc.signEd(t, cl, fmt.Sprint("liar ", i)); err != nil {
			t.Fatalf("signature %d: %v\n%s", i, err, mc.logs)
		}
	}
	if st := cl.NodeStats()["node-2"]; st.Invalid == 0 {
		t.Fatalf("node-2 lied and was not caught: %+v", st)
	}
	if !strings.Contains(mc.logs.String(), "invalid signature share") {
		t.Fatal("the liar was not logged")
	}
}

func TestEdNodeDownAndRestart(t *testing.T) {
	mc, cl := newEdCluster(t, 3, 5, nil)
	for i := range 5 {
		if err := mc.signEd(t, cl, fmt.Sprint("warm ", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Two nodes stop answering (their commitments are in the client's pool): signing goes on
	// with the other three.
	mc.Net.SetFault(transport.Node("node-1"), memory.Fault{Hang: true})
	mc.Net.SetFault(transport.Node("node-4"), memory.Fault{Hang: true})
	t0 := time.Now()
	for i := range 10 {
		if err := mc.signEd(t, cl, fmt.Sprint("two down ", i)); err != nil {
			t.Fatalf("with two of five nodes down: %v\n%s", err, mc.logs)
		}
	}
	t.Logf("10 signatures with two nodes hanging: %v", time.Since(t0))
	mc.Net.SetFault(transport.Node("node-1"), memory.Fault{})
	mc.Net.SetFault(transport.Node("node-4"), memory.Fault{})
	// Every node restarts: their nonces are gone, the client's pools are stale; signing
	// recovers (STALE is no fault) with fresh commitments.
	for i := 1; i <= 5; i++ {
		mc.StopNode(i)
		mc.StartNode(i, node.Options{})
	}
	for i := range 10 {
		if err := mc.signEd(t, cl, fmt.Sprint("after restart ", i)); err != nil {
			t.Fatalf("after the nodes restarted: %v\n%s", err, mc.logs)
		}
	}
	noLiars(t, cl)
}

// By default a key generation with a node down succeeds only when that node's deals can wait
// for it: with no dealer to queue them it fails and nothing is stored; with the dealer up it
// succeeds, and the node holds its share once it is back. With Nodes set the operator accepts
// a key on fewer nodes.
func TestEdGenerateDefaultQueuesForAbsentNodes(t *testing.T) {
	c := nodetest.NewInMemory(t, nodetest.Options{K: 2, N: 3})
	mc := &memCluster{Cluster: c, logs: &logBuffer{}}
	c.StartNode(1, node.Options{})
	c.StartNode(2, node.Options{})
	cl := mc.client(t, nil)
	ctx := nodetest.Ctx(t, time.Minute)
	_, err := cl.GenerateKey(ctx, GenerateRequest{Algorithm: scheme.Ed25519FROST, Label: "ed"})
	if !errors.Is(err, ErrNotEnoughNodes) || !strings.Contains(err.Error(), "node-3") || !strings.Contains(err.Error(), "nothing was stored") {
		t.Fatalf("DKG with a node down and no dealer: %v", err)
	}
	if keys, _ := cl.Keys(ctx); len(keys) != 0 {
		t.Fatalf("a failed key generation left keys: %+v", keys)
	}
	// The operator says two nodes are enough: the key is made on node-1 and node-2.
	info, err := cl.GenerateKey(ctx, GenerateRequest{Algorithm: scheme.Ed25519FROST, Label: "ed", Nodes: 2})
	if err != nil {
		t.Fatalf("DKG with Nodes=2: %v", err)
	}
	mc.key = info
	if err := mc.signEd(t, cl, "two of three"); err != nil {
		t.Fatal(err)
	}
	// With the dealer up, the default generation queues node-3's deals, and node-3 computes
	// its share when it starts.
	serveDealer(t, c)
	info, err = cl.GenerateKey(ctx, GenerateRequest{Algorithm: scheme.Ed25519FROST, Label: "ed2"})
	if err != nil {
		t.Fatalf("DKG with a node down and the dealer up: %v", err)
	}
	mc.key = info
	c.StartNode(3, node.Options{})
	waitHolds(t, cl, "node-3", info.ID)
	mc.Net.SetFault(transport.Node("node-1"), memory.Fault{Err: errors.New("down")})
	if err := mc.signEd(t, cl, "with node-3's late share"); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkEdSignInMemory_3of5: Ed25519 signatures over the in-memory network with five real
// nodes in this process (no broker): the client's and nodes' CPU per signature, for profiles
// (-cpuprofile) that split arithmetic from messaging.
func BenchmarkEdSignInMemory_3of5(b *testing.B) {
	c := nodetest.NewInMemory(b, nodetest.Options{K: 3, N: 5})
	mc := &memCluster{Cluster: c, logs: &logBuffer{}}
	for i := 1; i <= 5; i++ {
		c.StartNode(i, node.Options{})
	}
	cl := mc.clientTB(b, nil)
	ctx := context.Background()
	info, err := cl.GenerateKey(ctx, GenerateRequest{Algorithm: scheme.Ed25519FROST, Label: "ed"})
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 150)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := cl.Sign(ctx, info.ID, scheme.EDDSA, msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// noLiars fails the test when cl counted any node as a liar.
func noLiars(t *testing.T, cl *Client) {
	t.Helper()
	for id, st := range cl.NodeStats() {
		if st.Invalid != 0 {
			t.Fatalf("node %s counted as a liar: %+v", id, st)
		}
	}
}
