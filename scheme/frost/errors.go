package frost

import "errors"

// Sentinel errors of the package. Callers test them with errors.Is; the scheme-level errors of
// package scheme (ErrInvalidRequest, ErrBadShare, ...) wrap these where they cross the boundary.
// Messages never contain secret values.
var (
	// ErrInvalidElement: a 32-byte string is not the canonical encoding of a point of the
	// prime-order subgroup other than the identity (RFC 9591, section 6.5, DeserializeElement).
	ErrInvalidElement = errors.New("frost: invalid group element")
	// ErrInvalidScalar: a 32-byte string is not a canonical scalar (it is ≥ L), or a scalar that
	// must not be zero is zero.
	ErrInvalidScalar = errors.New("frost: invalid scalar")
	// ErrInvalidCommitmentList: the commitment list is empty, unsorted, has a repeated or out of
	// range identifier, or lacks the participant's own commitment.
	ErrInvalidCommitmentList = errors.New("frost: invalid commitment list")
	// ErrUnknownNonce: the request names a nonce this participant does not hold (never handed
	// out, already used, expired, handed to another requester, or lost in a restart).
	ErrUnknownNonce = errors.New("frost: unknown or used nonce")
	// ErrInvalidEncoding: a payload, share or key record does not decode.
	ErrInvalidEncoding = errors.New("frost: invalid encoding")
	// ErrInvalidKey: public parameters that are inconsistent (verification shares that do not
	// interpolate to the group key, a threshold out of range).
	ErrInvalidKey = errors.New("frost: invalid key")
	// ErrBadShare: a signature share fails verify_signature_share (section 5.4).
	ErrBadShare = errors.New("frost: signature share does not verify")
	// ErrBadSignature: the aggregate signature does not verify with crypto/ed25519.
	ErrBadSignature = errors.New("frost: aggregate signature does not verify")
	// ErrDKG: a distributed key generation that cannot complete (too few qualified dealers, a
	// step out of order, this participant's share does not verify).
	ErrDKG = errors.New("frost: distributed key generation failed")
)

// Limits.
const (
	// MaxPlayers is the largest n (as for Shoup RSA); identifiers are 1..n.
	MaxPlayers = 64
	// MaxMessage is the largest message signed: a DNSSEC RRset fits many times over. The wire
	// may impose a smaller limit.
	MaxMessage = 1 << 20
	// MaxBatch is the most commitments one commit request hands out.
	MaxBatch = 256
)
