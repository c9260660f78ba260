package client

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tchsm/tchsm/internal/protocol"
	"github.com/tchsm/tchsm/internal/rpc"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
)

// batcher sends one node's sign requests. At most window messages to the node wait for their
// answers at a time; requests that arrive meanwhile queue here and leave together, up to max per
// message, as one SignBatch. A lone request leaves at once as a plain SignRequest, so a client
// signing one thing at a time is not slowed down, and under load the broker, the node and this
// client handle one message, one envelope and one acknowledgement for several shares.
//
// A message whose answer is overdue (see Client.overdueAfter) stops holding the window: the
// requests queued behind it leave without waiting for it, and the client asks other nodes
// first while the node has an overdue message. At most window overdue messages wait at once,
// so a node that stopped answering holds at most 2 × window messages of a client.
type batcher struct {
	c      *Client
	node   trust.Member
	max    int
	window int
	// deliver sends one message for asks and answers each of them (on its done channel); it
	// reports whether the node answered the message (its round trip then counts, see observe).
	deliver func(asks []*shareAsk) bool
	// overdueAfter is how long a message may wait for its answer before it is overdue.
	overdueAfter func() time.Duration
	// batches reports whether the node advertised SignBatch (negotiate.go); nil: it did.
	batches func() bool
	// batchesKnown is batches without asking the node (no probe): the adaptive window narrows
	// only for a node known to take batches, so that a healthy node is never asked for its
	// features because of it; nil: it does.
	batchesKnown func() bool

	// adaptive: the window narrows to one message while the node is saturated (see
	// windowNow); false when the configuration fixes the window.
	adaptive bool

	mu      sync.Mutex
	queue   []*shareAsk
	senders int // goroutines sending; each has at most one message in flight that is not overdue
	overdue atomic.Int32
	// The node's round-trip floor and the last round trip (see observe); under mu.
	floor, last time.Duration
	floorAt     time.Time
}

// Saturation: a message's round trip well above the node's floor means that the node (or the
// machine it shares with others) is already busy with every request it has: a second message
// in flight would only wait behind the first one, at the cost of a message, an envelope and an
// acknowledgement per share in the client, the broker and the node. While the node looks
// saturated its window is one message, so the requests that arrive meanwhile leave together,
// in one SignBatch, when the answer comes; an idle node keeps the full window, so a client
// signing a few things at a time on dedicated nodes is not slowed down.
const (
	saturatedFactor = 3                // round trip > saturatedFactor × floor: saturated
	floorHalfLife   = 10 * time.Second // the floor forgets: it doubles every floorHalfLife
)

// observe records a message's round trip with items requests in it. The floor is the fastest
// round trip of a lone request, drifting up (doubling every floorHalfLife) so that a node whose
// floor rose (a slower host, a farther broker) is not seen as saturated for ever, and so that
// a saturated node gets a full window again now and then to find out whether it still is.
func (b *batcher) observe(rtt time.Duration, items int, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last = rtt
	if b.floor > 0 {
		if el := now.Sub(b.floorAt); el > 0 {
			f := float64(b.floor) * math.Exp2(float64(el)/float64(floorHalfLife))
			b.floor = time.Duration(min(f, float64(time.Hour)))
		}
	}
	if items == 1 && (b.floor == 0 || rtt < b.floor) {
		b.floor = rtt
	}
	b.floorAt = now
}

// windowNow is the number of messages that may be waiting for their answers now (under mu):
// one while the node is saturated and known to take batches, else the configured window.
func (b *batcher) windowNow() int {
	if b.adaptive && b.floor > 0 && b.last > saturatedFactor*b.floor && (b.batchesKnown == nil || b.batchesKnown()) {
		return 1
	}
	return b.window
}

// shareAsk is one reply of a one-round signing session (a SignRequest) a signing waits for.
type shareAsk struct {
	ctx     context.Context
	keyID   string
	payload []byte           // the round's payload (scheme.Request.Payload)
	done    chan shareResult // buffered: the sender never blocks
	// message and mech, when message is set, travel with the payload (SignRequest fields 4
	// and 5) so that the node can check and hash the message itself.
	message []byte
	mech    scheme.Mechanism
}

// request is the SignRequest of a.
func (a *shareAsk) request() *tchsmpb.SignRequest {
	r := &tchsmpb.SignRequest{KeyId: a.keyID, Payload: a.payload}
	if len(a.message) > 0 {
		r.Message, r.Mechanism = a.message, uint32(a.mech)
	}
	return r
}

type shareResult struct {
	rep scheme.Reply
	err error
}

func newBatcher(c *Client, n trust.Member) *batcher {
	b := &batcher{c: c, node: n, max: c.cfg.BatchSize(), window: c.cfg.BatchWindowSize(), overdueAfter: c.overdueAfter,
		adaptive: c.cfg.BatchWindow == 0, batches: func() bool { return c.peerHas(n.ID, protocol.SignBatch) },
		batchesKnown: func() bool { return c.peerKnown(n.ID, protocol.SignBatch) }}
	b.deliver = b.send
	return b
}

// ask queues one request and waits for its reply, or for ctx's end.
func (b *batcher) ask(ctx context.Context, keyID string, payload []byte) (scheme.Reply, error) {
	return b.askMessage(ctx, keyID, payload, 0, nil)
}

// askMessage is ask for a request that also carries the message it signs under mech (nil:
// none, as ask).
func (b *batcher) askMessage(ctx context.Context, keyID string, payload []byte, mech scheme.Mechanism, message []byte) (scheme.Reply, error) {
	a := &shareAsk{ctx: ctx, keyID: keyID, payload: payload, done: make(chan shareResult, 1), message: message, mech: mech}
	b.mu.Lock()
	// A request that would wait for company (window messages in flight) waits only for a
	// node that advertised batches; a node that has not (an older release, or one not heard
	// from yet: peerHas asks it) is asked as releases before batching asked, one SignRequest
	// per share, at once. A request that leaves at once needs no feature: it goes alone.
	if b.senders >= b.windowNow() && b.max > 1 && b.batches != nil {
		b.mu.Unlock()
		if !b.batches() {
			return b.c.askShare(ctx, b.node, a.request())
		}
		b.mu.Lock()
	}
	b.queue = append(b.queue, a)
	if b.senders < b.windowNow() {
		b.senders++
		go b.run()
	}
	b.mu.Unlock()
	select {
	case r := <-a.done:
		return r.rep, r.err
	case <-ctx.Done():
		return scheme.Reply{}, fmt.Errorf("client: share from %s: %w", b.node.ID, ctx.Err())
	}
}

// next takes the next message's requests off the queue; none means the queue is empty, or the
// window narrowed below the senders running (the others carry on), and the calling sender has
// stopped.
func (b *batcher) next() []*shareAsk {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.senders > b.windowNow() {
		b.senders--
		return nil
	}
	var asks []*shareAsk
	for len(b.queue) > 0 && len(asks) < b.max {
		a := b.queue[0]
		b.queue[0] = nil
		b.queue = b.queue[1:]
		if a.ctx.Err() == nil { // nobody waits for the others any more
			asks = append(asks, a)
		}
	}
	if len(asks) == 0 {
		b.senders--
	}
	return asks
}

// run sends what is queued, one message at a time, until the queue is empty. When a message
// becomes overdue and fewer than window messages are overdue already, it goes on with the next
// message and leaves the overdue one to finish by itself.
func (b *batcher) run() {
	for {
		asks := b.next()
		if len(asks) == 0 {
			return
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			t0 := time.Now()
			if b.deliver(asks) {
				now := time.Now()
				b.observe(now.Sub(t0), len(asks), now)
			}
		}()
		t := time.NewTimer(b.overdueAfter())
		select {
		case <-done:
			t.Stop()
			continue
		case <-t.C:
		}
		if int(b.overdue.Add(1)) > b.window {
			b.overdue.Add(-1)
			<-done
			continue
		}
		go func() {
			<-done
			b.overdue.Add(-1)
		}()
	}
}

// send sends asks as one message: a plain SignRequest for one, a SignBatch for more. It
// reports whether the node answered with a share (or a batch answer).
func (b *batcher) send(asks []*shareAsk) bool {
	if len(asks) == 1 {
		a := asks[0]
		rep, err := b.c.askShare(a.ctx, b.node, a.request())
		a.done <- shareResult{rep, err}
		return err == nil
	}
	return b.sendBatch(asks)
}

// sendBatch sends asks as one SignBatch. The message lives until the latest of their deadlines,
// or until every one of them has given up. It reports whether the node answered.
func (b *batcher) sendBatch(asks []*shareAsk) bool {
	var dl time.Time
	req := &tchsmpb.SignBatch{Requests: make([]*tchsmpb.SignRequest, len(asks))}
	for i, a := range asks {
		if d, ok := a.ctx.Deadline(); ok && d.After(dl) {
			dl = d
		}
		req.Requests[i] = a.request()
	}
	if dl.IsZero() {
		dl = time.Now().Add(b.c.signTimeout())
	}
	ctx, cancel := context.WithDeadline(context.Background(), dl)
	defer cancel()
	var waiting atomic.Int32
	waiting.Store(int32(len(asks)))
	for _, a := range asks {
		stop := context.AfterFunc(a.ctx, func() {
			if waiting.Add(-1) == 0 {
				cancel()
			}
		})
		defer stop()
	}
	results, err := b.c.signBatch(ctx, b.node, req)
	if rpc.IsUnsupported(err) {
		// The node does not serve batches after all (rolled back to an older release behind
		// the same queue): each request goes again on its own; the node's features are
		// learnt again (notePeer).
		b.c.log.Info("node refused a batch as unknown; asking it one request at a time", "node", b.node.ID, "err", err)
		for _, a := range asks {
			go func() {
				rep, err := b.c.askShare(a.ctx, b.node, a.request())
				a.done <- shareResult{rep, err}
			}()
		}
		return false // no round trip of this message to learn from
	}
	for i, a := range asks {
		if err != nil {
			a.done <- shareResult{err: err}
			continue
		}
		rep, err := checkBatchItem(b.node, a, results[i])
		a.done <- shareResult{rep, err}
	}
	return err == nil
}

// signBatch sends a SignBatch to node n and returns its items, one per request.
func (c *Client) signBatch(ctx context.Context, n trust.Member, req *tchsmpb.SignBatch) ([]*tchsmpb.SignBatchItem, error) {
	op, err := c.call(ctx, n, transport.Node(n.ID), req)
	if err != nil {
		return nil, err
	}
	res, ok := op.Message.(*tchsmpb.SignBatchResult)
	if !ok || len(res.GetResults()) != len(req.Requests) {
		return nil, fmt.Errorf("%w: node %s sent a malformed batch answer", scheme.ErrBadShare, n.ID)
	}
	return res.GetResults(), nil
}

// checkBatchItem turns one item of a batch answer into a reply or an error, with askShare's
// checks.
func checkBatchItem(n trust.Member, a *shareAsk, item *tchsmpb.SignBatchItem) (scheme.Reply, error) {
	if e := item.GetError(); e != nil {
		if e.GetKeyId() != "" && e.GetKeyId() != a.keyID {
			return scheme.Reply{}, fmt.Errorf("%w: node %s answered about another key", scheme.ErrBadShare, n.ID)
		}
		return scheme.Reply{}, &rpc.Error{Peer: n.ID, Code: e.GetCode(), Message: e.GetMessage(), KeyID: e.GetKeyId()}
	}
	return checkShare(n, a.keyID, item.GetShare())
}

// checkShare checks a signature share's form: for the right key, with the node's own index.
// The scheme checks its value (Coordinator.Accept).
func checkShare(n trust.Member, keyID string, ss *tchsmpb.SignatureShare) (scheme.Reply, error) {
	if ss == nil || ss.GetKeyId() != keyID || int(ss.GetIndex()) != n.Index {
		return scheme.Reply{}, fmt.Errorf("%w: node %s sent a malformed signature share", scheme.ErrBadShare, n.ID)
	}
	return scheme.Reply{Payload: ss.GetX()}, nil
}
