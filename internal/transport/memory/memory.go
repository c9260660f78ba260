// Package memory is an in-process implementation of package transport: a [Network] stands
// for the broker, and each process-like party (a client, a node, the dealer) connects to it
// with its own [Transport]. It keeps the semantics the roles rely on — a request to an
// address nobody serves fails at once with ErrNoRoute, requests carry the caller's deadline
// and are answered at most once, inbox messages stay until a handler accepts them, come back
// after an error and are set aside after a permanent one — so that the logic deciding what
// to send where (the client's node choice, hedging, batching, recovery) is tested without a
// broker. Faults are injected per address ([Network.SetFault]) and for the whole carrier
// ([Network.SetDown]).
//
// It is for tests: nothing is persisted, and messages are not copied across a process
// boundary (bodies are copied, so a sender that reuses its buffer does not change what was
// sent).
package memory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tchsm/tchsm/internal/transport"
)

// Fault changes how requests to one address behave.
type Fault struct {
	// Delay holds every request this long before its server sees it (a slow link or a
	// loaded node); the caller's deadline still applies.
	Delay time.Duration
	// Hang makes requests vanish: the caller waits until its deadline (a node that is stuck,
	// or a request lost with a queue). Takes precedence over Delay.
	Hang bool
	// Err, when set, is returned at once by Call (after Delay), as if the carrier refused.
	Err error
}

// Network is the in-memory carrier. The zero value is not usable; use NewNetwork.
type Network struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever servers, inboxes or up/down change
	down    bool
	upSince time.Time // when the network last came up
	servers map[transport.Address]*server
	inboxes map[transport.Address]*inbox
	faults  map[transport.Address]Fault
	calls   map[transport.Address]int
}

// NewNetwork returns an empty network that is up.
func NewNetwork() *Network {
	return &Network{changed: make(chan struct{}), upSince: time.Now(), servers: map[transport.Address]*server{},
		inboxes: map[transport.Address]*inbox{}, faults: map[transport.Address]Fault{}, calls: map[transport.Address]int{}}
}

// notify wakes everyone waiting for a change. Callers hold n.mu.
func (n *Network) notify() {
	close(n.changed)
	n.changed = make(chan struct{})
}

// SetFault sets the fault for requests to a; the zero Fault removes it.
func (n *Network) SetFault(a transport.Address, f Fault) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if f == (Fault{}) {
		delete(n.faults, a)
	} else {
		n.faults[a] = f
	}
}

// SetDown takes the whole carrier away (true) or brings it back (false), like a broker
// restart: calls and publishes wait for it up to their deadline, servers and consumers stop
// receiving, and requests in flight are lost.
func (n *Network) SetDown(down bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.down == down {
		return
	}
	n.down = down
	if !down {
		n.upSince = time.Now()
	}
	if down {
		for _, s := range n.servers {
			s.lose()
		}
	}
	n.notify()
}

// Calls returns how many requests to a were handed to its server.
func (n *Network) Calls(a transport.Address) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.calls[a]
}

// Inbox returns how many messages wait in a's inbox (not counting one being handled).
func (n *Network) Inbox(a transport.Address) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ib := n.inboxes[a]; ib != nil {
		return len(ib.ready)
	}
	return 0
}

// Dead returns copies of the messages set aside from a's inbox.
func (n *Network) Dead(a transport.Address) [][]byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out [][]byte
	if ib := n.inboxes[a]; ib != nil {
		for _, m := range ib.dead {
			out = append(out, clone(m))
		}
	}
	return out
}

// Connect returns a new party on the network. name is only for error texts.
func (n *Network) Connect(name string) *Transport {
	ctx, cancel := context.WithCancel(context.Background())
	return &Transport{net: n, name: name, ctx: ctx, cancel: cancel}
}

// waitUp waits until the network is up; callers hold n.mu, which is released while waiting
// and held again on return. It fails when ctx or the Transport ends first.
func (n *Network) waitUp(ctx context.Context, t *Transport) error {
	for n.down {
		if err := t.await(ctx, n.changed); err != nil {
			if errors.Is(err, transport.ErrClosed) {
				return err
			}
			return fmt.Errorf("%w: %w", transport.ErrUnavailable, err)
		}
	}
	return nil
}

// request is one Call on its way to a server.
type request struct {
	ctx      context.Context
	body     []byte
	deadline time.Time
	reply    chan callResult // buffered 1
}

type callResult struct {
	body []byte
	err  error
}

// server is the one Serve at an address.
type server struct {
	owner    *Transport
	h        transport.Handler
	requests chan *request
	lost     chan struct{} // closed when the network goes down: requests in flight are lost
	stopped  chan struct{} // closed when the Serve stops: requests not taken yet go nowhere
}

func (s *server) lose() {
	select {
	case <-s.lost:
	default:
		close(s.lost)
	}
}

// inbox is an address's durable queue.
type inbox struct {
	ready    [][]byte
	dead     [][]byte
	consumer *Transport // the one consuming, if any
}

// Transport is one party's connection to a Network. It implements transport.Transport.
type Transport struct {
	net    *Network
	name   string
	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ transport.Transport = (*Transport)(nil)

// retryMax caps the delay before a failed inbox message comes back: short, since the
// delay is the only cost of a failure here and tests retry many times.
const retryMax = 200 * time.Millisecond

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func (t *Transport) closed() bool { return t.ctx.Err() != nil }

// Call implements transport.Transport.
func (t *Transport) Call(ctx context.Context, to transport.Address, body []byte) ([]byte, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return nil, transport.ErrNoDeadline
	}
	if err := to.Validate(); err != nil {
		return nil, err
	}
	if t.closed() {
		return nil, transport.ErrClosed
	}
	n := t.net
	n.mu.Lock()
	if err := n.waitUp(ctx, t); err != nil {
		n.mu.Unlock()
		return nil, fmt.Errorf("memory: call %s: %w", to, err)
	}
	f := n.faults[to]
	n.mu.Unlock()
	if f.Hang {
		<-ctx.Done()
		return nil, fmt.Errorf("memory: call %s: %w", to, ctx.Err())
	}
	if f.Delay > 0 {
		tm := time.NewTimer(f.Delay)
		select {
		case <-tm.C:
		case <-ctx.Done():
			tm.Stop()
			return nil, fmt.Errorf("memory: call %s: %w", to, ctx.Err())
		}
	}
	if f.Err != nil {
		return nil, fmt.Errorf("memory: call %s: %w", to, f.Err)
	}
	n.mu.Lock()
	s := n.servers[to]
	if s == nil || n.down {
		n.mu.Unlock()
		return nil, fmt.Errorf("memory: call %s: %w", to, transport.ErrNoRoute)
	}
	n.calls[to]++
	lost, stopped := s.lost, s.stopped
	n.mu.Unlock()
	r := &request{ctx: ctx, body: clone(body), deadline: deadline, reply: make(chan callResult, 1)}
	select {
	case s.requests <- r:
	case <-ctx.Done():
		return nil, fmt.Errorf("memory: call %s: %w", to, ctx.Err())
	case <-lost:
		return nil, fmt.Errorf("memory: call %s: %w: connection lost", to, transport.ErrUnavailable)
	case <-stopped:
		return nil, fmt.Errorf("memory: call %s: %w", to, transport.ErrNoRoute)
	}
	select {
	case res := <-r.reply:
		if res.err != nil {
			return nil, fmt.Errorf("memory: call %s: %w", to, res.err)
		}
		return res.body, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("memory: call %s: %w", to, ctx.Err())
	case <-lost:
		return nil, fmt.Errorf("memory: call %s: %w: connection lost while waiting for the reply", to, transport.ErrUnavailable)
	case <-t.ctx.Done():
		return nil, fmt.Errorf("memory: call %s: %w", to, transport.ErrClosed)
	}
}

// Publish implements transport.Transport: the message waits in to's inbox until a consumer
// accepts it, whatever happens to the parties meanwhile.
func (t *Transport) Publish(ctx context.Context, to transport.Address, body []byte) error {
	if err := to.Validate(); err != nil {
		return err
	}
	if to.Role != transport.RoleNode {
		return fmt.Errorf("%w: %s has no inbox", transport.ErrConfig, to)
	}
	if t.closed() {
		return transport.ErrClosed
	}
	n := t.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.waitUp(ctx, t); err != nil {
		return fmt.Errorf("memory: publish to %s: %w", to, err)
	}
	ib := n.inboxOf(to)
	ib.ready = append(ib.ready, clone(body))
	n.notify()
	return nil
}

// inboxOf returns a's inbox, creating it. Callers hold n.mu.
func (n *Network) inboxOf(a transport.Address) *inbox {
	ib := n.inboxes[a]
	if ib == nil {
		ib = &inbox{}
		n.inboxes[a] = ib
	}
	return ib
}

// Serve implements transport.Transport. A second Serve at the same address waits until the
// first one stops, as a second consumer of an exclusive queue would.
func (t *Transport) Serve(ctx context.Context, at transport.Address, workers int, h transport.Handler) error {
	if workers < 1 || workers > 10000 || h == nil {
		return fmt.Errorf("%w: Serve needs a handler and 1..10000 workers", transport.ErrConfig)
	}
	if err := at.Validate(); err != nil {
		return err
	}
	t.wg.Add(1)
	defer t.wg.Done()
	n := t.net
	for {
		n.mu.Lock()
		for n.servers[at] != nil || n.down {
			if err := t.await(ctx, n.changed); err != nil {
				n.mu.Unlock()
				return stopped(err)
			}
		}
		s := &server{owner: t, h: h, requests: make(chan *request), lost: make(chan struct{}), stopped: make(chan struct{})}
		n.servers[at] = s
		n.notify()
		n.mu.Unlock()

		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				t.work(ctx, s)
			}()
		}
		wg.Wait()
		close(s.stopped)

		n.mu.Lock()
		if n.servers[at] == s {
			delete(n.servers, at)
			n.notify()
		}
		n.mu.Unlock()
		switch {
		case ctx.Err() != nil:
			return nil
		case t.closed():
			return transport.ErrClosed
		}
		// The network went down: subscribe again once it is back, as the AMQP consumers do.
	}
}

// work answers requests for s until ctx ends, the Transport closes or the network goes down.
func (t *Transport) work(ctx context.Context, s *server) {
	for {
		select {
		case r := <-s.requests:
			if !r.deadline.After(time.Now()) {
				continue // expired while it waited: nobody waits for the answer
			}
			hctx, cancel := context.WithDeadline(ctx, r.deadline)
			reply, err := transport.SafeHandle(hctx, s.h, transport.Delivery{Body: r.body, Deadline: r.deadline})
			cancel()
			if err != nil {
				r.reply <- callResult{err: &transport.RemoteError{Msg: transport.RemoteErrorText(err)}}
			} else {
				r.reply <- callResult{body: clone(reply)}
			}
		case <-ctx.Done():
			return
		case <-t.ctx.Done():
			return
		case <-s.lost:
			return
		}
	}
}

// Consume implements transport.Transport. One consumer per inbox at a time; a second one
// waits until the first stops. A message is removed when h returns nil, set aside (see
// Network.Dead) when h's error wraps ErrPermanent, and otherwise handed out again after a
// delay that doubles from 10 ms to 1 s over consecutive failures.
func (t *Transport) Consume(ctx context.Context, at transport.Address, h transport.ConsumeHandler) error {
	if h == nil {
		return fmt.Errorf("%w: Consume needs a handler", transport.ErrConfig)
	}
	if err := at.Validate(); err != nil {
		return err
	}
	if at.Role != transport.RoleNode {
		return fmt.Errorf("%w: %s has no inbox", transport.ErrConfig, at)
	}
	t.wg.Add(1)
	defer t.wg.Done()
	n := t.net
	n.mu.Lock()
	defer n.mu.Unlock()
	ib := n.inboxOf(at)
	defer func() {
		if ib.consumer == t {
			ib.consumer = nil
			n.notify()
		}
	}()
	var backoff time.Duration
	for {
		// Claim the inbox when it is free and the network up (WaitConsuming returns from then
		// on), give it up while the network is down, and wait for a message.
		for {
			if !n.down && ib.consumer == nil {
				ib.consumer = t
				n.notify()
			}
			if n.down && ib.consumer == t {
				ib.consumer = nil
				n.notify()
			}
			if ib.consumer == t && len(ib.ready) > 0 {
				break
			}
			if err := t.await(ctx, n.changed); err != nil {
				return stopped(err)
			}
		}
		msg := ib.ready[0]
		ib.ready = ib.ready[1:]
		n.mu.Unlock()
		err := transport.SafeConsume(ctx, h, clone(msg))
		n.mu.Lock()
		switch {
		case err == nil:
			backoff = 0
		case errors.Is(err, transport.ErrPermanent):
			ib.dead = append(ib.dead, msg)
			backoff = 0
		default:
			ib.ready = append([][]byte{msg}, ib.ready...)
			backoff = min(max(2*backoff, 10*time.Millisecond), retryMax)
			wake := make(chan struct{})
			tm := time.AfterFunc(backoff, func() { close(wake) })
			err := t.await(ctx, wake)
			tm.Stop()
			if err != nil {
				return stopped(err)
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if t.closed() {
			return transport.ErrClosed
		}
	}
}

// waitFor waits until cond (called with n.mu held) holds, or ctx ends.
func (t *Transport) waitFor(ctx context.Context, cond func() bool) error {
	n := t.net
	n.mu.Lock()
	defer n.mu.Unlock()
	for !cond() {
		if err := t.await(ctx, n.changed); err != nil {
			return err
		}
	}
	return nil
}

// await releases n.mu while it waits for ch, ctx's end or the Transport's close, and holds it
// again on return: nil when ch fired, ctx's error, or ErrClosed.
func (t *Transport) await(ctx context.Context, ch <-chan struct{}) error {
	t.net.mu.Unlock()
	defer t.net.mu.Lock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.ctx.Done():
		return transport.ErrClosed
	}
}

// stopped is what Serve and Consume return when await ended them: nil when their ctx ended,
// ErrClosed when the Transport was closed.
func stopped(err error) error {
	if errors.Is(err, transport.ErrClosed) {
		return err
	}
	return nil
}

// WaitServing implements transport.Transport.
func (t *Transport) WaitServing(ctx context.Context, at transport.Address) error {
	return t.waitFor(ctx, func() bool { s := t.net.servers[at]; return s != nil && s.owner == t && !t.net.down })
}

// WaitConsuming implements transport.Transport.
func (t *Transport) WaitConsuming(ctx context.Context, at transport.Address) error {
	return t.waitFor(ctx, func() bool { ib := t.net.inboxes[at]; return ib != nil && ib.consumer == t && !t.net.down })
}

// WaitConnected implements transport.Transport.
func (t *Transport) WaitConnected(ctx context.Context) error {
	return t.waitFor(ctx, func() bool { return !t.net.down })
}

// Connected implements transport.Transport.
func (t *Transport) Connected() bool {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	return !t.net.down && !t.closed()
}

// ConnectedSince implements transport.Transport: when the network last came up (every party
// is connected while it is up); zero while it is down or t is closed.
func (t *Transport) ConnectedSince() time.Time {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	if t.net.down || t.closed() {
		return time.Time{}
	}
	return t.net.upSince
}

// Close implements transport.Transport: Serve and Consume return ErrClosed, calls in flight
// fail, and Close waits for them.
func (t *Transport) Close() error {
	t.cancel()
	t.net.mu.Lock()
	t.net.notify()
	t.net.mu.Unlock()
	t.wg.Wait()
	return nil
}
