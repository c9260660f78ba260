package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"github.com/tchsm/tchsm/internal/transport"

	amqp "github.com/rabbitmq/amqp091-go"
)

type queueKind int

const (
	// KindControl: a node's inbox, a durable quorum queue, persistent messages, dead-lettered
	// (at least once) on reject and at the delivery limit.
	KindControl queueKind = iota + 1
	// KindDead: durable quorum dead-letter queue of a control queue.
	KindDead
	// KindRPC: transient request queue owned by its one consumer (exclusive,
	// auto-delete); messages carry a TTL. Only [Conn.Serve] declares it.
	KindRPC
)

// DeliveryLimit is the x-delivery-limit of the control queues: how many times the broker
// hands a message out before it dead-letters it. A handler's failure does not count (the
// consumer republishes the message instead of returning it, see the package doc); what
// counts is a consumer lost while it held the message (a crash, a broker node or connection
// lost) on RabbitMQ before 4.3, and an explicit reject with requeue on 4.3 and later. It is
// explicit because RabbitMQ 4.0 and later apply a default of 20.
const DeliveryLimit = 50

// Suffixes of queue names, after "tchsm.<cluster>.". The control queues were classic queues
// called .control and .control.dead before they became quorum queues; a queue cannot change
// its type, so the quorum queues have new names and the old ones are emptied into them
// ([Conn.DeclareNode]).
const (
	suffixControl       = ".inbox"
	suffixDead          = ".inbox.dead"
	suffixLegacyControl = ".control"
	suffixLegacyDead    = ".control.dead"
	suffixRPC           = ".rpc"
)

func prefix(clusterID string) string { return "tchsm." + clusterID + "." }

func nodePrefix(clusterID, nodeID string) string { return prefix(clusterID) + "node." + nodeID }

// NodeControlQueue is the name of a node's durable control queue (its inbox).
func NodeControlQueue(clusterID, nodeID string) string {
	return nodePrefix(clusterID, nodeID) + suffixControl
}

// NodeDeadQueue is the dead-letter queue of a node's control queue.
func NodeDeadQueue(clusterID, nodeID string) string {
	return nodePrefix(clusterID, nodeID) + suffixDead
}

// LegacyControlQueues are the names of a node's classic control and dead-letter queues as
// the versions before quorum queues declared them.
func LegacyControlQueues(clusterID, nodeID string) (control, dead string) {
	p := nodePrefix(clusterID, nodeID)
	return p + suffixLegacyControl, p + suffixLegacyDead
}

// NodeRPCQueue is the name of a node's request queue.
func NodeRPCQueue(clusterID, nodeID string) string {
	return nodePrefix(clusterID, nodeID) + suffixRPC
}

// DealerRPCQueue is the name of the dealer's request queue.
func DealerRPCQueue(clusterID string) string {
	return prefix(clusterID) + "dealer" + suffixRPC
}

// NodeControlQueue is NodeControlQueue(cluster id of c, nodeID).
func (c *Conn) NodeControlQueue(nodeID string) string {
	return NodeControlQueue(c.cfg.ClusterID, nodeID)
}

// NodeRPCQueue is NodeRPCQueue(cluster id of c, nodeID).
func (c *Conn) NodeRPCQueue(nodeID string) string { return NodeRPCQueue(c.cfg.ClusterID, nodeID) }

// DealerRPCQueue is DealerRPCQueue(cluster id of c).
func (c *Conn) DealerRPCQueue() string { return DealerRPCQueue(c.cfg.ClusterID) }

// NodeQueues names the queues of one node.
type NodeQueues struct {
	Control, Dead, RPC string
}

// DeclareNode declares (idempotently) the control and dead-letter queues of
// nodeID, and redeclares them after every reconnection. The dealer calls it
// too before delivering shares, so the control queue exists even if the node
// never ran. The rpc queue is only named: it exists exactly while the node's
// [Conn.Serve] consumes it, so a request to a node that is away fails at once
// with [transport.ErrNoRoute] instead of waiting in a queue nobody reads.
func (c *Conn) DeclareNode(ctx context.Context, nodeID string) (NodeQueues, error) {
	if !transport.ValidID(nodeID) {
		return NodeQueues{}, fmt.Errorf("%w: node id %q must be 1-64 letters, digits, '-' or '_'", transport.ErrConfig, nodeID)
	}
	q := NodeQueues{
		Control: c.NodeControlQueue(nodeID),
		Dead:    NodeDeadQueue(c.cfg.ClusterID, nodeID),
		RPC:     c.NodeRPCQueue(nodeID),
	}
	if err := c.declare(ctx, map[string]queueKind{q.Dead: KindDead, q.Control: KindControl}); err != nil {
		return q, err
	}
	if _, done := c.migrated.LoadOrStore(nodeID, true); done {
		return q, nil
	}
	lc, ld := LegacyControlQueues(c.cfg.ClusterID, nodeID)
	for _, mv := range [][2]string{{lc, q.Control}, {ld, q.Dead}} {
		n, err := c.moveMessages(ctx, mv[0], mv[1], true)
		if err != nil {
			c.migrated.Delete(nodeID)
			return q, fmt.Errorf("%w: migrating %s into %s (moved %d): %w", ErrTopology, mv[0], mv[1], n, err)
		}
		if n > 0 {
			c.log.Warn("moved the messages of a classic queue of an older version into its quorum queue", "from", mv[0], "to", mv[1], "messages", n)
		}
	}
	return q, nil
}

func (c *Conn) declare(ctx context.Context, qs map[string]queueKind) error {
	for {
		s, err := c.session(ctx)
		if err != nil {
			return err
		}
		err = declareAll(s.conn, qs, c.deliveryLimit())
		if err == nil {
			c.mu.Lock()
			for n, k := range qs {
				c.queues[n] = k
			}
			c.mu.Unlock()
			return nil
		}
		if errors.Is(err, ErrTopology) {
			return err
		}
		// Connection trouble: wait for the next session.
		select {
		case <-s.lost:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", err, ctx.Err())
		}
	}
}

// declareAll declares queues on a throwaway channel: a failed declaration
// closes the channel it was made on.
func declareAll(ac *amqp.Connection, qs map[string]queueKind, limit int) error {
	if len(qs) == 0 {
		return nil
	}
	ch, err := ac.Channel()
	if err != nil {
		return fmt.Errorf("%w: open channel: %w", transport.ErrUnavailable, err)
	}
	defer ch.Close()
	// Dead-letter queues first, so a control queue never points to nothing.
	for _, want := range []queueKind{KindDead, KindControl} {
		for name, k := range qs {
			if k != want {
				continue
			}
			if err := declareQueue(ch, name, k, limit); err != nil {
				return err
			}
		}
	}
	return nil
}

// controlArgs are the arguments of the control queue name: a quorum queue (replicated on the
// broker cluster's nodes, it survives the loss of a minority of them) with an explicit
// delivery limit, whose dead letters go to its .dead queue at least once: the broker keeps a
// dead-lettered message until the dead-letter queue confirmed it, which RabbitMQ does only
// for a queue that rejects publishes when full (x-overflow reject-publish; with the default
// drop-head it falls back to at most once). The queues have no length limit, so the
// overflow setting never refuses a share; it is there for the dead-lettering.
func controlArgs(name string, limit int) amqp.Table {
	return amqp.Table{
		"x-queue-type":              "quorum",
		"x-delivery-limit":          int64(limit),
		"x-overflow":                "reject-publish",
		"x-dead-letter-strategy":    "at-least-once",
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": name[:len(name)-len(suffixControl)] + suffixDead,
	}
}

func declareQueue(ch *amqp.Channel, name string, k queueKind, limit int) error {
	var err error
	switch k {
	case KindControl:
		_, err = ch.QueueDeclare(name, true, false, false, false, controlArgs(name, limit))
	case KindDead:
		_, err = ch.QueueDeclare(name, true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
	case KindRPC:
		// Exclusive: only this connection consumes it, and the broker deletes it with the
		// connection; auto-delete: also when the consumer is cancelled. A request published
		// while nobody consumes has no queue to wait in and comes back (mandatory flag).
		_, err = ch.QueueDeclare(name, false, true, true, false, nil)
	default:
		return fmt.Errorf("%w: unknown queue kind %d", transport.ErrConfig, k)
	}
	if err == nil {
		return nil
	}
	var ae *amqp.Error
	if errors.As(err, &ae) && (ae.Code == amqp.PreconditionFailed || ae.Code == amqp.AccessRefused) {
		return fmt.Errorf("%w: queue %s: %w", ErrTopology, name, err)
	}
	if errors.As(err, &ae) && ae.Code == amqp.ResourceLocked {
		// Another connection owns the exclusive queue: the same node running twice, or the
		// broker has not yet noticed that a previous connection died. Retried.
		return fmt.Errorf("%w: queue %s is held by another connection: %w", transport.ErrUnavailable, name, err)
	}
	return fmt.Errorf("%w: declare %s: %w", transport.ErrUnavailable, name, err)
}
