// Package backend is the contract between a PKCS#11 token (p11shim/token) and a signing
// cluster: the Backend interface, the key description it returns and the errors it wraps. It
// lives apart from the client so that the token, a pure-Go core, links no transport, broker
// library or dealer: `go list -deps ./p11shim/token` names none of them. client.Client is the
// implementation; tests use fakes.
package backend

import (
	"context"
	"crypto"
	"errors"
	"time"

	"github.com/tchsm/tchsm/scheme"
)

// KeyInfo is the public, signed description of one cluster key.
type KeyInfo struct {
	ID    string // cluster key id: 32 lowercase hex characters
	Label string // CKA_LABEL given at generation
	P11ID []byte // CKA_ID given at generation
	// Algorithm is the key's signature scheme.
	Algorithm scheme.Algorithm
	Bits      int // key size in bits (RSA: modulus length)
	// Public is the ordinary public key that verifies the key's signatures: *rsa.PublicKey
	// for scheme.ShoupRSA, ed25519.PublicKey for scheme.Ed25519FROST, *ecdsa.PublicKey on
	// P-256 for scheme.ECDSAP256HM (Bits 256; K is the exact signer count 2t+1).
	Public  crypto.PublicKey
	K, L    int // threshold k and number of nodes n
	Created time.Time
}

// GenerateRequest asks for a new key: the dealer makes RSA keys, the nodes generate Ed25519
// (and ECDSA P-256) keys together (no machine ever holds those whole).
type GenerateRequest struct {
	Algorithm scheme.Algorithm // 0 means scheme.ShoupRSA
	Bits      int              // RSA: 1024, 2048, 3072 or 4096; Ed25519 and ECDSA P-256: 256 (or 0)
	E         int              // RSA public exponent; 0 means 65537
	Label     string           // CKA_LABEL
	P11ID     []byte           // CKA_ID
	// Nodes is, for keys the nodes generate together (scheme.Ed25519FROST), how many nodes
	// at least must take part. 0: every node is asked, at least k must take part, and every
	// node that takes none must get its share later (its deals queued for it durably, see
	// client.generateDKG), else the generation fails: no key ends up on fewer than n nodes
	// unless the operator says so. With Nodes set, a node that takes no part and whose deals
	// cannot be queued holds no share of the key (logged).
	Nodes int
}

// Backend is what a PKCS#11 token needs from a signing cluster. Every method honours ctx's
// deadline. Every signature returned has been verified against the key's public key.
type Backend interface {
	Keys(ctx context.Context) ([]KeyInfo, error)
	GenerateKey(ctx context.Context, req GenerateRequest) (KeyInfo, error)
	// DeleteKey deletes a key. The key is gone at once; the cluster may keep it restorable
	// (by an admin, `tchsm keys restore`) until the time returned (zero: not said).
	DeleteKey(ctx context.Context, id string) (recoverableUntil time.Time, err error)
	// Sign signs data with mechanism mech, one the key's scheme accepts: for scheme.RSAPKCS
	// data is the PKCS#1 v1.5 payload T (a DigestInfo or raw bytes up to k-11); for the hash
	// mechanisms it is the message.
	Sign(ctx context.Context, id string, mech scheme.Mechanism, data []byte) ([]byte, error)
	PINBackend
	Close() error
}

// AlgorithmLister is implemented by a Backend that says which algorithms' keys it can generate
// and sign with. The token offers (C_GetMechanismList, C_GetMechanismInfo, C_GenerateKeyPair,
// C_SignInit) the mechanisms of scheme.ECDSAP256HM only for a Backend that lists it; a Backend
// without the method supports scheme.ShoupRSA and scheme.Ed25519FROST, as every Backend did
// before the method existed. A Backend that cannot generate a key of an algorithm it lists yet
// returns an error wrapping scheme.ErrNotSupported (the token answers CKR_MECHANISM_INVALID).
type AlgorithmLister interface {
	Algorithms() []scheme.Algorithm
}

// Supports reports whether b supports keys of algorithm a (AlgorithmLister).
func Supports(b Backend, a scheme.Algorithm) bool {
	if a == scheme.Unspecified {
		a = scheme.ShoupRSA
	}
	l, ok := b.(AlgorithmLister)
	if !ok {
		return a == scheme.ShoupRSA || a == scheme.Ed25519FROST
	}
	for _, x := range l.Algorithms() {
		if x == a {
			return true
		}
	}
	return false
}

// Errors every Backend returns (wrapped with %w); p11shim maps them to CKR_* codes.
var (
	ErrKeyNotFound    = errors.New("client: key not found")                  // CKR_KEY_HANDLE_INVALID / object gone
	ErrUnavailable    = errors.New("client: cluster unavailable")            // CKR_DEVICE_ERROR
	ErrNotEnoughNodes = errors.New("client: not enough nodes answered")      // CKR_DEVICE_ERROR
	ErrInvalidInput   = errors.New("client: invalid input")                  // CKR_DATA_LEN_RANGE / CKR_ARGUMENTS_BAD
	ErrUnauthorized   = errors.New("client: not authorised by the manifest") // CKR_ACTION_PROHIBITED (a signer client asked for an admin's operation)
	// ErrPolicyRefused: more than n−k nodes refused the signature under their signing policy
	// (the message names their reasons), so fewer than k can sign it. CKR_FUNCTION_REJECTED.
	ErrPolicyRefused = errors.New("client: refused by the nodes' signing policy")
	// ErrNotLoggedIn: the nodes hold a PIN for this client and it has not logged in (or its
	// login was lost and could not be renewed). CKR_USER_NOT_LOGGED_IN.
	ErrNotLoggedIn = errors.New("client: not logged in to the nodes")
	// ErrPINIncorrect: a node found the PIN wrong (and counted it). CKR_PIN_INCORRECT.
	ErrPINIncorrect = errors.New("client: PIN incorrect")
	// ErrPINLocked: so many nodes locked the client after consecutive wrong PINs that fewer
	// than k can accept a login; an admin client unlocks it. CKR_PIN_LOCKED.
	ErrPINLocked = errors.New("client: PIN locked")
	// ErrNoPINVerifier: no node holds a PIN for this client (a cluster created before the
	// nodes checked PINs, not migrated with `tchsm pin set`).
	ErrNoPINVerifier = errors.New("client: the nodes hold no PIN for this client")
)

// PINStatus is what the nodes said of a client's PIN at its last login or change: the token's
// CKF_USER_PIN_COUNT_LOW, FINAL_TRY and LOCKED flags come from it.
type PINStatus struct {
	// Known is false until a node answered a login or change.
	Known bool
	// Failures is the highest consecutive-failure count among the nodes that answered, and
	// Remaining the fewest tries left before a node locks the client (MaxFailures − Failures).
	Failures, Remaining int
	// Locked is true when too many nodes locked the client for k to accept a login.
	Locked bool
}

// PINBackend is the part of a Backend that logs in to the nodes with the user PIN (C_Login,
// C_Logout, C_SetPIN). client.Client implements it.
type PINBackend interface {
	// Login proves pin to the nodes; nil once at least k accept (or hold no PIN). Errors wrap
	// ErrPINIncorrect, ErrPINLocked, ErrNoPINVerifier, ErrNotEnoughNodes or ErrUnavailable.
	Login(ctx context.Context, pin []byte) (PINStatus, error)
	// Logout forgets the login sessions.
	Logout()
	// ChangePIN replaces the PIN on the nodes.
	ChangePIN(ctx context.Context, oldPIN, newPIN []byte) (PINStatus, error)
}
