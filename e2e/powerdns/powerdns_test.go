// Package powerdns_test signs zones with the PowerDNS Authoritative Server 4.7 (Debian 12's
// pdns-server with the sqlite3 backend) through libtchsm.so, which PowerDNS loads by p11-kit
// module name: the shipped deploy/p11-kit/tchsm.module, registered in a private mount namespace
// (testcluster.P11KitCommand). `pdnsutil hsm assign` + `hsm create-key` make the KSK and ZSK in
// a 3-of-5 cluster; pdns_server signs the zone as it serves it (CKM_SHA256_RSA_PKCS over the
// whole RRSIG input), and the AXFR must pass ldns-verify-zone. Again with two of five nodes
// killed.
package powerdns_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/testcluster"
)

const zone = "example.test"

func TestPowerDNSSignsThroughTchsm(t *testing.T) {
	for _, bin := range []string{"pdns_server", "pdnsutil", "sqlite3", "dig", "ldns-verify-zone", "unshare"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh installs pdns-server, pdns-backend-sqlite3, sqlite3)", bin)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: p11-kit's module folder is replaced in a private mount namespace")
	}
	so := testcluster.Module(t)
	// Every node holds PowerDNS's keys to a signing policy that allows only its zone (issue
	// 15): pdns_server passes the whole RRSIG input with CKM_SHA256_RSA_PKCS, so the nodes
	// check each signature before they sign it.
	c := testcluster.Start(t, testcluster.Options{K: 3, N: 5, NodeConfig: func(_ int, nc *config.Node) {
		nc.SigningPolicy = &config.SigningPolicy{Keys: []config.KeyPolicy{{Label: "pdns-*", Zones: []string{zone}}}}
	}})
	tk := c.Token(so)

	// The same signer on SoftHSM2 first, for the time it takes without a cluster.
	t.Run("SoftHSM2 for comparison", func(t *testing.T) { signZone(t, testcluster.SoftHSM2(t), 1000, "s") })
	t.Run("all five nodes", func(t *testing.T) { signZone(t, tk, 1000, "a") })
	// The nodes checked what they signed: audit lines of enforced signatures of the zone, and
	// no refusal.
	for i := 1; i <= 5; i++ {
		b, _ := os.ReadFile(filepath.Join(c.Dir, fmt.Sprintf("node-%d.log", i)))
		log := string(b)
		if strings.Contains(log, `"msg":"signature refused by policy"`) {
			t.Errorf("node-%d refused a signature of PowerDNS's", i)
		}
		if !strings.Contains(log, `"policy":"enforced","requester":"client-1","dnssec":true`) || !strings.Contains(log, `"signer":"example.test."`) {
			t.Errorf("node-%d.log has no enforced signature of %s", i, zone)
		}
	}
	c.KillNode(3)
	c.KillNode(5)
	t.Run("two of five nodes killed", func(t *testing.T) { signZone(t, tk, 100, "b") })
}

func signZone(t *testing.T, tk testcluster.Token, records int, tag string) {
	modDir := testcluster.P11KitModuleDir(t, tk)
	dir := t.TempDir()
	db := filepath.Join(dir, "pdns.sqlite3")
	schema, err := os.ReadFile("/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql")
	if err != nil {
		t.Fatal(err)
	}
	sq := exec.Command("sqlite3", db)
	sq.Stdin = strings.NewReader(string(schema))
	if out, err := sq.CombinedOutput(); err != nil {
		t.Fatalf("sqlite3 schema: %v\n%s", err, out)
	}
	port := testcluster.FreePort(t)
	conf := fmt.Sprintf(`launch=gsqlite3
gsqlite3-database=%[1]s
gsqlite3-dnssec=yes
local-address=127.0.0.1
local-port=%[2]d
socket-dir=%[3]s
disable-axfr=no
allow-axfr-ips=127.0.0.1/32
guardian=no
daemon=no
disable-syslog=yes
loglevel=6
webserver=no
api=no
`, db, port, dir)
	if err := os.WriteFile(filepath.Join(dir, "pdns.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), tk.Env...)
	pdnsutil := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := testcluster.P11KitCommand(ctx, modDir, "pdnsutil", append([]string{"--config-dir=" + dir}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		// pdnsutil 4.7.3 `hsm create-key` aborts while exiting, after it created the key
		// ("munmap_chunk(): invalid pointer"); it does the same with SoftHSM2.
		var ee *exec.ExitError
		created := len(args) > 1 && args[1] == "create-key" && strings.Contains(string(out), "Key of size ") &&
			errors.As(err, &ee) && strings.Contains(string(out), "munmap_chunk(): invalid pointer")
		if err != nil && !created {
			t.Fatalf("pdnsutil %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	zf := filepath.Join(dir, zone+".zone")
	testcluster.WriteZone(t, zf, zone, records)
	start := time.Now()
	pdnsutil("load-zone", zone, zf)
	// MODULE is the p11-kit module name, SLOT the token label.
	for _, role := range []string{"ksk", "zsk"} {
		label := "pdns-" + role + "-" + tag
		out := pdnsutil("hsm", "assign", zone, "rsasha256", role, tk.P11KitName, tk.Label, tk.PIN, label, label)
		m := regexp.MustCompile(`key id (\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("pdnsutil hsm assign %s: no key id in\n%s", role, out)
		}
		pdnsutil("hsm", "create-key", zone, m[1], "2048")
	}
	t.Logf("pdnsutil list-keys:\n%s", pdnsutil("list-keys", zone))
	pdnsutil("rectify-zone", zone)

	srv := testcluster.P11KitCommand(context.Background(), modDir, "pdns_server", "--config-dir="+dir)
	srv.Env = env
	d := testcluster.StartDaemon(t, srv, filepath.Join(dir, "pdns.log"))

	axfr := filepath.Join(dir, "axfr.zone")
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-d.Done():
			t.Fatalf("pdns_server exited: %v", d.Err())
		case <-time.After(300 * time.Millisecond):
		}
		t0 := time.Now()
		out, err := exec.Command("dig", "+nocmd", "+nostats", "+onesoa", "+time=30", "-p", fmt.Sprint(port), "@127.0.0.1", zone, "AXFR").Output()
		firstAXFR := time.Since(t0) // pdns_server signs as it serves: this is the signing
		if err == nil && strings.Count(string(out), "\tDNSKEY\t") >= 2 && strings.Contains(string(out), "\tRRSIG\t") {
			if err := os.WriteFile(axfr, out, 0o644); err != nil {
				t.Fatal(err)
			}
			vout, verr := exec.Command("ldns-verify-zone", axfr).CombinedOutput()
			if verr != nil {
				t.Fatalf("ldns-verify-zone rejects pdns_server's AXFR: %v\n%s", verr, vout)
			}
			n := strings.Count(string(out), "\tRRSIG\t")
			if n < records/4 {
				t.Fatalf("only %d RRSIGs for %d records", n, records)
			}
			t.Logf("pdns_server served %d records signed through %s (%d RRSIGs), %v from load-zone to verified AXFR (first AXFR %v); ldns-verify-zone: %s",
				records, tk.Name, n, time.Since(start).Round(time.Millisecond), firstAXFR.Round(time.Millisecond), strings.TrimSpace(string(vout)))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pdns_server did not serve a signed zone within 60 s (dig: %v)", err)
		}
	}
}
