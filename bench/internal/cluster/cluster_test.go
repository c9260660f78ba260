package cluster

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseEnv(t *testing.T) {
	env := map[string]string{}
	for _, l := range []string{
		"TCHSM_CONFIG=/tmp/x/client.json",
		"export TCHSM_MODULE='/tmp/x/libtchsm.so'",
		`  TCHSM_TOKEN_LABEL="tchsm 1"  `,
		"# comment",
		"starting node 3...",
	} {
		ParseEnv(l, env)
	}
	want := map[string]string{"TCHSM_CONFIG": "/tmp/x/client.json", "TCHSM_MODULE": "/tmp/x/libtchsm.so", "TCHSM_TOKEN_LABEL": "tchsm 1"}
	if len(env) != len(want) {
		t.Fatalf("env = %v", env)
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
}

// fakeLauncher writes a shell script standing in for `tchsm` so that the launcher protocol
// itself (detached and foreground shapes, down) is exercised with real processes. The script
// sees "dev up --dir D --k K --n N": after a shift, $1 is up/down and $3 is D.
func fakeLauncher(t *testing.T, body string) Launcher {
	dir := t.TempDir()
	p := filepath.Join(dir, "launcher.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o700); err != nil {
		t.Fatal(err)
	}
	return Launcher{Command: []string{"/bin/sh", p}, Timeout: 10 * time.Second}
}

func TestUpDetached(t *testing.T) {
	dir := t.TempDir()
	l := fakeLauncher(t, `shift
case "$1" in
up) echo "export TCHSM_CONFIG=$3/client.json"; echo "TCHSM_PIN=1234"; touch "$3/up";;
down) rm "$3/up";;
esac
`)
	c, err := l.Up(context.Background(), dir, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if c.Env["TCHSM_CONFIG"] != dir+"/client.json" || c.FromEnv("TCHSM_PIN") != "1234" {
		t.Errorf("env = %v", c.Env)
	}
	if _, err := os.Stat(filepath.Join(dir, "up")); err != nil {
		t.Fatal("dev up did not run")
	}
	if err := c.Down(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "up")); !os.IsNotExist(err) {
		t.Error("dev down did not run")
	}
}

func TestUpForeground(t *testing.T) {
	dir := t.TempDir()
	l := fakeLauncher(t, `shift
case "$1" in
up) echo "TCHSM_CONFIG=$3/c.json"; exec sleep 60;;
down) touch "$3/down";;
esac
`)
	start := time.Now()
	c, err := l.Up(context.Background(), dir, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if c.cmd == nil {
		t.Fatal("foreground launcher not detected")
	}
	if err := c.Down(); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 20*time.Second {
		t.Error("foreground launcher not stopped")
	}
	if _, err := os.Stat(filepath.Join(dir, "down")); err != nil {
		t.Error("dev down not run")
	}
}

func TestUpFailures(t *testing.T) {
	if _, err := (Launcher{}).Up(context.Background(), t.TempDir(), 2, 3); !errors.Is(err, ErrNoLauncher) {
		t.Errorf("no command: %v", err)
	}
	l := fakeLauncher(t, "echo nothing useful\n")
	if _, err := l.Up(context.Background(), t.TempDir(), 2, 3); !errors.Is(err, ErrLaunch) {
		t.Errorf("no TCHSM_CONFIG: %v", err)
	}
	l = fakeLauncher(t, "exit 3\n")
	if _, err := l.Up(context.Background(), t.TempDir(), 2, 3); !errors.Is(err, ErrLaunch) {
		t.Errorf("failing launcher: %v", err)
	}
}

func TestUpPrivateVHost(t *testing.T) {
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		t.Skip("rabbitmqctl not installed")
	}
	dir := t.TempDir()
	l := fakeLauncher(t, `shift
case "$1" in
up) echo "$@" > "$3/args"; echo "TCHSM_CONFIG=$3/c.json";;
esac
`)
	l.VHost = "tchsm-bench-test-"
	c, err := l.Up(context.Background(), dir, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	args, _ := os.ReadFile(filepath.Join(dir, "args"))
	if !strings.Contains(string(args), "--amqp amqp://guest:guest@127.0.0.1:5672/"+c.vhost) || c.vhost == "" {
		t.Errorf("dev up args %q, vhost %q", args, c.vhost)
	}
	list, _ := exec.Command("rabbitmqctl", "-q", "list_vhosts").Output()
	if !strings.Contains(string(list), c.vhost) {
		t.Errorf("vhost %s not created", c.vhost)
	}
	if err := c.Down(); err != nil {
		t.Fatal(err)
	}
	list, _ = exec.Command("rabbitmqctl", "-q", "list_vhosts").Output()
	if strings.Contains(string(list), c.vhost) {
		t.Errorf("vhost %s not deleted", c.vhost)
	}
}
