package threshold

import "errors"

// Sentinel errors. Callers test them with errors.Is; the messages never contain secret values.
var (
	ErrInvalidParams   = errors.New("threshold: invalid parameters")
	ErrInvalidKey      = errors.New("threshold: invalid key")
	ErrInvalidIndex    = errors.New("threshold: share index out of range")
	ErrDuplicateIndex  = errors.New("threshold: duplicate share index")
	ErrNotEnoughShares = errors.New("threshold: not enough signature shares")
	ErrInvalidMessage  = errors.New("threshold: invalid message representative")
	ErrBadShare        = errors.New("threshold: signature share fails its proof")
	ErrBadSignature    = errors.New("threshold: combined signature does not verify")
	ErrNotSafePrime    = errors.New("threshold: not a safe prime")
)

// Limits on parameters.
const (
	MinBits    = 1024 // smallest modulus accepted
	MaxBits    = 8192 // largest modulus accepted
	MaxPlayers = 64   // largest n; n! must stay a small exponent
)
