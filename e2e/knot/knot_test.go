// Package knot_test signs zones with Knot DNS (knotd 3.2, Debian 12) through libtchsm.so: Knot's
// PKCS#11 keystore (GnuTLS over p11-kit) generates the RSASHA256 KSK and ZSK in a 3-of-5 cluster
// of real node processes, knotd signs a generated zone with them, and the zone it writes must
// pass ldns-verify-zone. Then again, from scratch, with two of the five nodes killed.
package knot_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/testcluster"
)

const zone = "example.test"

func TestKnotSignsThroughTchsm(t *testing.T) {
	for _, bin := range []string{"knotd", "knotc", "ldns-verify-zone"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh installs knot and ldnsutils)", bin)
		}
	}
	so := testcluster.Module(t)
	c := testcluster.Start(t, testcluster.Options{K: 3, N: 5})
	tk := c.Token(so)

	// The same signer on SoftHSM2 first, for the time it takes without a cluster.
	t.Run("SoftHSM2 for comparison", func(t *testing.T) { signZone(t, testcluster.SoftHSM2(t), 1000, 60*time.Second) })
	t.Run("all five nodes", func(t *testing.T) { signZone(t, tk, 1000, 60*time.Second) })
	c.KillNode(2)
	c.KillNode(5)
	t.Run("two of five nodes killed", func(t *testing.T) { signZone(t, tk, 100, 60*time.Second) })

	keys, err := c.Client().Keys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 4 {
		t.Errorf("the cluster holds %d keys, want Knot's KSK and ZSK twice: %+v", len(keys), keys)
	}
}

// signZone runs knotd on a fresh directory with a records-record zone, waits (at most timeout)
// until the zone file it writes is signed and passes ldns-verify-zone, and stops knotd.
func signZone(t *testing.T, tk testcluster.Token, records int, timeout time.Duration) {
	dir := t.TempDir()
	for _, d := range []string{"run", "db", "zones"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	zoneFile := filepath.Join(dir, "zones", zone+".zone")
	testcluster.WriteZone(t, zoneFile, zone, records)
	conf := filepath.Join(dir, "knot.conf")
	if err := os.WriteFile(conf, []byte(knotConf(dir, testcluster.FreePort(t), tk)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("knotc", "-c", conf, "conf-check").CombinedOutput(); err != nil {
		t.Fatalf("knotc conf-check: %v\n%s", err, out)
	}

	start := time.Now()
	knotd := exec.Command("knotd", "-c", conf)
	knotd.Env = append(os.Environ(), tk.Env...)
	d := testcluster.StartDaemon(t, knotd, filepath.Join(dir, "knotd.log"))

	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-d.Done():
			t.Fatalf("knotd exited: %v", d.Err())
		case <-time.After(250 * time.Millisecond):
		}
		if signed, err := os.ReadFile(zoneFile); err == nil && strings.Contains(string(signed), "DNSKEY") &&
			strings.Contains(string(signed), "RRSIG") {
			out, err := exec.Command("ldns-verify-zone", zoneFile).CombinedOutput()
			if err == nil {
				rrsigs, dnskeys := count(signed, "RRSIG"), count(signed, "DNSKEY")
				t.Logf("knotd signed %d records through %s in %v (keys generated and zone signed): %d RRSIGs, %d DNSKEY lines; ldns-verify-zone: %s",
					records, tk.Name, time.Since(start).Round(time.Millisecond), rrsigs, dnskeys, strings.TrimSpace(string(out)))
				if rrsigs < records/4 {
					t.Fatalf("only %d RRSIGs for %d records", rrsigs, records)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("ldns-verify-zone rejects the zone knotd wrote: %v\n%s", err, out)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("knotd did not write a signed zone within %v", timeout)
		}
	}
}

// knotConf is a knotd configuration for one zone signed with keys in token tk. Knot's PKCS#11
// keystore is "<PKCS #11 URI> <module path>".
func knotConf(dir string, port int, tk testcluster.Token) string {
	return fmt.Sprintf(`server:
    rundir: "%[1]s/run"
    listen: 127.0.0.1@%[2]d

log:
  - target: stderr
    any: info

database:
    storage: "%[1]s/db"

keystore:
  - id: tchsm
    backend: pkcs11
    config: "pkcs11:token=%[6]s;pin-value=%[4]s %[3]s"

policy:
  - id: tchsm-rsa
    keystore: tchsm
    algorithm: rsasha256
    ksk-size: 2048
    zsk-size: 1024
    nsec3: off

template:
  - id: default
    storage: "%[1]s/zones"
    file: "%%s.zone"
    zonefile-sync: 0
    journal-content: none

zone:
  - domain: %[5]s
    dnssec-signing: on
    dnssec-policy: tchsm-rsa
`, dir, port, tk.Module, tk.PIN, zone, tk.Label)
}

// count counts the zone-file lines whose type field is typ.
func count(zoneText []byte, typ string) int {
	n := 0
	for _, line := range strings.Split(string(zoneText), "\n") {
		f := strings.Fields(line)
		for i, w := range f {
			if w == typ && i > 0 {
				n++
				break
			}
		}
	}
	return n
}
