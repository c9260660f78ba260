/* PKCS#11 3.0 names tchsm needs that the vendored v2.40 headers lack, with the values of the
 * PKCS#11 Specification Version 3.0 (OASIS Standard, 15 June 2020), pkcs11t.h. Each is defined
 * only if the headers in use do not already define it, so a v3.0 pkcs11t.h wins. */
#ifndef TCHSM_PKCS11_V3_EXT_H
#define TCHSM_PKCS11_V3_EXT_H

#ifndef CKK_EC_EDWARDS
#define CKK_EC_EDWARDS              0x00000040UL
#endif
#ifndef CKM_EC_EDWARDS_KEY_PAIR_GEN
#define CKM_EC_EDWARDS_KEY_PAIR_GEN 0x00001055UL
#endif
#ifndef CKM_EDDSA
#define CKM_EDDSA                   0x00001057UL
#endif

/* CK_EDDSA_PARAMS (PKCS#11 3.0 current mechanisms, section 2.3.14), under a name of tchsm's own
 * so that a v3.0 pkcs11t.h, which defines CK_EDDSA_PARAMS, does not clash with it. The layout is
 * the standard's. */
typedef struct tchsm_eddsa_params {
  CK_BBOOL    phFlag;
  CK_ULONG    ulContextDataLen;
  CK_BYTE_PTR pContextData;
} tchsm_eddsa_params;

#endif
