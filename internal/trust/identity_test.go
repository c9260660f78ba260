package trust

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// secretsOf returns the encodings of id's private keys that must never appear in output.
func secretsOf(id *Identity) []string {
	var out []string
	for _, b := range [][]byte{id.SignKey.Seed(), id.EncKey.Bytes()} {
		out = append(out, hex.EncodeToString(b), base64.StdEncoding.EncodeToString(b),
			base64.RawStdEncoding.EncodeToString(b), fmt.Sprint(b), fmt.Sprintf("%x", b[:8]))
	}
	return out
}

func assertNoSecret(t *testing.T, what, s string, id *Identity) {
	t.Helper()
	for _, sec := range secretsOf(id) {
		if strings.Contains(s, sec) {
			t.Fatalf("%s reveals a private key: %s", what, s)
		}
	}
}

func TestIdentityRedaction(t *testing.T) {
	id := mustIdentity(t, "alice", RoleClient)
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		assertNoSecret(t, format, fmt.Sprintf(format, id), id)
		assertNoSecret(t, format+" (value)", fmt.Sprintf(format, *id), id)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("hello", "identity", id, "value", *id)
	assertNoSecret(t, "slog", buf.String(), id)
	if !strings.Contains(buf.String(), `"id":"alice"`) {
		t.Fatalf("slog output lacks the public part: %s", buf.String())
	}
	if b, err := json.Marshal(id); err == nil {
		t.Fatalf("json.Marshal(identity) = %s, want an error", b)
	}
	if _, err := json.Marshal(struct{ I Identity }{*id}); err == nil {
		t.Fatal("json.Marshal of a struct holding an identity succeeded")
	}
	if err := WriteIdentityFile(filepath.Join(t.TempDir(), "x"), &Identity{ID: "bad id"}, nil); err != nil {
		assertNoSecret(t, "error", err.Error(), id)
	}
}

func TestIdentityFile(t *testing.T) {
	dir := t.TempDir()
	id := mustIdentity(t, "node1", RoleNode)
	path := filepath.Join(dir, "node1.json")
	if err := WriteIdentityFile(path, id, nil); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	got, err := ReadIdentityFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != id.ID || got.Role != id.Role || !bytes.Equal(got.SignKey, id.SignKey) || !got.EncKey.Equal(id.EncKey) {
		t.Fatalf("read back %v, want %v", got, id)
	}
	if err := WriteIdentityFile(path, id, nil); err == nil {
		t.Fatal("WriteIdentityFile overwrote an existing identity")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadIdentityFile(path, nil); !errors.Is(err, ErrInsecurePermissions) {
		t.Fatalf("world-readable file: %v, want ErrInsecurePermissions", err)
	}
}

func TestIdentityFilePassphrase(t *testing.T) {
	dir := t.TempDir()
	id := mustIdentity(t, "dealer", RoleDealer)
	path := filepath.Join(dir, "dealer.json")
	pass := []byte("correct horse battery staple")
	if err := WriteIdentityFile(path, id, pass); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, "sealed identity file", string(data), id)
	got, err := ReadIdentityFile(path, pass)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.SignKey, id.SignKey) || !got.EncKey.Equal(id.EncKey) || got.Role != RoleDealer {
		t.Fatal("keys differ after a passphrase round trip")
	}
	if _, err := ReadIdentityFile(path, nil); !errors.Is(err, ErrPassphraseRequired) {
		t.Fatalf("no passphrase: %v", err)
	}
	if _, err := ReadIdentityFile(path, []byte("wrong")); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	// The clear header is bound to the sealed keys: promoting the file to another role fails.
	var f map[string]any
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	f["role"] = "client"
	edited, _ := json.Marshal(f)
	path2 := filepath.Join(dir, "edited.json")
	if err := os.WriteFile(path2, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadIdentityFile(path2, pass); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("edited header: %v, want ErrWrongPassphrase", err)
	}
}

func TestParseIdentityRejects(t *testing.T) {
	id := mustIdentity(t, "node1", RoleNode)
	good := identityFile{Version: 1, ID: id.ID, Role: id.Role, SignSeed: id.SignKey.Seed(), EncKey: id.EncKey.Bytes()}
	cases := map[string]func(f *identityFile){
		"version":    func(f *identityFile) { f.Version = 2 },
		"short seed": func(f *identityFile) { f.SignSeed = f.SignSeed[:31] },
		"no enc key": func(f *identityFile) { f.EncKey = nil },
		"bad role":   func(f *identityFile) { f.Role = "admin" },
		"bad id":     func(f *identityFile) { f.ID = "../etc" },
	}
	for name, mutate := range cases {
		f := good
		mutate(&f)
		data, _ := json.Marshal(f)
		_, err := parseIdentity(data, nil)
		if !errors.Is(err, ErrInvalidIdentity) {
			t.Errorf("%s: %v, want ErrInvalidIdentity", name, err)
		}
		if err != nil {
			assertNoSecret(t, name, err.Error(), id)
		}
	}
	data, _ := json.Marshal(good)
	if _, err := parseIdentity(data, nil); err != nil {
		t.Fatal(err)
	}
	// A JSON syntax error near the key must not quote the key.
	broken := bytes.Replace(data, []byte(`"enc_key":"`), []byte(`"enc_key":`), 1)
	_, err := parseIdentity(broken, nil)
	if err == nil {
		t.Fatal("broken JSON parsed")
	}
	assertNoSecret(t, "syntax error", err.Error(), id)
}

func TestNewIdentityRejects(t *testing.T) {
	for _, tc := range []struct {
		id   string
		role Role
	}{{"", RoleNode}, {"a b", RoleNode}, {strings.Repeat("a", 65), RoleNode}, {"ok", "root"}} {
		if _, err := NewIdentity(tc.id, tc.role); !errors.Is(err, ErrInvalidIdentity) {
			t.Errorf("NewIdentity(%q, %q) = %v", tc.id, tc.role, err)
		}
	}
}
