package rabbitmq

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tchsm/tchsm/internal/transport"
)

// Transport is a [transport.Transport] over one [Conn]: it maps addresses onto the queues of
// the package doc (a node's rpc and control queues, the dealer's rpc queue).
type Transport struct {
	conn     *Conn
	declared sync.Map // node id -> struct{}: control queues declared through this Transport
}

var _ transport.Transport = (*Transport)(nil)

// Open dials the broker (see [Dial]) and returns a Transport over the connection.
func Open(ctx context.Context, cfg Config) (*Transport, error) {
	c, err := Dial(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return New(c), nil
}

// New returns a Transport over c. Closing the Transport closes c.
func New(c *Conn) *Transport { return &Transport{conn: c} }

// Conn returns the connection the Transport uses.
func (t *Transport) Conn() *Conn { return t.conn }

func (t *Transport) rpcQueue(a transport.Address) (string, error) {
	if err := a.Validate(); err != nil {
		return "", err
	}
	if a.Role == transport.RoleDealer {
		return t.conn.DealerRPCQueue(), nil
	}
	return t.conn.NodeRPCQueue(a.ID), nil
}

// inbox declares a's control queue (once per Transport; the Conn redeclares it after every
// reconnection) and returns its name. Only nodes have an inbox.
func (t *Transport) inbox(ctx context.Context, a transport.Address) (string, error) {
	if err := a.Validate(); err != nil {
		return "", err
	}
	if a.Role != transport.RoleNode {
		return "", fmt.Errorf("%w: %s has no inbox", transport.ErrConfig, a)
	}
	if _, ok := t.declared.Load(a.ID); !ok {
		if _, err := t.conn.DeclareNode(ctx, a.ID); err != nil {
			return "", err
		}
		t.declared.Store(a.ID, struct{}{})
	}
	return t.conn.NodeControlQueue(a.ID), nil
}

// Call implements [transport.Transport].
func (t *Transport) Call(ctx context.Context, to transport.Address, body []byte) ([]byte, error) {
	q, err := t.rpcQueue(to)
	if err != nil {
		return nil, err
	}
	return t.conn.Call(ctx, q, body)
}

// Publish implements [transport.Transport]: a persistent message on to's control queue,
// confirmed by the broker.
func (t *Transport) Publish(ctx context.Context, to transport.Address, body []byte) error {
	q, err := t.inbox(ctx, to)
	if err != nil {
		return err
	}
	return t.conn.PublishDurable(ctx, q, body)
}

// Serve implements [transport.Transport].
func (t *Transport) Serve(ctx context.Context, at transport.Address, workers int, h transport.Handler) error {
	q, err := t.rpcQueue(at)
	if err != nil {
		return err
	}
	return t.conn.Serve(ctx, q, workers, h)
}

// Consume implements [transport.Transport].
func (t *Transport) Consume(ctx context.Context, at transport.Address, h transport.ConsumeHandler) error {
	q, err := t.inbox(ctx, at)
	if err != nil {
		return err
	}
	return t.conn.Consume(ctx, q, h)
}

// WaitServing implements [transport.Transport].
func (t *Transport) WaitServing(ctx context.Context, at transport.Address) error {
	q, err := t.rpcQueue(at)
	if err != nil {
		return err
	}
	return t.conn.WaitConsuming(ctx, q)
}

// WaitConsuming implements [transport.Transport].
func (t *Transport) WaitConsuming(ctx context.Context, at transport.Address) error {
	if err := at.Validate(); err != nil {
		return err
	}
	return t.conn.WaitConsuming(ctx, t.conn.NodeControlQueue(at.ID))
}

// WaitConnected implements [transport.Transport].
func (t *Transport) WaitConnected(ctx context.Context) error { return t.conn.WaitConnected(ctx) }

// Connected implements [transport.Transport].
func (t *Transport) Connected() bool { return t.conn.Connected() }

// ConnectedSince implements [transport.Transport].
func (t *Transport) ConnectedSince() time.Time { return t.conn.ConnectedSince() }

// Close implements [transport.Transport].
func (t *Transport) Close() error { return t.conn.Close() }
