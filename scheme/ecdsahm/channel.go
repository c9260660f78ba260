package ecdsahm

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"

	"filippo.io/edwards25519"
)

// Channel is a participant's authenticated, encrypted channel to each other participant,
// relayed by the coordinator (the client), which may read, drop, reorder or replay what it
// relays but can neither read nor forge a message between two nodes.
//
// The keys come from the nodes' long-term DKG keys in the manifest (scheme.DKGParams: an
// edwards25519 scalar, and every participant's public point, as for the Ed25519 DKG): the
// static Diffie-Hellman value s_i·P_j = s_j·P_i, per session through HKDF-SHA256 into an
// AES-256-GCM key for each direction, so that only i and j know it. The additional data binds
// every message to (protocol, session, round, sender, recipient); the nonce is random, so a
// participant asked to run a session twice never reuses one. A message that opens came from
// its claimed sender, for this session, round and recipient.
//
// What static Diffie-Hellman does not give: forward secrecy (someone who records the relayed
// traffic and later steals a node's long-term key reads what that node received in earlier
// runs: its shares of earlier presignatures, as if the node had been corrupt then; stealing
// t+1 long-term keys is as bad as stealing t+1 key shares), and key-compromise impersonation
// (with node i's long-term key one can forge messages to i, which only i, already corrupt,
// would believe). Both are within the threat model of t corrupt nodes; an ephemeral key
// exchange per batch would add forward secrecy at one more scalar multiplication per pair.
type Channel struct {
	self, n int
	shared  [][]byte // shared[j-1]: the static DH value with participant j (nil for self)
}

// NewChannel makes participant self's channel from its long-term secret (32 bytes, a
// canonical edwards25519 scalar) and the long-term public keys of participants 1..n
// (publics[i-1], 32-byte canonical points, not of small order). They are trusted parameters,
// from the manifest.
func NewChannel(self int, secret []byte, publics [][]byte) (*Channel, error) {
	n := len(publics)
	if n < 3 || n > MaxPlayers || self < 1 || self > n {
		return nil, fmt.Errorf("%w: channel for %d of %d", ErrInvalidParams, self, n)
	}
	s, err := edwards25519.NewScalar().SetCanonicalBytes(secret)
	if err != nil {
		return nil, fmt.Errorf("%w: long-term secret: %v", ErrInvalidParams, err)
	}
	mine := new(edwards25519.Point).ScalarBaseMult(s)
	c := &Channel{self: self, n: n, shared: make([][]byte, n)}
	seen := map[string]bool{}
	for i, b := range publics {
		p, err := new(edwards25519.Point).SetBytes(b)
		if err != nil || string(p.Bytes()) != string(b) {
			return nil, fmt.Errorf("%w: long-term key of %d is not a canonical point", ErrInvalidParams, i+1)
		}
		if new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1 {
			return nil, fmt.Errorf("%w: long-term key of %d has small order", ErrInvalidParams, i+1)
		}
		if seen[string(b)] {
			return nil, fmt.Errorf("%w: long-term key of %d repeated", ErrInvalidParams, i+1)
		}
		seen[string(b)] = true
		if i+1 == self {
			if p.Equal(mine) != 1 {
				return nil, fmt.Errorf("%w: the long-term secret is not participant %d's", ErrInvalidParams, self)
			}
			continue
		}
		c.shared[i] = new(edwards25519.Point).ScalarMult(s, p).Bytes()
	}
	return c, nil
}

// Self returns this participant's index; N the number of participants.
func (c *Channel) Self() int { return c.self }
func (c *Channel) N() int    { return c.n }

const channelLabel = "tchsm/ecdsahm/channel/v1"

func (c *Channel) aead(peer, from, to int, proto string, session []byte) (cipher.AEAD, []byte, error) {
	if peer < 1 || peer > c.n || peer == c.self {
		return nil, nil, fmt.Errorf("%w: no channel to %d", ErrProtocol, peer)
	}
	var ad []byte
	ad = append(ad, channelLabel...)
	ad = appendLP(ad, []byte(proto))
	ad = appendLP(ad, session)
	ad = binary.BigEndian.AppendUint16(ad, uint16(from))
	ad = binary.BigEndian.AppendUint16(ad, uint16(to))
	key, err := hkdf.Key(sha256.New, c.shared[peer-1], []byte(channelLabel), string(ad), 32)
	if err != nil {
		return nil, nil, err
	}
	defer clear(key)
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, nil, err
	}
	g, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, nil, err
	}
	return g, ad, nil
}

// seal encrypts body from this participant to participant to, for round of session of proto.
func (c *Channel) seal(to int, proto string, session []byte, round byte, body []byte) ([]byte, error) {
	g, ad, err := c.aead(to, c.self, to, proto, session)
	if err != nil {
		return nil, err
	}
	ad = append(ad, round)
	nonce := make([]byte, g.NonceSize(), g.NonceSize()+len(body)+g.Overhead())
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return nil, fmt.Errorf("ecdsahm: reading randomness: %w", err)
	}
	return g.Seal(nonce, nonce, body, ad), nil
}

// open decrypts a message from participant from to this one, for round of session of proto.
func (c *Channel) open(from int, proto string, session []byte, round byte, payload []byte) ([]byte, error) {
	g, ad, err := c.aead(from, from, c.self, proto, session)
	if err != nil {
		return nil, err
	}
	ad = append(ad, round)
	if len(payload) < g.NonceSize()+g.Overhead() {
		return nil, fmt.Errorf("%w: sealed message too short", ErrProtocol)
	}
	body, err := g.Open(nil, payload[:g.NonceSize()], payload[g.NonceSize():], ad)
	if err != nil {
		return nil, fmt.Errorf("%w: message from %d does not open", ErrProtocol, from)
	}
	return body, nil
}

// Wipe forgets the channel's keys.
func (c *Channel) Wipe() {
	for _, k := range c.shared {
		clear(k)
	}
}

func appendLP(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}
