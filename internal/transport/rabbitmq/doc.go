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
// reply can no longer arrive (the direct reply-to consumer died with the
// connection) and the transport does not know whether re-sending is safe.
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
//   - tchsm.<c>.node.<id>.control: durable classic queue for key share
//     deliveries and deletions. Messages are persistent and published with
//     publisher confirms. A consumer acknowledges only after its handler
//     returned nil (the share is stored durably). A handler error that wraps
//     [transport.ErrPermanent] (a malformed message) rejects the message, which the
//     broker dead-letters into tchsm.<c>.node.<id>.control.dead (durable, kept
//     for the operator); any other error requeues it after a delay that grows
//     from 100 ms to 5 s over consecutive failures, so a failing store is not
//     a hot loop.
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
// The dealer must declare a node's queues ([Conn.DeclareNode]) before
// publishing shares to it: durable publishes are mandatory, and a message to
// a queue that does not exist fails with [transport.ErrNoRoute] instead of vanishing.
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
// [Conn.Call] uses RabbitMQ direct reply-to: each connection has one channel
// that consumes the amq.rabbitmq.reply-to pseudo-queue (auto-ack) and
// publishes the requests, with a random CorrelationId per call and a demux
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
