package trust

import (
	"crypto/hmac"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	tchsmpb "github.com/tchsm/tchsm/proto"
)

// PIN purposes: the HPKE info of a PIN ciphertext names one, so that a ciphertext made for one
// use opens for no other.
const (
	PINPurposeLogin   = "login"   // PINLogin
	PINPurposeChange  = "change"  // PINChange
	PINPurposeInitial = "initial" // the initial PINs file `tchsm init` writes for a node
)

const (
	pinDomain      = "tchsm/v1/pin"
	sessionExport  = "tchsm/v1/login-session"
	loginMACDomain = "tchsm/v1/logged-in"
	// SessionKeySize is the length of a login session's key.
	SessionKeySize = 32
	// SessionIDSize is the length of a login session's id.
	SessionIDSize = 16
	// MaxPINSecret bounds a PIN ciphertext (two PINs of at most 1 KiB, a time and a nonce).
	MaxPINSecret = 4096
	pinNonceSize = 16
)

// needsLogin are the requests a client sends to a node under a login (in a LoggedIn wrapper)
// once the node holds a PIN verifier for it. Listing keys and health stay open: PKCS#11 tools
// list public objects before they log in.
var needsLogin = map[tchsmpb.BodyType]bool{
	tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST:  true,
	tchsmpb.BodyType_BODY_TYPE_SIGN_BATCH:    true,
	tchsmpb.BodyType_BODY_TYPE_PROOF_REQUEST: true,
	tchsmpb.BodyType_BODY_TYPE_DKG_REQUEST:   true,
	tchsmpb.BodyType_BODY_TYPE_DKG_COMMIT:    true,
	tchsmpb.BodyType_BODY_TYPE_PIN_UNLOCK:    true,
	// A resharing changes every node's share: as a key generation, under a login.
	tchsmpb.BodyType_BODY_TYPE_RESHARE_REQUEST: true,
	tchsmpb.BodyType_BODY_TYPE_RESHARE_COMMIT:  true,
}

// NeedsLogin reports whether a client's request of type bt to a node must come under a login.
func NeedsLogin(bt tchsmpb.BodyType) bool { return needsLogin[bt] }

// ErrPINDecrypt is returned when a PIN ciphertext does not open: wrong node, client, cluster or
// purpose, or tampering.
var ErrPINDecrypt = errors.New("trust: PIN ciphertext does not decrypt")

func pinInfo(clusterID, client, node, purpose string) []byte {
	b := appendLPString(nil, pinDomain)
	b = appendLPString(b, purpose)
	b = appendLPString(b, clusterID)
	b = appendLPString(b, client)
	return appendLPString(b, node)
}

// SealPIN encrypts secret (its issued_at and nonce are filled in) from client to node with
// HPKE for purpose, and returns the session key both ends derive from the HPKE context: the
// node's PINResult.session names it, and only this caller and the node know it.
func SealPIN(node Member, clusterID, client, purpose string, secret *tchsmpb.PINSecret) (enc, ct, sessionKey []byte, err error) {
	if node.Role != RoleNode {
		return nil, nil, nil, fmt.Errorf("trust: seal PIN: %s is not a node", node.ID)
	}
	pk, err := shareKEM.NewPublicKey(node.EncPub)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("trust: seal PIN: node %s key: %w", node.ID, err)
	}
	enc, s, err := hpke.NewSender(pk, shareKDF, shareAEAD, pinInfo(clusterID, client, node.ID, purpose))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("trust: seal PIN: %w", err)
	}
	sec := proto.Clone(secret).(*tchsmpb.PINSecret)
	sec.IssuedAt = time.Now().UnixNano()
	sec.Nonce = make([]byte, pinNonceSize)
	rand.Read(sec.Nonce)
	plain, err := proto.Marshal(sec)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("trust: seal PIN: %w", err)
	}
	defer clear(plain)
	if ct, err = s.Seal(nil, plain); err != nil {
		return nil, nil, nil, fmt.Errorf("trust: seal PIN: %w", err)
	}
	if sessionKey, err = s.Export(sessionExport, SessionKeySize); err != nil {
		return nil, nil, nil, fmt.Errorf("trust: seal PIN: %w", err)
	}
	return enc, ct, sessionKey, nil
}

// OpenPIN opens a PIN ciphertext sealed to id (a node) by client for purpose, and returns the
// secret and the session key. The caller checks the secret's issued_at. The secret holds PINs:
// clear them when done and never log them.
func OpenPIN(id *Identity, clusterID, client, purpose string, enc, ct []byte) (*tchsmpb.PINSecret, []byte, error) {
	if err := id.check(); err != nil {
		return nil, nil, err
	}
	if len(enc) == 0 || len(enc) > 256 || len(ct) == 0 || len(ct) > MaxPINSecret {
		return nil, nil, fmt.Errorf("%w: bad lengths", ErrPINDecrypt)
	}
	sk, err := hpke.NewDHKEMPrivateKey(id.EncKey)
	if err != nil {
		return nil, nil, fmt.Errorf("trust: open PIN: %w", err)
	}
	r, err := hpke.NewRecipient(enc, sk, shareKDF, shareAEAD, pinInfo(clusterID, client, id.ID, purpose))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: bad encapsulated key", ErrPINDecrypt)
	}
	plain, err := r.Open(nil, ct)
	if err != nil {
		return nil, nil, ErrPINDecrypt
	}
	defer clear(plain)
	sec := new(tchsmpb.PINSecret)
	if err := proto.Unmarshal(plain, sec); err != nil || len(sec.Nonce) != pinNonceSize {
		return nil, nil, fmt.Errorf("%w: plaintext is not a PIN secret", ErrPINDecrypt)
	}
	key, err := r.Export(sessionExport, SessionKeySize)
	if err != nil {
		return nil, nil, fmt.Errorf("trust: open PIN: %w", err)
	}
	return sec, key, nil
}

// LoginMAC is the LoggedIn tag: HMAC-SHA256 under the session key over the session id, the
// inner body type and the inner body's exact bytes.
func LoginMAC(key, session []byte, bt tchsmpb.BodyType, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	b := appendLPString(nil, loginMACDomain)
	b = appendLP(b, session)
	b = binary.BigEndian.AppendUint32(b, uint32(bt))
	m.Write(b)
	m.Write(body)
	return m.Sum(nil)
}

// CheckLoginMAC reports, in constant time, whether mac is LoginMAC's tag.
func CheckLoginMAC(key, session []byte, bt tchsmpb.BodyType, body, mac []byte) bool {
	return hmac.Equal(LoginMAC(key, session, bt, body), mac)
}

// InitialPINs is the file `tchsm init -pin-file` writes for one node (config.Node.InitialPINs):
// every client's first PIN, sealed to that node with purpose PINPurposeInitial, so that the
// file says nothing to whoever copies it without the node's identity and passphrase.
type InitialPINs struct {
	Version int                  `json:"version"` // 1
	Node    string               `json:"node"`
	Clients map[string]SealedPIN `json:"clients"`
}

// SealedPIN is one PIN ciphertext (SealPIN's enc and ct).
type SealedPIN struct {
	Enc        []byte `json:"enc"`
	Ciphertext []byte `json:"ciphertext"`
}
