package token

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/backend"
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/pin"
	"github.com/tchsm/tchsm/scheme"
)

const testPIN = "123456"

var (
	pinHashOnce sync.Once
	pinHash     string
)

func testPINHash(t testing.TB) string {
	pinHashOnce.Do(func() {
		h, err := pin.Hash(testPIN)
		if err != nil {
			panic(err)
		}
		pinHash = h
	})
	return pinHash
}

type fixture struct {
	t  testing.TB
	tk *Token
	b  *clusterBackend
}

func newFixture(t testing.TB, mod func(*config.PKCS11)) *fixture {
	t.Helper()
	b := newClusterBackend(2, 3)
	cfg := config.PKCS11{TokenLabel: "test-token", Serial: "42", UserPINHash: testPINHash(t)}
	if mod != nil {
		mod(&cfg)
	}
	tk, err := New(cfg, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tk.Close() })
	return &fixture{t: t, tk: tk, b: b}
}

func (f *fixture) open(rw bool) uint {
	f.t.Helper()
	flags := CKF_SERIAL_SESSION
	if rw {
		flags |= CKF_RW_SESSION
	}
	h, err := f.tk.OpenSession(SlotID, flags)
	if err != nil {
		f.t.Fatal(err)
	}
	if h == 0 {
		f.t.Fatal("session handle 0")
	}
	return h
}

func (f *fixture) login(h uint) {
	f.t.Helper()
	if err := f.tk.Login(h, CKU_USER, []byte(testPIN)); err != nil {
		f.t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
}

func ulong(v uint) []byte { return EncodeULong(v) }

// odsTemplates are the templates libhsm (OpenDNSSEC 2.1) sends to C_GenerateKeyPair.
func odsTemplates(bits uint, pubToken bool) (id []byte, pubT, privT []Attribute) {
	id = make([]byte, 16)
	rand.Read(id)
	label := []byte(fmt.Sprintf("%x", id))
	pubT = []Attribute{
		{CKA_LABEL, label}, {CKA_ID, id}, {CKA_KEY_TYPE, ulong(CKK_RSA)}, {CKA_VERIFY, []byte{1}},
		{CKA_ENCRYPT, []byte{0}}, {CKA_WRAP, []byte{0}}, {CKA_TOKEN, EncodeBool(pubToken)},
		{CKA_MODULUS_BITS, ulong(bits)}, {CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}},
	}
	privT = []Attribute{
		{CKA_LABEL, label}, {CKA_ID, id}, {CKA_KEY_TYPE, ulong(CKK_RSA)}, {CKA_SIGN, []byte{1}},
		{CKA_DECRYPT, []byte{0}}, {CKA_UNWRAP, []byte{0}}, {CKA_SENSITIVE, []byte{1}},
		{CKA_TOKEN, []byte{1}}, {CKA_PRIVATE, []byte{1}}, {CKA_EXTRACTABLE, []byte{0}},
	}
	return id, pubT, privT
}

var keygen = Mechanism{Type: CKM_RSA_PKCS_KEY_PAIR_GEN}

// genKey generates a 1024-bit key with OpenDNSSEC's templates on a logged-in RW session.
func (f *fixture) genKey(h uint, pubToken bool) (id []byte, pubH, privH uint) {
	f.t.Helper()
	id, pubT, privT := odsTemplates(1024, pubToken)
	pubH, privH, err := f.tk.GenerateKeyPair(h, keygen, pubT, privT)
	if err != nil {
		f.t.Fatal(err)
	}
	if pubH == 0 || privH == 0 || pubH == privH {
		f.t.Fatalf("handles %d %d", pubH, privH)
	}
	return id, pubH, privH
}

func (f *fixture) find(h uint, tmpl ...Attribute) []uint {
	f.t.Helper()
	if err := f.tk.FindObjectsInit(h, tmpl); err != nil {
		f.t.Fatal(err)
	}
	var all []uint
	for {
		hs, err := f.tk.FindObjects(h, 2)
		if err != nil {
			f.t.Fatal(err)
		}
		if len(hs) == 0 {
			break
		}
		all = append(all, hs...)
	}
	if err := f.tk.FindObjectsFinal(h); err != nil {
		f.t.Fatal(err)
	}
	return all
}

func (f *fixture) attr(h, oh, typ uint) []byte {
	f.t.Helper()
	slots := []AttrSlot{{Type: typ}}
	if err := f.tk.GetAttributeValue(h, oh, slots); err != nil {
		f.t.Fatalf("attribute %#x: %v", typ, err)
	}
	slots[0].HasBuf, slots[0].BufLen = true, slots[0].Len
	if err := f.tk.GetAttributeValue(h, oh, slots); err != nil {
		f.t.Fatalf("attribute %#x: %v", typ, err)
	}
	return slots[0].Value
}

func (f *fixture) pubKey(h, oh uint) *rsa.PublicKey {
	n := new(big.Int).SetBytes(f.attr(h, oh, CKA_MODULUS))
	e := new(big.Int).SetBytes(f.attr(h, oh, CKA_PUBLIC_EXPONENT))
	return &rsa.PublicKey{N: n, E: int(e.Int64())}
}

func TestInfo(t *testing.T) {
	f := newFixture(t, nil)
	ti, err := f.tk.TokenInfo(SlotID)
	if err != nil {
		t.Fatal(err)
	}
	if ti.Label != "test-token" || ti.Manufacturer != "tchsm" || ti.Serial != "42" {
		t.Fatalf("token info %+v", ti)
	}
	want := CKF_RNG | CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED | CKF_TOKEN_INITIALIZED
	if ti.Flags != want {
		t.Fatalf("flags %#x want %#x", ti.Flags, want)
	}
	if got := string(Pad("ab", 5)); got != "ab   " {
		t.Fatalf("Pad = %q", got)
	}
	if got := string(Pad("abcdef", 3)); got != "abc" {
		t.Fatalf("Pad = %q", got)
	}
	if _, err := f.tk.TokenInfo(7); !errors.Is(err, ErrSlotIDInvalid) {
		t.Fatal(err)
	}
	if _, _, err := f.tk.SlotInfo(0); !errors.Is(err, ErrSlotIDInvalid) {
		t.Fatal(err)
	}
	if _, flags, err := f.tk.SlotInfo(SlotID); err != nil || flags != CKF_TOKEN_PRESENT {
		t.Fatal(flags, err)
	}
	ms, err := f.tk.Mechanisms(SlotID)
	if err != nil || len(ms) != 14 {
		t.Fatal(ms, err)
	}
	for _, m := range ms {
		mi, err := f.tk.Mechanism(SlotID, m)
		if err != nil {
			t.Fatal(err)
		}
		switch m {
		case CKM_RSA_PKCS_KEY_PAIR_GEN:
			if mi.Flags != CKF_HW|CKF_GENERATE_KEY_PAIR || mi.MinKeySize != 1024 || mi.MaxKeySize != 4096 {
				t.Fatalf("%+v", mi)
			}
		case CKM_SHA_1, CKM_SHA224, CKM_SHA256, CKM_SHA384, CKM_SHA512:
			if mi.Flags != CKF_DIGEST {
				t.Fatalf("%#x %+v", m, mi)
			}
		case CKM_EC_EDWARDS_KEY_PAIR_GEN:
			if mi.Flags != CKF_HW|CKF_GENERATE_KEY_PAIR || mi.MinKeySize != 256 || mi.MaxKeySize != 256 {
				t.Fatalf("%+v", mi)
			}
		case CKM_EDDSA:
			if mi.Flags != CKF_HW|CKF_SIGN|CKF_VERIFY || mi.MinKeySize != 256 || mi.MaxKeySize != 256 {
				t.Fatalf("%+v", mi)
			}
		default:
			if mi.Flags != CKF_HW|CKF_SIGN|CKF_VERIFY || mi.MinKeySize != 1024 || mi.MaxKeySize != 4096 {
				t.Fatalf("%#x %+v", m, mi)
			}
		}
	}
	if _, err := f.tk.Mechanism(SlotID, 0x1040 /* CKM_EC_KEY_PAIR_GEN */); !errors.Is(err, ErrMechanismInvalid) {
		t.Fatal(err)
	}
	// Session counts.
	f.open(true)
	f.open(false)
	ti, _ = f.tk.TokenInfo(SlotID)
	if ti.SessionCount != 2 || ti.RWSessionCount != 1 {
		t.Fatalf("%+v", ti)
	}
}

func TestSessionsAndLogin(t *testing.T) {
	f := newFixture(t, nil)
	if _, err := f.tk.OpenSession(SlotID, CKF_RW_SESSION); !errors.Is(err, ErrSessionParallelNotSupported) {
		t.Fatal(err)
	}
	if _, err := f.tk.OpenSession(99, CKF_SERIAL_SESSION); !errors.Is(err, ErrSlotIDInvalid) {
		t.Fatal(err)
	}
	rw, ro := f.open(true), f.open(false)
	state := func(h uint) uint {
		t.Helper()
		si, err := f.tk.SessionInfo(h)
		if err != nil {
			t.Fatal(err)
		}
		return si.State
	}
	if state(rw) != CKS_RW_PUBLIC_SESSION || state(ro) != CKS_RO_PUBLIC_SESSION {
		t.Fatal(state(rw), state(ro))
	}
	wantErr(t, f.tk.Logout(rw), ErrUserNotLoggedIn)
	wantErr(t, f.tk.Login(rw, CKU_USER, []byte("000000")), ErrPINIncorrect)
	wantErr(t, f.tk.Login(rw, CKU_USER, []byte("")), ErrPINIncorrect)
	wantErr(t, f.tk.Login(rw, CKU_USER, bytes.Repeat([]byte("1"), 5000)), ErrPINIncorrect)
	wantErr(t, f.tk.Login(rw, CKU_SO, []byte(testPIN)), ErrUserTypeInvalid)
	wantErr(t, f.tk.Login(rw, 77, []byte(testPIN)), ErrUserTypeInvalid)
	wantErr(t, f.tk.Login(12345, CKU_USER, []byte(testPIN)), ErrSessionHandleInvalid)
	f.login(ro)
	// Login belongs to the token: every session, including new ones, is in a user state.
	third := f.open(true)
	if state(rw) != CKS_RW_USER_FUNCTIONS || state(ro) != CKS_RO_USER_FUNCTIONS || state(third) != CKS_RW_USER_FUNCTIONS {
		t.Fatal(state(rw), state(ro), state(third))
	}
	wantErr(t, f.tk.Login(rw, CKU_USER, []byte(testPIN)), ErrUserAlreadyLoggedIn)
	if err := f.tk.Logout(third); err != nil {
		t.Fatal(err)
	}
	if state(rw) != CKS_RW_PUBLIC_SESSION {
		t.Fatal(state(rw))
	}
	f.login(rw)
	// Closing sessions: handles become invalid; closing the last logs out.
	if err := f.tk.CloseSession(third); err != nil {
		t.Fatal(err)
	}
	wantErr(t, f.tk.CloseSession(third), ErrSessionHandleInvalid)
	_, err := f.tk.SessionInfo(third)
	wantErr(t, err, ErrSessionHandleInvalid)
	if err := f.tk.CloseAllSessions(SlotID); err != nil {
		t.Fatal(err)
	}
	wantErr(t, f.tk.CloseAllSessions(3), ErrSlotIDInvalid)
	h := f.open(true)
	if h <= third {
		t.Fatalf("session handle %d reused (previous %d)", h, third)
	}
	if state(h) != CKS_RW_PUBLIC_SESSION {
		t.Fatal("still logged in after closing every session")
	}
	// Random numbers.
	r1, err := f.tk.GenerateRandom(h, 32)
	if err != nil || len(r1) != 32 {
		t.Fatal(err)
	}
	r2, _ := f.tk.GenerateRandom(h, 32)
	if bytes.Equal(r1, r2) {
		t.Fatal("random repeats")
	}
	wantErr(t, f.tk.SeedRandom(h), ErrRandomSeedNotSupported)
	_, err = f.tk.GenerateRandom(999, 4)
	wantErr(t, err, ErrSessionHandleInvalid)
}

// Without user_pin_hash and with no PIN on the nodes nobody logs in; the token says the PIN is
// initialised until the nodes said they hold none (a client file without a hash is what the
// nodes' PINs make the normal case).
func TestNoUserPIN(t *testing.T) {
	f := newFixture(t, func(c *config.PKCS11) { c.UserPINHash = "" })
	ti, _ := f.tk.TokenInfo(SlotID)
	if ti.Flags&CKF_USER_PIN_INITIALIZED == 0 {
		t.Fatal("no PIN flag before the nodes were asked")
	}
	h := f.open(true)
	wantErr(t, f.tk.Login(h, CKU_USER, []byte(testPIN)), ErrUserPINNotInitialized)
	if ti, _ := f.tk.TokenInfo(SlotID); ti.Flags&CKF_USER_PIN_INITIALIZED != 0 {
		t.Fatal("PIN flag once the nodes said they hold none")
	}
}

func TestKeygenOpenDNSSEC(t *testing.T) {
	f := newFixture(t, nil)
	h := f.open(true)
	f.login(h)

	// <SkipPublicKey/>: the public key is a session object destroyed at once.
	id, pubH, privH := f.genKey(h, false)
	if got := f.find(h, Attribute{CKA_CLASS, ulong(CKO_PRIVATE_KEY)}, Attribute{CKA_ID, id}); len(got) != 1 || got[0] != privH {
		t.Fatalf("find private by id = %v, want [%d]", got, privH)
	}
	if v := f.attr(h, pubH, CKA_TOKEN); v[0] != 0 {
		t.Fatal("session public key says CKA_TOKEN=TRUE")
	}
	if err := f.tk.DestroyObject(h, pubH); err != nil {
		t.Fatal(err)
	}
	_, err := f.tk.ObjectSize(h, pubH)
	wantErr(t, err, ErrObjectHandleInvalid)
	// The private key still serves CKA_MODULUS and CKA_PUBLIC_EXPONENT, as libhsm reads them.
	pub := f.pubKey(h, privH)
	if pub.N.BitLen() != 1024 || pub.E != 65537 {
		t.Fatalf("%d bits, e=%d", pub.N.BitLen(), pub.E)
	}
	if bits, _ := DecodeULong(f.attr(h, privH, CKA_MODULUS_BITS)); bits != 1024 {
		t.Fatal(bits)
	}
	if got := string(f.attr(h, privH, CKA_LABEL)); got != fmt.Sprintf("%x", id) {
		t.Fatal(got)
	}
	// The token public key object of the same key exists as well.
	pubs := f.find(h, Attribute{CKA_CLASS, ulong(CKO_PUBLIC_KEY)}, Attribute{CKA_ID, id})
	if len(pubs) != 1 || pubs[0] == pubH {
		t.Fatalf("token public keys %v (session one was %d)", pubs, pubH)
	}

	// Without SkipPublicKey the public key handle returned is the token object.
	id2, pubH2, privH2 := f.genKey(h, true)
	if got := f.find(h, Attribute{CKA_CLASS, ulong(CKO_PUBLIC_KEY)}, Attribute{CKA_ID, id2}); len(got) != 1 || got[0] != pubH2 {
		t.Fatalf("find public by id = %v, want [%d]", got, pubH2)
	}
	// Public key session objects are visible to other sessions but die with their session.
	h2 := f.open(true)
	_, pubS, _ := f.genKey(h2, false)
	if _, err := f.tk.ObjectSize(h, pubS); err != nil {
		t.Fatal(err)
	}
	if err := f.tk.CloseSession(h2); err != nil {
		t.Fatal(err)
	}
	_, err = f.tk.ObjectSize(h, pubS)
	wantErr(t, err, ErrObjectHandleInvalid)

	// libhsm's hsm_remove_key: destroy the private key, then the public key.
	wantErr(t, f.tk.DestroyObject(h, pubH2), ErrActionProhibited)
	if err := f.tk.DestroyObject(h, privH2); err != nil {
		t.Fatal(err)
	}
	if err := f.tk.DestroyObject(h, pubH2); err != nil {
		t.Fatal(err)
	}
	wantErr(t, f.tk.DestroyObject(h, pubH2), ErrObjectHandleInvalid)
	wantErr(t, f.tk.DestroyObject(h, privH2), ErrObjectHandleInvalid)
	if got := f.find(h, Attribute{CKA_ID, id2}); len(got) != 0 {
		t.Fatalf("destroyed key still found: %v", got)
	}
	f.b.mu.Lock()
	n := len(f.b.keys)
	f.b.mu.Unlock()
	if n != 2 {
		t.Fatalf("cluster holds %d keys, want 2", n)
	}
	// New handles never reuse destroyed ones.
	_, pubH3, privH3 := f.genKey(h, true)
	for _, old := range []uint{pubH, privH, pubH2, privH2, pubS} {
		if old == pubH3 || old == privH3 {
			t.Fatalf("handle %d reused", old)
		}
	}
}

func TestKeygenErrors(t *testing.T) {
	f := newFixture(t, nil)
	rw, ro := f.open(true), f.open(false)
	_, pubT, privT := odsTemplates(1024, false)
	_, _, err := f.tk.GenerateKeyPair(rw, keygen, pubT, privT)
	wantErr(t, err, ErrUserNotLoggedIn)
	f.login(rw)
	_, _, err = f.tk.GenerateKeyPair(ro, keygen, pubT, privT)
	wantErr(t, err, ErrSessionReadOnly)
	_, _, err = f.tk.GenerateKeyPair(rw, Mechanism{Type: CKM_RSA_PKCS}, pubT, privT)
	wantErr(t, err, ErrMechanismInvalid)
	_, _, err = f.tk.GenerateKeyPair(rw, Mechanism{Type: CKM_RSA_PKCS_KEY_PAIR_GEN, Param: []byte{1}}, pubT, privT)
	wantErr(t, err, ErrMechanismParamInvalid)
	_, _, err = f.tk.GenerateKeyPair(999, keygen, pubT, privT)
	wantErr(t, err, ErrSessionHandleInvalid)

	mod := func(tmpl []Attribute, typ uint, v []byte) []Attribute {
		out := append([]Attribute{}, tmpl...)
		for i := range out {
			if out[i].Type == typ {
				out[i].Value = v
				return out
			}
		}
		return append(out, Attribute{typ, v})
	}
	drop := func(tmpl []Attribute, typ uint) []Attribute {
		var out []Attribute
		for _, a := range tmpl {
			if a.Type != typ {
				out = append(out, a)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name        string
		pubT, privT []Attribute
		want        error
	}{
		{"no modulus bits", drop(pubT, CKA_MODULUS_BITS), privT, ErrTemplateIncomplete},
		{"512 bits", mod(pubT, CKA_MODULUS_BITS, ulong(512)), privT, ErrKeySizeRange},
		{"8192 bits", mod(pubT, CKA_MODULUS_BITS, ulong(8192)), privT, ErrKeySizeRange},
		{"4-byte modulus bits", mod(pubT, CKA_MODULUS_BITS, []byte{0, 4, 0, 0}), privT, ErrAttributeValueInvalid},
		{"even exponent", mod(pubT, CKA_PUBLIC_EXPONENT, []byte{1, 0, 0}), privT, ErrAttributeValueInvalid},
		{"empty exponent", mod(pubT, CKA_PUBLIC_EXPONENT, nil), privT, ErrAttributeValueInvalid},
		{"huge exponent", mod(pubT, CKA_PUBLIC_EXPONENT, bytes.Repeat([]byte{0xff}, 9)), privT, ErrAttributeValueInvalid},
		{"EC key type", mod(pubT, CKA_KEY_TYPE, ulong(3)), privT, ErrTemplateInconsistent},
		{"private key type", pubT, mod(privT, CKA_KEY_TYPE, ulong(3)), ErrTemplateInconsistent},
		{"wrong public class", mod(pubT, CKA_CLASS, ulong(CKO_PRIVATE_KEY)), privT, ErrTemplateInconsistent},
		{"session private key", pubT, mod(privT, CKA_TOKEN, []byte{0}), ErrTemplateInconsistent},
		{"bad bool", mod(pubT, CKA_TOKEN, []byte{1, 0}), privT, ErrAttributeValueInvalid},
		{"ids differ", pubT, mod(privT, CKA_ID, []byte("other")), ErrTemplateInconsistent},
		{"given modulus", mod(pubT, CKA_MODULUS, []byte{1, 2, 3}), privT, ErrTemplateInconsistent},
		{"odd size", mod(pubT, CKA_MODULUS_BITS, ulong(2047)), privT, ErrKeySizeRange},
		{"exponent refused by the cluster", mod(pubT, CKA_PUBLIC_EXPONENT, []byte{9}), privT, ErrAttributeValueInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := f.tk.GenerateKeyPair(rw, keygen, tc.pubT, tc.privT)
			wantErr(t, err, tc.want)
		})
	}
	// pkcs11-tool style: no label or id, extra attributes, CKA_TOKEN on both.
	pubH, privH, err := f.tk.GenerateKeyPair(rw, keygen,
		[]Attribute{{CKA_TOKEN, []byte{1}}, {CKA_ENCRYPT, []byte{1}}, {CKA_MODULUS_BITS, ulong(1024)}, {CKA_SUBJECT, []byte("x")}, {0x80001234, []byte{9}}},
		[]Attribute{{CKA_TOKEN, []byte{1}}, {CKA_DECRYPT, []byte{1}}, {CKA_SIGN, []byte{1}}, {CKA_EXTRACTABLE, []byte{1}}})
	if err != nil || pubH == 0 || privH == 0 {
		t.Fatal(pubH, privH, err)
	}
	if v := f.attr(rw, privH, CKA_EXTRACTABLE); v[0] != 0 {
		t.Fatal("key claims to be extractable")
	}
	// Cluster failures map to the device error.
	f.b.setDown(2, true)
	_, _, err = f.tk.GenerateKeyPair(rw, keygen, pubT, privT)
	wantErr(t, err, ErrDeviceError)
	if !errors.Is(err, backend.ErrNotEnoughNodes) {
		t.Fatalf("cause lost: %v", err)
	}
}

func TestAttributes(t *testing.T) {
	f := newFixture(t, nil)
	h := f.open(false)
	f.login(h)
	rw := f.open(true)
	id, _, privH := f.genKey(rw, true)
	pubH := f.find(h, Attribute{CKA_CLASS, ulong(CKO_PUBLIC_KEY)}, Attribute{CKA_ID, id})[0]

	b1 := func(v []byte) bool { return len(v) == 1 && v[0] == 1 }
	for typ, want := range map[uint]bool{CKA_SENSITIVE: true, CKA_EXTRACTABLE: false, CKA_SIGN: true,
		CKA_DECRYPT: false, CKA_PRIVATE: true, CKA_TOKEN: true, CKA_ALWAYS_AUTHENTICATE: false,
		CKA_NEVER_EXTRACTABLE: true, CKA_MODIFIABLE: false} {
		if got := b1(f.attr(h, privH, typ)); got != want {
			t.Errorf("private %#x = %v", typ, got)
		}
	}
	for typ, want := range map[uint]bool{CKA_VERIFY: true, CKA_ENCRYPT: false, CKA_PRIVATE: false, CKA_TOKEN: true} {
		if got := b1(f.attr(h, pubH, typ)); got != want {
			t.Errorf("public %#x = %v", typ, got)
		}
	}
	if c, _ := DecodeULong(f.attr(h, privH, CKA_CLASS)); c != CKO_PRIVATE_KEY {
		t.Fatal(c)
	}
	if !bytes.Equal(f.attr(h, pubH, CKA_ID), id) {
		t.Fatal("CKA_ID")
	}
	spki, err := x509.ParsePKIXPublicKey(f.attr(h, pubH, CKA_PUBLIC_KEY_INFO))
	if err != nil || !spki.(*rsa.PublicKey).Equal(f.pubKey(h, privH)) {
		t.Fatal("CKA_PUBLIC_KEY_INFO", err)
	}

	// Mixed template: sensitive, unknown, a length query, a short buffer and a good entry.
	modLen := uint(128)
	slots := []AttrSlot{
		{Type: CKA_PRIVATE_EXPONENT, HasBuf: true, BufLen: 512},
		{Type: 0x7777, HasBuf: true, BufLen: 16},
		{Type: CKA_MODULUS},
		{Type: CKA_LABEL, HasBuf: true, BufLen: 3},
		{Type: CKA_KEY_TYPE, HasBuf: true, BufLen: uint(ULongSize)},
	}
	err = f.tk.GetAttributeValue(h, privH, slots)
	if !errors.Is(err, ErrAttributeSensitive) && !errors.Is(err, ErrAttributeTypeInvalid) && !errors.Is(err, ErrBufferTooSmall) {
		t.Fatal(err)
	}
	if slots[0].Len != Unavailable || slots[1].Len != Unavailable || slots[3].Len != Unavailable {
		t.Fatalf("%+v", slots)
	}
	if slots[2].Len != modLen || slots[2].Value != nil {
		t.Fatalf("length query: %+v", slots[2])
	}
	if kt, ok := DecodeULong(slots[4].Value); !ok || kt != CKK_RSA || slots[4].Len != uint(ULongSize) {
		t.Fatalf("%+v", slots[4])
	}
	for _, typ := range []uint{CKA_PRIVATE_EXPONENT, CKA_PRIME_1, CKA_PRIME_2, CKA_EXPONENT_1, CKA_EXPONENT_2, CKA_COEFFICIENT, CKA_VALUE} {
		s := []AttrSlot{{Type: typ}}
		wantErr(t, f.tk.GetAttributeValue(h, privH, s), ErrAttributeSensitive)
	}
	s := []AttrSlot{{Type: CKA_SIGN}}
	wantErr(t, f.tk.GetAttributeValue(h, pubH, s), ErrAttributeTypeInvalid)
	wantErr(t, f.tk.GetAttributeValue(h, 0, s), ErrObjectHandleInvalid)
	wantErr(t, f.tk.GetAttributeValue(h, 9999, s), ErrObjectHandleInvalid)
	wantErr(t, f.tk.GetAttributeValue(9999, privH, s), ErrSessionHandleInvalid)
	wantErr(t, f.tk.SetAttributeValue(h, privH, []Attribute{{CKA_LABEL, []byte("x")}}), ErrActionProhibited)
	if sz, err := f.tk.ObjectSize(h, privH); err != nil || sz != Unavailable {
		t.Fatal(sz, err)
	}

	// Logged out, the private key disappears; the public one stays.
	if err := f.tk.Logout(h); err != nil {
		t.Fatal(err)
	}
	wantErr(t, f.tk.GetAttributeValue(h, privH, []AttrSlot{{Type: CKA_LABEL}}), ErrObjectHandleInvalid)
	if got := f.find(h, Attribute{CKA_ID, id}); len(got) != 1 || got[0] != pubH {
		t.Fatalf("logged out find = %v", got)
	}
}

func TestFind(t *testing.T) {
	f := newFixture(t, func(c *config.PKCS11) { c.KeyCacheTTL = config.Duration(time.Hour) })
	h := f.open(true)
	f.login(h)
	id1, _, priv1 := f.genKey(h, true)
	_, _, _ = f.genKey(h, true)
	label1 := fmt.Sprintf("%x", id1)

	if got := f.find(h); len(got) != 4 {
		t.Fatalf("all objects: %v", got)
	}
	if got := f.find(h, Attribute{CKA_CLASS, ulong(CKO_PRIVATE_KEY)}); len(got) != 2 {
		t.Fatalf("private keys: %v", got)
	}
	if got := f.find(h, Attribute{CKA_LABEL, []byte(label1)}); len(got) != 2 {
		t.Fatalf("by label: %v", got)
	}
	if got := f.find(h, Attribute{CKA_KEY_TYPE, ulong(CKK_RSA)}, Attribute{CKA_LABEL, []byte(label1)},
		Attribute{CKA_SIGN, []byte{1}}); len(got) != 1 || got[0] != priv1 {
		t.Fatalf("by type, label, sign: %v", got)
	}
	if got := f.find(h, Attribute{CKA_TOKEN, []byte{1}}, Attribute{CKA_PRIVATE, []byte{0}}); len(got) != 2 {
		t.Fatalf("public token objects: %v", got)
	}
	if got := f.find(h, Attribute{0x7777, []byte{1}}); len(got) != 0 {
		t.Fatalf("unknown attribute matched %v", got)
	}
	if got := f.find(h, Attribute{CKA_PRIVATE_EXPONENT, []byte{1}}); len(got) != 0 {
		t.Fatalf("sensitive attribute matched %v", got)
	}
	if got := f.find(h, Attribute{CKA_ID, []byte("nope")}); len(got) != 0 {
		t.Fatalf("bad id matched %v", got)
	}
	// Operation state.
	_, err := f.tk.FindObjects(h, 10)
	wantErr(t, err, ErrOperationNotInitialized)
	wantErr(t, f.tk.FindObjectsFinal(h), ErrOperationNotInitialized)
	if err := f.tk.FindObjectsInit(h, nil); err != nil {
		t.Fatal(err)
	}
	wantErr(t, f.tk.FindObjectsInit(h, nil), ErrOperationActive)
	if err := f.tk.FindObjectsFinal(h); err != nil {
		t.Fatal(err)
	}

	// A key made by another process appears when a search misses (the cache TTL is an hour).
	other, err := f.b.GenerateKey(context.Background(), backend.GenerateRequest{Bits: 1024, Label: "other", P11ID: []byte{7, 7}})
	if err != nil {
		t.Fatal(err)
	}
	got := f.find(h, Attribute{CKA_CLASS, ulong(CKO_PRIVATE_KEY)}, Attribute{CKA_ID, []byte{7, 7}})
	if len(got) != 1 {
		t.Fatalf("other process's key not found: %v", got)
	}
	// Its handles are stable across refreshes.
	again := f.find(h, Attribute{CKA_LABEL, []byte("other")}, Attribute{CKA_CLASS, ulong(CKO_PRIVATE_KEY)})
	if len(again) != 1 || again[0] != got[0] {
		t.Fatalf("handle changed: %v then %v", got, again)
	}
	// Deleted by another process: gone after the next refresh; signing reports the handle.
	if _, err := f.b.DeleteKey(context.Background(), other.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.tk.SignInit(h, Mechanism{Type: CKM_RSA_PKCS}, got[0]); err != nil {
		t.Fatal(err)
	}
	_, _, err = f.tk.Sign(h, []byte("x"), false, 512)
	wantErr(t, err, ErrKeyHandleInvalid)
	if none := f.find(h, Attribute{CKA_ID, []byte{7, 7}}); len(none) != 0 {
		t.Fatalf("deleted key still listed: %v", none)
	}
}

func TestFindRefresh(t *testing.T) {
	f := newFixture(t, func(c *config.PKCS11) { c.KeyCacheTTL = config.Duration(time.Hour) })
	h := f.open(true)
	f.login(h)
	f.find(h)
	if n := f.b.lists.Load(); n != 1 {
		t.Fatalf("%d fetches for the first search", n)
	}
	f.find(h, Attribute{CKA_ID, []byte{1}}) // a miss fetches again
	if n := f.b.lists.Load(); n != 2 {
		t.Fatalf("%d fetches", n)
	}
	f.genKey(h, true)
	f.find(h) // a hit from a fresh cache does not
	if n := f.b.lists.Load(); n != 2 {
		t.Fatalf("%d fetches", n)
	}

	g := newFixture(t, func(c *config.PKCS11) { c.KeyCacheTTL = config.Duration(50 * time.Millisecond) })
	h = g.open(true)
	g.login(h)
	g.genKey(h, true)
	g.find(h)
	n0 := g.b.lists.Load()
	g.find(h)
	if g.b.lists.Load() != n0 {
		t.Fatal("fetched although the cache is fresh")
	}
	time.Sleep(60 * time.Millisecond)
	g.find(h) // stale: answered from the cache, refreshed in the background
	deadline := time.Now().Add(2 * time.Second)
	for g.b.lists.Load() != n0+1 {
		if time.Now().After(deadline) {
			t.Fatal("stale cache not refreshed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A key made by another process while the cache is fresh is still found: the miss fetches.
	_, err := g.b.GenerateKey(context.Background(), backend.GenerateRequest{Bits: 1024, P11ID: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if got := g.find(h, Attribute{CKA_ID, []byte("x")}, Attribute{CKA_CLASS, ulong(CKO_PRIVATE_KEY)}); len(got) != 1 {
		t.Fatalf("found %v", got)
	}
}

// TestSlowListing: with the cluster slow to list keys, searches that hit the cache do not wait.
func TestSlowListing(t *testing.T) {
	f := newFixture(t, func(c *config.PKCS11) { c.KeyCacheTTL = config.Duration(time.Millisecond) })
	h := f.open(true)
	f.login(h)
	id, _, _ := f.genKey(h, true)
	f.find(h)
	f.b.setListDelay(2 * time.Second)
	time.Sleep(5 * time.Millisecond)
	start := time.Now()
	for range 5 {
		if got := f.find(h, Attribute{CKA_ID, id}); len(got) != 2 {
			t.Fatalf("found %v", got)
		}
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("cached searches took %v", el)
	}
	f.b.setListDelay(0)
}

var signMechs = []struct {
	mech uint
	hash crypto.Hash
}{
	{CKM_RSA_PKCS, 0}, {CKM_SHA1_RSA_PKCS, crypto.SHA1}, {CKM_SHA224_RSA_PKCS, crypto.SHA224},
	{CKM_SHA256_RSA_PKCS, crypto.SHA256}, {CKM_SHA384_RSA_PKCS, crypto.SHA384}, {CKM_SHA512_RSA_PKCS, crypto.SHA512},
}

func digestInfo(t *testing.T, h crypto.Hash, msg []byte) []byte {
	t.Helper()
	hh := h.New()
	hh.Write(msg)
	prefix := map[crypto.Hash][]byte{
		crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	}[h]
	return append(prefix, hh.Sum(nil)...)
}

func TestSign(t *testing.T) {
	f := newFixture(t, nil)
	h := f.open(false) // generic tools sign on read-only sessions
	rw := f.open(true)
	f.login(h)
	id, pubH, privH := f.genKey(rw, true)
	_ = id
	pub := f.pubKey(h, privH)
	msg := []byte("the quick brown fox")

	for _, m := range signMechs {
		t.Run(fmt.Sprintf("%#x", m.mech), func(t *testing.T) {
			data := msg
			if m.hash == 0 {
				data = digestInfo(t, crypto.SHA256, msg)
			}
			check := func(sig []byte) {
				t.Helper()
				if m.hash == 0 {
					d := sha256.Sum256(msg)
					if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig); err != nil {
						t.Fatal(err)
					}
					return
				}
				hh := m.hash.New()
				hh.Write(msg)
				if err := rsa.VerifyPKCS1v15(pub, m.hash, hh.Sum(nil), sig); err != nil {
					t.Fatal(err)
				}
			}
			mech := Mechanism{Type: m.mech}
			// One part, with a length query and a short buffer first.
			if err := f.tk.SignInit(h, mech, privH); err != nil {
				t.Fatal(err)
			}
			wantErr(t, f.tk.SignInit(h, mech, privH), ErrOperationActive)
			_, n, err := f.tk.Sign(h, data, true, 0)
			if err != nil || n != 128 {
				t.Fatal(n, err)
			}
			_, n, err = f.tk.Sign(h, data, false, 100)
			if !errors.Is(err, ErrBufferTooSmall) || n != 128 {
				t.Fatal(n, err)
			}
			sig, n, err := f.tk.Sign(h, data, false, 512)
			if err != nil || n != 128 || len(sig) != 128 {
				t.Fatal(n, err)
			}
			check(sig)
			_, _, err = f.tk.Sign(h, data, false, 512)
			wantErr(t, err, ErrOperationNotInitialized)
			// Verify it with the token, in one part and in several.
			if err := f.tk.VerifyInit(h, mech, pubH); err != nil {
				t.Fatal(err)
			}
			if err := f.tk.Verify(h, data, sig); err != nil {
				t.Fatal(err)
			}
			if err := f.tk.VerifyInit(h, mech, pubH); err != nil {
				t.Fatal(err)
			}
			if err := f.tk.VerifyUpdate(h, data[:5]); err != nil {
				t.Fatal(err)
			}
			if err := f.tk.VerifyUpdate(h, data[5:]); err != nil {
				t.Fatal(err)
			}
			if err := f.tk.VerifyFinal(h, sig); err != nil {
				t.Fatal(err)
			}
			bad := append([]byte{}, sig...)
			bad[10] ^= 1
			f.tk.VerifyInit(h, mech, pubH)
			wantErr(t, f.tk.Verify(h, data, bad), ErrSignatureInvalid)
			f.tk.VerifyInit(h, mech, pubH)
			wantErr(t, f.tk.Verify(h, data, sig[1:]), ErrSignatureLenRange)
			// Several parts, with a length query.
			if err := f.tk.SignInit(h, mech, privH); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < len(data); i += 7 {
				if err := f.tk.SignUpdate(h, data[i:min(i+7, len(data))]); err != nil {
					t.Fatal(err)
				}
			}
			if _, n, err := f.tk.SignFinal(h, true, 0); err != nil || n != 128 {
				t.Fatal(n, err)
			}
			if _, _, err := f.tk.SignFinal(h, false, 127); !errors.Is(err, ErrBufferTooSmall) {
				t.Fatal(err)
			}
			sig2, _, err := f.tk.SignFinal(h, false, 128)
			if err != nil {
				t.Fatal(err)
			}
			check(sig2)
			_, _, err = f.tk.SignFinal(h, false, 128)
			wantErr(t, err, ErrOperationNotInitialized)
		})
	}

	// Errors.
	wantErr(t, f.tk.SignInit(h, Mechanism{Type: CKM_SHA256}, privH), ErrMechanismInvalid)
	wantErr(t, f.tk.SignInit(h, Mechanism{Type: 0x1041 /* CKM_ECDSA */}, privH), ErrMechanismInvalid)
	wantErr(t, f.tk.SignInit(h, Mechanism{Type: CKM_RSA_PKCS, Param: []byte{1}}, privH), ErrMechanismParamInvalid)
	wantErr(t, f.tk.SignInit(h, Mechanism{Type: CKM_RSA_PKCS}, pubH), ErrKeyFunctionNotPermitted)
	wantErr(t, f.tk.SignInit(h, Mechanism{Type: CKM_RSA_PKCS}, 0), ErrKeyHandleInvalid)
	wantErr(t, f.tk.SignInit(h, Mechanism{Type: CKM_RSA_PKCS}, 4242), ErrKeyHandleInvalid)
	wantErr(t, f.tk.VerifyInit(h, Mechanism{Type: CKM_RSA_PKCS}, privH), ErrKeyFunctionNotPermitted)
	wantErr(t, f.tk.SignUpdate(h, msg), ErrOperationNotInitialized)
	_, _, err := f.tk.Sign(h, msg, false, 512)
	wantErr(t, err, ErrOperationNotInitialized)
	wantErr(t, f.tk.Verify(h, msg, msg), ErrOperationNotInitialized)
	// CKM_RSA_PKCS takes at most k-11 bytes; too long ends the operation.
	f.tk.SignInit(h, Mechanism{Type: CKM_RSA_PKCS}, privH)
	_, _, err = f.tk.Sign(h, make([]byte, 118), false, 512)
	wantErr(t, err, ErrDataLenRange)
	_, _, err = f.tk.Sign(h, msg, false, 512)
	wantErr(t, err, ErrOperationNotInitialized)
	f.tk.SignInit(h, Mechanism{Type: CKM_RSA_PKCS}, privH)
	wantErr(t, f.tk.SignUpdate(h, make([]byte, 118)), ErrDataLenRange)
	f.tk.SignInit(h, Mechanism{Type: CKM_RSA_PKCS}, privH)
	if sig, _, err := f.tk.Sign(h, make([]byte, 117), false, 512); err != nil || len(sig) != 128 {
		t.Fatal(err)
	}
	// Not logged in.
	if err := f.tk.Logout(h); err != nil {
		t.Fatal(err)
	}
	// The private key's handle ended with the login (PKCS#11 v2.40, C_Logout), also after
	// the next login; the key is there under a new handle.
	wantErr(t, f.tk.SignInit(h, Mechanism{Type: CKM_RSA_PKCS}, privH), ErrKeyHandleInvalid)
	f.login(h)
	wantErr(t, f.tk.SignInit(h, Mechanism{Type: CKM_RSA_PKCS}, privH), ErrKeyHandleInvalid)
	privs := f.find(h, Attribute{CKA_CLASS, ulong(CKO_PRIVATE_KEY)})
	if len(privs) != 1 || privs[0] == privH {
		t.Fatalf("private keys after a new login: %v (old handle %d)", privs, privH)
	}
	privH = privs[0]
	// Logged out between init and sign.
	f.tk.SignInit(h, Mechanism{Type: CKM_SHA256_RSA_PKCS}, privH)
	f.tk.Logout(h)
	_, _, err = f.tk.Sign(h, msg, false, 512)
	wantErr(t, err, ErrUserNotLoggedIn)
}

func TestSignClusterFailures(t *testing.T) {
	f := newFixture(t, func(c *config.PKCS11) { c.SignTimeout = config.Duration(300 * time.Millisecond) })
	h := f.open(true)
	f.login(h)
	_, _, privH := f.genKey(h, true)
	mech := Mechanism{Type: CKM_SHA256_RSA_PKCS}
	sign := func() error {
		if err := f.tk.SignInit(h, mech, privH); err != nil {
			t.Fatal(err)
		}
		_, _, err := f.tk.Sign(h, []byte("m"), false, 512)
		return err
	}
	// One node of three down: 2-of-3 still signs.
	f.b.setDown(1, true)
	if err := sign(); err != nil {
		t.Fatal(err)
	}
	f.b.setDown(3, true)
	err := sign()
	wantErr(t, err, ErrDeviceError)
	if !errors.Is(err, backend.ErrNotEnoughNodes) {
		t.Fatal(err)
	}
	f.b.setDown(1, false)
	f.b.setDown(3, false)
	// Slow cluster: the sign deadline cuts the call.
	f.b.setDelay(5 * time.Second)
	start := time.Now()
	err = sign()
	wantErr(t, err, ErrDeviceError)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
		t.Fatalf("%v after %v", err, time.Since(start))
	}
	// Closing the session cancels a call in flight.
	done := make(chan error, 1)
	h2 := f.open(true)
	go func() {
		f.tk.SignInit(h2, mech, privH)
		_, _, err := f.tk.Sign(h2, []byte("m"), false, 512)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	start = time.Now()
	if err := f.tk.CloseSession(h2); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("sign on a closed session succeeded")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("close did not cancel the call")
	}
	f.b.setDelay(0)
	if err := sign(); err != nil {
		t.Fatal(err)
	}
}

func TestDigest(t *testing.T) {
	f := newFixture(t, nil)
	h := f.open(false)
	msg := bytes.Repeat([]byte("abc"), 100)
	sums := map[uint][]byte{}
	s1 := sha1.Sum(msg)
	sums[CKM_SHA_1] = s1[:]
	s224 := sha256.Sum224(msg)
	sums[CKM_SHA224] = s224[:]
	s256 := sha256.Sum256(msg)
	sums[CKM_SHA256] = s256[:]
	s384 := sha512.Sum384(msg)
	sums[CKM_SHA384] = s384[:]
	s512 := sha512.Sum512(msg)
	sums[CKM_SHA512] = s512[:]
	for m, want := range sums {
		mech := Mechanism{Type: m}
		if err := f.tk.DigestInit(h, mech); err != nil {
			t.Fatal(err)
		}
		wantErr(t, f.tk.DigestInit(h, mech), ErrOperationActive)
		if _, n, err := f.tk.Digest(h, msg, true, 0); err != nil || n != uint(len(want)) {
			t.Fatal(n, err)
		}
		if _, _, err := f.tk.Digest(h, msg, false, uint(len(want)-1)); !errors.Is(err, ErrBufferTooSmall) {
			t.Fatal(err)
		}
		got, _, err := f.tk.Digest(h, msg, false, 64)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%#x: %x %v", m, got, err)
		}
		f.tk.DigestInit(h, mech)
		f.tk.DigestUpdate(h, msg[:10])
		f.tk.DigestUpdate(h, msg[10:])
		got, _, err = f.tk.DigestFinal(h, false, 64)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%#x multi-part: %x %v", m, got, err)
		}
	}
	wantErr(t, f.tk.DigestInit(h, Mechanism{Type: CKM_SHA256_RSA_PKCS}), ErrMechanismInvalid)
	wantErr(t, f.tk.DigestInit(h, Mechanism{Type: 0x210 /* CKM_MD5 */}), ErrMechanismInvalid)
	wantErr(t, f.tk.DigestUpdate(h, msg), ErrOperationNotInitialized)
	_, _, err := f.tk.DigestFinal(h, false, 64)
	wantErr(t, err, ErrOperationNotInitialized)
}

// TestConcurrentSign signs from 32 goroutines, each with its own session, 50 times each; run
// with -race. Every signature is checked with crypto/rsa.
func TestConcurrentSign(t *testing.T) {
	f := newFixture(t, nil)
	admin := f.open(true)
	f.login(admin)
	_, _, privA := f.genKey(admin, true)
	_, _, privB := f.genKey(admin, false)
	pubs := map[uint]*rsa.PublicKey{privA: f.pubKey(admin, privA), privB: f.pubKey(admin, privB)}
	const workers, each = 32, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := f.tk.OpenSession(SlotID, CKF_SERIAL_SESSION)
			if err != nil {
				errs <- err
				return
			}
			defer f.tk.CloseSession(h)
			key := privA
			if w%2 == 1 {
				key = privB
			}
			for i := range each {
				msg := []byte(fmt.Sprintf("worker %d message %d", w, i))
				if err := f.tk.SignInit(h, Mechanism{Type: CKM_SHA256_RSA_PKCS}, key); err != nil {
					errs <- err
					return
				}
				sig, _, err := f.tk.Sign(h, msg, false, 512)
				if err != nil {
					errs <- err
					return
				}
				d := sha256.Sum256(msg)
				if err := rsa.VerifyPKCS1v15(pubs[key], crypto.SHA256, d[:], sig); err != nil {
					errs <- err
					return
				}
				if i%10 == 0 {
					if _, err := f.tk.SessionInfo(h); err != nil {
						errs <- err
						return
					}
					f.find(h, Attribute{CKA_CLASS, ulong(CKO_PRIVATE_KEY)})
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := f.b.signs.Load(); n != workers*each {
		t.Fatalf("cluster made %d signatures, want %d", n, workers*each)
	}
}

func TestClose(t *testing.T) {
	f := newFixture(t, nil)
	h := f.open(true)
	if err := f.tk.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.tk.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := f.tk.SessionInfo(h)
	wantErr(t, err, ErrClosed)
	_, err = f.tk.OpenSession(SlotID, CKF_SERIAL_SESSION)
	wantErr(t, err, ErrClosed)
	_, err = f.tk.TokenInfo(SlotID)
	wantErr(t, err, ErrClosed)
}

// New fills in the defaults of config.PKCS11 and refuses settings that config.Load would.
func TestNewConfig(t *testing.T) {
	tk, err := New(config.PKCS11{}, newClusterBackend(2, 3), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()
	if ti, err := tk.TokenInfo(SlotID); err != nil || ti.Label != config.DefaultTokenLabel || ti.Serial != config.DefaultSerial {
		t.Fatalf("%+v %v", ti, err)
	}
	if tk.cfg != (config.PKCS11{}).WithDefaults() || time.Duration(tk.cfg.SignTimeout) != config.DefaultSignTimeout {
		t.Fatalf("settings %+v", tk.cfg)
	}
	for name, c := range map[string]config.PKCS11{
		"long label":   {TokenLabel: string(bytes.Repeat([]byte("x"), 33))},
		"bad pin hash": {UserPINHash: testPIN},
		"negative":     {SignTimeout: config.Duration(-time.Second)},
		"bad serial":   {Serial: "\x01"},
	} {
		_, err := New(c, newClusterBackend(2, 3), nil)
		if !errors.Is(err, ErrConfig) || !errors.Is(err, config.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrConfig", name, err)
		} else if bytes.Contains([]byte(err.Error()), []byte(testPIN)) {
			t.Errorf("%s: error leaks the PIN field: %v", name, err)
		}
	}
}

// BenchmarkSign_1024_2of3 measures one C_SignInit + C_Sign through the token over the
// in-process threshold cluster (two signature shares, combination, verification).
func BenchmarkSign_1024_2of3(b *testing.B) {
	f := newFixture(b, nil)
	h := f.open(true)
	f.login(h)
	_, _, privH := f.genKey(h, true)
	msg := []byte("benchmark")
	for b.Loop() {
		if err := f.tk.SignInit(h, Mechanism{Type: CKM_SHA256_RSA_PKCS}, privH); err != nil {
			b.Fatal(err)
		}
		if _, _, err := f.tk.Sign(h, msg, false, 512); err != nil {
			b.Fatal(err)
		}
	}
}

// C_CreateObject makes RSA public session keys (what pkcs11-provider creates to verify) and
// nothing else.
func TestCreatePublicKeyObject(t *testing.T) {
	f := newFixture(t, nil)
	h := f.open(false) // read-only sessions may create session objects; no login needed
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub := []Attribute{
		{CKA_CLASS, ulong(CKO_PUBLIC_KEY)}, {CKA_KEY_TYPE, ulong(CKK_RSA)}, {CKA_ENCRYPT, []byte{1}},
		{CKA_VERIFY, []byte{1}}, {CKA_WRAP, []byte{1}}, {CKA_MODULUS, priv.N.Bytes()},
		{CKA_PUBLIC_EXPONENT, big.NewInt(int64(priv.E)).Bytes()}, {CKA_TOKEN, []byte{0}},
	}
	oh, err := f.tk.CreateObject(h, pub)
	if err != nil || oh == 0 {
		t.Fatal(oh, err)
	}
	if got := f.pubKey(h, oh); got.N.Cmp(priv.N) != 0 || got.E != priv.E {
		t.Fatal("created key reads back differently")
	}
	if v := f.attr(h, oh, CKA_TOKEN); v[0] != 0 {
		t.Fatal("created key is a token object")
	}
	if v := f.attr(h, oh, CKA_LOCAL); v[0] != 0 {
		t.Fatal("created key claims CKA_LOCAL")
	}
	msg := []byte("verify me")
	d := sha256.Sum256(msg)
	sig, err := rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, d[:])
	if err != nil {
		t.Fatal(err)
	}
	mech := Mechanism{Type: CKM_SHA256_RSA_PKCS}
	if err := f.tk.VerifyInit(h, mech, oh); err != nil {
		t.Fatal(err)
	}
	if err := f.tk.Verify(h, msg, sig); err != nil {
		t.Fatalf("Verify with a created key: %v", err)
	}
	f.tk.VerifyInit(h, mech, oh)
	sig[10] ^= 1
	wantErr(t, f.tk.Verify(h, msg, sig), ErrSignatureInvalid)
	wantErr(t, f.tk.SignInit(h, mech, oh), ErrKeyFunctionNotPermitted)

	mod := func(typ uint, v []byte) []Attribute {
		out := append([]Attribute{}, pub...)
		for i := range out {
			if out[i].Type == typ {
				out[i].Value = v
				return out
			}
		}
		return append(out, Attribute{typ, v})
	}
	for _, tc := range []struct {
		name string
		tmpl []Attribute
		want error
	}{
		{"private key", mod(CKA_CLASS, ulong(CKO_PRIVATE_KEY)), ErrAttributeValueInvalid},
		{"token object", mod(CKA_TOKEN, []byte{1}), ErrAttributeValueInvalid},
		{"private object", mod(CKA_PRIVATE, []byte{1}), ErrAttributeValueInvalid},
		{"EC key", mod(CKA_KEY_TYPE, ulong(3)), ErrAttributeValueInvalid},
		{"no modulus", mod(CKA_MODULUS, nil), ErrAttributeValueInvalid},
		{"even modulus", mod(CKA_MODULUS, append(priv.N.Bytes()[:255:255], 2)), ErrAttributeValueInvalid},
		{"even exponent", mod(CKA_PUBLIC_EXPONENT, []byte{1, 0, 0}), ErrAttributeValueInvalid},
		{"unknown attribute", mod(0x80001234, []byte{1}), ErrAttributeTypeInvalid},
		{"bad bool", mod(CKA_VERIFY, []byte{1, 1}), ErrAttributeValueInvalid},
		{"no class", pub[1:], ErrTemplateIncomplete},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.tk.CreateObject(h, tc.tmpl)
			wantErr(t, err, tc.want)
		})
	}
	// A session object ends with its session.
	if err := f.tk.CloseSession(h); err != nil {
		t.Fatal(err)
	}
	h2 := f.open(false)
	wantErr(t, f.tk.VerifyInit(h2, mech, oh), ErrKeyHandleInvalid)
}

// A one-part C_Sign with a hash mechanism hands the cluster the message (so that nodes with a
// signing policy can check it); a multi-part one and CKM_RSA_PKCS hand it the DigestInfo. A
// refusal by the nodes' policy is ErrFunctionRejected (CKR_FUNCTION_REJECTED).
func TestSignSendsMessage(t *testing.T) {
	f := newFixture(t, nil)
	h := f.open(true)
	f.login(h)
	_, _, privH := f.genKey(h, true)
	msg := []byte("rrsig fields and the rrset")
	di := digestInfo(t, crypto.SHA256, msg)
	sign := func(mech uint, parts ...[]byte) error {
		t.Helper()
		if err := f.tk.SignInit(h, Mechanism{Type: mech}, privH); err != nil {
			t.Fatal(err)
		}
		if len(parts) == 1 {
			_, _, err := f.tk.Sign(h, parts[0], false, 512)
			return err
		}
		for _, p := range parts {
			if err := f.tk.SignUpdate(h, p); err != nil {
				t.Fatal(err)
			}
		}
		_, _, err := f.tk.SignFinal(h, false, 512)
		return err
	}
	for _, tc := range []struct {
		name  string
		mech  uint
		parts [][]byte
		want  scheme.Mechanism
		data  []byte
	}{
		{"one part", CKM_SHA256_RSA_PKCS, [][]byte{msg}, scheme.SHA256RSAPKCS, msg},
		{"multi-part", CKM_SHA256_RSA_PKCS, [][]byte{msg[:5], msg[5:]}, scheme.RSAPKCS, di},
		{"CKM_RSA_PKCS", CKM_RSA_PKCS, [][]byte{di}, scheme.RSAPKCS, di},
	} {
		if err := sign(tc.mech, tc.parts...); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		f.b.mu.Lock()
		mech, data := f.b.lastMech, f.b.lastData
		f.b.mu.Unlock()
		if mech != tc.want || !bytes.Equal(data, tc.data) {
			t.Errorf("%s: the cluster was asked %v over %x", tc.name, mech, data)
		}
	}
	f.b.mu.Lock()
	f.b.refuse = true
	f.b.mu.Unlock()
	wantErr(t, sign(CKM_SHA256_RSA_PKCS, msg), ErrFunctionRejected)
}
