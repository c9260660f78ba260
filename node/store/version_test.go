package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// A store of a newer format (a node rolled back past the release that wrote it) is refused as
// such, and left as it was; an unreadable version stays ErrCorrupt.
func TestNewerFormat(t *testing.T) {
	f := dealt(t)
	path := filepath.Join(t.TempDir(), "shares.db")
	s, err := open(t, path, "p", "node-1", f.m)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	setVersion := func(v []byte) {
		t.Helper()
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(metaVersion, v) }); err != nil {
			t.Fatal(err)
		}
	}
	setVersion([]byte{formatVersion + 1})
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open(t, path, "p", "node-1", f.m); !errors.Is(err, ErrNewerFormat) {
		t.Fatalf("open a store of format %d: %v, want ErrNewerFormat", formatVersion+1, err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("the refused store was changed")
	}
	setVersion([]byte{0})
	if _, err := open(t, path, "p", "node-1", f.m); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open a store of format 0: %v, want ErrCorrupt", err)
	}
	setVersion([]byte{formatVersion})
	s, err = open(t, path, "p", "node-1", f.m)
	if err != nil {
		t.Fatalf("format %d again: %v", formatVersion, err)
	}
	s.Close()
}
