// Package ecfake drives libtchsm.so's ECDSA P-256 support (CKK_EC keys, CKM_EC_KEY_PAIR_GEN,
// CKM_ECDSA, CKM_ECDSA_SHA256) through the C ABI with github.com/miekg/pkcs11: the module is
// built with -tags tchsm_fakebackend (p11shim/fakebackend.go), whose backend holds plain
// crypto/ecdsa keys in a file, because the cluster client does not drive the threshold ECDSA
// scheme yet. It is its own package (its own test binary) so that the process loads one Go
// c-shared module only.
package ecfake

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/tchsm/tchsm/internal/pin"
	"github.com/tchsm/tchsm/p11shim/sotest/cdrive"
)

var (
	p256OID    = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
	p384OID    = []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}
	ed25519OID = []byte{0x06, 0x03, 0x2b, 0x65, 0x70}
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantRV(t *testing.T, what string, err error, rv uint) {
	t.Helper()
	var e pkcs11.Error
	if !errors.As(err, &e) || uint(e) != rv {
		t.Fatalf("%s: got %v, want %s", what, err, pkcs11.Error(rv))
	}
}

// setup builds the module with the fake backend and writes a client file for it.
func setup(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	so := filepath.Join(dir, "libtchsm-fake.so")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "tchsm_fakebackend", "-buildmode=c-shared", "-o", so,
		"github.com/tchsm/tchsm/p11shim")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	hash, err := pin.Hash("1234")
	must(t, err)
	cfg, err := json.Marshal(map[string]any{"manifest": "unused.json", "identity": "unused.json",
		"pkcs11": map[string]any{"token_label": "ec-fake", "user_pin_hash": hash, "key_cache_ttl": "1ms",
			"log_file": filepath.Join(dir, "pkcs11.log"), "log_level": "debug"}})
	must(t, err)
	path := filepath.Join(dir, "client.json")
	must(t, os.WriteFile(path, cfg, 0o600))
	t.Setenv("TCHSM_CONFIG", path)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "pkcs11.log"))
			t.Logf("---- pkcs11.log\n%s", b[max(0, len(b)-6000):])
		}
	})
	return so
}

func TestECDSAThroughTheModule(t *testing.T) {
	so := setup(t)
	p := pkcs11.New(so)
	if p == nil {
		t.Fatal("cannot load " + so)
	}
	lib, err := cdrive.Open(so)
	must(t, err)
	must(t, p.Initialize())
	defer p.Finalize()
	slots, err := p.GetSlotList(true)
	must(t, err)
	slot := slots[0]

	// Mechanisms: listed, with the EC flags, because this backend supports ECDSA P-256 keys.
	list, err := p.GetMechanismList(slot)
	must(t, err)
	var types []uint
	for _, m := range list {
		types = append(types, m.Mechanism)
	}
	for _, m := range []uint{pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKM_ECDSA, pkcs11.CKM_ECDSA_SHA256} {
		if !slices.Contains(types, m) {
			t.Fatalf("C_GetMechanismList %#x lacks %#x", types, m)
		}
	}
	ecFlags := uint(pkcs11.CKF_EC_F_P | pkcs11.CKF_EC_NAMEDCURVE | pkcs11.CKF_EC_UNCOMPRESS)
	for m, fl := range map[uint]uint{
		pkcs11.CKM_EC_KEY_PAIR_GEN: pkcs11.CKF_HW | pkcs11.CKF_GENERATE_KEY_PAIR | ecFlags,
		pkcs11.CKM_ECDSA:           pkcs11.CKF_HW | pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY | ecFlags,
		pkcs11.CKM_ECDSA_SHA256:    pkcs11.CKF_HW | pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY | ecFlags,
	} {
		mi, err := p.GetMechanismInfo(slot, []*pkcs11.Mechanism{pkcs11.NewMechanism(m, nil)})
		must(t, err)
		if mi.MinKeySize != 256 || mi.MaxKeySize != 256 || mi.Flags != fl {
			t.Fatalf("C_GetMechanismInfo(%#x) = %+v, want flags %#x", m, mi, fl)
		}
	}
	for _, m := range []uint{pkcs11.CKM_ECDSA_SHA1, pkcs11.CKM_ECDSA_SHA384, pkcs11.CKM_ECDH1_DERIVE} {
		_, err := p.GetMechanismInfo(slot, []*pkcs11.Mechanism{pkcs11.NewMechanism(m, nil)})
		wantRV(t, "an EC mechanism not supported", err, pkcs11.CKR_MECHANISM_INVALID)
	}

	s, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	must(t, err)
	must(t, p.Login(s, pkcs11.CKU_USER, "1234"))

	// Key generation as OpenDNSSEC's libhsm (hsm_generate_ecdsa_key) asks.
	gen := func(pubParams, privParams []byte, id string) (pkcs11.ObjectHandle, pkcs11.ObjectHandle, error) {
		pubT := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, id), pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(id)),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC), pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false), pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		}
		if pubParams != nil {
			pubT = append(pubT, pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, pubParams))
		}
		privT := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, id), pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(id)),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC), pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false), pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		}
		if privParams != nil {
			privT = append(privT, pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, privParams))
		}
		return p.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)}, pubT, privT)
	}
	pub, priv, err := gen(p256OID, nil, "zsk-13")
	must(t, err)
	pub2, priv2, err := gen(p256OID, p256OID, "ksk-13")
	must(t, err)

	// The error codes of v2.40: another curve, none, a malformed one, a mixed-up one.
	_, _, err = gen(p384OID, nil, "p384")
	wantRV(t, "P-384", err, pkcs11.CKR_CURVE_NOT_SUPPORTED)
	_, _, err = gen(ed25519OID, nil, "ed25519 with CKM_EC_KEY_PAIR_GEN")
	wantRV(t, "the Ed25519 OID", err, pkcs11.CKR_CURVE_NOT_SUPPORTED)
	_, _, err = gen(nil, nil, "no curve")
	wantRV(t, "no CKA_EC_PARAMS", err, pkcs11.CKR_TEMPLATE_INCOMPLETE)
	for name, v := range map[string][]byte{
		"truncated OID":   p256OID[:9],
		"trailing bytes":  append(slices.Clone(p256OID), 0),
		"implicitlyCA":    {0x05, 0x00},
		"empty":           {},
		"explicit params": {0x30, 0x03, 0x02, 0x01, 0x01},
	} {
		_, _, err = gen(v, nil, name)
		wantRV(t, name, err, pkcs11.CKR_ATTRIBUTE_VALUE_INVALID)
	}
	_, _, err = gen(p256OID, p384OID, "different curves")
	wantRV(t, "a different curve in the private template", err, pkcs11.CKR_CURVE_NOT_SUPPORTED)

	// Attributes, byte-exact: CKA_EC_PARAMS the OID DER, CKA_EC_POINT 04 41 || 04 x y.
	var ecPub *ecdsa.PublicKey
	for _, h := range []pkcs11.ObjectHandle{pub, priv} {
		attrs, err := p.GetAttributeValue(s, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil),
			pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_GEN_MECHANISM, nil), pkcs11.NewAttribute(pkcs11.CKA_ALLOWED_MECHANISMS, nil)})
		must(t, err)
		if !bytes.Equal(attrs[0].Value, p256OID) {
			t.Fatalf("CKA_EC_PARAMS %x, want %x", attrs[0].Value, p256OID)
		}
		point := attrs[1].Value
		if len(point) != 67 || point[0] != 0x04 || point[1] != 0x41 || point[2] != 0x04 {
			t.Fatalf("CKA_EC_POINT %x is not a DER OCTET STRING of an uncompressed point", point)
		}
		k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point[2:])
		must(t, err)
		if ecPub == nil {
			ecPub = k
		} else if !ecPub.Equal(k) {
			t.Fatal("public and private objects show different points")
		}
		if !bytes.Equal(attrs[2].Value, ulong(pkcs11.CKK_EC)) || !bytes.Equal(attrs[3].Value, ulong(pkcs11.CKM_EC_KEY_PAIR_GEN)) ||
			!bytes.Equal(attrs[4].Value, append(ulong(pkcs11.CKM_ECDSA), ulong(pkcs11.CKM_ECDSA_SHA256)...)) {
			t.Fatalf("CKA_KEY_TYPE %x, CKA_KEY_GEN_MECHANISM %x, CKA_ALLOWED_MECHANISMS %x", attrs[2].Value, attrs[3].Value, attrs[4].Value)
		}
	}
	_, err = p.GetAttributeValue(s, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	wantRV(t, "private CKA_VALUE", err, pkcs11.CKR_ATTRIBUTE_SENSITIVE)
	_, err = p.GetAttributeValue(s, pub, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil)})
	wantRV(t, "CKA_MODULUS", err, pkcs11.CKR_ATTRIBUTE_TYPE_INVALID)

	// Find by key type (and curve): both keys, each as a public and a private object.
	find := func(tmpl ...*pkcs11.Attribute) []pkcs11.ObjectHandle {
		t.Helper()
		must(t, p.FindObjectsInit(s, tmpl))
		hs, _, err := p.FindObjects(s, 100)
		must(t, err)
		must(t, p.FindObjectsFinal(s))
		return hs
	}
	hs := find(pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC))
	slices.Sort(hs)
	want := []pkcs11.ObjectHandle{pub, priv, pub2, priv2}
	slices.Sort(want)
	if !slices.Equal(hs, want) {
		t.Fatalf("CKA_KEY_TYPE=CKK_EC found %v, want %v", hs, want)
	}
	if hs := find(pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC), pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, p256OID),
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY)); len(hs) != 2 {
		t.Fatalf("private P-256 keys: %v", hs)
	}
	if hs := find(pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, ed25519OID)); len(hs) != 0 {
		t.Fatalf("Ed25519 keys: %v", hs)
	}

	// CKM_ECDSA over a SHA-256 digest: 64 bytes r || s that crypto/ecdsa verifies.
	verify := func(digest, sig []byte) {
		t.Helper()
		if len(sig) != 64 || !ecdsa.Verify(ecPub, digest, new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			t.Fatalf("signature %x does not verify", sig)
		}
	}
	digest := sha256.Sum256([]byte("example. 3600 IN DNSKEY 257 3 13 ..."))
	must(t, p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, priv))
	sig, err := p.Sign(s, digest[:]) // miekg asks for the length first (NULL buffer)
	must(t, err)
	verify(digest[:], sig)
	// The length query with a NULL buffer returns 64 and keeps the operation; a short buffer
	// CKR_BUFFER_TOO_SMALL with 64; then the signature.
	rv, lens, shortSig := lib.ShortBufferMech(uint(s), uint(priv), pkcs11.CKM_ECDSA, digest[:])
	if rv != pkcs11.CKR_OK || lens != [3]uint{64, 64, 64} {
		t.Fatalf("length query: rv %#x lens %v", rv, lens)
	}
	verify(digest[:], shortSig)
	// Wrong digest lengths.
	for _, n := range []int{0, 20, 31, 33, 48, 64} {
		must(t, p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, priv))
		_, err := p.Sign(s, make([]byte, n))
		wantRV(t, "CKM_ECDSA over the wrong length", err, pkcs11.CKR_DATA_LEN_RANGE)
	}
	// CKM_ECDSA_SHA256 over a message, in one part and in several.
	msg := []byte("\x00\x0d\x0d\x02 an RRSIG's signed data, hashed by the module")
	h := sha256.Sum256(msg)
	must(t, p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA_SHA256, nil)}, priv))
	sig, err = p.Sign(s, msg)
	must(t, err)
	verify(h[:], sig)
	must(t, p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA_SHA256, nil)}, priv))
	must(t, p.SignUpdate(s, msg[:9]))
	must(t, p.SignUpdate(s, msg[9:]))
	sig2, err := p.SignFinal(s)
	must(t, err)
	verify(h[:], sig2)

	// C_Verify on the token (BIND's dnssec-signzone does it per signature).
	must(t, p.VerifyInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA_SHA256, nil)}, pub))
	must(t, p.Verify(s, msg, sig))
	must(t, p.VerifyInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, pub))
	must(t, p.Verify(s, h[:], sig2))
	bad := slices.Clone(sig)
	bad[40] ^= 1
	must(t, p.VerifyInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, pub))
	wantRV(t, "a bad signature", p.Verify(s, h[:], bad), pkcs11.CKR_SIGNATURE_INVALID)
	must(t, p.VerifyInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, pub))
	wantRV(t, "a 65-byte signature", p.Verify(s, h[:], append(sig, 0)), pkcs11.CKR_SIGNATURE_LEN_RANGE)
	must(t, p.VerifyInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, pub2))
	wantRV(t, "another key's signature", p.Verify(s, h[:], sig), pkcs11.CKR_SIGNATURE_INVALID)

	// Mechanisms and keys that do not go together.
	wantRV(t, "RSA mechanism on an EC key",
		p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_RSA_PKCS, nil)}, priv), pkcs11.CKR_KEY_TYPE_INCONSISTENT)
	wantRV(t, "CKM_ECDSA with the public key",
		p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, pub), pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED)
	wantRV(t, "CKM_ECDSA_SHA1",
		p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA_SHA1, nil)}, priv), pkcs11.CKR_MECHANISM_INVALID)
	// (A parameter given to CKM_ECDSA is not read, as for every mechanism without one: the
	// module ignores pParameter then, for callers such as PowerDNS that leave garbage in it.)
}

func ulong(v uint) []byte {
	b := make([]byte, 8)
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	return b
}
