package trust

import (
	"crypto/hkdf"
	"crypto/sha512"
	"fmt"

	"filippo.io/edwards25519"

	"github.com/tchsm/tchsm/scheme/frost"
)

// dkgKeyInfo separates the DKG key from every other use of the identity's seed.
const dkgKeyInfo = "tchsm/v1/dkg-long-term-key"

// DKGKey returns a node's long-term key for distributed key generations (scheme/frost/dkg): an
// edwards25519 scalar and its point, 32 bytes each, derived from the identity's Ed25519 seed
// with HKDF-SHA-512 (salt: the identity's id), so that identity files need no new field and the
// key is exactly as protected as the identity. The manifest lists the point (Member.DKGPub).
// Nodes only.
func (id *Identity) DKGKey() (secret, public []byte, err error) {
	if err := id.check(); err != nil {
		return nil, nil, err
	}
	if id.Role != RoleNode {
		return nil, nil, fmt.Errorf("%w: %s is a %s: only nodes have a DKG key", ErrInvalidIdentity, id.ID, id.Role)
	}
	wide, err := hkdf.Key(sha512.New, id.SignKey.Seed(), []byte(id.ID), dkgKeyInfo, 64)
	if err != nil {
		return nil, nil, fmt.Errorf("trust: deriving the DKG key: %w", err)
	}
	defer clear(wide)
	s, err := edwards25519.NewScalar().SetUniformBytes(wide)
	if err != nil {
		return nil, nil, fmt.Errorf("trust: deriving the DKG key: %w", err)
	}
	return s.Bytes(), new(edwards25519.Point).ScalarBaseMult(s).Bytes(), nil
}

// checkDKGPub checks a manifest's DKG public key as FROST checks every element: a canonical
// encoding of a point of the prime-order subgroup other than the identity.
func checkDKGPub(b []byte) error {
	_, err := frost.DecodeElement(b)
	return err
}

// DKGPublicKeys returns the nodes' DKG public keys in index order (Public[i-1] is node i's), as
// scheme.DKGParams takes them, or an error naming the first node without one (a manifest
// written before this release: re-run `tchsm init`, or add each node's dkg_pub, which
// `tchsm identity show` prints).
func (m *Manifest) DKGPublicKeys() ([][]byte, error) {
	out := make([][]byte, m.N())
	for i := 1; i <= m.N(); i++ {
		n, ok := m.NodeByIndex(i)
		if !ok {
			return nil, fmt.Errorf("%w: no node %d", ErrInvalidManifest, i)
		}
		if len(n.DKGPub) == 0 {
			return nil, fmt.Errorf("%w: node %s has no dkg_pub: the manifest predates distributed key generation; regenerate it with tchsm init (or add each node's dkg_pub)", ErrInvalidManifest, n.ID)
		}
		out[i-1] = n.DKGPub
	}
	return out, nil
}
