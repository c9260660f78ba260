// Package p11kit_test loads libtchsm.so the way every GnuTLS program does (Knot, PowerDNS,
// p11tool): through p11-kit, registered by the module file the project ships
// (deploy/p11-kit/tchsm.module). The machine's p11-kit configuration is never touched: each
// command runs in a private mount namespace where a temporary folder holding only tchsm.module
// is bind-mounted over /usr/share/p11-kit/modules (p11-kit ignores user configuration for
// root). p11-kit initialises modules with CKF_LIBRARY_CANT_CREATE_OS_THREADS.
package p11kit_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/testcluster"
)

func TestP11KitAndGnuTLS(t *testing.T) {
	for _, bin := range []string{"p11-kit", "p11tool", "unshare"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh installs p11-kit, gnutls-bin, util-linux)", bin)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: p11-kit's module folder is replaced in a private mount namespace")
	}
	if _, err := os.Stat(testcluster.P11KitModules); err != nil {
		t.Skipf("p11-kit module folder: %v", err)
	}
	so := testcluster.Module(t)
	c := testcluster.Start(t, testcluster.Options{K: 3, N: 5})

	modDir := testcluster.P11KitModuleDir(t, c.Token(so))
	env := append(os.Environ(), "TCHSM_CONFIG="+c.ClientConfig, "GNUTLS_PIN="+c.PIN)
	run := func(name string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := testcluster.P11KitCommand(ctx, modDir, name, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	out := run("p11-kit", "list-modules")
	if !strings.Contains(out, "token: tchsm") {
		t.Fatalf("p11-kit list-modules does not show the tchsm token:\n%s", out)
	}
	out = run("p11tool", "--list-tokens")
	if !strings.Contains(out, "Label: tchsm") {
		t.Fatalf("p11tool --list-tokens does not show the tchsm token:\n%s", out)
	}

	// A key made through GnuTLS, listed, and a signature through GnuTLS that it checks.
	const label = "gnutls-key"
	run("p11tool", "--login", "--generate-privkey", "rsa", "--bits", "2048", "--label", label, "pkcs11:token=tchsm")
	out = run("p11tool", "--login", "--list-all", "pkcs11:token=tchsm")
	if !strings.Contains(out, "object="+label) || !strings.Contains(out, "Type: Private key") {
		t.Fatalf("p11tool --list-all --login does not list the new private key:\n%s", out)
	}
	out = run("p11tool", "--login", "--test-sign", "pkcs11:token=tchsm;object="+label)
	if !strings.Contains(out, "Verifying against public key in the token... ok") {
		t.Fatalf("p11tool --test-sign:\n%s", out)
	}
	t.Logf("p11tool --test-sign:\n%s", out)
}
