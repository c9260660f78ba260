package shoup

import "errors"

// Sentinel errors. Callers test them with errors.Is; the messages never contain secret values.
var (
	ErrInvalidParams   = errors.New("shoup: invalid parameters")
	ErrInvalidKey      = errors.New("shoup: invalid key")
	ErrInvalidIndex    = errors.New("shoup: share index out of range")
	ErrDuplicateIndex  = errors.New("shoup: duplicate share index")
	ErrNotEnoughShares = errors.New("shoup: not enough signature shares")
	ErrInvalidMessage  = errors.New("shoup: invalid message representative")
	ErrBadShare        = errors.New("shoup: signature share fails its proof")
	ErrBadSignature    = errors.New("shoup: combined signature does not verify")
	ErrNotSafePrime    = errors.New("shoup: not a safe prime")
)

// Limits on parameters.
const (
	MinBits    = 1024 // smallest modulus accepted
	MaxBits    = 8192 // largest modulus accepted
	MaxPlayers = 64   // largest n; n! must stay a small exponent
)
