package ecdsahm

import "errors"

// Sentinel errors of the package, tested with errors.Is. Messages never contain secret values.
var (
	// ErrInvalidScalar: a string that is not 32 bytes, or is ≥ n, or a scalar that must not be
	// zero is zero.
	ErrInvalidScalar = errors.New("ecdsahm: invalid scalar")
	// ErrInvalidPoint: a string that is not a 65-byte uncompressed SEC 1 encoding of a P-256
	// point on the curve (the point at infinity has no such encoding).
	ErrInvalidPoint = errors.New("ecdsahm: invalid point")
	// ErrInvalidEncoding: a payload, share or key record that does not decode.
	ErrInvalidEncoding = errors.New("ecdsahm: invalid encoding")
	// ErrInvalidParams: n, t, a signer set or a batch that the key's parameters do not allow.
	ErrInvalidParams = errors.New("ecdsahm: invalid parameters")
	// ErrProtocol: a protocol run that cannot go on: a message missing, repeated, not
	// authentic, or a step out of order.
	ErrProtocol = errors.New("ecdsahm: protocol failure")
	// ErrInconsistent: opened values that are not consistent (an opening in the exponent not on
	// one degree-t polynomial, W ≠ w·G, a Feldman share that does not match its commitment):
	// some participant cheated; the run aborts.
	ErrInconsistent = errors.New("ecdsahm: inconsistent shares (a participant cheated)")
	// ErrUsed: a presignature that was already consumed (signed with, prepared, or aborted).
	ErrUsed = errors.New("ecdsahm: presignature already used")
	// ErrBinding: a sign request that does not match the presignature's binding (key, signer
	// set, presignature id), or an echo that shows another participant was asked something else.
	ErrBinding = errors.New("ecdsahm: request does not match the presignature's binding")
	// ErrSplitView: the echo round shows that the participants of the set were not all asked
	// to sign the same digest with the same presignature and set.
	ErrSplitView = errors.New("ecdsahm: split view: participants were asked different things")
	// ErrZeroDigest: a digest ≡ 0 mod n (ECDSA signatures on it are forgeable by anyone).
	ErrZeroDigest = errors.New("ecdsahm: digest is zero modulo n")
	// ErrBadSignature: the combined signature does not verify with crypto/ecdsa.Verify: some
	// signature share was wrong (with exactly 2t+1 shares of a degree-2t sharing there is no
	// redundancy to say which).
	ErrBadSignature = errors.New("ecdsahm: combined signature does not verify")
)

// Limits.
const (
	// MaxPlayers is the largest n.
	MaxPlayers = 64
	// MaxBatch is the most presignatures one presigning run makes.
	MaxBatch = 1024
	// MaxDigest is the longest digest accepted (crypto/ecdsa's rule: the leftmost 32 bytes are
	// used).
	MaxDigest = 64
)
