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
	// KindControl: durable queue, persistent messages, dead-lettered on reject.
	KindControl queueKind = iota + 1
	// KindDead: durable dead-letter queue of a control queue.
	KindDead
	// KindRPC: transient request queue owned by its one consumer (exclusive,
	// auto-delete); messages carry a TTL. Only [Conn.Serve] declares it.
	KindRPC
)

// Suffixes of queue names, after "tchsm.<cluster>.".
const (
	suffixControl = ".control"
	suffixDead    = ".control.dead"
	suffixRPC     = ".rpc"
)

func prefix(clusterID string) string { return "tchsm." + clusterID + "." }

// NodeControlQueue is the name of a node's durable control queue.
func NodeControlQueue(clusterID, nodeID string) string {
	return prefix(clusterID) + "node." + nodeID + suffixControl
}

// NodeDeadQueue is the dead-letter queue of a node's control queue.
func NodeDeadQueue(clusterID, nodeID string) string {
	return prefix(clusterID) + "node." + nodeID + suffixDead
}

// NodeRPCQueue is the name of a node's request queue.
func NodeRPCQueue(clusterID, nodeID string) string {
	return prefix(clusterID) + "node." + nodeID + suffixRPC
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
	err := c.declare(ctx, map[string]queueKind{q.Dead: KindDead, q.Control: KindControl})
	return q, err
}

func (c *Conn) declare(ctx context.Context, qs map[string]queueKind) error {
	for {
		s, err := c.session(ctx)
		if err != nil {
			return err
		}
		err = declareAll(s.conn, qs)
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
func declareAll(ac *amqp.Connection, qs map[string]queueKind) error {
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
			if err := declareQueue(ch, name, k); err != nil {
				return err
			}
		}
	}
	return nil
}

func declareQueue(ch *amqp.Channel, name string, k queueKind) error {
	var err error
	switch k {
	case KindControl:
		_, err = ch.QueueDeclare(name, true, false, false, false, amqp.Table{
			"x-dead-letter-exchange":    "",
			"x-dead-letter-routing-key": name[:len(name)-len(suffixControl)] + suffixDead,
		})
	case KindDead:
		_, err = ch.QueueDeclare(name, true, false, false, false, nil)
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
