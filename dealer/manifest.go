package dealer

import (
	"bytes"
	"context"

	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/internal/rpc"
	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
)

// Manifest updates (internal/trust/update.go, docs/operations/manifest.md). The dealer takes
// them from admin clients (ManifestPush), checks them under the manifest it trusts, writes them
// to its manifest file and swaps them in like a node; then it queues every update it keeps on
// every node's durable control queue, so that a node that was down during the push, or that
// the pushing client could not reach, applies them when it reads its queue again (a node skips
// the updates it holds already).

// manifest is the manifest the dealer trusts now. Its cluster id, k and n never change.
func (d *Dealer) manifest() *trust.Manifest { return d.trusted.Manifest() }

// manifestChanged is called with every manifest the dealer installs.
func (d *Dealer) manifestChanged(m *trust.Manifest) {
	if err := d.opener.SetManifest(m); err != nil {
		d.log.Error("new manifest not usable by the envelope checks", "err", err)
	}
	d.log.Info("manifest updated", "serial", m.Serial, "manifest", m.Fingerprint(), "clients", len(m.Clients))
	pub := d.id.Public()
	if mem, ok := m.Lookup(d.id.ID); !ok || mem.Role != trust.RoleDealer || !bytes.Equal(mem.SignPub, pub.SignPub) {
		d.log.Error("this dealer's identity is no longer in the manifest: the nodes refuse what it sends", "dealer", d.id.ID, "serial", m.Serial)
	}
}

// servePush applies a client's push and queues the dealer's updates for every node.
func (d *Dealer) servePush(ctx context.Context, op *trust.Opened, p *tchsmpb.ManifestPush) (proto.Message, *rpc.Failure) {
	st, f := rpc.ApplyPush(d.id.ID, d.trusted, d.log, op.Sender.ID, p)
	if f != nil {
		return nil, f
	}
	if _, failed, err := d.QueueManifest(ctx); err != nil || len(failed) > 0 {
		d.log.Warn("manifest updates not queued for every node", "failed", failed, "err", err)
	}
	return st, nil
}

// QueueManifest queues the updates the dealer keeps (at most trust.MaxChain) on every node's
// control queue; queued and failed name the nodes.
func (d *Dealer) QueueManifest(ctx context.Context) (queued, failed []string, err error) {
	ups, _ := d.trusted.Since(0)
	if len(ups) == 0 {
		return nil, nil, nil
	}
	pbs, err := trust.UpdatesProto(ups)
	if err != nil {
		return nil, nil, err
	}
	env, _, err := d.sealer.Seal(tchsmpb.BodyType_BODY_TYPE_MANIFEST_PUSH, &tchsmpb.ManifestPush{Updates: pbs}, trust.DurableMaxTTL)
	if err != nil {
		return nil, nil, err
	}
	m := d.manifest()
	envs := make(map[string][]byte, m.N())
	for _, n := range m.Nodes {
		envs[n.ID] = env
	}
	queued, failed = d.publishAll(ctx, envs, d.log.With("manifest_serial", m.Serial))
	return queued, failed, nil
}
