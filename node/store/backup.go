package store

// Backup and restore of a whole store (issue 19).
//
// # Backup format
//
// A backup is the store's bbolt file as one read transaction saw it, framed:
//
//	magic     "TCHSMBK1"
//	header    length (4 bytes, big endian, at most maxBackupHeader) || BackupHeader as JSON
//	database  length (8 bytes, big endian, at most maxBackupDB) || the bbolt file (Tx.WriteTo)
//	digest    SHA-256 of every byte before it
//	tag       nonce (24) || XChaCha20-Poly1305 tag (16) of an empty plaintext, under the
//	          store's own key, with associated data "tchsm/store/v1/backup" || node id || digest
//
// The shares inside stay sealed exactly as the store keeps them (nothing is decrypted to make
// a backup), so a backup is as safe as the store file and opens only with the node's
// passphrase. The digest catches a truncated or damaged file without the passphrase
// (InspectBackup); the tag, which only the passphrase's key makes, catches any change to the
// header, the database or the digest (RestoreBackup). The whole file is copied, every bucket:
// buckets added by later releases are backed up without changing this file.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
)

// Errors of backups, besides the store's own (ErrWrongPassphrase, ErrWrongNode, ErrCorrupt,
// ErrLocked).
var (
	ErrBadBackup    = errors.New("store: not a valid backup file")
	ErrWrongCluster = errors.New("store: the backup belongs to another cluster")
	ErrExists       = errors.New("store: a store file exists already")
)

const (
	backupMagic      = "TCHSMBK1"
	backupFormat     = 1
	maxBackupHeader  = 8 << 20
	maxBackupDB      = 16 << 30
	backupTagSize    = 24 + 16
	backupDigestSize = sha256.Size
)

// BackupHeader describes a backup: whose store it is and what it held. It is written in the
// clear (key ids and labels are public: every client lists them) and authenticated by the tag.
type BackupHeader struct {
	Format int `json:"format"`
	// Node is the id of the node whose store this is; Cluster and Manifest the cluster id and
	// the manifest's fingerprint the store was opened with ("" when it was opened without one).
	Node     string `json:"node"`
	Cluster  string `json:"cluster,omitempty"`
	Manifest string `json:"manifest,omitempty"`
	// Created is when the snapshot was taken (the node's clock).
	Created time.Time `json:"created"`
	// Keys are the keys whose shares the store held, sorted by id.
	Keys []BackupKey `json:"keys"`
	// Deleted is the number of deletions (tombstones) the store had recorded.
	Deleted int `json:"deleted"`
	// Size is the length of the database in bytes.
	Size int64 `json:"size"`
	// KDF and Verifier are copies of the store's meta entries (the Argon2id parameters with
	// the salt, and the sealed verifier), so that a restore derives the key and checks the tag
	// before it parses the database.
	KDF      json.RawMessage `json:"kdf"`
	Verifier []byte          `json:"verifier"`
}

// BackupKey is one key a backup holds: its public description.
type BackupKey struct {
	ID        string    `json:"id"`
	Label     string    `json:"label,omitempty"`
	Algorithm string    `json:"algorithm"`
	Created   time.Time `json:"created"`
}

// WriteBackup writes a consistent snapshot of the whole store to w, in the backup format
// above, and returns its header. It holds one bbolt read transaction while it writes, which
// does not block signing or other readers; writers (a share delivered, a key deleted) wait
// only if the file has to grow meanwhile, so give it a fast w (a buffer, a local file).
func (s *Store) WriteBackup(w io.Writer) (*BackupHeader, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	h := &BackupHeader{Format: backupFormat, Node: s.nodeID, Created: time.Now().UTC(), Keys: []BackupKey{}}
	if s.m != nil {
		h.Cluster, h.Manifest = s.m.ClusterID, s.m.Fingerprint()
	}
	sum := sha256.New()
	out := io.MultiWriter(w, sum)
	err := s.db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketRecords).ForEach(func(id, raw []byte) error {
			k, err := backupKey(id, raw)
			if err != nil {
				return err
			}
			h.Keys = append(h.Keys, k)
			return nil
		})
		if err != nil {
			return err
		}
		h.Deleted = tx.Bucket(bucketTombstones).Stats().KeyN
		meta := tx.Bucket(bucketMeta)
		h.KDF, h.Verifier = bytes.Clone(meta.Get(metaKDF)), bytes.Clone(meta.Get(metaVerifier))
		h.Size = tx.Size()
		if h.Size > maxBackupDB {
			return fmt.Errorf("%w: the store is larger than %d bytes", ErrInvalid, int64(maxBackupDB))
		}
		hb, err := json.Marshal(h)
		if err != nil {
			return err
		}
		if len(hb) > maxBackupHeader {
			return fmt.Errorf("%w: too many keys for one backup header", ErrInvalid)
		}
		pre := append([]byte(backupMagic), binary.BigEndian.AppendUint32(nil, uint32(len(hb)))...)
		pre = append(pre, hb...)
		pre = binary.BigEndian.AppendUint64(pre, uint64(h.Size))
		if _, err := out.Write(pre); err != nil {
			return err
		}
		n, err := tx.WriteTo(out)
		if err != nil {
			return err
		}
		if n != h.Size {
			return fmt.Errorf("store: backup wrote %d bytes of a %d-byte database", n, h.Size)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: backup: %w", err)
	}
	digest := sum.Sum(nil)
	nonce := make([]byte, s.aead.NonceSize(), backupTagSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("store: backup: %w", err)
	}
	tag := s.aead.Seal(nonce, nonce, nil, backupAD(s.nodeID, digest))
	if _, err := w.Write(append(digest, tag...)); err != nil {
		return nil, fmt.Errorf("store: backup: %w", err)
	}
	return h, nil
}

// backupKey describes one stored record for a backup's header.
func backupKey(id, raw []byte) (BackupKey, error) {
	signed := new(tchsmpb.SignedKeyRecord)
	rec := new(tchsmpb.KeyRecord)
	if err := proto.Unmarshal(raw, signed); err != nil {
		return BackupKey{}, fmt.Errorf("%w: key %.64q: record: %v", ErrCorrupt, id, err)
	}
	if err := proto.Unmarshal(signed.GetRecord(), rec); err != nil {
		return BackupKey{}, fmt.Errorf("%w: key %.64q: record: %v", ErrCorrupt, id, err)
	}
	return BackupKey{ID: string(id), Label: rec.GetLabel(), Algorithm: scheme.Of(rec).String(),
		Created: time.Unix(rec.GetCreatedUnix(), 0).UTC()}, nil
}

func backupAD(nodeID string, digest []byte) []byte {
	b := appendLP(nil, []byte("tchsm/store/v1/backup"))
	b = appendLP(b, []byte(nodeID))
	return appendLP(b, digest)
}

// readBackup reads a backup from r, copying its database to db, and returns its header, its
// digest (checked) and its tag. Every length is bounded before it is used.
func readBackup(r io.Reader, db io.Writer) (*BackupHeader, []byte, []byte, error) {
	sum := sha256.New()
	br := bufio.NewReader(r)
	tr := io.TeeReader(br, sum)
	var pre [len(backupMagic) + 4]byte
	if _, err := io.ReadFull(tr, pre[:]); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrBadBackup, err)
	}
	if string(pre[:len(backupMagic)]) != backupMagic {
		return nil, nil, nil, fmt.Errorf("%w: no backup magic", ErrBadBackup)
	}
	hl := binary.BigEndian.Uint32(pre[len(backupMagic):])
	if hl == 0 || hl > maxBackupHeader {
		return nil, nil, nil, fmt.Errorf("%w: header length %d", ErrBadBackup, hl)
	}
	hb := make([]byte, hl)
	if _, err := io.ReadFull(tr, hb); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: header: %v", ErrBadBackup, err)
	}
	h := new(BackupHeader)
	dec := json.NewDecoder(bytes.NewReader(hb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(h); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: header: %v", ErrBadBackup, err)
	}
	if h.Format != backupFormat {
		return nil, nil, nil, fmt.Errorf("%w: format %d (this release reads %d)", ErrBadBackup, h.Format, backupFormat)
	}
	if h.Node == "" {
		return nil, nil, nil, fmt.Errorf("%w: header names no node", ErrBadBackup)
	}
	var lb [8]byte
	if _, err := io.ReadFull(tr, lb[:]); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrBadBackup, err)
	}
	size := binary.BigEndian.Uint64(lb[:])
	if size > maxBackupDB || int64(size) != h.Size {
		return nil, nil, nil, fmt.Errorf("%w: database length %d, header says %d", ErrBadBackup, size, h.Size)
	}
	n, err := io.Copy(db, io.LimitReader(tr, int64(size)))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("store: read backup: %w", err)
	}
	if n != int64(size) {
		return nil, nil, nil, fmt.Errorf("%w: truncated database (%d of %d bytes)", ErrBadBackup, n, size)
	}
	want := sum.Sum(nil)
	var trailer [backupDigestSize + backupTagSize]byte
	if _, err := io.ReadFull(br, trailer[:]); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: truncated trailer", ErrBadBackup)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return nil, nil, nil, fmt.Errorf("%w: data after the end of the backup", ErrBadBackup)
	}
	if subtle.ConstantTimeCompare(trailer[:backupDigestSize], want) != 1 {
		return nil, nil, nil, fmt.Errorf("%w: digest mismatch (damaged or truncated file)", ErrBadBackup)
	}
	return h, want, trailer[backupDigestSize:], nil
}

// InspectBackup reads a whole backup and returns its header once its digest matches. It needs
// no passphrase, so it proves only that the file is intact, not that it is authentic:
// RestoreBackup checks that.
func InspectBackup(r io.Reader) (*BackupHeader, error) {
	h, _, _, err := readBackup(r, io.Discard)
	return h, err
}

// Restored says what RestoreBackup did.
type Restored struct {
	Header *BackupHeader
	// Replaced is where the store file that was there before was moved ("" when there was
	// none).
	Replaced string
}

// RestoreBackup writes the store of the backup read from r to path, which the node must not
// be using; opts are those the node opens its store with (NodeID and Manifest are required).
// It refuses a backup that is damaged (ErrBadBackup), of another node (ErrWrongNode)
// or cluster (ErrWrongCluster), that does not open with passphrase (ErrWrongPassphrase), whose
// tag does not verify under the passphrase's key or whose records or shares do not verify
// (ErrCorrupt); a store file at path unless force (ErrExists), and always one a running node
// holds (ErrLocked). Until every check has passed nothing at path changes; then the new file
// takes its place atomically (a rename in the same folder, fsynced). With force, the file that
// was there is moved aside (Restored.Replaced), never deleted: it may hold keys the backup
// lacks.
func RestoreBackup(r io.Reader, path string, passphrase []byte, opts Options, force bool) (*Restored, error) {
	if opts.NodeID == "" || opts.Manifest == nil {
		return nil, fmt.Errorf("%w: restore needs the node id and the manifest", ErrInvalid)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: restore: %w", err)
	}
	// Refuse early, before reading a large file, when a store is there.
	old, err := lockExisting(path, force)
	if err != nil {
		return nil, err
	}
	if old != nil {
		defer old.Close()
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".restore-*")
	if err != nil {
		return nil, fmt.Errorf("store: restore: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) // a no-op once renamed
	h, digest, tag, err := readBackup(r, tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("store: restore: %w", cerr)
	}
	if err != nil {
		return nil, err
	}
	if h.Node != opts.NodeID {
		return nil, fmt.Errorf("%w: the backup is of %.64q, this node is %q", ErrWrongNode, h.Node, opts.NodeID)
	}
	if h.Cluster != opts.Manifest.ClusterID {
		return nil, fmt.Errorf("%w: the backup is of cluster %.64q, the manifest's is %q", ErrWrongCluster, h.Cluster, opts.Manifest.ClusterID)
	}
	// The key first, from the header's copy of the KDF parameters: the tag is checked before
	// a byte of the database is parsed.
	aead, err := backupAEAD(passphrase, h)
	if err != nil {
		return nil, err
	}
	if _, err := aead.Open(nil, tag[:aead.NonceSize()], tag[aead.NonceSize():], backupAD(h.Node, digest)); err != nil {
		return nil, fmt.Errorf("%w: the backup's tag does not verify (the file was changed)", ErrCorrupt)
	}
	// Open decrypts the verifier again, checks the node id the file was made for, verifies
	// every record under the manifest and decrypts every share.
	s, err := Open(tmpName, passphrase, opts)
	if err != nil {
		return nil, err
	}
	err = s.checkBackup(h)
	if cerr := s.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("store: restore: %w", cerr)
	}
	if err != nil {
		return nil, err
	}
	res := &Restored{Header: h}
	if old != nil {
		res.Replaced = fmt.Sprintf("%s.replaced-%s", path, time.Now().UTC().Format("20060102T150405Z"))
		if err := os.Rename(path, res.Replaced); err != nil {
			return nil, fmt.Errorf("store: restore: move the old store aside: %w", err)
		}
	}
	if err := os.Rename(tmpName, path); err != nil {
		return nil, fmt.Errorf("store: restore: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	return res, nil
}

// checkBackup checks that an opened backup's database is the one its header describes: the
// same KDF parameters and verifier, the same keys.
func (s *Store) checkBackup(h *BackupHeader) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	err := s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if !bytes.Equal(meta.Get(metaKDF), h.KDF) || !bytes.Equal(meta.Get(metaVerifier), h.Verifier) {
			return fmt.Errorf("%w: the header's kdf or verifier differs from the store's", ErrCorrupt)
		}
		return nil
	})
	if err != nil {
		return err
	}
	ids := make([]string, 0, len(s.keys))
	for id := range s.keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	if len(ids) != len(h.Keys) {
		return fmt.Errorf("%w: the header lists %d keys, the store holds %d", ErrCorrupt, len(h.Keys), len(ids))
	}
	for i, k := range h.Keys {
		if k.ID != ids[i] {
			return fmt.Errorf("%w: the header's keys differ from the store's", ErrCorrupt)
		}
	}
	return nil
}

// backupAEAD derives the store key from passphrase and the header's KDF parameters (bounded
// as Open bounds the store's) and checks it against the header's verifier.
func backupAEAD(passphrase []byte, h *BackupHeader) (cipherAEAD, error) {
	if len(passphrase) == 0 {
		return nil, fmt.Errorf("%w: empty passphrase", ErrWrongPassphrase)
	}
	var kr kdfRecord
	if err := json.Unmarshal(h.KDF, &kr); err != nil || kr.Name != "argon2id" || len(kr.Salt) != saltSize {
		return nil, fmt.Errorf("%w: bad kdf parameters", ErrBadBackup)
	}
	if kr.Time < 1 || kr.Time > 100 || kr.MemoryKiB < 8 || kr.MemoryKiB > 4<<20 || kr.Threads < 1 {
		return nil, fmt.Errorf("%w: kdf parameters out of range", ErrBadBackup)
	}
	a, err := deriveAEAD(passphrase, kr)
	if err != nil {
		return nil, err
	}
	v := h.Verifier
	if len(v) < a.NonceSize()+a.Overhead() {
		return nil, fmt.Errorf("%w: short verifier", ErrBadBackup)
	}
	pt, err := a.Open(nil, v[:a.NonceSize()], v[a.NonceSize():], verifierAD(h.Node))
	if err != nil || subtle.ConstantTimeCompare(pt, []byte(verifierText)) != 1 {
		return nil, ErrWrongPassphrase
	}
	return a, nil
}

// lockExisting returns the store file at path locked (shared, as bbolt's readers lock it), so
// that no node opens it while it is replaced, or nil when there is none. A file a running node
// holds is ErrLocked; any file without force is ErrExists.
func lockExisting(path string, force bool) (*os.File, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: restore: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s (stop the node before restoring)", ErrLocked, path)
		}
		return nil, fmt.Errorf("store: restore: lock %s: %w", path, err)
	}
	if !force {
		f.Close()
		return nil, fmt.Errorf("%w: %s", ErrExists, path)
	}
	return f, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("store: fsync %s: %w", dir, err)
	}
	return nil
}
