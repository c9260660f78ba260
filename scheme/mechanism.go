package scheme

import (
	"crypto"
	"errors"
	"fmt"
)

// Mechanism names a PKCS#11-level signing mechanism as Backend.Sign takes it. The numbering is
// tchsm's own and must never change (a future wire field may carry it). The PKCS#11 token's
// mechanism table (p11shim/token/mechanisms.go) names the one each CKM_* value corresponds to
// and the `tchsm sign -mech` names. For a one-part C_Sign with a hash mechanism the token
// passes the message on and the client sends it to the nodes with its DigestInfo (a node with
// a signing policy hashes and checks it itself); multi-part signatures are hashed in the module
// and sent as RSAPKCS over the DigestInfo. SignRequest.mechanism carries these numbers. Each
// scheme accepts its own mechanisms (Scheme.Mechanisms).
type Mechanism int32

const (
	// RSAPKCS is CKM_RSA_PKCS: the input is the payload T itself (normally a DigestInfo).
	RSAPKCS Mechanism = 1
	// SHA1RSAPKCS and the following hash the message and wrap the digest in a DigestInfo.
	SHA1RSAPKCS   Mechanism = 2
	SHA224RSAPKCS Mechanism = 3
	SHA256RSAPKCS Mechanism = 4
	SHA384RSAPKCS Mechanism = 5
	SHA512RSAPKCS Mechanism = 6
	// EDDSA is CKM_EDDSA without parameters: pure Ed25519 (RFC 8032) over the whole message,
	// which the token sends as it is (no hash in the module: Ed25519 hashes the message
	// itself, twice). Only Ed25519FROST keys accept it.
	EDDSA Mechanism = 7
	// ECDSA is CKM_ECDSA: the input is the digest itself, which for the P-256 keys tchsm
	// makes (ECDSAP256HM) must be exactly 32 bytes (a SHA-256 digest, as DNSSEC algorithm 13
	// signs); the signature is r || s, 64 bytes.
	ECDSA Mechanism = 8
	// ECDSASHA256 is CKM_ECDSA_SHA256: the message, hashed with SHA-256, then as ECDSA.
	ECDSASHA256 Mechanism = 9
)

// ECDSADigestSize is the one digest length ECDSA takes for a P-256 key.
const ECDSADigestSize = 32

// ErrUnknownMechanism is returned for a Mechanism value tchsm does not implement, or one the
// key's scheme does not accept.
var ErrUnknownMechanism = errors.New("scheme: unknown mechanism")

// Hash returns the hash function a mechanism applies before signing (0 for RSAPKCS, EDDSA
// and ECDSA, which take their input as it is).
func (m Mechanism) Hash() (crypto.Hash, error) {
	switch m {
	case RSAPKCS, EDDSA, ECDSA:
		return 0, nil
	case ECDSASHA256:
		return crypto.SHA256, nil
	case SHA1RSAPKCS:
		return crypto.SHA1, nil
	case SHA224RSAPKCS:
		return crypto.SHA224, nil
	case SHA256RSAPKCS:
		return crypto.SHA256, nil
	case SHA384RSAPKCS:
		return crypto.SHA384, nil
	case SHA512RSAPKCS:
		return crypto.SHA512, nil
	}
	return 0, fmt.Errorf("%w: %d", ErrUnknownMechanism, int32(m))
}

func (m Mechanism) String() string {
	switch m {
	case RSAPKCS:
		return "RSA_PKCS"
	case SHA1RSAPKCS:
		return "SHA1_RSA_PKCS"
	case SHA224RSAPKCS:
		return "SHA224_RSA_PKCS"
	case SHA256RSAPKCS:
		return "SHA256_RSA_PKCS"
	case SHA384RSAPKCS:
		return "SHA384_RSA_PKCS"
	case SHA512RSAPKCS:
		return "SHA512_RSA_PKCS"
	case EDDSA:
		return "EDDSA"
	case ECDSA:
		return "ECDSA"
	case ECDSASHA256:
		return "ECDSA_SHA256"
	}
	return fmt.Sprintf("Mechanism(%d)", int32(m))
}
