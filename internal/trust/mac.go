package trust

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"sync"

	tchsmpb "github.com/tchsm/tchsm/proto"
)

// Pairwise envelope authentication.
//
// An Ed25519 signature on every request and every answer costs a signature and a verification
// per share, on the client and on the node, about a twentieth of a 2048-bit share's CPU time.
// Requests to one member and their answers need no third-party verifiability, so they can be
// authenticated with a MAC instead: each pair of members shares a key that only the two of
// them can compute, X25519 between their manifest encryption keys, expanded with HKDF-SHA256
// under a label that no other use of those keys shares (HPKE labels all its derivations
// "HPKE-v1"; its decapsulation never reveals a raw X25519 output). The tag covers the
// recipient's id and the same canonical encoding the signature would, so a tag for one node
// cannot be shown to another, and an answer cannot be reflected to its sender as a request.
// Everything a third party must check stays signed: key records (by the dealer), key share
// deliveries and their acknowledgements, and messages to queues that are not one member's.

const (
	macSize      = sha256.Size
	pairKeyLabel = "tchsm/v1/pair-mac-key"
	macDomain    = "tchsm/v1/envelope-mac"
)

// pairCache keeps the pair keys an identity has derived, by peer. It is bounded by the
// manifest: only members have keys.
type pairCache struct{ m sync.Map }

// pairID names a pair key by everything it is derived from but the private key, which belongs
// to the identity self.ID holds.
type pairID struct {
	cluster, self, selfPub, peer, peerPub string
}

// key returns the MAC key between self and peer in clusterID.
func (c *pairCache) key(self *Identity, peer Member, clusterID string) ([]byte, error) {
	if self == nil || self.EncKey == nil {
		return nil, fmt.Errorf("%w: no X25519 key for a pair key", ErrInvalidIdentity)
	}
	id := pairID{cluster: clusterID, self: self.ID, selfPub: string(self.EncKey.PublicKey().Bytes()),
		peer: peer.ID, peerPub: string(peer.EncPub)}
	if k, ok := c.m.Load(id); ok {
		return k.([]byte), nil
	}
	k, err := pairKey(self, peer, clusterID)
	if err != nil {
		return nil, err
	}
	c.m.Store(id, k)
	return k, nil
}

// pairKey derives the MAC key self and peer share; both sides compute the same bytes.
func pairKey(self *Identity, peer Member, clusterID string) ([]byte, error) {
	if self == nil || self.EncKey == nil || self.EncKey.Curve() != ecdh.X25519() {
		return nil, fmt.Errorf("%w: no X25519 key for a pair key", ErrInvalidIdentity)
	}
	pub, err := ecdh.X25519().NewPublicKey(peer.EncPub)
	if err != nil {
		return nil, fmt.Errorf("%w: %s's encryption key: %v", ErrInvalidIdentity, peer.ID, err)
	}
	secret, err := self.EncKey.ECDH(pub) // fails on low-order points (all-zero output)
	if err != nil {
		return nil, fmt.Errorf("%w: pair key with %s: %v", ErrInvalidIdentity, peer.ID, err)
	}
	defer clear(secret)
	a, b := self.Public(), peer
	if a.ID > b.ID {
		a, b = b, a
	}
	info := appendLPString(nil, clusterID)
	info = appendLPString(info, a.ID)
	info = appendLP(info, a.EncPub)
	info = appendLPString(info, b.ID)
	info = appendLP(info, b.EncPub)
	return hkdf.Key(sha256.New, secret, []byte(pairKeyLabel), string(info), 32)
}

// envelopeMAC is the tag of env, addressed to env.Recipient, under key.
func envelopeMAC(key []byte, env *tchsmpb.Envelope) []byte {
	m := hmac.New(sha256.New, key)
	in := appendLPString(nil, macDomain)
	in = appendLPString(in, env.Recipient)
	m.Write(in)
	m.Write(EnvelopeSigningInput(env))
	return m.Sum(nil)
}
