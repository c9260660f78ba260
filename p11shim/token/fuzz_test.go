package token

import (
	"crypto/rsa"
	"encoding/binary"
	"math/big"
	"testing"

	"github.com/tchsm/tchsm/internal/backend"
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
		}
		out = append(out, Attribute{Type: typ, Value: append([]byte{}, b[:n]...)})
		b = b[n:]
	}
	return out
}

// FuzzParseKeygen: any pair of templates parses or fails with a sentinel, never panics, and a
// parsed template is within the token's limits.
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
	f.Add(enc(pubT), enc(privT))
	f.Add([]byte{0, 0, 8, 0, 4, 0, 0, 0, 0, 0, 0}, []byte{})
	f.Fuzz(func(t *testing.T, pub, priv []byte) {
		kt, err := parseKeygen(attrsFrom(pub), attrsFrom(priv))
		if err != nil {
			return
		}
		if kt.bits < MinKeyBits || kt.bits > MaxKeyBits || kt.bits%2 != 0 || kt.e < 3 || kt.e%2 == 0 {
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
	f.Fuzz(func(t *testing.T, tmpl []byte) {
		for _, pub := range []bool{false, true} {
			o := object{k: k, pub: pub, token: true}
			o.matches(attrsFrom(tmpl))
		}
	})
}
