//go:build tchsm_e2e

// The OpenDNSSEC harness against the real thing: libtchsm.so over a running
// tchsm cluster (testcluster: node and dealer processes, private RabbitMQ
// vhost). Behind the tchsm_e2e build tag because it builds the module and the
// tchsm binary and generates several safe-prime RSA keys:
//
//	go test -tags tchsm_e2e ./e2e/opendnssec/ -run Tchsm -v -timeout 30m

package opendnssec_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/testcluster"
)

// buildModule builds libtchsm.so into a temp dir.
func buildModule(t *testing.T) string {
	t.Helper()
	so := filepath.Join(t.TempDir(), "libtchsm.so")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", so, "github.com/tchsm/tchsm/p11shim")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building libtchsm.so: %v\n%s", err, out)
	}
	return so
}

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

func TestTchsmSignAndVerify(t *testing.T) {
	needRoot(t)
	so := buildModule(t)
	c := testcluster.Start(t, testcluster.Options{K: 2, N: 3})
	work := filepath.Join(t.TempDir(), "work")
	out, err := runTchsm(t, 25*time.Minute, so, c,
		"--records", "1000", "--timeout", "1200", "--workdir", work, "--keep")
	t.Logf("harness output:\n%s", out)
	if err != nil {
		t.Fatalf("run.sh against libtchsm.so failed: %v", err)
	}
	if !strings.Contains(out, "verified: ldns-verify-zone accepted") {
		t.Fatal("harness did not report a verified zone")
	}
	signed := filepath.Join(work, "signed", "example.test")
	if vout, err := exec.Command("ldns-verify-zone", signed).CombinedOutput(); err != nil {
		t.Fatalf("ldns-verify-zone rejects the signed zone: %v\n%s", err, vout)
	}
}

func TestTchsmHsmutilTest(t *testing.T) {
	needRoot(t)
	so := buildModule(t)
	c := testcluster.Start(t, testcluster.Options{K: 2, N: 3})
	out, err := runTchsm(t, 25*time.Minute, so, c, "--hsmutil-test", "--timeout", "1200")
	t.Logf("harness output:\n%s", out)
	if err != nil {
		t.Fatalf("ods-hsmutil test (RSA part) failed against libtchsm.so: %v", err)
	}
}
