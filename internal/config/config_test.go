package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/logging"
)

func write(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadResolvesRelativePaths(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, "client.json", `{"manifest": "m.json", "identity": "/abs/id.json", "sign_timeout": "250ms"}`)
	var c Client
	if err := Load(p, &c); err != nil {
		t.Fatal(err)
	}
	if c.Manifest != filepath.Join(dir, "m.json") || c.Identity != "/abs/id.json" {
		t.Fatalf("paths: %q %q", c.Manifest, c.Identity)
	}
	if c.SignTimeout.Or(time.Second) != 250*time.Millisecond || c.KeygenTimeout.Or(time.Minute) != time.Minute {
		t.Fatal("durations")
	}
}

func TestLoadRejects(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"unknown field":    `{"manifest": "m", "identity": "i", "manifesto": "x"}`,
		"bad duration":     `{"manifest": "m", "identity": "i", "sign_timeout": "soon"}`,
		"number duration":  `{"manifest": "m", "identity": "i", "sign_timeout": 5}`,
		"missing manifest": `{"identity": "i"}`,
		"bad level":        `{"manifest": "m", "identity": "i", "log_level": "loud"}`,
		"not json":         `manifest = m`,
	} {
		var c Client
		if err := Load(write(t, dir, "c.json", body), &c); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	var n Node
	if err := Load(write(t, dir, "n.json", `{"manifest": "m", "identity": "i", "store": "s", "workers": -1}`), &n); !errors.Is(err, ErrInvalid) {
		t.Errorf("negative workers: %v", err)
	}
	var d Dealer
	if err := Load(write(t, dir, "d.json", `{"manifest": "m", "identity": "i", "pool_bits": [1000]}`), &d); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad pool_bits: %v", err)
	}
	if err := Load(filepath.Join(dir, "missing.json"), &d); !errors.Is(err, ErrInvalid) {
		t.Errorf("missing file: %v", err)
	}
}

func TestPassphrase(t *testing.T) {
	dir := t.TempDir()
	n := Node{PassphraseFile: write(t, dir, "p", "s3cret\n")}
	t.Setenv(EnvPassphrase, "")
	if p, err := n.Passphrase(); err != nil || string(p) != "s3cret" {
		t.Fatalf("from file: %q %v", p, err)
	}
	t.Setenv(EnvPassphrase, "from-env")
	if p, err := n.Passphrase(); err != nil || string(p) != "from-env" {
		t.Fatalf("from env: %q %v", p, err)
	}
	t.Setenv(EnvPassphrase, "")
	if _, err := (&Node{PassphraseFile: write(t, dir, "empty", "\n")}).Passphrase(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty passphrase file: %v", err)
	}
	if _, err := (&Node{}).Passphrase(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no passphrase: %v", err)
	}
}

func TestLevels(t *testing.T) {
	dir := t.TempDir()
	for _, l := range []string{"", "debug", "info", "warn", "error", "DEBUG"} {
		var c Client
		if err := Load(write(t, dir, "c.json", `{"manifest": "m", "identity": "i", "log_level": "`+l+`"}`), &c); err != nil {
			t.Errorf("client log_level %q: %v", l, err)
		}
		var n Node
		if err := Load(write(t, dir, "n.json", `{"manifest": "m", "identity": "i", "store": "s", "log_level": "`+l+`"}`), &n); err != nil {
			t.Errorf("node log_level %q: %v", l, err)
		}
	}
	for _, l := range []string{"loud", "warning", "info+2", "-4"} {
		var n Node
		err := Load(write(t, dir, "n.json", `{"manifest": "m", "identity": "i", "store": "s", "log_level": "`+l+`"}`), &n)
		if !errors.Is(err, ErrInvalid) || !errors.Is(err, logging.ErrLevel) {
			t.Errorf("node log_level %q: %v", l, err)
		}
		var d Dealer
		err = Load(write(t, dir, "d.json", `{"manifest": "m", "identity": "i", "log_level": "`+l+`"}`), &d)
		if !errors.Is(err, ErrInvalid) || !errors.Is(err, logging.ErrLevel) {
			t.Errorf("dealer log_level %q: %v", l, err)
		}
	}
}
