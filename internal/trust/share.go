package trust

import (
	"crypto/ecdh"
	"crypto/hpke"
	"errors"
	"fmt"

	tchsmpb "github.com/tchsm/tchsm/proto"
	"google.golang.org/protobuf/proto"
)

const shareDomain = "tchsm/v1/key-share"

// ErrShareDecrypt is returned when a share ciphertext does not open: wrong recipient, wrong
// key id or cluster, or tampering. It says nothing more, on purpose.
var ErrShareDecrypt = errors.New("trust: key share does not decrypt")

// The HPKE suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
var (
	shareKEM  = hpke.DHKEM(ecdh.X25519())
	shareKDF  = hpke.HKDFSHA256()
	shareAEAD = hpke.AES256GCM()
)

func shareInfo(clusterID, keyID, recipient string) []byte {
	b := appendLPString(nil, shareDomain)
	b = appendLPString(b, clusterID)
	b = appendLPString(b, keyID)
	return appendLPString(b, recipient)
}

// EncryptShare encrypts share to recipient with HPKE; the ciphertext opens only with the
// recipient's key and the same cluster id and key id. share.KeyId must equal keyID.
func EncryptShare(recipient Member, clusterID, keyID string, share *tchsmpb.KeyShare) (enc, ct []byte, err error) {
	if recipient.Role != RoleNode {
		return nil, nil, fmt.Errorf("trust: encrypt share: recipient %s is not a node", recipient.ID)
	}
	if share == nil || share.KeyId != keyID || !ValidKeyID(keyID) || len(share.S) == 0 {
		return nil, nil, fmt.Errorf("trust: encrypt share: share does not match key id")
	}
	pk, err := shareKEM.NewPublicKey(recipient.EncPub)
	if err != nil {
		return nil, nil, fmt.Errorf("trust: encrypt share: recipient %s key: %w", recipient.ID, err)
	}
	enc, sender, err := hpke.NewSender(pk, shareKDF, shareAEAD, shareInfo(clusterID, keyID, recipient.ID))
	if err != nil {
		return nil, nil, fmt.Errorf("trust: encrypt share: %w", err)
	}
	plain, err := proto.Marshal(share)
	if err != nil {
		return nil, nil, fmt.Errorf("trust: encrypt share: encoding: %w", err)
	}
	defer clear(plain)
	ct, err = sender.Seal(nil, plain)
	if err != nil {
		return nil, nil, fmt.Errorf("trust: encrypt share: %w", err)
	}
	return enc, ct, nil
}

// DecryptShare opens a share encrypted to id for keyID in clusterID. The caller must still
// check that the share's index is its own manifest index.
func DecryptShare(id *Identity, clusterID, keyID string, enc, ct []byte) (*tchsmpb.KeyShare, error) {
	if err := id.check(); err != nil {
		return nil, err
	}
	sk, err := hpke.NewDHKEMPrivateKey(id.EncKey)
	if err != nil {
		return nil, fmt.Errorf("trust: decrypt share: %w", err)
	}
	r, err := hpke.NewRecipient(enc, sk, shareKDF, shareAEAD, shareInfo(clusterID, keyID, id.ID))
	if err != nil {
		return nil, fmt.Errorf("%w: bad encapsulated key", ErrShareDecrypt)
	}
	plain, err := r.Open(nil, ct)
	if err != nil {
		return nil, ErrShareDecrypt
	}
	defer clear(plain)
	share := new(tchsmpb.KeyShare)
	if err := proto.Unmarshal(plain, share); err != nil {
		return nil, fmt.Errorf("%w: plaintext is not a key share", ErrShareDecrypt)
	}
	if share.KeyId != keyID || share.Index < 1 || share.Index > MaxNodes || len(share.S) == 0 {
		return nil, fmt.Errorf("%w: share contents do not match key %s", ErrShareDecrypt, keyID)
	}
	return share, nil
}
