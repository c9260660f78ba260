// Package bind_test signs zones with BIND 9.20 (Debian's bookworm-backports packages, pinned by
// scripts/deps.sh) through libtchsm.so, reached through OpenSSL 3's pkcs11-provider with an
// OPENSSL_CONF the test writes. Both BIND paths:
//
//   - named with dnssec-policy and a key-store whose pkcs11-uri names the tchsm token: named
//     generates its KSK and ZSK in a 3-of-5 cluster and serves the zone signed; an AXFR of it
//     must pass ldns-verify-zone;
//   - dnssec-keyfromlabel for two keys made in the token, then dnssec-signzone (which also
//     calls C_Verify on the token for every signature).
//
// Both again with two of the five nodes killed.
package bind_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/internal/testcluster"
)

const (
	zone     = "example.test"
	provider = "/usr/lib/x86_64-linux-gnu/ossl-modules/pkcs11.so"
)

func TestBindSignsThroughTchsm(t *testing.T) {
	for _, bin := range []string{"named", "dnssec-keyfromlabel", "dnssec-signzone", "dig", "ldns-verify-zone"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh installs BIND 9.20 from bookworm-backports)", bin)
		}
	}
	out, _ := exec.Command("named", "-v").CombinedOutput()
	if !regexp.MustCompile(`^BIND 9\.(2[0-9]|[3-9][0-9])\.`).Match(out) {
		t.Skipf("named is %s; the key-store statement needs BIND 9.20", strings.TrimSpace(string(out)))
	}
	if _, err := os.Stat(provider); err != nil {
		t.Skipf("pkcs11-provider not installed: %v", err)
	}
	so := testcluster.Module(t)
	c := testcluster.Start(t, testcluster.Options{K: 3, N: 5})

	t.Run("named dnssec-policy, all five nodes", func(t *testing.T) { namedPolicy(t, so, c, 1000) })
	t.Run("dnssec-signzone, all five nodes", func(t *testing.T) { signzone(t, so, c, 1000, "a") })
	c.KillNode(1)
	c.KillNode(4)
	t.Run("named dnssec-policy, two of five nodes killed", func(t *testing.T) { namedPolicy(t, so, c, 100) })
	t.Run("dnssec-signzone, two of five nodes killed", func(t *testing.T) { signzone(t, so, c, 100, "b") })
}

// env is the environment BIND's tools run with: OpenSSL loads pkcs11-provider on libtchsm.so.
func env(t *testing.T, dir, so string, c *testcluster.Cluster) []string {
	conf := filepath.Join(dir, "openssl.cnf")
	text := fmt.Sprintf(`openssl_conf = openssl_init

[openssl_init]
providers = provider_sect

[provider_sect]
default = default_sect
pkcs11 = pkcs11_sect

[default_sect]
activate = 1

[pkcs11_sect]
module = %s
pkcs11-module-path = %s
pkcs11-module-token-pin = %s
activate = 1
`, provider, so, c.PIN)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return append(os.Environ(), "OPENSSL_CONF="+conf, "TCHSM_CONFIG="+c.ClientConfig)
}

func run(t *testing.T, env []string, dir string, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env, cmd.Dir = env, dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func verify(t *testing.T, what, path string, records int, start time.Time) {
	t.Helper()
	out, err := exec.Command("ldns-verify-zone", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ldns-verify-zone rejects the zone %s: %v\n%s", what, err, out)
	}
	text, _ := os.ReadFile(path)
	n := len(regexp.MustCompile(`(?m)\sRRSIG\s`).FindAll(text, -1))
	if n < records/4 {
		t.Fatalf("%s: only %d RRSIGs for %d records", what, n, records)
	}
	t.Logf("%s: %d records, %d RRSIGs in %v; ldns-verify-zone: %s", what, records, n,
		time.Since(start).Round(time.Millisecond), strings.TrimSpace(string(out)))
}

// namedPolicy: named generates KSK and ZSK in the token (dnssec-policy with a key-store) and
// serves the zone signed; the AXFR must verify. The PIN is in OPENSSL_CONF, not in the
// key-store's URI: BIND copies that URI into every key file. Both keys are 2048 bits: BIND
// 9.20.23 with pkcs11-provider 1.0 asks the token for 2048 bits for a 1024-bit ZSK too (seen
// with pkcs11-spy) and then refuses its own key file ("unexpected token").
func namedPolicy(t *testing.T, so string, c *testcluster.Cluster, records int) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	testcluster.WriteZone(t, filepath.Join(dir, zone+".db"), zone, records)
	port := testcluster.FreePort(t)
	conf := filepath.Join(dir, "named.conf")
	text := fmt.Sprintf(`options {
	directory "%[1]s";
	pid-file "%[1]s/named.pid";
	listen-on port %[2]d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	trust-anchor-telemetry no;
	allow-transfer { 127.0.0.1; };
	notify no;
};
controls { };
key-store "tchsm" {
	directory "keys";
	pkcs11-uri "pkcs11:token=tchsm";
};
dnssec-policy "tchsm" {
	keys {
		ksk key-store "tchsm" lifetime unlimited algorithm rsasha256 2048;
		zsk key-store "tchsm" lifetime unlimited algorithm rsasha256 2048;
	};
};
zone "%[3]s" {
	type primary;
	file "%[3]s.db";
	dnssec-policy "tchsm";
	inline-signing yes;
	sig-signing-nodes 1000;
	sig-signing-signatures 1000;
};
`, dir, port, zone)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	e := env(t, dir, so, c)
	run(t, e, dir, 30*time.Second, "named-checkconf", conf)

	start := time.Now()
	named := exec.Command("named", "-g", "-u", "root", "-c", conf)
	named.Env, named.Dir = e, dir
	d := testcluster.StartDaemon(t, named, filepath.Join(dir, "named.log"))
	t.Cleanup(func() {
		if t.Failed() {
			files, _ := filepath.Glob(filepath.Join(dir, "keys", "*"))
			for _, f := range files {
				b, _ := os.ReadFile(f)
				t.Logf("%s:\n%s", f, b)
			}
		}
	})

	axfr := filepath.Join(dir, "axfr.zone")
	deadline := time.Now().Add(75 * time.Second)
	for {
		select {
		case <-d.Done():
			t.Fatalf("named exited: %v", d.Err())
		case <-time.After(500 * time.Millisecond):
		}
		out, err := exec.Command("dig", "+nocmd", "+nostats", "+onesoa", "-p", fmt.Sprint(port), "@127.0.0.1", zone, "AXFR").Output()
		// Signed once every RRset has its signature: the NSEC chain and the DNSKEY set with
		// two keys are the last things named adds.
		if err == nil && strings.Count(string(out), "\tDNSKEY\t") >= 2 && strings.Contains(string(out), "\tNSEC\t") {
			if os.WriteFile(axfr, out, 0o644) == nil {
				if vout, verr := exec.Command("ldns-verify-zone", axfr).CombinedOutput(); verr == nil {
					verify(t, "named (dnssec-policy) AXFR", axfr, records, start)
					break
				} else if time.Now().After(deadline) {
					t.Fatalf("ldns-verify-zone rejects named's AXFR: %v\n%s", verr, vout)
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("named did not serve a signed zone within 75 s (last dig: %v)", err)
		}
	}
	keys, err := os.ReadDir(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	var private int
	for _, k := range keys {
		if strings.HasSuffix(k.Name(), ".private") {
			b, _ := os.ReadFile(filepath.Join(dir, "keys", k.Name()))
			m := regexp.MustCompile(`(?m)^Label: (\S+)$`).FindSubmatch(b)
			var label []byte
			if m != nil {
				label, _ = base64.StdEncoding.DecodeString(string(m[1]))
			}
			if !strings.HasPrefix(string(label), "pkcs11:token=tchsm;object=") {
				t.Errorf("%s does not name a key in the tchsm token (label %q)", k.Name(), label)
			}
			private++
		}
	}
	if private != 2 {
		t.Errorf("named made %d key files, want KSK and ZSK: %v", private, keys)
	}
}

// signzone: two keys made in the token, turned into BIND key files by dnssec-keyfromlabel, sign
// the zone with dnssec-signzone.
func signzone(t *testing.T, so string, c *testcluster.Cluster, records int, tag string) {
	dir := t.TempDir()
	e := env(t, dir, so, c)
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	for _, k := range []struct {
		label string
		bits  int
	}{{"ksk-" + tag, 2048}, {"zsk-" + tag, 1024}} {
		if _, err := cl.GenerateKey(ctx, client.GenerateRequest{Bits: k.bits, Label: k.label, P11ID: []byte(k.label)}); err != nil {
			t.Fatalf("generating %s: %v", k.label, err)
		}
	}
	uri := func(label string) string { return "pkcs11:token=tchsm;object=" + label }
	run(t, e, dir, 60*time.Second, "dnssec-keyfromlabel", "-K", dir, "-a", "RSASHA256", "-f", "KSK", "-l", uri("ksk-"+tag), zone)
	run(t, e, dir, 60*time.Second, "dnssec-keyfromlabel", "-K", dir, "-a", "RSASHA256", "-l", uri("zsk-"+tag), zone)
	zf := filepath.Join(dir, zone+".db")
	testcluster.WriteZone(t, zf, zone, records)
	run(t, e, dir, 90*time.Second, "dnssec-signzone", "-S", "-K", dir, "-o", zone, "-f", zf+".signed", zf)
	verify(t, "dnssec-signzone", zf+".signed", records, start)
}
