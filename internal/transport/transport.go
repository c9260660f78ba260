// Package transport is the boundary between tchsm's roles (client, node, dealer) and whatever
// carries their messages. It defines what a role needs, [Transport], and knows nothing about
// tchsm messages: bytes in, bytes out. Authentication, encryption and replay protection of the
// payloads belong to internal/trust, and the roles' request/reply conventions to internal/rpc.
//
// Two implementations exist: [github.com/tchsm/tchsm/internal/transport/rabbitmq] (AMQP 0-9-1,
// the one processes use) and [github.com/tchsm/tchsm/internal/transport/memory] (one process,
// no broker: the client's node choice, hedging, batching and recovery are tested over it, with
// faults injected per address).
//
// # Addresses
//
// A role is reached at an [Address]: a node by its manifest id, the dealer by [Dealer]. Each
// address has two doors:
//
//   - requests ([Transport.Call], answered by the one [Transport.Serve] at that address):
//     transient, bounded by the caller's deadline, at most once. A request to an address
//     nobody serves fails at once with [ErrNoRoute] rather than waiting for a server that is
//     away.
//   - an inbox ([Transport.Publish], read by [Transport.Consume]): durable messages (key shares,
//     deletions) that wait for their reader, survive its absence and a restart of the carrier,
//     and are removed only once the reader's handler accepted them. A handler error that wraps
//     [ErrPermanent] sets the message aside for the operator (dead letters); any other error
//     makes it come back later, possibly behind messages published after it. Messages may
//     arrive more than once; readers deduplicate.
//
// The same addresses serve the multi-round protocols that come after RSA (a DKG among the
// nodes, FROST, CGGMP): a node reaches another node's request door exactly as a client does.
// Who may send what to whom is not the transport's business: internal/trust decides.
package transport

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Transport carries one process's messages. Implementations are safe for concurrent use.
// While the carrier is away (a broker restart), Call and Publish wait for it up to their ctx
// deadline; Serve and Consume go on by themselves once it is back.
type Transport interface {
	// Call sends a request to the server at to and returns its reply. ctx must have a
	// deadline ([ErrNoDeadline]); the server's handler gets that deadline too. A handler
	// error comes back as a [*RemoteError].
	Call(ctx context.Context, to Address, body []byte) ([]byte, error)
	// Publish puts body durably into to's inbox and returns once the carrier holds it.
	Publish(ctx context.Context, to Address, body []byte) error
	// Serve answers the requests sent to at with workers concurrent handlers until ctx ends
	// (it then returns nil) or the Transport is closed ([ErrClosed]). One server per address.
	Serve(ctx context.Context, at Address, workers int, h Handler) error
	// Consume hands at's inbox messages to h, one at a time, until ctx ends (nil) or the
	// Transport is closed ([ErrClosed]).
	Consume(ctx context.Context, at Address, h ConsumeHandler) error
	// WaitServing returns once a Serve at at (by this Transport) receives requests.
	WaitServing(ctx context.Context, at Address) error
	// WaitConsuming returns once a Consume at at (by this Transport) receives messages.
	WaitConsuming(ctx context.Context, at Address) error
	// WaitConnected returns once the carrier is reachable, or ctx's error.
	WaitConnected(ctx context.Context) error
	// Connected reports whether the carrier is reachable now.
	Connected() bool
	// ConnectedSince returns when the current connection to the carrier was made, or the
	// zero time while there is none. The same non-zero time at two moments means that the
	// connection stayed up in between (the client's liveness rule counts a node's silence
	// only then: a broker failover is not a node failure).
	ConnectedSince() time.Time
	// Close stops everything the Transport started and waits for it.
	Close() error
}

// Delivery is a request received by Serve.
type Delivery struct {
	Body        []byte
	Deadline    time.Time // also the handler ctx's deadline
	Redelivered bool
}

// Handler answers a request. A nil error sends reply; an error is sent back as a RemoteError
// (keep secrets out of it). Nothing is sent once the request's deadline has passed.
type Handler func(ctx context.Context, d Delivery) (reply []byte, err error)

// ConsumeHandler processes one inbox message. nil removes it; an error wrapping [ErrPermanent]
// sets it aside (dead letters); any other error makes it come back after a delay.
type ConsumeHandler func(ctx context.Context, body []byte) error

// Role is the kind of party an Address names.
type Role string

// Roles that can be addressed.
const (
	RoleNode   Role = "node"
	RoleDealer Role = "dealer"
)

// Address names a party on the transport.
type Address struct {
	Role Role
	ID   string // the node's manifest id; empty for the dealer
}

// Node is the address of the node with manifest id id.
func Node(id string) Address { return Address{Role: RoleNode, ID: id} }

// Dealer is the dealer's address (a cluster has one dealer service).
var Dealer = Address{Role: RoleDealer}

func (a Address) String() string {
	if a.ID == "" {
		return string(a.Role)
	}
	return string(a.Role) + "." + a.ID
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// ValidID reports whether s can be a node id or cluster id on every transport: 1 to 64
// letters, digits, '-' or '_', starting with a letter or digit.
func ValidID(s string) bool { return idPattern.MatchString(s) }

// Validate reports whether a names a party: a node with a valid id, or the dealer.
func (a Address) Validate() error {
	switch {
	case a.Role == RoleNode && ValidID(a.ID), a.Role == RoleDealer && a.ID == "":
		return nil
	}
	return fmt.Errorf("%w: address %q: a node needs an id of 1-64 letters, digits, '-' or '_'; the dealer none", ErrConfig, a.String())
}

// Sentinel errors. Errors returned by a Transport wrap one of them (and, where a context
// ended, the context error too).
var (
	// ErrUnavailable: the carrier is unreachable, or was lost during the operation.
	ErrUnavailable = errors.New("transport: broker unavailable")
	// ErrAccess: the carrier refused the credentials or the vhost.
	ErrAccess = errors.New("transport: broker refused access")
	// ErrClosed: the Transport was closed.
	ErrClosed = errors.New("transport: connection closed")
	// ErrNoRoute: nobody serves the destination (the server is away).
	ErrNoRoute = errors.New("transport: no such queue")
	// ErrNoDeadline: Call needs a context with a deadline.
	ErrNoDeadline = errors.New("transport: context has no deadline")
	// ErrConfig: the configuration or an argument is invalid.
	ErrConfig = errors.New("transport: invalid configuration")
	// ErrRemote: the server's handler returned an error (see RemoteError).
	ErrRemote = errors.New("transport: remote handler error")
	// ErrPermanent: returned (wrapped) by a ConsumeHandler for a message that can never be
	// processed; the message is set aside instead of coming back.
	ErrPermanent = errors.New("transport: permanent failure")
)

// RemoteError is the error a Serve handler returned, as seen by the caller.
type RemoteError struct {
	Msg string
}

func (e *RemoteError) Error() string { return "transport: remote handler error: " + e.Msg }

// Unwrap makes errors.Is(err, ErrRemote) true.
func (e *RemoteError) Unwrap() error { return ErrRemote }

// MaxRemoteError bounds the length of a handler error sent back to the caller: an
// implementation truncates longer texts.
const MaxRemoteError = 512

// RemoteErrorText is err's text as sent back to a caller: at most MaxRemoteError bytes.
func RemoteErrorText(err error) string {
	s := err.Error()
	if len(s) > MaxRemoteError {
		s = s[:MaxRemoteError]
	}
	return s
}

// SafeHandle runs h and turns a panic into an error: bad input must not crash a server.
func SafeHandle(ctx context.Context, h Handler, d Delivery) (reply []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			reply, err = nil, fmt.Errorf("transport: handler panic: %v", r)
		}
	}()
	return h(ctx, d)
}

// SafeConsume runs h and turns a panic into an error (the message then comes back later).
func SafeConsume(ctx context.Context, h ConsumeHandler, body []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("transport: handler panic: %v", r)
		}
	}()
	return h(ctx, body)
}
