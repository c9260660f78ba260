package token

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"math/big"
	"slices"
	"testing"

	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/scheme"
)

// newECFixture is newFixture over a backend set up by mod before the Token sees it (whether it
// supports ECDSA P-256 keys is read once, by New).
func newECFixture(t *testing.T, mod func(*clusterBackend)) *fixture {
	t.Helper()
	b := newClusterBackend(2, 3)
	mod(b)
	tk, err := New(config.PKCS11{TokenLabel: "test-token", Serial: "42", UserPINHash: testPINHash(t)}, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tk.Close() })
	return &fixture{t: t, tk: tk, b: b}
}

// ecTemplates are the templates OpenDNSSEC 2.1's libhsm (hsm_generate_ecdsa_key) sends.
func ecTemplates(ecParams []byte) (pubT, privT []Attribute) {
	id := []byte("0123456789abcdef")
	pubT = []Attribute{{CKA_LABEL, []byte("k")}, {CKA_ID, id}, {CKA_KEY_TYPE, ulong(CKK_EC)},
		{CKA_VERIFY, []byte{1}}, {CKA_ENCRYPT, []byte{0}}, {CKA_WRAP, []byte{0}}, {CKA_TOKEN, []byte{1}}}
	if ecParams != nil {
		pubT = append(pubT, Attribute{CKA_EC_PARAMS, ecParams})
	}
	privT = []Attribute{{CKA_LABEL, []byte("k")}, {CKA_ID, id}, {CKA_KEY_TYPE, ulong(CKK_EC)},
		{CKA_SIGN, []byte{1}}, {CKA_SENSITIVE, []byte{1}}, {CKA_TOKEN, []byte{1}}, {CKA_PRIVATE, []byte{1}}}
	return pubT, privT
}

var ecKeygen = Mechanism{Type: CKM_EC_KEY_PAIR_GEN}

// TestECMechanismsOffered: the EC mechanisms exist only for a backend that supports ECDSA P-256
// keys; RSA and Ed25519 are offered as before either way.
func TestECMechanismsOffered(t *testing.T) {
	ecMechs := []uint{CKM_EC_KEY_PAIR_GEN, CKM_ECDSA, CKM_ECDSA_SHA256}
	for _, ec := range []bool{false, true} {
		f := newECFixture(t, func(b *clusterBackend) { b.ecdsa = ec })
		list, err := f.tk.Mechanisms(SlotID)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ecMechs {
			if slices.Contains(list, m) != ec {
				t.Fatalf("EC support %v: C_GetMechanismList %#x", ec, list)
			}
			_, err := f.tk.Mechanism(SlotID, m)
			if ec != (err == nil) || (!ec && !errors.Is(err, ErrMechanismInvalid)) {
				t.Fatalf("EC support %v: C_GetMechanismInfo(%#x): %v", ec, m, err)
			}
		}
		for _, m := range []uint{CKM_RSA_PKCS, CKM_EDDSA, CKM_EC_EDWARDS_KEY_PAIR_GEN} {
			if !slices.Contains(list, m) {
				t.Fatalf("EC support %v: %#x missing", ec, m)
			}
		}
		if want := len(mechanisms) - 3; !ec && len(list) != want {
			t.Fatalf("without EC: %d mechanisms, want %d", len(list), want)
		}
		h := f.open(true)
		f.login(h)
		pubT, privT := ecTemplates(p256OID)
		_, _, err = f.tk.GenerateKeyPair(h, ecKeygen, pubT, privT)
		if ec != (err == nil) || (!ec && !errors.Is(err, ErrMechanismInvalid)) {
			t.Fatalf("EC support %v: C_GenerateKeyPair: %v", ec, err)
		}
	}
	// A backend that lists the algorithm but cannot make its keys yet (the cluster client):
	// CKR_MECHANISM_INVALID, not a device error.
	f := newECFixture(t, func(b *clusterBackend) { b.ecNotWired = true })
	h := f.open(true)
	f.login(h)
	pubT, privT := ecTemplates(p256OID)
	_, _, err := f.tk.GenerateKeyPair(h, ecKeygen, pubT, privT)
	if !errors.Is(err, ErrMechanismInvalid) || !errors.Is(err, scheme.ErrNotSupported) {
		t.Fatalf("not wired: %v", err)
	}
}

func TestECKeysAndSigning(t *testing.T) {
	f := newECFixture(t, func(b *clusterBackend) { b.ecdsa = true })
	h := f.open(true)
	f.login(h)

	// Templates: the curve named, missing, malformed, another curve, the other EC key type's.
	for name, c := range map[string]struct {
		params []byte
		want   error
	}{
		"none":           {nil, ErrTemplateIncomplete},
		"P-384":          {[]byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}, ErrCurveNotSupported},
		"Ed25519 OID":    {ed25519OID, ErrCurveNotSupported},
		"edwards25519":   {edwards25519String, ErrCurveNotSupported},
		"short":          {p256OID[:5], ErrAttributeValueInvalid},
		"implicitlyCA":   {[]byte{0x05, 0x00}, ErrAttributeValueInvalid},
		"prime256v1 str": {append([]byte{0x13, 0x0a}, "prime256v1"...), ErrCurveNotSupported},
	} {
		pubT, privT := ecTemplates(c.params)
		if _, _, err := f.tk.GenerateKeyPair(h, ecKeygen, pubT, privT); !errors.Is(err, c.want) {
			t.Fatalf("%s: %v, want %v", name, err, c.want)
		}
	}
	// The P-256 OID with the Ed25519 mechanism is refused the same way.
	_, pubT, privT := edTemplates(p256OID)
	if _, _, err := f.tk.GenerateKeyPair(h, edKeygen, pubT, privT); !errors.Is(err, ErrCurveNotSupported) {
		t.Fatalf("P-256 with CKM_EC_EDWARDS_KEY_PAIR_GEN: %v", err)
	}
	pubT, privT = ecTemplates(p256OID)
	pubT = append(pubT, Attribute{CKA_MODULUS_BITS, ulong(2048)})
	if _, _, err := f.tk.GenerateKeyPair(h, ecKeygen, pubT, privT); !errors.Is(err, ErrTemplateInconsistent) {
		t.Fatalf("CKA_MODULUS_BITS for an EC key: %v", err)
	}

	pubT, privT = ecTemplates(p256OID)
	pubH, privH, err := f.tk.GenerateKeyPair(h, ecKeygen, pubT, privT)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.attr(h, pubH, CKA_EC_PARAMS); !bytes.Equal(got, p256OID) {
		t.Fatalf("CKA_EC_PARAMS %x", got)
	}
	point := f.attr(h, privH, CKA_EC_POINT)
	if len(point) != 67 || point[0] != 0x04 || point[1] != 0x41 || !bytes.Equal(point, f.attr(h, pubH, CKA_EC_POINT)) {
		t.Fatalf("CKA_EC_POINT %x", point)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point[2:])
	if err != nil {
		t.Fatal(err)
	}
	if got := f.find(h, Attribute{CKA_KEY_TYPE, ulong(CKK_EC)}, Attribute{CKA_EC_PARAMS, p256OID}); len(got) != 2 {
		t.Fatalf("found %v", got)
	}
	if got := f.find(h, Attribute{CKA_KEY_TYPE, ulong(CKK_EC)}, Attribute{CKA_EC_PARAMS, ed25519OID}); len(got) != 0 {
		t.Fatalf("found %v with the Ed25519 OID", got)
	}

	sign := func(mech uint, parts ...[]byte) ([]byte, error) {
		t.Helper()
		if err := f.tk.SignInit(h, Mechanism{Type: mech}, privH); err != nil {
			t.Fatal(err)
		}
		if len(parts) == 1 {
			if _, n, err := f.tk.Sign(h, parts[0], true, 0); err != nil || n != 64 {
				t.Fatalf("length query: %d, %v", n, err)
			}
			sig, _, err := f.tk.Sign(h, parts[0], false, 64)
			return sig, err
		}
		for _, p := range parts {
			if err := f.tk.SignUpdate(h, p); err != nil {
				return nil, err
			}
		}
		sig, _, err := f.tk.SignFinal(h, false, 64)
		return sig, err
	}
	check := func(digest, sig []byte) {
		t.Helper()
		if len(sig) != 64 || !ecdsa.Verify(pub, digest, new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			t.Fatalf("signature %x does not verify", sig)
		}
	}
	digest := sha256.Sum256([]byte("rrset"))
	sig, err := sign(CKM_ECDSA, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	check(digest[:], sig)
	if m, d := f.b.last(); m != scheme.ECDSA || !bytes.Equal(d, digest[:]) {
		t.Fatalf("the cluster was asked %v %x", m, d)
	}
	for _, n := range []int{0, 31, 33, 64} {
		if _, err := sign(CKM_ECDSA, make([]byte, n)); !errors.Is(err, ErrDataLenRange) {
			t.Fatalf("CKM_ECDSA over %d bytes: %v", n, err)
		}
	}
	if _, err := sign(CKM_ECDSA, digest[:20], digest[20:], []byte{1}); !errors.Is(err, ErrDataLenRange) {
		t.Fatalf("CKM_ECDSA over 33 bytes in parts: %v", err)
	}
	// CKM_ECDSA_SHA256: in one part the cluster gets the message (its policy may read it), in
	// several the digest computed here.
	msg := []byte("a message to hash")
	h256 := sha256.Sum256(msg)
	sig, err = sign(CKM_ECDSA_SHA256, msg)
	if err != nil {
		t.Fatal(err)
	}
	check(h256[:], sig)
	if m, d := f.b.last(); m != scheme.ECDSASHA256 || !bytes.Equal(d, msg) {
		t.Fatalf("one part: the cluster was asked %v %x", m, d)
	}
	sig, err = sign(CKM_ECDSA_SHA256, msg[:4], msg[4:])
	if err != nil {
		t.Fatal(err)
	}
	check(h256[:], sig)
	if m, d := f.b.last(); m != scheme.ECDSA || !bytes.Equal(d, h256[:]) {
		t.Fatalf("multi-part: the cluster was asked %v %x", m, d)
	}

	// Verification in software, a shorter even-length signature as v2.40 allows it.
	verify := func(mech uint, data, sig []byte) error {
		if err := f.tk.VerifyInit(h, Mechanism{Type: mech}, pubH); err != nil {
			t.Fatal(err)
		}
		return f.tk.Verify(h, data, sig)
	}
	if err := verify(CKM_ECDSA_SHA256, msg, sig); err != nil {
		t.Fatal(err)
	}
	if err := verify(CKM_ECDSA, h256[:], sig); err != nil {
		t.Fatal(err)
	}
	bad := slices.Clone(sig)
	bad[0] ^= 0x80
	if err := verify(CKM_ECDSA, h256[:], bad); !errors.Is(err, ErrSignatureInvalid) {
		t.Fatalf("bad signature: %v", err)
	}
	for _, l := range []int{0, 63, 66} {
		if err := verify(CKM_ECDSA, h256[:], make([]byte, l)); !errors.Is(err, ErrSignatureLenRange) {
			t.Fatalf("%d-byte signature: %v", l, err)
		}
	}
	if err := verify(CKM_ECDSA, h256[:31], sig); !errors.Is(err, ErrDataLenRange) {
		t.Fatalf("31-byte digest: %v", err)
	}

	// A cluster signature that does not verify never leaves the token.
	f.b.setCorrupt(true)
	if _, err := sign(CKM_ECDSA, digest[:]); !errors.Is(err, ErrDeviceError) {
		t.Fatalf("corrupt cluster: %v", err)
	}
	f.b.setCorrupt(false)
	if err := f.tk.SignInit(h, Mechanism{Type: CKM_EDDSA}, privH); !errors.Is(err, ErrKeyTypeInconsistent) {
		t.Fatalf("CKM_EDDSA on an EC key: %v", err)
	}
}

// TestECCreateObject: a caller verifying with an EC public key it holds (OpenSSL's
// pkcs11-provider under BIND's dnssec-signzone) creates it as a session object.
func TestECCreateObject(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	point, _ := priv.PublicKey.Bytes()
	der := append([]byte{0x04, 0x41}, point...)
	tmpl := func(params, pt []byte) []Attribute {
		a := []Attribute{{CKA_CLASS, ulong(CKO_PUBLIC_KEY)}, {CKA_KEY_TYPE, ulong(CKK_EC)}, {CKA_TOKEN, []byte{0}}, {CKA_VERIFY, []byte{1}}}
		if params != nil {
			a = append(a, Attribute{CKA_EC_PARAMS, params})
		}
		if pt != nil {
			a = append(a, Attribute{CKA_EC_POINT, pt})
		}
		return a
	}
	// Without EC support the attributes do not exist here, as before.
	f := newECFixture(t, func(*clusterBackend) {})
	h := f.open(false)
	if _, err := f.tk.CreateObject(h, tmpl(p256OID, der)); !errors.Is(err, ErrAttributeTypeInvalid) {
		t.Fatalf("without EC support: %v", err)
	}
	f = newECFixture(t, func(b *clusterBackend) { b.ecdsa = true })
	h = f.open(false)
	digest := sha256.Sum256([]byte("signed elsewhere"))
	r, s, err := ecdsa.Sign(rand.Reader, priv, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	for _, pt := range [][]byte{der, point} {
		oh, err := f.tk.CreateObject(h, tmpl(p256OID, pt))
		if err != nil {
			t.Fatal(err)
		}
		if got := f.attr(h, oh, CKA_EC_POINT); !bytes.Equal(got, der) {
			t.Fatalf("CKA_EC_POINT %x", got)
		}
		if err := f.tk.VerifyInit(h, Mechanism{Type: CKM_ECDSA}, oh); err != nil {
			t.Fatal(err)
		}
		if err := f.tk.Verify(h, digest[:], sig); err != nil {
			t.Fatal(err)
		}
	}
	bad := slices.Clone(der)
	bad[40] ^= 1
	for name, c := range map[string]struct {
		tmpl []Attribute
		want error
	}{
		"no point":    {tmpl(p256OID, nil), ErrTemplateIncomplete},
		"no curve":    {tmpl(nil, der), ErrTemplateIncomplete},
		"Ed25519":     {tmpl(ed25519OID, der), ErrCurveNotSupported},
		"off curve":   {tmpl(p256OID, bad), ErrAttributeValueInvalid},
		"garbage":     {tmpl(p256OID, []byte{4, 1, 2}), ErrAttributeValueInvalid},
		"RSA with EC": {append(tmpl(p256OID, der)[:1], Attribute{CKA_KEY_TYPE, ulong(CKK_RSA)}, Attribute{CKA_EC_POINT, der}), ErrTemplateInconsistent},
	} {
		if _, err := f.tk.CreateObject(h, c.tmpl); !errors.Is(err, c.want) {
			t.Fatalf("%s: %v, want %v", name, err, c.want)
		}
	}
}
