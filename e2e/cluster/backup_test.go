package cluster_test

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/testcluster"
	"github.com/tchsm/tchsm/node"
	"github.com/tchsm/tchsm/scheme"
)

// TestBackupRestoreUnderLoad (issue 19): node 3 of a 3-of-5 cluster is backed up while it
// runs; then a key is deleted and two are made (RSA and Ed25519). Under signing load (every
// signature verified) node 3 stops, its folder is wiped and made again from its configuration
// and identity alone (a new host), its store restored from the backup, and it starts: no
// signature fails, node 3 signs again within 10 s of its start, the keys made since are
// reported missing on it, the key deleted since as held by it alone, and `tchsm keys delete`
// deletes it there too. With nodes 1 and 2 killed, node 3 is needed and signs. A backup of
// the stopped node is taken from its file. About 40 s.
func TestBackupRestoreUnderLoad(t *testing.T) {
	tc := testcluster.Start(t, testcluster.Options{K: 3, N: 5})
	c := tc.Client()
	k := generate(t, c, 2048)
	doomed := generate(t, c, 1024)
	cfg3 := tc.Layout.Nodes[2]
	var n3 config.Node
	if err := config.Load(cfg3, &n3); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(node.SocketPath(&n3)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("node 3's backup socket: %v, %v", fi, err)
	}

	// The online backup.
	backup := filepath.Join(t.TempDir(), "node-3.backup")
	t0 := time.Now()
	out, stderr, err := tchsm(t, tc, tc.ClientConfig, "node", "backup", "-config", cfg3, "-out", backup)
	if err != nil {
		t.Fatalf("node backup: %v\n%s%s", err, out, stderr)
	}
	t.Logf("online backup of node 3 (command included): %v\n%s", time.Since(t0).Round(time.Millisecond), out)
	if !strings.Contains(out, "from the running node") || !strings.Contains(out, "2 key(s)") ||
		!strings.Contains(out, k.ID) || !strings.Contains(out, doomed.ID) {
		t.Fatalf("node backup says:\n%s", out)
	}
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, %v", fi, err)
	}

	// After the backup: one key deleted, two made.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.DeleteKey(ctx, doomed.ID); err != nil {
		t.Fatal(err)
	}
	later := generate(t, c, 1024)
	laterEd := generateEd(t, c)
	// Node 3 stored both before it goes (it is up: the dealer waits for every node a while,
	// and the DKG had all five), and deleted the doomed key.
	waitKeys(t, c, "node-3", []string{k.ID, later.ID, laterEd.ID})

	// A restore while the node runs is refused.
	if _, stderr, err := tchsm(t, tc, tc.ClientConfig, "node", "restore", "-config", cfg3, "-in", backup, "-force"); err == nil || !strings.Contains(stderr, "stop it before restoring") {
		t.Fatalf("restore under a running node: %v\n%s", err, stderr)
	}

	// The load: four goroutines sign with k, every signature verified.
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				msg := []byte(fmt.Sprintf("load %d/%d", g, i))
				sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
				sig, err := c.Sign(sctx, k.ID, scheme.SHA256RSAPKCS, msg)
				scancel()
				if err == nil {
					d := sha256.Sum256(msg)
					err = rsa.VerifyPKCS1v15(k.Public.(*rsa.PublicKey), crypto.SHA256, d[:], sig)
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%q: %v", msg, err))
					continue
				}
				ok.Add(1)
			}
		})
	}
	time.Sleep(time.Second)

	// Node 3 stops; its folder is wiped and made again with only what a new host gets: its
	// configuration and identity (the passphrase lives outside it).
	tc.StopNode(3)
	// A backup now, offline, would have had every key.
	out, stderr, err = tchsm(t, tc, tc.ClientConfig, "node", "backup", "-config", cfg3, "-out", backup+".offline")
	if err != nil || !strings.Contains(out, "from the store file (node stopped)") || !strings.Contains(out, "3 key(s), 1 deletion(s)") {
		t.Fatalf("offline backup: %v\n%s%s", err, out, stderr)
	}
	dir := filepath.Dir(cfg3)
	keep := map[string][]byte{}
	for _, f := range []string{cfg3, n3.Identity} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		keep[f] = b
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for f, b := range keep {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t0 = time.Now()
	out, stderr, err = tchsm(t, tc, tc.ClientConfig, "node", "restore", "-config", cfg3, "-in", backup)
	if err != nil {
		t.Fatalf("node restore: %v\n%s%s", err, out, stderr)
	}
	t.Logf("restore (command included: Argon2id for the identity, the tag and the store): %v\n%s%s", time.Since(t0).Round(time.Millisecond), out, stderr)
	if !strings.Contains(out, "2 key(s)") || !strings.Contains(stderr, "tchsm status") {
		t.Fatalf("node restore says:\n%s%s", out, stderr)
	}
	before := c.NodeStats()["node-3"].Shares
	started := time.Now()
	tc.StartNode(3)
	var back time.Duration
	for {
		if c.NodeStats()["node-3"].Shares > before {
			back = time.Since(started)
			break
		}
		if time.Since(started) > 10*time.Second {
			t.Fatalf("node 3 gave no share within 10 s of its start (stats %v)", c.NodeStats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	t.Logf("node 3 signs again %v after its start; load: %d signatures verified, %d failed", back.Round(time.Millisecond), ok.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Fatalf("%d of %d signatures failed under load; first: %v", failed.Load(), ok.Load()+failed.Load(), firstErr.Load())
	}

	// What node 3 holds now: the backup's keys, the deleted one included.
	waitKeys(t, c, "node-3", []string{k.ID, doomed.ID})
	missing := []string{later.ID, laterEd.ID}
	slices.Sort(missing)
	out, stderr, err = tchsm(t, tc, tc.ClientConfig, "status")
	if err != nil {
		t.Fatalf("status: %v\n%s%s", err, out, stderr)
	}
	t.Logf("tchsm status:\n%s", out)
	for _, want := range []string{
		"node-3 lacks 2 key(s): " + strings.Join(missing, " "),
		"key " + doomed.ID + " is held only by node-3 (1 of the 3 needed to sign)",
		"tchsm keys delete " + doomed.ID,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q", want)
		}
	}

	// The deletion again, for node 3.
	if out, stderr, err := tchsm(t, tc, tc.ClientConfig, "keys", "delete", doomed.ID); err != nil {
		t.Fatalf("keys delete: %v\n%s%s", err, out, stderr)
	}
	waitKeys(t, c, "node-3", []string{k.ID})

	// Nodes 1 and 2 down: node 3 is one of the three needed for k, and the key dealt after
	// its backup, which only nodes 1, 2, 4 and 5 hold, cannot sign.
	tc.KillNode(1)
	tc.KillNode(2)
	for i := range 5 {
		signOK(t, c, k, fmt.Sprintf("node 3 needed %d", i))
	}
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if _, err := c.Sign(sctx, later.ID, scheme.SHA256RSAPKCS, []byte("x")); err == nil {
		t.Fatal("a key only nodes 4 and 5 hold among those up signed")
	}
}

// waitKeys waits until node id lists exactly want.
func waitKeys(t *testing.T, c *client.Client, id string, want []string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		st, err := c.Status(ctx)
		cancel()
		for _, s := range st {
			if s.ID == id && s.OK && slices.Equal(slices.Sorted(slices.Values(s.Keys)), want) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not list %v: %+v, %v", id, want, st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
