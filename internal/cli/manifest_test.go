package cli_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tchsm/tchsm/internal/testcluster"
	"github.com/tchsm/tchsm/internal/trust"
)

// fails runs the tchsm binary and returns its stdout and stderr, failing the test on a zero exit.
func fails(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(testcluster.Binary(t), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err == nil {
		t.Fatalf("tchsm %s succeeded:\n%s", strings.Join(args, " "), out.String())
	}
	return out.String()
}

// TestManifestOffline drives the offline manifest commands as docs/operations/manifest.md does,
// without a broker: tchsm init makes the admin key; a client made on its own host is added by
// its public entry; the admins become a 2-of-2 of new keys (signed by the old admin); one new
// admin's signature is then not enough, both are; the old admin no longer counts.
func TestManifestOffline(t *testing.T) {
	dir := t.TempDir()
	cl := filepath.Join(dir, "cluster")
	run(t, nil, "", "init", "-dir", cl, "-k", "2", "-n", "3", "-amqp", "amqp://guest:guest@127.0.0.1:5672/x")
	admin1 := filepath.Join(cl, "admin", "admin-1.key")
	if st, err := os.Stat(admin1); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin key: %v %v", st, err)
	}
	m := filepath.Join(dir, "offline-manifest.json")
	b, err := os.ReadFile(filepath.Join(cl, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(m, b, 0o644)
	if out := run(t, nil, "", "manifest", "show", "-manifest", m); !strings.Contains(out, "serial 0") || !strings.Contains(out, "admins: admin-1 (1 needed)") {
		t.Fatalf("show:\n%s", out)
	}

	// A client made on its own host, added by its public entry.
	pub := filepath.Join(dir, "signer-9.member.json")
	member := run(t, nil, "", "manifest", "identity", "-id", "signer-9", "-role", "client", "-out", filepath.Join(dir, "signer-9.identity.json"))
	os.WriteFile(pub, []byte(member), 0o644)
	u1 := filepath.Join(dir, "u1.json")
	if out := run(t, nil, "", "manifest", "add-client", "-manifest", m, "-id", "signer-9", "-pub", pub, "-out", u1); !strings.Contains(out, "serial 1") || !strings.Contains(out, "+ client signer-9 signer") {
		t.Fatalf("add-client:\n%s", out)
	}
	if out := fails(t, "manifest", "apply", "-manifest", m, "-in", u1); !strings.Contains(out, "0 admin signature(s)") {
		t.Fatalf("apply unsigned:\n%s", out)
	}
	if out := run(t, nil, "", "manifest", "sign", "-in", u1, "-key", admin1, "-manifest", m); !strings.Contains(out, "ready to push") {
		t.Fatalf("sign:\n%s", out)
	}
	run(t, nil, "", "manifest", "apply", "-manifest", m, "-in", u1)

	// Rotate the admins to a 2-of-2 of new keys, signed by admin-1.
	var adds []string
	var keys []string
	for _, id := range []string{"officer-1", "officer-2"} {
		k := filepath.Join(dir, id+".key")
		entry := run(t, nil, "", "manifest", "new-admin", "-id", id, "-out", k)
		p := filepath.Join(dir, id+".json")
		os.WriteFile(p, []byte(entry), 0o644)
		adds, keys = append(adds, "-add", p), append(keys, k)
	}
	u2 := filepath.Join(dir, "u2.json")
	run(t, nil, "", append(append([]string{"manifest", "set-admins", "-manifest", m}, adds...), "-remove", "admin-1", "-threshold", "2", "-out", u2)...)
	run(t, nil, "", "manifest", "sign", "-in", u2, "-key", admin1)
	run(t, nil, "", "manifest", "apply", "-manifest", m, "-in", u2)

	// Serial 3 revokes signer-9: admin-1 no longer counts, one officer is not enough.
	u3 := filepath.Join(dir, "u3.json")
	run(t, nil, "", "manifest", "revoke", "-manifest", m, "-id", "signer-9", "-out", u3)
	run(t, nil, "", "manifest", "sign", "-in", u3, "-key", keys[0])
	run(t, nil, "", "manifest", "sign", "-in", u3, "-key", admin1)
	if out := fails(t, "manifest", "apply", "-manifest", m, "-in", u3); !strings.Contains(out, "not an admin of the held manifest") {
		t.Fatalf("apply signed by the old admin:\n%s", out)
	}
	os.Remove(u3)
	run(t, nil, "", "manifest", "revoke", "-manifest", m, "-id", "signer-9", "-out", u3)
	run(t, nil, "", "manifest", "sign", "-in", u3, "-key", keys[0])
	if out := fails(t, "manifest", "apply", "-manifest", m, "-in", u3); !strings.Contains(out, "needs 2") {
		t.Fatalf("apply with 1 of 2:\n%s", out)
	}
	run(t, nil, "", "manifest", "sign", "-in", u3, "-key", keys[1])
	run(t, nil, "", "manifest", "apply", "-manifest", m, "-in", u3)
	got, err := trust.LoadManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Lookup("signer-9"); ok || got.Serial != 3 || got.AdminThreshold != 2 || len(got.Admins) != 2 {
		t.Fatalf("final manifest: serial %d, admins %v (%d)", got.Serial, got.Admins, got.AdminThreshold)
	}
	// Applying an older update again is refused as stale.
	if out := fails(t, "manifest", "apply", "-manifest", m, "-in", u1); !strings.Contains(out, "not newer") {
		t.Fatalf("apply of serial 1 at serial 3:\n%s", out)
	}
}
