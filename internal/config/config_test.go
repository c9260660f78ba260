package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/logging"
	"github.com/tchsm/tchsm/internal/pin"
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

// One client file holds the client's settings and the PKCS#11 module's section; one Load
// reads both.
func TestLoadClientWithPKCS11(t *testing.T) {
	dir := t.TempDir()
	h, err := pin.Hash("1234")
	if err != nil {
		t.Fatal(err)
	}
	p := write(t, dir, "client.json", `{"manifest": "m.json", "identity": "id.json", "log_file": "client.log",
		"log_level": "debug", "hedge": "30ms", "batch": 4,
		"pkcs11": {"token_label": "ods", "serial": "0001", "user_pin_hash": "`+h+`", "sign_timeout": "3s",
			"list_timeout": "1s", "log_file": "pkcs11.log", "log_level": "WARN"}}`)
	var c Client
	if err := Load(p, &c); err != nil {
		t.Fatal(err)
	}
	if c.LogFile != filepath.Join(dir, "client.log") || c.LogLevel != "debug" || c.Hedge.Or(0) != 30*time.Millisecond || c.Batch != 4 {
		t.Fatalf("client part: %+v", c)
	}
	if c.PKCS11 == nil {
		t.Fatal("no pkcs11 section")
	}
	// Relative paths in the section are relative to the file's folder too.
	if c.PKCS11.LogFile != filepath.Join(dir, "pkcs11.log") {
		t.Fatalf("pkcs11 log_file %q", c.PKCS11.LogFile)
	}
	got := c.TokenSettings()
	want := PKCS11{TokenLabel: "ods", Serial: "0001", UserPINHash: h, SignTimeout: Duration(3 * time.Second),
		KeygenTimeout: Duration(DefaultKeygenTimeout), RequestTimeout: Duration(DefaultRequestTimeout),
		ListTimeout: Duration(time.Second), KeyCacheTTL: Duration(DefaultKeyCacheTTL),
		LogFile: filepath.Join(dir, "pkcs11.log"), LogLevel: "WARN"}
	if got != want {
		t.Fatalf("TokenSettings:\n got %+v\nwant %+v", got, want)
	}
}

func TestTokenSettingsDefaults(t *testing.T) {
	dir := t.TempDir()
	var c Client
	if err := Load(write(t, dir, "c.json", `{"manifest": "m", "identity": "i"}`), &c); err != nil {
		t.Fatal(err)
	}
	if c.PKCS11 != nil {
		t.Fatal("a file without a pkcs11 section has one")
	}
	want := PKCS11{TokenLabel: DefaultTokenLabel, Serial: DefaultSerial, SignTimeout: Duration(DefaultSignTimeout),
		KeygenTimeout: Duration(DefaultKeygenTimeout), RequestTimeout: Duration(DefaultRequestTimeout),
		ListTimeout: Duration(DefaultListTimeout), KeyCacheTTL: Duration(DefaultKeyCacheTTL)}
	if got := c.TokenSettings(); got != want {
		t.Fatalf("defaults:\n got %+v\nwant %+v", got, want)
	}
	if got := (PKCS11{}).WithDefaults(); got != want {
		t.Fatalf("WithDefaults:\n got %+v\nwant %+v", got, want)
	}
	// The client and the token share one sign_timeout default.
	if c.SignTimeout.Or(DefaultSignTimeout) != time.Duration(c.TokenSettings().SignTimeout) {
		t.Fatal("the client and the token disagree on the default sign_timeout")
	}
	// An empty section is the same as none.
	c = Client{}
	if err := Load(write(t, dir, "c.json", `{"manifest": "m", "identity": "i", "pkcs11": {}}`), &c); err != nil {
		t.Fatal(err)
	}
	if got := c.TokenSettings(); got != want {
		t.Fatalf("empty section:\n got %+v\nwant %+v", got, want)
	}
}

// The client's timeouts apply to the token unless its section sets its own.
func TestTokenSettingsFallBackToClient(t *testing.T) {
	dir := t.TempDir()
	var c Client
	if err := Load(write(t, dir, "c.json", `{"manifest": "m", "identity": "i", "sign_timeout": "4s", "keygen_timeout": "5m"}`), &c); err != nil {
		t.Fatal(err)
	}
	if s := c.TokenSettings(); time.Duration(s.SignTimeout) != 4*time.Second || time.Duration(s.KeygenTimeout) != 5*time.Minute {
		t.Fatalf("%+v", s)
	}
	c = Client{}
	if err := Load(write(t, dir, "c.json", `{"manifest": "m", "identity": "i", "sign_timeout": "4s",
		"pkcs11": {"sign_timeout": "8s"}}`), &c); err != nil {
		t.Fatal(err)
	}
	if s := c.TokenSettings(); time.Duration(s.SignTimeout) != 8*time.Second || time.Duration(s.KeygenTimeout) != DefaultKeygenTimeout {
		t.Fatalf("%+v", s)
	}
	if c.SignTimeout.Or(DefaultSignTimeout) != 4*time.Second {
		t.Fatal("the section's sign_timeout changed the client's")
	}
}

func TestLoadRejectsPKCS11(t *testing.T) {
	dir := t.TempDir()
	const secret = "123456"
	for name, sec := range map[string]string{
		"unknown field":    `{"token_labl": "x"}`,
		"long label":       `{"token_label": "` + strings.Repeat("x", 33) + `"}`,
		"bad pin hash":     `{"user_pin_hash": "` + secret + `"}`,
		"number duration":  `{"sign_timeout": 10}`,
		"negative":         `{"sign_timeout": "-1s"}`,
		"bad duration":     `{"list_timeout": "soon"}`,
		"bad ttl":          `{"key_cache_ttl": "2 s"}`,
		"control serial":   `{"serial": "\u0001"}`,
		"long serial":      `{"serial": "12345678901234567"}`,
		"bad level":        `{"log_level": "loud"}`,
		"slog offset":      `{"log_level": "info+2"}`,
		"label not string": `{"token_label": 5}`,
		"not an object":    `"tchsm"`,
	} {
		var c Client
		err := Load(write(t, dir, "c.json", `{"manifest": "m", "identity": "i", "pkcs11": `+sec+`}`), &c)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error repeats the PIN field: %v", name, err)
		}
	}
	// Programmatic sections are checked the same way.
	for name, p := range map[string]PKCS11{
		"negative ttl":    {KeyCacheTTL: Duration(-time.Second)},
		"label not utf-8": {TokenLabel: "\xff"},
		"bad level":       {LogLevel: "loud"},
	} {
		if err := p.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
		c := Client{Manifest: "m", Identity: "i", PKCS11: &p}
		if err := c.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("client with %s: %v", name, err)
		}
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

func TestDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{`"10s"`: 10 * time.Second, `"1m30s"`: 90 * time.Second, `"0s"`: 0, `"250ms"`: 250 * time.Millisecond} {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); err != nil || time.Duration(d) != want {
			t.Errorf("%s: %v %v", in, time.Duration(d), err)
		}
	}
	for _, in := range []string{`10`, `"10"`, `"soon"`, `"-1s"`, `""`, `null`, `true`} {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", in, err)
		}
	}
	b, err := json.Marshal(struct {
		D Duration `json:"d"`
	}{Duration(90 * time.Second)})
	if err != nil || string(b) != `{"d":"1m30s"}` {
		t.Fatalf("%s %v", b, err)
	}
	if Duration(0).Or(time.Second) != time.Second || Duration(time.Minute).Or(time.Second) != time.Minute {
		t.Fatal("Or")
	}
}

// Save writes what Load reads back, and no "pkcs11" key when there is no section.
func TestSaveClientRoundTrip(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.json")
	c := Client{Manifest: filepath.Join(dir, "m"), Identity: filepath.Join(dir, "i"), SignTimeout: Duration(time.Second)}
	if err := Save(p, c, 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); strings.Contains(string(b), "pkcs11") {
		t.Fatalf("empty section written: %s", b)
	}
	c.PKCS11 = &PKCS11{TokenLabel: "t", ListTimeout: Duration(time.Second), LogFile: filepath.Join(dir, "p.log")}
	if err := Save(p, c, 0o600); err != nil {
		t.Fatal(err)
	}
	var back Client
	if err := Load(p, &back); err != nil {
		t.Fatal(err)
	}
	if back.PKCS11 == nil || *back.PKCS11 != *c.PKCS11 || back.SignTimeout != c.SignTimeout {
		t.Fatalf("round trip: %+v %+v", back, back.PKCS11)
	}
}

func TestClientFileMode(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, "client.json", `{"manifest": "m", "identity": "i"}`)
	for _, mode := range []os.FileMode{0o640, 0o604, 0o620, 0o644} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		var c Client
		if err := Load(p, &c); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "0600") {
			t.Errorf("mode %v: %v, want a refusal", mode, err)
		}
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	var c Client
	if err := Load(p, &c); err != nil {
		t.Fatalf("mode 0600: %v", err)
	}
	// Save over a file readable by others makes it 0600 again (os.WriteFile alone would not).
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Save(p, c, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Load(p, &c); err != nil {
		t.Fatalf("after Save over a 0644 file: %v", err)
	}
	// Other configuration files are not refused for their mode (containers mount them 0644).
	n := write(t, dir, "node.json", `{"manifest": "m", "identity": "i", "store": "s"}`)
	if err := os.Chmod(n, 0o644); err != nil {
		t.Fatal(err)
	}
	var nc Node
	if err := Load(n, &nc); err != nil {
		t.Fatalf("node.json 0644: %v", err)
	}
}

// The passphrase: a file descriptor first (what `tchsm node` re-executes itself with), then
// $TCHSM_PASSPHRASE, then a systemd credential, then the file; trailing newlines dropped.
func TestPassphraseSources(t *testing.T) {
	dir := t.TempDir()
	file := write(t, dir, "pass", "from-file\n")
	cred := t.TempDir()
	c := Node{PassphraseFile: file, Store: filepath.Join(dir, "x", "shares.db"), Identity: filepath.Join(dir, "x", "identity.json")}
	get := func() (string, string) {
		t.Helper()
		b, from, err := c.PassphraseFrom()
		if err != nil {
			t.Fatal(err)
		}
		return string(b), from
	}
	if p, from := get(); p != "from-file" || from != file {
		t.Fatalf("file: %q from %q", p, from)
	}
	if err := os.WriteFile(filepath.Join(cred, CredentialPassphrase), []byte("from-cred\r\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", cred)
	if p, _ := get(); p != "from-cred" {
		t.Fatalf("credential: %q", p)
	}
	t.Setenv(EnvPassphrase, "from-env")
	if p, from := get(); p != "from-env" || from != "env" {
		t.Fatalf("env: %q from %q", p, from)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("from-fd\n"))
	w.Close()
	fd, err := syscall.Dup(int(r.Fd())) // PassphraseFrom closes its descriptor: give it its own
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvPassphraseFD, strconv.Itoa(fd))
	if p, from := get(); p != "from-fd" || from != "fd" {
		t.Fatalf("fd: %q from %q", p, from)
	}
	if os.Getenv(EnvPassphraseFD) != "" {
		t.Fatal("the descriptor's variable is still set")
	}
	t.Setenv(EnvPassphraseFD, "x")
	if _, _, err := c.PassphraseFrom(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad fd: %v", err)
	}
	os.Unsetenv(EnvPassphraseFD)
	os.Unsetenv(EnvPassphrase)
	os.Unsetenv("CREDENTIALS_DIRECTORY")
	empty := write(t, dir, "empty", "\n")
	if _, _, err := (&Node{PassphraseFile: empty}).PassphraseFrom(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty passphrase: %v", err)
	}
	if c.PassphraseBesideData(file) {
		t.Fatal("a passphrase outside the store's folder reported beside it")
	}
	if !c.PassphraseBesideData(filepath.Join(dir, "x", "passphrase")) {
		t.Fatal("a passphrase beside shares.db not reported")
	}
}
