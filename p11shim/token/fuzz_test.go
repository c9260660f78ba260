package token

import (
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/binary"
	"errors"
	"math/big"
	"testing"

	"github.com/tchsm/tchsm/internal/backend"
	"github.com/tchsm/tchsm/scheme"
)

// attrsFrom decodes fuzz input as a list of (type, length, value) attributes.
func attrsFrom(b []byte) []Attribute {
	var out []Attribute
	for len(b) >= 3 && len(out) < 64 {
		typ := uint(binary.LittleEndian.Uint16(b))
		n := int(b[2])
		b = b[3:]
		n = min(n, len(b))
		// Map a few type values onto the attributes that matter.
		switch typ % 8 {
		case 0:
			typ = CKA_MODULUS_BITS
		case 1:
			typ = CKA_PUBLIC_EXPONENT
		case 2:
			typ = CKA_TOKEN
		case 3:
			typ = CKA_CLASS
		case 4:
			typ = CKA_KEY_TYPE
		case 5:
			typ = CKA_EC_PARAMS
		}
		out = append(out, Attribute{Type: typ, Value: append([]byte{}, b[:n]...)})
		b = b[n:]
	}
	return out
}

// FuzzParseKeygen: any pair of templates, for either key type, parses or fails with a sentinel,
// never panics, and a parsed template is within the token's limits.
func FuzzParseKeygen(f *testing.F) {
	_, pubT, privT := odsTemplates(2048, false)
	enc := func(tmpl []Attribute) []byte {
		var b []byte
		for _, a := range tmpl {
			b = binary.LittleEndian.AppendUint16(b, uint16(a.Type))
			b = append(b, byte(len(a.Value)))
			b = append(b, a.Value...)
		}
		return b
	}
	f.Add(false, enc(pubT), enc(privT))
	f.Add(false, []byte{0, 0, 8, 0, 4, 0, 0, 0, 0, 0, 0}, []byte{})
	_, pubT, privT = edTemplates(ed25519OID)
	f.Add(true, enc(pubT), enc(privT))
	f.Add(true, []byte{5, 0, 14, 0x13, 0x0c, 'e', 'd', 'w', 'a', 'r', 'd', 's', '2', '5', '5', '1', '9'}, []byte{})
	f.Fuzz(func(t *testing.T, ec bool, pub, priv []byte) {
		keyType := CKK_RSA
		if ec {
			keyType = CKK_EC_EDWARDS
		}
		kt, err := parseKeygen(keyType, attrsFrom(pub), attrsFrom(priv))
		if err != nil {
			if !errors.Is(err, ErrTemplateIncomplete) && !errors.Is(err, ErrTemplateInconsistent) &&
				!errors.Is(err, ErrAttributeValueInvalid) && !errors.Is(err, ErrKeySizeRange) &&
				!errors.Is(err, ErrCurveNotSupported) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		switch {
		case kt.keyType != keyType:
			t.Fatalf("accepted %+v for key type %#x", kt, keyType)
		case ec && (kt.bits != ed25519Bits || kt.e != 0):
			t.Fatalf("accepted %+v", kt)
		case !ec && (kt.bits < MinKeyBits || kt.bits > MaxKeyBits || kt.bits%2 != 0 || kt.e < 3 || kt.e%2 == 0):
			t.Fatalf("accepted %+v", kt)
		}
	})
}

// FuzzMatches: matching any template against a key object never panics.
func FuzzMatches(f *testing.F) {
	f.Add([]byte{0, 0, 8, 3, 0, 0, 0, 0, 0, 0, 0})
	k, err := newKey(backend.KeyInfo{ID: "00", Label: "l", P11ID: []byte{1}, Bits: 17, Public: &rsa.PublicKey{N: big.NewInt(65537 * 2), E: 3}})
	if err == nil {
		f.Fatal("newKey accepted an even modulus of the wrong length")
	}
	n, _ := new(big.Int).SetString("c7a5d8ab5a1d3b1c9e4f7a2b6d8e0f13579bdf02468ace13579bdf02468ace1", 16)
	k, err = newKey(backend.KeyInfo{ID: "00", Label: "l", P11ID: []byte{1}, Bits: n.BitLen(), Public: &rsa.PublicKey{N: n, E: 65537}})
	if err != nil {
		f.Fatal(err)
	}
	ek, err := newKey(backend.KeyInfo{ID: "01", Label: "e", Algorithm: scheme.Ed25519FROST, Bits: 256,
		Public: ed25519.NewKeyFromSeed(make([]byte, 32)).Public()})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{5, 0, 5, 0x06, 0x03, 0x2b, 0x65, 0x70})
	f.Fuzz(func(t *testing.T, tmpl []byte) {
		for _, key := range []*key{k, ek} {
			for _, pub := range []bool{false, true} {
				o := object{k: key, pub: pub, token: true}
				o.matches(attrsFrom(tmpl))
			}
		}
	})
}
