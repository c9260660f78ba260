package main

/*
#cgo CFLAGS: -I${SRCDIR}/include
#include "tchsm.h"
*/
import "C"

import "github.com/tchsm/tchsm/p11shim/token"

// headerConstant pairs a numeric constant of p11shim/token, which is pure Go and repeats the
// values it needs, with the value the C headers give the same name.
type headerConstant struct {
	name    string
	goV, cV uint64
}

// headerConstants lists every CK*_ constant of p11shim/token/consts.go and CK_UNAVAILABLE_INFORMATION
// (token.Unavailable) beside the value of tchsm.h. It is here, not in a test, because a _test.go
// file cannot use cgo; TestHeaderConstants compares the values and checks from the sources that
// the list names every constant of consts.go, each entry with one name.
func headerConstants() []headerConstant {
	return []headerConstant{
		{"CK_UNAVAILABLE_INFORMATION", uint64(token.Unavailable), uint64(C.CK_UNAVAILABLE_INFORMATION)},
		{"CKO_PUBLIC_KEY", uint64(token.CKO_PUBLIC_KEY), uint64(C.CKO_PUBLIC_KEY)},
		{"CKO_PRIVATE_KEY", uint64(token.CKO_PRIVATE_KEY), uint64(C.CKO_PRIVATE_KEY)},
		{"CKK_RSA", uint64(token.CKK_RSA), uint64(C.CKK_RSA)},
		{"CKK_EC", uint64(token.CKK_EC), uint64(C.CKK_EC)},
		{"CKK_EC_EDWARDS", uint64(token.CKK_EC_EDWARDS), uint64(C.CKK_EC_EDWARDS)},
		{"CKA_CLASS", uint64(token.CKA_CLASS), uint64(C.CKA_CLASS)},
		{"CKA_TOKEN", uint64(token.CKA_TOKEN), uint64(C.CKA_TOKEN)},
		{"CKA_PRIVATE", uint64(token.CKA_PRIVATE), uint64(C.CKA_PRIVATE)},
		{"CKA_LABEL", uint64(token.CKA_LABEL), uint64(C.CKA_LABEL)},
		{"CKA_VALUE", uint64(token.CKA_VALUE), uint64(C.CKA_VALUE)},
		{"CKA_TRUSTED", uint64(token.CKA_TRUSTED), uint64(C.CKA_TRUSTED)},
		{"CKA_KEY_TYPE", uint64(token.CKA_KEY_TYPE), uint64(C.CKA_KEY_TYPE)},
		{"CKA_SUBJECT", uint64(token.CKA_SUBJECT), uint64(C.CKA_SUBJECT)},
		{"CKA_ID", uint64(token.CKA_ID), uint64(C.CKA_ID)},
		{"CKA_SENSITIVE", uint64(token.CKA_SENSITIVE), uint64(C.CKA_SENSITIVE)},
		{"CKA_ENCRYPT", uint64(token.CKA_ENCRYPT), uint64(C.CKA_ENCRYPT)},
		{"CKA_DECRYPT", uint64(token.CKA_DECRYPT), uint64(C.CKA_DECRYPT)},
		{"CKA_WRAP", uint64(token.CKA_WRAP), uint64(C.CKA_WRAP)},
		{"CKA_UNWRAP", uint64(token.CKA_UNWRAP), uint64(C.CKA_UNWRAP)},
		{"CKA_SIGN", uint64(token.CKA_SIGN), uint64(C.CKA_SIGN)},
		{"CKA_SIGN_RECOVER", uint64(token.CKA_SIGN_RECOVER), uint64(C.CKA_SIGN_RECOVER)},
		{"CKA_VERIFY", uint64(token.CKA_VERIFY), uint64(C.CKA_VERIFY)},
		{"CKA_VERIFY_RECOVER", uint64(token.CKA_VERIFY_RECOVER), uint64(C.CKA_VERIFY_RECOVER)},
		{"CKA_DERIVE", uint64(token.CKA_DERIVE), uint64(C.CKA_DERIVE)},
		{"CKA_START_DATE", uint64(token.CKA_START_DATE), uint64(C.CKA_START_DATE)},
		{"CKA_END_DATE", uint64(token.CKA_END_DATE), uint64(C.CKA_END_DATE)},
		{"CKA_MODULUS", uint64(token.CKA_MODULUS), uint64(C.CKA_MODULUS)},
		{"CKA_MODULUS_BITS", uint64(token.CKA_MODULUS_BITS), uint64(C.CKA_MODULUS_BITS)},
		{"CKA_PUBLIC_EXPONENT", uint64(token.CKA_PUBLIC_EXPONENT), uint64(C.CKA_PUBLIC_EXPONENT)},
		{"CKA_PRIVATE_EXPONENT", uint64(token.CKA_PRIVATE_EXPONENT), uint64(C.CKA_PRIVATE_EXPONENT)},
		{"CKA_PRIME_1", uint64(token.CKA_PRIME_1), uint64(C.CKA_PRIME_1)},
		{"CKA_PRIME_2", uint64(token.CKA_PRIME_2), uint64(C.CKA_PRIME_2)},
		{"CKA_EXPONENT_1", uint64(token.CKA_EXPONENT_1), uint64(C.CKA_EXPONENT_1)},
		{"CKA_EXPONENT_2", uint64(token.CKA_EXPONENT_2), uint64(C.CKA_EXPONENT_2)},
		{"CKA_COEFFICIENT", uint64(token.CKA_COEFFICIENT), uint64(C.CKA_COEFFICIENT)},
		{"CKA_PUBLIC_KEY_INFO", uint64(token.CKA_PUBLIC_KEY_INFO), uint64(C.CKA_PUBLIC_KEY_INFO)},
		{"CKA_EC_PARAMS", uint64(token.CKA_EC_PARAMS), uint64(C.CKA_EC_PARAMS)},
		{"CKA_EC_POINT", uint64(token.CKA_EC_POINT), uint64(C.CKA_EC_POINT)},
		{"CKA_EXTRACTABLE", uint64(token.CKA_EXTRACTABLE), uint64(C.CKA_EXTRACTABLE)},
		{"CKA_LOCAL", uint64(token.CKA_LOCAL), uint64(C.CKA_LOCAL)},
		{"CKA_NEVER_EXTRACTABLE", uint64(token.CKA_NEVER_EXTRACTABLE), uint64(C.CKA_NEVER_EXTRACTABLE)},
		{"CKA_ALWAYS_SENSITIVE", uint64(token.CKA_ALWAYS_SENSITIVE), uint64(C.CKA_ALWAYS_SENSITIVE)},
		{"CKA_KEY_GEN_MECHANISM", uint64(token.CKA_KEY_GEN_MECHANISM), uint64(C.CKA_KEY_GEN_MECHANISM)},
		{"CKA_MODIFIABLE", uint64(token.CKA_MODIFIABLE), uint64(C.CKA_MODIFIABLE)},
		{"CKA_COPYABLE", uint64(token.CKA_COPYABLE), uint64(C.CKA_COPYABLE)},
		{"CKA_DESTROYABLE", uint64(token.CKA_DESTROYABLE), uint64(C.CKA_DESTROYABLE)},
		{"CKA_ALWAYS_AUTHENTICATE", uint64(token.CKA_ALWAYS_AUTHENTICATE), uint64(C.CKA_ALWAYS_AUTHENTICATE)},
		{"CKA_WRAP_WITH_TRUSTED", uint64(token.CKA_WRAP_WITH_TRUSTED), uint64(C.CKA_WRAP_WITH_TRUSTED)},
		{"CKA_ALLOWED_MECHANISMS", uint64(token.CKA_ALLOWED_MECHANISMS), uint64(C.CKA_ALLOWED_MECHANISMS)},
		{"CKM_RSA_PKCS_KEY_PAIR_GEN", uint64(token.CKM_RSA_PKCS_KEY_PAIR_GEN), uint64(C.CKM_RSA_PKCS_KEY_PAIR_GEN)},
		{"CKM_RSA_PKCS", uint64(token.CKM_RSA_PKCS), uint64(C.CKM_RSA_PKCS)},
		{"CKM_SHA1_RSA_PKCS", uint64(token.CKM_SHA1_RSA_PKCS), uint64(C.CKM_SHA1_RSA_PKCS)},
		{"CKM_SHA256_RSA_PKCS", uint64(token.CKM_SHA256_RSA_PKCS), uint64(C.CKM_SHA256_RSA_PKCS)},
		{"CKM_SHA384_RSA_PKCS", uint64(token.CKM_SHA384_RSA_PKCS), uint64(C.CKM_SHA384_RSA_PKCS)},
		{"CKM_SHA512_RSA_PKCS", uint64(token.CKM_SHA512_RSA_PKCS), uint64(C.CKM_SHA512_RSA_PKCS)},
		{"CKM_SHA224_RSA_PKCS", uint64(token.CKM_SHA224_RSA_PKCS), uint64(C.CKM_SHA224_RSA_PKCS)},
		{"CKM_SHA_1", uint64(token.CKM_SHA_1), uint64(C.CKM_SHA_1)},
		{"CKM_SHA256", uint64(token.CKM_SHA256), uint64(C.CKM_SHA256)},
		{"CKM_SHA224", uint64(token.CKM_SHA224), uint64(C.CKM_SHA224)},
		{"CKM_SHA384", uint64(token.CKM_SHA384), uint64(C.CKM_SHA384)},
		{"CKM_SHA512", uint64(token.CKM_SHA512), uint64(C.CKM_SHA512)},
		{"CKM_EC_EDWARDS_KEY_PAIR_GEN", uint64(token.CKM_EC_EDWARDS_KEY_PAIR_GEN), uint64(C.CKM_EC_EDWARDS_KEY_PAIR_GEN)},
		{"CKM_EDDSA", uint64(token.CKM_EDDSA), uint64(C.CKM_EDDSA)},
		{"CKM_EC_KEY_PAIR_GEN", uint64(token.CKM_EC_KEY_PAIR_GEN), uint64(C.CKM_EC_KEY_PAIR_GEN)},
		{"CKM_ECDSA", uint64(token.CKM_ECDSA), uint64(C.CKM_ECDSA)},
		{"CKM_ECDSA_SHA256", uint64(token.CKM_ECDSA_SHA256), uint64(C.CKM_ECDSA_SHA256)},
		{"CKF_TOKEN_PRESENT", uint64(token.CKF_TOKEN_PRESENT), uint64(C.CKF_TOKEN_PRESENT)},
		{"CKF_RNG", uint64(token.CKF_RNG), uint64(C.CKF_RNG)},
		{"CKF_LOGIN_REQUIRED", uint64(token.CKF_LOGIN_REQUIRED), uint64(C.CKF_LOGIN_REQUIRED)},
		{"CKF_USER_PIN_INITIALIZED", uint64(token.CKF_USER_PIN_INITIALIZED), uint64(C.CKF_USER_PIN_INITIALIZED)},
		{"CKF_TOKEN_INITIALIZED", uint64(token.CKF_TOKEN_INITIALIZED), uint64(C.CKF_TOKEN_INITIALIZED)},
		{"CKF_USER_PIN_COUNT_LOW", uint64(token.CKF_USER_PIN_COUNT_LOW), uint64(C.CKF_USER_PIN_COUNT_LOW)},
		{"CKF_USER_PIN_FINAL_TRY", uint64(token.CKF_USER_PIN_FINAL_TRY), uint64(C.CKF_USER_PIN_FINAL_TRY)},
		{"CKF_USER_PIN_LOCKED", uint64(token.CKF_USER_PIN_LOCKED), uint64(C.CKF_USER_PIN_LOCKED)},
		{"CKF_RW_SESSION", uint64(token.CKF_RW_SESSION), uint64(C.CKF_RW_SESSION)},
		{"CKF_SERIAL_SESSION", uint64(token.CKF_SERIAL_SESSION), uint64(C.CKF_SERIAL_SESSION)},
		{"CKF_HW", uint64(token.CKF_HW), uint64(C.CKF_HW)},
		{"CKF_DIGEST", uint64(token.CKF_DIGEST), uint64(C.CKF_DIGEST)},
		{"CKF_SIGN", uint64(token.CKF_SIGN), uint64(C.CKF_SIGN)},
		{"CKF_VERIFY", uint64(token.CKF_VERIFY), uint64(C.CKF_VERIFY)},
		{"CKF_GENERATE_KEY_PAIR", uint64(token.CKF_GENERATE_KEY_PAIR), uint64(C.CKF_GENERATE_KEY_PAIR)},
		{"CKF_EC_F_P", uint64(token.CKF_EC_F_P), uint64(C.CKF_EC_F_P)},
		{"CKF_EC_NAMEDCURVE", uint64(token.CKF_EC_NAMEDCURVE), uint64(C.CKF_EC_NAMEDCURVE)},
		{"CKF_EC_UNCOMPRESS", uint64(token.CKF_EC_UNCOMPRESS), uint64(C.CKF_EC_UNCOMPRESS)},
		{"CKU_SO", uint64(token.CKU_SO), uint64(C.CKU_SO)},
		{"CKU_USER", uint64(token.CKU_USER), uint64(C.CKU_USER)},
		{"CKU_CONTEXT_SPECIFIC", uint64(token.CKU_CONTEXT_SPECIFIC), uint64(C.CKU_CONTEXT_SPECIFIC)},
		{"CKS_RO_PUBLIC_SESSION", uint64(token.CKS_RO_PUBLIC_SESSION), uint64(C.CKS_RO_PUBLIC_SESSION)},
		{"CKS_RO_USER_FUNCTIONS", uint64(token.CKS_RO_USER_FUNCTIONS), uint64(C.CKS_RO_USER_FUNCTIONS)},
		{"CKS_RW_PUBLIC_SESSION", uint64(token.CKS_RW_PUBLIC_SESSION), uint64(C.CKS_RW_PUBLIC_SESSION)},
		{"CKS_RW_USER_FUNCTIONS", uint64(token.CKS_RW_USER_FUNCTIONS), uint64(C.CKS_RW_USER_FUNCTIONS)},
	}
}
