// Package sotest builds libtchsm.so and drives it like a real caller: through
// github.com/miekg/pkcs11 (as Go programs do), through raw C calls (cdrive: NULL pointers,
// short buffers, fork), and through OpenSC's pkcs11-tool, against a real cluster of node
// processes on RabbitMQ (internal/testcluster).
package sotest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/tchsm/tchsm/internal/testcluster"
	"github.com/tchsm/tchsm/p11shim/sotest/cdrive"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testcluster.RemoveBuilds()
	os.Exit(code)
}

// setPKCS11 merges fields into the "pkcs11" section of a client config file.
func setPKCS11(t *testing.T, path string, fields map[string]any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	sec := map[string]any{}
	if raw, ok := top["pkcs11"]; ok {
		if err := json.Unmarshal(raw, &sec); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range fields {
		sec[k] = v
	}
	raw, err := json.Marshal(sec)
	if err != nil {
		t.Fatal(err)
	}
	top["pkcs11"] = raw
	out, err := json.MarshalIndent(top, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

func isRV(err error, rv uint) bool {
	var e pkcs11.Error
	return errors.As(err, &e) && uint(e) == rv
}

func wantRV(t *testing.T, what string, err error, rv uint) {
	t.Helper()
	if !isRV(err, rv) {
		t.Fatalf("%s: got %v, want %s", what, err, pkcs11.Error(rv))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// odsKeygen generates a key with OpenDNSSEC libhsm's templates (hsm_generate_rsa_key).
func odsKeygen(t *testing.T, p *pkcs11.Ctx, s pkcs11.SessionHandle, bits int, pubToken bool) (id []byte, pub, priv pkcs11.ObjectHandle) {
	t.Helper()
	id, err := p.GenerateRandom(s, 16)
	must(t, err)
	label := hex.EncodeToString(id)
	pubT := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, pubToken),
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, bits),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
	}
	privT := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
	}
	start := time.Now()
	pub, priv, err = p.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)}, pubT, privT)
	must(t, err)
	t.Logf("%d-bit key generated in %v", bits, time.Since(start).Round(time.Millisecond))
	return id, pub, priv
}

func find(t *testing.T, p *pkcs11.Ctx, s pkcs11.SessionHandle, tmpl ...*pkcs11.Attribute) []pkcs11.ObjectHandle {
	t.Helper()
	must(t, p.FindObjectsInit(s, tmpl))
	var all []pkcs11.ObjectHandle
	for {
		hs, _, err := p.FindObjects(s, 100)
		must(t, err)
		if len(hs) == 0 {
			break
		}
		all = append(all, hs...)
	}
	must(t, p.FindObjectsFinal(s))
	return all
}

func publicKey(t *testing.T, p *pkcs11.Ctx, s pkcs11.SessionHandle, o pkcs11.ObjectHandle) *rsa.PublicKey {
	t.Helper()
	attrs, err := p.GetAttributeValue(s, o, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil), pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil)})
	must(t, err)
	return &rsa.PublicKey{N: new(big.Int).SetBytes(attrs[0].Value), E: int(new(big.Int).SetBytes(attrs[1].Value).Int64())}
}

func TestModule(t *testing.T) {
	so := testcluster.Module(t)
	c := testcluster.Start(t, testcluster.Options{K: 3, N: 5, TokenLabel: "ods-tchsm", PIN: "1234"})
	logFile := filepath.Join(c.Dir, "pkcs11.log")
	setPKCS11(t, c.ClientConfig, map[string]any{"sign_timeout": "8s", "log_level": "debug", "serial": "test-1",
		"log_file": logFile})
	t.Setenv("TCHSM_CONFIG", c.ClientConfig)
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("---- pkcs11.log\n%s", b)
		}
	}()

	p := pkcs11.New(so)
	if p == nil {
		t.Fatal("cannot load " + so)
	}
	lib, err := cdrive.Open(so)
	must(t, err)
	if ma, mi := lib.Version(); ma != 2 || mi != 40 {
		t.Fatalf("function list version %d.%d", ma, mi)
	}

	var slot uint
	var rw, ro pkcs11.SessionHandle
	var keyID []byte
	var priv, pub pkcs11.ObjectHandle

	t.Run("Lifecycle", func(t *testing.T) {
		wantRV(t, "C_GetSlotList before C_Initialize", func() error { _, err := p.GetSlotList(true); return err }(), pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED)
		for _, tc := range []struct {
			kind int
			want uint
		}{
			{cdrive.InitReserved, pkcs11.CKR_ARGUMENTS_BAD},
			{cdrive.InitMutexesOnly, pkcs11.CKR_CANT_LOCK},
			{cdrive.InitPartialMutexes, pkcs11.CKR_ARGUMENTS_BAD},
		} {
			if rv := lib.Initialize(tc.kind); rv != tc.want {
				t.Fatalf("C_Initialize kind %d = %#x, want %#x", tc.kind, rv, tc.want)
			}
		}
		// CKF_LIBRARY_CANT_CREATE_OS_THREADS is accepted: p11-kit always sets it.
		for _, kind := range []int{cdrive.InitNULL, cdrive.InitMutexesAndOSLocking, cdrive.InitCantCreateThreads, cdrive.InitP11Kit} {
			if rv := lib.Initialize(kind); rv != pkcs11.CKR_OK {
				t.Fatalf("C_Initialize kind %d = %#x", kind, rv)
			}
			if rv := lib.Finalize(true); rv != pkcs11.CKR_ARGUMENTS_BAD {
				t.Fatalf("C_Finalize(non-NULL) = %#x", rv)
			}
			if rv := lib.Finalize(false); rv != pkcs11.CKR_OK {
				t.Fatalf("C_Finalize = %#x", rv)
			}
		}
		wantRV(t, "C_Finalize twice", p.Finalize(), pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED)
		// miekg passes CKF_OS_LOCKING_OK, as libhsm does. Initialize, finalize, initialize
		// again in one process, as OpenDNSSEC's daemons do.
		must(t, p.Initialize())
		wantRV(t, "C_Initialize twice", p.Initialize(), pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)
		s, err := p.OpenSession(1, pkcs11.CKF_SERIAL_SESSION)
		must(t, err)
		must(t, p.Finalize())
		_, err = p.GetSessionInfo(s)
		wantRV(t, "session after C_Finalize", err, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED)
		must(t, p.Initialize())
		_, err = p.GetSessionInfo(s)
		wantRV(t, "old session after re-initialisation", err, pkcs11.CKR_SESSION_HANDLE_INVALID)
		if rv := lib.Forked(); rv != pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED {
			t.Fatalf("C_GetSlotList in a forked child = %#x", rv)
		}
	})

	t.Run("Info", func(t *testing.T) {
		info, err := p.GetInfo()
		must(t, err)
		if info.CryptokiVersion.Major != 2 || info.CryptokiVersion.Minor != 40 || info.ManufacturerID != "tchsm" {
			t.Fatalf("%+v", info)
		}
		slots, err := p.GetSlotList(true)
		must(t, err)
		if len(slots) != 1 {
			t.Fatalf("slots %v", slots)
		}
		slot = slots[0]
		ti, err := p.GetTokenInfo(slot)
		must(t, err)
		if ti.Label != "ods-tchsm" || ti.ManufacturerID != "tchsm" || ti.SerialNumber != "test-1" {
			t.Fatalf("%+v", ti)
		}
		want := uint(pkcs11.CKF_RNG | pkcs11.CKF_LOGIN_REQUIRED | pkcs11.CKF_USER_PIN_INITIALIZED | pkcs11.CKF_TOKEN_INITIALIZED)
		if ti.Flags != want {
			t.Fatalf("token flags %#x, want %#x", ti.Flags, want)
		}
		_, err = p.GetTokenInfo(slot + 1)
		wantRV(t, "bad slot", err, pkcs11.CKR_SLOT_ID_INVALID)
		ms, err := p.GetMechanismList(slot)
		must(t, err)
		got := map[uint]bool{}
		for _, m := range ms {
			got[m.Mechanism] = true
		}
		for _, m := range []uint{pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11.CKM_RSA_PKCS, pkcs11.CKM_SHA1_RSA_PKCS,
			pkcs11.CKM_SHA224_RSA_PKCS, pkcs11.CKM_SHA256_RSA_PKCS, pkcs11.CKM_SHA384_RSA_PKCS, pkcs11.CKM_SHA512_RSA_PKCS,
			pkcs11.CKM_SHA_1, pkcs11.CKM_SHA224, pkcs11.CKM_SHA256, pkcs11.CKM_SHA384, pkcs11.CKM_SHA512,
			0x1055, 0x1057} { // CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA (PKCS#11 3.0)
			if !got[m] {
				t.Fatalf("mechanism %#x missing", m)
			}
		}
		if len(ms) != 14 {
			t.Fatalf("%d mechanisms", len(ms))
		}
		// The cluster client does not drive ECDSA P-256 keys yet: no EC mechanism is offered.
		for _, m := range []uint{pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKM_ECDSA, pkcs11.CKM_ECDSA_SHA256} {
			_, err := p.GetMechanismInfo(slot, []*pkcs11.Mechanism{pkcs11.NewMechanism(m, nil)})
			wantRV(t, "an EC mechanism with the cluster client", err, pkcs11.CKR_MECHANISM_INVALID)
		}
		mi, err := p.GetMechanismInfo(slot, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)})
		must(t, err)
		if mi.MinKeySize != 1024 || mi.MaxKeySize != 4096 || mi.Flags != pkcs11.CKF_HW|pkcs11.CKF_GENERATE_KEY_PAIR {
			t.Fatalf("%+v", mi)
		}
		mi, err = p.GetMechanismInfo(slot, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_RSA_PKCS, nil)})
		must(t, err)
		if mi.Flags != pkcs11.CKF_HW|pkcs11.CKF_SIGN|pkcs11.CKF_VERIFY {
			t.Fatalf("%+v", mi)
		}
		_, err = p.GetMechanismInfo(slot, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)})
		wantRV(t, "ECDSA", err, pkcs11.CKR_MECHANISM_INVALID)
	})

	t.Run("Login", func(t *testing.T) {
		rw, err = p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		must(t, err)
		ro, err = p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
		must(t, err)
		_, err = p.OpenSession(slot, pkcs11.CKF_RW_SESSION)
		wantRV(t, "no CKF_SERIAL_SESSION", err, pkcs11.CKR_SESSION_PARALLEL_NOT_SUPPORTED)
		wantRV(t, "wrong PIN", p.Login(rw, pkcs11.CKU_USER, "4321"), pkcs11.CKR_PIN_INCORRECT)
		wantRV(t, "SO", p.Login(rw, pkcs11.CKU_SO, "1234"), pkcs11.CKR_USER_TYPE_INVALID)
		must(t, p.Login(rw, pkcs11.CKU_USER, "1234"))
		wantRV(t, "second login", p.Login(ro, pkcs11.CKU_USER, "1234"), pkcs11.CKR_USER_ALREADY_LOGGED_IN)
		// libhsm's worker sessions never log in and expect CKS_RW_USER_FUNCTIONS.
		w, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		must(t, err)
		si, err := p.GetSessionInfo(w)
		must(t, err)
		if si.State != pkcs11.CKS_RW_USER_FUNCTIONS || si.Flags != pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION {
			t.Fatalf("%+v", si)
		}
		si, err = p.GetSessionInfo(ro)
		must(t, err)
		if si.State != pkcs11.CKS_RO_USER_FUNCTIONS {
			t.Fatalf("%+v", si)
		}
		must(t, p.CloseSession(w))
		wantRV(t, "closed session", p.CloseSession(w), pkcs11.CKR_SESSION_HANDLE_INVALID)
		r1, err := p.GenerateRandom(ro, 64)
		must(t, err)
		r2, err := p.GenerateRandom(ro, 64)
		must(t, err)
		if len(r1) != 64 || bytes.Equal(r1, r2) {
			t.Fatal("C_GenerateRandom")
		}
		wantRV(t, "C_SeedRandom", p.SeedRandom(ro, []byte{1, 2}), pkcs11.CKR_RANDOM_SEED_NOT_SUPPORTED)
	})

	t.Run("KeygenOpenDNSSEC", func(t *testing.T) {
		// <SkipPublicKey/>: a session public key, destroyed at once.
		id, pubS, privS := odsKeygen(t, p, rw, 2048, false)
		keyID, priv = id, privS
		must(t, p.DestroyObject(rw, pubS))
		hs := find(t, p, rw, pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_ID, id))
		if len(hs) != 1 || hs[0] != privS {
			t.Fatalf("find by class+id: %v, want %d", hs, privS)
		}
		pk := publicKey(t, p, rw, priv)
		if pk.N.BitLen() != 2048 || pk.E != 65537 {
			t.Fatalf("%d bits e=%d", pk.N.BitLen(), pk.E)
		}
		attrs, err := p.GetAttributeValue(rw, priv, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, nil), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil),
			pkcs11.NewAttribute(pkcs11.CKA_ID, nil), pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil),
			pkcs11.NewAttribute(pkcs11.CKA_ALWAYS_AUTHENTICATE, nil), pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil), pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, nil)})
		must(t, err)
		if !bytes.Equal(attrs[2].Value, id) || string(attrs[3].Value) != hex.EncodeToString(id) ||
			attrs[4].Value[0] != 0 || attrs[5].Value[0] != 1 || attrs[6].Value[0] != 0 {
			t.Fatalf("attributes %v", attrs)
		}
		// The token public key object of the same key.
		hs = find(t, p, ro, pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY), pkcs11.NewAttribute(pkcs11.CKA_ID, id))
		if len(hs) != 1 {
			t.Fatalf("public key objects %v", hs)
		}
		pub = hs[0]
		if !publicKey(t, p, ro, pub).Equal(pk) {
			t.Fatal("public key object differs")
		}
		// Without SkipPublicKey, a 1024-bit key.
		_, pubT, _ := odsKeygen(t, p, rw, 1024, true)
		v, err := p.GetAttributeValue(rw, pubT, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, nil)})
		must(t, err)
		if v[0].Value[0] != 1 {
			t.Fatal("token public key says CKA_TOKEN=FALSE")
		}
		// Key generation on a read-only session.
		_, _, err = p.GenerateKeyPair(ro, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)},
			[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, 1024)}, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true)})
		wantRV(t, "read-only keygen", err, pkcs11.CKR_SESSION_READ_ONLY)
		_, _, err = p.GenerateKeyPair(rw, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)},
			[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, 512)}, nil)
		wantRV(t, "512 bits", err, pkcs11.CKR_KEY_SIZE_RANGE)
		// ECDSA P-256 (DNSSEC algorithm 13): not offered by the cluster client yet.
		_, _, err = p.GenerateKeyPair(rw, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)},
			[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07})}, nil)
		wantRV(t, "CKM_EC_KEY_PAIR_GEN", err, pkcs11.CKR_MECHANISM_INVALID)
	})

	t.Run("Attributes", func(t *testing.T) {
		rv, lens, mod := lib.MixedAttributes(uint(ro), uint(priv))
		if rv != pkcs11.CKR_ATTRIBUTE_SENSITIVE && rv != pkcs11.CKR_ATTRIBUTE_TYPE_INVALID && rv != pkcs11.CKR_BUFFER_TOO_SMALL {
			t.Fatalf("rv %#x", rv)
		}
		unavailable := ^uint(0)
		if lens[0] != 256 || lens[1] != unavailable || lens[2] != unavailable || lens[3] != 32 || lens[4] != unavailable {
			t.Fatalf("lengths %v", lens)
		}
		if !bytes.Equal(mod, publicKey(t, p, ro, priv).N.Bytes()) {
			t.Fatal("modulus not filled in alongside failing entries")
		}
		_, err := p.GetAttributeValue(ro, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_PRIVATE_EXPONENT, nil)})
		wantRV(t, "private exponent", err, pkcs11.CKR_ATTRIBUTE_SENSITIVE)
		_, err = p.GetAttributeValue(ro, 0, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil)})
		wantRV(t, "handle 0", err, pkcs11.CKR_OBJECT_HANDLE_INVALID)
		// Enumeration the way generic tools do it: {CKA_CLASS} only.
		if hs := find(t, p, ro, pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY)); len(hs) < 2 {
			t.Fatalf("private keys %v", hs)
		}
		if hs := find(t, p, ro, pkcs11.NewAttribute(pkcs11.CKA_LABEL, hex.EncodeToString(keyID))); len(hs) != 2 {
			t.Fatalf("by label %v", hs)
		}
		if hs := find(t, p, ro, pkcs11.NewAttribute(0x7777, []byte{1})); len(hs) != 0 {
			t.Fatalf("unknown attribute matched %v", hs)
		}
	})

	msg := []byte("www.example. 3600 IN A 192.0.2.1")
	t.Run("Sign", func(t *testing.T) {
		pk := publicKey(t, p, ro, priv)
		h256 := sha256.Sum256(msg)
		di256 := append([]byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}, h256[:]...)
		for _, tc := range []struct {
			mech uint
			hash crypto.Hash
		}{
			{pkcs11.CKM_RSA_PKCS, 0}, {pkcs11.CKM_SHA1_RSA_PKCS, crypto.SHA1}, {pkcs11.CKM_SHA224_RSA_PKCS, crypto.SHA224},
			{pkcs11.CKM_SHA256_RSA_PKCS, crypto.SHA256}, {pkcs11.CKM_SHA384_RSA_PKCS, crypto.SHA384}, {pkcs11.CKM_SHA512_RSA_PKCS, crypto.SHA512},
		} {
			mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(tc.mech, nil)}
			data := msg
			if tc.hash == 0 {
				data = di256 // libhsm: DigestInfo made by the caller, CKM_RSA_PKCS
			}
			must(t, p.SignInit(ro, mech, priv))
			sig, err := p.Sign(ro, data) // a NULL-buffer length query, then the signature
			must(t, err)
			var digest []byte
			h := tc.hash
			if h == 0 {
				h, digest = crypto.SHA256, h256[:]
			} else {
				hh := h.New()
				hh.Write(msg)
				digest = hh.Sum(nil)
			}
			if err := rsa.VerifyPKCS1v15(pk, h, digest, sig); err != nil {
				t.Fatalf("mechanism %#x: %v", tc.mech, err)
			}
			// The token verifies too.
			must(t, p.VerifyInit(ro, mech, pub))
			must(t, p.Verify(ro, data, sig))
			sig[0] ^= 0x40
			must(t, p.VerifyInit(ro, mech, pub))
			wantRV(t, "bad signature", p.Verify(ro, data, sig), pkcs11.CKR_SIGNATURE_INVALID)
			// Multi-part.
			if tc.hash != 0 {
				must(t, p.SignInit(ro, mech, priv))
				must(t, p.SignUpdate(ro, msg[:7]))
				must(t, p.SignUpdate(ro, msg[7:]))
				sig2, err := p.SignFinal(ro)
				must(t, err)
				if err := rsa.VerifyPKCS1v15(pk, h, digest, sig2); err != nil {
					t.Fatal(err)
				}
			}
		}
		// Short buffer keeps the operation; then the signature comes.
		rv, lens, sig := lib.ShortBuffer(uint(ro), uint(priv), msg)
		if rv != pkcs11.CKR_OK || lens != [3]uint{256, 256, 256} {
			t.Fatalf("rv %#x lens %v", rv, lens)
		}
		if err := rsa.VerifyPKCS1v15(pk, crypto.SHA256, h256[:], sig); err != nil {
			t.Fatal(err)
		}
		// Errors.
		wantRV(t, "sign with a public key", p.SignInit(ro, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)}, pub), pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED)
		wantRV(t, "ECDSA", p.SignInit(ro, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, priv), pkcs11.CKR_MECHANISM_INVALID)
		wantRV(t, "bad key", p.SignInit(ro, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)}, 99999), pkcs11.CKR_KEY_HANDLE_INVALID)
		must(t, p.SignInit(ro, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)}, priv))
		wantRV(t, "second init", p.SignInit(ro, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)}, priv), pkcs11.CKR_OPERATION_ACTIVE)
		_, err := p.Sign(ro, make([]byte, 246))
		wantRV(t, "too long", err, pkcs11.CKR_DATA_LEN_RANGE)
		_, err = p.Sign(ro, msg)
		wantRV(t, "after failure", err, pkcs11.CKR_OPERATION_NOT_INITIALIZED)
	})

	t.Run("Digest", func(t *testing.T) {
		for m, want := range map[uint][]byte{
			pkcs11.CKM_SHA_1:  func() []byte { s := sha1.Sum(msg); return s[:] }(),
			pkcs11.CKM_SHA224: func() []byte { s := sha256.Sum224(msg); return s[:] }(),
			pkcs11.CKM_SHA256: func() []byte { s := sha256.Sum256(msg); return s[:] }(),
			pkcs11.CKM_SHA384: func() []byte { s := sha512.Sum384(msg); return s[:] }(),
			pkcs11.CKM_SHA512: func() []byte { s := sha512.Sum512(msg); return s[:] }(),
		} {
			must(t, p.DigestInit(ro, []*pkcs11.Mechanism{pkcs11.NewMechanism(m, nil)}))
			got, err := p.Digest(ro, msg)
			must(t, err)
			if !bytes.Equal(got, want) {
				t.Fatalf("digest %#x", m)
			}
		}
	})

	t.Run("BadArguments", func(t *testing.T) {
		s, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
		must(t, err)
		rvs := lib.Nulls(uint(s), uint(priv))
		bad := uint(pkcs11.CKR_ARGUMENTS_BAD)
		ok, ended := uint(pkcs11.CKR_OK), uint(pkcs11.CKR_OPERATION_NOT_INITIALIZED)
		want := []uint{bad, bad, bad, bad, bad, bad, bad, ok, bad, bad, bad, bad, bad, bad, pkcs11.CKR_BUFFER_TOO_SMALL, 1,
			// C_SignInit works again: the NULL length of call 8 ended the signature of call 7.
			// NULL arguments end C_Sign, C_Digest, C_DigestFinal and C_SignUpdate operations.
			ok, bad, ended, ok, bad, ended, ok, bad, ended, ok, bad, ended}
		for i := range want {
			if rvs[i] != want[i] {
				t.Errorf("call %d: rv %#x, want %#x", i, rvs[i], want[i])
			}
		}
		must(t, p.CloseSession(s))

		// Parameterless mechanisms with pParameter/ulParameterLen pointing nowhere (PowerDNS's
		// C_DigestInit): the parameter is not read, the operation works.
		s, err = p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
		must(t, err)
		for _, c := range []struct {
			sign  bool
			mechs []uint
		}{
			{false, []uint{pkcs11.CKM_SHA_1, pkcs11.CKM_SHA224, pkcs11.CKM_SHA256, pkcs11.CKM_SHA384, pkcs11.CKM_SHA512}},
			{true, []uint{pkcs11.CKM_RSA_PKCS, pkcs11.CKM_SHA1_RSA_PKCS, pkcs11.CKM_SHA224_RSA_PKCS, pkcs11.CKM_SHA256_RSA_PKCS,
				pkcs11.CKM_SHA384_RSA_PKCS, pkcs11.CKM_SHA512_RSA_PKCS}},
		} {
			rvs := lib.GarbageParams(uint(s), uint(priv), c.sign, c.mechs)
			for i, m := range c.mechs {
				if rvs[2*i] != pkcs11.CKR_OK || rvs[2*i+1] != pkcs11.CKR_OK {
					t.Errorf("mechanism %#x with a garbage parameter: init %#x, finish %#x", m, rvs[2*i], rvs[2*i+1])
				}
			}
		}
		must(t, p.CloseSession(s))
		rvs = lib.Unsupported(uint(ro))
		// C_CreateObject makes RSA public session keys only: an empty template is incomplete.
		// C_SetPIN changes the PIN on the nodes, in a read/write session only.
		want = []uint{pkcs11.CKR_FUNCTION_NOT_SUPPORTED, pkcs11.CKR_FUNCTION_NOT_SUPPORTED, pkcs11.CKR_SESSION_READ_ONLY,
			pkcs11.CKR_TEMPLATE_INCOMPLETE, pkcs11.CKR_FUNCTION_NOT_SUPPORTED, pkcs11.CKR_FUNCTION_NOT_SUPPORTED,
			pkcs11.CKR_FUNCTION_NOT_SUPPORTED, pkcs11.CKR_FUNCTION_NOT_PARALLEL}
		for i := range want {
			if rvs[i] != want[i] {
				t.Errorf("unsupported call %d: rv %#x, want %#x", i, rvs[i], want[i])
			}
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		pk := publicKey(t, p, ro, priv)
		const workers, each = 16, 8
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		start := time.Now()
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
				if err != nil {
					errs <- err
					return
				}
				defer p.CloseSession(s)
				for i := range each {
					m := []byte(fmt.Sprintf("%d/%d", w, i))
					if err := p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_RSA_PKCS, nil)}, priv); err != nil {
						errs <- err
						return
					}
					sig, err := p.Sign(s, m)
					if err != nil {
						errs <- err
						return
					}
					d := sha256.Sum256(m)
					if err := rsa.VerifyPKCS1v15(pk, crypto.SHA256, d[:], sig); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		el := time.Since(start)
		t.Logf("%d signatures (2048-bit, 3 of 5) from %d sessions in %v: %.0f/s", workers*each, workers, el.Round(time.Millisecond),
			float64(workers*each)/el.Seconds())
	})

	t.Run("NodeFailures", func(t *testing.T) {
		sign := func() error {
			if err := p.SignInit(ro, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_RSA_PKCS, nil)}, priv); err != nil {
				return err
			}
			_, err := p.Sign(ro, msg)
			return err
		}
		c.KillNode(1)
		c.KillNode(2)
		must(t, sign()) // 3 of 5 left
		c.KillNode(3)
		start := time.Now()
		err := sign()
		wantRV(t, "2 of 5 nodes", err, pkcs11.CKR_DEVICE_ERROR)
		if el := time.Since(start); el > 12*time.Second {
			t.Fatalf("failure took %v (sign_timeout 8s)", el)
		}
		c.StartNode(3)
		c.WaitUp(3, 30*time.Second)
		must(t, sign())
		c.StartNode(1)
		c.StartNode(2)
		c.WaitUp(5, 60*time.Second)
	})

	t.Run("OtherProcess", func(t *testing.T) {
		tool, err := exec.LookPath("pkcs11-tool")
		if err != nil {
			t.Skip("pkcs11-tool (opensc) not installed")
		}
		run := func(timeout time.Duration, args ...string) ([]byte, error) {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			start := time.Now()
			out, err := exec.CommandContext(ctx, tool, append([]string{"--module", so}, args...)...).CombinedOutput()
			t.Logf("pkcs11-tool %s: %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
			return out, err
		}
		out, err := run(30*time.Second, "--login", "--pin", "1234", "--list-objects",
			"--type", "privkey")
		if err != nil {
			t.Fatalf("pkcs11-tool --list-objects: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), hex.EncodeToString(keyID)) {
			t.Fatalf("key %x not listed by another process:\n%s", keyID, out)
		}
		// A key generated by another process is found here.
		out, err = run(60*time.Second, "--login", "--pin", "1234", "--keypairgen",
			"--key-type", "rsa:1024", "--id", "c0ffee", "--label", "from-pkcs11-tool")
		if err != nil {
			t.Fatalf("pkcs11-tool --keypairgen: %v\n%s", err, out)
		}
		hs := find(t, p, ro, pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_ID, []byte{0xc0, 0xff, 0xee}))
		if len(hs) != 1 {
			t.Fatalf("key made by pkcs11-tool not found: %v", hs)
		}
		// pkcs11-tool's self test over every key.
		out, err = run(180*time.Second, "--login", "--pin", "1234", "--test")
		t.Logf("pkcs11-tool --test:\n%s", out)
		if err != nil {
			t.Fatalf("pkcs11-tool --test: %v", err)
		}
		if !strings.Contains(string(out), "No errors") || strings.Contains(string(out), "Signatures: not implemented") {
			t.Fatal("pkcs11-tool --test did not run its signature tests cleanly")
		}
	})

	t.Run("Destroy", func(t *testing.T) {
		wantRV(t, "destroy on a read-only session", p.DestroyObject(ro, priv), pkcs11.CKR_SESSION_READ_ONLY)
		wantRV(t, "destroy a token public key alone", p.DestroyObject(rw, pub), pkcs11.CKR_ACTION_PROHIBITED)
		// libhsm's hsm_remove_key: private key, then public key.
		must(t, p.DestroyObject(rw, priv))
		must(t, p.DestroyObject(rw, pub))
		if hs := find(t, p, rw, pkcs11.NewAttribute(pkcs11.CKA_ID, keyID)); len(hs) != 0 {
			t.Fatalf("destroyed key still found: %v", hs)
		}
		keys, err := c.Client().Keys(context.Background())
		must(t, err)
		for _, k := range keys {
			if bytes.Equal(k.P11ID, keyID) {
				t.Fatal("key still in the cluster")
			}
		}
		wantRV(t, "sign with a destroyed key", p.SignInit(rw, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)}, priv), pkcs11.CKR_KEY_HANDLE_INVALID)
	})

	t.Run("Logout", func(t *testing.T) {
		must(t, p.Logout(ro))
		wantRV(t, "logout twice", p.Logout(rw), pkcs11.CKR_USER_NOT_LOGGED_IN)
		if hs := find(t, p, rw, pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY)); len(hs) != 0 {
			t.Fatalf("private keys visible after logout: %v", hs)
		}
		must(t, p.CloseAllSessions(slot))
		must(t, p.Finalize())
	})
}
