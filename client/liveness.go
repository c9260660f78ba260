package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/tchsm/tchsm/internal/rpc"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
)

// Liveness: when the client knows that fewer than k nodes are alive, a signature fails at
// once instead of waiting for its deadline.
//
// The rule. A node is down when a request to it (any request: a share, a listing, a probe)
// has had no answer, and the node has answered nothing else either, for the window
// (silentAfter, 1 s; longer when the nodes are slow: Client.silentWindow), while the client's
// broker connection stayed up the whole time (transport.ConnectedSince unchanged). A node
// whose rpc queue is gone (its process died: transport.ErrNoRoute at once) is asked again
// every probeGap during that window, so that a node that only reconnects after a broker
// failover is seen as soon as it is back; a node that is alive but hung, paused or cut off
// leaves its requests unanswered. An answer of any kind (a share, a health answer, a sealed
// error, a refusal) proves a node alive and clears its state at once. A signature fails, with
// ErrNotEnoughNodes naming the nodes that answer and those that do not, as soon as more than
// n−k nodes are down or left out as liars: at its start when that is known already, else when
// it becomes known (within about one window of the first request that went unanswered).
//
// What it sends. Nothing while requests are answered: the signatures' own requests are the
// probes. A request that fails (no route, a lost connection) has its node probed with health
// requests until it answers or is known down; a node known down goes on being probed (one
// probe at a time: every probeGap while its queue is gone, every window while it is silent)
// as long as a signature or a listing wanted the nodes in the last probeIdle, so that the
// knowledge stays fresh; and a signature about to fail fast asks them once more (recheck), so
// that signing resumes as soon as k nodes answer again.
//
// The broker. What was learnt counts only on the broker connection it was learnt on, and for
// two windows after its latest confirmation: while the client's own connection is down (a
// broker restart or failover), nothing is known, and signatures wait for the broker up to
// their deadline instead of failing; after it is back, the nodes, which lost the broker too,
// have reconnectGrace and then a window to reconnect before any counts as down.
const (
	silentAfter = time.Second
	probeGap    = 200 * time.Millisecond
	probeIdle   = 30 * time.Second
	// reconnectGrace: after the client's connection came back, the nodes' silence counts
	// only from this long after it. They lost the broker too and come back on their own
	// backoff (after a 2 s outage, up to about 1.2 s after the broker, rabbitmq.backoff; in
	// TestFastFailureBrokerOutage on a loaded machine, signatures resumed up to 2.3 s after
	// it, so with the window the margin is about 1.7 s).
	reconnectGrace = 3 * time.Second
	// recheckWait bounds how long a signature that would fail fast waits for the nodes known
	// down to answer one more probe (recheck).
	recheckWait = 200 * time.Millisecond
)

// liveness is the client's view of which nodes answer. It has its own lock: it is touched on
// every answer.
type liveness struct {
	c      *Client
	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	nodes      map[string]*live
	changed    chan struct{} // closed and replaced when a node goes down or comes back
	lastDemand time.Time     // the latest signature or listing
	seq        uint64        // numbers the requests (begin)
	recheckAt  time.Time     // the latest recheck
}

// live is one node's state.
type live struct {
	lastAnswer time.Time
	down       bool
	confirmed  time.Time     // when the latest probe confirmed it down
	epoch      time.Time     // the broker connection (ConnectedSince) it was confirmed on
	window     time.Duration // the silence window it was confirmed with
	why        string        // what the latest failed probe saw
	probing    bool
	lastFail   string // what the latest failed request saw (silentReason)
	lastFailAt time.Time
	// pending are the requests to the node waiting for their answer, by a sequence number:
	// one outstanding for the window with no answer from the node makes it down (sweep).
	pending map[uint64]pend
}

type pend struct{ at, epoch time.Time }

func newLiveness(c *Client) *liveness {
	ctx, cancel := context.WithCancel(context.Background())
	l := &liveness{c: c, ctx: ctx, cancel: cancel, nodes: map[string]*live{}, changed: make(chan struct{})}
	for _, n := range c.m.Nodes {
		l.nodes[n.ID] = &live{pending: map[uint64]pend{}}
	}
	return l
}

// begin registers a request to node id about to be sent; end, with the request's ctx and
// outcome, must follow. Every request is a probe for free: the healthy path sends nothing
// more.
func (l *liveness) begin(id string) uint64 {
	epoch := l.c.epoch()
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.nodes[id]
	if st == nil {
		return 0
	}
	l.seq++
	st.pending[l.seq] = pend{time.Now(), epoch}
	return l.seq
}

// end notes the outcome of request seq to node id: an answer shows the node alive; a failure
// that is not the caller giving up (no route, a lost connection) has the node probed until it
// answers or is known down.
func (l *liveness) end(id string, seq uint64, ctx context.Context, err error) {
	l.mu.Lock()
	if st := l.nodes[id]; st != nil {
		delete(st.pending, seq)
		if !isAnswer(err) && ctx.Err() == nil {
			st.lastFail, st.lastFailAt = silentReason(err), time.Now()
		}
	}
	l.mu.Unlock()
	switch {
	case isAnswer(err):
		l.answered(id)
	case ctx.Err() == nil:
		l.probe(id)
	}
}

// sweep marks down the nodes with a request outstanding for the window, sent on the current
// broker connection, and no answer since.
func (l *liveness) sweep() {
	epoch := l.c.epoch()
	if epoch.IsZero() {
		return
	}
	window := l.c.silentWindow()
	now := time.Now()
	type silence struct {
		id string
		at time.Time
	}
	var found []silence
	l.mu.Lock()
	for id, st := range l.nodes {
		for _, p := range st.pending {
			if p.epoch.Equal(epoch) && now.Sub(l.c.silenceFrom(p.at, epoch)) >= window && !st.lastAnswer.After(p.at) {
				found = append(found, silence{id, p.at})
				break
			}
		}
	}
	l.mu.Unlock()
	for _, f := range found {
		l.silent(f.id, f.at, epoch, "no answer", window)
	}
}

// close stops the probes and waits for them.
func (l *liveness) close() {
	l.cancel()
	l.wg.Wait()
}

// notify wakes the signatures waiting for a change; callers hold l.mu.
func (l *liveness) notify() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// wait returns a channel closed at the next change.
func (l *liveness) wait() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// demand notes that a signature (or a listing) wants the nodes now: probes of nodes that are
// down go on for probeIdle more.
func (l *liveness) demand() {
	l.mu.Lock()
	l.lastDemand = time.Now()
	l.mu.Unlock()
}

// answered notes an answer of any kind from node id.
func (l *liveness) answered(id string) {
	l.mu.Lock()
	st := l.nodes[id]
	if st == nil {
		l.mu.Unlock()
		return
	}
	st.lastAnswer = time.Now()
	back := st.down
	if back {
		st.down, st.why = false, ""
		l.notify()
	}
	l.mu.Unlock()
	if back {
		l.c.log.Info("node answers again", "node", id)
	}
}

// isAnswer reports whether the outcome err of a call shows that the node is alive: its answer
// arrived, whatever it said (a share, a sealed error, a refusal of the request).
func isAnswer(err error) bool {
	var re *rpc.Error
	return err == nil || errors.As(err, &re) || errors.Is(err, transport.ErrRemote)
}

// epoch is the current broker connection's ConnectedSince; zero when there is none.
func (c *Client) epoch() time.Time {
	select {
	case <-c.connReady:
		return c.conn.ConnectedSince()
	default:
		return time.Time{}
	}
}

// silentWindow is how long a node asked must stay silent to be down: silentAfter, or longer
// when the nodes are slow (a node that answers a share in 300 ms under load is busy, not
// down).
func (c *Client) silentWindow() time.Duration { return max(silentAfter, c.overdueAfter()) }

// silenceFrom is when the silence of a request sent at asked, on connection epoch, starts to
// count: at once on the client's first connection, reconnectGrace after a reconnection.
func (c *Client) silenceFrom(asked, epoch time.Time) time.Time {
	if epoch.Equal(c.firstEpoch) {
		return asked
	}
	return later(asked, epoch.Add(reconnectGrace))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// silent marks node id down: it was asked at asked, on the broker connection epoch, and has
// given no answer since; why is what the asking saw. It does nothing unless the connection is
// still epoch and the window has passed. It starts the node's probes, which keep the
// knowledge fresh and see the node come back.
func (l *liveness) silent(id string, asked, epoch time.Time, why string, window time.Duration) {
	now := time.Now()
	if epoch.IsZero() || !l.c.epoch().Equal(epoch) || now.Sub(l.c.silenceFrom(asked, epoch)) < window {
		return
	}
	l.mu.Lock()
	st := l.nodes[id]
	if st == nil || st.lastAnswer.After(asked) {
		l.mu.Unlock()
		return
	}
	if why == "no answer" && st.lastFailAt.After(asked) {
		why = st.lastFail // more telling: no route, broker unavailable
	}
	st.confirmed, st.epoch, st.window, st.why = now, epoch, window, why
	went := !st.down
	if went {
		st.down = true
		l.notify()
	}
	l.mu.Unlock()
	if went {
		l.c.log.Warn("node gives no answer; counted down until it answers", "node", id, "silent_for", window, "seen", why)
	}
	l.probe(id)
}

// countsDown reports whether st is known down now: confirmed on the current connection, and
// recently (its probes confirm it again every window while they run).
func countsDown(st *live, epoch time.Time, now time.Time) bool {
	return st.down && !epoch.IsZero() && st.epoch.Equal(epoch) && now.Sub(st.confirmed) < 2*st.window
}

// downSet returns the nodes known down; nil when there are none. It takes only l.mu (order
// calls it holding c.mu).
func (l *liveness) downSet() map[string]bool {
	epoch := l.c.epoch()
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out map[string]bool
	for id, st := range l.nodes {
		if countsDown(st, epoch, now) {
			if out == nil {
				out = map[string]bool{}
			}
			out[id] = true
		}
	}
	return out
}

// probe starts probing node id unless it runs already.
func (l *liveness) probe(id string) {
	l.mu.Lock()
	st := l.nodes[id]
	if st == nil || st.probing || l.ctx.Err() != nil {
		l.mu.Unlock()
		return
	}
	st.probing = true
	l.wg.Add(1)
	l.mu.Unlock()
	n, _ := l.c.m.Lookup(id)
	go func() {
		defer l.wg.Done()
		l.probeLoop(n)
		l.mu.Lock()
		st.probing = false
		l.mu.Unlock()
	}()
}

// probeLoop probes node n until it answers, the client closes, or no signature wanted the
// nodes for probeIdle. Each round lasts one window on one broker connection: health requests,
// one at a time, again every probeGap after one that failed at once; no answer in the whole
// window is a confirmation that the node is down.
func (l *liveness) probeLoop(n trust.Member) {
	for {
		l.mu.Lock()
		idle := time.Since(l.lastDemand) > probeIdle
		l.mu.Unlock()
		if idle || l.ctx.Err() != nil {
			return
		}
		epoch := l.c.epoch()
		if epoch.IsZero() {
			// No broker: nothing can be learnt. Wait for it (a signature waits too).
			if err := l.c.waitBroker(l.ctx, probeGap); err != nil && l.ctx.Err() != nil {
				return
			}
			continue
		}
		start := time.Now()
		window := l.c.silentWindow()
		end := start.Add(window)
		why := ""
		for noRoute := true; l.ctx.Err() == nil && l.c.epoch().Equal(epoch); {
			ctx, cancel := context.WithDeadline(l.ctx, end)
			_, err := l.c.call(ctx, n, transport.Node(n.ID), &tchsmpb.HealthRequest{})
			cancel()
			if isAnswer(err) || l.answeredSince(n.ID, start) {
				return // call noted the answer
			}
			why = silentReason(err)
			// A node whose queue is gone (every probe: no route) is not slow but absent: its
			// window does not grow with the nodes' latency.
			if noRoute = noRoute && errors.Is(err, transport.ErrNoRoute); noRoute && window > silentAfter {
				window, end = silentAfter, start.Add(silentAfter)
			}
			if !time.Now().Before(end) {
				break
			}
			select {
			case <-l.ctx.Done():
			case <-time.After(min(probeGap, time.Until(end))):
			}
		}
		// Confirmed down unless the connection changed meanwhile: then the next round, on
		// the new connection, tells.
		l.silent(n.ID, start, epoch, why, window)
		select {
		case <-l.ctx.Done():
			return
		case <-time.After(probeGap):
		}
	}
}

// answeredSince reports whether node id answered after t.
func (l *liveness) answeredSince(id string, t time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nodes[id].lastAnswer.After(t)
}

// silentReason says in a few words why a probe got no answer.
func silentReason(err error) string {
	switch {
	case errors.Is(err, transport.ErrNoRoute):
		return "not connected to the broker"
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer"
	case errors.Is(err, transport.ErrUnavailable):
		return "broker unavailable"
	case err != nil:
		return err.Error()
	}
	return "no answer"
}

// short returns an error wrapping ErrNotEnoughNodes when the client knows that fewer than K
// nodes can sign (more than n−K down or left out as liars); nil otherwise.
func (c *Client) short(K int) error {
	epoch := c.epoch()
	if epoch.IsZero() {
		return nil // the broker is away: nothing is known (waitBroker's business)
	}
	c.live.sweep()
	now := time.Now()
	c.mu.Lock()
	liars := map[string]bool{}
	for id, st := range c.nodes {
		if now.Before(st.excluded) {
			liars[id] = true
		}
	}
	c.mu.Unlock()
	l := c.live
	l.mu.Lock()
	defer l.mu.Unlock()
	var up, down, out []string
	for _, n := range c.m.Nodes {
		st := l.nodes[n.ID]
		switch {
		case liars[n.ID]:
			out = append(out, n.ID)
		case countsDown(st, epoch, now):
			down = append(down, fmt.Sprintf("%s (%s)", n.ID, st.why))
		default:
			up = append(up, n.ID)
		}
	}
	if len(up) >= K {
		return nil
	}
	msg := fmt.Sprintf("%d of %d nodes answer, a signature needs %d (answering: %s; no answer from %s for %v with the broker connection up",
		len(up), len(c.m.Nodes), K, listOrNone(up), listOrNone(down), c.silentWindow().Round(10*time.Millisecond))
	if len(out) > 0 {
		msg += "; left out for invalid shares: " + strings.Join(out, ", ")
	}
	return fmt.Errorf("%w: %s)", ErrNotEnoughNodes, msg)
}

// recheck is short for a signature about to fail fast: it first asks the nodes known down
// once more, at once, and waits up to recheckWait for enough of them, so that a node that came
// back since its latest probe (a restarted one: probes of a node without a queue come every
// probeGap) is seen now. A node that is still down costs the signature recheckWait at most
// (a paused node does not answer; a dead one fails at once). Rechecks start at most once per
// probeGap, whatever the number of signatures.
func (c *Client) recheck(ctx context.Context, K int) error {
	err := c.short(K)
	if err == nil {
		return nil
	}
	l := c.live
	l.mu.Lock()
	again := time.Since(l.recheckAt) >= probeGap
	if again {
		l.recheckAt = time.Now()
	}
	l.mu.Unlock()
	down := l.downSet()
	if !again || len(down) == 0 {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, recheckWait)
	defer cancel()
	done := make(chan struct{}, len(down))
	for id := range down {
		n, _ := c.m.Lookup(id)
		go func() {
			c.call(rctx, n, transport.Node(n.ID), &tchsmpb.HealthRequest{})
			done <- struct{}{}
		}()
	}
	for range down {
		select {
		case <-done:
		case <-rctx.Done():
			return c.short(K)
		}
		if c.short(K) == nil {
			return nil
		}
	}
	return c.short(K)
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// settle is what a signature that ran out of retries does before it gives up: while the
// liveness view has not decided yet (the window, which grows when the nodes are slow, has not
// passed since the signature began at begun), it waits for the verdict, up to the deadline, so
// that the error names the nodes that answer and those that do not rather than listing every
// failed request. It returns at once when the view has decided or the broker is away.
func (c *Client) settle(ctx context.Context, K int, begun time.Time) {
	for c.short(K) == nil && !c.epoch().IsZero() && time.Since(begun) < c.silentWindow()+probeGap {
		t := time.NewTimer(probeGap)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-c.live.wait():
		case <-t.C:
		}
		t.Stop()
	}
}
