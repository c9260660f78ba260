// Package client talks to a tchsm signing cluster. The PKCS#11 module (p11shim), the CLI and the
// benchmark harness use it through the Backend interface (package internal/backend, which the
// names below alias).
package client

import (
	"fmt"

	"github.com/tchsm/tchsm/internal/backend"
)

// The Backend contract, under the names the client has always exported.
type (
	KeyInfo         = backend.KeyInfo
	GenerateRequest = backend.GenerateRequest
	Backend         = backend.Backend
	PINStatus       = backend.PINStatus
)

// Errors every Backend returns (wrapped with %w); p11shim maps them to CKR_* codes.
var (
	ErrKeyNotFound    = backend.ErrKeyNotFound
	ErrUnavailable    = backend.ErrUnavailable
	ErrNotEnoughNodes = backend.ErrNotEnoughNodes
	ErrInvalidInput   = backend.ErrInvalidInput
	ErrUnauthorized   = backend.ErrUnauthorized
	ErrPolicyRefused  = backend.ErrPolicyRefused
	ErrNotLoggedIn    = backend.ErrNotLoggedIn
	ErrPINIncorrect   = backend.ErrPINIncorrect
	ErrPINLocked      = backend.ErrPINLocked
	ErrNoPINVerifier  = backend.ErrNoPINVerifier
)

// ErrRevoked: more than n-k nodes refuse this client as a sender not in their manifest (a
// manifest update removed it). It wraps ErrUnauthorized, so that the PKCS#11 module answers
// CKR_ACTION_PROHIBITED.
var ErrRevoked = fmt.Errorf("%w: client revoked", backend.ErrUnauthorized)
