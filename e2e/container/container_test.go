// Package container_test checks the container image's build and entrypoint without Docker (no
// engine runs on CI machines): it builds the binary with the script the Dockerfile runs, then
// runs the exact command lines of the Dockerfile (CMD, HEALTHCHECK) and of
// deploy/docker-compose.yml against the real broker, with the passphrase passed the way the
// containers get it.
package container_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/testcluster"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestDockerfileRunsTheBuildScript(t *testing.T) {
	df, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`RUN scripts/build-binary.sh /out "${VERSION}"`,
		`apt-get install -y --no-install-recommends libssl-dev`,
		`USER nonroot:nonroot`,
		`ENTRYPOINT ["/usr/local/bin/tchsm"]`,
		`CMD ["node", "-config", "/etc/tchsm/node.json"]`,
		`CMD ["/usr/local/bin/tchsm", "healthcheck", "-url", "http://127.0.0.1:9100/healthz"]`,
	} {
		if !strings.Contains(string(df), want) {
			t.Errorf("Dockerfile lacks %s", want)
		}
	}
}

// TestEntrypoint builds with scripts/build-binary.sh, then runs a node exactly as the compose
// file does (flags and all), passphrase from a secret file, and its health check as Docker
// would; then again with the passphrase only in $TCHSM_PASSPHRASE.
func TestEntrypoint(t *testing.T) {
	root := repoRoot(t)
	out := t.TempDir()
	build := exec.Command("bash", "scripts/build-binary.sh", out, "container-test")
	build.Dir = root
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("scripts/build-binary.sh: %v\n%s", err, b)
	}
	bin := filepath.Join(out, "tchsm")
	if b, err := exec.Command(bin, "version").CombinedOutput(); err != nil || !strings.Contains(string(b), "container-test") {
		t.Fatalf("version: %v %s", err, b)
	}
	if b, err := exec.Command("file", bin).CombinedOutput(); err == nil && !strings.Contains(string(b), "statically linked") {
		t.Errorf("the image binary must be static (distroless/static): %s", b)
	}
	// The image's node computes shares with OpenSSL's constant-time exponentiation (issue 17).
	if b, err := exec.Command(bin, "version").CombinedOutput(); err != nil || !strings.Contains(string(b), "share exponentiation: openssl (OpenSSL 3.") {
		t.Errorf("the image binary must link OpenSSL's exponentiation: %v %s", err, b)
	}

	_, url := testcluster.VHost(t)
	dir := t.TempDir()
	if b, err := exec.Command(bin, "init", "-dir", dir, "-k", "2", "-n", "2", "-amqp", url, "-broker-users=false").CombinedOutput(); err != nil {
		t.Fatalf("init: %v\n%s", err, b)
	}
	// The compose file's node command, with its container paths mapped into dir.
	compose, err := os.ReadFile(filepath.Join(root, "deploy", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`node-1:\n(?:.*\n)*?\s+command: \[(.*)\]`).FindSubmatch(compose)
	if m == nil {
		t.Fatal("no node-1 command in deploy/docker-compose.yml")
	}
	var args []string
	for _, a := range strings.Split(string(m[1]), ",") {
		args = append(args, strings.Trim(strings.TrimSpace(a), `"`))
	}
	nodeDir := filepath.Join(dir, "nodes", "node-1")
	secret := filepath.Join(t.TempDir(), "node1_passphrase")
	if _, err := os.Stat(filepath.Join(nodeDir, "passphrase")); err == nil {
		t.Fatal("init put the passphrase in the node's folder")
	}
	pass, err := os.ReadFile(filepath.Join(dir, "secrets", "node-1.passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, pass, 0o400); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(dir, "secrets")) // in the image it is only the secret
	metrics := freePort(t)
	replace := map[string]string{
		"/etc/tchsm/node/node.json":     filepath.Join(nodeDir, "node.json"),
		"/etc/tchsm/manifest.json":      filepath.Join(dir, "manifest.json"),
		"/var/lib/tchsm/shares.db":      filepath.Join(t.TempDir(), "shares.db"),
		"/run/secrets/node1_passphrase": secret,
		":9100":                         metrics,
	}
	for i, a := range args {
		if r, ok := replace[a]; ok {
			args[i] = r
		}
	}
	if args[0] != "node" {
		t.Fatalf("compose runs %v, not a node", args)
	}
	runNode := func(env []string, args []string, check func(pid int)) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env...)
		logf, _ := os.Create(filepath.Join(t.TempDir(), "node.log"))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			cmd.Process.Signal(os.Interrupt)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					b, _ := os.ReadFile(logf.Name())
					t.Errorf("node did not stop cleanly on SIGINT: %v\n%s", err, b)
				}
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				t.Error("node did not stop within 10 s of SIGINT")
			}
		}()
		// The Dockerfile's HEALTHCHECK, pointed at this node's metrics address.
		deadline := time.Now().Add(20 * time.Second)
		for {
			hc, err := exec.Command(bin, "healthcheck", "-url", "http://"+metrics+"/healthz").CombinedOutput()
			if err == nil {
				t.Logf("healthcheck: %s", strings.TrimSpace(string(hc)))
				if check != nil {
					check(cmd.Process.Pid)
				}
				return
			}
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(logf.Name())
				t.Fatalf("healthcheck never passed: %v %s\nnode log:\n%s", err, hc, b)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	runNode(nil, args, nil)

	// The other way to give the passphrase: $TCHSM_PASSPHRASE, no file at all.
	var noFile []string
	for i := 0; i < len(args); i++ {
		if args[i] == "-passphrase-file" {
			i++
			continue
		}
		noFile = append(noFile, args[i])
	}
	// The node re-executes itself without it: its /proc/PID/environ (same pid) no longer holds it.
	runNode([]string{"TCHSM_PASSPHRASE=" + strings.TrimSpace(string(pass))}, noFile, func(pid int) {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(env, []byte("TCHSM_PASSPHRASE=")) || bytes.Contains(env, bytes.TrimSpace(pass)) {
			t.Errorf("the node's /proc/%d/environ still holds the passphrase", pid)
		}
		if !bytes.Contains(env, []byte("TCHSM_AMQP_URL")) && !bytes.Contains(env, []byte("PATH=")) {
			t.Errorf("the node's environment lost its other variables: %q", env)
		}
	})

	// A wrong passphrase is a clear error, not a crash.
	cmd := exec.Command(bin, noFile...)
	cmd.Env = append(os.Environ(), "TCHSM_PASSPHRASE=wrong")
	b, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(strings.ToLower(string(b)), "passphrase") {
		t.Fatalf("wrong passphrase: err=%v\n%s", err, b)
	}
	// No healthy node: the health check fails.
	if err := exec.Command(bin, "healthcheck", "-url", "http://"+metrics+"/healthz", "-timeout", "1s").Run(); err == nil {
		t.Fatal("healthcheck passed with no node running")
	}
}
