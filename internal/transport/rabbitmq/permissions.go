package rabbitmq

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/tchsm/tchsm/internal/transport"
)

// Permission is what one broker user may do in the cluster's vhost: RabbitMQ's configure,
// write and read regular expressions (rabbitmqctl set_permissions) and, for each exchange it
// may write to or read from, its topic permissions (rabbitmqctl set_topic_permissions), which
// RabbitMQ matches against the routing key of a publish (write) and the binding key of a
// queue.bind (read). A user without topic permissions on a topic exchange may use every key,
// so every user gets them on each of the cluster's exchanges. See docs/broker-permissions.md.
type Permission struct {
	User                   string
	Configure, Write, Read string
	Topics                 []TopicPermission
}

// TopicPermission is a user's topic permission on one exchange.
type TopicPermission struct {
	Exchange    string
	Write, Read string
}

// Broker user names of a cluster's roles (one user per node, the dealer and each client).
func NodeUser(clusterID, nodeID string) string     { return "tchsm-" + clusterID + "-" + nodeID }
func DealerUser(clusterID string) string           { return "tchsm-" + clusterID + "-dealer" }
func ClientUser(clusterID, clientID string) string { return "tchsm-" + clusterID + "-" + clientID }

// q quotes a name for a permission regex.
func q(s string) string { return regexp.QuoteMeta(s) }

// anchored joins alternatives into one anchored regex.
func anchored(alts ...string) string { return "^(" + strings.Join(alts, "|") + ")$" }

// replyQueues matches the server-named reply queues (exclusive: only their own connection can
// consume, bind or delete them, whatever the permission says).
const replyQueues = `amq\.gen-.*`

// none matches no name (RabbitMQ's "^$").
const none = "^$"

// NodePermission is what node nodeID's broker user may do: bind and consume its own control
// queue, declare, bind and consume its own rpc queue, publish into its own inbox (a failed
// message goes back to the tail as a copy) and replies, and have a reply queue. It cannot
// read, purge, delete, bind or write into any other node's queues, nor send requests, nor
// delete its own control queue (the operator's account creates the control queues: see
// [Conn.DeclareNode]).
func NodePermission(clusterID, nodeID string) (Permission, error) {
	if !transport.ValidID(clusterID) || !transport.ValidID(nodeID) {
		return Permission{}, fmt.Errorf("%w: cluster id %q or node id %q", transport.ErrConfig, clusterID, nodeID)
	}
	n := q(nodePrefix(clusterID, nodeID))
	p := q(prefix(clusterID))
	user := NodeUser(clusterID, nodeID)
	key := "^" + q(NodeKey(nodeID)) + "$"
	return Permission{
		User:      user,
		Configure: anchored(n+`\.rpc`, replyQueues),
		Write:     anchored(n+`\.(inbox|rpc)`, p+`(inbox|reply)`, replyQueues),
		Read:      anchored(n+`\.(inbox|rpc)`, p+`(inbox|rpc|reply)`, replyQueues),
		Topics: []TopicPermission{
			{Exchange: RPCExchange(clusterID), Write: none, Read: key},
			{Exchange: InboxExchange(clusterID), Write: key, Read: key},
			{Exchange: ReplyExchange(clusterID), Write: ".*", Read: "^" + q(user) + `\.`},
		},
	}, nil
}

// DealerPermission is what the dealer's broker user may do: bind every node's control queue and
// publish shares and deletions into it, read the dead-letter queues (tchsm queues
// requeue-dead), call the nodes, and serve its own rpc queue. It cannot consume, purge or
// delete a node's control queue, nor read its rpc queue.
func DealerPermission(clusterID string) (Permission, error) {
	if !transport.ValidID(clusterID) {
		return Permission{}, fmt.Errorf("%w: cluster id %q", transport.ErrConfig, clusterID)
	}
	p := q(prefix(clusterID))
	user := DealerUser(clusterID)
	nodes := `^node\.[^.]+$`
	return Permission{
		User:      user,
		Configure: anchored(p+`dealer\.rpc`, replyQueues),
		Write:     anchored(p+`(node\.[^.]+\.inbox|dealer\.rpc|rpc|inbox|reply)`, replyQueues),
		Read:      anchored(p+`(node\.[^.]+\.inbox\.dead|dealer\.rpc|rpc|inbox|reply)`, replyQueues),
		Topics: []TopicPermission{
			{Exchange: RPCExchange(clusterID), Write: nodes, Read: "^" + q(DealerKey) + "$"},
			{Exchange: InboxExchange(clusterID), Write: nodes, Read: nodes},
			{Exchange: ReplyExchange(clusterID), Write: ".*", Read: "^" + q(user) + `\.`},
		},
	}, nil
}

// ClientPermission is what client clientID's broker user may do: send requests to the nodes
// and the dealer, and have a reply queue. Nothing else: no inbox, no queue of a node.
func ClientPermission(clusterID, clientID string) (Permission, error) {
	if !transport.ValidID(clusterID) || !transport.ValidID(clientID) {
		return Permission{}, fmt.Errorf("%w: cluster id %q or client id %q", transport.ErrConfig, clusterID, clientID)
	}
	p := q(prefix(clusterID))
	user := ClientUser(clusterID, clientID)
	return Permission{
		User:      user,
		Configure: anchored(replyQueues),
		Write:     anchored(p+`rpc`, replyQueues),
		Read:      anchored(p+`reply`, replyQueues),
		Topics: []TopicPermission{
			{Exchange: RPCExchange(clusterID), Write: `^(node\.[^.]+|dealer)$`, Read: none},
			{Exchange: InboxExchange(clusterID), Write: none, Read: none},
			{Exchange: ReplyExchange(clusterID), Write: none, Read: "^" + q(user) + `\.`},
		},
	}, nil
}
