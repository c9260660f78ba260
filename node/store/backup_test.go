package store

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/clusterinit"
	"github.com/tchsm/tchsm/internal/trust"
	"github.com/tchsm/tchsm/scheme/shoup"
)

const backupPass = "correct horse"

func randomKeyID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// backedUp returns a backup of node-1's store holding the fixture key and one tombstone.
func backedUp(t *testing.T) (fixture, []byte, *BackupHeader, string) {
	t.Helper()
	f := dealt(t)
	s, err := open(t, filepath.Join(t.TempDir(), "shares.db"), backupPass, "node-1", f.m)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Put(f.signed, f.rec, shoup.WrapShare(f.shares[0])); err != nil {
		t.Fatal(err)
	}
	tomb := randomKeyID(t)
	if _, err := s.Delete(tomb, time.Now()); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	h, err := s.WriteBackup(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return f, buf.Bytes(), h, tomb
}

func restoreOpts(m *trust.Manifest, node string) Options {
	return Options{NodeID: node, Manifest: m, KDF: testKDF}
}

func TestBackupRestoreRoundTrip(t *testing.T) {
	f, b, h, tomb := backedUp(t)
	if h.Node != "node-1" || h.Cluster != f.m.ClusterID || h.Manifest != f.m.Fingerprint() || h.Deleted != 1 ||
		len(h.Keys) != 1 || h.Keys[0].ID != f.rec.KeyId || h.Keys[0].Label != "test" || h.Keys[0].Algorithm != "rsa" {
		t.Fatalf("header %+v", h)
	}
	got, err := InspectBackup(bytes.NewReader(b))
	if err != nil || got.Node != h.Node || got.Size != h.Size || len(got.Keys) != 1 || time.Since(got.Created) > time.Minute {
		t.Fatalf("InspectBackup: %+v, %v", got, err)
	}
	// The backup holds the share sealed: its bytes never appear in the file.
	if bytes.Contains(b, f.shares[0].S[8:40]) {
		t.Fatal("the backup holds the share in the clear")
	}

	// A wiped data folder: the folder itself is gone.
	path := filepath.Join(t.TempDir(), "wiped", "shares.db")
	res, err := RestoreBackup(bytes.NewReader(b), path, []byte(backupPass), restoreOpts(f.m, "node-1"), false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Replaced != "" || res.Header.Keys[0].ID != f.rec.KeyId {
		t.Fatalf("restored %+v", res)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("restored file: %v, %v", fi, err)
	}
	s, err := open(t, path, backupPass, "node-1", f.m)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k, err := s.Get(f.rec.KeyId)
	if err != nil {
		t.Fatal(err)
	}
	if ks, err := shoup.KeyShareOf(k.Share); err != nil || !bytes.Equal(ks.S, f.shares[0].S) || ks.Index != 1 {
		t.Fatal("restored share differs")
	}
	if dead, err := s.Deleted(tomb); err != nil || !dead {
		t.Fatalf("tombstone lost in the restore: %v, %v", dead, err)
	}
	// Nothing but the store is left in the folder (no temporary file).
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Fatalf("folder holds %v", ents)
	}
}

// TestBackupUnderWrites takes backups while another goroutine writes: each one is a
// consistent snapshot that restores.
func TestBackupUnderWrites(t *testing.T) {
	f := dealt(t)
	s, err := open(t, filepath.Join(t.TempDir(), "shares.db"), backupPass, "node-1", f.m)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Put(f.signed, f.rec, shoup.WrapShare(f.shares[0])); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Delete(randomKeyID(t), time.Now()); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var backups [][]byte
	for range 5 {
		var buf bytes.Buffer
		if _, err := s.WriteBackup(&buf); err != nil {
			t.Fatal(err)
		}
		backups = append(backups, buf.Bytes())
	}
	close(stop)
	wg.Wait()
	last := -1
	for i, b := range backups {
		path := filepath.Join(t.TempDir(), "shares.db")
		res, err := RestoreBackup(bytes.NewReader(b), path, []byte(backupPass), restoreOpts(f.m, "node-1"), false)
		if err != nil {
			t.Fatalf("backup %d: %v", i, err)
		}
		if res.Header.Deleted < last {
			t.Fatalf("backup %d has %d tombstones, the one before %d", i, res.Header.Deleted, last)
		}
		last = res.Header.Deleted
		r, err := open(t, path, backupPass, "node-1", f.m)
		if err != nil {
			t.Fatalf("backup %d: %v", i, err)
		}
		if r.Len() != 1 {
			t.Fatalf("backup %d: %d keys", i, r.Len())
		}
		r.Close()
	}
}

// reseal recomputes a backup's digest after an edit, as someone changing the file on purpose
// would: only the tag, which needs the passphrase, can then tell.
func reseal(b []byte) []byte {
	end := len(b) - backupTagSize - backupDigestSize
	d := sha256.Sum256(b[:end])
	out := bytes.Clone(b)
	copy(out[end:], d[:])
	return out
}

func TestRestoreRefuses(t *testing.T) {
	f, b, h, _ := backedUp(t)
	other, err := clusterinit.Create(t.TempDir(), clusterinit.Options{K: 2, N: 3})
	if err != nil {
		t.Fatal(err)
	}
	m2, err := trust.LoadManifest(other.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	hl := int(binary.BigEndian.Uint32(b[len(backupMagic):]))
	dbStart := len(backupMagic) + 4 + hl + 8
	tagStart := len(b) - backupTagSize
	edit := func(fn func(c []byte) []byte) []byte { return fn(bytes.Clone(b)) }
	flip := func(i int) []byte { return edit(func(c []byte) []byte { c[i] ^= 1; return c }) }
	header := func(fn func(h *BackupHeader)) []byte {
		hh := *h
		fn(&hh)
		hb, err := json.Marshal(&hh)
		if err != nil {
			t.Fatal(err)
		}
		c := append([]byte(backupMagic), binary.BigEndian.AppendUint32(nil, uint32(len(hb)))...)
		c = append(c, hb...)
		return reseal(append(c, b[len(backupMagic)+4+hl:]...))
	}
	cases := []struct {
		name  string
		data  []byte
		m     *trust.Manifest
		node  string
		pass  string
		want  error
		want2 error
	}{
		{name: "another node", data: b, node: "node-2", want: ErrWrongNode},
		{name: "another cluster", data: b, m: m2, want: ErrWrongCluster},
		{name: "wrong passphrase", data: b, pass: "wrong horse", want: ErrWrongPassphrase},
		{name: "not a backup", data: []byte("SQLite format 3\x00 and more"), want: ErrBadBackup},
		{name: "empty", data: nil, want: ErrBadBackup},
		{name: "truncated", data: b[:len(b)-100], want: ErrBadBackup},
		{name: "trailing data", data: append(bytes.Clone(b), 0), want: ErrBadBackup},
		{name: "database byte flipped", data: flip(dbStart + 5000), want: ErrBadBackup},
		{name: "database byte flipped, digest redone", data: reseal(flip(dbStart + 5000)), want: ErrCorrupt},
		{name: "tag flipped", data: flip(tagStart + 30), want: ErrCorrupt},
		{name: "header edited, digest redone", data: header(func(h *BackupHeader) { h.Deleted = 0 }), want: ErrCorrupt},
		{name: "key hidden from the header", data: header(func(h *BackupHeader) { h.Keys = nil }), want: ErrCorrupt},
		{name: "header claims another node", data: header(func(h *BackupHeader) { h.Node = "node-2" }), node: "node-2", want: ErrWrongPassphrase, want2: ErrCorrupt},
		{name: "huge header length", data: edit(func(c []byte) []byte { binary.BigEndian.PutUint32(c[len(backupMagic):], 1<<31); return c }), want: ErrBadBackup},
		{name: "huge database length", data: edit(func(c []byte) []byte {
			binary.BigEndian.PutUint64(c[dbStart-8:], 1<<62)
			return c
		}), want: ErrBadBackup},
		{name: "kdf out of range", data: header(func(h *BackupHeader) {
			h.KDF = json.RawMessage(strings.Replace(string(h.KDF), `"memory_kib":1024`, `"memory_kib":999999999`, 1))
		}), want: ErrBadBackup},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, node, pass := f.m, "node-1", backupPass
			if tc.m != nil {
				m = tc.m
			}
			if tc.node != "" {
				node = tc.node
			}
			if tc.pass != "" {
				pass = tc.pass
			}
			dir := t.TempDir()
			path := filepath.Join(dir, "shares.db")
			_, err := RestoreBackup(bytes.NewReader(tc.data), path, []byte(pass), restoreOpts(m, node), false)
			if !errors.Is(err, tc.want) && (tc.want2 == nil || !errors.Is(err, tc.want2)) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Fatalf("a refused restore left %v", ents)
			}
		})
	}
}

func TestRestoreOverExistingStore(t *testing.T) {
	f, b, _, _ := backedUp(t)
	path := filepath.Join(t.TempDir(), "shares.db")
	s, err := open(t, path, backupPass, "node-1", f.m)
	if err != nil {
		t.Fatal(err)
	}
	// A running node holds the file: refused, even with force.
	for _, force := range []bool{false, true} {
		if _, err := RestoreBackup(bytes.NewReader(b), path, []byte(backupPass), restoreOpts(f.m, "node-1"), force); !errors.Is(err, ErrLocked) {
			t.Fatalf("force %v: restore over a store in use: %v", force, err)
		}
	}
	s.Close()
	if _, err := RestoreBackup(bytes.NewReader(b), path, []byte(backupPass), restoreOpts(f.m, "node-1"), false); !errors.Is(err, ErrExists) {
		t.Fatalf("restore over a store without force: %v", err)
	}
	res, err := RestoreBackup(bytes.NewReader(b), path, []byte(backupPass), restoreOpts(f.m, "node-1"), true)
	if err != nil {
		t.Fatal(err)
	}
	// The old store was moved aside, not deleted: it is the empty one.
	old, err := open(t, res.Replaced, backupPass, "node-1", f.m)
	if err != nil || old.Len() != 0 {
		t.Fatalf("old store at %q: %v", res.Replaced, err)
	}
	old.Close()
	s, err = open(t, path, backupPass, "node-1", f.m)
	if err != nil || s.Len() != 1 {
		t.Fatalf("restored store: %v", err)
	}
	s.Close()
}

func TestWriteBackupClosed(t *testing.T) {
	f := dealt(t)
	s, err := open(t, filepath.Join(t.TempDir(), "shares.db"), backupPass, "node-1", f.m)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := s.WriteBackup(&bytes.Buffer{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("backup of a closed store: %v", err)
	}
}
