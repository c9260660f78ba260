package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tchsm/tchsm/internal/dnspolicy"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/schemes"
)

// Sign signs data with key id. It runs one session of the key's scheme (scheme.Coordinator):
// it asks the k nodes that look best, asks one more whenever a node fails or is slow
// (hedging), combines the first k replies without proofs, and returns the signature only after
// it verified under the key's public key. When a combination fails, it runs the scheme's audit
// round with the contributing nodes (RSA: it asks them for proofs), names and excludes the
// ones that lied, and goes on with the others.
func (c *Client) Sign(ctx context.Context, id string, mech scheme.Mechanism, data []byte) ([]byte, error) {
	if _, err := mech.Hash(); err != nil { // a mechanism tchsm does not know at all
		return nil, fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	ctx, cancel := withDefault(ctx, c.signTimeout())
	defer cancel()
	c.live.demand()
	k, err := c.key(ctx, id)
	if err != nil {
		return nil, err
	}
	if !schemes.Accepts(k.scheme, mech) {
		return nil, fmt.Errorf("%w: a %v key does not sign with %v", ErrInvalidInput, k.info.Algorithm, mech)
	}
	// Known: fewer than k nodes answer. Fail now rather than at the deadline (liveness.go).
	if err := c.recheck(ctx, k.info.K); err != nil {
		return nil, fmt.Errorf("%w; key %s not signed", err, k.info.ID)
	}
	if pc, ok := k.scheme.(scheme.Precommitter); ok {
		sig, err := c.signFixed(ctx, k, pc, mech, data)
		var rk *errRekeyed
		if errors.As(err, &rk) {
			return c.signFixed(ctx, rk.k, pc, mech, data)
		}
		return sig, err
	}
	co, err := k.scheme.NewCoordinator(k.pk, mech, data)
	if errors.Is(err, scheme.ErrInvalidRequest) || errors.Is(err, scheme.ErrUnknownMechanism) {
		return nil, fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	if err != nil {
		return nil, err
	}
	if !co.Open() {
		// Fixed-set sessions without commitments in advance (CGGMP): not driven yet.
		return nil, fmt.Errorf("%w: %v sessions with a fixed signer set", scheme.ErrNotSupported, k.info.Algorithm)
	}
	s := &signing{c: c, k: k, co: co, replies: make(chan shareReply, len(c.m.Nodes)), begun: time.Now()}
	s.mech, s.message = wireMessage(mech, data)
	return s.run(ctx)
}

type shareReply struct {
	node trust.Member
	rep  scheme.Reply
	took time.Duration
	err  error
}

// signing is the state of one Sign call: the scheme's session (co) and the client's view of
// the nodes in it.
type signing struct {
	begun    time.Time // when Sign started
	c        *Client
	k        *key
	co       scheme.Coordinator
	replies  chan shareReply
	queue    []trust.Member // nodes not asked yet, best first
	inflight int
	from     map[int]trust.Member // nodes whose reply was accepted, by index
	rounds   int
	asked    []trust.Member
	answered map[string]bool
	// message goes to the nodes with its mechanism (see wireMessage).
	message []byte
	mech    scheme.Mechanism
	outcome
}

// wireMessage returns what a signature sends the nodes besides the round's payload: for a hash
// mechanism the message itself, up to dnspolicy.MaxMessage, so that nodes with a signing
// policy can check it and hash it themselves. Nodes without a policy for the key sign the
// same payload either way, and nodes older than the message field ignore it. A longer message
// goes digest-only (a key with a policy then refuses it).
func wireMessage(mech scheme.Mechanism, data []byte) (scheme.Mechanism, []byte) {
	if h, err := mech.Hash(); err != nil || h == 0 || len(data) == 0 || len(data) > dnspolicy.MaxMessage {
		return 0, nil
	}
	return mech, data
}

// hopeless reports that more than n-k nodes refused: fewer than k can sign.
func (s *signing) hopeless() bool { return s.outcome.hopeless(s.k, s.co.Quorum()) }

// held is the number of replies the session holds.
func (s *signing) held() int { return len(s.co.Held()) }

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
	req, err := s.co.Request(n.Index)
	if err == nil {
		err = checkWire(req)
	}
	go func() {
		defer done()
		if err != nil {
			s.replies <- shareReply{node: n, err: err}
			return
		}
		t0 := time.Now()
		rep, err := s.c.batchers[n.ID].askMessage(ctx, s.k.info.ID, req.Payload, s.mech, s.message)
		s.replies <- shareReply{node: n, rep: rep, took: time.Since(t0), err: err}
	}()
	return true
}

func (s *signing) run(ctx context.Context) ([]byte, error) {
	K := s.co.Quorum()
	s.queue = s.c.order()
	s.from = map[int]trust.Member{}
	s.answered = map[string]bool{}
	if len(s.queue) < K {
		return nil, fmt.Errorf("%w: %d usable nodes for a %d-of-%d key", ErrNotEnoughNodes, len(s.queue), K, s.k.info.L)
	}
	for range K {
		s.launch(ctx)
	}
	hedge := time.NewTimer(s.c.hedgeDelay())
	defer hedge.Stop()
	for {
		changed := s.c.live.wait()
		select {
		case r := <-s.replies:
			s.inflight--
			s.answered[r.node.ID] = true
			if r.err == nil {
				if err := s.co.Accept(r.node.Index, r.rep); err != nil {
					r.err = fmt.Errorf("node %s: %w", r.node.ID, err)
				}
			}
			if r.err != nil {
				if errors.Is(r.err, ErrPolicyRefused) {
					s.refuse(r.node, r.err)
				} else {
					s.fail(r.node, r.err)
				}
				if s.hopeless() || !s.refill(ctx) {
					return nil, s.giveUp(nil)
				}
				continue
			}
			s.c.noteSuccess(r.node.ID, r.took)
			s.from[r.node.Index] = r.node
			if s.held() < K {
				// Every reply, a share too, may leave fewer requests out than shares missing
				// (the others failed meanwhile): ask more nodes, or all of them again.
				if !s.refill(ctx) {
					return nil, s.giveUp(nil)
				}
				continue
			}
			sig, err := s.co.Finish()
			if err == nil {
				s.noteSilent()
				return sig, nil
			}
			if !errors.Is(err, scheme.ErrBadSignature) {
				return nil, err
			}
			if sig, ok := s.recover(ctx); ok {
				return sig, nil
			}
			if !s.refill(ctx) {
				return nil, s.giveUp(scheme.ErrBadSignature)
			}
		case <-hedge.C:
			// Still short of k shares after a hedge delay: one more node, every tick, unless
			// the client now knows that fewer than k nodes answer.
			if s.held() < K {
				if s.c.short(K) != nil {
					return nil, s.giveUp(nil)
				}
				s.launch(ctx)
			}
			hedge.Reset(s.c.hedgeDelay())
		case <-changed:
			if s.c.short(K) != nil {
				return nil, s.giveUp(nil)
			}
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
	for s.held()+s.inflight < s.co.Quorum() {
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
	if s.rounds >= maxRounds {
		s.c.settle(ctx, s.co.Quorum(), s.begun)
		return false
	}
	if time.Until(dl) < 2*roundPause || s.c.short(s.co.Quorum()) != nil {
		return false
	}
	s.rounds++
	pause := time.NewTimer(roundPause * time.Duration(min(s.rounds, 3)))
	defer pause.Stop()
	for waiting := true; waiting; {
		select {
		case <-ctx.Done():
			return false
		case <-s.c.live.wait():
			// A node went down or came back: give up now if too few are left.
			if s.c.short(s.co.Quorum()) != nil {
				return false
			}
		case <-pause.C:
			waiting = false
		}
	}
	for _, n := range s.c.order() {
		if _, done := s.from[n.Index]; !done && !s.refused[n.Index] {
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
	s.note(n, err)
}

func (s *signing) giveUp(cause error) error {
	return s.outcome.giveUp(s.c, s.k, s.held(), s.co.Quorum(), cause)
}

// recover runs after a failed combination: it runs the scheme's audit of every reply held
// (RSA: a proof from its node), drops the ones that fail (naming the node), and combines again
// if k good replies remain. For keys whose audits are not sound (RSA without safe primes) it
// also tries other subsets.
func (s *signing) recover(ctx context.Context) ([]byte, bool) {
	type verdict struct {
		index int
		rep   scheme.Reply
		err   error
	}
	held := s.co.Held()
	results := make([]verdict, len(held))
	var wg sync.WaitGroup
	for j, i := range held {
		results[j].index = i
		req, ask, err := s.co.Audit(i)
		if err == nil && ask {
			err = checkWireAudit(req)
		}
		if err != nil || !ask {
			results[j].err = err
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[j].rep, results[j].err = s.c.askAudit(ctx, s.from[i], s.k.info.ID, req.Payload)
		}()
	}
	wg.Wait()
	passed := 0
	for _, v := range results {
		n := s.from[v.index]
		err := v.err
		if err == nil {
			if err = s.co.Judge(v.index, v.rep); err != nil {
				err = fmt.Errorf("node %s: %w", n.ID, err)
			}
		}
		switch {
		case err == nil:
			passed++
		case errors.Is(err, scheme.ErrBadShare):
			s.co.Drop(v.index)
			s.c.noteLiar(n.ID)
			s.c.log.Warn("node returned an invalid signature share; excluded", "node", n.ID, "key", s.k.info.ID)
			s.failures = append(s.failures, fmt.Sprintf("%s: invalid share", n.ID))
		default:
			// No audit: the reply cannot be trusted, but the node is not proven a liar.
			s.co.Drop(v.index)
			s.fail(n, err)
		}
	}
	if passed == len(held) {
		// Every audit passed yet the signature did not verify: only possible for keys whose
		// audits are not sound. Fall back to subsets.
		if sig, err := s.co.FinishAny(); err == nil {
			return sig, true
		}
		for _, i := range s.co.Held() {
			s.co.Drop(i)
		}
	}
	if s.held() >= s.co.Quorum() {
		if sig, err := s.co.Finish(); err == nil {
			return sig, true
		}
	}
	return nil, false
}

// askShare sends one SignRequest and checks the answer's form: from the right node, for the
// right key, with the node's own index.
func (c *Client) askShare(ctx context.Context, n trust.Member, req *tchsmpb.SignRequest) (scheme.Reply, error) {
	keyID := req.GetKeyId()
	op, err := c.call(ctx, n, transport.Node(n.ID), req)
	if err != nil {
		return scheme.Reply{}, err
	}
	ss, ok := op.Message.(*tchsmpb.SignatureShare)
	if !ok {
		return scheme.Reply{}, fmt.Errorf("%w: node %s sent a malformed signature share", scheme.ErrBadShare, n.ID)
	}
	return checkShare(n, keyID, ss)
}

// askAudit sends the audit round's request (a ProofRequest) and checks the answer's form.
func (c *Client) askAudit(ctx context.Context, n trust.Member, keyID string, payload []byte) (scheme.Reply, error) {
	op, err := c.call(ctx, n, transport.Node(n.ID), &tchsmpb.ProofRequest{KeyId: keyID, Payload: payload, Indices: []uint32{uint32(n.Index)}})
	if err != nil {
		return scheme.Reply{}, err
	}
	p, ok := op.Message.(*tchsmpb.Proof)
	if !ok || p.GetKeyId() != keyID || int(p.GetIndex()) != n.Index || p.GetProof() == nil {
		return scheme.Reply{}, fmt.Errorf("%w: node %s sent a malformed proof", scheme.ErrBadShare, n.ID)
	}
	return scheme.Reply{Payload: p.GetX(), Proof: [][]byte{p.GetProof().GetC(), p.GetProof().GetZ()}}, nil
}

// checkWire refuses a request today's wire cannot carry: a SignRequest holds one round's
// payload, no session, round number or relayed messages (see package scheme, Wire).
func checkWire(req scheme.Request) error {
	if req.Audit || req.Round > 1 || len(req.Session) != 0 || len(req.Relayed) != 0 {
		return fmt.Errorf("%w: a multi-round request on the wire", scheme.ErrNotSupported)
	}
	return nil
}

// checkWireAudit is checkWire for the audit round, which a ProofRequest carries.
func checkWireAudit(req scheme.Request) error {
	if !req.Audit || req.Round > 1 || len(req.Session) != 0 || len(req.Relayed) != 0 {
		return fmt.Errorf("%w: a multi-round audit on the wire", scheme.ErrNotSupported)
	}
	return nil
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
