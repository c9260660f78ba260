package sotest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/testcluster"
	"github.com/tchsm/tchsm/scheme"
)

// copyClient copies a client's files (its client.json, identity and manifest) into a new
// folder, as someone who read them off the signer host would, and points the copy at them.
func copyClient(t *testing.T, cfg string) string {
	t.Helper()
	var cc config.Client
	must(t, config.Load(cfg, &cc))
	dir := t.TempDir()
	var raw map[string]any
	b, err := os.ReadFile(cfg)
	must(t, err)
	must(t, json.Unmarshal(b, &raw))
	for field, src := range map[string]string{"manifest": cc.Manifest, "identity": cc.Identity} {
		b, err := os.ReadFile(src)
		must(t, err)
		must(t, os.WriteFile(filepath.Join(dir, field+".json"), b, 0o600))
		raw[field] = field + ".json"
	}
	out := filepath.Join(dir, "client.json")
	must(t, config.Save(out, raw, 0o600))
	return out
}

// The PIN that the nodes check, through the built module and real nodes: a signer's files,
// copied, list keys but sign nothing without the PIN (the nodes refuse; client.json holds no PIN
// hash to guess offline); ten wrong C_Logins lock the client on the nodes (CKR_PIN_INCORRECT
// with CKF_USER_PIN_COUNT_LOW, then FINAL_TRY, then CKR_PIN_LOCKED and CKF_USER_PIN_LOCKED,
// the right PIN refused too); `tchsm pin unlock` by the admin lifts it, the right PIN signs, and
// C_SetPIN changes it on the nodes. About 30 s.
func TestModuleNodePIN(t *testing.T) {
	so := testcluster.Module(t)
	c := testcluster.Start(t, testcluster.Options{K: 2, N: 3})
	admin := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	k, err := admin.GenerateKey(ctx, client.GenerateRequest{Bits: 1024, Label: "pin", P11ID: []byte{9, 9}})
	must(t, err)
	if b, _ := os.ReadFile(c.SignerConfig); bytes.Contains(b, []byte("user_pin_hash")) {
		t.Fatal("client.json holds a PIN hash")
	}

	// The copied files: the client library, without the PIN, is refused by the nodes.
	stolen := copyClient(t, c.SignerConfig)
	thief := c.Open(stolen, false)
	if _, err := thief.Keys(ctx); err != nil {
		t.Fatalf("listing with the copied files: %v", err)
	}
	if _, err := thief.Sign(ctx, k.ID, scheme.SHA256RSAPKCS, []byte("forged")); !errors.Is(err, client.ErrNotLoggedIn) {
		t.Fatalf("sign with the copied files and no PIN: %v, want ErrNotLoggedIn", err)
	}

	p := pkcs11.New(so)
	if p == nil {
		t.Fatal("cannot load " + so)
	}
	t.Setenv("TCHSM_CONFIG", stolen)
	must(t, p.Initialize())
	slots, err := p.GetSlotList(true)
	must(t, err)
	s, err := p.OpenSession(slots[0], pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	must(t, err)
	if hs := find(t, p, s, pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY), pkcs11.NewAttribute(pkcs11.CKA_ID, []byte{9, 9})); len(hs) != 1 {
		t.Fatalf("%d public keys listed before C_Login, want 1", len(hs))
	}
	flags := func() uint {
		t.Helper()
		ti, err := p.GetTokenInfo(slots[0])
		must(t, err)
		return ti.Flags & (pkcs11.CKF_USER_PIN_COUNT_LOW | pkcs11.CKF_USER_PIN_FINAL_TRY | pkcs11.CKF_USER_PIN_LOCKED)
	}
	t0 := time.Now()
	for i := 1; i <= 9; i++ {
		wantRV(t, "a wrong C_Login", p.Login(s, pkcs11.CKU_USER, "0000"), pkcs11.CKR_PIN_INCORRECT)
		want := uint(pkcs11.CKF_USER_PIN_COUNT_LOW)
		if i == 9 {
			want |= pkcs11.CKF_USER_PIN_FINAL_TRY
		}
		if got := flags(); got != want {
			t.Fatalf("flags after %d wrong PINs: %#x, want %#x", i, got, want)
		}
	}
	wantRV(t, "the tenth wrong C_Login", p.Login(s, pkcs11.CKU_USER, "0000"), pkcs11.CKR_PIN_LOCKED)
	t.Logf("10 wrong C_Logins in %v", time.Since(t0).Round(time.Millisecond))
	if got := flags(); got != pkcs11.CKF_USER_PIN_LOCKED {
		t.Fatalf("flags when locked: %#x", got)
	}
	wantRV(t, "the right PIN while locked", p.Login(s, pkcs11.CKU_USER, c.PIN), pkcs11.CKR_PIN_LOCKED)
	must(t, p.Finalize())

	// The admin unlocks it with the command (its own PIN from $TCHSM_PIN).
	cmd := exec.CommandContext(ctx, c.Bin, "pin", "unlock", "-config", c.ClientConfig, "signer-1")
	cmd.Env = append(os.Environ(), "TCHSM_PIN="+c.PIN, "TCHSM_AMQP_URL="+c.AMQPURL)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tchsm pin unlock: %v\n%s", err, out)
	}

	t.Setenv("TCHSM_CONFIG", c.SignerConfig)
	must(t, p.Initialize())
	s, err = p.OpenSession(slots[0], pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	must(t, err)
	must(t, p.Login(s, pkcs11.CKU_USER, c.PIN))
	if got := flags(); got != 0 {
		t.Fatalf("flags after the unlock and a good login: %#x", got)
	}
	sign := func(msg string) {
		t.Helper()
		hs := find(t, p, s, pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_ID, []byte{9, 9}))
		if len(hs) != 1 {
			t.Fatalf("%d private keys", len(hs))
		}
		must(t, p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_RSA_PKCS, nil)}, hs[0]))
		sig, err := p.Sign(s, []byte(msg))
		must(t, err)
		d := sha256.Sum256([]byte(msg))
		must(t, rsa.VerifyPKCS1v15(k.Public.(*rsa.PublicKey), crypto.SHA256, d[:], sig))
	}
	sign("the right PIN signs")
	// C_SetPIN changes it on the nodes: the old PIN then fails, the new one signs.
	must(t, p.SetPIN(s, c.PIN, "24682468"))
	must(t, p.Logout(s))
	wantRV(t, "the old PIN after C_SetPIN", p.Login(s, pkcs11.CKU_USER, c.PIN), pkcs11.CKR_PIN_INCORRECT)
	must(t, p.Login(s, pkcs11.CKU_USER, "24682468"))
	sign("the new PIN signs")
	must(t, p.Finalize())
}
