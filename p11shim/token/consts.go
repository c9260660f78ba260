package token

import (
	"encoding/binary"
	"strconv"
)

// PKCS#11 numeric constants this package needs, with the values of the OASIS v2.40 pkcs11t.h
// in p11shim/include and, for the PKCS#11 3.0 names it lacks, of p11shim/include/pkcs11_v3_ext.h.
// They are repeated here so the core builds and tests without cgo; p11shim's TestHeaderConstants
// checks every CK*_ constant of this file (and Unavailable) against those headers.

// ULongSize is the size of CK_ULONG (C unsigned long) in bytes: 8 on LP64 Linux, 4 on 32-bit.
const ULongSize = strconv.IntSize / 8

// Unavailable is CK_UNAVAILABLE_INFORMATION.
const Unavailable = ^uint(0)

// Object classes and key types.
const (
	CKO_PUBLIC_KEY  uint = 0x2
	CKO_PRIVATE_KEY uint = 0x3
	CKK_RSA         uint = 0x0
	CKK_EC          uint = 0x3
	CKK_EC_EDWARDS  uint = 0x40 // PKCS#11 3.0
)

// Attribute types.
const (
	CKA_CLASS               uint = 0x000
	CKA_TOKEN               uint = 0x001
	CKA_PRIVATE             uint = 0x002
	CKA_LABEL               uint = 0x003
	CKA_VALUE               uint = 0x011
	CKA_TRUSTED             uint = 0x086
	CKA_KEY_TYPE            uint = 0x100
	CKA_SUBJECT             uint = 0x101
	CKA_ID                  uint = 0x102
	CKA_SENSITIVE           uint = 0x103
	CKA_ENCRYPT             uint = 0x104
	CKA_DECRYPT             uint = 0x105
	CKA_WRAP                uint = 0x106
	CKA_UNWRAP              uint = 0x107
	CKA_SIGN                uint = 0x108
	CKA_SIGN_RECOVER        uint = 0x109
	CKA_VERIFY              uint = 0x10A
	CKA_VERIFY_RECOVER      uint = 0x10B
	CKA_DERIVE              uint = 0x10C
	CKA_START_DATE          uint = 0x110
	CKA_END_DATE            uint = 0x111
	CKA_MODULUS             uint = 0x120
	CKA_MODULUS_BITS        uint = 0x121
	CKA_PUBLIC_EXPONENT     uint = 0x122
	CKA_PRIVATE_EXPONENT    uint = 0x123
	CKA_PRIME_1             uint = 0x124
	CKA_PRIME_2             uint = 0x125
	CKA_EXPONENT_1          uint = 0x126
	CKA_EXPONENT_2          uint = 0x127
	CKA_COEFFICIENT         uint = 0x128
	CKA_PUBLIC_KEY_INFO     uint = 0x129
	CKA_EC_PARAMS           uint = 0x180
	CKA_EC_POINT            uint = 0x181
	CKA_EXTRACTABLE         uint = 0x162
	CKA_LOCAL               uint = 0x163
	CKA_NEVER_EXTRACTABLE   uint = 0x164
	CKA_ALWAYS_SENSITIVE    uint = 0x165
	CKA_KEY_GEN_MECHANISM   uint = 0x166
	CKA_MODIFIABLE          uint = 0x170
	CKA_COPYABLE            uint = 0x171
	CKA_DESTROYABLE         uint = 0x172
	CKA_ALWAYS_AUTHENTICATE uint = 0x202
	CKA_WRAP_WITH_TRUSTED   uint = 0x210
	CKA_ALLOWED_MECHANISMS  uint = 0x40000600
)

// Mechanisms.
const (
	CKM_RSA_PKCS_KEY_PAIR_GEN uint = 0x000
	CKM_RSA_PKCS              uint = 0x001
	CKM_SHA1_RSA_PKCS         uint = 0x006
	CKM_SHA256_RSA_PKCS       uint = 0x040
	CKM_SHA384_RSA_PKCS       uint = 0x041
	CKM_SHA512_RSA_PKCS       uint = 0x042
	CKM_SHA224_RSA_PKCS       uint = 0x046
	CKM_SHA_1                 uint = 0x220
	CKM_SHA256                uint = 0x250
	CKM_SHA224                uint = 0x255
	CKM_SHA384                uint = 0x260
	CKM_SHA512                uint = 0x270
	// For the threshold ECDSA P-256 scheme (scheme.ECDSAP256HM).
	CKM_EC_KEY_PAIR_GEN uint = 0x1040
	CKM_ECDSA           uint = 0x1041
	CKM_ECDSA_SHA256    uint = 0x1044
	// PKCS#11 3.0, for the threshold Ed25519 scheme (scheme.Ed25519FROST).
	CKM_EC_EDWARDS_KEY_PAIR_GEN uint = 0x1055
	CKM_EDDSA                   uint = 0x1057
)

// Flags.
const (
	CKF_TOKEN_PRESENT        uint = 0x1
	CKF_RNG                  uint = 0x1
	CKF_LOGIN_REQUIRED       uint = 0x4
	CKF_USER_PIN_INITIALIZED uint = 0x8
	CKF_USER_PIN_COUNT_LOW   uint = 0x10000
	CKF_USER_PIN_FINAL_TRY   uint = 0x20000
	CKF_USER_PIN_LOCKED      uint = 0x40000
	CKF_TOKEN_INITIALIZED    uint = 0x400
	CKF_RW_SESSION           uint = 0x2
	CKF_SERIAL_SESSION       uint = 0x4
	CKF_HW                   uint = 0x1
	CKF_DIGEST               uint = 0x400
	CKF_SIGN                 uint = 0x800
	CKF_VERIFY               uint = 0x2000
	CKF_GENERATE_KEY_PAIR    uint = 0x10000
	// C_GetMechanismInfo flags of EC mechanisms (v2.40 section 2.3): curves over F_p, named
	// by OID in CKA_EC_PARAMS, points uncompressed.
	CKF_EC_F_P        uint = 0x100000
	CKF_EC_NAMEDCURVE uint = 0x800000
	CKF_EC_UNCOMPRESS uint = 0x1000000
)

// User types and session states.
const (
	CKU_SO               uint = 0
	CKU_USER             uint = 1
	CKU_CONTEXT_SPECIFIC uint = 2

	CKS_RO_PUBLIC_SESSION uint = 0
	CKS_RO_USER_FUNCTIONS uint = 1
	CKS_RW_PUBLIC_SESSION uint = 2
	CKS_RW_USER_FUNCTIONS uint = 3
)

// EncodeULong encodes v as a native-endian CK_ULONG.
func EncodeULong(v uint) []byte {
	b := make([]byte, ULongSize)
	if ULongSize == 8 {
		binary.NativeEndian.PutUint64(b, uint64(v))
	} else {
		binary.NativeEndian.PutUint32(b, uint32(v))
	}
	return b
}

// DecodeULong decodes a native-endian CK_ULONG; ok is false for a value of the wrong size.
func DecodeULong(b []byte) (v uint, ok bool) {
	switch {
	case len(b) != ULongSize:
		return 0, false
	case ULongSize == 8:
		return uint(binary.NativeEndian.Uint64(b)), true
	default:
		return uint(binary.NativeEndian.Uint32(b)), true
	}
}

// EncodeBool encodes a CK_BBOOL.
func EncodeBool(v bool) []byte {
	if v {
		return []byte{1}
	}
	return []byte{0}
}

// DecodeBool decodes a CK_BBOOL; ok is false for a value of the wrong size.
func DecodeBool(b []byte) (v, ok bool) {
	if len(b) != 1 {
		return false, false
	}
	return b[0] != 0, true
}
