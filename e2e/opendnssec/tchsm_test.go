// The OpenDNSSEC harness against the real thing: libtchsm.so over a running
// tchsm cluster (testcluster: node and dealer processes, private RabbitMQ
// vhost):
//
//	go test ./e2e/opendnssec/ -run Tchsm -v

package opendnssec_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/dnspolicy/dnspolicytest"
	"github.com/tchsm/tchsm/internal/testcluster"
	"github.com/tchsm/tchsm/scheme"
)

// runTchsm runs run.sh against the cluster's module with extra args.
func runTchsm(t *testing.T, timeout time.Duration, so string, c *testcluster.Cluster, args ...string) (string, error) {
	t.Helper()
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte(c.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--module", so, "--token-label", "tchsm", "--pin-file", pinFile,
		"--env", "TCHSM_CONFIG=" + c.ClientConfig}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "./run.sh", append(base, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("run.sh %v: timed out after %v\n%s", args, timeout, out)
	}
	return string(out), err
}

// signAndVerify runs run.sh against the cluster's module with args, in a work folder of its
// own, and checks that ldns-verify-zone accepted the signed zone.
func signAndVerify(t *testing.T, timeout time.Duration, so string, c *testcluster.Cluster, args ...string) {
	t.Helper()
	work := filepath.Join(t.TempDir(), "work")
	out, err := runTchsm(t, timeout, so, c, append(args, "--records", "1000", "--signer-threads", "8", "--workdir", work, "--keep")...)
	t.Logf("harness output:\n%s", out)
	if err != nil {
		t.Fatalf("run.sh %v against libtchsm.so failed: %v", args, err)
	}
	if !strings.Contains(out, "verified: ldns-verify-zone accepted") {
		t.Fatal("harness did not report a verified zone")
	}
	signed := filepath.Join(work, "signed", "example.test")
	if vout, err := exec.Command("ldns-verify-zone", signed).CombinedOutput(); err != nil {
		t.Fatalf("ldns-verify-zone rejects the signed zone: %v\n%s", err, vout)
	}
}

// TestTchsmSignAndVerify: OpenDNSSEC's enforcer generates RSASHA256 KSK and ZSK in a 3-of-5
// cluster and its signer (8 threads) signs a 1000-record zone that ldns-verify-zone accepts;
// then the same again, from scratch, with two of the five node processes killed.
func TestTchsmSignAndVerify(t *testing.T) {
	needRoot(t)
	so := testcluster.Module(t)
	c := testcluster.Start(t, testcluster.Options{K: 3, N: 5})
	run := func(t *testing.T) { signAndVerify(t, 15*time.Minute, so, c, "--timeout", "600") }
	t.Run("all five nodes", run)
	c.KillNode(2)
	c.KillNode(5)
	t.Run("two of five nodes killed", run)
}

// TestTchsmSignAndVerifyEd25519: the same with algorithm 15. The enforcer asks the token for
// Ed25519 KSK and ZSK (CKM_EC_EDWARDS_KEY_PAIR_GEN): the nodes generate each key together (no
// dealer, no machine ever holds it), and the signer signs every RRset with CKM_EDDSA through
// FROST. With two nodes killed, the three others generate the keys and the deals for the two
// wait in their control queues: once restarted, they compute their shares, and the cluster
// then signs with the two of them and one other. Every node has a signing policy (only
// example.test, at most 30 days of validity), so every RRSIG OpenDNSSEC asks for is checked by
// the nodes: first a KASP with 60 days of validity gets no signed zone, and the nodes' log and
// refusal metric say why.
func TestTchsmSignAndVerifyEd25519(t *testing.T) {
	needRoot(t)
	so := testcluster.Module(t)
	policy := &config.SigningPolicy{Default: &config.KeyPolicy{Zones: []string{"example.test"}, MaxValidity: config.Duration(30 * 24 * time.Hour)}}
	metrics := fmt.Sprintf("127.0.0.1:%d", testcluster.FreePort(t))
	c := testcluster.Start(t, testcluster.Options{K: 3, N: 5, NodeConfig: func(i int, nc *config.Node) {
		nc.SigningPolicy = policy
		if i == 3 {
			nc.MetricsAddr = metrics
		}
	}})
	t.Run("validity above the nodes' limit", func(t *testing.T) {
		out, err := runTchsm(t, 3*time.Minute, so, c, "--algorithm", "15", "--validity", "P60D", "--records", "100", "--timeout", "25")
		if err == nil || strings.Contains(out, "verified: ldns-verify-zone accepted") {
			t.Fatalf("OpenDNSSEC signed a zone with 60 days of validity under a 30-day policy:\n%s", out)
		}
		b, _ := os.ReadFile(filepath.Join(c.Dir, "node-3.log"))
		if !strings.Contains(string(b), `"msg":"signature refused by policy"`) || !strings.Contains(string(b), `"reason":"validity"`) {
			t.Fatalf("node-3.log shows no validity refusal")
		}
		resp, err := http.Get("http://" + metrics + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !regexp.MustCompile(`tchsm_node_policy_refusals_total\{[^}]*reason="validity"[^}]*\} [1-9]`).Match(body) {
			t.Fatalf("node-3's metrics count no validity refusal:\n%s", grepLines(string(body), "refusals"))
		}
	})
	run := func(t *testing.T) { signAndVerify(t, 10*time.Minute, so, c, "--algorithm", "15", "--timeout", "300") }
	t.Run("all five nodes", run)
	before := edKeys(t, c)
	if len(before) < 2 {
		t.Fatalf("the cluster holds %d Ed25519 keys, want the enforcer's KSK and ZSK", len(before))
	}
	c.KillNode(2)
	c.KillNode(5)
	t.Run("two of five nodes killed", run)
	var late []string
	for _, id := range edKeys(t, c) {
		if !slices.Contains(before, id) {
			late = append(late, id)
		}
	}
	if len(late) < 2 {
		t.Fatalf("%d Ed25519 keys made with two nodes killed, want a KSK and a ZSK", len(late))
	}
	c.StartNode(2)
	c.StartNode(5)
	cl := c.Client()
	deadline := time.Now().Add(time.Minute)
	for _, node := range []string{"node-2", "node-5"} {
		for !holds(t, cl, node, late) {
			if time.Now().After(deadline) {
				c.DumpLogs()
				t.Fatalf("%s does not hold the keys made while it was down (%v) a minute after its restart", node, late)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// Signing needs the late shares now: only nodes 2, 5 and one other are up.
	c.KillNode(1)
	c.KillNode(3)
	for _, id := range late {
		k, err := cl.Key(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		pub := k.Public.(ed25519.PublicKey)
		msg := dnspolicytest.ZoneA(pub, "example.test", time.Now().Add(-time.Hour), time.Now().Add(7*24*time.Hour))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		sig, err := cl.Sign(ctx, id, scheme.EDDSA, msg)
		cancel()
		if err != nil {
			t.Fatalf("key %s with nodes 2, 4 and 5: %v", id, err)
		}
		if !ed25519.Verify(pub, msg, sig) {
			t.Fatalf("key %s: the signature does not verify", id)
		}
	}
	for i := 1; i <= 5; i++ {
		b, _ := os.ReadFile(filepath.Join(c.Dir, fmt.Sprintf("node-%d.log", i)))
		if !strings.Contains(string(b), `"policy":"enforced","requester"`) || strings.Contains(string(b), `"policy":"none"`) {
			t.Errorf("node-%d.log: not every share signed under the policy", i)
		}
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// edKeys returns the ids of the cluster's Ed25519 keys.
func edKeys(t *testing.T, c *testcluster.Cluster) []string {
	t.Helper()
	keys, err := c.Client().Keys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, k := range keys {
		if k.Algorithm == scheme.Ed25519FROST {
			ids = append(ids, k.ID)
		}
	}
	return ids
}

// holds reports whether node lists every key of ids.
func holds(t *testing.T, cl *client.Client, node string, ids []string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sts, _ := cl.Status(ctx)
	for _, st := range sts {
		if st.ID == node {
			for _, id := range ids {
				if !slices.Contains(st.Keys, id) {
					return false
				}
			}
			return true
		}
	}
	return false
}
