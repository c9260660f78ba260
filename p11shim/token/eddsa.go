package token

import (
	"encoding/asn1"
	"fmt"
)

// ed25519OID is the DER of id-Ed25519, 1.3.101.112 (RFC 8410 section 3): the CKA_EC_PARAMS of
// every Ed25519 key object, whatever form the generating template used.
var ed25519OID = []byte{0x06, 0x03, 0x2b, 0x65, 0x70}

// curve names an elliptic curve parseCurve recognised.
type curve int

const (
	curveEd25519 curve = 1
	curveP256    curve = 2
)

// p256OID is the DER of prime256v1 (secp256r1), 1.2.840.10045.3.1.7 (RFC 5480 section 2.1.1.1):
// the CKA_EC_PARAMS of every ECDSA P-256 key object.
var p256OID = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}

// ecScalarSize is the length of P-256's r and s: a CKM_ECDSA signature is r || s, 64 bytes.
const ecScalarSize = 32

// curveOf is the curve of the keys of type keyType (0 for RSA).
func curveOf(keyType uint) curve {
	switch keyType {
	case CKK_EC_EDWARDS:
		return curveEd25519
	case CKK_EC:
		return curveP256
	}
	return 0
}

// edwards25519Name is the PrintableString form PKCS#11 3.0 section 2.3.5 allows in CKA_EC_PARAMS
// ("edwards25519"); OpenSC's pkcs11-tool 0.23 sends it.
const edwards25519Name = "edwards25519"

// maxEdDSAData bounds the message of one CKM_EDDSA signature or verification, in one part or
// accumulated over C_SignUpdate/C_VerifyUpdate. Pure Ed25519 hashes the whole message twice,
// so it cannot be fed to the cluster in pieces: the token buffers it and the cluster is sent
// all of it. A DNSSEC signer signs one RRset at a time (hundreds of bytes; a large RRset a few
// KiB); 64 KiB also bounds what the cluster's messages carry.
const maxEdDSAData = 64 << 10

// parseCurve reads a CKA_EC_PARAMS value: the DER OID 1.3.101.112 or the DER PrintableString
// "edwards25519" are Ed25519, the DER OID 1.2.840.10045.3.1.7 (namedCurve prime256v1) is
// P-256. Any other well-formed OID or PrintableString is
// ErrCurveNotSupported (CKR_CURVE_NOT_SUPPORTED, "this curve is not supported by this token");
// anything else (explicit ecParameters, implicitlyCA, trailing bytes, garbage) is
// ErrAttributeValueInvalid.
func parseCurve(v []byte) (curve, error) {
	if len(v) == 0 {
		return 0, fmt.Errorf("%w: empty CKA_EC_PARAMS", ErrAttributeValueInvalid)
	}
	switch v[0] {
	case 0x06: // OBJECT IDENTIFIER
		var oid asn1.ObjectIdentifier
		rest, err := asn1.Unmarshal(v, &oid)
		if err != nil || len(rest) != 0 {
			return 0, fmt.Errorf("%w: CKA_EC_PARAMS is not one DER OID", ErrAttributeValueInvalid)
		}
		switch string(v) {
		case string(ed25519OID):
			return curveEd25519, nil
		case string(p256OID):
			return curveP256, nil
		}
		return 0, fmt.Errorf("%w: curve %v (only Ed25519, 1.3.101.112, and P-256, 1.2.840.10045.3.1.7)", ErrCurveNotSupported, oid)
	case 0x13: // PrintableString
		var name string
		rest, err := asn1.UnmarshalWithParams(v, &name, "printable")
		if err != nil || len(rest) != 0 {
			return 0, fmt.Errorf("%w: CKA_EC_PARAMS is not one DER PrintableString", ErrAttributeValueInvalid)
		}
		if name == edwards25519Name {
			return curveEd25519, nil
		}
		return 0, fmt.Errorf("%w: curve %q (only %q)", ErrCurveNotSupported, name, edwards25519Name)
	}
	return 0, fmt.Errorf("%w: CKA_EC_PARAMS must name the curve (an OID or a PrintableString)", ErrAttributeValueInvalid)
}
