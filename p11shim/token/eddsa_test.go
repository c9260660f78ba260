package token

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tchsm/tchsm/scheme"
)

// edwards25519String is CKA_EC_PARAMS as pkcs11-tool 0.23 sends it: PrintableString "edwards25519".
var edwards25519String = append([]byte{0x13, 0x0c}, "edwards25519"...)

// edTemplates are the templates OpenDNSSEC 2.1's libhsm (hsm_generate_eddsa_key) sends to
// C_GenerateKeyPair, with the curve given as ecParams.
func edTemplates(ecParams []byte) (id []byte, pubT, privT []Attribute) {
	id = make([]byte, 16)
	rand.Read(id)
	label := []byte(fmt.Sprintf("%x", id))
	pubT = []Attribute{
		{CKA_EC_PARAMS, ecParams}, {CKA_LABEL, label}, {CKA_ID, id}, {CKA_KEY_TYPE, ulong(CKK_EC_EDWARDS)},
		{CKA_VERIFY, []byte{1}}, {CKA_ENCRYPT, []byte{0}}, {CKA_WRAP, []byte{0}}, {CKA_TOKEN, []byte{1}},
	}
	privT = []Attribute{
		{CKA_LABEL, label}, {CKA_ID, id}, {CKA_KEY_TYPE, ulong(CKK_EC_EDWARDS)}, {CKA_SIGN, []byte{1}},
		{CKA_DECRYPT, []byte{0}}, {CKA_UNWRAP, []byte{0}}, {CKA_SENSITIVE, []byte{1}},
		{CKA_TOKEN, []byte{1}}, {CKA_PRIVATE, []byte{1}}, {CKA_EXTRACTABLE, []byte{0}},
	}
	return id, pubT, privT
}

var edKeygen = Mechanism{Type: CKM_EC_EDWARDS_KEY_PAIR_GEN}

// genEd generates an Ed25519 key with libhsm's templates on a logged-in RW session.
func (f *fixture) genEd(h uint) (pubH, privH uint) {
	f.t.Helper()
	_, pubT, privT := edTemplates(ed25519OID)
	pubH, privH, err := f.tk.GenerateKeyPair(h, edKeygen, pubT, privT)
	if err != nil {
		f.t.Fatal(err)
	}
	return pubH, privH
}

// edPoint reads CKA_EC_POINT and checks its DER form: 04 20 || 32 bytes.
func (f *fixture) edPoint(h, oh uint) ed25519.PublicKey {
	f.t.Helper()
	v := f.attr(h, oh, CKA_EC_POINT)
	if len(v) != 34 || v[0] != 0x04 || v[1] != 0x20 {
		f.t.Fatalf("CKA_EC_POINT %x is not a DER OCTET STRING of 32 bytes", v)
	}
	return ed25519.PublicKey(v[2:])
}

func TestEdKeygen(t *testing.T) {
	f := newFixture(t, nil)
	h := f.open(true)
	f.login(h)
	for _, mech := range []uint{CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA} {
		for name, params := range map[string][]byte{"OID": ed25519OID, "PrintableString": edwards25519String} {
			t.Run(fmt.Sprintf("%#x/%s", mech, name), func(t *testing.T) {
				id, pubT, privT := edTemplates(params)
				pubH, privH, err := f.tk.GenerateKeyPair(h, Mechanism{Type: mech}, pubT, privT)
				if err != nil {
					t.Fatal(err)
				}
				if got := f.attr(h, pubH, CKA_EC_PARAMS); !bytes.Equal(got, ed25519OID) {
					t.Fatalf("CKA_EC_PARAMS = %x, want the OID", got)
				}
				if kt, _ := DecodeULong(f.attr(h, privH, CKA_KEY_TYPE)); kt != CKK_EC_EDWARDS {
					t.Fatalf("key type %#x", kt)
				}
				// The alias does not leak into the key: it was made by the key generation mechanism.
				if m, _ := DecodeULong(f.attr(h, privH, CKA_KEY_GEN_MECHANISM)); m != CKM_EC_EDWARDS_KEY_PAIR_GEN {
					t.Fatalf("CKA_KEY_GEN_MECHANISM %#x", m)
				}
				pub := f.edPoint(h, pubH)
				f.b.mu.Lock()
				var ck *clusterKey
				for _, k := range f.b.keys {
					if bytes.Equal(k.info.P11ID, id) && bytes.Equal(k.ed.Public().(ed25519.PublicKey), pub) {
						ck = k
					}
				}
				f.b.mu.Unlock()
				if ck == nil || ck.info.Algorithm != scheme.Ed25519FROST || ck.info.Label != fmt.Sprintf("%x", id) {
					t.Fatalf("cluster key %+v", ck)
				}
				if got := f.find(h, Attribute{CKA_ID, id}, Attribute{CKA_CLASS, ulong(CKO_PUBLIC_KEY)}); len(got) != 1 || got[0] != pubH {
					t.Fatalf("public key by id: %v, want [%d]", got, pubH)
				}
			})
		}
	}

	// The curve: Ed25519 only, in either encoding; other curves are not supported, values
	// that name no curve are invalid.
	for _, tc := range []struct {
		name   string
		params []byte
		want   error
	}{
		{"Ed448 OID", []byte{0x06, 0x03, 0x2b, 0x65, 0x71}, ErrCurveNotSupported},
		{"X25519 OID", []byte{0x06, 0x03, 0x2b, 0x65, 0x6e}, ErrCurveNotSupported},
		{"P-256 OID", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}, ErrCurveNotSupported},
		{"edwards448", append([]byte{0x13, 0x0a}, "edwards448"...), ErrCurveNotSupported},
		{"empty", nil, ErrAttributeValueInvalid},
		{"OID with trailing byte", append(append([]byte{}, ed25519OID...), 0), ErrAttributeValueInvalid},
		{"short OID", []byte{0x06, 0x03, 0x2b, 0x65}, ErrAttributeValueInvalid},
		{"UTF8String", append([]byte{0x0c, 0x0c}, "edwards25519"...), ErrAttributeValueInvalid},
		{"explicit parameters", []byte{0x30, 0x03, 0x02, 0x01, 0x01}, ErrAttributeValueInvalid},
		{"raw name", []byte("edwards25519"), ErrAttributeValueInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, pubT, privT := edTemplates(tc.params)
			_, _, err := f.tk.GenerateKeyPair(h, edKeygen, pubT, privT)
			wantErr(t, err, tc.want)
		})
	}

	_, pubT, privT := edTemplates(ed25519OID)
	drop := func(tmpl []Attribute, typ uint) []Attribute {
		var out []Attribute
		for _, a := range tmpl {
			if a.Type != typ {
				out = append(out, a)
			}
		}
		return out
	}
	with := func(tmpl []Attribute, a ...Attribute) []Attribute {
		return append(drop(tmpl, a[0].Type), a...)
	}
	for _, tc := range []struct {
		name        string
		mech        Mechanism
		pubT, privT []Attribute
		want        error
	}{
		{"no curve", edKeygen, drop(pubT, CKA_EC_PARAMS), privT, ErrTemplateIncomplete},
		{"RSA key type", edKeygen, with(pubT, Attribute{CKA_KEY_TYPE, ulong(CKK_RSA)}), privT, ErrTemplateInconsistent},
		{"RSA private key type", edKeygen, pubT, with(privT, Attribute{CKA_KEY_TYPE, ulong(CKK_RSA)}), ErrTemplateInconsistent},
		{"modulus bits", edKeygen, with(pubT, Attribute{CKA_MODULUS_BITS, ulong(2048)}), privT, ErrTemplateInconsistent},
		{"public exponent", edKeygen, with(pubT, Attribute{CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}}), privT, ErrTemplateInconsistent},
		{"given point", edKeygen, with(pubT, Attribute{CKA_EC_POINT, make([]byte, 34)}), privT, ErrTemplateInconsistent},
		{"given private value", edKeygen, pubT, with(privT, Attribute{CKA_VALUE, make([]byte, 32)}), ErrTemplateInconsistent},
		{"other curve in the private template", edKeygen, pubT,
			with(privT, Attribute{CKA_EC_PARAMS, []byte{0x06, 0x03, 0x2b, 0x65, 0x71}}), ErrCurveNotSupported},
		{"session private key", edKeygen, pubT, with(privT, Attribute{CKA_TOKEN, []byte{0}}), ErrTemplateInconsistent},
		{"RSA mechanism", keygen, pubT, privT, ErrTemplateInconsistent},
		{"CKM_EDDSA alias with parameters", Mechanism{Type: CKM_EDDSA, EdDSA: &EdDSAParams{}}, pubT, privT, ErrMechanismParamInvalid},
		{"keygen mechanism with parameters", Mechanism{Type: CKM_EC_EDWARDS_KEY_PAIR_GEN, Param: []byte{0}}, pubT, privT, ErrMechanismParamInvalid},
		{"CKM_EC_KEY_PAIR_GEN", Mechanism{Type: 0x1040}, pubT, privT, ErrMechanismInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := f.tk.GenerateKeyPair(h, tc.mech, tc.pubT, tc.privT)
			wantErr(t, err, tc.want)
		})
	}
	// An RSA template naming a curve is inconsistent.
	_, rsaPub, rsaPriv := odsTemplates(1024, true)
	_, _, err := f.tk.GenerateKeyPair(h, keygen, append(rsaPub, Attribute{CKA_EC_PARAMS, ed25519OID}), rsaPriv)
	wantErr(t, err, ErrTemplateInconsistent)
	// The same curve repeated in the private template, pkcs11-tool style without label or id.
	pubH, privH, err := f.tk.GenerateKeyPair(h, Mechanism{Type: CKM_EDDSA},
		[]Attribute{{CKA_TOKEN, []byte{1}}, {CKA_EC_PARAMS, edwards25519String}, {CKA_VERIFY, []byte{1}}},
		[]Attribute{{CKA_TOKEN, []byte{1}}, {CKA_EC_PARAMS, edwards25519String}, {CKA_SIGN, []byte{1}}, {CKA_DERIVE, []byte{1}}})
	if err != nil || pubH == 0 || privH == 0 {
		t.Fatal(pubH, privH, err)
	}
	// A cluster release that cannot generate Ed25519 keys refuses the request as invalid
	// input: CKR_ATTRIBUTE_VALUE_INVALID, not a device error. A node down is a device error.
	f.b.mu.Lock()
	f.b.refuseEd = true
	f.b.mu.Unlock()
	_, _, err = f.tk.GenerateKeyPair(h, edKeygen, pubT, privT)
	wantErr(t, err, ErrAttributeValueInvalid)
	f.b.mu.Lock()
	f.b.refuseEd = false
	f.b.mu.Unlock()
	f.b.setDown(1, true)
	_, _, err = f.tk.GenerateKeyPair(h, edKeygen, pubT, privT)
	wantErr(t, err, ErrDeviceError)
	f.b.setDown(1, false)
}

// TestEdAttributes reads every attribute type from 0 to 0x300 (and CKA_ALLOWED_MECHANISMS) of
// both objects of an Ed25519 key: the list is exactly the one p11shim/README.md gives.
func TestEdAttributes(t *testing.T) {
	f := newFixture(t, nil)
	h := f.open(true)
	f.login(h)
	pubH, privH := f.genEd(h)
	_, rsaPub, rsaPriv := f.genKey(h, true)

	common := map[uint]string{
		CKA_CLASS: "", CKA_TOKEN: "01", CKA_LABEL: "", CKA_KEY_TYPE: fmt.Sprintf("%x", ulong(CKK_EC_EDWARDS)),
		CKA_ID: "", CKA_START_DATE: "", CKA_END_DATE: "", CKA_SUBJECT: "", CKA_DERIVE: "00", CKA_LOCAL: "01",
		CKA_KEY_GEN_MECHANISM:  fmt.Sprintf("%x", ulong(CKM_EC_EDWARDS_KEY_PAIR_GEN)),
		CKA_ALLOWED_MECHANISMS: fmt.Sprintf("%x", ulong(CKM_EDDSA)), CKA_MODIFIABLE: "00", CKA_COPYABLE: "00",
		CKA_DESTROYABLE: "01", CKA_PUBLIC_KEY_INFO: "", CKA_EC_PARAMS: "06032b6570",
	}
	want := map[bool]map[uint]string{true: {}, false: {}}
	for typ, v := range common {
		want[true][typ], want[false][typ] = v, v
	}
	for typ, v := range map[uint]string{CKA_PRIVATE: "00", CKA_ENCRYPT: "00", CKA_WRAP: "00",
		CKA_VERIFY: "01", CKA_VERIFY_RECOVER: "00", CKA_TRUSTED: "00", CKA_EC_POINT: ""} {
		want[true][typ] = v
	}
	for typ, v := range map[uint]string{CKA_PRIVATE: "01", CKA_SENSITIVE: "01", CKA_ALWAYS_SENSITIVE: "01",
		CKA_NEVER_EXTRACTABLE: "01", CKA_SIGN: "01", CKA_DECRYPT: "00", CKA_SIGN_RECOVER: "00",
		CKA_UNWRAP: "00", CKA_EXTRACTABLE: "00", CKA_WRAP_WITH_TRUSTED: "00", CKA_ALWAYS_AUTHENTICATE: "00"} {
		want[false][typ] = v
	}
	for _, pub := range []bool{true, false} {
		oh := privH
		if pub {
			oh = pubH
		}
		types := []uint{CKA_ALLOWED_MECHANISMS}
		for typ := uint(0); typ < 0x300; typ++ {
			types = append(types, typ)
		}
		for _, typ := range types {
			slots := []AttrSlot{{Type: typ}}
			err := f.tk.GetAttributeValue(h, oh, slots)
			exp, ok := want[pub][typ]
			switch {
			case !pub && typ == CKA_VALUE:
				wantErr(t, err, ErrAttributeSensitive)
				continue
			case !ok:
				if !errors.Is(err, ErrAttributeTypeInvalid) || slots[0].Len != Unavailable {
					t.Errorf("public=%v: attribute %#x: %v, length %d; want CKR_ATTRIBUTE_TYPE_INVALID", pub, typ, err, slots[0].Len)
				}
				continue
			case err != nil:
				t.Errorf("public=%v: attribute %#x: %v", pub, typ, err)
				continue
			}
			if got := fmt.Sprintf("%x", f.attr(h, oh, typ)); exp != "" && got != exp {
				t.Errorf("public=%v: attribute %#x = %s, want %s", pub, typ, got, exp)
			}
		}
	}
	if c, _ := DecodeULong(f.attr(h, pubH, CKA_CLASS)); c != CKO_PUBLIC_KEY {
		t.Fatal(c)
	}
	pub := f.edPoint(h, pubH)
	spki, err := x509.ParsePKIXPublicKey(f.attr(h, privH, CKA_PUBLIC_KEY_INFO))
	if err != nil || !pub.Equal(spki) {
		t.Fatalf("CKA_PUBLIC_KEY_INFO %v %v", spki, err)
	}
	// Length query and short buffer for CKA_EC_POINT.
	slots := []AttrSlot{{Type: CKA_EC_POINT}, {Type: CKA_EC_PARAMS, HasBuf: true, BufLen: 4}}
	wantErr(t, f.tk.GetAttributeValue(h, pubH, slots), ErrBufferTooSmall)
	if slots[0].Len != 34 || slots[1].Len != Unavailable {
		t.Fatalf("%+v", slots)
	}
	// And the RSA key has no EC attributes.
	for _, oh := range []uint{rsaPub, rsaPriv} {
		for _, typ := range []uint{CKA_EC_PARAMS, CKA_EC_POINT} {
			wantErr(t, f.tk.GetAttributeValue(h, oh, []AttrSlot{{Type: typ}}), ErrAttributeTypeInvalid)
		}
	}

	// C_FindObjects by key type and by curve, in either encoding.
	if got := f.find(h, Attribute{CKA_KEY_TYPE, ulong(CKK_EC_EDWARDS)}); len(got) != 2 || got[0] != privH || got[1] != pubH {
		t.Fatalf("by key type: %v, want [%d %d]", got, privH, pubH)
	}
	if got := f.find(h, Attribute{CKA_KEY_TYPE, ulong(CKK_RSA)}); len(got) != 2 || got[0] != rsaPriv {
		t.Fatalf("RSA by key type: %v", got)
	}
	for _, params := range [][]byte{ed25519OID, edwards25519String} {
		if got := f.find(h, Attribute{CKA_CLASS, ulong(CKO_PUBLIC_KEY)}, Attribute{CKA_EC_PARAMS, params}); len(got) != 1 || got[0] != pubH {
			t.Fatalf("by CKA_EC_PARAMS %x: %v", params, got)
		}
	}
	if got := f.find(h, Attribute{CKA_EC_PARAMS, []byte{0x06, 0x03, 0x2b, 0x65, 0x71}}); len(got) != 0 {
		t.Fatalf("Ed448 found %v", got)
	}
	if got := f.find(h, Attribute{CKA_EC_POINT, f.attr(h, pubH, CKA_EC_POINT)}); len(got) != 1 || got[0] != pubH {
		t.Fatalf("by CKA_EC_POINT: %v", got)
	}
	if got := f.find(h, Attribute{CKA_MODULUS_BITS, ulong(1024)}); len(got) != 2 || got[0] != rsaPriv {
		t.Fatalf("by modulus bits: %v", got)
	}
}

func TestEdSign(t *testing.T) {
	f := newFixture(t, nil)
	h := f.open(true)
	f.login(h)
	pubH, privH := f.genEd(h)
	pub := f.edPoint(h, pubH)
	_, rsaPub, rsaPriv := f.genKey(h, true)
	eddsa := Mechanism{Type: CKM_EDDSA}
	// An RRSIG's signed data: RDATA without the signature, then the canonical RRset.
	msg := bytes.Repeat([]byte("\x00\x30\x01\x0f\x00\x00\x0e\x10example."), 7)

	for name, mech := range map[string]Mechanism{"no parameter": eddsa,
		"CK_EDDSA_PARAMS{FALSE, empty}": {Type: CKM_EDDSA, EdDSA: &EdDSAParams{}}} {
		t.Run(name, func(t *testing.T) {
			if err := f.tk.SignInit(h, mech, privH); err != nil {
				t.Fatal(err)
			}
			wantErr(t, f.tk.SignInit(h, mech, privH), ErrOperationActive)
			_, n, err := f.tk.Sign(h, msg, true, 0)
			if err != nil || n != 64 {
				t.Fatal(n, err)
			}
			_, n, err = f.tk.Sign(h, msg, false, 63)
			if !errors.Is(err, ErrBufferTooSmall) || n != 64 {
				t.Fatal(n, err)
			}
			sig, n, err := f.tk.Sign(h, msg, false, 64)
			if err != nil || n != 64 || !ed25519.Verify(pub, msg, sig) {
				t.Fatal(n, err)
			}
			if m, data := f.b.last(); m != scheme.EDDSA || !bytes.Equal(data, msg) {
				t.Fatalf("cluster asked for %v over %x", m, data)
			}
			_, _, err = f.tk.Sign(h, msg, false, 64)
			wantErr(t, err, ErrOperationNotInitialized)

			// Several parts: the token collects the message; the cluster gets all of it.
			if err := f.tk.SignInit(h, mech, privH); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < len(msg); i += 10 {
				if err := f.tk.SignUpdate(h, msg[i:min(i+10, len(msg))]); err != nil {
					t.Fatal(err)
				}
			}
			_, _, err = f.tk.Sign(h, msg, false, 64)
			wantErr(t, err, ErrOperationActive)
			if err := f.tk.SignInit(h, mech, privH); err != nil {
				t.Fatal(err)
			}
			f.tk.SignUpdate(h, msg[:10])
			f.tk.SignUpdate(h, msg[10:])
			if _, n, err := f.tk.SignFinal(h, true, 0); err != nil || n != 64 {
				t.Fatal(n, err)
			}
			if _, _, err := f.tk.SignFinal(h, false, 10); !errors.Is(err, ErrBufferTooSmall) {
				t.Fatal(err)
			}
			sig2, _, err := f.tk.SignFinal(h, false, 64)
			if err != nil || !bytes.Equal(sig2, sig) { // Ed25519 is deterministic
				t.Fatal(err)
			}

			// Verification in software, one part and several.
			if err := f.tk.VerifyInit(h, mech, pubH); err != nil {
				t.Fatal(err)
			}
			if err := f.tk.Verify(h, msg, sig); err != nil {
				t.Fatal(err)
			}
			f.tk.VerifyInit(h, mech, pubH)
			f.tk.VerifyUpdate(h, msg[:3])
			f.tk.VerifyUpdate(h, msg[3:])
			if err := f.tk.VerifyFinal(h, sig); err != nil {
				t.Fatal(err)
			}
			bad := append([]byte{}, sig...)
			bad[40] ^= 1
			f.tk.VerifyInit(h, mech, pubH)
			wantErr(t, f.tk.Verify(h, msg, bad), ErrSignatureInvalid)
			f.tk.VerifyInit(h, mech, pubH)
			wantErr(t, f.tk.Verify(h, msg[1:], sig), ErrSignatureInvalid)
			f.tk.VerifyInit(h, mech, pubH)
			wantErr(t, f.tk.Verify(h, msg, sig[:63]), ErrSignatureLenRange)
			f.tk.VerifyInit(h, mech, pubH)
			wantErr(t, f.tk.Verify(h, msg, append(sig, 0)), ErrSignatureLenRange)
		})
	}

	// The empty message is a message.
	f.tk.SignInit(h, eddsa, privH)
	sig, _, err := f.tk.Sign(h, nil, false, 64)
	if err != nil || !ed25519.Verify(pub, nil, sig) {
		t.Fatal(err)
	}

	// Size bound: 64 KiB, in one part or in several; beyond ends the operation.
	large := make([]byte, maxEdDSAData)
	f.tk.SignInit(h, eddsa, privH)
	if sig, _, err := f.tk.Sign(h, large, false, 64); err != nil || !ed25519.Verify(pub, large, sig) {
		t.Fatal(err)
	}
	f.tk.SignInit(h, eddsa, privH)
	_, _, err = f.tk.Sign(h, append(large, 0), false, 64)
	wantErr(t, err, ErrDataLenRange)
	_, _, err = f.tk.Sign(h, msg, false, 64)
	wantErr(t, err, ErrOperationNotInitialized)
	f.tk.SignInit(h, eddsa, privH)
	if err := f.tk.SignUpdate(h, large[:1000]); err != nil {
		t.Fatal(err)
	}
	if err := f.tk.SignUpdate(h, large[1000:]); err != nil {
		t.Fatal(err)
	}
	wantErr(t, f.tk.SignUpdate(h, []byte{0}), ErrDataLenRange)
	_, _, err = f.tk.SignFinal(h, false, 64)
	wantErr(t, err, ErrOperationNotInitialized)
	f.tk.VerifyInit(h, eddsa, pubH)
	f.tk.VerifyUpdate(h, large)
	wantErr(t, f.tk.VerifyUpdate(h, []byte{0}), ErrDataLenRange)
	wantErr(t, f.tk.VerifyFinal(h, sig), ErrOperationNotInitialized)

	// Parameters: pure Ed25519 only.
	for _, mech := range map[string]Mechanism{
		"prehash":                 {Type: CKM_EDDSA, EdDSA: &EdDSAParams{PHFlag: true}},
		"context":                 {Type: CKM_EDDSA, EdDSA: &EdDSAParams{Context: []byte("dns")}},
		"prehash and context":     {Type: CKM_EDDSA, EdDSA: &EdDSAParams{PHFlag: true, Context: []byte("x")}},
		"raw parameter bytes":     {Type: CKM_EDDSA, Param: make([]byte, 24)},
		"RSA mechanism, EdDSA ps": {Type: CKM_SHA256_RSA_PKCS, EdDSA: &EdDSAParams{}},
	} {
		wantErr(t, f.tk.SignInit(h, mech, privH), ErrMechanismParamInvalid)
		wantErr(t, f.tk.VerifyInit(h, mech, pubH), ErrMechanismParamInvalid)
	}

	// Wrong key type for the mechanism, both ways, for signing and verifying.
	for _, m := range []uint{CKM_RSA_PKCS, CKM_SHA1_RSA_PKCS, CKM_SHA256_RSA_PKCS, CKM_SHA512_RSA_PKCS} {
		wantErr(t, f.tk.SignInit(h, Mechanism{Type: m}, privH), ErrKeyTypeInconsistent)
		wantErr(t, f.tk.VerifyInit(h, Mechanism{Type: m}, pubH), ErrKeyTypeInconsistent)
	}
	wantErr(t, f.tk.SignInit(h, eddsa, rsaPriv), ErrKeyTypeInconsistent)
	wantErr(t, f.tk.VerifyInit(h, eddsa, rsaPub), ErrKeyTypeInconsistent)
	wantErr(t, f.tk.SignInit(h, eddsa, pubH), ErrKeyFunctionNotPermitted)
	wantErr(t, f.tk.VerifyInit(h, eddsa, privH), ErrKeyFunctionNotPermitted)
	wantErr(t, f.tk.SignInit(h, Mechanism{Type: CKM_EC_EDWARDS_KEY_PAIR_GEN}, privH), ErrMechanismInvalid)
	wantErr(t, f.tk.DigestInit(h, eddsa), ErrMechanismInvalid)

	// A signature that does not verify never leaves the token, for either key type.
	f.b.setCorrupt(true)
	f.tk.SignInit(h, eddsa, privH)
	_, _, err = f.tk.Sign(h, msg, false, 64)
	wantErr(t, err, ErrDeviceError)
	f.tk.SignInit(h, Mechanism{Type: CKM_SHA256_RSA_PKCS}, rsaPriv)
	_, _, err = f.tk.Sign(h, msg, false, 512)
	wantErr(t, err, ErrDeviceError)
	f.b.setCorrupt(false)

	// Not enough nodes: a device error with the cause kept.
	f.b.setDown(1, true)
	f.b.setDown(2, true)
	f.tk.SignInit(h, eddsa, privH)
	_, _, err = f.tk.Sign(h, msg, false, 64)
	wantErr(t, err, ErrDeviceError)
	f.b.setDown(1, false)
	f.b.setDown(2, false)

	// The key deleted by another process: the handle becomes invalid.
	f.b.mu.Lock()
	for id, k := range f.b.keys {
		if k.ed != nil {
			delete(f.b.keys, id)
		}
	}
	f.b.mu.Unlock()
	f.tk.SignInit(h, eddsa, privH)
	_, _, err = f.tk.Sign(h, msg, false, 64)
	wantErr(t, err, ErrKeyHandleInvalid)
}

// TestEdRSASideBySide: a key list holding both kinds of key, fetched again, keeps handles
// stable (the token compares public keys of either type when a listing repeats a key).
func TestEdRSASideBySide(t *testing.T) {
	f := newFixture(t, nil)
	h := f.open(true)
	f.login(h)
	pubH, privH := f.genEd(h)
	_, rsaPub, rsaPriv := f.genKey(h, true)
	if err := f.tk.refreshKeys(f.tk.ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	all := f.find(h)
	if len(all) != 4 {
		t.Fatalf("objects %v", all)
	}
	for _, oh := range []uint{pubH, privH, rsaPub, rsaPriv} {
		if _, err := f.tk.ObjectSize(h, oh); err != nil {
			t.Fatalf("handle %d after a new listing: %v", oh, err)
		}
	}
}
