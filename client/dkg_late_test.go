package client

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/dealer"
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/transport/memory"
	"github.com/tchsm/tchsm/internal/trust"
	"github.com/tchsm/tchsm/node"
	"github.com/tchsm/tchsm/node/nodetest"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
)

// serveDealer runs the dealer service on the in-memory network until the test ends.
func serveDealer(t *testing.T, c *nodetest.Cluster) {
	t.Helper()
	dtr := c.Net.Connect("dealer")
	d, err := dealer.New(c.DealerCfg, dtr, dealer.Options{Logger: c.Logger, NoPool: true})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- d.Serve(sctx) }()
	t.Cleanup(func() { stop(); <-served; d.Close(); dtr.Close() })
	if err := dtr.WaitServing(nodetest.Ctx(t, 10*time.Second), transport.Dealer); err != nil {
		t.Fatal(err)
	}
}

// takeInbox removes the first message of node id's control queue and returns it.
func takeInbox(t *testing.T, c *nodetest.Cluster, id string) []byte {
	t.Helper()
	tr := c.Net.Connect("test-inbox-" + id)
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []byte
	_ = tr.Consume(ctx, transport.Node(id), func(_ context.Context, body []byte) error {
		got = body
		cancel()
		return nil
	})
	if got == nil {
		t.Fatalf("nothing in %s's control queue", id)
	}
	return got
}

// waitHolds waits until node id lists key.
func waitHolds(t *testing.T, cl *Client, id, key string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		sts, _ := cl.Status(nodetest.Ctx(t, 5*time.Second))
		for _, st := range sts {
			if st.ID == id && slices.Contains(st.Keys, key) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not hold key %s after 20 s", id, key)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEdLateShare: node-3 of a 2-of-3 cluster is down while an Ed25519 key is generated with
// Nodes: 2. The client hands the deals addressed to node-3 to the dealer service, which queues
// them on node-3's control queue. Forged or altered copies are dead-lettered; when node-3 is
// back it computes its share from the genuine message, and signs in sets that include it.
func TestEdLateShare(t *testing.T) {
	c := nodetest.NewInMemory(t, nodetest.Options{K: 2, N: 3})
	mc := &memCluster{Cluster: c, logs: &logBuffer{}}
	c.StartNode(1, node.Options{})
	c.StartNode(2, node.Options{})
	serveDealer(t, c)
	cl := mc.client(t, nil)
	ctx := nodetest.Ctx(t, time.Minute)
	info, err := cl.GenerateKey(ctx, GenerateRequest{Algorithm: scheme.Ed25519FROST, Label: "late", Nodes: 2})
	if err != nil {
		t.Fatalf("GenerateKey with node-3 down: %v\n%s", err, mc.logs)
	}
	mc.key = info
	inbox := transport.Node("node-3")
	if got := c.Net.Inbox(inbox); got != 1 {
		t.Fatalf("node-3's control queue holds %d messages, want 1 (the late deals)\n%s", got, mc.logs)
	}

	// Take the genuine message out, put bad variants before it, then it, then it again.
	good := takeInbox(t, c, "node-3")
	op, err := mustOpener(t, c).Open(good)
	if err != nil {
		t.Fatal(err)
	}
	late, ok := op.Message.(*tchsmpb.DKGLateDeals)
	if !ok || op.Sender.Role != trust.RoleDealer || late.GetRecipient() != "node-3" || len(late.GetDeals()) != 2 || !slices.Equal(late.GetQualified(), []uint32{1, 2}) {
		t.Fatalf("queued %v from %s: %v", op.Type, op.Sender.ID, late)
	}
	dealerSeal := c.Peer("dealer").Sealer
	clientSeal := c.Peer("client-1").Sealer
	variant := func(s *trust.Sealer, edit func(m *tchsmpb.DKGLateDeals)) []byte {
		m := proto.Clone(late).(*tchsmpb.DKGLateDeals)
		edit(m)
		env, _, err := s.Seal(tchsmpb.BodyType_BODY_TYPE_DKG_LATE_DEALS, m, trust.DurableMaxTTL)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	bad := map[string][]byte{
		"from a client":     variant(clientSeal, func(*tchsmpb.DKGLateDeals) {}),
		"altered deal":      variant(dealerSeal, func(m *tchsmpb.DKGLateDeals) { m.Deals[0].Payload[40] ^= 1 }),
		"a deal missing":    variant(dealerSeal, func(m *tchsmpb.DKGLateDeals) { m.Deals = m.Deals[1:] }),
		"one endorsement":   variant(dealerSeal, func(m *tchsmpb.DKGLateDeals) { m.Record.Endorsements = m.Record.Endorsements[:1] }),
		"another recipient": variant(dealerSeal, func(m *tchsmpb.DKGLateDeals) { m.Recipient = "node-2" }),
		"fewer qualified":   variant(dealerSeal, func(m *tchsmpb.DKGLateDeals) { m.Qualified = m.Qualified[:1] }),
	}
	pub := c.Dial("test-publisher")
	for _, env := range bad {
		if err := pub.Publish(ctx, inbox, env); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := pub.Publish(ctx, inbox, good); err != nil {
			t.Fatal(err)
		}
	}
	c.StartNode(3, node.Options{})
	waitHolds(t, cl, "node-3", info.ID)
	deadline := time.Now().Add(10 * time.Second)
	for c.Net.Inbox(inbox) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if d := len(c.Net.Dead(inbox)); d != len(bad) {
		t.Fatalf("%d messages dead-lettered, want the %d bad ones", d, len(bad))
	}

	// node-3 signs: with node-1 down the set is {2, 3}, with node-2 down {1, 3}.
	for _, down := range []string{"node-1", "node-2"} {
		c.Net.SetFault(transport.Node(down), memory.Fault{Err: fmt.Errorf("%s down", down)})
		for i := range 3 {
			if err := mc.signEd(t, cl, fmt.Sprint(down, " down ", i)); err != nil {
				t.Fatalf("with %s down: %v\n%s", down, err, mc.logs)
			}
		}
		c.Net.SetFault(transport.Node(down), memory.Fault{})
	}
	noLiars(t, cl)
}

// TestEdLateShareInProcess: with the dealer in the client's process (Options.Dealer, as the
// tchsm command does for dealer_config), the late deals are queued the same way.
func TestEdLateShareInProcess(t *testing.T) {
	c := nodetest.NewInMemory(t, nodetest.Options{K: 2, N: 3})
	mc := &memCluster{Cluster: c, logs: &logBuffer{}}
	c.StartNode(1, node.Options{})
	c.StartNode(2, node.Options{})
	var cfg config.Client
	if err := config.Load(c.Layout.Clients[0], &cfg); err != nil {
		t.Fatal(err)
	}
	ctx := nodetest.Ctx(t, time.Minute)
	cl, err := New(ctx, &cfg, Options{Transport: c.Net.Connect("client-local"), Dealer: func(tr transport.Transport) (KeyDealer, error) {
		d, err := dealer.New(c.DealerCfg, tr, dealer.Options{Logger: c.Logger, NoPool: true})
		return inProcess{d}, err
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	info, err := cl.GenerateKey(ctx, GenerateRequest{Algorithm: scheme.Ed25519FROST, Label: "late", Nodes: 2})
	if err != nil {
		t.Fatal(err)
	}
	mc.key = info
	c.StartNode(3, node.Options{})
	waitHolds(t, cl, "node-3", info.ID)
	c.Net.SetFault(transport.Node("node-1"), memory.Fault{Err: fmt.Errorf("down")})
	if err := mc.signEd(t, cl, "with node-3"); err != nil {
		t.Fatal(err)
	}
}

func mustOpener(t *testing.T, c *nodetest.Cluster) *trust.Opener {
	t.Helper()
	o, err := trust.NewOpener(c.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	return o
}
