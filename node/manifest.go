package node

import (
	"bytes"
	"errors"

	"github.com/tchsm/tchsm/internal/rpc"
	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
)

// Manifest updates (internal/trust/update.go, docs/operations/manifest.md).
//
// A node takes updates from admin clients on its rpc queue (ManifestPush, answered with
// ManifestState) and from the dealer on its control queue (the dealer queues every update it
// accepts for every node, so that a node down during a push gets it when it is back). Each
// update is checked under the manifest the node holds, written to its manifest file (and the
// updates beside it) before it is used, and then swapped in: from the next envelope on, a
// member the new manifest no longer lists is an unknown sender. Clients that are behind fetch
// the updates they lack (ManifestFetch).

// manifest is the manifest the node trusts now. Its cluster id, k and n never change
// (trust.Accept refuses updates that change them), so the values read from it at start stay
// right; its members change.
func (n *node) manifest() *trust.Manifest { return n.trusted.Manifest() }

// manifestChanged is called with every manifest the node installs.
func (n *node) manifestChanged(m *trust.Manifest) {
	if err := n.opener.SetManifest(m); err != nil {
		n.log.Error("new manifest not usable by the envelope checks", "err", err) // cannot happen: validated
	}
	n.log.Info("manifest updated", "serial", m.Serial, "manifest", m.Fingerprint(),
		"nodes", m.N(), "dealers", len(m.Dealers), "clients", len(m.Clients), "admins", len(m.Admins))
	if mem, ok := m.Lookup(n.id.ID); !ok || mem.Role != trust.RoleNode || !bytes.Equal(mem.SignPub, n.self.SignPub) || !bytes.Equal(mem.EncPub, n.self.EncPub) {
		n.log.Error("this node's identity is no longer in the manifest: the other processes refuse its answers; it will not start again with this identity", "node", n.id.ID, "serial", m.Serial)
	}
}

// applyPush applies the updates of a push (rpc.ApplyPush).
func (n *node) applyPush(sender string, p *tchsmpb.ManifestPush) (*tchsmpb.ManifestState, *rpc.Failure) {
	return rpc.ApplyPush(n.id.ID, n.trusted, n.log, sender, p)
}

// controlPush applies a push the dealer queued: held already or older is done (idempotent,
// acknowledged), refused is dead-lettered, a write failure is retried.
func (n *node) controlPush(op *trust.Opened, p *tchsmpb.ManifestPush) error {
	const kind = "manifest_push"
	if op.Sender.Role != trust.RoleDealer {
		return n.permanent(op.Sender.ID, kind, "only the dealer queues manifest updates")
	}
	_, f := n.applyPush(op.Sender.ID, p)
	switch {
	case f == nil, f.Code == tchsmpb.Error_MANIFEST_STALE:
		n.metrics.control.WithLabelValues(kind, "ok").Inc()
		return nil
	case f.Code == tchsmpb.Error_INTERNAL:
		n.metrics.control.WithLabelValues(kind, "retry").Inc()
		return errors.New(f.Msg)
	default:
		return n.permanent(op.Sender.ID, kind, f.Msg)
	}
}
