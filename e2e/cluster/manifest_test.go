package cluster_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/testcluster"
	"github.com/tchsm/tchsm/internal/trust"
	"github.com/tchsm/tchsm/scheme"
)

// TestManifestRevokeClient: a signer client signs; an admin builds, signs (with the offline
// admin key tchsm init made) and pushes a manifest update that revokes it, with the tchsm
// commands of docs/operations/revoke-client.md; the signer's next request is refused with
// client.ErrRevoked while the admin client keeps signing; an older update is refused; a node
// restarted keeps the newer manifest (its own file) and still refuses the revoked client; a node
// down during the push gets the update from its control queue (the dealer's copy) when it is
// back. Nodes 1 and 3 have manifest files of their own, so that what they hold is what they
// wrote. About 10 s (a quarter of it the cluster's start).
func TestManifestRevokeClient(t *testing.T) {
	start := time.Now()
	own := map[int]string{}
	tc := testcluster.Start(t, testcluster.Options{K: 2, N: 3, NodeConfig: func(i int, c *config.Node) {
		if i == 2 {
			return // node 2 keeps the manifest file the clients and the dealer share
		}
		b, err := os.ReadFile(c.Manifest)
		if err != nil {
			t.Fatal(err)
		}
		own[i] = filepath.Join(filepath.Dir(c.Store), "manifest.json")
		if err := os.WriteFile(own[i], b, 0o644); err != nil {
			t.Fatal(err)
		}
		c.Manifest = own[i]
	}})
	ownManifest := own[1]
	t.Logf("cluster up: %v", time.Since(start).Round(time.Millisecond))
	admin := tc.Client()
	signer := tc.Signer()
	k := generateEd(t, admin)
	signEdOK(t, signer, k, "before the revocation")

	// Offline: a copy of the manifest, the admin key, the update.
	offline := t.TempDir()
	m0, err := os.ReadFile(tc.Layout.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	mcopy := filepath.Join(offline, "manifest.json")
	if err := os.WriteFile(mcopy, m0, 0o644); err != nil {
		t.Fatal(err)
	}
	u1 := filepath.Join(offline, "revoke-signer-1.json")
	run := func(args ...string) string {
		t.Helper()
		out, errOut, err := tchsm(t, tc, tc.ClientConfig, args...)
		if err != nil {
			t.Fatalf("tchsm %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
		}
		return out
	}
	run("manifest", "revoke", "-manifest", mcopy, "-id", "signer-1", "-out", u1)
	// Unsigned, the update is refused by every member, and nothing changes.
	if out, _, err := tchsm(t, tc, tc.ClientConfig, "manifest", "push", "-in", u1); err == nil || !strings.Contains(out, "MANIFEST_REFUSED") {
		t.Fatalf("unsigned push: %v\n%s", err, out)
	}
	signEdOK(t, signer, k, "after an unsigned update")
	run("manifest", "sign", "-in", u1, "-key", tc.Layout.AdminKeys[0])
	run("manifest", "apply", "-manifest", mcopy, "-in", u1) // the offline copy moves forward
	// Node 3 is down during the push: the push says so, and the dealer's copy in node 3's
	// durable control queue reaches it when it is back.
	tc.StopNode(3)
	t0 := time.Now()
	out, _, err := tchsm(t, tc, tc.ClientConfig, "manifest", "push", "-in", u1)
	if err == nil || !strings.Contains(out, "node-3") || !strings.Contains(out, "node-1  serial 1") || !strings.Contains(out, "dealer  serial 1") {
		t.Fatalf("push with node 3 down: %v\n%s", err, out)
	}
	t.Logf("push to the dealer and 2 nodes (node 3 down): %v\n%s", time.Since(t0).Round(time.Millisecond), out)

	// The revoked client's next request is refused, with an error that says why.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t0 = time.Now()
	_, err = signer.Sign(ctx, k.ID, scheme.EDDSA, []byte("after the revocation"))
	cancel()
	t.Logf("refused in %v", time.Since(t0).Round(time.Millisecond))
	if !errors.Is(err, client.ErrRevoked) || !errors.Is(err, client.ErrUnauthorized) || !strings.Contains(err.Error(), "signer-1") {
		t.Fatalf("revoked client's Sign: %v", err)
	}
	t.Logf("revoked client refused: %v", err)
	for i := range 5 {
		signEdOK(t, admin, k, "the admin client signs on "+string(rune('a'+i)))
	}
	// Logging in again (C_Login) says so too.
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	_, err = signer.Login(ctx, []byte(tc.PIN))
	cancel()
	if !errors.Is(err, client.ErrRevoked) {
		t.Fatalf("revoked client's Login: %v", err)
	}
	if m, err := trust.LoadManifest(own[3]); err != nil || m.Serial != 0 {
		t.Fatalf("node 3's file changed while it was down: %v", err)
	}
	tc.StartNode(3) // starts at serial 0, from its own file
	tc.WaitUp(3, 20*time.Second)
	waitSerial(t, admin, "node-3", 1)
	if m, err := trust.LoadManifest(own[3]); err != nil || m.Serial != 1 {
		t.Fatalf("node 3 did not write the update it read from its control queue: %v", err)
	}
	// The update again is no change anywhere; the revoked client cannot open against the new
	// file.
	if out := run("manifest", "push", "-in", u1); !strings.Contains(out, "every member holds serial 1") || strings.Contains(out, "1 applied now") {
		t.Fatalf("push again: %s", out)
	}
	if _, err := client.Open(context.Background(), tc.SignerConfig); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("opening the revoked client with the shared (updated) manifest: %v", err)
	}

	// Node 1 wrote its own file; restarted, it holds serial 1 and refuses the client again.
	m, err := trust.LoadManifest(ownManifest)
	if err != nil || m.Serial != 1 {
		t.Fatalf("node 1's manifest file: serial %v, %v", m, err)
	}
	if _, err := os.Stat(trust.UpdatesPath(ownManifest)); err != nil {
		t.Fatalf("node 1 kept no updates: %v", err)
	}
	t0 = time.Now()
	tc.StopNode(1)
	tc.StartNode(1)
	tc.WaitUp(3, 20*time.Second)
	t.Logf("node 1 restarted: %v", time.Since(t0).Round(time.Millisecond))
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := admin.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if !s.OK || s.ManifestSerial != 1 || s.ManifestHash != m.Hash() {
			t.Fatalf("after the restart, %s: ok %v serial %d hash %.16s (want 1, %.16s): %s", s.ID, s.OK, s.ManifestSerial, s.ManifestHash, m.Hash(), s.Err)
		}
	}
	_, err = signer.Sign(ctx, k.ID, scheme.EDDSA, []byte("after the restart"))
	if !errors.Is(err, client.ErrRevoked) {
		t.Fatalf("revoked client after the restart: %v", err)
	}
	signEdOK(t, admin, k, "after the restart")
	t.Logf("whole test %v", time.Since(start).Round(time.Millisecond))
}

// waitSerial waits (at most 10 s) until node id reports manifest serial want.
func waitSerial(t *testing.T, c *client.Client, id string, want uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, _ := c.Status(ctx)
		cancel()
		for _, s := range st {
			if s.ID == id && s.OK && s.ManifestSerial == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not report manifest serial %d: %+v", id, want, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
