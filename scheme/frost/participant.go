package frost

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/tchsm/tchsm/scheme"
)

// Options bound a Participant's nonce store. Zero fields take the defaults.
type Options struct {
	// MaxOutstanding caps the commitments handed to one requester and not yet used or
	// expired (default 1024). A commit request beyond the cap evicts that requester's oldest
	// nonces: a client that lost its pool (a restart) gets fresh ones at once, and only hurts
	// itself by asking too often.
	MaxOutstanding int
	// TTL is how long a nonce is kept after it was handed out (default 10 minutes).
	TTL time.Duration
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
}

// Defaults of Options.
const (
	DefaultMaxOutstanding = 1024
	DefaultTTL            = 10 * time.Minute
)

func (o Options) withDefaults() Options {
	if o.MaxOutstanding <= 0 {
		o.MaxOutstanding = DefaultMaxOutstanding
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Participant is a node's side of one FROST key: its secret share and, in memory only, the
// nonces it handed out, each under a random 64-bit id, for one requester, until used or
// expired. A restart loses them all, which is what the protocol needs (a nonce must never be
// used twice, and one that was written down could be). It is safe for concurrent use.
type Participant struct {
	pk    *PublicKey
	share *SecretShare
	opts  Options

	mu    sync.Mutex
	pools map[string]*pool // by requester
}

// pool is one requester's outstanding nonces, oldest first.
type pool struct {
	order []uint64
	byID  map[uint64]*nonceEntry
}

type nonceEntry struct {
	n       Nonces
	c       Commitment
	expires time.Time
}

var _ scheme.Participant = (*Participant)(nil)

// NewParticipant returns participant share.Index()'s side of pk. It checks the share against
// its verification share first.
func NewParticipant(pk *PublicKey, share *SecretShare, o Options) (*Participant, error) {
	if pk == nil || share == nil {
		return nil, fmt.Errorf("%w: no key or share", scheme.ErrInvalidKey)
	}
	if err := share.Check(pk); err != nil {
		return nil, err
	}
	return &Participant{pk: pk, share: share, opts: o.withDefaults(), pools: map[string]*pool{}}, nil
}

// Respond answers a commit request (a batch of commitments) or a sign request (the share z_i),
// as wire.go encodes them. req.Requester names the requester the nonces belong to.
func (p *Participant) Respond(_ context.Context, rnd io.Reader, req scheme.Request) (scheme.Reply, error) {
	if req.Round > 1 || len(req.Session) != 0 || len(req.Relayed) != 0 || req.Audit || len(req.Payload) == 0 {
		return scheme.Reply{}, fmt.Errorf("%w: FROST signs in one round, without audit", scheme.ErrInvalidRequest)
	}
	switch req.Payload[0] {
	case tagCommit:
		n, err := DecodeCommitRequest(req.Payload)
		if err != nil {
			return scheme.Reply{}, fmt.Errorf("%w: %w", scheme.ErrInvalidRequest, err)
		}
		cs, err := p.Commit(rnd, req.Requester, n)
		if err != nil {
			return scheme.Reply{}, err
		}
		return scheme.Reply{Payload: EncodeCommitReply(p.opts.TTL, cs)}, nil
	case tagSign:
		msg, list, err := parseSignRequest(req.Payload) // Sign decodes and checks the elements
		if err != nil {
			return scheme.Reply{}, fmt.Errorf("%w: %w", scheme.ErrInvalidRequest, err)
		}
		z, err := p.Sign(req.Requester, msg, list)
		if err != nil {
			return scheme.Reply{}, err
		}
		return scheme.Reply{Payload: z}, nil
	}
	return scheme.Reply{}, fmt.Errorf("%w: unknown FROST request 0x%02x", scheme.ErrInvalidRequest, req.Payload[0])
}

// Commit is round one, in advance: count fresh nonce pairs for requester, kept under random
// ids, and their commitments.
func (p *Participant) Commit(rnd io.Reader, requester string, count int) ([]Commitment, error) {
	if count < 1 || count > MaxBatch {
		return nil, fmt.Errorf("%w: batch of %d, need 1..%d", scheme.ErrInvalidRequest, count, MaxBatch)
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	entries := make([]*nonceEntry, count)
	for i := range entries {
		n, D, E, err := commit(rnd, &p.share.s)
		if err != nil {
			return nil, err
		}
		var idb [8]byte
		if _, err := io.ReadFull(rnd, idb[:]); err != nil {
			n.Wipe()
			return nil, fmt.Errorf("frost: reading randomness: %w", err)
		}
		c := Commitment{Identifier: p.share.index, Nonce: binary.BigEndian.Uint64(idb[:]), d: D, e: E}
		copy(c.Hiding[:], D.Bytes())
		copy(c.Binding[:], E.Bytes())
		entries[i] = &nonceEntry{n: *n, c: c}
		n.Wipe()
	}
	now := p.opts.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireLocked(now)
	pl := p.pools[requester]
	if pl == nil {
		pl = &pool{byID: map[uint64]*nonceEntry{}}
		p.pools[requester] = pl
	}
	out := make([]Commitment, 0, count)
	for _, e := range entries {
		if _, dup := pl.byID[e.c.Nonce]; dup { // 2^-64; drop it rather than overwrite
			e.n.Wipe()
			continue
		}
		e.expires = now.Add(p.opts.TTL)
		pl.byID[e.c.Nonce] = e
		pl.order = append(pl.order, e.c.Nonce)
		out = append(out, e.c)
	}
	for len(pl.byID) > p.opts.MaxOutstanding {
		pl.dropOldest()
	}
	// The batch may exceed the cap by itself; then only its newest MaxOutstanding survive.
	kept := out[:0]
	for _, c := range out {
		if _, ok := pl.byID[c.Nonce]; ok {
			kept = append(kept, c)
		}
	}
	return kept, nil
}

func (pl *pool) dropOldest() {
	for len(pl.order) > 0 {
		id := pl.order[0]
		pl.order = pl.order[1:]
		if e, ok := pl.byID[id]; ok {
			e.n.Wipe()
			delete(pl.byID, id)
			return
		}
	}
}

// peek returns the commitment of requester's nonce id without taking it.
func (p *Participant) peek(requester string, id uint64) (Commitment, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pl := p.pools[requester]; pl != nil {
		if e := pl.byID[id]; e != nil {
			return e.c, true
		}
	}
	return Commitment{}, false
}

// take removes and returns requester's nonce id, or nil.
func (p *Participant) take(requester string, id uint64) *nonceEntry {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireLocked(p.opts.Now())
	pl := p.pools[requester]
	if pl == nil {
		return nil
	}
	e := pl.byID[id]
	if e != nil {
		delete(pl.byID, id) // the order slice is compacted lazily (dropOldest, expireLocked)
	}
	return e
}

// expireLocked wipes and forgets every expired nonce.
func (p *Participant) expireLocked(now time.Time) {
	for r, pl := range p.pools {
		for len(pl.order) > 0 {
			e, ok := pl.byID[pl.order[0]]
			if ok && now.Before(e.expires) {
				break
			}
			if ok {
				e.n.Wipe()
				delete(pl.byID, pl.order[0])
			}
			pl.order = pl.order[1:]
		}
		if len(pl.byID) == 0 {
			delete(p.pools, r)
		}
	}
}

// Outstanding returns how many nonces requester holds (for tests and metrics).
func (p *Participant) Outstanding(requester string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireLocked(p.opts.Now())
	if pl := p.pools[requester]; pl != nil {
		return len(pl.byID)
	}
	return 0
}

// Sign is round two (RFC 9591, section 5.2): it validates the whole commitment list
// (CheckList: sorted, unique identifiers within 1..n, at least k, every element valid), finds
// its own entry, takes the nonce that entry names out of the store (so that it is never used
// again, whatever happens next), checks the entry's commitments are those it handed out,
// signs, and wipes the nonce before the share is returned.
func (p *Participant) Sign(requester string, msg []byte, list []Commitment) ([]byte, error) {
	if len(msg) > MaxMessage {
		return nil, fmt.Errorf("%w: message of %d bytes", scheme.ErrInvalidRequest, len(msg))
	}
	me := -1
	for i := range list {
		if list[i].Identifier == p.share.index {
			me = i
		}
	}
	if me >= 0 {
		// This participant's own entry: when it names a nonce handed out here with the same
		// D and E, take the points decoded at Commit, so that CheckList validates only the
		// other participants' elements (every one of them, as section 5.2 asks).
		if own, ok := p.peek(requester, list[me].Nonce); ok && own.Hiding == list[me].Hiding && own.Binding == list[me].Binding {
			list[me].d, list[me].e = own.d, own.e
		}
	}
	if err := CheckList(list, p.pk.k, p.pk.n); err != nil {
		return nil, fmt.Errorf("%w: %w", scheme.ErrInvalidRequest, err)
	}
	if me < 0 {
		return nil, fmt.Errorf("%w: %w: participant %d is not in it", scheme.ErrInvalidRequest, ErrInvalidCommitmentList, p.share.index)
	}
	e := p.take(requester, list[me].Nonce)
	if e == nil {
		return nil, fmt.Errorf("%w: %w: %016x", scheme.ErrStale, ErrUnknownNonce, list[me].Nonce)
	}
	defer e.n.Wipe()
	if e.c.Hiding != list[me].Hiding || e.c.Binding != list[me].Binding {
		return nil, fmt.Errorf("%w: %w: own commitment differs from the one handed out", scheme.ErrInvalidRequest, ErrInvalidCommitmentList)
	}
	s, err := newSession(p.pk.enc, list, msg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", scheme.ErrInvalidRequest, err)
	}
	z := s.sign(me, &p.share.s, &e.n)
	e.n.Wipe()
	return z.Bytes(), nil
}
