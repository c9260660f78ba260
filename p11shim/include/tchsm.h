/* Platform macros for the OASIS PKCS#11 v2.40 headers on Unix (pkcs11.h, "Before including
 * this file ... 5 platform-specific macros must be defined"), then the headers themselves and
 * the PKCS#11 3.0 names they lack (pkcs11_v3_ext.h). */
#ifndef TCHSM_H
#define TCHSM_H

#define CK_PTR *
#define CK_DEFINE_FUNCTION(returnType, name) returnType name
#define CK_DECLARE_FUNCTION(returnType, name) returnType name
#define CK_DECLARE_FUNCTION_POINTER(returnType, name) returnType (* name)
#define CK_CALLBACK_FUNCTION(returnType, name) returnType (* name)
#ifndef NULL_PTR
#define NULL_PTR 0
#endif

#include "pkcs11.h"
#include "pkcs11_v3_ext.h"

#endif
