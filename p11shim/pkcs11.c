/* The PKCS#11 v2.40 entry points of libtchsm.so and its CK_FUNCTION_LIST.
 *
 * Every function of the function list is defined here. The supported ones check that the
 * process is the one that loaded the library (a Go runtime does not survive fork: a child
 * calling into Go could hang, golang/go#12873) and forward to the Go export layer
 * (export.go); the others return CKR_FUNCTION_NOT_SUPPORTED. The function list is a static C
 * object: Go never writes Go pointers into C memory. */
#include <sys/types.h>
#include <unistd.h>

#include "tchsm.h"
#include "_cgo_export.h"

#define TCHSM_EXPORT __attribute__((visibility("default")))

static pid_t tchsm_load_pid;

/* Runs when the library is loaded, like the Go runtime's own initialisation. */
__attribute__((constructor)) static void tchsm_loaded(void)
{
	tchsm_load_pid = getpid();
}

static int tchsm_forked(void)
{
	return getpid() != tchsm_load_pid;
}

TCHSM_EXPORT CK_RV C_Initialize(CK_VOID_PTR pInitArgs)
{
	if (tchsm_forked()) {
		return CKR_GENERAL_ERROR;
	}
	return goInitialize(pInitArgs);
}

TCHSM_EXPORT CK_RV C_Finalize(CK_VOID_PTR pReserved)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goFinalize(pReserved);
}

TCHSM_EXPORT CK_RV C_GetInfo(CK_INFO_PTR pInfo)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goGetInfo(pInfo);
}

TCHSM_EXPORT CK_RV C_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goGetSlotList(tokenPresent, pSlotList, pulCount);
}

TCHSM_EXPORT CK_RV C_GetSlotInfo(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goGetSlotInfo(slotID, pInfo);
}

TCHSM_EXPORT CK_RV C_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goGetTokenInfo(slotID, pInfo);
}

TCHSM_EXPORT CK_RV C_GetMechanismList(CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList, CK_ULONG_PTR pulCount)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goGetMechanismList(slotID, pMechanismList, pulCount);
}

TCHSM_EXPORT CK_RV C_GetMechanismInfo(CK_SLOT_ID slotID, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR pInfo)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goGetMechanismInfo(slotID, type, pInfo);
}

TCHSM_EXPORT CK_RV C_InitToken(CK_SLOT_ID slotID, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pLabel)
{
	(void)slotID; (void)pPin; (void)ulPinLen; (void)pLabel;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_InitPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen)
{
	(void)hSession; (void)pPin; (void)ulPinLen;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_SetPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pOldPin, CK_ULONG ulOldLen, CK_UTF8CHAR_PTR pNewPin, CK_ULONG ulNewLen)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goSetPIN(hSession, pOldPin, ulOldLen, pNewPin, ulNewLen);
}

TCHSM_EXPORT CK_RV C_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, CK_NOTIFY Notify, CK_SESSION_HANDLE_PTR phSession)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goOpenSession(slotID, flags, pApplication, Notify, phSession);
}

TCHSM_EXPORT CK_RV C_CloseSession(CK_SESSION_HANDLE hSession)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goCloseSession(hSession);
}

TCHSM_EXPORT CK_RV C_CloseAllSessions(CK_SLOT_ID slotID)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goCloseAllSessions(slotID);
}

TCHSM_EXPORT CK_RV C_GetSessionInfo(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goGetSessionInfo(hSession, pInfo);
}

TCHSM_EXPORT CK_RV C_GetOperationState(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState, CK_ULONG_PTR pulOperationStateLen)
{
	(void)hSession; (void)pOperationState; (void)pulOperationStateLen;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_SetOperationState(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState, CK_ULONG ulOperationStateLen, CK_OBJECT_HANDLE hEncryptionKey, CK_OBJECT_HANDLE hAuthenticationKey)
{
	(void)hSession; (void)pOperationState; (void)ulOperationStateLen; (void)hEncryptionKey; (void)hAuthenticationKey;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goLogin(hSession, userType, pPin, ulPinLen);
}

TCHSM_EXPORT CK_RV C_Logout(CK_SESSION_HANDLE hSession)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goLogout(hSession);
}

TCHSM_EXPORT CK_RV C_CreateObject(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phObject)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goCreateObject(hSession, pTemplate, ulCount, phObject);
}

TCHSM_EXPORT CK_RV C_CopyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phNewObject)
{
	(void)hSession; (void)hObject; (void)pTemplate; (void)ulCount; (void)phNewObject;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_DestroyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goDestroyObject(hSession, hObject);
}

TCHSM_EXPORT CK_RV C_GetObjectSize(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ULONG_PTR pulSize)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goGetObjectSize(hSession, hObject, pulSize);
}

TCHSM_EXPORT CK_RV C_GetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goGetAttributeValue(hSession, hObject, pTemplate, ulCount);
}

TCHSM_EXPORT CK_RV C_SetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goSetAttributeValue(hSession, hObject, pTemplate, ulCount);
}

TCHSM_EXPORT CK_RV C_FindObjectsInit(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goFindObjectsInit(hSession, pTemplate, ulCount);
}

TCHSM_EXPORT CK_RV C_FindObjects(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phObject, CK_ULONG ulMaxObjectCount, CK_ULONG_PTR pulObjectCount)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goFindObjects(hSession, phObject, ulMaxObjectCount, pulObjectCount);
}

TCHSM_EXPORT CK_RV C_FindObjectsFinal(CK_SESSION_HANDLE hSession)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goFindObjectsFinal(hSession);
}

TCHSM_EXPORT CK_RV C_EncryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	(void)hSession; (void)pMechanism; (void)hKey;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_Encrypt(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pEncryptedData, CK_ULONG_PTR pulEncryptedDataLen)
{
	(void)hSession; (void)pData; (void)ulDataLen; (void)pEncryptedData; (void)pulEncryptedDataLen;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_EncryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen, CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen)
{
	(void)hSession; (void)pPart; (void)ulPartLen; (void)pEncryptedPart; (void)pulEncryptedPartLen;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_EncryptFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pLastEncryptedPart, CK_ULONG_PTR pulLastEncryptedPartLen)
{
	(void)hSession; (void)pLastEncryptedPart; (void)pulLastEncryptedPartLen;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_DecryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	(void)hSession; (void)pMechanism; (void)hKey;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_Decrypt(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedData, CK_ULONG ulEncryptedDataLen, CK_BYTE_PTR pData, CK_ULONG_PTR pulDataLen)
{
	(void)hSession; (void)pEncryptedData; (void)ulEncryptedDataLen; (void)pData; (void)pulDataLen;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_DecryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen)
{
	(void)hSession; (void)pEncryptedPart; (void)ulEncryptedPartLen; (void)pPart; (void)pulPartLen;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_DecryptFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pLastPart, CK_ULONG_PTR pulLastPartLen)
{
	(void)hSession; (void)pLastPart; (void)pulLastPartLen;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_DigestInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goDigestInit(hSession, pMechanism);
}

TCHSM_EXPORT CK_RV C_Digest(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pDigest, CK_ULONG_PTR pulDigestLen)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goDigest(hSession, pData, ulDataLen, pDigest, pulDigestLen);
}

TCHSM_EXPORT CK_RV C_DigestUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goDigestUpdate(hSession, pPart, ulPartLen);
}

TCHSM_EXPORT CK_RV C_DigestKey(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hKey)
{
	(void)hSession; (void)hKey;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_DigestFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pDigest, CK_ULONG_PTR pulDigestLen)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goDigestFinal(hSession, pDigest, pulDigestLen);
}

TCHSM_EXPORT CK_RV C_SignInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goSignInit(hSession, pMechanism, hKey);
}

TCHSM_EXPORT CK_RV C_Sign(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goSign(hSession, pData, ulDataLen, pSignature, pulSignatureLen);
}

TCHSM_EXPORT CK_RV C_SignUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goSignUpdate(hSession, pPart, ulPartLen);
}

TCHSM_EXPORT CK_RV C_SignFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goSignFinal(hSession, pSignature, pulSignatureLen);
}

TCHSM_EXPORT CK_RV C_SignRecoverInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	(void)hSession; (void)pMechanism; (void)hKey;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_SignRecover(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
	(void)hSession; (void)pData; (void)ulDataLen; (void)pSignature; (void)pulSignatureLen;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_VerifyInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goVerifyInit(hSession, pMechanism, hKey);
}

TCHSM_EXPORT CK_RV C_Verify(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goVerify(hSession, pData, ulDataLen, pSignature, ulSignatureLen);
}

TCHSM_EXPORT CK_RV C_VerifyUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goVerifyUpdate(hSession, pPart, ulPartLen);
}

TCHSM_EXPORT CK_RV C_VerifyFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goVerifyFinal(hSession, pSignature, ulSignatureLen);
}

TCHSM_EXPORT CK_RV C_VerifyRecoverInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	(void)hSession; (void)pMechanism; (void)hKey;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_VerifyRecover(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen, CK_BYTE_PTR pData, CK_ULONG_PTR pulDataLen)
{
	(void)hSession; (void)pSignature; (void)ulSignatureLen; (void)pData; (void)pulDataLen;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_DigestEncryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen, CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen)
{
	(void)hSession; (void)pPart; (void)ulPartLen; (void)pEncryptedPart; (void)pulEncryptedPartLen;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_DecryptDigestUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen)
{
	(void)hSession; (void)pEncryptedPart; (void)ulEncryptedPartLen; (void)pPart; (void)pulPartLen;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_SignEncryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen, CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen)
{
	(void)hSession; (void)pPart; (void)ulPartLen; (void)pEncryptedPart; (void)pulEncryptedPartLen;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_DecryptVerifyUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen)
{
	(void)hSession; (void)pEncryptedPart; (void)ulEncryptedPartLen; (void)pPart; (void)pulPartLen;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_GenerateKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phKey)
{
	(void)hSession; (void)pMechanism; (void)pTemplate; (void)ulCount; (void)phKey;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_GenerateKeyPair(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_ATTRIBUTE_PTR pPublicKeyTemplate, CK_ULONG ulPublicKeyAttributeCount, CK_ATTRIBUTE_PTR pPrivateKeyTemplate, CK_ULONG ulPrivateKeyAttributeCount, CK_OBJECT_HANDLE_PTR phPublicKey, CK_OBJECT_HANDLE_PTR phPrivateKey)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goGenerateKeyPair(hSession, pMechanism, pPublicKeyTemplate, ulPublicKeyAttributeCount, pPrivateKeyTemplate, ulPrivateKeyAttributeCount, phPublicKey, phPrivateKey);
}

TCHSM_EXPORT CK_RV C_WrapKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hWrappingKey, CK_OBJECT_HANDLE hKey, CK_BYTE_PTR pWrappedKey, CK_ULONG_PTR pulWrappedKeyLen)
{
	(void)hSession; (void)pMechanism; (void)hWrappingKey; (void)hKey; (void)pWrappedKey; (void)pulWrappedKeyLen;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_UnwrapKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hUnwrappingKey, CK_BYTE_PTR pWrappedKey, CK_ULONG ulWrappedKeyLen, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey)
{
	(void)hSession; (void)pMechanism; (void)hUnwrappingKey; (void)pWrappedKey; (void)ulWrappedKeyLen; (void)pTemplate; (void)ulAttributeCount; (void)phKey;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_DeriveKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hBaseKey, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey)
{
	(void)hSession; (void)pMechanism; (void)hBaseKey; (void)pTemplate; (void)ulAttributeCount; (void)phKey;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

TCHSM_EXPORT CK_RV C_SeedRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSeed, CK_ULONG ulSeedLen)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goSeedRandom(hSession, pSeed, ulSeedLen);
}

TCHSM_EXPORT CK_RV C_GenerateRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR RandomData, CK_ULONG ulRandomLen)
{
	if (tchsm_forked()) {
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return goGenerateRandom(hSession, RandomData, ulRandomLen);
}

TCHSM_EXPORT CK_RV C_GetFunctionStatus(CK_SESSION_HANDLE hSession)
{
	(void)hSession;
	return CKR_FUNCTION_NOT_PARALLEL; /* legacy functions, PKCS#11 v2.40 section 5.16 */
}

TCHSM_EXPORT CK_RV C_CancelFunction(CK_SESSION_HANDLE hSession)
{
	(void)hSession;
	return CKR_FUNCTION_NOT_PARALLEL; /* legacy functions, PKCS#11 v2.40 section 5.16 */
}

TCHSM_EXPORT CK_RV C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR pSlot, CK_VOID_PTR pRserved)
{
	(void)flags; (void)pSlot; (void)pRserved;
	return CKR_FUNCTION_NOT_SUPPORTED;
}

static CK_FUNCTION_LIST tchsm_function_list = {
	{ CRYPTOKI_VERSION_MAJOR, CRYPTOKI_VERSION_MINOR },
#define CK_PKCS11_FUNCTION_INFO(name) name,
#include "pkcs11f.h"
#undef CK_PKCS11_FUNCTION_INFO
};

TCHSM_EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList)
{
	if (ppFunctionList == NULL_PTR) {
		return CKR_ARGUMENTS_BAD;
	}
	*ppFunctionList = &tchsm_function_list;
	return CKR_OK;
}
