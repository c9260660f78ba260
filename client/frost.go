package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tchsm/tchsm/internal/rpc"
	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
)

// Signing with a fixed signer set (FROST): a node hands out nonce commitments in advance, in
// batches (scheme.Precommitter); the client keeps a pool per key and node, and a signature is
// one round trip: k nodes with an unused commitment each, one request to each carrying the
// message and the whole commitment list. The list fixes the set, so a session cannot grow: a
// hedge (a slow or failed member) is a new session with fresh commitments from a set without
// that node, the first session may still finish, and whichever signature verifies first is
// returned. A commitment goes out in at most one session and is then forgotten, whatever the
// outcome (its nonce is burnt on the nodes that answered and expires on the others).
const (
	// commitBatch is how many commitments one request fetches; commitLow the level below
	// which the pool is refilled in the background.
	commitBatch = 64
	commitLow   = 16
	// commitMargin: a commitment is used only until its node's nonce lifetime minus this, so
	// that it never reaches the node after the node forgot it.
	commitMargin = 30 * time.Second
	// maxSessions bounds the sessions (first try and hedges) of one signature between two
	// pauses (fixedSigning.retry; at most maxRounds of them).
	maxSessions = 8
	// fetchWait bounds how long a session waits for commitments it lacks.
	fetchWait = 2 * time.Second
)

// commitPools are one key's commitment pools, by node index.
type commitPools struct {
	mu    sync.Mutex
	nodes map[int]*nodePool
}

type nodePool struct {
	entries []poolEntry
	filling chan struct{} // set while a fetch runs; closed when it ends
	err     error         // the last fetch's error
}

// poolEntry is one commitment as the scheme decoded and checked it (ParseCommitments), kept
// decoded so that a session does not decode and check it again.
type poolEntry struct {
	c     scheme.Commitment
	until time.Time
}

func newCommitPools() *commitPools { return &commitPools{nodes: map[int]*nodePool{}} }

func (p *commitPools) node(i int) *nodePool {
	np := p.nodes[i]
	if np == nil {
		np = &nodePool{}
		p.nodes[i] = np
	}
	return np
}

// take removes and returns node i's next usable commitment.
func (p *commitPools) take(i int, now time.Time) (scheme.Commitment, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	np := p.node(i)
	for len(np.entries) > 0 {
		e := np.entries[0]
		np.entries[0] = poolEntry{}
		np.entries = np.entries[1:]
		if now.Before(e.until) {
			return e.c, true
		}
	}
	return nil, false
}

// giveBack returns commitments taken for a session that was never sent.
func (p *commitPools) giveBack(i int, c scheme.Commitment, until time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	np := p.node(i)
	np.entries = append([]poolEntry{{c, until}}, np.entries...)
}

// drop forgets node i's pool (the node said its commitments are stale: it restarted, or they
// expired or were evicted there).
func (p *commitPools) drop(i int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.node(i).entries = nil
}

func (p *commitPools) size(i int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.node(i).entries)
}

// fill starts a fetch of a batch from node m unless one runs; the channel closes when it ends.
func (c *Client) fill(k *key, pc scheme.Precommitter, m trust.Member) <-chan struct{} {
	p := k.pools
	p.mu.Lock()
	np := p.node(m.Index)
	if np.filling != nil {
		ch := np.filling
		p.mu.Unlock()
		return ch
	}
	ch := make(chan struct{})
	np.filling = ch
	p.mu.Unlock()
	go func() {
		err := c.fetchCommitments(k, pc, m)
		p.mu.Lock()
		np.filling, np.err = nil, err
		p.mu.Unlock()
		close(ch)
	}()
	return ch
}

func (c *Client) fetchCommitments(k *key, pc scheme.Precommitter, m trust.Member) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.signTimeout())
	defer cancel()
	req, err := pc.CommitRequest(k.pk, commitBatch)
	if err != nil {
		return err
	}
	t0 := time.Now()
	rep, err := c.batchers[m.ID].ask(ctx, k.info.ID, req.Payload)
	if err == nil {
		var cs []scheme.Commitment
		var ttl time.Duration
		if cs, ttl, err = pc.ParseCommitments(k.pk, m.Index, rep); err == nil {
			c.noteSuccess(m.ID, time.Since(t0))
			life := ttl - commitMargin
			if life <= 0 {
				life = ttl / 2
			}
			until := t0.Add(life)
			k.pools.mu.Lock()
			np := k.pools.node(m.Index)
			for _, cm := range cs {
				np.entries = append(np.entries, poolEntry{cm, until})
			}
			k.pools.mu.Unlock()
			return nil
		}
	}
	c.noteFailure(m.ID, err)
	c.log.Debug("commitments not fetched", "node", m.ID, "key", k.info.ID, "err", err)
	return err
}

type fixedReply struct {
	sid  int
	node trust.Member
	rep  scheme.Reply
	took time.Duration
	err  error
}

type fixedSession struct {
	co      scheme.Coordinator
	pending map[int]bool // members not answered yet
	dead    bool         // failed: its result is ignored
	started time.Time
}

// fixedSigning is the state of one Sign call on a fixed-set scheme.
type fixedSigning struct {
	begun    time.Time // when Sign started
	c        *Client
	k        *key
	pc       scheme.Precommitter
	mech     scheme.Mechanism
	data     []byte
	K        int
	replies  chan fixedReply
	sessions []*fixedSession
	live     int
	bad      map[int]bool // nodes left out of this signature (failed, or lied)
	held     int          // most replies any session held (for the error)
	rounds   int          // pauses after every usable node had failed (see retry)
	first    int          // the first session since the latest pause
	rekey    *key         // a newer epoch of the key, found while judging (newerKey)
	outcome
}

// errRekeyed stops a signature whose shares were judged against an old record: the nodes hold
// a newer epoch of the key (a resharing completed since the client cached it). Sign starts
// again with the new record instead of taking honest nodes for liars.
type errRekeyed struct{ k *key }

func (e *errRekeyed) Error() string {
	return fmt.Sprintf("client: key %s was reshared (epoch %d): signing again with its new record", e.k.info.ID, e.k.epoch)
}

func (c *Client) signFixed(ctx context.Context, k *key, pc scheme.Precommitter, mech scheme.Mechanism, data []byte) ([]byte, error) {
	K, _ := k.pk.Threshold()
	f := &fixedSigning{c: c, k: k, pc: pc, mech: mech, data: data, K: K, begun: time.Now(),
		replies: make(chan fixedReply, maxSessions*(maxRounds+1)*K), bad: map[int]bool{}}
	return f.run(ctx)
}

func (f *fixedSigning) run(ctx context.Context) ([]byte, error) {
	if err := f.restart(ctx); err != nil {
		return nil, f.giveUp(err)
	}
	hedge := time.NewTimer(f.c.hedgeDelay())
	defer hedge.Stop()
	for {
		changed := f.c.live.wait()
		select {
		case r := <-f.replies:
			s := f.sessions[r.sid]
			delete(s.pending, r.node.Index)
			if r.err == nil && !s.dead {
				if err := s.co.Accept(r.node.Index, r.rep); err != nil {
					r.err = fmt.Errorf("node %s: %w", r.node.ID, err)
				}
			}
			if r.err != nil {
				f.fail(r.node, r.err)
				f.kill(s)
				if err := f.restart(ctx); err != nil {
					return nil, f.giveUp(err)
				}
				continue
			}
			f.c.noteSuccess(r.node.ID, r.took)
			if s.dead {
				continue
			}
			f.held = max(f.held, len(s.co.Held()))
			if len(s.co.Held()) < f.K {
				continue
			}
			sig, err := s.co.Finish()
			if err == nil {
				return sig, nil
			}
			f.kill(s)
			if errors.Is(err, scheme.ErrBadSignature) {
				f.judge(ctx, s)
				if f.rekey != nil {
					return nil, &errRekeyed{f.rekey}
				}
			} else {
				f.failures = append(f.failures, err.Error())
			}
			if err := f.restart(ctx); err != nil {
				return nil, f.giveUp(err)
			}
		case <-hedge.C:
			// Members still silent after a hedge delay: one more session without them.
			slow := map[int]bool{}
			for _, s := range f.sessions {
				if !s.dead {
					for i := range s.pending {
						slow[i] = true
					}
				}
			}
			if len(slow) > 0 && f.c.short(f.K) != nil {
				return nil, f.giveUp(nil)
			}
			if len(slow) > 0 && len(f.sessions)-f.first < maxSessions {
				if err := f.start(ctx, slow); err != nil {
					f.c.log.Debug("no hedge session", "key", f.k.info.ID, "err", err)
				}
			}
			hedge.Reset(f.c.hedgeDelay())
		case <-changed:
			if f.c.short(f.K) != nil {
				return nil, f.giveUp(nil)
			}
		case <-ctx.Done():
			return nil, f.giveUp(ctx.Err())
		}
	}
}

func (f *fixedSigning) kill(s *fixedSession) {
	if !s.dead {
		s.dead = true
		f.live--
	}
}

// restart starts a new session when no session is left that could still finish. When fewer
// than k nodes are usable in this signature (they failed in it: nodes restarting, or away
// for a broker failover) but the client does not know that fewer than k are alive, it tries
// again with them after a pause (see retry).
func (f *fixedSigning) restart(ctx context.Context) error {
	if f.live > 0 {
		return nil
	}
	for {
		if len(f.sessions)-f.first >= maxSessions {
			if !f.retry(ctx) {
				return fmt.Errorf("%d sessions failed", len(f.sessions))
			}
			continue
		}
		err := f.start(ctx, nil)
		if err == nil {
			return nil
		}
		if !f.retry(ctx) {
			return err
		}
	}
}

// retry pauses (100 ms, 200 ms, then 300 ms each, at most maxRounds times, as RSA's newRound)
// after a session could not start, has the silent nodes probed, and forgets the failures of
// this signature (not the policy refusals; liars stay out through Client.order). false: give
// up (the deadline is near, too many rounds, or the client knows that fewer than k nodes
// answer).
func (f *fixedSigning) retry(ctx context.Context) bool {
	dl, _ := ctx.Deadline()
	if f.rounds >= maxRounds {
		f.c.settle(ctx, f.K, f.begun)
		return false
	}
	if time.Until(dl) < 2*roundPause || f.c.short(f.K) != nil || f.outcome.hopeless(f.k, f.K) {
		return false
	}
	f.rounds++
	pause := time.NewTimer(roundPause * time.Duration(min(f.rounds, 3)))
	defer pause.Stop()
	for waiting := true; waiting; {
		select {
		case <-ctx.Done():
			return false
		case <-f.c.live.wait():
			if f.c.short(f.K) != nil {
				return false
			}
		case <-pause.C:
			waiting = false
		}
	}
	for i := range f.bad {
		if !f.refused[i] {
			delete(f.bad, i)
		}
	}
	f.first = len(f.sessions)
	return true
}

// start begins a session with the best k nodes that are not left out (nor in avoid) and have,
// or can fetch within fetchWait, an unused commitment.
func (f *fixedSigning) start(ctx context.Context, avoid map[int]bool) error {
	var cands []trust.Member
	for _, m := range f.c.order() {
		if !f.bad[m.Index] && !avoid[m.Index] {
			cands = append(cands, m)
		}
	}
	if len(cands) < f.K {
		return fmt.Errorf("%d usable nodes for a %d-of-%d key", len(cands), f.K, f.k.info.L)
	}
	now := time.Now()
	commits := map[int]scheme.Commitment{}
	var chosen []trust.Member
	pick := func() {
		for _, m := range cands {
			if len(chosen) == f.K {
				return
			}
			if _, ok := commits[m.Index]; ok {
				continue
			}
			if cm, ok := f.k.pools.take(m.Index, now); ok {
				commits[m.Index] = cm
				chosen = append(chosen, m)
			}
		}
	}
	pick()
	if len(chosen) < f.K {
		// Fetch from every candidate without a commitment at once, then pick again.
		var waits []<-chan struct{}
		for _, m := range cands {
			if _, ok := commits[m.Index]; !ok {
				waits = append(waits, f.c.fill(f.k, f.pc, m))
			}
		}
		// Until k candidates have one, or fetchWait: a node that does not answer (hung, or
		// down and not known yet) does not hold the others up.
		wctx, cancel := context.WithTimeout(ctx, fetchWait)
		filled := make(chan struct{}, len(waits))
		for _, w := range waits {
			go func() {
				select {
				case <-w:
					filled <- struct{}{}
				case <-wctx.Done():
				}
			}()
		}
	wait:
		for range waits {
			select {
			case <-filled:
			case <-wctx.Done():
				break wait
			}
			now = time.Now()
			if pick(); len(chosen) == f.K {
				break
			}
		}
		cancel()
		now = time.Now()
		pick()
	}
	if len(chosen) < f.K {
		for i, cm := range commits {
			f.k.pools.giveBack(i, cm, now.Add(commitMargin))
		}
		for _, m := range cands {
			if _, ok := commits[m.Index]; !ok {
				f.k.pools.mu.Lock()
				err := f.k.pools.node(m.Index).err
				f.k.pools.mu.Unlock()
				if err != nil {
					f.failures = append(f.failures, fmt.Sprintf("%s: commitments: %v", m.ID, err))
				}
			}
		}
		return fmt.Errorf("only %d nodes with commitments for a %d-of-%d key", len(chosen), f.K, f.k.info.L)
	}
	co, err := f.pc.NewSession(f.k.pk, f.mech, f.data, commits)
	if err != nil {
		return err
	}
	s := &fixedSession{co: co, pending: map[int]bool{}, started: time.Now()}
	sid := len(f.sessions)
	f.sessions = append(f.sessions, s)
	f.live++
	for _, m := range chosen {
		s.pending[m.Index] = true
		req, err := co.Request(m.Index)
		if err == nil {
			err = checkWire(req)
		}
		done := f.c.track(m.ID)
		go func() {
			defer done()
			if err != nil {
				f.replies <- fixedReply{sid: sid, node: m, err: err}
				return
			}
			t0 := time.Now()
			rep, err := f.c.batchers[m.ID].ask(ctx, f.k.info.ID, req.Payload)
			f.replies <- fixedReply{sid: sid, node: m, rep: rep, took: time.Since(t0), err: err}
		}()
		if f.k.pools.size(m.Index) < commitLow {
			f.c.fill(f.k, f.pc, m)
		}
	}
	return nil
}

// fail handles a member's failure: a stale commitment (the node restarted, or it expired
// there) empties that node's pool and is no fault; a refusal by the node's signing policy
// leaves it out of this signature but is no fault either; anything else leaves the node out
// and counts as a failure.
func (f *fixedSigning) fail(n trust.Member, err error) {
	var re *rpc.Error
	if errors.As(err, &re) && re.Code == tchsmpb.Error_STALE {
		f.k.pools.drop(n.Index)
		f.c.fill(f.k, f.pc, n)
		return
	}
	f.bad[n.Index] = true
	if errors.Is(err, ErrPolicyRefused) {
		f.refuse(n, err)
		return
	}
	f.c.noteFailure(n.ID, err)
	f.note(n, err)
}

// judge checks every share of a session whose signature did not verify against its node's
// verification share (no message needed), and leaves out the nodes that lied. When some share
// does not verify, it first asks the nodes whether they hold a newer epoch of the key than the
// one this signature used (newerKey): then nobody is judged, and f.rekey is set.
func (f *fixedSigning) judge(ctx context.Context, s *fixedSession) {
	verdict := map[int]error{}
	anyBad := false
	held := s.co.Held() // before Judge, which may drop the shares it finds bad
	for _, i := range held {
		_, ask, err := s.co.Audit(i)
		if err == nil && ask {
			err = fmt.Errorf("%w: an audit that needs a message", scheme.ErrNotSupported)
		}
		if err == nil {
			err = s.co.Judge(i, scheme.Reply{})
		}
		verdict[i] = err
		anyBad = anyBad || errors.Is(err, scheme.ErrBadShare)
	}
	if anyBad {
		if nk := f.c.newerKey(ctx, f.k); nk != nil {
			f.rekey = nk
			return
		}
	}
	for _, i := range held {
		n, _ := f.c.m.NodeByIndex(i)
		err := verdict[i]
		switch {
		case err == nil:
		case errors.Is(err, scheme.ErrBadShare):
			f.bad[i] = true
			f.c.noteLiar(n.ID)
			f.c.log.Warn("node returned an invalid signature share; excluded", "node", n.ID, "key", f.k.info.ID)
			f.failures = append(f.failures, fmt.Sprintf("%s: invalid share", n.ID))
		default:
			f.failures = append(f.failures, fmt.Sprintf("%s: %v", n.ID, err))
		}
	}
}

func (f *fixedSigning) giveUp(cause error) error {
	return f.outcome.giveUp(f.c, f.k, f.held, f.K, cause)
}
