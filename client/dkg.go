package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
)

// dkgSteps is the number of DKGRequest steps of a key generation (scheme/frost/dkg: deals,
// responses, justifications, outcome).
const dkgSteps = 4

// dkgStepTimeout bounds one step on one node: a node that does not answer within it takes no
// further part.
const dkgStepTimeout = 10 * time.Second

// generateDKG has the nodes generate a key together (scheme/frost/dkg): the client starts the
// run on every node, relays each step's messages to their recipients (deals are encrypted to
// the recipient by the scheme and every message is signed by its sender, so the client learns
// nothing and can forge nothing), collects the record each node computed and endorsed, and,
// when at least k nodes endorsed the same record, asks them to store their shares. A node that
// fails a step takes no further part; the generation fails cleanly (nothing is stored, the
// nodes forget it) when fewer than req.Nodes nodes (default: k) are left. Once at least k
// nodes stored their shares, the deals addressed to each node that took no part go to the
// dealer, which queues them on that node's control queue (sendLateDeals): the node computes
// its share when it is back. By default (req.Nodes 0) a node that can get its share neither
// way makes the generation fail, and the key is deleted again.
func (c *Client) generateDKG(ctx context.Context, req GenerateRequest) (KeyInfo, error) {
	n, k := c.m.N(), c.m.Threshold
	need, strict := req.Nodes, req.Nodes == 0
	if strict {
		need = k
	}
	if need < k || need > n {
		return KeyInfo{}, fmt.Errorf("%w: %d nodes asked to take part, need k=%d to n=%d", ErrInvalidInput, need, k, n)
	}
	if k < 2 {
		return KeyInfo{}, fmt.Errorf("%w: a threshold of %d: an Ed25519 key needs k ≥ 2", ErrInvalidInput, k)
	}
	if _, err := c.m.DKGPublicKeys(); err != nil {
		return KeyInfo{}, fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	if err := c.waitBroker(ctx, brokerWait); err != nil {
		return KeyInfo{}, err
	}
	var rb [16]byte
	if _, err := rand.Read(rb[:]); err != nil {
		return KeyInfo{}, err
	}
	id := hex.EncodeToString(rb[:])
	start := &tchsmpb.DKGRequest{KeyId: id, Algorithm: uint32(req.Algorithm), K: uint32(k), Label: req.Label,
		P11Id: req.P11ID, CreatedUnix: time.Now().Unix()}
	alive := map[int]trust.Member{}
	for _, m := range c.m.Nodes {
		alive[m.Index] = m
	}
	var failures []string
	// The step-0 deals, by recipient: those to a node that takes no part go to it later.
	dealt := map[int][]*tchsmpb.DKGMessage{}
	inbox := map[int][]*tchsmpb.DKGMessage{}
	var last map[int]*tchsmpb.DKGReply
	for step := range dkgSteps {
		replies := c.dkgRound(ctx, alive, id, step, func(m trust.Member) proto.Message {
			if step == 0 {
				return start
			}
			return &tchsmpb.DKGRequest{KeyId: id, Step: uint32(step), Messages: inbox[m.Index]}
		})
		inbox = map[int][]*tchsmpb.DKGMessage{}
		for i, r := range replies {
			if r.err != nil {
				failures = append(failures, fmt.Sprintf("%s (step %d): %v", alive[i].ID, step, r.err))
				delete(alive, i)
				continue
			}
			for _, msg := range r.rep.GetMessages() {
				// A node speaks only for itself; messages to nodes that left are dropped.
				if int(msg.GetFrom()) != i {
					continue
				}
				if step == 0 && msg.GetTo() != 0 {
					dealt[int(msg.GetTo())] = append(dealt[int(msg.GetTo())], msg)
				}
				for j := range alive {
					if j != i && (msg.GetTo() == 0 || int(msg.GetTo()) == j) {
						inbox[j] = append(inbox[j], msg)
					}
				}
			}
		}
		if len(alive) < need {
			return KeyInfo{}, fmt.Errorf("%w: key generation stopped at step %d: %d of %d nodes take part, %d needed (%s); nothing was stored",
				ErrNotEnoughNodes, step, len(alive), n, need, strings.Join(failures, "; "))
		}
		last = map[int]*tchsmpb.DKGReply{}
		for i, r := range replies {
			if r.err == nil {
				last[i] = r.rep
			}
		}
	}
	signed, endorsers, err := c.dkgRecord(start, last, k)
	if err != nil {
		return KeyInfo{}, err
	}
	key, err := c.verifyRecord(signed)
	if err != nil {
		return KeyInfo{}, err
	}
	// The nodes that take no part get the deals addressed to them through the dealer, queued
	// durably before anyone stores the key: by default a node that cannot get its share this
	// way stops the generation while nothing is stored yet.
	commit := map[int]trust.Member{}
	for _, i := range endorsers {
		commit[i] = alive[i]
	}
	var missing []string
	queued := false
	if len(commit) < n {
		for _, m := range c.m.Nodes {
			if _, ok := commit[m.Index]; !ok {
				missing = append(missing, m.ID+": took no part")
			}
		}
		c.log.Warn("key generation: some nodes take no part; their deals go to the dealer", "key", id, "missing", missing)
		holds := map[int]bool{}
		for i := range commit {
			holds[i] = true
		}
		unserved, nq := c.sendLateDeals(ctx, id, signed, c.dkgQualified(last, endorsers), holds, dealt)
		queued = nq > 0
		if len(unserved) > 0 && strict {
			err := fmt.Errorf("%w: key %s: %d of %d nodes took part and %s; nothing was stored "+
				"(generate with a minimum number of nodes to accept a key on fewer nodes)",
				ErrNotEnoughNodes, id, len(commit), n, strings.Join(unserved, "; "))
			if queued {
				return KeyInfo{}, c.dropGenerated(ctx, key, err)
			}
			return KeyInfo{}, err
		}
	}
	// Commit: each endorser stores its share.
	stored := 0
	for i, r := range c.dkgCommitRound(ctx, commit, id, &tchsmpb.DKGCommit{KeyId: id, Record: signed}) {
		if r.err != nil {
			missing = append(missing, fmt.Sprintf("%s: %v", commit[i].ID, r.err))
			continue
		}
		stored++
	}
	switch {
	case stored < k:
		// Fewer than k shares stored: the key cannot sign. The nodes that stored theirs (or
		// will compute theirs from late deals) hold a key nobody can use; deletion goes
		// through the dealer, as for every key.
		err := fmt.Errorf("%w: key %s: only %d of %d nodes stored their share (%s)", ErrNotEnoughNodes, id, stored, n, strings.Join(missing, "; "))
		if stored == 0 && !queued {
			return KeyInfo{}, err
		}
		return KeyInfo{}, c.dropGenerated(ctx, key, err)
	case stored < len(commit) && strict:
		// An endorser (a qualified dealer) that failed to store its share cannot get it later.
		return KeyInfo{}, c.dropGenerated(ctx, key, fmt.Errorf("%w: key %s: %d of %d nodes stored their share and the others cannot get one later (%s); the key was deleted",
			ErrNotEnoughNodes, id, stored, n, strings.Join(missing, "; ")))
	case len(missing) > 0:
		c.log.Warn("key generated; some nodes hold no share of it yet", "key", id, "missing", missing)
	}
	c.log.Info("key generated by the nodes", "key", id, "algorithm", key.info.Algorithm.String(), "k", k, "shares", stored)
	c.mu.Lock()
	c.keys[id] = key
	c.mu.Unlock()
	return key.info, nil
}

// dropGenerated deletes a generated key that must not be used and returns cause (or why the
// deletion failed too).
func (c *Client) dropGenerated(ctx context.Context, key *key, cause error) error {
	id := key.info.ID
	c.mu.Lock()
	c.keys[id] = key
	c.mu.Unlock()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.signTimeout())
	defer cancel()
	if _, err := c.DeleteKey(dctx, id); err != nil {
		c.mu.Lock()
		delete(c.keys, id)
		c.mu.Unlock()
		return fmt.Errorf("%w; deleting it failed too (delete it by hand): %v", cause, err)
	}
	return cause
}

type dkgResult struct {
	rep *tchsmpb.DKGReply
	err error
}

// dkgRound sends one step to every node of alive at once and waits for all answers (each
// bounded by dkgStepTimeout).
func (c *Client) dkgRound(ctx context.Context, alive map[int]trust.Member, id string, step int, req func(trust.Member) proto.Message) map[int]dkgResult {
	type indexed struct {
		i int
		dkgResult
	}
	ch := make(chan indexed, len(alive))
	for i, m := range alive {
		go func() {
			sctx, cancel := context.WithTimeout(ctx, dkgStepTimeout)
			defer cancel()
			r := req(m)
			op, err := c.call(sctx, m, transport.Node(m.ID), r)
			if err != nil {
				ch <- indexed{i, dkgResult{err: err}}
				return
			}
			rep, ok := op.Message.(*tchsmpb.DKGReply)
			if !ok || rep.GetKeyId() != id || rep.GetStep() != uint32(step) {
				ch <- indexed{i, dkgResult{err: fmt.Errorf("answered %v", op.Type)}}
				return
			}
			ch <- indexed{i, dkgResult{rep: rep}}
		}()
	}
	out := map[int]dkgResult{}
	for range alive {
		r := <-ch
		out[r.i] = r.dkgResult
	}
	return out
}

// dkgCommitRound sends the commit to every endorser at once.
func (c *Client) dkgCommitRound(ctx context.Context, nodes map[int]trust.Member, id string, commit proto.Message) map[int]dkgResult {
	type indexed struct {
		i   int
		err error
	}
	ch := make(chan indexed, len(nodes))
	for i, m := range nodes {
		go func() {
			sctx, cancel := context.WithTimeout(ctx, dkgStepTimeout)
			defer cancel()
			op, err := c.call(sctx, m, transport.Node(m.ID), commit)
			if err == nil {
				if ack, ok := op.Message.(*tchsmpb.DKGCommitAck); !ok || !ack.GetOk() || ack.GetKeyId() != id {
					err = fmt.Errorf("answered %v", op.Type)
				}
			}
			ch <- indexed{i, err}
		}()
	}
	out := map[int]dkgResult{}
	for range nodes {
		r := <-ch
		out[r.i] = dkgResult{err: r.err}
	}
	return out
}

// dkgRecord gathers the nodes' endorsements of the record they computed: the record most
// nodes endorsed, if at least k did and it describes the key asked for. Nodes that computed
// another record are named (with fewer than k corrupt nodes, honest nodes all compute the
// same one).
func (c *Client) dkgRecord(start *tchsmpb.DKGRequest, last map[int]*tchsmpb.DKGReply, k int) (*tchsmpb.SignedKeyRecord, []int, error) {
	signed, who, rec, err := c.endorsedRecord(start.GetKeyId(), last, k)
	if err != nil {
		return nil, nil, err
	}
	if rec.GetKeyId() != start.GetKeyId() || rec.GetLabel() != start.GetLabel() || !bytes.Equal(rec.GetP11Id(), start.GetP11Id()) ||
		rec.GetCreatedUnix() != start.GetCreatedUnix() || rec.GetK() != start.GetK() || scheme.Of(rec) != scheme.Algorithm(start.GetAlgorithm()) || rec.GetEpoch() != 0 {
		return nil, nil, fmt.Errorf("%w: key %s: the nodes' record differs from the key asked for", ErrNotEnoughNodes, start.GetKeyId())
	}
	return signed, who, nil
}

// endorsedRecord returns the record most nodes of last endorsed (the endorsements verified),
// if at least k did, with its endorsers and its decoded form.
func (c *Client) endorsedRecord(id string, last map[int]*tchsmpb.DKGReply, k int) (*tchsmpb.SignedKeyRecord, []int, *tchsmpb.KeyRecord, error) {
	byRecord := map[string][]int{}
	for i, rep := range last {
		if !rep.GetDone() || rep.GetEndorsement() == nil || rep.GetEndorsement().GetNode() != c.nodeID(i) {
			continue
		}
		if err := trust.VerifyEndorsement(c.m, rep.GetRecord(), rep.GetEndorsement()); err != nil {
			c.log.Warn("key generation: a node's endorsement does not verify", "node", c.nodeID(i), "err", err)
			continue
		}
		byRecord[string(rep.GetRecord())] = append(byRecord[string(rep.GetRecord())], i)
	}
	var best string
	for r, who := range byRecord {
		if len(who) > len(byRecord[best]) {
			best = r
		}
	}
	who := byRecord[best]
	sort.Ints(who)
	if len(byRecord) > 1 {
		var others []string
		for r, w := range byRecord {
			if r != best {
				for _, i := range w {
					others = append(others, c.nodeID(i))
				}
			}
		}
		c.log.Warn("key generation: nodes computed another key record", "nodes", others)
	}
	if len(who) < k {
		return nil, nil, nil, fmt.Errorf("%w: key %s: %d nodes endorsed the same key record, need %d; nothing was stored", ErrNotEnoughNodes, id, len(who), k)
	}
	signed := &tchsmpb.SignedKeyRecord{Record: []byte(best)}
	for _, i := range who {
		signed.Endorsements = append(signed.Endorsements, last[i].GetEndorsement())
	}
	rec, err := trust.VerifyKeyRecord(c.m, signed)
	if err != nil {
		return nil, nil, nil, err
	}
	return signed, who, rec, nil
}

func (c *Client) nodeID(i int) string {
	if m, ok := c.m.NodeByIndex(i); ok {
		return m.ID
	}
	return ""
}

// lateDealer is a KeyDealer that can forward late deals (dealer.Dealer, in process).
type lateDealer interface {
	QueueLateDeals(ctx context.Context, m *tchsmpb.DKGLateDeals) (queued []string, err error)
}

// dkgQualified returns the qualified dealers every endorser reported, or nil (logged) when
// they differ.
func (c *Client) dkgQualified(last map[int]*tchsmpb.DKGReply, endorsers []int) []int {
	var qual []int
	for n, i := range endorsers {
		var q []int
		for _, x := range last[i].GetQualified() {
			q = append(q, int(x))
		}
		if n == 0 {
			qual = q
		} else if !slices.Equal(q, qual) {
			c.log.Warn("key generation: the endorsers report different qualified dealers", "node", c.nodeID(i), "qualified", q, "others", qual)
			return nil
		}
	}
	return qual
}

// sendLateDeals hands the dealer, for each node that holds no share and was not a qualified
// dealer, the deals the qualified dealers addressed to it; the dealer queues them durably on
// the node's control queue, and the node computes its share when it is back (a KeyShareDelivery
// for a generated key). A qualified dealer that holds no share (it dealt, then left) cannot get
// one this way: its own deal to itself is gone with its memory; a resharing (ReshareKey)
// gives it one. It returns the nodes that hold no share and will not get one this way,
// each with the reason (also logged), and how many nodes' deals were queued.
func (c *Client) sendLateDeals(ctx context.Context, id string, signed *tchsmpb.SignedKeyRecord, qual []int, holds map[int]bool, dealt map[int][]*tchsmpb.DKGMessage) (unserved []string, queued int) {
	lost := func(node, why string, args ...any) {
		c.log.Warn("key generation: "+why+"; the node holds no share", append([]any{"key", id, "node", node}, args...)...)
		unserved = append(unserved, node+": "+why)
	}
	var late []*tchsmpb.DKGLateDeals
	for _, m := range c.m.Nodes {
		switch {
		case holds[m.Index]:
			continue
		case qual == nil:
			lost(m.ID, "no late deals without agreed qualified dealers")
			continue
		case slices.Contains(qual, m.Index):
			lost(m.ID, "a qualified dealer cannot get its share from late deals (tchsm keys reshare ID gives it one)")
			continue
		}
		msg := &tchsmpb.DKGLateDeals{Record: signed, Recipient: m.ID}
		for _, q := range qual {
			msg.Qualified = append(msg.Qualified, uint32(q))
		}
		for _, d := range dealt[m.Index] {
			if slices.Contains(qual, int(d.GetFrom())) {
				msg.Deals = append(msg.Deals, d)
			}
		}
		late = append(late, msg)
	}
	if len(late) == 0 {
		return unserved, 0
	}
	lostAll := func(why string, args ...any) ([]string, int) {
		for _, msg := range late {
			lost(msg.GetRecipient(), why, args...)
		}
		return unserved, 0
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.signTimeout())
	defer cancel()
	d, err := c.getDealer(ctx)
	if err != nil {
		return lostAll("no dealer to queue the late deals", "err", err)
	}
	ld, _ := d.(lateDealer)
	if d != nil && ld == nil {
		return lostAll("the in-process dealer cannot queue late deals")
	}
	if d == nil && len(c.m.Dealers) == 0 {
		return lostAll("the manifest names no dealer to queue the late deals")
	}
	for _, msg := range late {
		var to []string
		if ld != nil {
			to, err = ld.QueueLateDeals(ctx, msg)
		} else {
			var op *trust.Opened
			if op, err = c.dealerCall(ctx, msg); err == nil {
				if ack, ok := op.Message.(*tchsmpb.DKGLateDealsAck); ok {
					to = ack.GetQueued()
				} else {
					err = fmt.Errorf("dealer answered %v", op.Type)
				}
			}
		}
		if err != nil || !slices.Contains(to, msg.GetRecipient()) {
			lost(msg.GetRecipient(), "late deals not queued", "err", err)
			continue
		}
		queued++
		c.log.Info("key generation: late deals queued; the node computes its share when it is back", "key", id, "node", msg.GetRecipient(), "deals", len(msg.GetDeals()))
	}
	return unserved, queued
}
