package dealer

import (
	"context"
	"fmt"

	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
)

// maxLateDeal bounds one deal's payload (as a node bounds DKG messages).
const maxLateDeal = 64 << 10

// QueueLateDeals forwards the deals kept for a node that took no part in a distributed key
// generation to that node's durable control queue, where it finds them when it is back (the
// dealer is the only role that writes there). The dealer checks only what it can: the record
// is validly endorsed, the recipient is a node of the manifest, every deal is a bounded
// message from a participant to the recipient. The node itself checks the deals and the share
// they make against the record (scheme/frost/dkg.LateShare), and refuses anything else.
// queued is the recipient once the broker holds the message.
func (d *Dealer) QueueLateDeals(ctx context.Context, m *tchsmpb.DKGLateDeals) (queued []string, err error) {
	node, ok := d.manifest().Lookup(m.GetRecipient())
	if !ok || node.Role != trust.RoleNode {
		return nil, fmt.Errorf("%w: late deals for %.64q, not a node of the manifest", ErrInvalid, m.GetRecipient())
	}
	rec, err := trust.VerifyKeyRecord(d.manifest(), m.GetRecord())
	if err != nil {
		return nil, fmt.Errorf("%w: late deals: %v", ErrInvalid, err)
	}
	if scheme.Of(rec) != scheme.Ed25519FROST {
		return nil, fmt.Errorf("%w: late deals for a key of algorithm %v", ErrInvalid, scheme.Of(rec))
	}
	n := d.manifest().N()
	if len(m.GetDeals()) == 0 || len(m.GetDeals()) > n || len(m.GetQualified()) > n {
		return nil, fmt.Errorf("%w: late deals: %d deals, %d qualified, %d nodes", ErrInvalid, len(m.GetDeals()), len(m.GetQualified()), n)
	}
	for _, dl := range m.GetDeals() {
		if f := int(dl.GetFrom()); f < 1 || f > n || int(dl.GetTo()) != node.Index || len(dl.GetPayload()) > maxLateDeal {
			return nil, fmt.Errorf("%w: late deals: a message from %d to %d of %d bytes", ErrInvalid, dl.GetFrom(), dl.GetTo(), len(dl.GetPayload()))
		}
	}
	env, _, err := d.sealer.Seal(tchsmpb.BodyType_BODY_TYPE_DKG_LATE_DEALS, m, trust.DurableMaxTTL)
	if err != nil {
		return nil, fmt.Errorf("dealer: %w", err)
	}
	if err := d.conn.Publish(ctx, transport.Node(node.ID), env); err != nil {
		return nil, fmt.Errorf("dealer: queueing late deals for %s: %w", node.ID, err)
	}
	d.log.Info("late deals queued", "key", rec.GetKeyId(), "to", node.ID, "deals", len(m.GetDeals()))
	return []string{node.ID}, nil
}
