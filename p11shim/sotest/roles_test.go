package sotest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/internal/testcluster"
)

// Through the built module: a signer client's token signs but refuses C_GenerateKeyPair and
// C_DestroyObject with CKR_ACTION_PROHIBITED; an admin's C_DestroyObject logs until when the
// key can be restored, and the restored key signs through the token again; a client.json
// readable by others makes C_Initialize fail. About 20 s.
func TestModuleRoles(t *testing.T) {
	so := testcluster.Module(t)
	c := testcluster.Start(t, testcluster.Options{K: 2, N: 3})
	admin := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	k, err := admin.GenerateKey(ctx, client.GenerateRequest{Bits: 1024, Label: "roles", P11ID: []byte{7, 7}})
	must(t, err)
	signerLog := filepath.Join(c.Dir, "pkcs11-signer.log")
	adminLog := filepath.Join(c.Dir, "pkcs11-admin.log")
	setPKCS11(t, c.SignerConfig, map[string]any{"log_file": signerLog, "log_level": "debug"})
	setPKCS11(t, c.ClientConfig, map[string]any{"log_file": adminLog, "log_level": "debug"})

	p := pkcs11.New(so)
	if p == nil {
		t.Fatal("cannot load " + so)
	}
	// open initializes the module with cfg and returns a logged-in read-write session on the
	// private key with CKA_ID 07 07.
	open := func(cfg string) (pkcs11.SessionHandle, pkcs11.ObjectHandle) {
		t.Helper()
		t.Setenv("TCHSM_CONFIG", cfg)
		must(t, p.Initialize())
		slots, err := p.GetSlotList(true)
		must(t, err)
		s, err := p.OpenSession(slots[0], pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		must(t, err)
		must(t, p.Login(s, pkcs11.CKU_USER, c.PIN))
		hs := find(t, p, s, pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_ID, []byte{7, 7}))
		if len(hs) != 1 {
			t.Fatalf("%d private keys with CKA_ID 0707", len(hs))
		}
		return s, hs[0]
	}
	sign := func(s pkcs11.SessionHandle, priv pkcs11.ObjectHandle, msg string) {
		t.Helper()
		must(t, p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_RSA_PKCS, nil)}, priv))
		sig, err := p.Sign(s, []byte(msg))
		must(t, err)
		d := sha256.Sum256([]byte(msg))
		must(t, rsa.VerifyPKCS1v15(k.Public.(*rsa.PublicKey), crypto.SHA256, d[:], sig))
	}

	s, priv := open(c.SignerConfig)
	sign(s, priv, "a signer signs through the token")
	_, _, err = p.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)},
		[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, 1024), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true)},
		[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_SIGN, true)})
	wantRV(t, "C_GenerateKeyPair as a signer", err, pkcs11.CKR_ACTION_PROHIBITED)
	wantRV(t, "C_DestroyObject as a signer", p.DestroyObject(s, priv), pkcs11.CKR_ACTION_PROHIBITED)
	must(t, p.Finalize())
	if b, _ := os.ReadFile(signerLog); !bytes.Contains(b, []byte("role signer")) {
		t.Errorf("the signer's pkcs11.log does not say why:\n%s", b)
	}

	s, priv = open(c.ClientConfig)
	must(t, p.DestroyObject(s, priv))
	if hs := find(t, p, s, pkcs11.NewAttribute(pkcs11.CKA_ID, []byte{7, 7})); len(hs) != 0 {
		t.Fatalf("%d objects left after C_DestroyObject", len(hs))
	}
	must(t, p.Finalize())
	if b, _ := os.ReadFile(adminLog); !bytes.Contains(b, []byte("recoverable_until")) {
		t.Errorf("C_DestroyObject did not log until when the key is recoverable:\n%s", b)
	}
	if _, _, err := admin.RestoreKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	s, priv = open(c.SignerConfig)
	sign(s, priv, "restored, signed through the token")
	must(t, p.Finalize())

	// client.json readable by others is refused, like the identity beside it.
	must(t, os.Chmod(c.SignerConfig, 0o644))
	t.Setenv("TCHSM_CONFIG", c.SignerConfig)
	wantRV(t, "C_Initialize with client.json 0644", p.Initialize(), pkcs11.CKR_FUNCTION_FAILED)
	must(t, os.Chmod(c.SignerConfig, 0o600))
	must(t, p.Initialize())
	must(t, p.Finalize())
}
