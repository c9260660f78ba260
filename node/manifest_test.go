package node_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	"github.com/tchsm/tchsm/node"
	"github.com/tchsm/tchsm/node/nodetest"
	tchsmpb "github.com/tchsm/tchsm/proto"
)

// pushOf is a ManifestPush of updates.
func pushOf(t *testing.T, ups ...*trust.Update) *tchsmpb.ManifestPush {
	t.Helper()
	pbs, err := trust.UpdatesProto(ups)
	if err != nil {
		t.Fatal(err)
	}
	return &tchsmpb.ManifestPush{Updates: pbs}
}

// TestManifestPushToNode: an admin client's push of a signed update revoking signer-1 is
// applied (answered with the new state, the file written), signer-1 is refused from then on
// while client-1 is served, the same push again applies nothing, an unsigned or older update
// is refused with MANIFEST_REFUSED or MANIFEST_STALE, a signer may not push, and a fetch from
// serial 0 returns the update. Over the in-memory network, in process.
func TestManifestPushToNode(t *testing.T) {
	c := nodetest.NewInMemory(t, nodetest.Options{K: 1, N: 1, Signers: 2})
	c.StartNode(1, node.Options{})
	admin, signer, signer2 := c.Peer("client-1"), c.Peer("signer-1"), c.Peer("signer-2")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	health := &tchsmpb.HealthRequest{}
	if _, err := signer.CallNode(ctx, 1, tchsmpb.BodyType_BODY_TYPE_HEALTH_REQUEST, health); err != nil {
		t.Fatal(err)
	}
	key, err := trust.ReadAdminKeyFile(c.Layout.AdminKeys[0])
	if err != nil {
		t.Fatal(err)
	}
	m0 := c.Manifest
	revoke := func(cur *trust.Manifest, id string, sign bool) *trust.Update {
		next := cur.Clone()
		next.Clients = slices.DeleteFunc(next.Clients, func(m trust.Member) bool { return m.ID == id })
		u, err := trust.NewUpdate(cur, next)
		if err != nil {
			t.Fatal(err)
		}
		if sign {
			u.Sign(key)
		}
		return u
	}
	push := func(p *nodetest.Peer, ups ...*trust.Update) (*tchsmpb.ManifestState, error) {
		op, err := p.CallNode(ctx, 1, tchsmpb.BodyType_BODY_TYPE_MANIFEST_PUSH, pushOf(t, ups...))
		if err != nil {
			return nil, err
		}
		return op.Message.(*tchsmpb.ManifestState), nil
	}
	unsigned := revoke(m0, "signer-1", false)
	if _, err := push(admin, unsigned); nodetest.Code(err) != tchsmpb.Error_MANIFEST_REFUSED {
		t.Fatalf("unsigned: %v", err)
	}
	u1 := revoke(m0, "signer-1", true)
	if _, err := push(signer2, u1); nodetest.Code(err) != tchsmpb.Error_UNAUTHORIZED {
		t.Fatalf("push by a signer client: %v", err)
	}
	st, err := push(admin, u1)
	if err != nil || st.GetSerial() != 1 || st.GetApplied() != 1 || st.GetHash() != u1.Manifest.Hash() {
		t.Fatalf("push: %v, %v", st, err)
	}
	if m, err := trust.LoadManifest(c.Nodes[0].Manifest); err != nil || m.Serial != 1 {
		t.Fatalf("node's manifest file: %v", err)
	}
	// signer-1 is now a stranger; client-1 and signer-2 are served.
	_, err = signer.CallNode(ctx, 1, tchsmpb.BodyType_BODY_TYPE_HEALTH_REQUEST, health)
	var re *transport.RemoteError
	if !errors.As(err, &re) || !errors.Is(err, transport.ErrRemote) {
		t.Fatalf("revoked signer-1: %v", err)
	}
	t.Logf("revoked client's request: %v", err)
	op, err := admin.CallNode(ctx, 1, tchsmpb.BodyType_BODY_TYPE_HEALTH_REQUEST, health)
	if err != nil || op.Message.(*tchsmpb.Health).GetManifestSerial() != 1 {
		t.Fatalf("admin's health: %v", err)
	}
	if st, err := push(admin, u1); err != nil || st.GetApplied() != 0 || st.GetSerial() != 1 {
		t.Fatalf("same push again: %v, %v", st, err)
	}
	// Serial 2 revokes signer-2; then u1 alone is stale.
	m1, _ := trust.Accept(m0, u1)
	u2 := revoke(m1, "signer-2", true)
	if st, err := push(admin, u1, u2); err != nil || st.GetApplied() != 1 || st.GetSerial() != 2 {
		t.Fatalf("chain 1, 2 at serial 1: %v, %v", st, err)
	}
	if _, err := push(admin, u1); nodetest.Code(err) != tchsmpb.Error_MANIFEST_STALE {
		t.Fatalf("older update: %v", err)
	}
	if _, err := signer2.CallNode(ctx, 1, tchsmpb.BodyType_BODY_TYPE_HEALTH_REQUEST, health); !errors.Is(err, transport.ErrRemote) {
		t.Fatalf("revoked signer-2: %v", err)
	}
	op, err = admin.CallNode(ctx, 1, tchsmpb.BodyType_BODY_TYPE_MANIFEST_FETCH, &tchsmpb.ManifestFetch{Have: 0})
	if err != nil {
		t.Fatal(err)
	}
	ch := op.Message.(*tchsmpb.ManifestChain)
	ups, err := trust.UpdatesFromProto(ch.GetUpdates())
	if err != nil || len(ups) != 2 || ch.GetIncomplete() || ch.GetSerial() != 2 {
		t.Fatalf("fetch: %d updates, %v, %+v", len(ups), err, ch)
	}
	if got, _, err := trust.ApplyChain(m0, ups); err != nil || got.Serial != 2 {
		t.Fatalf("fetched chain: %v", err)
	}
	// Restarted, the node holds serial 2 and still refuses signer-1.
	c.StopNode(1)
	c.StartNode(1, node.Options{})
	if _, err := signer.CallNode(ctx, 1, tchsmpb.BodyType_BODY_TYPE_HEALTH_REQUEST, health); !errors.Is(err, transport.ErrRemote) {
		t.Fatalf("revoked signer-1 after the restart: %v", err)
	}
	op, err = admin.CallNode(ctx, 1, tchsmpb.BodyType_BODY_TYPE_HEALTH_REQUEST, health)
	if err != nil || op.Message.(*tchsmpb.Health).GetManifestSerial() != 2 {
		t.Fatalf("after the restart: %v", err)
	}
}
