// Package policy_test checks the nodes' DNSSEC signing policy (issue 15, RSA part) through the
// whole stack: node processes of the built tchsm binary on a private RabbitMQ vhost, the dealer
// process, and libtchsm.so driven through miekg/pkcs11 with a login, as a signer would. Nodes 1
// and 2 of a 3-of-5 cluster (k−1) have no policy and sign anything; nodes 3 to 5 allow the key
// only RRSIGs of example.test within the default limits. About 15 s.
package policy_test

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/dnspolicy/dnspolicytest"
	"github.com/tchsm/tchsm/internal/testcluster"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testcluster.RemoveBuilds()
	os.Exit(code)
}

const label = "policy-zsk"

func TestPolicyThroughTheModule(t *testing.T) {
	so := testcluster.Module(t)
	c := testcluster.Start(t, testcluster.Options{K: 3, N: 5, NodeConfig: func(i int, nc *config.Node) {
		if i >= 3 {
			nc.SigningPolicy = &config.SigningPolicy{Keys: []config.KeyPolicy{{Label: "policy-*", Zones: []string{"example.test"}}}}
		}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	info, err := c.Client().GenerateKey(ctx, client.GenerateRequest{Bits: 2048, Label: label, P11ID: []byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	pub := info.Public.(*rsa.PublicKey)

	t.Setenv("TCHSM_CONFIG", c.ClientConfig)
	p := pkcs11.New(so)
	if p == nil {
		t.Fatal("cannot load " + so)
	}
	if err := p.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer p.Destroy()
	defer p.Finalize()
	slots, err := p.GetSlotList(true)
	if err != nil || len(slots) != 1 {
		t.Fatalf("slots %v: %v", slots, err)
	}
	s, err := p.OpenSession(slots[0], pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Login(s, pkcs11.CKU_USER, c.PIN); err != nil {
		t.Fatal(err)
	}
	if err := p.FindObjectsInit(s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}); err != nil {
		t.Fatal(err)
	}
	objs, _, err := p.FindObjects(s, 2)
	p.FindObjectsFinal(s)
	if err != nil || len(objs) != 1 {
		t.Fatalf("private key %q: %v %v", label, objs, err)
	}
	sign := func(mech uint, data []byte) ([]byte, error) {
		if err := p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, objs[0]); err != nil {
			return nil, err
		}
		return p.Sign(s, data)
	}
	rejected := func(what string, err error) {
		t.Helper()
		var e pkcs11.Error
		if !errors.As(err, &e) || uint(e) != pkcs11.CKR_FUNCTION_REJECTED {
			t.Errorf("%s: %v, want CKR_FUNCTION_REJECTED", what, err)
		}
	}
	now := time.Now()
	day := 24 * time.Hour

	good := dnspolicytest.ZoneA(pub, "example.test", now.Add(-time.Hour), now.Add(14*day))
	for range 4 { // every node gets asked at least once in four signatures
		sig, err := sign(pkcs11.CKM_SHA256_RSA_PKCS, good)
		if err != nil {
			t.Fatalf("an RRSIG within the policy: %v", err)
		}
		h := sha256.Sum256(good)
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig); err != nil {
			t.Fatalf("signature does not verify: %v", err)
		}
	}
	forged := dnspolicytest.ZoneA(pub, "example.test", now.Add(-time.Hour), now.Add(20*365*day))
	for range 3 {
		_, err := sign(pkcs11.CKM_SHA256_RSA_PKCS, forged)
		rejected("twenty years of validity", err)
	}
	_, err = sign(pkcs11.CKM_SHA256_RSA_PKCS, dnspolicytest.ZoneA(pub, "other.test", now.Add(-time.Hour), now.Add(14*day)))
	rejected("other.test", err)
	h := sha256.Sum256(forged)
	di := append([]byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}, h[:]...)
	_, err = sign(pkcs11.CKM_RSA_PKCS, di)
	rejected("CKM_RSA_PKCS over a DigestInfo", err)
	// The refusals did not make the module think the cluster broken.
	if _, err := sign(pkcs11.CKM_SHA256_RSA_PKCS, good); err != nil {
		t.Fatalf("after the refusals: %v", err)
	}

	// The CLI says what happened.
	in := filepath.Join(t.TempDir(), "forged")
	if err := os.WriteFile(in, forged, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(c.Bin, "sign", "-config", c.ClientConfig, "-key", info.ID, "-mech", "sha256", "-in", in)
	cmd.Env = append(os.Environ(), "TCHSM_PIN="+c.PIN)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "signing policy refuses this signature") || !strings.Contains(string(out), "validity") {
		t.Errorf("tchsm sign of the forged RRSIG: %v\n%s", err, out)
	}

	// Each strict node logged its refusals with the reason (a forged signature asks all three:
	// only the third refusal makes it hopeless), and the nodes audited their signatures.
	var all string
	for i := 1; i <= 5; i++ {
		b, _ := os.ReadFile(filepath.Join(c.Dir, fmt.Sprintf("node-%d.log", i)))
		all += string(b)
		if i < 3 {
			continue
		}
		for _, want := range []string{`"msg":"signature refused by policy"`, `"reason":"validity"`} {
			if !strings.Contains(string(b), want) {
				t.Errorf("node-%d.log lacks %s", i, want)
			}
		}
	}
	for _, want := range []string{`"msg":"signed"`, `"signer":"example.test."`, `"policy":"enforced"`, `"policy":"none"`, `"key_tag":`} {
		if !strings.Contains(all, want) {
			t.Errorf("no node log has %s", want)
		}
	}
}
