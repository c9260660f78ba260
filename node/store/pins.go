package store

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// bucketPINs holds, per client id, the client's PIN state (PIN), sealed like a share: the
// verifier is a salted argon2id hash, which must not be readable (and guessed offline) from a
// copy of the file without the passphrase; the associated data binds it to the node and the
// client, so that a record cannot be moved to another client.
var bucketPINs = []byte("pins")

// PIN is the PIN state of one client on this node: its verifier (an argon2id PHC string,
// internal/pin), its consecutive wrong PINs and whether that count locked it.
type PIN struct {
	Verifier string `json:"verifier"`
	Failures uint32 `json:"failures"`
	Locked   bool   `json:"locked"`
}

func pinAD(nodeID, client string) []byte {
	b := appendLP(nil, []byte("tchsm/store/v1/pin"))
	b = appendLP(b, []byte(nodeID))
	return appendLP(b, []byte(client))
}

// PINs returns the PIN state of every client that has one.
func (s *Store) PINs() (map[string]PIN, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	out := map[string]PIN{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPINs)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			pt, err := s.open(v, pinAD(s.nodeID, string(k)))
			if err != nil {
				return fmt.Errorf("%w: PIN record of %.64q", ErrCorrupt, k)
			}
			var p PIN
			err = json.Unmarshal(pt, &p)
			clear(pt)
			if err != nil || p.Verifier == "" {
				return fmt.Errorf("%w: PIN record of %.64q", ErrCorrupt, k)
			}
			out[string(k)] = p
			return nil
		})
	})
	return out, err
}

// PutPIN stores client's PIN state durably (fsynced before it returns).
func (s *Store) PutPIN(client string, p PIN) error {
	if client == "" || p.Verifier == "" {
		return fmt.Errorf("%w: empty client or verifier", ErrInvalid)
	}
	pt, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer clear(pt)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketPINs)
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		return b.Put([]byte(client), s.seal(pt, pinAD(s.nodeID, client)))
	})
}
