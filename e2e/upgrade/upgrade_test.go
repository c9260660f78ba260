// Package upgrade holds the mixed-version test of issue 19 part 4: a cluster of release N−1
// (internal/protocol.Previous, built from its commit) upgraded node by node to this tree under
// signing load, then its dealer; clients of both releases sign throughout.
// docs/operations/upgrade.md is the procedure it follows.
package upgrade_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/internal/protocol"
	"github.com/tchsm/tchsm/internal/testcluster"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/scheme"
)

// load signs with an RSA and an Ed25519 key from workers goroutines until stop, verifying every
// signature; a signature that fails or does not verify is counted and its error kept.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       chan struct{}
	once       sync.Once
	wg         sync.WaitGroup
}

func startLoad(c *client.Client, workers int, keys ...client.KeyInfo) *load {
	l := &load{stop: make(chan struct{})}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				k := keys[(w+i)%len(keys)]
				msg := []byte(fmt.Sprintf("worker %d signature %d", w, i))
				if err := signVerify(c, k, msg); err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 10 {
						l.errs = append(l.errs, err.Error())
					}
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	return l
}

// end stops the load and waits for its signatures; once is enough, more is harmless.
func (l *load) end() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// progress waits until the load has made want more good signatures than it had made when
// called; a cluster that stopped signing fails the test after limit.
func (l *load) progress(t *testing.T, want int64, limit time.Duration, what string) {
	t.Helper()
	from := l.ok.Load()
	deadline := time.Now().Add(limit)
	for l.ok.Load()-from < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d signatures in %v, want %d (failed so far: %d %q)", what, l.ok.Load()-from, limit, want, l.failed.Load(), l.errors())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *load) errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.errs...)
}

func signVerify(c *client.Client, k client.KeyInfo, msg []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	mech := scheme.SHA256RSAPKCS
	if k.Algorithm == scheme.Ed25519FROST {
		mech = scheme.EDDSA
	}
	sig, err := c.Sign(ctx, k.ID, mech, msg)
	if err != nil {
		return fmt.Errorf("key %s: %w", k.Label, err)
	}
	return verify(k, msg, sig)
}

func verify(k client.KeyInfo, msg, sig []byte) error {
	switch pub := k.Public.(type) {
	case *rsa.PublicKey:
		h := sha256.Sum256(msg)
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig); err != nil {
			return fmt.Errorf("key %s: signature does not verify: %w", k.Label, err)
		}
	case ed25519.PublicKey:
		if !ed25519.Verify(pub, msg, sig) {
			return fmt.Errorf("key %s: Ed25519 signature does not verify", k.Label)
		}
	default:
		return fmt.Errorf("key %s: public key %T", k.Label, k.Public)
	}
	return nil
}

// waitProtocol waits until node id answers health with protocol want (1: release N−1).
func waitProtocol(t *testing.T, c *client.Client, id string, want int, limit time.Duration) client.NodeStatus {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, _ := c.Status(ctx)
		cancel()
		for _, s := range st {
			if s.ID == id && s.OK && s.Protocol == want {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer with protocol %d after %v: %+v", id, want, limit, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// oldTchsm runs the old release's tchsm command (a client of release N−1) with the client
// configuration cfg and the cluster's PIN in a file, and returns its standard output.
func oldTchsm(t *testing.T, tc *testcluster.Cluster, bin, cfg, stdin string, args ...string) string {
	t.Helper()
	pin := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pin, []byte(tc.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(args, "-pin-file", pin)...)
	cmd.Env = append(os.Environ(), "TCHSM_CONFIG="+cfg, "TCHSM_AMQP_URL="+tc.AMQPURL)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("old client (%s %s): %v\n%s", protocol.Previous, strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// oldSign signs msg with the old release's `tchsm sign` as signer-1 and checks the signature.
func oldSign(t *testing.T, tc *testcluster.Cluster, bin string, k client.KeyInfo, msg string) {
	t.Helper()
	out := oldTchsm(t, tc, bin, tc.SignerConfig, msg, "sign", "-key", k.ID)
	sig, err := base64.StdEncoding.DecodeString(out)
	if err != nil {
		t.Fatalf("old client's signature: %v: %q", err, out)
	}
	if err := verify(k, []byte(msg), sig); err != nil {
		t.Fatalf("old client: %v", err)
	}
}

// oldGenerate makes a key with the old release's `tchsm keys generate` as client-1 (an admin)
// and returns it as the new client sees it.
func oldGenerate(t *testing.T, tc *testcluster.Cluster, bin string, c *client.Client, args ...string) client.KeyInfo {
	t.Helper()
	id := oldTchsm(t, tc, bin, tc.ClientConfig, "", append([]string{"keys", "generate"}, args...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	k, err := c.Key(ctx, id)
	if err != nil {
		t.Fatalf("key %q the old client generated: %v", id, err)
	}
	return k
}

// TestRollingUpgrade (issue 19 part 4, docs/operations/upgrade.md): a 3-of-5 cluster made and
// run by release N−1 (protocol.Previous: its own `tchsm init`, nodes and dealer) holds an RSA
// key its dealer made and an Ed25519 key its nodes generated with a client of this release.
// Under signing load by a client of this release (both keys, every signature verified), each
// node in turn is stopped and started with this release's binary on the same configuration and
// data directory; then the dealer. Not one signature fails; signing goes on in every mixed
// state; the client sends batches only to the upgraded nodes, which advertise them. A client of
// release N−1 (its `tchsm sign`) signs with both keys against the mixed and the upgraded
// cluster; the upgraded dealer makes a key that old and new clients sign with; an old admin
// client makes an RSA key through the upgraded dealer and an Ed25519 key with the upgraded
// nodes; and one node rolled back to release N−1 on the data directory this release ran on
// serves again.
// About 30 s after the first build of the old binary (cached under GOCACHE afterwards).
func TestRollingUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two releases' processes")
	}
	old := testcluster.ReleaseBinary(t, protocol.PreviousCommit, protocol.Previous)
	cur := testcluster.Binary(t)
	t0 := time.Now()
	tc := testcluster.Start(t, testcluster.Options{K: 3, N: 5, Bin: old, InitBin: old, DealerPool: -1})
	c := tc.Client()
	for i := 1; i <= 5; i++ {
		if s := waitProtocol(t, c, fmt.Sprintf("node-%d", i), protocol.V1, 10*time.Second); s.Version != protocol.Previous {
			t.Fatalf("node-%d reports version %q, want %s (the old binary)", i, s.Version, protocol.Previous)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rsaKey, err := c.GenerateKey(ctx, client.GenerateRequest{Bits: 1024, Label: "rsa-old-dealer", P11ID: []byte{1}})
	if err != nil {
		t.Fatalf("GenerateKey (old dealer): %v", err)
	}
	edKey, err := c.GenerateKey(ctx, client.GenerateRequest{Algorithm: scheme.Ed25519FROST, Label: "ed-old-nodes", P11ID: []byte{2}})
	if err != nil {
		t.Fatalf("GenerateKey (Ed25519, old nodes): %v", err)
	}
	t.Logf("release %s cluster up with two keys: %v", protocol.Previous, time.Since(t0).Round(time.Millisecond))

	l := startLoad(c, 3, rsaKey, edKey)
	defer l.end()
	l.progress(t, 20, 20*time.Second, "all nodes old")
	for i := 1; i <= 5; i++ {
		id := fmt.Sprintf("node-%d", i)
		ti := time.Now()
		tc.StopNode(i)
		tc.StartNodeBin(i, cur)
		waitProtocol(t, c, id, protocol.Current, 20*time.Second)
		l.progress(t, 10, 20*time.Second, fmt.Sprintf("%d of 5 nodes upgraded", i))
		t.Logf("%s upgraded and signing again: %v (signatures so far: %d good, %d failed)", id, time.Since(ti).Round(time.Millisecond), l.ok.Load(), l.failed.Load())
		if p, ok := c.PeerProtocol(id); !ok || !p.Has(protocol.SignBatch) {
			t.Fatalf("client's view of upgraded %s: %+v, %v; want sign_batch", id, p, ok)
		}
		if i < 5 {
			if p, ok := c.PeerProtocol("node-5"); ok && p.Has(protocol.SignBatch) {
				t.Fatalf("client believes old node-5 advertises batches: %+v", p)
			}
		}
		if i == 2 {
			// The new command names the mix.
			cmd := exec.Command(cur, "status")
			cmd.Env = append(os.Environ(), "TCHSM_CONFIG="+tc.ClientConfig, "TCHSM_AMQP_URL="+tc.AMQPURL)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "nodes run different releases") ||
				!strings.Contains(string(out), protocol.Previous+" (protocol 1): node-3 node-4 node-5") {
				t.Fatalf("tchsm status, 2 of 5 nodes upgraded: %v\n%s", err, out)
			}
			t.Logf("tchsm status, 2 of 5 nodes upgraded:\n%s", out)
			oldSign(t, tc, old, rsaKey, "old client, mixed cluster")
			oldSign(t, tc, old, edKey, "old client, mixed cluster, Ed25519")
		}
	}

	// The dealer last.
	tc.StopDealer()
	tc.StartDealerBin(cur)
	gctx, gcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer gcancel()
	// The dealer's queue exists once it is up; until then a request finds no queue.
	var newKey client.KeyInfo
	for {
		newKey, err = c.GenerateKey(gctx, client.GenerateRequest{Bits: 1024, Label: "rsa-new-dealer", P11ID: []byte{3}})
		if err == nil {
			break
		}
		if !errors.Is(err, transport.ErrNoRoute) && !strings.Contains(err.Error(), "NO_ROUTE") || gctx.Err() != nil {
			t.Fatalf("GenerateKey (upgraded dealer): %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := signVerify(c, newKey, []byte("new key, new client")); err != nil {
		t.Fatal(err)
	}
	oldSign(t, tc, old, rsaKey, "old client, upgraded cluster")
	oldSign(t, tc, old, edKey, "old client, upgraded cluster, Ed25519")
	oldSign(t, tc, old, newKey, "old client, key of the upgraded dealer")
	// An old admin client has the upgraded dealer make a key, and runs a DKG with the
	// upgraded nodes; the new client signs with both.
	for _, k := range []client.KeyInfo{
		oldGenerate(t, tc, old, c, "-bits", "1024", "-label", "rsa-old-client"),
		oldGenerate(t, tc, old, c, "-alg", "ed25519", "-label", "ed-old-client"),
	} {
		if err := signVerify(c, k, []byte("key of an old client")); err != nil {
			t.Fatal(err)
		}
	}

	// Roll node 5 back: release N−1 opens the store this release ran on.
	tc.StopNode(5)
	tc.StartNodeBin(5, old)
	waitProtocol(t, c, "node-5", protocol.V1, 20*time.Second)
	// With nodes 1 and 2 stopped, signatures need the rolled-back node.
	tc.StopNode(1)
	tc.StopNode(2)
	l.progress(t, 10, 30*time.Second, "nodes 3, 4 (new) and 5 (rolled back)")
	l.end()
	t.Logf("%d signatures, %d failed, in %v", l.ok.Load(), l.failed.Load(), time.Since(t0).Round(time.Millisecond))
	if f := l.failed.Load(); f != 0 {
		t.Fatalf("%d signatures failed during the upgrade: %q", f, l.errors())
	}
}
