package client

import (
	"context"
	"errors"
	"time"

	"github.com/tchsm/tchsm/internal/protocol"
	"github.com/tchsm/tchsm/internal/rpc"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
)

// Feature negotiation (internal/protocol, docs/operations/upgrade.md): the client sends a node
// a message beyond protocol 1 only when the node advertised it in its latest Health report.
// Until the client has one (at start, after the node's queue was gone, after the node refused
// a message as unknown) it asks for one in the background and meanwhile uses protocol 1's
// messages alone, which every release serves: for signing, plain SignRequests instead of
// SignBatch. A node that refuses a message as unknown to it is sent the older messages at once,
// so that negotiation never costs a signature.

const (
	// peerTTL is how long a node's advertised features are used before they are asked again
	// (a node upgraded or rolled back behind the same queue).
	peerTTL = 30 * time.Second
	// peerRetry is how long after a failed feature probe the next one may start.
	peerRetry = time.Second
	// peerProbeTimeout bounds one feature probe.
	peerProbeTimeout = 2 * time.Second
)

// peerState is what the client knows of one node's protocol; guarded by Client.mu.
type peerState struct {
	known   bool
	peer    protocol.Peer
	at      time.Time // when known was set, or when the last probe failed
	probing bool
}

// peerHas reports whether node id advertised feature f. When its features are unknown or
// stale it starts a probe and answers for now from what it knew (nothing: false).
func (c *Client) peerHas(id, f string) bool {
	c.mu.Lock()
	st := c.nodes[id]
	if st == nil {
		c.mu.Unlock()
		return false
	}
	p := &st.proto
	stale := !p.known && time.Since(p.at) >= peerRetry || p.known && time.Since(p.at) >= peerTTL
	start := stale && !p.probing && !c.closed
	if start {
		p.probing = true
	}
	has := p.known && p.peer.Has(f)
	m := st.member
	c.mu.Unlock()
	if start {
		go c.probePeer(m)
	}
	return has
}

// peerKnown reports whether node id advertised feature f in a report the client holds, without
// asking it (peerHas asks when it knows nothing or its knowledge is stale).
func (c *Client) peerKnown(id, f string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.nodes[id]
	return st != nil && st.proto.known && st.proto.peer.Has(f)
}

// probePeer asks node n for its Health, which rawCall records (learnPeer).
func (c *Client) probePeer(n trust.Member) {
	ctx, cancel := context.WithTimeout(context.Background(), peerProbeTimeout)
	defer cancel()
	_, err := c.call(ctx, n, transport.Node(n.ID), &tchsmpb.HealthRequest{})
	c.mu.Lock()
	defer c.mu.Unlock()
	p := &c.nodes[n.ID].proto
	p.probing = false
	if err != nil && !p.known {
		p.at = time.Now()
	}
}

// notePeer updates what the client knows of node id's protocol after a call to it: a Health
// answer says what it serves; a call that found no queue (the process is gone, and may come
// back as another release) or a refusal of a message as unknown makes it unknown again.
func (c *Client) notePeer(id string, op *trust.Opened, err error) {
	var h *tchsmpb.Health
	if op != nil && err == nil {
		h, _ = op.Message.(*tchsmpb.Health)
	}
	forget := errors.Is(err, transport.ErrNoRoute) || rpc.IsUnsupported(err)
	if h == nil && !forget {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.nodes[id]
	if st == nil {
		return
	}
	p := &st.proto
	if h != nil {
		peer := protocol.FromHealth(h)
		if !peer.Compatible() && (!p.known || p.peer.Compatible()) {
			c.log.Warn("node speaks a protocol this client does not share; upgrade it or this client",
				"node", id, "protocol", peer.Protocol, "min_protocol", peer.MinProtocol, "ours", protocol.Current)
		}
		p.known, p.peer, p.at = true, peer, time.Now()
		return
	}
	if p.known {
		c.log.Debug("node's protocol features forgotten", "node", id, "err", err)
	}
	p.known, p.at = false, time.Time{}
}

// PeerProtocol returns what the client knows of node id's protocol: its latest Health report's
// protocol and features, and whether it has one.
func (c *Client) PeerProtocol(id string) (protocol.Peer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.nodes[id]
	if st == nil || !st.proto.known {
		return protocol.Peer{}, false
	}
	return st.proto.peer, true
}
