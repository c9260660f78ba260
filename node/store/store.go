// Package store is a signing node's durable share store: one bbolt file holding, per key, the
// dealer-signed key record (public) and the node's secret share s_i encrypted at rest.
//
// # File layout
//
// Buckets of the bbolt file:
//
//	meta        version (1), node (the node id the store belongs to), kdf (Argon2id
//	            parameters and a random 16-byte salt), verifier (an AEAD ciphertext of a
//	            constant, so that a wrong passphrase is a clear error at Open)
//	records     key id -> SignedKeyRecord (protobuf bytes, as the dealer signed them)
//	shares      key id -> nonce(24) || XChaCha20-Poly1305 ciphertext of index(4, big endian) ||
//	            the share in its scheme's encoding (scheme.Scheme.MarshalShare; RSA: s_i)
//	tombstones  key id -> deletion time (Unix seconds, 8 bytes big endian), then, since
//	            recoverable deletion, the issue time of the DeleteKey obeyed (Unix ns, 8 bytes)
//	trash_records, trash_shares
//	            key id -> the deleted key's record and sealed share, moved there unchanged
//	            (still encrypted, same associated data) until Purge removes them
//	restored    key id -> issue time (Unix ns, 8 bytes) of the RestoreKey that brought it back
//	pins        client id -> nonce(24) || XChaCha20-Poly1305 ciphertext of the client's PIN
//	            state (JSON: argon2id verifier, consecutive failures, locked; see PIN), with
//	            associated data binding it to the node id and the client id
//
// The share's associated data binds it to the store's node id, the key id and the SHA-256 of the
// stored record bytes: a share cannot be moved to another key or node, nor its record swapped
// for another, without the AEAD failing. The AEAD key is derived once, at Open, from the
// passphrase with Argon2id; it and the decrypted shares live only in memory.
//
// The store knows no scheme: a key's record names its algorithm (scheme.Of), and the scheme
// found in scheme/schemes decodes its public key and its share. Stores written before records
// named an algorithm hold RSA keys, which is what a record without one means.
//
// A deleted key leaves a tombstone, so that an old share delivery redelivered by the broker
// does not bring it back (Put returns ErrDeleted). Key ids are random and never reused.
//
// Deletion is recoverable: Delete moves the record and the sealed share to the trash buckets,
// where they stay encrypted and out of memory, and Restore moves them back (a RestoreKey
// issued after the DeleteKey it undoes; a DeleteKey issued before the latest restore is
// stale and ignored, so that neither message can be replayed against the other). Purge
// empties the trash of keys deleted before a time; the tombstone stays. Stores written by
// releases before recoverable deletion have 8-byte tombstones and no trash: their deleted
// keys are simply not restorable; older releases ignore the new buckets.
//
// Every write is a bbolt transaction, which fsyncs before Update returns: once Put returned nil
// the share survives a crash.
package store

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/schemes"
)

// Sentinel errors; every error of this package wraps one of them (or a bbolt/OS error).
var (
	ErrWrongPassphrase = errors.New("store: wrong passphrase")
	ErrWrongNode       = errors.New("store: the store belongs to another node")
	ErrCorrupt         = errors.New("store: corrupted store file")
	ErrNotFound        = errors.New("store: no such key")
	ErrDeleted         = errors.New("store: key was deleted")
	ErrConflict        = errors.New("store: a different share is stored for this key")
	ErrInvalid         = errors.New("store: invalid key or share")
	ErrLocked          = errors.New("store: file in use by another process")
	ErrClosed          = errors.New("store: closed")
	ErrPurged          = errors.New("store: the deleted key's share is no longer kept")
	ErrStale           = errors.New("store: request issued before the deletion or restore it would undo")
	// ErrNewerFormat: the store was written by a newer release, in a format this one does not
	// read. Nothing is changed in it (docs/operations/upgrade.md: roll the node forward again).
	ErrNewerFormat = errors.New("store: written by a newer release")
)

const (
	formatVersion = 1
	saltSize      = 16
	verifierText  = "tchsm share store verifier v1"
)

var (
	bucketMeta       = []byte("meta")
	bucketRecords    = []byte("records")
	bucketShares     = []byte("shares")
	bucketTombstones = []byte("tombstones")
	bucketTrashRecs  = []byte("trash_records")
	bucketTrashShare = []byte("trash_shares")
	bucketRestored   = []byte("restored")

	metaVersion  = []byte("version")
	metaNode     = []byte("node")
	metaKDF      = []byte("kdf")
	metaVerifier = []byte("verifier")
)

// KDF are the Argon2id parameters used when a store is created (an existing store keeps the ones
// it was created with).
type KDF struct {
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
}

// DefaultKDF is RFC 9106's second recommended option, with 2 lanes: 64 MiB, 3 passes.
var DefaultKDF = KDF{Time: 3, MemoryKiB: 64 << 10, Threads: 2}

type kdfRecord struct {
	Name string `json:"name"`
	KDF
	Salt []byte `json:"salt"`
}

// Options configures Open.
type Options struct {
	// NodeID is the id of the node that owns the store. Required; a store created for one node
	// refuses to open for another.
	NodeID string
	// Manifest, when set, is used to verify every stored record again at Open (a record that no
	// longer verifies is reported as ErrCorrupt).
	Manifest *trust.Manifest
	// KDF for a new store; zero means DefaultKDF.
	KDF KDF
}

// Key is one stored key: its dealer-signed record and the node's share.
type Key struct {
	ID     string
	Signed *tchsmpb.SignedKeyRecord
	Record *tchsmpb.KeyRecord
	// Scheme is the key's signature scheme, named by its record.
	Scheme scheme.Scheme
	// Public is built only from the stored, dealer-verified record. It caches its
	// precomputation: share it, do not copy it.
	Public scheme.PublicKey
	// Share is the node's secret share. Do not modify it; never log it.
	Share scheme.SecretShare
	// Participant is the node's side of the key's signing sessions, made once per loaded key;
	// it holds whatever per-key state the scheme keeps.
	Participant scheme.Participant
}

// Store is an open share store. It is safe for concurrent use.
type Store struct {
	db     *bolt.DB
	nodeID string
	aead   cipherAEAD
	m      *trust.Manifest // verifies restored records again; may be nil

	mu     sync.RWMutex
	keys   map[string]*Key
	closed bool
}

// cipherAEAD is the subset of cipher.AEAD used here.
type cipherAEAD interface {
	NonceSize() int
	Overhead() int
	Seal(dst, nonce, plaintext, additionalData []byte) []byte
	Open(dst, nonce, ciphertext, additionalData []byte) ([]byte, error)
}

// Open opens (creating it if needed) the store file at path. A new file gets a random salt and a
// verifier; an existing one must have been created for opts.NodeID and with the same passphrase.
// Every stored share is decrypted into memory.
func Open(path string, passphrase []byte, opts Options) (*Store, error) {
	if len(passphrase) == 0 {
		return nil, fmt.Errorf("%w: empty passphrase", ErrWrongPassphrase)
	}
	if opts.NodeID == "" {
		return nil, fmt.Errorf("%w: no node id", ErrInvalid)
	}
	if opts.KDF == (KDF{}) {
		opts.KDF = DefaultKDF
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, path)
		}
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		db.Close()
		return nil, fmt.Errorf("store: %s is readable by group or others (mode %v)", path, fi.Mode().Perm())
	}
	s := &Store{db: db, nodeID: opts.NodeID, m: opts.Manifest, keys: map[string]*Key{}}
	if err := s.init(passphrase, opts); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.load(opts.Manifest); err != nil {
		s.wipe()
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) init(passphrase []byte, opts Options) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketRecords, bucketShares, bucketTombstones, bucketTrashRecs, bucketTrashShare, bucketRestored} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("store: %w", err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			// A new store.
			var err error
			if meta, err = tx.CreateBucket(bucketMeta); err != nil {
				return fmt.Errorf("store: %w", err)
			}
			kr := kdfRecord{Name: "argon2id", KDF: opts.KDF, Salt: make([]byte, saltSize)}
			if _, err := rand.Read(kr.Salt); err != nil {
				return fmt.Errorf("store: %w", err)
			}
			kb, err := json.Marshal(kr)
			if err != nil {
				return fmt.Errorf("store: %w", err)
			}
			if s.aead, err = deriveAEAD(passphrase, kr); err != nil {
				return err
			}
			ver := s.seal([]byte(verifierText), verifierAD(s.nodeID))
			for k, v := range map[string][]byte{
				string(metaVersion): {formatVersion}, string(metaNode): []byte(s.nodeID),
				string(metaKDF): kb, string(metaVerifier): ver,
			} {
				if err := meta.Put([]byte(k), v); err != nil {
					return fmt.Errorf("store: %w", err)
				}
			}
			return nil
		}
		if v := meta.Get(metaVersion); len(v) == 1 && v[0] > formatVersion {
			return fmt.Errorf("%w: format version %d, this release reads %d", ErrNewerFormat, v[0], formatVersion)
		} else if len(v) != 1 || v[0] != formatVersion {
			return fmt.Errorf("%w: unknown format version", ErrCorrupt)
		}
		if node := meta.Get(metaNode); string(node) != s.nodeID {
			return fmt.Errorf("%w: created for %.64q, opened as %q", ErrWrongNode, node, s.nodeID)
		}
		var kr kdfRecord
		if err := json.Unmarshal(meta.Get(metaKDF), &kr); err != nil || kr.Name != "argon2id" || len(kr.Salt) != saltSize {
			return fmt.Errorf("%w: bad kdf parameters", ErrCorrupt)
		}
		if kr.Time < 1 || kr.Time > 100 || kr.MemoryKiB < 8 || kr.MemoryKiB > 4<<20 || kr.Threads < 1 {
			return fmt.Errorf("%w: kdf parameters out of range", ErrCorrupt)
		}
		var err error
		if s.aead, err = deriveAEAD(passphrase, kr); err != nil {
			return err
		}
		pt, err := s.open(meta.Get(metaVerifier), verifierAD(s.nodeID))
		if err != nil || subtle.ConstantTimeCompare(pt, []byte(verifierText)) != 1 {
			return ErrWrongPassphrase
		}
		return nil
	})
}

func deriveAEAD(passphrase []byte, kr kdfRecord) (cipherAEAD, error) {
	k := argon2.IDKey(passphrase, kr.Salt, kr.Time, kr.MemoryKiB, kr.Threads, chacha20poly1305.KeySize)
	defer clear(k)
	a, err := chacha20poly1305.NewX(k)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return a, nil
}

func (s *Store) seal(pt, ad []byte) []byte {
	out := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(pt)+s.aead.Overhead())
	rand.Read(out)
	return s.aead.Seal(out, out, pt, ad)
}

func (s *Store) open(ct, ad []byte) ([]byte, error) {
	if len(ct) < s.aead.NonceSize()+s.aead.Overhead() {
		return nil, fmt.Errorf("%w: short ciphertext", ErrCorrupt)
	}
	return s.aead.Open(nil, ct[:s.aead.NonceSize()], ct[s.aead.NonceSize():], ad)
}

func appendLP(b []byte, v []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

func verifierAD(nodeID string) []byte {
	b := appendLP(nil, []byte("tchsm/store/v1/verifier"))
	return appendLP(b, []byte(nodeID))
}

func shareAD(nodeID, keyID string, record []byte) []byte {
	h := sha256.Sum256(record)
	b := appendLP(nil, []byte("tchsm/store/v1/share"))
	b = appendLP(b, []byte(nodeID))
	b = appendLP(b, []byte(keyID))
	return appendLP(b, h[:])
}

// load decrypts every stored key into the cache.
func (s *Store) load(m *trust.Manifest) error {
	return s.db.View(func(tx *bolt.Tx) error {
		recs, shares := tx.Bucket(bucketRecords), tx.Bucket(bucketShares)
		return recs.ForEach(func(id, raw []byte) error {
			k, err := s.decode(string(id), raw, shares.Get(id), m)
			if err != nil {
				return err
			}
			s.keys[k.ID] = k
			return nil
		})
	})
}

func (s *Store) decode(id string, rawRecord, sealedShare []byte, m *trust.Manifest) (*Key, error) {
	signed := new(tchsmpb.SignedKeyRecord)
	if err := proto.Unmarshal(rawRecord, signed); err != nil {
		return nil, fmt.Errorf("%w: key %.64q: record: %v", ErrCorrupt, id, err)
	}
	var rec *tchsmpb.KeyRecord
	if m != nil {
		// A generated key's record whose endorsers were partly replaced since it was stored
		// loads too (the share's seal binds the record, so it is the one this node checked):
		// the node must start, and a resharing gives the key a new record.
		var err error
		if rec, _, err = trust.VerifyKeyRecordBeforeReplacement(m, signed); err != nil {
			return nil, fmt.Errorf("%w: key %.64q: %v", ErrCorrupt, id, err)
		}
	} else {
		rec = new(tchsmpb.KeyRecord)
		if err := proto.Unmarshal(signed.GetRecord(), rec); err != nil {
			return nil, fmt.Errorf("%w: key %.64q: record: %v", ErrCorrupt, id, err)
		}
	}
	if rec.GetKeyId() != id {
		return nil, fmt.Errorf("%w: key %.64q holds the record of %.64q", ErrCorrupt, id, rec.GetKeyId())
	}
	sch, pk, err := PublicKey(rec)
	if err != nil {
		return nil, fmt.Errorf("%w: key %.64q: %v", ErrCorrupt, id, err)
	}
	pt, err := s.open(sealedShare, shareAD(s.nodeID, id, rawRecord))
	if err != nil {
		return nil, fmt.Errorf("%w: key %.64q: share does not decrypt", ErrCorrupt, id)
	}
	defer clear(pt)
	if len(pt) < 4 {
		return nil, fmt.Errorf("%w: key %.64q: share length", ErrCorrupt, id)
	}
	share, err := sch.ParseShare(pk, int(binary.BigEndian.Uint32(pt)), pt[4:])
	if err != nil {
		return nil, fmt.Errorf("%w: key %.64q: share length or index: %v", ErrCorrupt, id, err)
	}
	return newKey(id, signed, rec, sch, pk, share)
}

func newKey(id string, signed *tchsmpb.SignedKeyRecord, rec *tchsmpb.KeyRecord, sch scheme.Scheme, pk scheme.PublicKey, share scheme.SecretShare) (*Key, error) {
	p, err := sch.NewParticipant(pk, share)
	if err != nil {
		share.Wipe()
		return nil, fmt.Errorf("%w: key %.64q: %v", ErrInvalid, id, err)
	}
	return &Key{ID: id, Signed: signed, Record: rec, Scheme: sch, Public: pk, Share: share, Participant: p}, nil
}

// PublicKey returns the scheme and the public key of a (verified) key record: trust.PublicKey,
// with its error reported as ErrInvalid.
func PublicKey(rec *tchsmpb.KeyRecord) (scheme.Scheme, scheme.PublicKey, error) {
	pk, err := trust.PublicKey(rec)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	sch, err := schemes.Lookup(pk.Algorithm())
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return sch, pk, nil
}

// Put stores a key: its signed record (already verified by the caller, and rec its decoded
// form) and the node's share. It returns after the transaction is on disk. Putting the same
// record and share again is a no-op; a different record or share for a stored key id gives
// ErrConflict; a deleted key gives ErrDeleted. Put keeps its own copy of share.
func (s *Store) Put(signed *tchsmpb.SignedKeyRecord, rec *tchsmpb.KeyRecord, share scheme.SecretShare) error {
	p, err := prepare(signed, rec, share)
	if err != nil {
		return err
	}
	defer clear(p.sb)
	id := p.id
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if old, ok := s.keys[id]; ok {
		if proto.Equal(old.Signed, signed) && old.Share.Index() == share.Index() && s.sameShare(old, p.sb) {
			return nil
		}
		return fmt.Errorf("%w: %s", ErrConflict, id)
	}
	return s.write(p, share, "put")
}

// Replace swaps a stored key's record and share for new ones in one transaction (a resharing:
// the same key, the next epoch's record and this node's new share), so that the store holds
// the old pair or the new one and never neither. prev is the record the caller's new one
// replaces: when the stored record is another (a concurrent change), nothing changes and the
// error is ErrConflict; when the new record is stored already with the same share, Replace is a
// no-op. A key that is not stored gives ErrNotFound (Put stores a key first), a deleted one
// ErrDeleted. The old share is not wiped in memory: a request in flight may still be using it;
// it is gone from disk once the transaction commits.
func (s *Store) Replace(prev []byte, signed *tchsmpb.SignedKeyRecord, rec *tchsmpb.KeyRecord, share scheme.SecretShare) error {
	p, err := prepare(signed, rec, share)
	if err != nil {
		return err
	}
	defer clear(p.sb)
	id, sb := p.id, p.sb
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	old, ok := s.keys[id]
	if !ok {
		return fmt.Errorf("%w: %.64q", ErrNotFound, id)
	}
	if bytes.Equal(old.Signed.GetRecord(), signed.GetRecord()) {
		if old.Share.Index() == share.Index() && s.sameShare(old, sb) {
			return nil
		}
		return fmt.Errorf("%w: %s: the record is stored with another share", ErrConflict, id)
	}
	if !bytes.Equal(old.Signed.GetRecord(), prev) {
		return fmt.Errorf("%w: %s: the stored record is not the one replaced", ErrConflict, id)
	}
	return s.write(p, share, "replace")
}

// put is what Put and Replace check and encode before they take the store's lock.
type put struct {
	id     string
	signed *tchsmpb.SignedKeyRecord
	rec    *tchsmpb.KeyRecord
	sch    scheme.Scheme
	pk     scheme.PublicKey
	sb     []byte // the share's encoding; the caller clears it
	raw    []byte // the signed record, deterministically marshalled
}

// prepare checks the key id, the record's public key and the share's index, and encodes the
// share and the signed record.
func prepare(signed *tchsmpb.SignedKeyRecord, rec *tchsmpb.KeyRecord, share scheme.SecretShare) (*put, error) {
	id := rec.GetKeyId()
	if !trust.ValidKeyID(id) || share == nil {
		return nil, fmt.Errorf("%w: bad key id or no share", ErrInvalid)
	}
	sch, pk, err := PublicKey(rec)
	if err != nil {
		return nil, err
	}
	// MarshalShare first: it refuses a share of another scheme, or a nil one of this scheme's
	// type, whose Index would not be safe to call.
	sb, err := sch.MarshalShare(pk, share)
	if err != nil {
		return nil, fmt.Errorf("%w: share index or length: %v", ErrInvalid, err)
	}
	if _, n := pk.Threshold(); share.Index() < 1 || share.Index() > n {
		clear(sb)
		return nil, fmt.Errorf("%w: share index or length", ErrInvalid)
	}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(signed)
	if err != nil {
		clear(sb)
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return &put{id: id, signed: signed, rec: rec, sch: sch, pk: pk, sb: sb, raw: raw}, nil
}

// write seals p's share and stores it with p's record in one transaction (refused for a
// deleted key), then serves the key from memory; s.mu is held. verb names the operation in
// errors.
func (s *Store) write(p *put, share scheme.SecretShare, verb string) error {
	id := p.id
	pt := make([]byte, 4+len(p.sb))
	defer clear(pt)
	binary.BigEndian.PutUint32(pt, uint32(share.Index()))
	copy(pt[4:], p.sb)
	own, err := p.sch.ParseShare(p.pk, share.Index(), p.sb)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	k, err := newKey(id, proto.Clone(p.signed).(*tchsmpb.SignedKeyRecord), p.rec, p.sch, p.pk, own)
	if err != nil {
		return err
	}
	sealed := s.seal(pt, shareAD(s.nodeID, id, p.raw))
	err = s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketTombstones).Get([]byte(id)) != nil {
			return fmt.Errorf("%w: %s", ErrDeleted, id)
		}
		if err := tx.Bucket(bucketRecords).Put([]byte(id), p.raw); err != nil {
			return err
		}
		return tx.Bucket(bucketShares).Put([]byte(id), sealed)
	})
	if err != nil {
		k.Share.Wipe()
		if errors.Is(err, ErrDeleted) {
			return err
		}
		return fmt.Errorf("store: %s %s: %w", verb, id, err)
	}
	s.keys[id] = k
	return nil
}

// sameShare reports, in constant time, whether k's share encodes to sb.
func (s *Store) sameShare(k *Key, sb []byte) bool {
	old, err := k.Scheme.MarshalShare(k.Public, k.Share)
	if err != nil {
		return false
	}
	defer clear(old)
	return subtle.ConstantTimeCompare(old, sb) == 1
}

// Get returns a stored key, or ErrNotFound.
func (s *Store) Get(id string) (*Key, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	k, ok := s.keys[id]
	if !ok {
		return nil, fmt.Errorf("%w: %.64q", ErrNotFound, id)
	}
	return k, nil
}

// Deleted reports whether id has a tombstone.
func (s *Store) Deleted(id string) (bool, error) {
	var dead bool
	err := s.db.View(func(tx *bolt.Tx) error {
		dead = tx.Bucket(bucketTombstones).Get([]byte(id)) != nil
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("store: %w", err)
	}
	return dead, nil
}

// Deletion says what Delete did.
type Deletion struct {
	Held  bool      // a share was held; it is kept in the trash until Purge
	At    time.Time // when this node deleted the key (the first deletion, when repeated)
	Stale bool      // issued before the key's latest restore: ignored
	Again bool      // the key was deleted already (a tombstone was there)
}

// Delete hides a key at once (Get and List no longer return it), moves its record and sealed
// share to the trash and leaves a tombstone; issued is the issue time of the DeleteKey
// obeyed. Deleting a key that is not there still leaves a tombstone and returns nil; deleting
// it again keeps the first deletion's time. A deletion issued before the key's latest restore
// is stale: nothing changes and Deletion.Stale is set.
func (s *Store) Delete(id string, issued time.Time) (Deletion, error) {
	if !trust.ValidKeyID(id) {
		return Deletion{}, fmt.Errorf("%w: bad key id", ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Deletion{}, ErrClosed
	}
	var d Deletion
	err := s.db.Update(func(tx *bolt.Tx) error {
		if r := tx.Bucket(bucketRestored).Get([]byte(id)); len(r) == 8 && issued.UnixNano() < int64(binary.BigEndian.Uint64(r)) {
			d.Stale = true
			return nil
		}
		tomb := tx.Bucket(bucketTombstones)
		if t := tomb.Get([]byte(id)); len(t) >= 8 {
			d.At, d.Again = time.Unix(int64(binary.BigEndian.Uint64(t)), 0), true
			d.Held = tx.Bucket(bucketTrashRecs).Get([]byte(id)) != nil
			return nil
		}
		recs, shares := tx.Bucket(bucketRecords), tx.Bucket(bucketShares)
		if rec := recs.Get([]byte(id)); rec != nil {
			d.Held = true
			if err := tx.Bucket(bucketTrashRecs).Put([]byte(id), bytes.Clone(rec)); err != nil {
				return err
			}
			if err := tx.Bucket(bucketTrashShare).Put([]byte(id), bytes.Clone(shares.Get([]byte(id)))); err != nil {
				return err
			}
		}
		if err := recs.Delete([]byte(id)); err != nil {
			return err
		}
		if err := shares.Delete([]byte(id)); err != nil {
			return err
		}
		d.At = time.Unix(time.Now().Unix(), 0)
		ts := binary.BigEndian.AppendUint64(nil, uint64(d.At.Unix()))
		ts = binary.BigEndian.AppendUint64(ts, uint64(issued.UnixNano()))
		return tomb.Put([]byte(id), ts)
	})
	if err != nil {
		return Deletion{}, fmt.Errorf("store: delete %s: %w", id, err)
	}
	if k, ok := s.keys[id]; ok && !d.Stale {
		// Do not wipe k.Share: a request in flight may still be using it.
		delete(s.keys, k.ID)
	}
	return d, nil
}

// Restore brings back a deleted key whose share is still in the trash, if it was deleted at or
// after deletedAfter (the node's grace period; older ones are purged now) and issued, the
// RestoreKey's issue time, is later than the DeleteKey's. A key that is stored (never deleted,
// or restored already) is returned as it is. Errors: ErrNotFound (no such key), ErrPurged (its
// share is no longer kept), ErrStale, ErrCorrupt.
func (s *Store) Restore(id string, issued, deletedAfter time.Time) (*Key, error) {
	if !trust.ValidKeyID(id) {
		return nil, fmt.Errorf("%w: bad key id", ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if k, ok := s.keys[id]; ok {
		return k, nil
	}
	var k *Key
	var expired bool
	err := s.db.Update(func(tx *bolt.Tx) error {
		t := tx.Bucket(bucketTombstones).Get([]byte(id))
		if t == nil {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		trec, tshare := tx.Bucket(bucketTrashRecs), tx.Bucket(bucketTrashShare)
		rec, sealed := trec.Get([]byte(id)), tshare.Get([]byte(id))
		if rec == nil || sealed == nil {
			return fmt.Errorf("%w: %s", ErrPurged, id)
		}
		if len(t) >= 8 && int64(binary.BigEndian.Uint64(t)) < deletedAfter.Unix() {
			if err := trec.Delete([]byte(id)); err != nil {
				return err
			}
			if err := tshare.Delete([]byte(id)); err != nil {
				return err
			}
			expired = true // committed, then reported
			return nil
		}
		if len(t) == 16 && issued.UnixNano() <= int64(binary.BigEndian.Uint64(t[8:])) {
			return fmt.Errorf("%w: %s", ErrStale, id)
		}
		var err error
		if k, err = s.decode(id, bytes.Clone(rec), sealed, s.m); err != nil {
			return err
		}
		if err := tx.Bucket(bucketRecords).Put([]byte(id), bytes.Clone(rec)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketShares).Put([]byte(id), bytes.Clone(sealed)); err != nil {
			return err
		}
		if err := trec.Delete([]byte(id)); err != nil {
			return err
		}
		if err := tshare.Delete([]byte(id)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketRestored).Put([]byte(id), binary.BigEndian.AppendUint64(nil, uint64(issued.UnixNano()))); err != nil {
			return err
		}
		return tx.Bucket(bucketTombstones).Delete([]byte(id))
	})
	if err != nil {
		if k != nil {
			k.Share.Wipe()
		}
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrPurged) || errors.Is(err, ErrStale) || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrInvalid) {
			return nil, err
		}
		return nil, fmt.Errorf("store: restore %s: %w", id, err)
	}
	if expired {
		return nil, fmt.Errorf("%w: %s (deleted before the grace period)", ErrPurged, id)
	}
	s.keys[id] = k
	return k, nil
}

// Purge removes from the trash the shares of keys deleted before deletedBefore and returns
// their ids; their tombstones stay.
func (s *Store) Purge(deletedBefore time.Time) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	var ids []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		tomb, trec, tshare := tx.Bucket(bucketTombstones), tx.Bucket(bucketTrashRecs), tx.Bucket(bucketTrashShare)
		var old [][]byte
		err := trec.ForEach(func(id, _ []byte) error {
			if t := tomb.Get(id); t == nil || len(t) < 8 || int64(binary.BigEndian.Uint64(t)) < deletedBefore.Unix() {
				old = append(old, bytes.Clone(id))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, id := range old {
			if err := trec.Delete(id); err != nil {
				return err
			}
			if err := tshare.Delete(id); err != nil {
				return err
			}
			ids = append(ids, string(id))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: purge: %w", err)
	}
	return ids, nil
}

// List returns every stored key, sorted by id.
func (s *Store) List() []*Key {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Key, 0, len(s.keys))
	for _, k := range s.keys {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Len returns the number of stored keys.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.keys)
}

// Close closes the file and wipes the shares held in memory. Keys returned earlier must not be
// used afterwards.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.wipe()
	return s.db.Close()
}

func (s *Store) wipe() {
	for _, k := range s.keys {
		k.Share.Wipe()
	}
	s.keys = map[string]*Key{}
	s.aead = nil
}
