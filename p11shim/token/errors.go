package token

import (
	"context"
	"errors"
	"fmt"

	"github.com/tchsm/tchsm/internal/backend"
)

// Sentinel errors. Each corresponds to exactly one CKR_* value; p11shim holds the table. Errors
// returned by this package wrap one of them (with %w), possibly together with the cause.
var (
	ErrArgumentsBad                = errors.New("token: bad arguments")
	ErrSlotIDInvalid               = errors.New("token: slot id invalid")
	ErrSessionHandleInvalid        = errors.New("token: session handle invalid")
	ErrSessionClosed               = errors.New("token: session closed during the call")
	ErrSessionParallelNotSupported = errors.New("token: parallel sessions not supported")
	ErrSessionReadOnly             = errors.New("token: session is read-only")
	ErrSessionCount                = errors.New("token: too many sessions")
	ErrUserNotLoggedIn             = errors.New("token: user not logged in")
	ErrUserAlreadyLoggedIn         = errors.New("token: user already logged in")
	ErrUserTypeInvalid             = errors.New("token: user type invalid")
	ErrUserPINNotInitialized       = errors.New("token: user PIN not initialised")
	ErrPINIncorrect                = errors.New("token: PIN incorrect")
	ErrPINLocked                   = errors.New("token: PIN locked on the signing nodes")
	ErrPINLenRange                 = errors.New("token: PIN length out of range")
	ErrObjectHandleInvalid         = errors.New("token: object handle invalid")
	ErrKeyHandleInvalid            = errors.New("token: key handle invalid")
	ErrKeyTypeInconsistent         = errors.New("token: key type inconsistent with mechanism")
	ErrKeyFunctionNotPermitted     = errors.New("token: key function not permitted")
	ErrKeySizeRange                = errors.New("token: key size out of range")
	ErrCurveNotSupported           = errors.New("token: curve not supported")
	ErrMechanismInvalid            = errors.New("token: mechanism invalid")
	ErrMechanismParamInvalid       = errors.New("token: mechanism parameter invalid")
	ErrOperationActive             = errors.New("token: operation already active")
	ErrOperationNotInitialized     = errors.New("token: operation not initialised")
	ErrDataLenRange                = errors.New("token: data length out of range")
	ErrBufferTooSmall              = errors.New("token: output buffer too small")
	ErrSignatureInvalid            = errors.New("token: signature invalid")
	ErrSignatureLenRange           = errors.New("token: signature length out of range")
	ErrAttributeTypeInvalid        = errors.New("token: attribute type invalid")
	ErrAttributeSensitive          = errors.New("token: attribute sensitive")
	ErrAttributeValueInvalid       = errors.New("token: attribute value invalid")
	ErrTemplateIncomplete          = errors.New("token: template incomplete")
	ErrTemplateInconsistent        = errors.New("token: template inconsistent")
	ErrActionProhibited            = errors.New("token: action prohibited")
	ErrDeviceError                 = errors.New("token: signing cluster error")
	ErrFunctionRejected            = errors.New("token: refused by the signing nodes' policy")
	ErrDeviceMemory                = errors.New("token: too many objects")
	ErrFunctionNotSupported        = errors.New("token: function not supported")
	ErrRandomSeedNotSupported      = errors.New("token: random seeding not supported")
	ErrClosed                      = errors.New("token: token closed")
	// ErrConfig: the token's settings (config.PKCS11, the "pkcs11" section of the client
	// file) or the rest of that file are invalid.
	ErrConfig = errors.New("token: bad pkcs11 configuration")
)

// backendErr classifies an error from backend.Backend. notFound is the sentinel to use when the
// key is gone; invalid the one for backend.ErrInvalidInput.
func backendErr(op string, err, notFound, invalid error) error {
	switch {
	case errors.Is(err, backend.ErrKeyNotFound):
		return fmt.Errorf("%w: %s: %w", notFound, op, err)
	case errors.Is(err, backend.ErrInvalidInput):
		return fmt.Errorf("%w: %s: %w", invalid, op, err)
	case errors.Is(err, backend.ErrPolicyRefused):
		return fmt.Errorf("%w: %s: %w", ErrFunctionRejected, op, err)
	case errors.Is(err, backend.ErrPINLocked):
		return fmt.Errorf("%w: %s: %w", ErrPINLocked, op, err)
	case errors.Is(err, backend.ErrNotLoggedIn):
		// The nodes lost this process's login and it could not be renewed (the PIN changed
		// elsewhere): the caller must log in again.
		return fmt.Errorf("%w: %s: %w", ErrUserNotLoggedIn, op, err)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%w: %s: %w", ErrSessionClosed, op, err)
	case errors.Is(err, backend.ErrUnauthorized):
		// The client's role (a signer) does not allow it: CKR_ACTION_PROHIBITED, a policy of
		// the token, not a failing device.
		return fmt.Errorf("%w: %s: %w", ErrActionProhibited, op, err)
	default:
		// ErrUnavailable, ErrNotEnoughNodes, ErrUnauthorized, deadline exceeded and anything
		// unexpected: the "device" failed.
		return fmt.Errorf("%w: %s: %w", ErrDeviceError, op, err)
	}
}
