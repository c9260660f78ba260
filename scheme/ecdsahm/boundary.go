package ecdsahm

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/tchsm/tchsm/scheme"
)

// The payloads of the requests and replies at the scheme boundary (scheme.Request.Payload,
// scheme.Reply.Payload), strict like every decoder here. A request never carries the key id:
// the participant binds everything to its own key id (the record's), a trusted parameter.
//
//	presign request  kindPresign:u8 || round:u8 (1..4) || lp16(batch, 16..64) || count:u16 (1..MaxBatch) ||
//	                 set (count:u8 || indices)
//	presign reply    rounds 1–3: empty (the sealed messages travel as Reply.Messages);
//	                 round 4: count:u16 || count × lp16(PresignPublic.Encode()), in batch order
//	prepare request  kindPrepare:u8 || lp16(presignature id, 20..68) || set || lp16(digest, 32)
//	prepare reply    empty; Reply.Messages: the 2t sealed echoes
//	release request  kindRelease:u8 || lp16(presignature id); Request.Relayed: the echoes to this member
//	release reply    the signature share s_i, 32 bytes
const (
	kindPresign = 1
	kindPrepare = 2
	kindRelease = 3
)

// presignRounds is the number of request rounds of a presigning run (Presign's four steps).
const presignRounds = 4

type presignReq struct {
	round int
	batch []byte
	count int
	set   []int
}

type prepareReq struct {
	id     []byte
	set    []int
	digest []byte
}

// reader is a strict cursor over a payload.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) u8() int {
	if len(r.b) < 1 {
		r.bad = true
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return int(v)
}

func (r *reader) u16() int {
	if len(r.b) < 2 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return int(v)
}

func (r *reader) lp(min, max int) []byte {
	l := r.u16()
	if r.bad || l < min || l > max || len(r.b) < l {
		r.bad = true
		return nil
	}
	v := append([]byte(nil), r.b[:l]...)
	r.b = r.b[l:]
	return v
}

func (r *reader) set() []int {
	cnt := r.u8()
	if r.bad || cnt < 3 || cnt%2 == 0 || cnt > MaxPlayers || len(r.b) < cnt {
		r.bad = true
		return nil
	}
	s := make([]int, cnt)
	for a := range s {
		s[a] = int(r.b[a])
	}
	r.b = r.b[cnt:]
	if checkSet(s, MaxPlayers, (cnt-1)/2, 0) != nil {
		r.bad = true
		return nil
	}
	return s
}

func (r *reader) done() bool { return !r.bad && len(r.b) == 0 }

func encodePresignReq(q presignReq) []byte {
	b := []byte{kindPresign, byte(q.round)}
	b = appendLP(b, q.batch)
	b = binary.BigEndian.AppendUint16(b, uint16(q.count))
	return append(b, encodeSet(q.set)...)
}

func decodePresignReq(r *reader) (presignReq, bool) {
	var q presignReq
	q.round = r.u8()
	q.batch = r.lp(16, 64)
	q.count = r.u16()
	q.set = r.set()
	ok := r.done() && q.round >= 1 && q.round <= presignRounds && q.count >= 1 && q.count <= MaxBatch
	return q, ok
}

func encodePrepareReq(q prepareReq) []byte {
	b := appendLP([]byte{kindPrepare}, q.id)
	b = append(b, encodeSet(q.set)...)
	return appendLP(b, q.digest)
}

func decodePrepareReq(r *reader) (prepareReq, bool) {
	var q prepareReq
	q.id = r.lp(20, 68)
	q.set = r.set()
	q.digest = r.lp(scheme.ECDSADigestSize, scheme.ECDSADigestSize)
	return q, r.done()
}

func encodeReleaseReq(id []byte) []byte { return appendLP([]byte{kindRelease}, id) }

func encodePresignResult(ps []PresignPublic) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(ps)))
	for _, p := range ps {
		b = appendLP(b, p.Encode())
	}
	return b
}

func decodePresignResult(b []byte) ([]PresignPublic, error) {
	r := &reader{b: b}
	cnt := r.u16()
	if r.bad || cnt < 1 || cnt > MaxBatch {
		return nil, fmt.Errorf("%w: presignature list: count", ErrInvalidEncoding)
	}
	out := make([]PresignPublic, cnt)
	for i := range out {
		e := r.lp(1, 2+68+1+MaxPlayers+PointSize)
		if r.bad {
			return nil, fmt.Errorf("%w: presignature list: entry %d", ErrInvalidEncoding, i)
		}
		p, err := DecodePresignPublic(e)
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	if !r.done() {
		return nil, fmt.Errorf("%w: presignature list: trailing bytes", ErrInvalidEncoding)
	}
	return out, nil
}

// Options bound a participant's state (zero values: the defaults).
type Options struct {
	// MaxRuns is the most presigning runs in progress at once (default 8); a run not finished
	// within RunTTL (default 1 minute) is dropped when another starts.
	MaxRuns int
	RunTTL  time.Duration
	// MaxPresignatures is the most unused presignatures kept per requester (default 4096): a
	// run that would exceed it is refused.
	MaxPresignatures int
	// MaxPrepared is the most presignatures prepared (echo sent) and not yet released (default
	// 1024); one not released within PreparedTTL (default 30 s) is burnt.
	MaxPrepared int
	PreparedTTL time.Duration
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.MaxRuns <= 0 {
		o.MaxRuns = 8
	}
	if o.RunTTL <= 0 {
		o.RunTTL = time.Minute
	}
	if o.MaxPresignatures <= 0 {
		o.MaxPresignatures = 4096
	}
	if o.MaxPrepared <= 0 {
		o.MaxPrepared = 1024
	}
	if o.PreparedTTL <= 0 {
		o.PreparedTTL = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Participant is a node's side of one key (a scheme.Participant): its presigning runs in
// progress, its pools of unused presignatures (one per requester, in memory only), and the
// presignatures it prepared (echoed) and has not released yet. Safe for concurrent use.
type Participant struct {
	pk    *PublicKey
	share *SecretShare
	ch    *Channel
	keyID []byte
	opt   Options

	mu       sync.Mutex
	runs     map[string]*presignRun
	pools    map[string]*Pool
	prepared map[string]preparedSig
}

type presignRun struct {
	mu      sync.Mutex
	q       presignReq
	ps      *Presign
	next    int // the round expected next
	started time.Time
}

type preparedSig struct {
	p  *Presignature
	at time.Time
}

// NewPeerParticipant makes a node's side of a key: p.Session is the key id (the record's),
// p.Secret and p.Public the long-term keys of the manifest (NewChannel).
func (s Scheme) NewPeerParticipant(pk scheme.PublicKey, sh scheme.SecretShare, p scheme.DKGParams) (scheme.Participant, error) {
	k, err := KeyOf(pk)
	if err != nil {
		return nil, err
	}
	ss, err := shareOf(sh)
	if err != nil {
		return nil, err
	}
	if len(p.Session) == 0 || len(p.Session) > 256 {
		return nil, fmt.Errorf("%w: key id of %d bytes", scheme.ErrInvalidKey, len(p.Session))
	}
	if len(p.Public) != k.n {
		return nil, fmt.Errorf("%w: %d long-term keys for n=%d", scheme.ErrInvalidKey, len(p.Public), k.n)
	}
	ch, err := NewChannel(ss.index, p.Secret, p.Public)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", scheme.ErrInvalidKey, err)
	}
	return &Participant{pk: k, share: ss, ch: ch, keyID: append([]byte(nil), p.Session...), opt: s.Options.withDefaults(),
		runs: map[string]*presignRun{}, pools: map[string]*Pool{}, prepared: map[string]preparedSig{}}, nil
}

func stateKey(requester string, id []byte) string {
	return string(appendLP(appendLP(nil, []byte(requester)), id))
}

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", scheme.ErrInvalidRequest, fmt.Sprintf(format, a...))
}

// Respond answers a presigning round, a prepare (the echo) or a release (the share).
func (pt *Participant) Respond(ctx context.Context, rnd io.Reader, req scheme.Request) (scheme.Reply, error) {
	if err := ctx.Err(); err != nil {
		return scheme.Reply{}, err
	}
	r := &reader{b: req.Payload}
	switch r.u8() {
	case kindPresign:
		q, ok := decodePresignReq(r)
		if !ok || !roundIs(req, q.round) {
			return scheme.Reply{}, invalid("malformed presign request")
		}
		return pt.presign(req, q, rnd)
	case kindPrepare:
		q, ok := decodePrepareReq(r)
		if !ok || !roundIs(req, 1) {
			return scheme.Reply{}, invalid("malformed sign request (CKM_ECDSA: a %d-byte digest)", scheme.ECDSADigestSize)
		}
		return pt.prepare(req.Requester, q)
	case kindRelease:
		id := r.lp(20, 68)
		if !r.done() || !roundIs(req, 2) {
			return scheme.Reply{}, invalid("malformed release request")
		}
		return pt.release(req.Requester, id, req.Relayed)
	}
	return scheme.Reply{}, invalid("unknown ECDSA P-256 request")
}

// roundIs reports whether req's Round, when the wire carries one (not 0), is round: the
// payload says which round it is, and the two must not disagree.
func roundIs(req scheme.Request, round int) bool { return req.Round == 0 || req.Round == round }

func (pt *Participant) pool(requester string) *Pool {
	pl := pt.pools[requester]
	if pl == nil {
		pl = NewPool()
		pt.pools[requester] = pl
	}
	return pl
}

func (pt *Participant) presign(req scheme.Request, q presignReq, rnd io.Reader) (scheme.Reply, error) {
	if err := checkSet(q.set, pt.pk.n, pt.pk.t, pt.ch.self); err != nil {
		return scheme.Reply{}, fmt.Errorf("%w: %w", scheme.ErrInvalidRequest, err)
	}
	k := stateKey(req.Requester, q.batch)
	now := pt.opt.Now()
	pt.mu.Lock()
	rn := pt.runs[k]
	var expired []*presignRun
	// Runs expired are wiped after pt.mu is released (a run's lock is taken before pt.mu,
	// never after).
	defer func() {
		for _, o := range expired {
			o.mu.Lock()
			o.ps.abort(fmt.Errorf("%w: presigning run expired", ErrProtocol))
			o.mu.Unlock()
		}
	}()
	if q.round == 1 {
		if rn != nil {
			pt.mu.Unlock()
			return scheme.Reply{}, invalid("presigning batch %x already in progress", q.batch)
		}
		for key, o := range pt.runs {
			if now.Sub(o.started) > pt.opt.RunTTL {
				delete(pt.runs, key)
				expired = append(expired, o)
			}
		}
		if len(pt.runs) >= pt.opt.MaxRuns {
			pt.mu.Unlock()
			return scheme.Reply{}, invalid("%d presigning runs in progress already", len(pt.runs))
		}
		pl := pt.pool(req.Requester)
		if pl.Len()+q.count > pt.opt.MaxPresignatures {
			pt.mu.Unlock()
			return scheme.Reply{}, invalid("%d unused presignatures held, at most %d", pl.Len(), pt.opt.MaxPresignatures)
		}
		if err := pl.Begin(q.batch); err != nil {
			pt.mu.Unlock()
			return scheme.Reply{}, fmt.Errorf("%w: %w", scheme.ErrInvalidRequest, err)
		}
		ps, err := NewPresign(pt.ch, pt.pk, pt.share, PresignParams{KeyID: pt.keyID, Set: q.set, Batch: q.batch, Count: q.count}, rnd)
		if err != nil {
			pt.mu.Unlock()
			return scheme.Reply{}, fmt.Errorf("%w: %w", scheme.ErrInvalidRequest, err)
		}
		rn = &presignRun{q: q, ps: ps, next: 1, started: now}
		pt.runs[k] = rn
	}
	pt.mu.Unlock()
	if rn == nil {
		return scheme.Reply{}, fmt.Errorf("%w: presigning batch %x not in progress", scheme.ErrStale, q.batch)
	}
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if q.round != rn.next || q.count != rn.q.count || !slices.Equal(q.set, rn.q.set) {
		pt.dropRun(k, rn)
		rn.ps.abort(fmt.Errorf("%w: presigning round out of order", ErrProtocol))
		return scheme.Reply{}, invalid("presigning round %d of batch %x out of order or changed (expected round %d)", q.round, q.batch, rn.next)
	}
	in := req.Relayed
	if q.round == 1 {
		in = nil
	}
	out, done, err := rn.ps.Step(in)
	if err != nil {
		// Step aborted and wiped the run. A message missing or forged (ErrProtocol) and an
		// inconsistent opening (ErrInconsistent: some member cheated, which one is not known)
		// are both the end of the run, not a fault of this node.
		pt.dropRun(k, rn)
		return scheme.Reply{}, fmt.Errorf("%w: %w", scheme.ErrInvalidRequest, err)
	}
	rn.next++
	if !done {
		return scheme.Reply{Messages: out}, nil
	}
	pt.dropRun(k, rn)
	ps, err := rn.ps.Result()
	if err != nil {
		return scheme.Reply{}, err
	}
	pt.mu.Lock()
	err = pt.pool(req.Requester).Add(ps)
	pt.mu.Unlock()
	if err != nil {
		return scheme.Reply{}, err
	}
	pubs := make([]PresignPublic, len(ps))
	for i, p := range ps {
		pubs[i] = p.Public()
	}
	return scheme.Reply{Payload: encodePresignResult(pubs)}, nil
}

func (pt *Participant) dropRun(k string, rn *presignRun) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if pt.runs[k] == rn {
		delete(pt.runs, k)
	}
}

func (pt *Participant) prepare(requester string, q prepareReq) (scheme.Reply, error) {
	now := pt.opt.Now()
	pt.mu.Lock()
	for key, o := range pt.prepared {
		if now.Sub(o.at) > pt.opt.PreparedTTL {
			o.p.Burn()
			delete(pt.prepared, key)
		}
	}
	if len(pt.prepared) >= pt.opt.MaxPrepared {
		pt.mu.Unlock()
		return scheme.Reply{}, invalid("%d signatures waiting for their echoes already", len(pt.prepared))
	}
	pl := pt.pools[requester]
	if pl == nil {
		pt.mu.Unlock()
		return scheme.Reply{}, fmt.Errorf("%w: presignature %x not held", scheme.ErrStale, q.id)
	}
	p, err := pl.Take(q.id)
	if err != nil {
		pt.mu.Unlock()
		return scheme.Reply{}, fmt.Errorf("%w: %w", scheme.ErrStale, err)
	}
	k := stateKey(requester, q.id)
	pt.mu.Unlock()
	echoes, err := p.Prepare(pt.ch, SignRequest{KeyID: pt.keyID, ID: q.id, Set: q.set, Digest: q.digest})
	if err != nil {
		return scheme.Reply{}, fmt.Errorf("%w: %w", scheme.ErrInvalidRequest, err)
	}
	pt.mu.Lock()
	pt.prepared[k] = preparedSig{p: p, at: now}
	pt.mu.Unlock()
	return scheme.Reply{Messages: echoes}, nil
}

func (pt *Participant) release(requester string, id []byte, echoes []scheme.Message) (scheme.Reply, error) {
	k := stateKey(requester, id)
	pt.mu.Lock()
	ps, ok := pt.prepared[k]
	delete(pt.prepared, k)
	pt.mu.Unlock()
	if !ok {
		return scheme.Reply{}, fmt.Errorf("%w: presignature %x not prepared", scheme.ErrStale, id)
	}
	share, err := ps.p.Release(pt.ch, echoes)
	if err != nil {
		return scheme.Reply{}, fmt.Errorf("%w: %w", scheme.ErrInvalidRequest, err)
	}
	return scheme.Reply{Payload: share}, nil
}

// Held returns how many unused presignatures the participant holds for requester.
func (pt *Participant) Held(requester string) int {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if pl := pt.pools[requester]; pl != nil {
		return pl.Len()
	}
	return 0
}

// Discard burns every unused presignature of requester whose set contains participant j (a
// node of that set failed), or all of them for j = 0.
func (pt *Participant) Discard(requester string, j int) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if pl := pt.pools[requester]; pl != nil {
		pl.Discard(j)
	}
}

// presigning is the coordinator's side of one presigning run (a scheme.Presigning).
type presigning struct {
	pk      *PublicKey
	q       presignReq
	round   int
	replies map[int]scheme.Reply // this round's, by member
	prev    map[int]scheme.Reply // the previous round's
	done    bool
}

// NewPresigning starts the coordinator's side of a presigning run.
func (Scheme) NewPresigning(pk scheme.PublicKey, set []int, batch []byte, count int) (scheme.Presigning, error) {
	p, err := KeyOf(pk)
	if err != nil {
		return nil, err
	}
	if err := checkSet(set, p.n, p.t, 0); err != nil {
		return nil, fmt.Errorf("%w: %w", scheme.ErrInvalidRequest, err)
	}
	if len(batch) < 16 || len(batch) > 64 || count < 1 || count > MaxBatch {
		return nil, invalid("batch id of %d bytes (16..64), %d presignatures (1..%d)", len(batch), count, MaxBatch)
	}
	return &presigning{pk: p, q: presignReq{round: 1, batch: append([]byte(nil), batch...), count: count, set: slices.Clone(set)},
		round: 1, replies: map[int]scheme.Reply{}}, nil
}

func (s *presigning) Set() []int { return slices.Clone(s.q.set) }

func (s *presigning) member(i int) error {
	if !slices.Contains(s.q.set, i) {
		return invalid("participant %d is not in the set %v", i, s.q.set)
	}
	if s.done {
		return invalid("presigning run over")
	}
	return nil
}

// relayedTo returns the messages of replies addressed to participant i.
func relayedTo(replies map[int]scheme.Reply, i int) []scheme.Message {
	var out []scheme.Message
	for _, j := range slices.Sorted(maps.Keys(replies)) {
		for _, m := range replies[j].Messages {
			if m.To == i {
				out = append(out, m)
			}
		}
	}
	return out
}

func (s *presigning) Request(i int) (scheme.Request, error) {
	if err := s.member(i); err != nil {
		return scheme.Request{}, err
	}
	q := s.q
	q.round = s.round
	req := scheme.Request{Session: s.q.batch, Round: s.round, Payload: encodePresignReq(q)}
	if s.round > 1 {
		req.Relayed = relayedTo(s.prev, i)
	}
	return req, nil
}

// checkMessages checks that a reply's messages are exactly one from i to each other member.
func checkMessages(set []int, i int, msgs []scheme.Message) error {
	want := others(set, i)
	if len(msgs) != len(want) {
		return fmt.Errorf("%w: participant %d sent %d messages, want %d", scheme.ErrBadShare, i, len(msgs), len(want))
	}
	seen := map[int]bool{}
	for _, m := range msgs {
		if m.From != i || !slices.Contains(want, m.To) || seen[m.To] {
			return fmt.Errorf("%w: participant %d sent a message from %d to %d", scheme.ErrBadShare, i, m.From, m.To)
		}
		seen[m.To] = true
	}
	return nil
}

func (s *presigning) Accept(i int, rep scheme.Reply) error {
	if err := s.member(i); err != nil {
		return err
	}
	if s.round < presignRounds {
		if len(rep.Payload) != 0 {
			return fmt.Errorf("%w: participant %d: payload in presigning round %d", scheme.ErrBadShare, i, s.round)
		}
		if err := checkMessages(s.q.set, i, rep.Messages); err != nil {
			return err
		}
	} else {
		if len(rep.Messages) != 0 {
			return fmt.Errorf("%w: participant %d: messages after the last presigning round", scheme.ErrBadShare, i)
		}
		if _, err := decodePresignResult(rep.Payload); err != nil {
			return fmt.Errorf("%w: participant %d: %w", scheme.ErrBadShare, i, err)
		}
	}
	s.replies[i] = rep
	return nil
}

func (s *presigning) Finish() ([]scheme.Presignature, error) {
	if s.done {
		return nil, invalid("presigning run over")
	}
	if len(s.replies) != len(s.q.set) {
		return nil, fmt.Errorf("%w: %d of the set's %d members answered round %d", scheme.ErrNotEnoughShares, len(s.replies), len(s.q.set), s.round)
	}
	if s.round < presignRounds {
		s.prev, s.replies = s.replies, map[int]scheme.Reply{}
		s.round++
		return nil, scheme.ErrNextRound
	}
	s.done = true
	reports := map[int][]PresignPublic{}
	for j, rep := range s.replies {
		l, err := decodePresignResult(rep.Payload)
		if err != nil {
			return nil, fmt.Errorf("%w: participant %d: %w", scheme.ErrBadShare, j, err)
		}
		if len(l) != s.q.count {
			return nil, fmt.Errorf("%w: participant %d reported %d presignatures of %d", scheme.ErrBadShare, j, len(l), s.q.count)
		}
		reports[j] = l
	}
	var out []scheme.Presignature
	for b := range s.q.count {
		id := append(slices.Clone(s.q.batch), u32(uint32(b))...)
		rb := make(map[int]PresignPublic, len(reports))
		for j, l := range reports {
			rb[j] = l[b]
		}
		pp, err := Agree(s.pk, rb)
		if err != nil || string(pp.ID) != string(id) || !slices.Equal(pp.Set, s.q.set) {
			continue // spent: the members do not agree on it
		}
		out = append(out, &presignature{pp: pp})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: the members agreed on none of the %d presignatures", ErrInconsistent, s.q.count)
	}
	return out, nil
}

// presignature is the coordinator's view of one presignature (a scheme.Presignature).
type presignature struct{ pp PresignPublic }

func (p *presignature) ID() []byte { return slices.Clone(p.pp.ID) }
func (p *presignature) Set() []int { return slices.Clone(p.pp.Set) }

// signSession is the coordinator's side of one signature with the echo round (a
// scheme.Coordinator): round 1 asks every member to prepare (each answers its echoes for the
// others), round 2 relays the echoes and collects the shares, Finish combines and verifies.
type signSession struct {
	pk      *PublicKey
	pp      PresignPublic
	digest  []byte
	round   int
	held    []int
	replies map[int]scheme.Reply
	echoes  map[int]scheme.Reply
}

// NewPresignedSession starts a signature with presignature p.
func (Scheme) NewPresignedSession(pk scheme.PublicKey, mech scheme.Mechanism, data []byte, p scheme.Presignature) (scheme.Coordinator, error) {
	k, err := KeyOf(pk)
	if err != nil {
		return nil, err
	}
	ps, ok := p.(*presignature)
	if !ok || ps == nil {
		return nil, invalid("%T is not an ECDSA P-256 presignature", p)
	}
	if err := checkSet(ps.pp.Set, k.n, k.t, 0); err != nil {
		return nil, fmt.Errorf("%w: %w", scheme.ErrInvalidRequest, err)
	}
	digest, err := digestFor(mech, data)
	if err != nil {
		return nil, err
	}
	h, err := digestScalar(digest)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", scheme.ErrInvalidRequest, err)
	}
	if h.IsZero() {
		return nil, fmt.Errorf("%w: %w", scheme.ErrInvalidRequest, ErrZeroDigest)
	}
	return &signSession{pk: k, pp: ps.pp, digest: digest, round: 1, replies: map[int]scheme.Reply{}}, nil
}

func (s *signSession) Quorum() int { return len(s.pp.Set) }
func (s *signSession) Open() bool  { return false }

func (s *signSession) Request(i int) (scheme.Request, error) {
	if !slices.Contains(s.pp.Set, i) {
		return scheme.Request{}, invalid("participant %d is not in the set %v", i, s.pp.Set)
	}
	if s.round == 1 {
		return scheme.Request{Session: s.pp.ID, Round: 1, Payload: encodePrepareReq(prepareReq{id: s.pp.ID, set: s.pp.Set, digest: s.digest})}, nil
	}
	return scheme.Request{Session: s.pp.ID, Round: 2, Payload: encodeReleaseReq(s.pp.ID), Relayed: relayedTo(s.echoes, i)}, nil
}

func (s *signSession) Accept(i int, rep scheme.Reply) error {
	if !slices.Contains(s.pp.Set, i) {
		return invalid("participant %d is not in the set %v", i, s.pp.Set)
	}
	if _, dup := s.replies[i]; dup {
		return fmt.Errorf("%w: participant %d answered round %d twice", scheme.ErrBadShare, i, s.round)
	}
	if s.round == 1 {
		if len(rep.Payload) != 0 {
			return fmt.Errorf("%w: participant %d: a payload with its echoes", scheme.ErrBadShare, i)
		}
		if err := checkMessages(s.pp.Set, i, rep.Messages); err != nil {
			return err
		}
	} else {
		if len(rep.Messages) != 0 {
			return fmt.Errorf("%w: participant %d: messages with its share", scheme.ErrBadShare, i)
		}
		if _, err := DecodeScalar(rep.Payload); err != nil {
			return fmt.Errorf("%w: participant %d's share: %w", scheme.ErrBadShare, i, err)
		}
	}
	s.replies[i] = rep
	s.held = append(s.held, i)
	return nil
}

func (s *signSession) Held() []int { return slices.Clone(s.held) }

func (s *signSession) Drop(i int) {
	delete(s.replies, i)
	s.held = slices.DeleteFunc(s.held, func(j int) bool { return j == i })
}

func (s *signSession) Finish() ([]byte, error) {
	if len(s.replies) != len(s.pp.Set) {
		return nil, fmt.Errorf("%w: %d of the set's %d members answered round %d", scheme.ErrNotEnoughShares, len(s.replies), len(s.pp.Set), s.round)
	}
	if s.round == 1 {
		s.echoes, s.replies, s.held = s.replies, map[int]scheme.Reply{}, nil
		s.round = 2
		return nil, scheme.ErrNextRound
	}
	shares := make(map[int][]byte, len(s.replies))
	for j, rep := range s.replies {
		shares[j] = rep.Payload
	}
	sig, err := Combine(s.pk, s.pp, s.digest, shares)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", scheme.ErrBadSignature, err)
	}
	return sig, nil
}

// Audit asks nothing: with exactly 2t+1 shares of a degree-2t sharing a wrong share cannot be
// attributed (doc.go). Judge therefore blames no one, and FinishAny fails: the coordinator
// spends the presignature and signs again with another, from another set when failures repeat.
func (s *signSession) Audit(int) (scheme.Request, bool, error) { return scheme.Request{}, false, nil }
func (s *signSession) Judge(int, scheme.Reply) error           { return nil }
func (s *signSession) FinishAny() ([]byte, error) {
	return nil, fmt.Errorf("%w: an ECDSA P-256 share cannot be attributed; sign with another presignature", scheme.ErrBadSignature)
}
