// Package rabbitmq is the AMQP 0-9-1 (RabbitMQ) implementation of package
// transport, using github.com/rabbitmq/amqp091-go. [Conn] works with queue
// names; [Transport] maps tchsm addresses onto them (see Topology) and is what
// the roles use. It knows nothing about tchsm messages: bytes in, bytes out.
//
// # Connection
//
// [Dial] opens one AMQP connection and keeps it: when the broker closes it or
// the TCP connection dies (heartbeats, 10 s), a background goroutine redials
// with exponential backoff and jitter (100 ms doubling up to 5 s, each wait
// drawn from [d/2, d]),
// redeclares every queue declared through this Conn, and the consumers started
// by [Conn.Serve] and [Conn.Consume] resubscribe by themselves. [Conn.Close]
// stops all of it and waits for every goroutine the Conn started.
//
// A Conn may be given several brokers (Config.URL and Config.URLs: the nodes of one
// RabbitMQ cluster). It is connected to one at a time. It first tries the one Config.Spread
// picks (a node passes its manifest index, so nodes 1, 2, 3 start on brokers 1, 2, 3 and a
// broker node that stops takes only its share of the nodes with it; others hash their
// name), then the others in list order. A redial after a lost connection goes round the
// list from that same first broker, the one just lost last, and backs off only between
// rounds: a stopped broker node costs one refused dial, not a backoff. A process that failed
// over stays where it is until it loses that connection too.
//
// Dial itself retries with the same backoff until its ctx ends, except for
// errors a retry cannot fix: [transport.ErrConfig] (bad URL) and [transport.ErrAccess] (refused
// credentials, unknown vhost: users and vhosts are the same on every node of a cluster).
//
// While disconnected, [Conn.Call] and [Conn.PublishDurable] wait for the next
// connection up to their ctx deadline rather than failing at once: a broker
// blip is normally shorter than a signing deadline, and failing fast would
// turn it into a failed signature. When the ctx ends first the error wraps
// both [transport.ErrUnavailable] and the ctx error. A Call whose request was already
// sent when the connection dropped fails at once with [transport.ErrUnavailable]: its
// reply can no longer arrive (the reply queue died with the connection) and the transport does not know whether re-sending is safe.
//
// When the broker blocks publishers (memory or disk alarm), Call and
// PublishDurable fail with [transport.ErrUnavailable] instead of hanging in a socket
// write that no ctx can interrupt; PublishDurable keeps retrying until its
// ctx ends.
//
// URLs carry the broker credentials. They can come from the configuration or
// from the TCHSM_AMQP_URL environment variable, which may hold a comma-separated list
// ([FromConfig], [config.SplitURLs]); the password is never logged nor put into an error
// (see [RedactURL]).
//
// # Topology
//
// Every name is prefixed by "tchsm.<clusterID>.". Declarations are idempotent:
// whoever starts first declares, and because every process declares through
// this package with the same arguments, later declarations are identical
// (a mismatch is reported as [ErrTopology]).
//
//   - tchsm.<c>.node.<id>.inbox: the node's control queue (key share deliveries and
//     deletions), a durable quorum queue: replicated on every node of the broker cluster, it
//     takes and hands out messages while a majority of them runs, so a broker node that
//     stops or crashes loses no share, and a key dealt while one is down reaches every
//     signing node. Messages are persistent and published with publisher confirms (a quorum
//     queue confirms once a majority wrote the message). A consumer acknowledges only after
//     its handler returned nil (the share is stored durably). A handler error that wraps
//     [transport.ErrPermanent] (a malformed message) rejects the message, which the broker
//     dead-letters into tchsm.<c>.node.<id>.inbox.dead (a durable quorum queue, kept for the
//     operator).
//   - Any other handler error (a store that cannot write) is retried after a delay that
//     grows from 100 ms to 5 s over consecutive failures, so a failing store is not a hot
//     loop. The message is not handed back to the broker (basic.nack/reject with requeue):
//     a quorum queue counts such returns and, at its x-delivery-limit, dead-letters the
//     message (RabbitMQ 4.0 and later apply a limit of 20 when the queue sets none), so a
//     node whose disk fails for a minute would lose its share to the dead-letter queue.
//     Instead the consumer publishes a copy at the tail of the queue (same message id and
//     headers, confirmed) and then acknowledges the original; the copy starts with a
//     delivery count of 0. Order within the queue is not kept, and need not be: a node keeps
//     a tombstone for every deleted key, so a share that comes after its key's deletion is
//     ignored. A crash between the copy and the acknowledgement leaves two copies; receivers
//     deduplicate.
//   - The delivery limit is explicit, [DeliveryLimit] (50). What still counts towards it is
//     a message returned because its consumer went away while holding it (a node crashed
//     or was killed, its connection or broker node was lost) on RabbitMQ before 4.3, and on
//     4.3 and later only an explicit basic.reject with requeue (which this package never
//     sends). After the limit the broker dead-letters the message into .inbox.dead with
//     x-death reason delivery_limit, at least once (x-dead-letter-strategy at-least-once,
//     which RabbitMQ applies only with x-overflow reject-publish): the broker keeps the
//     message in the control queue until the dead-letter queue confirmed it, so it is
//     never dropped, whatever broker node fails meanwhile. Nothing reads the dead-letter
//     queue by itself, on purpose: a message that took its consumer down 50 times would
//     do it again. The node's share is then missing (its status lists one key less), and
//     the operator moves the dead letters back with `tchsm queues requeue-dead` once the
//     node is healthy ([Conn.RequeueDead]); malformed messages come back to .inbox.dead.
//   - tchsm.<c>.node.<id>.rpc and tchsm.<c>.dealer.rpc: request queues owned
//     by their server. [Conn.Serve] declares its queue exclusive and
//     auto-delete on the channel it then consumes from, and again at every
//     resubscription; nobody else declares it. The queue therefore exists
//     exactly while its server consumes it: the broker deletes it when the
//     server's connection drops or its consumer stops, and a request to a
//     server that is away (stopped, crashed, not yet resubscribed after a
//     broker restart) has no queue to wait in and fails at once with
//     [transport.ErrNoRoute]. Requests are transient and carry a per-message TTL
//     (Expiration = milliseconds left until the caller's deadline), so a
//     server that is busy never works through a backlog of stale requests.
//     A second process serving the same queue (a node started twice) is
//     refused by the broker (RESOURCE_LOCKED) and retries until the queue is
//     free.
//
// A server answers a request whose reply_to is a reply key through the reply exchange, and
// one whose reply_to is a direct reply-to address (a caller of the previous release) through
// the default exchange on a channel of its own, which a restricted user's broker closes: such
// requests are then dropped. Any other reply_to is dropped unanswered.
//
// Message size: amqp091-go reads a whole message into memory before delivering it. The Conn
// reads the broker's bytes through a frame filter that turns a message larger than
// Config.MaxMessageSize (default [DefaultMaxMessageSize]) into an empty one without reading its
// body into memory; the broker's max_message_size should refuse it first.
//
// Why the rpc queues work the same from RabbitMQ 3.10 through 4.x, on one broker or a
// cluster: an exclusive queue is a classic queue on the broker node its owner is connected
// to, and it is not replicated, because it need not be: it dies with its owner's connection
// anyway. Clients connected to other broker nodes reach it through the cluster (queue
// location is cluster-wide metadata), and the replies come back to the caller's reply queue,
// an exclusive queue of the same kind on the caller's broker node. When that broker node stops, the server's connection
// drops with it, the server fails over to another broker node (see Connection) and declares
// the queue there; in between, requests fail at once with ErrNoRoute and the client asks
// another signing node. Nothing here uses what 4.x removed or refuses: no classic mirrored
// queues (gone in 4.0), no transient non-exclusive queues (refused by default in 4.3, the
// deprecated feature transient_nonexcl_queues), no global QoS; exclusive, auto-delete,
// server-named queues and topic exchanges are supported in every version.
//
// # Exchanges and broker users
//
// Nothing is published to a queue by name. Requests go to the topic exchange tchsm.<c>.rpc with
// routing key node.<id> or dealer (the key the server's rpc queue is bound with), inbox
// messages to tchsm.<c>.inbox with node.<id>, replies to tchsm.<c>.reply with the caller's reply
// key (<broker user>.<its reply queue>), so that RabbitMQ's per-exchange write permission and
// per-key topic permissions can give each role only what it needs ([NodePermission],
// [DealerPermission], [ClientPermission], [Definitions]; docs/broker-permissions.md). Only
// dead-lettering (by the broker) and the moves out of the legacy classic queues use the
// default exchange. A restricted user may not create the exchanges nor the control queues
// (declaring a queue with a dead-letter exchange needs read on it and write on that exchange):
// it checks them passively, and the operator creates them (tchsm broker setup); a process of
// a shared account declares everything itself, as before.
//
// Who declares what:
//
//   - a node declares its own inbox and .inbox.dead (in [Conn.Consume], through
//     [Transport]) and its own rpc queue ([Conn.Serve]);
//   - the dealer declares every node's inbox and .inbox.dead before it publishes a share
//     or a deletion to it ([Transport.Publish] calls [Conn.DeclareNode]), so the queue exists
//     and holds the share even if the node never ran, and its own rpc queue;
//   - every connection declares its reply queue (server-named, exclusive, auto-delete) and
//     binds it to the reply exchange; a client declares nothing else.
//
// The declarations are idempotent and identical, so the first one creates the queue.
//
// Migration from the previous version: the control queues used to be classic queues called
// tchsm.<c>.node.<id>.control and .control.dead. A queue cannot change type (a declaration
// with other arguments fails with PRECONDITION_FAILED), so the quorum queues have new names,
// and the first [Conn.DeclareNode] of a node's queues in a process (node or dealer) moves
// every message from the old queues into the new ones, one at a time with a confirm before
// the acknowledgement (a crash leaves a duplicate, not a loss), then deletes the old queues
// if they are empty and have no consumer. A node of the previous version still running
// keeps its old queue alive and its new shares wait in the new one: upgrade every node.
//
// # Durable publishing
//
// [Conn.PublishDurable] publishes a persistent message with a fresh message
// id and waits for the broker's confirm (for a durable queue the broker
// confirms once the message is on disk). On a nack or a connection loss it
// publishes again until ctx ends, so a message may be delivered more than
// once: receivers must deduplicate at a higher layer (tchsm messages carry
// their own ids). Durable publishes are serialised on one confirm channel;
// they are rare (key deliveries), so simplicity wins over throughput.
//
// # RPC
//
// [Conn.Call] uses a reply queue per connection (not direct reply-to, whose replies need
// write permission on the default exchange, which reaches every queue): each connection has
// one channel that consumes its reply queue (auto-ack) and publishes the requests, with the
// reply key as reply_to, with a random CorrelationId per call and a demux
// map from correlation id to the waiting caller. Requests are published with
// the mandatory flag: a request to a queue that does not exist comes back
// (basic.return) and Call fails at once with [transport.ErrNoRoute]. A request that
// waits behind others in the queue of a busy server expires with its TTL and
// Call ends at its ctx deadline. A reply that arrives after its caller gave up is dropped.
//
// Calls need a ctx deadline ([transport.ErrNoDeadline] otherwise). The absolute
// deadline travels in the x-tchsm-deadline header (Unix milliseconds); the
// server's handler ctx gets the earlier of that deadline and arrival time +
// Expiration, so clocks must be roughly synchronised (NTP), and a node never
// answers after the deadline.
//
// [Conn.Serve] runs workers on an rpc queue with at-most-once semantics: a
// request is acknowledged when a worker takes it, before the handler runs.
// A node that crashes mid-request loses it and the caller times out or asks
// another node; redelivering it instead could make a request that crashes a
// node crash every node in turn. Prefetch (default 2 × workers) bounds how
// many requests wait in the node's memory; the rest wait in the broker, where
// their TTL applies. A handler error is sent back and Call returns it as a
// [*transport.RemoteError] wrapping [transport.ErrRemote].
package rabbitmq
