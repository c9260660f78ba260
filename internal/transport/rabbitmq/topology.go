package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"strings"

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

// Exchanges. Every request, inbox message and reply of the current version goes through one of
// these topic exchanges, so that a broker user's write permission (per exchange) and topic
// permissions (per routing key) can say who may send what to whom (docs/broker-permissions.md).
// Only dead-lettering (done by the broker itself, no user permission) and the moves out of
// the legacy classic queues use the default exchange.

// RPCExchange is the exchange requests are published to: routing key [NodeKey] or [DealerKey],
// the key the server's rpc queue is bound with.
func RPCExchange(clusterID string) string { return prefix(clusterID) + "rpc" }

// InboxExchange is the exchange inbox messages (shares, deletions) are published to: routing
// key NodeKey(id), the key node id's control queue is bound with.
func InboxExchange(clusterID string) string { return prefix(clusterID) + "inbox" }

// ReplyExchange is the exchange replies are published to: routing key the request's reply_to,
// "<broker user>.<reply queue>" (see [ReplyKey]), the key the caller's reply queue is bound with.
func ReplyExchange(clusterID string) string { return prefix(clusterID) + "reply" }

// Exchanges are the names of a cluster's exchanges.
func Exchanges(clusterID string) []string {
	return []string{RPCExchange(clusterID), InboxExchange(clusterID), ReplyExchange(clusterID)}
}

// NodeKey is the routing key of node nodeID's rpc queue and control queue.
func NodeKey(nodeID string) string { return "node." + nodeID }

// DealerKey is the routing key of the dealer's rpc queue.
const DealerKey = "dealer"

// ReplyKey is the routing key, and the reply_to of its requests, of a caller connected as broker
// user user whose reply queue is queue (a server-named amq.gen-… queue).
func ReplyKey(user, queue string) string { return user + "." + queue }

// validReplyKey reports whether a request's reply_to has the form of a ReplyKey.
func validReplyKey(s string) bool {
	i := strings.LastIndex(s, "."+serverNamedPrefix)
	return i > 0 && len(s) > i+1+len(serverNamedPrefix) && len(s) <= 255
}

// serverNamedPrefix starts the names the broker gives queues declared with an empty name.
const serverNamedPrefix = "amq.gen-"

// route returns the exchange and routing key a message for queue is published with: requests
// for an rpc queue through RPCExchange, messages for a control queue through InboxExchange,
// anything else (dead-letter queues, test queues) straight to the queue through the default
// exchange.
func (c *Conn) route(queue string) (exchange, key string) {
	p := prefix(c.cfg.ClusterID)
	rest, ok := strings.CutPrefix(queue, p)
	if !ok {
		return "", queue
	}
	if rest == DealerKey+suffixRPC {
		return RPCExchange(c.cfg.ClusterID), DealerKey
	}
	id, ok := strings.CutPrefix(rest, "node.")
	if !ok {
		return "", queue
	}
	if n, ok := strings.CutSuffix(id, suffixRPC); ok && transport.ValidID(n) {
		return RPCExchange(c.cfg.ClusterID), NodeKey(n)
	}
	if n, ok := strings.CutSuffix(id, suffixControl); ok && transport.ValidID(n) {
		return InboxExchange(c.cfg.ClusterID), NodeKey(n)
	}
	return "", queue
}

// binding returns the exchange and key queue of kind k is bound with ("" for none).
func (c *Conn) binding(queue string, k queueKind) (exchange, key string) {
	if k != KindControl && k != KindRPC {
		return "", ""
	}
	x, key := c.route(queue)
	if x == "" {
		return "", ""
	}
	return x, key
}

// declareExchanges makes sure the cluster's exchanges exist, on throwaway channels: a passive
// declaration first (it needs no permission), and for a missing exchange a declaration, which
// needs configure permission on it (the dealer's, an administrator's, or a shared account's).
func declareExchanges(ac *amqp.Connection, clusterID string) error {
	for _, x := range Exchanges(clusterID) {
		ch, err := ac.Channel()
		if err != nil {
			return fmt.Errorf("%w: open channel: %w", transport.ErrUnavailable, err)
		}
		err = ch.ExchangeDeclarePassive(x, amqp.ExchangeTopic, true, false, false, false, nil)
		ch.Close()
		var ae *amqp.Error
		if err == nil {
			continue
		}
		if !errors.As(err, &ae) || ae.Code != amqp.NotFound {
			return fmt.Errorf("%w: exchange %s: %w", transport.ErrUnavailable, x, err)
		}
		if ch, err = ac.Channel(); err != nil {
			return fmt.Errorf("%w: open channel: %w", transport.ErrUnavailable, err)
		}
		err = ch.ExchangeDeclare(x, amqp.ExchangeTopic, true, false, false, false, nil)
		ch.Close()
		if err == nil {
			continue
		}
		if errors.As(err, &ae) && ae.Code == amqp.AccessRefused {
			// Retried: the dealer (or `tchsm broker setup`) creates it.
			return fmt.Errorf("%w: exchange %s does not exist and this broker user may not create it: start the dealer or run `tchsm broker setup` (%w)", transport.ErrUnavailable, x, err)
		}
		if errors.As(err, &ae) && ae.Code == amqp.PreconditionFailed {
			return fmt.Errorf("%w: exchange %s: %w", ErrTopology, x, err)
		}
		return fmt.Errorf("%w: exchange %s: %w", transport.ErrUnavailable, x, err)
	}
	return nil
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
		err = c.declareAll(s.conn, qs)
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

// declareAll declares queues, dead-letter queues first, so a control queue never points to
// nothing.
func (c *Conn) declareAll(ac *amqp.Connection, qs map[string]queueKind) error {
	for _, want := range []queueKind{KindDead, KindControl} {
		for name, k := range qs {
			if k != want {
				continue
			}
			if err := c.declareQueue(ac, name, k); err != nil {
				return err
			}
		}
	}
	return nil
}

// onChannel runs f on a throwaway channel of ac: a failed declaration closes the channel it
// was made on.
func onChannel(ac *amqp.Connection, f func(ch *amqp.Channel) error) error {
	ch, err := ac.Channel()
	if err != nil {
		return fmt.Errorf("%w: open channel: %w", transport.ErrUnavailable, err)
	}
	defer ch.Close()
	return f(ch)
}

// declareQueue declares queue name of kind k and binds it to its exchange (see binding).
//
// Declaring a control queue needs more than configure permission: because it names a
// dead-letter exchange (the default one), RabbitMQ also wants read permission on the queue and
// write permission on that exchange, which no restricted role has (docs/broker-permissions.md).
// A user that is refused therefore checks passively that the queue exists (which needs no
// permission): `tchsm broker setup` creates the control queues of every node of the manifest
// with an administrator's account. The binding needs write permission on the queue and read
// permission (and topic read permission for the key) on the exchange.
func (c *Conn) declareQueue(ac *amqp.Connection, name string, k queueKind) error {
	err := onChannel(ac, func(ch *amqp.Channel) error { return declareQueue(ch, name, k, c.deliveryLimit()) })
	var ae *amqp.Error
	if err != nil && (k == KindControl || k == KindDead) && errors.As(err, &ae) && ae.Code == amqp.AccessRefused {
		perr := onChannel(ac, func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
			return err
		})
		switch {
		case perr == nil:
			err = nil
		case errors.As(perr, &ae) && ae.Code == amqp.NotFound:
			// Retried: the operator creates it.
			return fmt.Errorf("%w: queue %s does not exist and this broker user may not create it: run `tchsm broker setup` (%w)", transport.ErrUnavailable, name, err)
		default:
			return fmt.Errorf("%w: queue %s: %w", transport.ErrUnavailable, name, perr)
		}
	}
	if err != nil {
		return err
	}
	x, key := c.binding(name, k)
	if x == "" {
		return nil
	}
	err = onChannel(ac, func(ch *amqp.Channel) error { return ch.QueueBind(name, key, x, false, nil) })
	if err == nil {
		return nil
	}
	if errors.As(err, &ae) && ae.Code == amqp.AccessRefused {
		return fmt.Errorf("%w: bind %s to %s with key %s: %w", ErrTopology, name, x, key, err)
	}
	return fmt.Errorf("%w: bind %s to %s: %w", transport.ErrUnavailable, name, x, err)
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
