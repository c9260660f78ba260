package node_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/internal/protocol"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	"github.com/tchsm/tchsm/node"
	"github.com/tchsm/tchsm/node/nodetest"
	tchsmpb "github.com/tchsm/tchsm/proto"
)

// TestNewerPeers: a node answers what a newer release may send it (docs/operations/upgrade.md).
// An authentic request of a body type it does not know gets a sealed UNSUPPORTED_BODY_TYPE
// naming its protocol (not a drop, not a crash), and so does a known request of a feature the
// node is run without; an envelope version it does not speak gets a plain rejection that says
// so. Its Health advertises its protocol and features, and the node serves on after all of it.
func TestNewerPeers(t *testing.T) {
	c := nodetest.NewInMemory(t, nodetest.Options{K: 2, N: 2})
	c.StartNode(1, node.Options{})
	c.StartNode(2, node.Options{WithoutFeatures: []string{protocol.SignBatch}})
	p := c.Peer("client-1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	id := c.Identity("client-1")

	for _, bt := range []tchsmpb.BodyType{999, 40, tchsmpb.BodyType(1 << 30)} {
		raw := nodetest.Forge(id, c.Manifest.ClusterID, bt, &tchsmpb.HealthRequest{}, time.Now(), 10*time.Second)
		_, err := p.CallRaw(ctx, "node-1", transport.Node("node-1"), raw)
		if nodetest.Code(err) != tchsmpb.Error_UNSUPPORTED_BODY_TYPE || !strings.Contains(err.Error(), "protocol 2") {
			t.Fatalf("body type %d: %v, want a sealed UNSUPPORTED_BODY_TYPE naming protocol 2", bt, err)
		}
	}

	// Node 2 is run without batches: it answers a batch as a release without them would.
	_, err := p.CallNode(ctx, 2, tchsmpb.BodyType_BODY_TYPE_SIGN_BATCH, &tchsmpb.SignBatch{Requests: []*tchsmpb.SignRequest{{KeyId: strings.Repeat("a", 32)}}})
	if nodetest.Code(err) != tchsmpb.Error_UNSUPPORTED_BODY_TYPE {
		t.Fatalf("batch to a node without batches: %v", err)
	}
	_, err = p.CallNode(ctx, 1, tchsmpb.BodyType_BODY_TYPE_SIGN_BATCH, &tchsmpb.SignBatch{Requests: []*tchsmpb.SignRequest{{KeyId: strings.Repeat("a", 32)}}})
	if err != nil {
		t.Fatalf("batch to node 1: %v", err)
	}

	// A future envelope version: authenticated or not, refused in the clear, saying why.
	env := &tchsmpb.Envelope{Version: trust.EnvelopeVersion + 1, ClusterId: c.Manifest.ClusterID, Sender: id.ID,
		MessageId: make([]byte, trust.MessageIDSize), IssuedAt: time.Now().UnixNano(), Deadline: time.Now().Add(5 * time.Second).UnixNano(),
		BodyType: tchsmpb.BodyType_BODY_TYPE_HEALTH_REQUEST}
	rand.Read(env.MessageId)
	env.Signature = ed25519.Sign(id.SignKey, trust.EnvelopeSigningInput(env))
	raw, err := proto.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.CallRaw(ctx, "node-1", transport.Node("node-1"), raw); err == nil || !strings.Contains(err.Error(), trust.ErrUnsupportedVersion.Error()) {
		t.Fatalf("envelope version %d: %v, want a rejection naming %v", env.Version, err, trust.ErrUnsupportedVersion)
	}

	for i, want := range [][]string{{protocol.SignBatch}, nil} {
		op, err := p.CallNode(ctx, i+1, tchsmpb.BodyType_BODY_TYPE_HEALTH_REQUEST, &tchsmpb.HealthRequest{})
		if err != nil {
			t.Fatalf("node %d after it all: %v", i+1, err)
		}
		h := op.Message.(*tchsmpb.Health)
		if h.GetProtocol() != protocol.Current || h.GetMinProtocol() != protocol.Min || !slices.Equal(h.GetFeatures(), want) {
			t.Fatalf("node %d advertises protocol %d (min %d), features %q; want %d, %d, %q", i+1, h.GetProtocol(), h.GetMinProtocol(), h.GetFeatures(), protocol.Current, protocol.Min, want)
		}
	}
}

// TestNewerPeersLoggedIn: a request of a body type the node does not know, sent under a login
// (as a client of a newer release sends it), is answered UNSUPPORTED_BODY_TYPE too, and the
// session goes on serving.
func TestNewerPeersLoggedIn(t *testing.T) {
	c := nodetest.NewInMemory(t, nodetest.Options{K: 1, N: 1, PIN: "4711"})
	c.StartNode(1, node.Options{})
	p := c.Peer("client-1")
	res, key, _ := login(t, c, p, "client-1", "4711")
	ctx := func() context.Context { return nodetest.Ctx(t, 5*time.Second) }
	w := loggedIn(res.Session, key, 999, &tchsmpb.HealthRequest{})
	if _, err := p.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_LOGGED_IN, w); nodetest.Code(err) != tchsmpb.Error_UNSUPPORTED_BODY_TYPE {
		t.Fatalf("an unknown type under a login: %v, want UNSUPPORTED_BODY_TYPE", err)
	}
	sign := &tchsmpb.SignRequest{KeyId: "0123456789abcdef0123456789abcdef", Payload: []byte("T")}
	if _, err := p.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_LOGGED_IN, loggedIn(res.Session, key, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, sign)); nodetest.Code(err) != tchsmpb.Error_UNKNOWN_KEY {
		t.Fatalf("sign under the same login afterwards: %v, want UNKNOWN_KEY", err)
	}
}
