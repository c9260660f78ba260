package cli_test

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tchsm/tchsm/internal/testcluster"
)

// run runs the real tchsm binary and returns stdout, failing the test on a non-zero exit.
func run(t *testing.T, env []string, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(testcluster.Binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("tchsm %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// TestDevClusterLifecycle drives the CLI as a user would: dev up, status, keys generate, list,
// show, sign (checked with crypto/rsa), delete, dev down.
func TestDevClusterLifecycle(t *testing.T) {
	_, url := testcluster.VHost(t)
	dir := filepath.Join(t.TempDir(), "dev")
	env := []string{"TCHSM_AMQP_URL=" + url}
	out := run(t, env, "", "dev", "up", "-dir", dir, "-k", "2", "-n", "3", "-workers", "1")
	t.Cleanup(func() { exec.Command(testcluster.Binary(t), "dev", "down", "-dir", dir, "-purge").Run() })
	if !strings.HasPrefix(out, "export TCHSM_CONFIG=") {
		t.Fatalf("dev up printed %q", out)
	}
	env = append(env, strings.TrimSpace(strings.TrimPrefix(out, "export ")))
	if st := run(t, env, "", "status"); strings.Count(st, " up ") != 3 {
		t.Fatalf("status:\n%s", st)
	}
	id := strings.TrimSpace(run(t, env, "", "keys", "generate", "-bits", "1024", "-label", "cli-test", "-id", "0a0b"))
	if len(id) != 32 {
		t.Fatalf("keys generate printed %q", id)
	}
	if list := run(t, env, "", "keys", "list"); !strings.Contains(list, id) || !strings.Contains(list, "cli-test") || !strings.Contains(list, "0a0b") {
		t.Fatalf("keys list:\n%s", list)
	}
	if st := run(t, env, "", "status", "-keys"); strings.Count(st, "holds: "+id) != 3 || strings.Contains(st, "lacks") {
		t.Fatalf("status -keys:\n%s", st)
	}
	show := run(t, env, "", "keys", "show", id)
	blk, _ := pem.Decode([]byte(show[strings.Index(show, "-----BEGIN"):]))
	if blk == nil {
		t.Fatalf("keys show has no PEM public key:\n%s", show)
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sigB64 := run(t, env, "zone data", "sign", "-key", id, "-mech", "sha256")
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(sigB64))
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("zone data"))
	if err := rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), crypto.SHA256, d[:], sig); err != nil {
		t.Fatalf("CLI signature does not verify: %v", err)
	}
	run(t, env, "", "keys", "delete", id)
	run(t, env, "", "dev", "down", "-dir", dir)
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err != nil {
		t.Fatal("dev down without -purge removed the cluster")
	}
}

func TestUsageErrors(t *testing.T) {
	bin := testcluster.Binary(t)
	for _, args := range [][]string{{"frobnicate"}, {"init"}, {"keys"}, {"dev", "sideways"}, {"sign"},
		{"sign", "-key", "k", "-mech", "md5"}} {
		err := exec.Command(bin, args...).Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("tchsm %v: %v, want exit code 2", args, err)
		}
	}
	// The -mech values are the PKCS#11 token's signing mechanisms.
	out, _ := exec.Command(bin, "sign", "-h").CombinedOutput()
	if !strings.Contains(string(out), "raw, sha1, sha224, sha256, sha384, sha512 (raw: ") {
		t.Errorf("sign -h:\n%s", out)
	}
	if err := exec.Command(bin, "status", "-config", "/nonexistent.json").Run(); err == nil {
		t.Error("status with a missing config succeeded")
	}
	if out, err := exec.Command(bin, "help").Output(); err != nil || !strings.Contains(string(out), "dev") {
		t.Errorf("help: %v %s", err, out)
	}
}
