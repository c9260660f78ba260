package client

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/threshold"
)

// Sign signs data with key id. It asks the k nodes that look best, asks one more whenever a
// node fails or is slow (hedging), combines the first k shares without proofs, and returns the
// signature only after it verified under the key's public key. When a combination fails, it
// asks the contributing nodes for proofs, names and excludes the ones that lied, and goes on
// with the others.
func (c *Client) Sign(ctx context.Context, id string, mech threshold.Mechanism, data []byte) ([]byte, error) {
	payload, err := threshold.Payload(mech, data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	ctx, cancel := withDefault(ctx, c.signTimeout())
	defer cancel()
	k, err := c.key(ctx, id)
	if err != nil {
		return nil, err
	}
	em, err := threshold.EncodePayload(k.pk.Size(), payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	s := &signing{c: c, k: k, payload: payload, em: em, replies: make(chan shareReply, len(c.m.Nodes))}
	return s.run(ctx)
}

type shareReply struct {
	node  trust.Member
	share *threshold.SigShare
	took  time.Duration
	err   error
}

// signing is the state of one Sign call.
type signing struct {
	c        *Client
	k        *key
	payload  []byte
	em       []byte
	replies  chan shareReply
	queue    []trust.Member // nodes not asked yet, best first
	inflight int
	good     []*threshold.SigShare
	from     map[int]trust.Member
	failures []string
	rounds   int
	unknown  int // nodes that answered "unknown key"
	asked    []trust.Member
	answered map[string]bool
}

// noteSilent marks the nodes that were asked but had not answered when the signature was done
// and have given no share for a while: a node that is down keeps its queue, so its requests
// only time out. Later signatures ask such nodes last for a while instead of waiting for them.
// A node that answered within silentFor is only slower than the others (a busy moment): it
// stays in the rotation.
func (s *signing) noteSilent() {
	for _, n := range s.asked {
		if !s.answered[n.ID] && s.c.silentSince(n.ID, silentFor) {
			s.c.noteFailure(n.ID, errNoAnswer)
		}
	}
}

// silentFor is how long a node that is asked must have given no share before a signature that
// completed without it marks it as failing.
const silentFor = time.Second

var errNoAnswer = errors.New("client: no answer before the signature was complete")

func (s *signing) launch(ctx context.Context) bool {
	if len(s.queue) == 0 {
		return false
	}
	n := s.queue[0]
	s.queue = s.queue[1:]
	s.inflight++
	s.asked = append(s.asked, n)
	done := s.c.track(n.ID)
	go func() {
		defer done()
		t0 := time.Now()
		share, err := s.c.batchers[n.ID].ask(ctx, s.k.info.ID, s.payload, s.k.pk)
		s.replies <- shareReply{node: n, share: share, took: time.Since(t0), err: err}
	}()
	return true
}

func (s *signing) run(ctx context.Context) ([]byte, error) {
	K := s.k.pk.K
	s.queue = s.c.order()
	s.from = map[int]trust.Member{}
	s.answered = map[string]bool{}
	if len(s.queue) < K {
		return nil, fmt.Errorf("%w: %d usable nodes for a %d-of-%d key", ErrNotEnoughNodes, len(s.queue), K, s.k.pk.L)
	}
	for range K {
		s.launch(ctx)
	}
	hedge := time.NewTimer(s.c.hedgeDelay())
	defer hedge.Stop()
	for {
		select {
		case r := <-s.replies:
			s.inflight--
			s.answered[r.node.ID] = true
			if r.err != nil {
				s.fail(r.node, r.err)
				if !s.refill(ctx) {
					return nil, s.giveUp(nil)
				}
				continue
			}
			s.c.noteSuccess(r.node.ID, r.took)
			s.good = append(s.good, r.share)
			s.from[r.share.Index] = r.node
			if len(s.good) < K {
				// Every reply, a share too, may leave fewer requests out than shares missing
				// (the others failed meanwhile): ask more nodes, or all of them again.
				if !s.refill(ctx) {
					return nil, s.giveUp(nil)
				}
				continue
			}
			sig, err := threshold.Combine(s.k.pk, s.em, s.good)
			if err == nil {
				s.noteSilent()
				return sig, nil
			}
			if !errors.Is(err, threshold.ErrBadSignature) {
				return nil, err
			}
			if sig, ok := s.recover(ctx); ok {
				return sig, nil
			}
			if !s.refill(ctx) {
				return nil, s.giveUp(threshold.ErrBadSignature)
			}
		case <-hedge.C:
			// Still short of k shares after a hedge delay: one more node, every tick.
			if len(s.good) < K {
				s.launch(ctx)
			}
			hedge.Reset(s.c.hedgeDelay())
		case <-ctx.Done():
			return nil, s.giveUp(ctx.Err())
		}
	}
}

// refill asks more nodes until enough requests are out to reach k shares; false when it cannot.
// When every node has been asked and some failed (a broker restart, nodes restarting), it starts
// another round with the nodes that have not given a share, after a short pause (100 ms, 200 ms,
// then 300 ms each), as long as the deadline leaves time for it. It runs after every reply: the
// invariant is that shares in hand plus requests out reach k, or the signing has given up.
func (s *signing) refill(ctx context.Context) bool {
	for len(s.good)+s.inflight < s.k.pk.K {
		if s.launch(ctx) {
			continue
		}
		if s.inflight > 0 {
			return true
		}
		if !s.newRound(ctx) {
			return false
		}
	}
	return true
}

// newRound refills the queue with the usable nodes that have not contributed a share.
func (s *signing) newRound(ctx context.Context) bool {
	dl, _ := ctx.Deadline()
	if s.rounds >= maxRounds || time.Until(dl) < 2*roundPause {
		return false
	}
	s.rounds++
	select {
	case <-ctx.Done():
		return false
	case <-time.After(roundPause * time.Duration(min(s.rounds, 3))):
	}
	for _, n := range s.c.order() {
		if _, done := s.from[n.Index]; !done {
			s.queue = append(s.queue, n)
		}
	}
	return len(s.queue) > 0
}

const (
	maxRounds  = 8
	roundPause = 100 * time.Millisecond
)

func (s *signing) fail(n trust.Member, err error) {
	s.c.noteFailure(n.ID, err)
	if errors.Is(err, ErrKeyNotFound) {
		s.unknown++
	}
	s.failures = append(s.failures, fmt.Sprintf("%s: %v", n.ID, err))
}

func (s *signing) giveUp(cause error) error {
	msg := fmt.Sprintf("%d of %d shares for key %s", len(s.good), s.k.pk.K, s.k.info.ID)
	if len(s.failures) > 0 {
		msg += " (" + strings.Join(s.failures, "; ") + ")"
	}
	if cause != nil {
		msg += ": " + cause.Error()
	}
	// When more than n-k nodes say the key does not exist, it is gone (deleted by another
	// client): forget it.
	if s.unknown > s.k.pk.L-s.k.pk.K {
		s.c.mu.Lock()
		delete(s.c.keys, s.k.info.ID)
		s.c.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrKeyNotFound, msg)
	}
	return fmt.Errorf("%w: %s", ErrNotEnoughNodes, msg)
}

// recover runs after a failed combination: it checks every share at hand with a proof from its
// node, drops the ones that fail (naming the node), and combines again if k good shares remain.
// For keys without safe primes, where proofs are not sound, it also tries other subsets.
func (s *signing) recover(ctx context.Context) ([]byte, bool) {
	type verdict struct {
		share *threshold.SigShare
		err   error
	}
	results := make([]verdict, len(s.good))
	var wg sync.WaitGroup
	for i, sh := range s.good {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := s.from[sh.Index]
			p, err := s.c.askProof(ctx, n, s.k.info.ID, s.payload)
			if err != nil {
				results[i] = verdict{share: sh, err: err}
				return
			}
			if p.x.Cmp(sh.X) != 0 {
				results[i] = verdict{share: sh, err: fmt.Errorf("%w: node %s proved another share than it sent", threshold.ErrBadShare, n.ID)}
				return
			}
			results[i] = verdict{share: sh, err: threshold.VerifyShare(s.k.pk, s.em, sh, p.proof)}
		}()
	}
	wg.Wait()
	var kept []*threshold.SigShare
	for _, v := range results {
		n := s.from[v.share.Index]
		switch {
		case v.err == nil:
			kept = append(kept, v.share)
		case errors.Is(v.err, threshold.ErrBadShare):
			s.c.noteLiar(n.ID)
			s.c.log.Warn("node returned an invalid signature share; excluded", "node", n.ID, "key", s.k.info.ID)
			s.failures = append(s.failures, fmt.Sprintf("%s: invalid share", n.ID))
		default:
			// No proof: the share cannot be trusted, but the node is not proven a liar.
			s.fail(n, v.err)
		}
	}
	if len(kept) == len(s.good) {
		// Every proof verified yet the signature did not: only possible for keys without safe
		// primes. Fall back to subsets.
		if sig, err := threshold.CombineAny(s.k.pk, s.em, s.good); err == nil {
			return sig, true
		}
		kept = nil
	}
	s.good = kept
	if len(s.good) >= s.k.pk.K {
		if sig, err := threshold.Combine(s.k.pk, s.em, s.good); err == nil {
			return sig, true
		}
	}
	return nil, false
}

// askShare sends one SignRequest and checks the answer's form: from the right node, for the
// right key, with the node's own index and a value in range.
func (c *Client) askShare(ctx context.Context, n trust.Member, keyID string, payload []byte, pk *threshold.PublicKey) (*threshold.SigShare, error) {
	op, err := c.call(ctx, n, transport.Node(n.ID), &tchsmpb.SignRequest{KeyId: keyID, Payload: payload})
	if err != nil {
		return nil, err
	}
	ss, ok := op.Message.(*tchsmpb.SignatureShare)
	if !ok {
		return nil, fmt.Errorf("%w: node %s sent a malformed signature share", threshold.ErrBadShare, n.ID)
	}
	return checkShare(n, keyID, pk, ss)
}

type provenShare struct {
	x     *big.Int
	proof *threshold.Proof
}

func (c *Client) askProof(ctx context.Context, n trust.Member, keyID string, payload []byte) (*provenShare, error) {
	op, err := c.call(ctx, n, transport.Node(n.ID), &tchsmpb.ProofRequest{KeyId: keyID, Payload: payload, Indices: []uint32{uint32(n.Index)}})
	if err != nil {
		return nil, err
	}
	p, ok := op.Message.(*tchsmpb.Proof)
	if !ok || p.GetKeyId() != keyID || int(p.GetIndex()) != n.Index || p.GetProof() == nil {
		return nil, fmt.Errorf("%w: node %s sent a malformed proof", threshold.ErrBadShare, n.ID)
	}
	return &provenShare{x: new(big.Int).SetBytes(p.GetX()), proof: &threshold.Proof{
		C: new(big.Int).SetBytes(p.GetProof().GetC()), Z: new(big.Int).SetBytes(p.GetProof().GetZ())}}, nil
}

// hedgeDelay is how long to wait for outstanding shares before asking one more node.
func (c *Client) hedgeDelay() time.Duration {
	if c.cfg.Hedge > 0 {
		return time.Duration(c.cfg.Hedge)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var worst time.Duration
	for _, st := range c.nodes {
		worst = max(worst, st.ewma)
	}
	if worst == 0 {
		return 250 * time.Millisecond
	}
	return max(3*worst, 20*time.Millisecond)
}

// overdueAfter is how long a message to a node may wait for its answer before it stops
// holding the node's batch window: four hedge delays (so twelve times the slowest node's
// recent latency), and never less than minOverdue. A message that waits that long is stuck
// (a node that stopped, a request lost with a queue), not slow.
func (c *Client) overdueAfter() time.Duration {
	return max(4*c.hedgeDelay(), minOverdue)
}

const minOverdue = 500 * time.Millisecond
