package ecdsahm

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/big"
	"slices"
	"sync"

	"filippo.io/nistec"

	"github.com/tchsm/tchsm/scheme"
)

// Presignature is one participant's part of one presignature: bound to (key, signer set,
// presignature id), holding R (public: the set agreed on it), r = x(R) mod n, and the secret
// shares c_i of k^-1 (degree t), β_i of k^-1·x (degree 2t) and e_i of 0 (degree 2t). It
// answers at most one request, whatever happens: the first Sign or Prepare consumes it (also
// when it refuses the request), and its secrets are wiped once its share is out or refused.
// It is never serialised: a presignature lives in memory only, so a restart cannot bring a
// used one back (the node discards every unused one on restart). Safe for concurrent use.
type Presignature struct {
	keyID []byte
	id    []byte
	set   []int
	self  int
	t     int
	R     *nistec.P256Point
	r     *Scalar

	mu      sync.Mutex
	state   int // fresh, prepared, used
	c, beta *Scalar
	e       *Scalar
	// set by Prepare, for Release
	stmt   []byte
	digest *Scalar
}

const (
	fresh = iota
	prepared
	used
)

// ID returns the presignature id (the batch id || index).
func (p *Presignature) ID() []byte { return append([]byte(nil), p.id...) }

// Set returns the signer set.
func (p *Presignature) Set() []int { return append([]int(nil), p.set...) }

// Public returns the part the coordinator needs: the id, the set and R.
func (p *Presignature) Public() PresignPublic {
	return PresignPublic{ID: p.ID(), Set: p.Set(), R: p.R.Bytes()}
}

// Used reports whether the presignature was consumed.
func (p *Presignature) Used() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state != fresh
}

// burn marks the presignature used and wipes its secrets. Callers hold p.mu or own p.
func (p *Presignature) burn() {
	p.state = used
	for _, s := range []*Scalar{p.c, p.beta, p.e, p.digest} {
		s.Wipe()
	}
	p.c, p.beta, p.e, p.digest = nil, nil, nil, nil
}

// Burn consumes the presignature without signing (an aborted session, a pool discarded).
func (p *Presignature) Burn() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.burn()
}

// SignRequest is what a signer is asked: sign Digest with presignature ID of key KeyID and
// the signer set Set.
type SignRequest struct {
	KeyID  []byte
	ID     []byte
	Set    []int
	Digest []byte
}

// statement is the hash of everything a signer commits to: what the echo round compares.
func statement(req SignRequest) []byte {
	h := sha256.New()
	h.Write([]byte("tchsm/ecdsahm/sign/v1"))
	h.Write(appendLP(nil, req.KeyID))
	h.Write(appendLP(nil, req.ID))
	h.Write(encodeSet(req.Set))
	h.Write(appendLP(nil, req.Digest))
	return h.Sum(nil)
}

// check consumes the presignature and checks req against its binding. p.mu is held.
func (p *Presignature) check(req SignRequest) (*Scalar, error) {
	if p.state != fresh {
		return nil, fmt.Errorf("%w: %x", ErrUsed, p.id)
	}
	p.state = used // from here on, whatever the outcome
	if string(req.KeyID) != string(p.keyID) || string(req.ID) != string(p.id) || !slices.Equal(req.Set, p.set) {
		p.burn()
		return nil, fmt.Errorf("%w: key, presignature id or signer set differ", ErrBinding)
	}
	h, err := digestScalar(req.Digest)
	if err != nil {
		p.burn()
		return nil, err
	}
	if h.IsZero() {
		p.burn()
		return nil, ErrZeroDigest
	}
	return h, nil
}

// share computes s_i = c_i·h + β_i·r + e_i (a degree-2t share of s = k^-1·(h + r·x),
// re-randomised by e) and burns the presignature. p.mu is held.
func (p *Presignature) share(h *Scalar) []byte {
	s := NewScalar().Mul(p.c, h)
	s.Add(s, NewScalar().Mul(p.beta, p.r))
	s.Add(s, p.e)
	out := s.Bytes()
	s.Wipe()
	p.burn()
	return out
}

// Sign is the one-round path, binding alone: it consumes the presignature, checks that req
// names its key, id and set and a digest ≢ 0 mod n, and returns this participant's signature
// share (32 bytes). A second call, with any request, is ErrUsed. doc.go says what binding
// alone does and does not protect against; Prepare and Release add the echo round.
func (p *Presignature) Sign(req SignRequest) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h, err := p.check(req)
	if err != nil {
		return nil, err
	}
	return p.share(h), nil
}

// Prepare is the first step of the two-round path with the echo round: it consumes the
// presignature, checks req as Sign does, and returns this participant's echo of the request
// to each other member of the set (sealed on ch: only that member can read it and know it came
// from here). No share leaves yet.
func (p *Presignature) Prepare(ch *Channel, req SignRequest) ([]scheme.Message, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ch.self != p.self {
		return nil, fmt.Errorf("%w: channel of %d for a presignature of %d", ErrInvalidParams, ch.self, p.self)
	}
	h, err := p.check(req)
	if err != nil {
		return nil, err
	}
	p.state = prepared
	p.digest = h
	p.stmt = statement(req)
	out, err := sealAll(ch, protoEcho, p.echoSession(), 1, others(p.set, p.self), func(int) []byte { return p.stmt })
	if err != nil {
		p.burn()
		return nil, err
	}
	return out, nil
}

func (p *Presignature) echoSession() []byte {
	return appendLP(appendLP(nil, p.keyID), p.id)
}

// Release takes the echoes of the other 2t members of the set (their Prepare messages to this
// participant) and returns the signature share only when every one of them was asked exactly
// what this participant was asked (same key, presignature, set and digest); otherwise it
// burns the presignature and returns ErrSplitView (or ErrProtocol for an echo missing). It
// runs once: the presignature is used after it, whatever the outcome.
func (p *Presignature) Release(ch *Channel, echoes []scheme.Message) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != prepared || ch.self != p.self {
		if p.state == fresh {
			p.burn()
		}
		return nil, fmt.Errorf("%w: release without a prepared request", ErrUsed)
	}
	got, err := collect(ch, protoEcho, p.echoSession(), 1, echoes, others(p.set, p.self), sha256.Size)
	if err != nil {
		p.burn()
		return nil, err
	}
	for _, j := range others(p.set, p.self) {
		if !ctEqual(got[j], p.stmt) {
			p.burn()
			return nil, fmt.Errorf("%w: participant %d was asked something else", ErrSplitView, j)
		}
	}
	return p.share(p.digest), nil
}

// PresignPublic is the coordinator's view of one presignature: its id, set and R, as each
// member reports it. The coordinator uses a presignature only when all 2t+1 members reported
// the same PresignPublic (Agree).
type PresignPublic struct {
	ID  []byte
	Set []int
	R   []byte
}

// Encode returns lp16(id) || count:u8 || count × index:u8 || R:65.
func (pp PresignPublic) Encode() []byte {
	b := appendLP(nil, pp.ID)
	b = append(b, encodeSet(pp.Set)...)
	return append(b, pp.R...)
}

// DecodePresignPublic decodes Encode's output strictly (an id of 1..68 bytes, a set of 3..64
// strictly increasing indices in 1..64 of odd size, R a point on the curve).
func DecodePresignPublic(b []byte) (PresignPublic, error) {
	bad := func(what string) (PresignPublic, error) {
		return PresignPublic{}, fmt.Errorf("%w: presignature: %s", ErrInvalidEncoding, what)
	}
	if len(b) < 2 {
		return bad("short")
	}
	l := int(binary.BigEndian.Uint16(b))
	if l < 1 || l > 68 || len(b) < 2+l+1 {
		return bad("id")
	}
	id := append([]byte(nil), b[2:2+l]...)
	b = b[2+l:]
	cnt := int(b[0])
	if cnt < 3 || cnt%2 == 0 || cnt > MaxPlayers || len(b) != 1+cnt+PointSize {
		return bad("set")
	}
	set := make([]int, cnt)
	for a := range set {
		set[a] = int(b[1+a])
	}
	if err := checkSet(set, MaxPlayers, (cnt-1)/2, 0); err != nil {
		return bad("set")
	}
	R := b[1+cnt:]
	if _, err := DecodePoint(R); err != nil {
		return bad("R")
	}
	return PresignPublic{ID: id, Set: set, R: append([]byte(nil), R...)}, nil
}

// Agree returns the presignature's public part when every member of its set reported the same
// one (reports: participant → its report); a missing or different report is ErrInconsistent
// (some member is faulty, or the run was not the same for all: discard the presignature).
func Agree(pk *PublicKey, reports map[int]PresignPublic) (PresignPublic, error) {
	var first *PresignPublic
	for _, rep := range reports {
		first = &rep
		break
	}
	if first == nil {
		return PresignPublic{}, fmt.Errorf("%w: no reports", ErrInconsistent)
	}
	if err := checkSet(first.Set, pk.n, pk.t, 0); err != nil {
		return PresignPublic{}, err
	}
	want := first.Encode()
	for _, j := range first.Set {
		rep, ok := reports[j]
		if !ok || string(rep.Encode()) != string(want) {
			return PresignPublic{}, fmt.Errorf("%w: participant %d's report of the presignature differs or is missing", ErrInconsistent, j)
		}
	}
	if len(reports) != len(first.Set) {
		return PresignPublic{}, fmt.Errorf("%w: reports from outside the set", ErrInconsistent)
	}
	return *first, nil
}

// Combine is the coordinator's last step: it interpolates the 2t+1 signature shares of the
// presignature pp's set (shares: participant → 32-byte share) to s = Σ λ_i·s_i, and returns
// r || s (64 bytes, each big-endian, the form CKM_ECDSA returns) only after crypto/ecdsa.Verify
// accepted it under pk for digest. s is not normalised to low-s: DNSSEC (RFC 6605) verifiers
// accept both, and crypto/ecdsa does too.
//
// A share that is malformed or missing is an error before anything is combined; a wrong
// share makes the signature fail to verify: ErrBadSignature. With exactly 2t+1 shares of a
// degree-2t sharing there is no redundancy, so the wrong share cannot be told apart from the
// others here: the presignature is spent, and the coordinator signs again with another (and,
// when failures repeat, another set).
func Combine(pk *PublicKey, pp PresignPublic, digest []byte, shares map[int][]byte) ([]byte, error) {
	if err := checkSet(pp.Set, pk.n, pk.t, 0); err != nil {
		return nil, err
	}
	if len(shares) != len(pp.Set) {
		return nil, fmt.Errorf("%w: %d shares for a set of %d", ErrInvalidParams, len(shares), len(pp.Set))
	}
	R, err := DecodePoint(pp.R)
	if err != nil {
		return nil, err
	}
	r, ok := xScalar(R)
	if !ok || r.IsZero() {
		return nil, fmt.Errorf("%w: r = 0", ErrInvalidPoint)
	}
	h, err := digestScalar(digest)
	if err != nil {
		return nil, err
	}
	if h.IsZero() {
		return nil, ErrZeroDigest
	}
	l := lagrangeAt(pp.Set, 0)
	s := NewScalar()
	for a, j := range pp.Set {
		b, ok := shares[j]
		if !ok {
			return nil, fmt.Errorf("%w: no share from participant %d", ErrInvalidParams, j)
		}
		sj, err := DecodeScalar(b)
		if err != nil {
			return nil, fmt.Errorf("%w: participant %d's share: %w", scheme.ErrBadShare, j, err)
		}
		s.Add(s, NewScalar().Mul(l[a], sj))
	}
	if s.IsZero() {
		return nil, fmt.Errorf("%w: s = 0", ErrBadSignature)
	}
	sig := append(r.Bytes(), s.Bytes()...)
	if !ecdsa.Verify(pk.pub, digest, new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return nil, ErrBadSignature
	}
	return sig, nil
}

// Pool is a node's store of unused presignatures of one key, in memory only: Take hands one
// out at most once (it is removed and then consumed by its request), Add refuses an id it
// holds or has held, so a batch id replayed by a coordinator cannot bring back a used
// presignature. Safe for concurrent use.
type Pool struct {
	mu      sync.Mutex
	live    map[string]*Presignature
	seen    map[string]bool
	batches map[string]bool
}

// NewPool returns an empty pool.
func NewPool() *Pool {
	return &Pool{live: map[string]*Presignature{}, seen: map[string]bool{}, batches: map[string]bool{}}
}

// Begin records a presigning run's batch id before the node takes part in it (NewPresign),
// and refuses one it has seen: a coordinator cannot make a node run one batch twice (the
// second run's messages and the first's would share keys and additional data, and their
// presignatures their ids).
func (pl *Pool) Begin(batch []byte) error {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.batches[string(batch)] {
		return fmt.Errorf("%w: batch %x seen before", ErrUsed, batch)
	}
	pl.batches[string(batch)] = true
	return nil
}

// Add adds presignatures; any id already seen is an error, and the whole batch is burnt.
func (pl *Pool) Add(ps []*Presignature) error {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	for _, p := range ps {
		if pl.seen[string(p.id)] {
			for _, q := range ps {
				q.Burn()
			}
			return fmt.Errorf("%w: presignature id %x seen before", ErrUsed, p.id)
		}
	}
	for _, p := range ps {
		pl.seen[string(p.id)] = true
		pl.live[string(p.id)] = p
	}
	return nil
}

// Take removes and returns the presignature id (ErrUsed when it is not held: never made here,
// taken already, or discarded).
func (pl *Pool) Take(id []byte) (*Presignature, error) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	p, ok := pl.live[string(id)]
	if !ok {
		return nil, fmt.Errorf("%w: presignature %x not held", ErrUsed, id)
	}
	delete(pl.live, string(id))
	return p, nil
}

// Len returns the number of unused presignatures held.
func (pl *Pool) Len() int {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return len(pl.live)
}

// Discard burns every presignature held whose set contains participant j (a node of the set
// failed), or all of them for j = 0.
func (pl *Pool) Discard(j int) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	for id, p := range pl.live {
		if j == 0 || slices.Contains(p.set, j) {
			p.Burn()
			delete(pl.live, id)
		}
	}
}
