package token

import (
	"crypto"
	"fmt"
	"sort"

	"github.com/tchsm/tchsm/scheme"
)

// mechanismSpec is one mechanism the token supports. C_GetMechanismList and C_GetMechanismInfo,
// the checks of C_GenerateKeyPair, C_SignInit, C_VerifyInit and C_DigestInit, TakesParam,
// CKA_ALLOWED_MECHANISMS, CKA_KEY_GEN_MECHANISM and the names `tchsm sign -mech` takes all read
// the mechanisms table below (and keygenAliases); nothing else lists mechanisms.
type mechanismSpec struct {
	typ     uint   // CKM_*
	name    string // its PKCS#11 name, for messages and tests
	keyType uint   // CKK_* of the keys it makes or uses; Unavailable for digests
	// cliName is the `tchsm sign -mech` name of a signing mechanism and wire what the cluster
	// is asked for when the CLI or a one-part C_Sign signs with it (a multi-part RSA signature
	// is hashed on the host and asks for scheme.RSAPKCS; see Token.sign); CKM_EDDSA is sent as
	// scheme.EDDSA with the whole message.
	cliName string
	wire    scheme.Mechanism
	hash    crypto.Hash // applied before signing, or the digest computed; 0 for CKM_RSA_PKCS and CKM_EDDSA
	// param says the mechanism defines a CK_MECHANISM parameter. Only CKM_EDDSA does (its
	// optional CK_EDDSA_PARAMS, PKCS#11 3.0 current mechanisms section 2.3.14); every RSA,
	// digest and key generation mechanism here takes none (PKCS#11 v2.40 current mechanisms,
	// sections 2.1 and 2.2).
	param bool
	info  MechanismInfo // C_GetMechanismInfo; info.Flags says which functions accept it
}

// ecBits is the P-256 key size C_GetMechanismInfo gives for the EC mechanisms (the bit length
// of the field, v2.40 section 2.3.6), and ecFlags the EC capability flags of their info.
const (
	ecBits  = 256
	ecFlags = CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS
)

// Ed25519 key size as C_GetMechanismInfo gives it (PKCS#11 3.0: the bit length of the curve's
// field elements is 255, but tokens, SoftHSM2 among them, say 256; OpenDNSSEC's KASP names 256).
const ed25519Bits = 256

// mechanisms: key generation and signing are performed by the cluster, the "device", so they
// carry CKF_HW (pkcs11-tool --test, for one, only tests signing mechanisms flagged so);
// verification and digests run in software in this library, but flags are per mechanism.
//
// The signing rows are in the order CKA_ALLOWED_MECHANISMS lists them.
var mechanisms = []mechanismSpec{
	{typ: CKM_RSA_PKCS_KEY_PAIR_GEN, name: "CKM_RSA_PKCS_KEY_PAIR_GEN", keyType: CKK_RSA,
		info: MechanismInfo{MinKeyBits, MaxKeyBits, CKF_HW | CKF_GENERATE_KEY_PAIR}},
	rsaSign(CKM_RSA_PKCS, "CKM_RSA_PKCS", "raw", scheme.RSAPKCS, 0),
	rsaSign(CKM_SHA1_RSA_PKCS, "CKM_SHA1_RSA_PKCS", "sha1", scheme.SHA1RSAPKCS, crypto.SHA1),
	rsaSign(CKM_SHA224_RSA_PKCS, "CKM_SHA224_RSA_PKCS", "sha224", scheme.SHA224RSAPKCS, crypto.SHA224),
	rsaSign(CKM_SHA256_RSA_PKCS, "CKM_SHA256_RSA_PKCS", "sha256", scheme.SHA256RSAPKCS, crypto.SHA256),
	rsaSign(CKM_SHA384_RSA_PKCS, "CKM_SHA384_RSA_PKCS", "sha384", scheme.SHA384RSAPKCS, crypto.SHA384),
	rsaSign(CKM_SHA512_RSA_PKCS, "CKM_SHA512_RSA_PKCS", "sha512", scheme.SHA512RSAPKCS, crypto.SHA512),
	{typ: CKM_EC_EDWARDS_KEY_PAIR_GEN, name: "CKM_EC_EDWARDS_KEY_PAIR_GEN", keyType: CKK_EC_EDWARDS,
		info: MechanismInfo{ed25519Bits, ed25519Bits, CKF_HW | CKF_GENERATE_KEY_PAIR}},
	{typ: CKM_EDDSA, name: "CKM_EDDSA", keyType: CKK_EC_EDWARDS, cliName: "eddsa", wire: scheme.EDDSA,
		param: true, info: MechanismInfo{ed25519Bits, ed25519Bits, CKF_HW | CKF_SIGN | CKF_VERIFY}},
	// ECDSA P-256 (scheme.ECDSAP256HM), offered only by a backend that supports it
	// (backend.Supports; Token.offers). CKM_ECDSA signs a 32-byte digest, CKM_ECDSA_SHA256
	// hashes the message first (sent whole to the cluster in a one-part C_Sign).
	{typ: CKM_EC_KEY_PAIR_GEN, name: "CKM_EC_KEY_PAIR_GEN", keyType: CKK_EC,
		info: MechanismInfo{ecBits, ecBits, CKF_HW | CKF_GENERATE_KEY_PAIR | ecFlags}},
	{typ: CKM_ECDSA, name: "CKM_ECDSA", keyType: CKK_EC, cliName: "ecdsa", wire: scheme.ECDSA,
		info: MechanismInfo{ecBits, ecBits, CKF_HW | CKF_SIGN | CKF_VERIFY | ecFlags}},
	{typ: CKM_ECDSA_SHA256, name: "CKM_ECDSA_SHA256", keyType: CKK_EC, cliName: "ecdsa-sha256", wire: scheme.ECDSASHA256,
		hash: crypto.SHA256, info: MechanismInfo{ecBits, ecBits, CKF_HW | CKF_SIGN | CKF_VERIFY | ecFlags}},
	digest(CKM_SHA_1, "CKM_SHA_1", crypto.SHA1),
	digest(CKM_SHA224, "CKM_SHA224", crypto.SHA224),
	digest(CKM_SHA256, "CKM_SHA256", crypto.SHA256),
	digest(CKM_SHA384, "CKM_SHA384", crypto.SHA384),
	digest(CKM_SHA512, "CKM_SHA512", crypto.SHA512),
}

// keygenAliases are mechanisms C_GenerateKeyPair accepts for a key generation mechanism they
// are not: GnuTLS before 3.8.2 (Debian 12's 3.7.9, under Knot 3.2) asks for CKM_EDDSA when it
// means CKM_EC_EDWARDS_KEY_PAIR_GEN. C_GetMechanismInfo does not flag CKM_EDDSA for key
// generation: a caller that reads the flags asks for the right mechanism.
var keygenAliases = map[uint]uint{CKM_EDDSA: CKM_EC_EDWARDS_KEY_PAIR_GEN}

func rsaSign(typ uint, name, cliName string, wire scheme.Mechanism, h crypto.Hash) mechanismSpec {
	return mechanismSpec{typ: typ, name: name, keyType: CKK_RSA, cliName: cliName, wire: wire, hash: h,
		info: MechanismInfo{MinKeyBits, MaxKeyBits, CKF_HW | CKF_SIGN | CKF_VERIFY}}
}

func digest(typ uint, name string, h crypto.Hash) mechanismSpec {
	return mechanismSpec{typ: typ, name: name, keyType: Unavailable, hash: h, info: MechanismInfo{0, 0, CKF_DIGEST}}
}

// EdDSAParams is a CK_EDDSA_PARAMS as the module read it from the caller's memory (the C
// structure holds a pointer to the context, so it cannot travel as Mechanism.Param bytes).
type EdDSAParams struct {
	PHFlag  bool   // prehash: Ed25519ph
	Context []byte // context data: Ed25519ctx (Ed25519ph with PHFlag)
}

// mechanismFor returns the row of mech if it is supported for the function that flag names
// (CKF_SIGN, CKF_DIGEST, ...): ErrMechanismInvalid if not, ErrMechanismParamInvalid for a
// parameter given to a mechanism that takes none, or one it does not implement.
func mechanismFor(mech Mechanism, flag uint) (*mechanismSpec, error) {
	m := lookupMechanism(mech.Type)
	if alias, ok := keygenAliases[mech.Type]; ok && flag == CKF_GENERATE_KEY_PAIR {
		m = lookupMechanism(alias)
	}
	if m == nil {
		return nil, fmt.Errorf("%w: %#x", ErrMechanismInvalid, mech.Type)
	}
	if m.info.Flags&flag == 0 {
		return nil, fmt.Errorf("%w: %s here", ErrMechanismInvalid, m.name)
	}
	if !m.param && (len(mech.Param) != 0 || mech.EdDSA != nil) {
		return nil, fmt.Errorf("%w: %s takes none", ErrMechanismParamInvalid, m.name)
	}
	if m.typ == CKM_EDDSA {
		// The cluster signs pure Ed25519 (RFC 8032 section 5.1) only: no parameter, or one that
		// asks for neither prehashing nor a context. An empty context without prehashing is
		// Ed25519 itself (RFC 8032 defines Ed25519ctx for non-empty contexts only).
		if len(mech.Param) != 0 {
			return nil, fmt.Errorf("%w: %s parameter is a CK_EDDSA_PARAMS", ErrMechanismParamInvalid, m.name)
		}
		if p := mech.EdDSA; p != nil && (p.PHFlag || len(p.Context) != 0) {
			return nil, fmt.Errorf("%w: only pure Ed25519 (no prehash, no context)", ErrMechanismParamInvalid)
		}
	}
	return m, nil
}

func lookupMechanism(t uint) *mechanismSpec {
	for i := range mechanisms {
		if mechanisms[i].typ == t {
			return &mechanisms[i]
		}
	}
	return nil
}

// offers reports whether the token offers mechanism m: the EC (ECDSA P-256) mechanisms only
// when its backend supports scheme.ECDSAP256HM, every other always.
func (t *Token) offers(m *mechanismSpec) bool { return m.keyType != CKK_EC || t.ecdsa }

// mechanismFor is mechanismFor for the mechanisms this token offers.
func (t *Token) mechanismFor(mech Mechanism, flag uint) (*mechanismSpec, error) {
	m, err := mechanismFor(mech, flag)
	if err != nil {
		return nil, err
	}
	if !t.offers(m) {
		return nil, fmt.Errorf("%w: %s: the signing cluster has no ECDSA P-256 keys", ErrMechanismInvalid, m.name)
	}
	return m, nil
}

// TakesParam reports whether mechanism t is one the token supports with a parameter. The
// module reads a CK_MECHANISM's pParameter and ulParameterLen only then: for every other
// mechanism they are ignored, whatever they hold.
func TakesParam(t uint) bool {
	m := lookupMechanism(t)
	return m != nil && m.param
}

// keyGenMechanism is the CKA_KEY_GEN_MECHANISM of a cluster key of type keyType.
func keyGenMechanism(keyType uint) uint {
	for _, m := range mechanisms {
		if m.keyType == keyType && m.info.Flags&CKF_GENERATE_KEY_PAIR != 0 {
			return m.typ
		}
	}
	return Unavailable
}

// allowedMechanisms is the CKA_ALLOWED_MECHANISMS value of a key of type keyType: the signing
// mechanisms for it, as a CK_MECHANISM_TYPE array.
func allowedMechanisms(keyType uint) []byte {
	var b []byte
	for _, m := range mechanisms {
		if m.keyType == keyType && m.info.Flags&CKF_SIGN != 0 {
			b = append(b, EncodeULong(m.typ)...)
		}
	}
	return b
}

// mechanismList is C_GetMechanismList: every mechanism offered (offer), in ascending order.
func mechanismList(offer func(*mechanismSpec) bool) []uint {
	out := make([]uint, 0, len(mechanisms))
	for i := range mechanisms {
		if offer(&mechanisms[i]) {
			out = append(out, mechanisms[i].typ)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// A NamedMechanism is a signing mechanism by the name `tchsm sign -mech` gives it.
type NamedMechanism struct {
	Name string           // "raw", "sha1", "sha256", ..., "eddsa"
	Wire scheme.Mechanism // what the cluster is asked to sign with
}

// SignMechanisms returns the signing mechanisms the token supports by their `tchsm sign -mech`
// names, in table order.
func SignMechanisms() []NamedMechanism {
	var out []NamedMechanism
	for _, m := range mechanisms {
		if m.info.Flags&CKF_SIGN != 0 {
			out = append(out, NamedMechanism{Name: m.cliName, Wire: m.wire})
		}
	}
	return out
}
