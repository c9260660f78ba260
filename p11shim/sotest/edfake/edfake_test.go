// Package edfake drives libtchsm.so's Ed25519 support through the C ABI: the module is built
// with -tags tchsm_fakebackend (p11shim/fakebackend.go), whose backend holds plain
// crypto/ed25519 keys in a file, because no cluster release in this tree generates Ed25519 keys
// yet. It checks what only the C side can get wrong: CK_EDDSA_PARAMS read from caller memory,
// the DER attributes written into it, length queries, and OpenSC's pkcs11-tool 0.23 as a caller
// in other processes. It is its own package (its own test binary) so that the process loads
// one Go c-shared module only.
package edfake

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/tchsm/tchsm/internal/pin"
	"github.com/tchsm/tchsm/p11shim/sotest/cdrive"
)

// PKCS#11 3.0 values miekg/pkcs11 v1.1.2 (v2.40 headers) lacks.
const (
	ckkECEdwards  = 0x40
	ckmEdKeyGen   = 0x1055
	ckmEdDSA      = 0x1057
	ckrCurveNotOK = 0x140 // CKR_CURVE_NOT_SUPPORTED (v2.40 has it; miekg names it too)
)

var (
	ed25519OID  = []byte{0x06, 0x03, 0x2b, 0x65, 0x70}
	edwardsName = append([]byte{0x13, 0x0c}, "edwards25519"...)
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
		"pkcs11": map[string]any{"token_label": "ed-fake", "user_pin_hash": hash, "key_cache_ttl": "1ms",
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

func TestEd25519ThroughTheModule(t *testing.T) {
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

	// Mechanisms.
	mi, err := p.GetMechanismInfo(slot, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmEdKeyGen, nil)})
	must(t, err)
	if mi.MinKeySize != 256 || mi.MaxKeySize != 256 || mi.Flags != pkcs11.CKF_HW|pkcs11.CKF_GENERATE_KEY_PAIR {
		t.Fatalf("CKM_EC_EDWARDS_KEY_PAIR_GEN %+v", mi)
	}
	mi, err = p.GetMechanismInfo(slot, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmEdDSA, nil)})
	must(t, err)
	if mi.MinKeySize != 256 || mi.MaxKeySize != 256 || mi.Flags != pkcs11.CKF_HW|pkcs11.CKF_SIGN|pkcs11.CKF_VERIFY {
		t.Fatalf("CKM_EDDSA %+v", mi)
	}

	s, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	must(t, err)
	must(t, p.Login(s, pkcs11.CKU_USER, "1234"))

	// Key generation as OpenDNSSEC's libhsm asks (OID) and as GnuTLS 3.7.9 asks (CKM_EDDSA).
	gen := func(mech uint, params []byte, id string) (pkcs11.ObjectHandle, pkcs11.ObjectHandle, error) {
		pubT := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params), pkcs11.NewAttribute(pkcs11.CKA_LABEL, id),
			pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(id)), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		}
		privT := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, id), pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(id)),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true), pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		}
		return p.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, pubT, privT)
	}
	pub, priv, err := gen(ckmEdKeyGen, ed25519OID, "ods")
	must(t, err)
	_, priv2, err := gen(ckmEdDSA, edwardsName, "knot")
	must(t, err)
	_, _, err = gen(ckmEdKeyGen, []byte{0x06, 0x03, 0x2b, 0x65, 0x71}, "ed448")
	wantRV(t, "Ed448", err, ckrCurveNotOK)
	_, _, err = gen(ckmEdKeyGen, []byte{0x13, 0x01}, "broken")
	wantRV(t, "broken CKA_EC_PARAMS", err, pkcs11.CKR_ATTRIBUTE_VALUE_INVALID)

	// Attributes: the DER forms, the RSA attributes absent.
	attrs, err := p.GetAttributeValue(s, pub, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil)})
	must(t, err)
	point := attrs[0].Value
	if len(point) != 34 || point[0] != 0x04 || point[1] != 0x20 || !bytes.Equal(attrs[1].Value, ed25519OID) {
		t.Fatalf("CKA_EC_POINT %x, CKA_EC_PARAMS %x", point, attrs[1].Value)
	}
	edPub := ed25519.PublicKey(point[2:])
	attrs, err = p.GetAttributeValue(s, priv2, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil)})
	must(t, err)
	if !bytes.Equal(attrs[0].Value, ed25519OID) {
		t.Fatalf("private CKA_EC_PARAMS %x, want the OID although the template gave the name", attrs[0].Value)
	}
	_, err = p.GetAttributeValue(s, pub, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil)})
	wantRV(t, "CKA_MODULUS", err, pkcs11.CKR_ATTRIBUTE_TYPE_INVALID)
	_, err = p.GetAttributeValue(s, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
	wantRV(t, "private CKA_EC_POINT", err, pkcs11.CKR_ATTRIBUTE_TYPE_INVALID)

	// Find by key type and curve.
	must(t, p.FindObjectsInit(s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, edwardsName), pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY)}))
	hs, _, err := p.FindObjects(s, 10)
	must(t, err)
	must(t, p.FindObjectsFinal(s))
	if len(hs) != 2 {
		t.Fatalf("found %v, want both public keys", hs)
	}

	// Signing: miekg's C_Sign asks for the length first.
	msg := []byte("\x00\x30\x01\x0f\x00\x00\x0e\x10 an RRSIG's signed data")
	sign := func(param []byte) ([]byte, error) {
		if err := p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmEdDSA, param)}, priv); err != nil {
			return nil, err
		}
		return p.Sign(s, msg)
	}
	sig, err := sign(nil)
	must(t, err)
	if !ed25519.Verify(edPub, msg, sig) {
		t.Fatal("signature does not verify")
	}
	// CK_EDDSA_PARAMS{FALSE, 0, NULL} as bytes (no pointer to pass), then phFlag TRUE, a length
	// with a NULL context, and a parameter of the wrong size.
	size := int(cdrive.EdDSAParamsSize())
	params := make([]byte, size)
	sig2, err := sign(params)
	must(t, err)
	if !bytes.Equal(sig, sig2) {
		t.Fatal("pure Ed25519 with CK_EDDSA_PARAMS{FALSE, empty} signs differently")
	}
	params[0] = 1
	_, err = sign(params)
	wantRV(t, "phFlag TRUE", err, pkcs11.CKR_MECHANISM_PARAM_INVALID)
	params[0] = 0
	params[size/3] = 5 // ulContextDataLen (at offset 8 on LP64, 4 on ILP32) with pContextData NULL
	_, err = sign(params)
	wantRV(t, "context length with a NULL pointer", err, pkcs11.CKR_MECHANISM_PARAM_INVALID)
	_, err = sign(make([]byte, size-1))
	wantRV(t, "short CK_EDDSA_PARAMS", err, pkcs11.CKR_MECHANISM_PARAM_INVALID)
	// A context in caller memory, and an empty one with a pointer.
	if rv := lib.EdDSASignInit(uint(s), uint(priv), false, []byte("dns"), 3, uint(size)); rv != pkcs11.CKR_MECHANISM_PARAM_INVALID {
		t.Fatalf("context \"dns\": %#x", rv)
	}
	if rv := lib.EdDSASignInit(uint(s), uint(priv), false, []byte{}, 0, uint(size)); rv != pkcs11.CKR_OK {
		t.Fatalf("empty context: %#x", rv)
	}
	sig3, err := p.Sign(s, msg)
	must(t, err)
	if !bytes.Equal(sig, sig3) {
		t.Fatal("empty context signs differently")
	}
	// Multi-part, verification, a short buffer, the wrong key type.
	must(t, p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmEdDSA, nil)}, priv))
	must(t, p.SignUpdate(s, msg[:7]))
	must(t, p.SignUpdate(s, msg[7:]))
	sig4, err := p.SignFinal(s)
	must(t, err)
	if !bytes.Equal(sig, sig4) {
		t.Fatal("multi-part signature differs")
	}
	must(t, p.VerifyInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmEdDSA, nil)}, pub))
	must(t, p.Verify(s, msg, sig))
	must(t, p.VerifyInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmEdDSA, nil)}, pub))
	sig[0] ^= 1
	wantRV(t, "bad signature", p.Verify(s, msg, sig), pkcs11.CKR_SIGNATURE_INVALID)
	// A length query, then CKR_BUFFER_TOO_SMALL with the length, then the signature.
	rv, lens, shortSig := lib.ShortBufferMech(uint(s), uint(priv), ckmEdDSA, msg)
	if rv != pkcs11.CKR_OK || lens != [3]uint{64, 64, 64} || !ed25519.Verify(edPub, msg, shortSig) {
		t.Fatalf("short buffer: rv %#x lens %v", rv, lens)
	}
	wantRV(t, "RSA mechanism on an Ed25519 key",
		p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_RSA_PKCS, nil)}, priv), pkcs11.CKR_KEY_TYPE_INCONSISTENT)
	// A garbage pParameter/ulParameterLen (PowerDNS style) on CKM_EDDSA is refused, not read.
	if rvs := lib.GarbageParams(uint(s), uint(priv), true, []uint{ckmEdDSA}); rvs[0] != pkcs11.CKR_MECHANISM_PARAM_INVALID {
		t.Fatalf("garbage CKM_EDDSA parameter: %#x", rvs)
	}

	t.Run("pkcs11-tool", func(t *testing.T) {
		tool, err := exec.LookPath("pkcs11-tool")
		if err != nil {
			t.Skip("pkcs11-tool (opensc) not installed")
		}
		run := func(args ...string) string {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, tool, append([]string{"--module", so, "--login", "--pin", "1234"}, args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("pkcs11-tool %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return string(out)
		}
		// Keys this process made, seen by another; one that process makes, seen here.
		out := run("--list-objects", "--type", "pubkey")
		if !strings.Contains(out, "EC_EDWARDS") || !strings.Contains(out, "042"+"0") || !strings.Contains(out, "06032b6570") {
			t.Fatalf("pkcs11-tool --list-objects:\n%s", out)
		}
		out = run("--keypairgen", "--key-type", "EC:edwards25519", "--id", "e0", "--label", "from-pkcs11-tool")
		t.Logf("pkcs11-tool --keypairgen:\n%s", out)
		must(t, p.FindObjectsInit(s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, []byte{0xe0}),
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY)}))
		hs, _, err := p.FindObjects(s, 10)
		must(t, err)
		must(t, p.FindObjectsFinal(s))
		if len(hs) != 1 {
			t.Fatalf("key made by pkcs11-tool: %v", hs)
		}
		attrs, err := p.GetAttributeValue(s, hs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
		must(t, err)
		// pkcs11-tool signs in another process; the signature verifies here.
		dir := t.TempDir()
		in, sigFile := filepath.Join(dir, "in"), filepath.Join(dir, "sig")
		must(t, os.WriteFile(in, msg, 0o600))
		run("--sign", "--mechanism", "EDDSA", "--id", "e0", "--input-file", in, "--output-file", sigFile)
		sig, err := os.ReadFile(sigFile)
		must(t, err)
		if !ed25519.Verify(ed25519.PublicKey(attrs[0].Value[2:]), msg, sig) {
			t.Fatalf("pkcs11-tool's signature (%d bytes) does not verify", len(sig))
		}
		run("--verify", "--mechanism", "EDDSA", "--id", "e0", "--input-file", in, "--signature-file", sigFile)
	})
}
