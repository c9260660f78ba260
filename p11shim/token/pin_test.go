package token

import (
	"testing"

	"github.com/tchsm/tchsm/internal/config"
)

// With the PIN on the nodes: the token signs nothing before C_Login (the nodes refuse), lists
// keys, maps the nodes' answers to CKR_PIN_INCORRECT and CKR_PIN_LOCKED, shows their counters
// in CK_TOKEN_INFO.flags, changes the PIN with C_SetPIN, and ignores user_pin_hash.
func TestNodePIN(t *testing.T) {
	f := newFixture(t, func(c *config.PKCS11) { c.UserPINHash = "" })
	f.b.setPIN("4711", 3)
	h := f.open(true)
	flags := func() uint {
		ti, err := f.tk.TokenInfo(SlotID)
		if err != nil {
			t.Fatal(err)
		}
		return ti.Flags & (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED | CKF_USER_PIN_INITIALIZED)
	}
	if got := flags(); got != CKF_USER_PIN_INITIALIZED {
		t.Fatalf("flags before a login %#x", got)
	}
	wantErr(t, f.tk.Login(h, CKU_USER, []byte("0000")), ErrPINIncorrect)
	if got := flags(); got != CKF_USER_PIN_INITIALIZED|CKF_USER_PIN_COUNT_LOW {
		t.Fatalf("flags after one failure %#x", got)
	}
	wantErr(t, f.tk.Login(h, CKU_USER, []byte("0001")), ErrPINIncorrect)
	if got := flags(); got != CKF_USER_PIN_INITIALIZED|CKF_USER_PIN_COUNT_LOW|CKF_USER_PIN_FINAL_TRY {
		t.Fatalf("flags with one try left %#x", got)
	}
	wantErr(t, f.tk.Login(h, CKU_USER, []byte("0002")), ErrPINLocked)
	wantErr(t, f.tk.Login(h, CKU_USER, []byte("4711")), ErrPINLocked)
	if got := flags(); got != CKF_USER_PIN_INITIALIZED|CKF_USER_PIN_LOCKED {
		t.Fatalf("flags when locked %#x", got)
	}
	f.b.unlock()
	if err := f.tk.Login(h, CKU_USER, []byte("4711")); err != nil {
		t.Fatal(err)
	}
	if got := flags(); got != CKF_USER_PIN_INITIALIZED {
		t.Fatalf("flags after a good login %#x", got)
	}
	_, _, privH := f.genKey(h, true)
	sign := func() error {
		if err := f.tk.SignInit(h, Mechanism{Type: CKM_SHA256_RSA_PKCS}, privH); err != nil {
			return err
		}
		_, _, err := f.tk.Sign(h, []byte("x"), false, 512)
		return err
	}
	if err := sign(); err != nil {
		t.Fatalf("sign logged in: %v", err)
	}
	// The nodes lost the login (and the client could not renew it): CKR_USER_NOT_LOGGED_IN.
	f.b.Logout()
	wantErr(t, sign(), ErrUserNotLoggedIn)
	// C_SetPIN: a read-only session is refused, a short PIN too, a wrong old PIN counts.
	ro := f.open(false)
	wantErr(t, f.tk.SetPIN(ro, []byte("4711"), []byte("9999")), ErrSessionReadOnly)
	wantErr(t, f.tk.SetPIN(h, []byte("4711"), []byte("99")), ErrPINLenRange)
	wantErr(t, f.tk.SetPIN(h, []byte("0000"), []byte("9999")), ErrPINIncorrect)
	if err := f.tk.SetPIN(h, []byte("4711"), []byte("9999")); err != nil {
		t.Fatal(err)
	}
	if err := f.tk.Logout(h); err != nil {
		t.Fatal(err)
	}
	wantErr(t, f.tk.Login(h, CKU_USER, []byte("4711")), ErrPINIncorrect)
	if err := f.tk.Login(h, CKU_USER, []byte("9999")); err != nil {
		t.Fatal(err)
	}
}

// A cluster whose nodes hold no PIN yet: C_Login checks user_pin_hash as before, and C_SetPIN
// with the old PIN right installs the new one on the nodes (the migration).
func TestLegacyPINMigration(t *testing.T) {
	f := newFixture(t, nil)
	h := f.open(true)
	wantErr(t, f.tk.Login(h, CKU_USER, []byte("000000")), ErrPINIncorrect)
	f.login(h)
	wantErr(t, f.tk.SetPIN(h, []byte("000000"), []byte("4711")), ErrPINIncorrect)
	if err := f.tk.SetPIN(h, []byte(testPIN), []byte("4711")); err != nil {
		t.Fatal(err)
	}
	if err := f.tk.Logout(h); err != nil {
		t.Fatal(err)
	}
	// Now the nodes check it, and the hash no longer opens the token.
	wantErr(t, f.tk.Login(h, CKU_USER, []byte(testPIN)), ErrPINIncorrect)
	if err := f.tk.Login(h, CKU_USER, []byte("4711")); err != nil {
		t.Fatal(err)
	}
}
