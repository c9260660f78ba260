package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/internal/rpc"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
)

// ReshareResult is what a resharing did.
type ReshareResult struct {
	Key   KeyInfo
	Epoch uint32 // the new record's epoch
	// Dealers are the node ids whose shares made the new ones (k of them); Holders the nodes
	// that held the record reshared, Receivers the nodes that held none of it (new identities,
	// or nodes with an earlier epoch's share).
	Dealers, Holders, Receivers []string
	// Stored are the nodes that replaced their share; Missing the others, each with why.
	Stored, Missing []string
}

// ReshareKey reshares an Ed25519 key (one the nodes generated) among the nodes of the manifest
// as it is now (scheme/frost/dkg.NewReshare): the nodes that hold the share of the key's latest
// record (at least k must) deal it to every node, so that every node, a new identity that took
// a lost node's place included, gets a new share of the same public key, and the key gets a
// new record (the next epoch) with new verification shares, endorsed by the nodes as a
// generated key's is. Every node of the manifest must take part, so that no node is left with
// a share of the old polynomial; if one does not, nothing is stored anywhere. Once at least k
// nodes endorsed the same record, each node replaces its record and share in one transaction;
// a node that fails to is reported in Missing (it keeps its old share, which no longer signs
// with the others'; reshare again).
//
// RSA keys cannot be reshared: the dealer forgot them. Their path is a DNSSEC key rollover
// (ErrInvalidInput says so).
func (c *Client) ReshareKey(ctx context.Context, id string) (ReshareResult, error) {
	if err := c.may(tchsmpb.BodyType_BODY_TYPE_RESHARE_REQUEST, "reshare a key"); err != nil {
		return ReshareResult{}, err
	}
	if !trust.ValidKeyID(id) {
		return ReshareResult{}, fmt.Errorf("%w: bad key id", ErrKeyNotFound)
	}
	n, k := c.m.N(), c.m.Threshold
	if _, err := c.m.DKGPublicKeys(); err != nil {
		return ReshareResult{}, fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	if err := c.waitBroker(ctx, brokerWait); err != nil {
		return ReshareResult{}, err
	}
	cur, holders, others, err := c.currentRecord(ctx, id)
	if err != nil {
		return ReshareResult{}, err
	}
	rec, _, err := trust.VerifyKeyRecordBeforeReplacement(c.m, cur)
	if err != nil {
		return ReshareResult{}, err
	}
	if scheme.Of(rec) != scheme.Ed25519FROST {
		return ReshareResult{}, fmt.Errorf("%w: key %s is %v: the dealer forgot it, so it cannot be reshared; roll it over (a new key on the new nodes, see docs/operations/replace-node.md)",
			ErrInvalidInput, id, scheme.Of(rec))
	}
	res := ReshareResult{Epoch: rec.GetEpoch() + 1}
	for _, i := range holders {
		res.Holders = append(res.Holders, c.nodeID(i))
	}
	for _, m := range c.m.Nodes {
		if !slices.Contains(holders, m.Index) {
			res.Receivers = append(res.Receivers, m.ID)
		}
	}
	if len(holders) < k {
		return res, fmt.Errorf("%w: key %s: %d nodes hold its current share (%s), a resharing needs k=%d (%s)",
			ErrNotEnoughNodes, id, len(holders), strings.Join(res.Holders, ", "), k, strings.Join(others, "; "))
	}
	var run [16]byte
	if _, err := rand.Read(run[:]); err != nil {
		return res, err
	}
	start := &tchsmpb.ReshareRequest{KeyId: id, Record: cur, Run: run[:]}
	alive := map[int]trust.Member{}
	for _, m := range c.m.Nodes {
		alive[m.Index] = m
	}
	inbox := map[int][]*tchsmpb.DKGMessage{}
	var last map[int]*tchsmpb.DKGReply
	for step := range dkgSteps {
		replies := c.dkgRound(ctx, alive, id, step, func(m trust.Member) proto.Message {
			if step == 0 {
				return start
			}
			return &tchsmpb.ReshareRequest{KeyId: id, Step: uint32(step), Messages: inbox[m.Index]}
		})
		inbox = map[int][]*tchsmpb.DKGMessage{}
		var failures []string
		for i, r := range replies {
			if r.err != nil {
				failures = append(failures, fmt.Sprintf("%s (step %d): %v", alive[i].ID, step, r.err))
				continue
			}
			for _, msg := range r.rep.GetMessages() {
				if int(msg.GetFrom()) != i {
					continue // a node speaks only for itself
				}
				for j := range alive {
					if j != i && (msg.GetTo() == 0 || int(msg.GetTo()) == j) {
						inbox[j] = append(inbox[j], msg)
					}
				}
			}
		}
		if len(failures) > 0 {
			sort.Strings(failures)
			return res, fmt.Errorf("%w: resharing of key %s stopped at step %d: every node must take part and %d did not (%s); nothing was stored, every node keeps its share",
				ErrNotEnoughNodes, id, step, len(failures), strings.Join(failures, "; "))
		}
		last = map[int]*tchsmpb.DKGReply{}
		for i, r := range replies {
			last[i] = r.rep
		}
	}
	signed, endorsers, nrec, err := c.endorsedRecord(id, last, k)
	if err != nil {
		return res, err
	}
	if err := sameKeyNextEpoch(rec, nrec); err != nil {
		return res, fmt.Errorf("%w: key %s: %v; nothing was stored", ErrNotEnoughNodes, id, err)
	}
	key, err := c.verifyRecord(signed)
	if err != nil {
		return res, err
	}
	for _, q := range c.dkgQualified(last, endorsers) {
		res.Dealers = append(res.Dealers, c.nodeID(q))
	}
	commit := map[int]trust.Member{}
	for _, i := range endorsers {
		commit[i] = alive[i]
	}
	for _, m := range c.m.Nodes {
		if _, ok := commit[m.Index]; !ok {
			res.Missing = append(res.Missing, m.ID+": computed another record")
		}
	}
	msg := &tchsmpb.ReshareCommit{KeyId: id, Record: signed}
	// A commit is idempotent on the node: the nodes that did not acknowledge are asked again
	// (a few times, while the run waits on them), unless they refused for good.
	for try := 0; len(commit) > 0; try++ {
		if try > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(try) * 200 * time.Millisecond):
			}
		}
		last := try == commitTries-1 || ctx.Err() != nil
		for i, r := range c.dkgCommitRound(ctx, commit, id, msg) {
			var re *rpc.Error
			refused := errors.As(r.err, &re) && re.Code != tchsmpb.Error_UNAVAILABLE && re.Code != tchsmpb.Error_EXPIRED
			switch {
			case r.err == nil:
				res.Stored = append(res.Stored, commit[i].ID)
				delete(commit, i)
			case last || refused:
				res.Missing = append(res.Missing, fmt.Sprintf("%s: %v", commit[i].ID, r.err))
				delete(commit, i)
			}
		}
	}
	sort.Strings(res.Stored)
	sort.Strings(res.Missing)
	res.Key = key.info
	if len(res.Stored) == 0 {
		return res, fmt.Errorf("%w: key %s: no node replaced its share (%s); every node keeps the old one", ErrNotEnoughNodes, id, strings.Join(res.Missing, "; "))
	}
	c.mu.Lock()
	c.keys[id] = key
	c.mu.Unlock()
	if len(res.Stored) < k {
		// Fewer than k nodes hold the new epoch and the others the old one: neither signs until
		// the missing nodes commit (a retry of this resharing from the old record is refused
		// by the nodes that moved on; report it loudly).
		return res, fmt.Errorf("%w: key %s: only %d nodes replaced their share (%s); the key cannot sign until k=%d hold epoch %d",
			ErrNotEnoughNodes, id, len(res.Stored), strings.Join(res.Missing, "; "), k, res.Epoch)
	}
	if len(res.Missing) > 0 {
		c.log.Warn("key reshared; some nodes hold no share of the new epoch", "key", id, "epoch", res.Epoch, "missing", res.Missing)
	}
	c.log.Info("key reshared", "key", id, "epoch", res.Epoch, "dealers", res.Dealers, "stored", len(res.Stored), "n", n)
	return res, nil
}

// sameKeyNextEpoch checks that next is old's next epoch: the same key, described the same way.
func sameKeyNextEpoch(old, next *tchsmpb.KeyRecord) error {
	if next.GetKeyId() != old.GetKeyId() || next.GetLabel() != old.GetLabel() || !bytes.Equal(next.GetP11Id(), old.GetP11Id()) ||
		next.GetCreatedUnix() != old.GetCreatedUnix() || next.GetK() != old.GetK() || next.GetN() != old.GetN() ||
		next.GetClusterId() != old.GetClusterId() || scheme.Of(next) != scheme.Of(old) || next.GetEpoch() != old.GetEpoch()+1 {
		return fmt.Errorf("the nodes' record is not the next epoch of the key's")
	}
	a, err := trust.PublicKey(old)
	if err != nil {
		return err
	}
	b, err := trust.PublicKey(next)
	if err != nil {
		return err
	}
	type byter interface{ Bytes() []byte }
	ab, okA := a.(byter)
	bb, okB := b.(byter)
	if !okA || !okB || !bytes.Equal(ab.Bytes(), bb.Bytes()) {
		return fmt.Errorf("the resharing changed the public key")
	}
	return nil
}

// currentRecord asks every node for its keys and returns the key's latest record (the highest
// epoch that verifies), the indices of the nodes that hold it, and what the others hold. A
// record with fewer than k endorsements by nodes of the manifest (its endorsers were partly
// replaced) counts only when no node holds one that verifies fully: one corrupt node could
// endorse a record of a made-up later epoch alone.
func (c *Client) currentRecord(ctx context.Context, id string) (*tchsmpb.SignedKeyRecord, []int, []string, error) {
	ctx, cancel := withDefault(ctx, c.signTimeout())
	defer cancel()
	type res struct {
		i    int
		rec  *tchsmpb.SignedKeyRecord
		full bool
		err  error
	}
	ch := make(chan res, len(c.m.Nodes))
	for _, m := range c.m.Nodes {
		go func() {
			op, err := c.call(ctx, m, transport.Node(m.ID), &tchsmpb.ListKeys{})
			if err != nil {
				ch <- res{i: m.Index, err: err}
				return
			}
			kl, ok := op.Message.(*tchsmpb.KeyList)
			if !ok {
				ch <- res{i: m.Index, err: fmt.Errorf("answered %v", op.Type)}
				return
			}
			for _, s := range kl.GetKeys() {
				if r, full, err := trust.VerifyKeyRecordBeforeReplacement(c.m, s); err == nil && r.GetKeyId() == id {
					ch <- res{i: m.Index, rec: s, full: full}
					return
				}
			}
			ch <- res{i: m.Index}
		}()
	}
	held := map[int]*tchsmpb.SignedKeyRecord{}
	var best *tchsmpb.SignedKeyRecord
	var bestEpoch uint32
	bestFull := false
	var others []string
	for range c.m.Nodes {
		r := <-ch
		switch {
		case r.err != nil:
			others = append(others, fmt.Sprintf("%s: %v", c.nodeID(r.i), r.err))
		case r.rec == nil:
			others = append(others, c.nodeID(r.i)+": holds no share")
		default:
			held[r.i] = r.rec
			rec := new(tchsmpb.KeyRecord)
			if proto.Unmarshal(r.rec.GetRecord(), rec) != nil || (bestFull && !r.full) {
				continue
			}
			if best == nil || (r.full && !bestFull) || rec.GetEpoch() > bestEpoch {
				best, bestEpoch, bestFull = r.rec, rec.GetEpoch(), r.full
			}
		}
	}
	if best == nil {
		return nil, nil, others, fmt.Errorf("%w: %s (%s)", ErrKeyNotFound, id, strings.Join(others, "; "))
	}
	var holders []int
	for i, s := range held {
		if bytes.Equal(s.GetRecord(), best.GetRecord()) {
			holders = append(holders, i)
		} else {
			others = append(others, c.nodeID(i)+": holds an earlier epoch")
		}
	}
	sort.Ints(holders)
	sort.Strings(others)
	return best, holders, others, nil
}

// Limits of newerKey: it asks the nodes about one key at most once per rekeyGap, and waits at
// most rekeyWait for their listings.
const (
	rekeyGap  = 5 * time.Second
	rekeyWait = 2 * time.Second
)

// commitTries is how many times ReshareKey sends the commit to a node that has not answered.
const commitTries = 5

// newerKey returns the key's latest record, as a key, when the nodes hold a newer epoch of it
// than k (a resharing by another client completed since this one cached k), and caches it; nil
// otherwise. A signer whose shares do not verify asks it before taking nodes for liars: their
// shares are of the new polynomial, the client's verification shares of the old one.
func (c *Client) newerKey(ctx context.Context, k *key) *key {
	id := k.info.ID
	c.mu.Lock()
	if cur := c.keys[id]; cur != nil && cur.epoch > k.epoch {
		c.mu.Unlock()
		return cur
	}
	if time.Since(c.rekeyAt[id]) < rekeyGap {
		c.mu.Unlock()
		return nil
	}
	c.rekeyAt[id] = time.Now()
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, rekeyWait)
	defer cancel()
	cur, _, _, err := c.currentRecord(ctx, id)
	if err != nil {
		return nil
	}
	nk, err := c.verifyRecord(cur)
	if err != nil || nk.epoch <= k.epoch {
		return nil
	}
	c.mu.Lock()
	if old := c.keys[id]; old != nil && old.epoch >= nk.epoch {
		nk = old
	} else {
		c.keys[id] = nk
	}
	c.mu.Unlock()
	c.log.Info("key reshared since it was cached; signing with its new record", "key", id, "epoch", nk.epoch)
	return nk
}
