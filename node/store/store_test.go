package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/clusterinit"
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/shoup"
	"github.com/tchsm/tchsm/scheme/shoup/keygen"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

var testKDF = KDF{Time: 1, MemoryKiB: 1024, Threads: 1}

type fixture struct {
	m      *trust.Manifest
	signed *tchsmpb.SignedKeyRecord
	rec    *tchsmpb.KeyRecord
	shares []*shoup.KeyShare
}

var (
	fixOnce sync.Once
	fix     fixture
	fixErr  error
)

// dealt returns one 1024-bit 2-of-3 key dealt by a real dealer identity of a real manifest.
func dealt(t *testing.T) fixture {
	t.Helper()
	fixOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tchsm-store-fixture-")
		if err != nil {
			fixErr = err
			return
		}
		defer os.RemoveAll(dir)
		l, err := clusterinit.Create(dir, clusterinit.Options{K: 2, N: 3})
		if err != nil {
			fixErr = err
			return
		}
		var dc config.Dealer
		if fixErr = config.Load(l.Dealer, &dc); fixErr != nil {
			return
		}
		dealer, err := trust.ReadIdentityFile(dc.Identity, nil)
		if err != nil {
			fixErr = err
			return
		}
		m, err := trust.LoadManifest(l.Manifest)
		if err != nil {
			fixErr = err
			return
		}
		key, err := keygen.GenerateKey(context.Background(), rand.Reader, 1024, 0, nil)
		if err != nil {
			fixErr = err
			return
		}
		pk, shares, err := shoup.Deal(rand.Reader, key, 2, 3)
		if err != nil {
			fixErr = err
			return
		}
		id := make([]byte, 16)
		rand.Read(id)
		rec := &tchsmpb.KeyRecord{KeyId: hex.EncodeToString(id), Label: "test", P11Id: id, Bits: 1024,
			Modulus: pk.N.Bytes(), PublicExponent: uint32(pk.E), K: 2, N: 3, V: pk.V.Bytes(),
			CreatedUnix: time.Now().Unix(), SafePrimes: true, ClusterId: m.ClusterID}
		for _, v := range pk.VK {
			rec.Vk = append(rec.Vk, v.Bytes())
		}
		signed, err := trust.SignKeyRecord(dealer, rec)
		if err != nil {
			fixErr = err
			return
		}
		fix = fixture{m: m, signed: signed, rec: rec, shares: shares}
	})
	if fixErr != nil {
		t.Fatal(fixErr)
	}
	return fix
}

func open(t *testing.T, path, pass, node string, m *trust.Manifest) (*Store, error) {
	t.Helper()
	return Open(path, []byte(pass), Options{NodeID: node, Manifest: m, KDF: testKDF})
}

func TestPutGetReopen(t *testing.T) {
	f := dealt(t)
	path := filepath.Join(t.TempDir(), "shares.db")
	s, err := open(t, path, "correct horse", "node-1", f.m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(f.rec.KeyId); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get on empty store: %v", err)
	}
	if err := s.Put(f.signed, f.rec, shoup.WrapShare(f.shares[0])); err != nil {
		t.Fatal(err)
	}
	// Idempotent.
	if err := s.Put(f.signed, f.rec, shoup.WrapShare(f.shares[0])); err != nil {
		t.Fatalf("second Put: %v", err)
	}
	// Another share for the same key is a conflict.
	if err := s.Put(f.signed, f.rec, shoup.WrapShare(f.shares[1])); !errors.Is(err, ErrConflict) {
		t.Fatalf("conflicting Put: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The share is not in the file in the clear.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, f.shares[0].S[8:40]) {
		t.Fatal("share found in the clear in the store file")
	}

	s, err = open(t, path, "correct horse", "node-1", f.m)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k, err := s.Get(f.rec.KeyId)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := shoup.KeyShareOf(k.Share)
	if err != nil {
		t.Fatal(err)
	}
	pk := k.Public.(*shoup.PublicKey)
	if k.Share.Index() != 1 || !bytes.Equal(ks.S, f.shares[0].S) || !bytes.Equal(pk.N.Bytes(), f.rec.GetModulus()) {
		t.Fatal("reopened share differs")
	}
	// The reopened key signs, through its participant too.
	em, err := shoup.EncodePayload(pk.Size(), []byte("payload"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := shoup.SignShare(pk, ks, em); err != nil {
		t.Fatal(err)
	}
	if rep, err := k.Participant.Respond(context.Background(), rand.Reader, scheme.Request{Round: 1, Payload: []byte("payload")}); err != nil || len(rep.Payload) == 0 {
		t.Fatalf("participant: %v", err)
	}
	if got := s.List(); len(got) != 1 || got[0].ID != f.rec.KeyId {
		t.Fatalf("List = %v", got)
	}
}

func TestWrongPassphraseAndNode(t *testing.T) {
	f := dealt(t)
	path := filepath.Join(t.TempDir(), "shares.db")
	s, err := open(t, path, "right", "node-1", f.m)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(f.signed, f.rec, shoup.WrapShare(f.shares[0])); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := open(t, path, "wrong", "node-1", f.m); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if _, err := open(t, path, "right", "node-2", f.m); !errors.Is(err, ErrWrongNode) {
		t.Fatalf("wrong node: %v", err)
	}
	if _, err := open(t, path, "", "node-1", f.m); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("empty passphrase: %v", err)
	}
	// Still fine with the right one.
	s, err = open(t, path, "right", "node-1", f.m)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestLocked(t *testing.T) {
	f := dealt(t)
	path := filepath.Join(t.TempDir(), "shares.db")
	s, err := open(t, path, "p", "node-1", f.m)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := open(t, path, "p", "node-1", f.m); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v", err)
	}
}

func TestDeleteTombstone(t *testing.T) {
	f := dealt(t)
	path := filepath.Join(t.TempDir(), "shares.db")
	s, err := open(t, path, "p", "node-2", f.m)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(f.signed, f.rec, shoup.WrapShare(f.shares[1])); err != nil {
		t.Fatal(err)
	}
	d, err := s.Delete(f.rec.KeyId, time.Now())
	if err != nil || !d.Held || d.Stale || d.At.IsZero() {
		t.Fatalf("Delete = %+v, %v", d, err)
	}
	if d2, err := s.Delete(f.rec.KeyId, time.Now()); err != nil || !d2.At.Equal(d.At) {
		t.Fatalf("second Delete = %+v, %v (first at %v)", d2, err, d.At)
	}
	if err := s.Put(f.signed, f.rec, shoup.WrapShare(f.shares[1])); !errors.Is(err, ErrDeleted) {
		t.Fatalf("Put after Delete: %v", err)
	}
	s.Close()
	s, err = open(t, path, "p", "node-2", f.m)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Get(f.rec.KeyId); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after reopen: %v", err)
	}
	if dead, _ := s.Deleted(f.rec.KeyId); !dead {
		t.Fatal("tombstone lost on reopen")
	}
	if err := s.Put(f.signed, f.rec, shoup.WrapShare(f.shares[1])); !errors.Is(err, ErrDeleted) {
		t.Fatalf("Put after reopen: %v", err)
	}
}

// A share moved to another key (or a record swapped) no longer decrypts.
func TestTamperedFile(t *testing.T) {
	f := dealt(t)
	path := filepath.Join(t.TempDir(), "shares.db")
	s, err := open(t, path, "p", "node-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(f.signed, f.rec, shoup.WrapShare(f.shares[0])); err != nil {
		t.Fatal(err)
	}
	s.Close()
	corruptShare(t, path, f.rec.KeyId)
	if _, err := open(t, path, "p", "node-1", nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("tampered share: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	f := dealt(t)
	s, err := open(t, filepath.Join(t.TempDir(), "s.db"), "p", "node-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	bad := []*shoup.KeyShare{nil, {Index: 0, S: f.shares[0].S}, {Index: 4, S: f.shares[0].S}, {Index: 1, S: f.shares[0].S[1:]}}
	for i, sh := range bad {
		if err := s.Put(f.signed, f.rec, shoup.WrapShare(sh)); !errors.Is(err, ErrInvalid) {
			t.Errorf("bad share %d: %v", i, err)
		}
	}
	if _, err := s.Delete("not-a-key-id", time.Now()); !errors.Is(err, ErrInvalid) {
		t.Errorf("Delete bad id: %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "x.db"), []byte("p"), Options{}); err == nil {
		t.Error("Open without node id succeeded")
	}
}

// corruptShare flips one byte of the stored share ciphertext directly in the bbolt file.
func corruptShare(t *testing.T, path, id string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketShares)
		v := bytes.Clone(b.Get([]byte(id)))
		v[len(v)/2] ^= 1
		return b.Put([]byte(id), v)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A deleted key is hidden at once, kept encrypted in the trash (not in memory), comes back
// with Restore after a reopen, and signs again; a replayed old deletion does not hide it again.
func TestDeleteRestore(t *testing.T) {
	f := dealt(t)
	path := filepath.Join(t.TempDir(), "shares.db")
	s, err := open(t, path, "p", "node-2", f.m)
	if err != nil {
		t.Fatal(err)
	}
	id := f.rec.KeyId
	if err := s.Put(f.signed, f.rec, shoup.WrapShare(f.shares[1])); err != nil {
		t.Fatal(err)
	}
	delIssued := time.Now()
	if _, err := s.Delete(id, delIssued); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(id); !errors.Is(err, ErrNotFound) || s.Len() != 0 {
		t.Fatalf("Get after Delete: %v (len %d)", err, s.Len())
	}
	if _, err := s.Restore(id, delIssued.Add(-time.Second), time.Time{}); !errors.Is(err, ErrStale) {
		t.Fatalf("Restore issued before the deletion: %v", err)
	}
	s.Close()
	s, err = open(t, path, "p", "node-2", f.m)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Len() != 0 {
		t.Fatal("a deleted key was loaded at open")
	}
	restIssued := time.Now()
	k, err := s.Restore(id, restIssued, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if k.Share.Index() != 2 {
		t.Fatalf("restored share index %d", k.Share.Index())
	}
	if dead, _ := s.Deleted(id); dead {
		t.Fatal("tombstone kept after Restore")
	}
	if got, err := s.Get(id); err != nil || got != k {
		t.Fatalf("Get after Restore: %v", err)
	}
	// The original deletion, replayed: stale, the key stays.
	if d, err := s.Delete(id, delIssued); err != nil || !d.Stale {
		t.Fatalf("replayed Delete = %+v, %v", d, err)
	}
	if _, err := s.Get(id); err != nil {
		t.Fatalf("key hidden by a stale deletion: %v", err)
	}
	// A redelivered share delivery is a no-op for the restored key.
	if err := s.Put(f.signed, f.rec, shoup.WrapShare(f.shares[1])); err != nil {
		t.Fatalf("Put after Restore: %v", err)
	}
	// Restore of a key that is there: the key.
	if _, err := s.Restore(id, time.Now(), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Restore("00112233445566778899aabbccddeeff", time.Now(), time.Time{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Restore of an unknown key: %v", err)
	}
}

// Purge removes the trashed shares of keys deleted before its time; Restore refuses keys
// deleted before its deletedAfter, and the tombstone always stays.
func TestPurge(t *testing.T) {
	f := dealt(t)
	path := filepath.Join(t.TempDir(), "shares.db")
	s, err := open(t, path, "p", "node-1", f.m)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id := f.rec.KeyId
	if err := s.Put(f.signed, f.rec, shoup.WrapShare(f.shares[0])); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(id, time.Now()); err != nil {
		t.Fatal(err)
	}
	if ids, err := s.Purge(time.Now().Add(-time.Hour)); err != nil || len(ids) != 0 {
		t.Fatalf("Purge of older deletions = %v, %v", ids, err)
	}
	if _, err := s.Restore(id, time.Now().Add(time.Second), time.Now().Add(time.Hour)); !errors.Is(err, ErrPurged) {
		t.Fatalf("Restore after the grace period: %v", err)
	}
	if ids, err := s.Purge(time.Now().Add(time.Hour)); err != nil || len(ids) != 0 {
		t.Fatalf("Purge after Restore purged it = %v, %v", ids, err)
	}
	if _, err := s.Restore(id, time.Now().Add(time.Second), time.Time{}); !errors.Is(err, ErrPurged) {
		t.Fatalf("Restore after purge: %v", err)
	}
	if dead, _ := s.Deleted(id); !dead {
		t.Fatal("tombstone removed by purge")
	}
	if err := s.Put(f.signed, f.rec, shoup.WrapShare(f.shares[0])); !errors.Is(err, ErrDeleted) {
		t.Fatalf("Put after purge: %v", err)
	}
	var left int
	s.db.View(func(tx *bolt.Tx) error {
		left = tx.Bucket(bucketTrashShare).Stats().KeyN
		return nil
	})
	if left != 0 {
		t.Fatalf("%d trashed shares left after purge", left)
	}
}

// A store written by the release before recoverable deletion (8-byte tombstones, no trash
// buckets) opens, keeps its tombstones, and its deleted keys are reported as purged.
func TestOldTombstones(t *testing.T) {
	f := dealt(t)
	path := filepath.Join(t.TempDir(), "shares.db")
	s, err := open(t, path, "p", "node-1", f.m)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketTrashRecs, bucketTrashShare, bucketRestored} {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketTombstones).Put([]byte(f.rec.KeyId), []byte{0, 0, 0, 0, 0x60, 0, 0, 0})
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err = open(t, path, "p", "node-1", f.m)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if dead, _ := s.Deleted(f.rec.KeyId); !dead {
		t.Fatal("old tombstone lost")
	}
	if _, err := s.Restore(f.rec.KeyId, time.Now(), time.Time{}); !errors.Is(err, ErrPurged) {
		t.Fatalf("Restore of a key deleted by the old release: %v", err)
	}
	if d, err := s.Delete(f.rec.KeyId, time.Now()); err != nil || d.Held || d.At.Unix() != 0x60000000 {
		t.Fatalf("Delete over an old tombstone = %+v, %v", d, err)
	}
	if _, err := s.Purge(time.Now()); err != nil {
		t.Fatal(err)
	}
}

// TestReplace: a key's record and share are swapped in one transaction, only for the record
// the caller means to replace, and the new pair is what a reopened store holds.
func TestReplace(t *testing.T) {
	f := dealt(t)
	path := filepath.Join(t.TempDir(), "shares.db")
	s, err := open(t, path, "pass", "node-1", f.m)
	if err != nil {
		t.Fatal(err)
	}
	rec2 := proto.Clone(f.rec).(*tchsmpb.KeyRecord)
	rec2.Epoch = 1
	raw2, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec2)
	if err != nil {
		t.Fatal(err)
	}
	signed2 := &tchsmpb.SignedKeyRecord{Record: raw2, Dealer: f.signed.Dealer, Signature: f.signed.Signature}
	if err := s.Replace(f.signed.Record, signed2, rec2, shoup.WrapShare(f.shares[1])); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Replace of a key not stored: %v", err)
	}
	if err := s.Put(f.signed, f.rec, shoup.WrapShare(f.shares[0])); err != nil {
		t.Fatal(err)
	}
	if err := s.Replace([]byte("another record"), signed2, rec2, shoup.WrapShare(f.shares[1])); !errors.Is(err, ErrConflict) {
		t.Fatalf("Replace of another record: %v", err)
	}
	if err := s.Replace(f.signed.Record, signed2, rec2, shoup.WrapShare(f.shares[1])); err != nil {
		t.Fatal(err)
	}
	if err := s.Replace(f.signed.Record, signed2, rec2, shoup.WrapShare(f.shares[1])); err != nil {
		t.Fatalf("repeated Replace: %v", err)
	}
	if err := s.Replace(f.signed.Record, signed2, rec2, shoup.WrapShare(f.shares[2])); !errors.Is(err, ErrConflict) {
		t.Fatalf("the same record with another share: %v", err)
	}
	check := func(s *Store) {
		t.Helper()
		k, err := s.Get(f.rec.KeyId)
		if err != nil {
			t.Fatal(err)
		}
		ks, err := shoup.KeyShareOf(k.Share)
		if err != nil {
			t.Fatal(err)
		}
		if k.Record.GetEpoch() != 1 || !bytes.Equal(k.Signed.GetRecord(), raw2) || k.Share.Index() != 2 || !bytes.Equal(ks.S, f.shares[1].S) {
			t.Fatal("the replaced key is not the new one")
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened without the manifest (signed2's signature is the old record's).
	s, err = open(t, path, "pass", "node-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check(s)
}
