package frost

import (
	"crypto/ed25519"
	"fmt"

	"filippo.io/edwards25519"

	"github.com/tchsm/tchsm/scheme"
)

// Coordinator is one FROST signature on the client: a fixed signer set (the commitment list),
// one round, aggregation checked with crypto/ed25519.Verify, and share verification against the
// verification shares only after a failure.
type Coordinator struct {
	pk      *PublicKey
	msg     []byte
	list    []Commitment
	payload []byte
	s       *session
	held    []int
	z       map[int]*edwards25519.Scalar
}

var _ scheme.Coordinator = (*Coordinator)(nil)

// NewCoordinator starts a signing session on msg with the commitment list (one commitment from
// each signer of the set, any order: it is sorted here). The list must hold exactly k
// commitments that pass CheckList; the binding factors, group commitment and challenge are
// computed now, so a list that makes the identity fails before any node is asked.
func NewCoordinator(pk *PublicKey, msg []byte, commitments []Commitment) (*Coordinator, error) {
	if pk == nil {
		return nil, fmt.Errorf("%w: no key", scheme.ErrInvalidKey)
	}
	if len(msg) > MaxMessage {
		return nil, fmt.Errorf("%w: message of %d bytes", scheme.ErrInvalidRequest, len(msg))
	}
	if len(commitments) != pk.k {
		return nil, fmt.Errorf("%w: %d commitments, need exactly %d", scheme.ErrInvalidRequest, len(commitments), pk.k)
	}
	list := append([]Commitment(nil), commitments...)
	for i := 1; i < len(list); i++ { // insertion sort: k is small
		for j := i; j > 0 && list[j].Identifier < list[j-1].Identifier; j-- {
			list[j], list[j-1] = list[j-1], list[j]
		}
	}
	if err := CheckList(list, pk.k, pk.n); err != nil {
		return nil, fmt.Errorf("%w: %w", scheme.ErrInvalidRequest, err)
	}
	s, err := newSession(pk.enc, list, msg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", scheme.ErrInvalidRequest, err)
	}
	payload, err := EncodeSignRequest(msg, list)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", scheme.ErrInvalidRequest, err)
	}
	return &Coordinator{pk: pk, msg: append([]byte(nil), msg...), list: list, payload: payload, s: s,
		z: map[int]*edwards25519.Scalar{}}, nil
}

// Quorum is k, the size of the set.
func (c *Coordinator) Quorum() int { return c.pk.k }

// Open is false: the commitment list fixes the set. A hedge is a new session.
func (c *Coordinator) Open() bool { return false }

// Signers returns the set's participants in order.
func (c *Coordinator) Signers() []int {
	out := make([]int, len(c.list))
	for i, cm := range c.list {
		out[i] = cm.Identifier
	}
	return out
}

func (c *Coordinator) member(i int) error {
	if c.s.index(i) < 0 {
		return fmt.Errorf("%w: participant %d is not in this session's set", scheme.ErrInvalidRequest, i)
	}
	return nil
}

// Request returns the sign request (the same payload for every member of the set).
func (c *Coordinator) Request(i int) (scheme.Request, error) {
	if err := c.member(i); err != nil {
		return scheme.Request{}, err
	}
	return scheme.Request{Round: 1, Payload: c.payload}, nil
}

// Accept keeps z_i when it is a canonical scalar from a member not yet heard.
func (c *Coordinator) Accept(i int, rep scheme.Reply) error {
	if err := c.member(i); err != nil {
		return err
	}
	z, err := DecodeScalar(rep.Payload)
	if err != nil {
		return fmt.Errorf("%w: participant %d: %w", scheme.ErrBadShare, i, err)
	}
	if _, dup := c.z[i]; dup {
		return fmt.Errorf("%w: a second share from participant %d", scheme.ErrBadShare, i)
	}
	c.z[i] = z
	c.held = append(c.held, i)
	return nil
}

// Held returns the members whose shares are held, in the order accepted.
func (c *Coordinator) Held() []int { return append([]int(nil), c.held...) }

// Drop forgets participant i's share.
func (c *Coordinator) Drop(i int) {
	delete(c.z, i)
	for j, h := range c.held {
		if h == i {
			c.held = append(c.held[:j], c.held[j+1:]...)
			return
		}
	}
}

// Finish aggregates the k shares and returns the signature once crypto/ed25519.Verify accepts
// it; ErrNotEnoughShares until every member answered, ErrBadSignature when some share is wrong
// (Judge then names it).
func (c *Coordinator) Finish() ([]byte, error) {
	if len(c.z) < len(c.list) {
		return nil, fmt.Errorf("%w: have %d, need all %d of the set", scheme.ErrNotEnoughShares, len(c.z), len(c.list))
	}
	z := make([]*edwards25519.Scalar, len(c.list))
	for j, cm := range c.list {
		z[j] = c.z[cm.Identifier]
	}
	sig := c.s.aggregate(z)
	if !ed25519.Verify(ed25519.PublicKey(c.pk.enc), c.msg, sig) {
		return nil, fmt.Errorf("%w: %w", scheme.ErrBadSignature, ErrBadSignature)
	}
	return sig, nil
}

// FinishAny is Finish: when every share verifies against its verification share, the aggregate
// verifies (FROST's audit is sound), so there is no other subset to try.
func (c *Coordinator) FinishAny() ([]byte, error) { return c.Finish() }

// Audit asks for nothing: a share is checked against the verification share in the key.
func (c *Coordinator) Audit(i int) (scheme.Request, bool, error) {
	if err := c.member(i); err != nil {
		return scheme.Request{}, false, err
	}
	return scheme.Request{}, false, nil
}

// Judge runs verify_signature_share on participant i's held share; a share that fails is
// dropped and the error names i (wrapping scheme.ErrBadShare).
func (c *Coordinator) Judge(i int, _ scheme.Reply) error {
	j := c.s.index(i)
	z, ok := c.z[i]
	if j < 0 || !ok {
		return fmt.Errorf("%w: no share of participant %d held", scheme.ErrInvalidRequest, i)
	}
	if !c.s.verifyShare(j, c.pk.shares[i-1], z) {
		c.Drop(i)
		return fmt.Errorf("%w: participant %d: %w", scheme.ErrBadShare, i, ErrBadShare)
	}
	return nil
}
