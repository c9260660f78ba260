package main

/*
#cgo CFLAGS: -I${SRCDIR}/include
#include <stdlib.h>
#include "tchsm.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime/debug"
	"unsafe"

	"github.com/tchsm/tchsm/p11shim/token"
)

// The functions below are the Go side of the entry points in pkcs11.c. Each one recovers from
// panics (a panic in a c-shared library would kill the host daemon), checks its pointer
// arguments, copies inputs into Go memory, calls the token and writes results into the caller's
// buffers. No C pointer is kept after a call returns and no Go pointer is stored in C memory.

// rvTable maps the token's sentinel errors to CKR_* values. Order matters where one error wraps
// two sentinels: the first match wins.
var rvTable = []struct {
	err error
	rv  C.CK_RV
}{
	{errNotInitialized, C.CKR_CRYPTOKI_NOT_INITIALIZED},
	{errAlreadyInitialized, C.CKR_CRYPTOKI_ALREADY_INITIALIZED},
	{errCantLock, C.CKR_CANT_LOCK},
	{token.ErrClosed, C.CKR_CRYPTOKI_NOT_INITIALIZED},
	{token.ErrConfig, C.CKR_FUNCTION_FAILED},
	{token.ErrArgumentsBad, C.CKR_ARGUMENTS_BAD},
	{token.ErrSlotIDInvalid, C.CKR_SLOT_ID_INVALID},
	{token.ErrSessionHandleInvalid, C.CKR_SESSION_HANDLE_INVALID},
	{token.ErrSessionClosed, C.CKR_SESSION_CLOSED},
	{token.ErrSessionParallelNotSupported, C.CKR_SESSION_PARALLEL_NOT_SUPPORTED},
	{token.ErrSessionReadOnly, C.CKR_SESSION_READ_ONLY},
	{token.ErrSessionCount, C.CKR_SESSION_COUNT},
	{token.ErrUserNotLoggedIn, C.CKR_USER_NOT_LOGGED_IN},
	{token.ErrUserAlreadyLoggedIn, C.CKR_USER_ALREADY_LOGGED_IN},
	{token.ErrUserTypeInvalid, C.CKR_USER_TYPE_INVALID},
	{token.ErrUserPINNotInitialized, C.CKR_USER_PIN_NOT_INITIALIZED},
	{token.ErrPINIncorrect, C.CKR_PIN_INCORRECT},
	{token.ErrPINLocked, C.CKR_PIN_LOCKED},
	{token.ErrPINLenRange, C.CKR_PIN_LEN_RANGE},
	{token.ErrKeyHandleInvalid, C.CKR_KEY_HANDLE_INVALID},
	{token.ErrObjectHandleInvalid, C.CKR_OBJECT_HANDLE_INVALID},
	{token.ErrKeyTypeInconsistent, C.CKR_KEY_TYPE_INCONSISTENT},
	{token.ErrKeyFunctionNotPermitted, C.CKR_KEY_FUNCTION_NOT_PERMITTED},
	{token.ErrKeySizeRange, C.CKR_KEY_SIZE_RANGE},
	{token.ErrCurveNotSupported, C.CKR_CURVE_NOT_SUPPORTED},
	{token.ErrMechanismInvalid, C.CKR_MECHANISM_INVALID},
	{token.ErrMechanismParamInvalid, C.CKR_MECHANISM_PARAM_INVALID},
	{token.ErrOperationActive, C.CKR_OPERATION_ACTIVE},
	{token.ErrOperationNotInitialized, C.CKR_OPERATION_NOT_INITIALIZED},
	{token.ErrDataLenRange, C.CKR_DATA_LEN_RANGE},
	{token.ErrBufferTooSmall, C.CKR_BUFFER_TOO_SMALL},
	{token.ErrSignatureInvalid, C.CKR_SIGNATURE_INVALID},
	{token.ErrSignatureLenRange, C.CKR_SIGNATURE_LEN_RANGE},
	{token.ErrAttributeSensitive, C.CKR_ATTRIBUTE_SENSITIVE},
	{token.ErrAttributeTypeInvalid, C.CKR_ATTRIBUTE_TYPE_INVALID},
	{token.ErrDeviceMemory, C.CKR_DEVICE_MEMORY},
	{token.ErrAttributeValueInvalid, C.CKR_ATTRIBUTE_VALUE_INVALID},
	{token.ErrTemplateIncomplete, C.CKR_TEMPLATE_INCOMPLETE},
	{token.ErrTemplateInconsistent, C.CKR_TEMPLATE_INCONSISTENT},
	{token.ErrActionProhibited, C.CKR_ACTION_PROHIBITED},
	{token.ErrDeviceError, C.CKR_DEVICE_ERROR},
	{token.ErrFunctionRejected, C.CKR_FUNCTION_REJECTED},
	{token.ErrFunctionNotSupported, C.CKR_FUNCTION_NOT_SUPPORTED},
	{token.ErrRandomSeedNotSupported, C.CKR_RANDOM_SEED_NOT_SUPPORTED},
}

func rvOf(err error) C.CK_RV {
	if err == nil {
		return C.CKR_OK
	}
	for _, e := range rvTable {
		if errors.Is(err, e.err) {
			return e.rv
		}
	}
	return C.CKR_GENERAL_ERROR
}

// Errors of this layer.
var (
	errArgs      = token.ErrArgumentsBad
	errCantLock  = errors.New("p11shim: application mutexes without CKF_OS_LOCKING_OK")
	errULongSize = errors.New("p11shim: CK_ULONG size differs from the Go build's")
)

// finish turns err into a CK_RV, logging failures. It is deferred by every export together
// with the panic recovery.
func finish(fn string, rv *C.CK_RV, err *error) {
	if r := recover(); r != nil {
		*rv = C.CKR_GENERAL_ERROR
		if m, _ := active(); m != nil {
			m.log.Error("panic in "+fn, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
		return
	}
	*rv = rvOf(*err)
	if *err == nil {
		return
	}
	m, _ := active()
	if m == nil {
		return
	}
	switch *rv {
	case C.CKR_BUFFER_TOO_SMALL:
	case C.CKR_DEVICE_ERROR, C.CKR_GENERAL_ERROR, C.CKR_FUNCTION_FAILED:
		m.log.Warn(fn, "rv", fmt.Sprintf("%#x", uint64(*rv)), "err", (*err).Error())
	default:
		m.log.Debug(fn, "rv", fmt.Sprintf("%#x", uint64(*rv)), "err", (*err).Error())
	}
}

func tok() (*token.Token, error) {
	m, err := active()
	if err != nil {
		return nil, err
	}
	return m.tok, nil
}

// maxInput bounds the length of any input buffer copied in; maxPINInput that of a PIN.
const (
	maxInput    = 1 << 30
	maxPINInput = 4096
)

// bytesIn copies n bytes at p into Go memory.
func bytesIn(p C.CK_BYTE_PTR, n C.CK_ULONG) ([]byte, error) {
	if n == 0 {
		return []byte{}, nil
	}
	if p == nil || uint64(n) > maxInput {
		return nil, errArgs
	}
	return C.GoBytes(unsafe.Pointer(p), C.int(n)), nil
}

// bytesOut copies b to p, which the caller has checked holds at least len(b) bytes.
func bytesOut(p unsafe.Pointer, b []byte) {
	if len(b) > 0 {
		copy(unsafe.Slice((*byte)(p), len(b)), b)
	}
}

// fixed writes s space-padded into a CK_UTF8CHAR array of n bytes.
func fixed(p *C.CK_UTF8CHAR, n int, s string) {
	bytesOut(unsafe.Pointer(p), token.Pad(s, n))
}

// templateIn copies a template (C_FindObjectsInit, C_GenerateKeyPair) into Go memory.
func templateIn(p C.CK_ATTRIBUTE_PTR, n C.CK_ULONG) ([]token.Attribute, error) {
	if n == 0 {
		return nil, nil
	}
	if p == nil || uint64(n) > 1<<16 {
		return nil, errArgs
	}
	in := unsafe.Slice(p, int(n))
	out := make([]token.Attribute, len(in))
	for i, a := range in {
		v, err := bytesIn(C.CK_BYTE_PTR(a.pValue), a.ulValueLen)
		if err != nil {
			return nil, err
		}
		out[i] = token.Attribute{Type: uint(a._type), Value: v}
	}
	return out, nil
}

// mechanismIn copies a CK_MECHANISM. Its parameter is read only for a mechanism that defines
// one (token.TakesParam): for the others callers leave pParameter and ulParameterLen as they
// please (PowerDNS leaves them uninitialised in C_DigestInit), and SoftHSM2 ignores them too.
func mechanismIn(p C.CK_MECHANISM_PTR) (token.Mechanism, error) {
	if p == nil {
		return token.Mechanism{}, errArgs
	}
	m := token.Mechanism{Type: uint(p.mechanism)}
	if !token.TakesParam(m.Type) {
		return m, nil
	}
	if m.Type == token.CKM_EDDSA {
		ep, err := eddsaParamsIn(unsafe.Pointer(p.pParameter), p.ulParameterLen)
		if err != nil {
			return token.Mechanism{}, err
		}
		m.EdDSA = ep
		return m, nil
	}
	param, err := bytesIn(C.CK_BYTE_PTR(p.pParameter), p.ulParameterLen)
	if err != nil {
		return token.Mechanism{}, err
	}
	m.Param = param
	return m, nil
}

// eddsaParamsIn reads CKM_EDDSA's optional CK_EDDSA_PARAMS: none when ulParameterLen is 0
// (whatever pParameter is); otherwise exactly one structure, whose context is copied in.
// RFC 8032 contexts are at most 255 bytes. The token decides what it implements.
func eddsaParamsIn(p unsafe.Pointer, n C.CK_ULONG) (*token.EdDSAParams, error) {
	if n == 0 {
		return nil, nil
	}
	if p == nil || n != C.sizeof_tchsm_eddsa_params {
		return nil, fmt.Errorf("%w: CKM_EDDSA parameter of %d bytes is not a CK_EDDSA_PARAMS", token.ErrMechanismParamInvalid, n)
	}
	ep := (*C.tchsm_eddsa_params)(p)
	if ep.ulContextDataLen > 255 {
		return nil, fmt.Errorf("%w: EdDSA context of %d bytes", token.ErrMechanismParamInvalid, ep.ulContextDataLen)
	}
	ctx, err := bytesIn(ep.pContextData, ep.ulContextDataLen)
	if err != nil {
		return nil, fmt.Errorf("%w: EdDSA context pointer is NULL", token.ErrMechanismParamInvalid)
	}
	return &token.EdDSAParams{PHFlag: ep.phFlag != 0, Context: ctx}, nil
}

// output implements the variable-length output convention (PKCS#11 v2.40 section 5.2) for the
// result of a token call: out is the result (nil for a length query), n its length, err the
// token's error (token.ErrBufferTooSmall for a short buffer).
func output(p C.CK_BYTE_PTR, pLen C.CK_ULONG_PTR, out []byte, n uint, err error) error {
	if err != nil && !errors.Is(err, token.ErrBufferTooSmall) {
		return err
	}
	*pLen = C.CK_ULONG(n)
	if err != nil || p == nil {
		return err
	}
	bytesOut(unsafe.Pointer(p), out)
	*pLen = C.CK_ULONG(len(out))
	return nil
}

// ---- general purpose ----

//export goInitialize
func goInitialize(pInitArgs C.CK_VOID_PTR) (rv C.CK_RV) {
	var err error
	defer finish("C_Initialize", &rv, &err)
	if C.sizeof_CK_ULONG != token.ULongSize {
		err = errULongSize
		return
	}
	if pInitArgs != nil {
		args := (*C.CK_C_INITIALIZE_ARGS)(unsafe.Pointer(pInitArgs))
		if args.pReserved != nil {
			err = errArgs
			return
		}
		set := 0
		for _, f := range []unsafe.Pointer{unsafe.Pointer(args.CreateMutex), unsafe.Pointer(args.DestroyMutex),
			unsafe.Pointer(args.LockMutex), unsafe.Pointer(args.UnlockMutex)} {
			if f != nil {
				set++
			}
		}
		if set != 0 && set != 4 {
			err = errArgs
			return
		}
		// CKF_LIBRARY_CANT_CREATE_OS_THREADS (p11-kit, and so GnuTLS, Knot and PowerDNS, always
		// set it) is accepted: a Go c-shared library started its runtime's threads when it was
		// loaded, before C_Initialize, and refusing the flag now would protect nothing.
		if set == 4 && args.flags&C.CKF_OS_LOCKING_OK == 0 {
			// The application demands its own mutexes; Go synchronises with its own.
			err = errCantLock
			return
		}
	}
	err = initialize(configPath())
	return
}

// configPath returns $TCHSM_CONFIG or the default. It asks the C library, not the Go runtime:
// the host may have set the variable after loading the module, when the Go runtime had already
// copied the environment.
func configPath() string {
	name := C.CString("TCHSM_CONFIG")
	defer C.free(unsafe.Pointer(name))
	if v := C.getenv(name); v != nil {
		if p := C.GoString(v); p != "" {
			return p
		}
	}
	return DefaultConfigPath
}

//export goFinalize
func goFinalize(pReserved C.CK_VOID_PTR) (rv C.CK_RV) {
	var err error
	defer finish("C_Finalize", &rv, &err)
	if pReserved != nil {
		err = errArgs
		return
	}
	err = finalize()
	return
}

//export goGetInfo
func goGetInfo(pInfo C.CK_INFO_PTR) (rv C.CK_RV) {
	var err error
	defer finish("C_GetInfo", &rv, &err)
	if _, err = tok(); err != nil {
		return
	}
	if pInfo == nil {
		err = errArgs
		return
	}
	li := token.LibraryInfo()
	pInfo.cryptokiVersion = C.CK_VERSION{major: 2, minor: 40}
	fixed(&pInfo.manufacturerID[0], len(pInfo.manufacturerID), li.Manufacturer)
	pInfo.flags = 0
	fixed(&pInfo.libraryDescription[0], len(pInfo.libraryDescription), li.Description)
	pInfo.libraryVersion = C.CK_VERSION{major: C.CK_BYTE(li.Version[0]), minor: C.CK_BYTE(li.Version[1])}
	return
}

// ---- slots and tokens ----

//export goGetSlotList
func goGetSlotList(tokenPresent C.CK_BBOOL, pSlotList C.CK_SLOT_ID_PTR, pulCount C.CK_ULONG_PTR) (rv C.CK_RV) {
	var err error
	defer finish("C_GetSlotList", &rv, &err)
	if _, err = tok(); err != nil {
		return
	}
	if pulCount == nil {
		err = errArgs
		return
	}
	if pSlotList != nil {
		if *pulCount < 1 {
			*pulCount = 1
			err = token.ErrBufferTooSmall
			return
		}
		*pSlotList = C.CK_SLOT_ID(token.SlotID)
	}
	*pulCount = 1
	return
}

//export goGetSlotInfo
func goGetSlotInfo(slotID C.CK_SLOT_ID, pInfo C.CK_SLOT_INFO_PTR) (rv C.CK_RV) {
	var err error
	defer finish("C_GetSlotInfo", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	if pInfo == nil {
		err = errArgs
		return
	}
	si, flags, err := t.SlotInfo(uint(slotID))
	if err != nil {
		return
	}
	fixed(&pInfo.slotDescription[0], len(pInfo.slotDescription), si.Description)
	fixed(&pInfo.manufacturerID[0], len(pInfo.manufacturerID), si.Manufacturer)
	pInfo.flags = C.CK_FLAGS(flags)
	pInfo.hardwareVersion = C.CK_VERSION{major: C.CK_BYTE(si.Version[0]), minor: C.CK_BYTE(si.Version[1])}
	pInfo.firmwareVersion = pInfo.hardwareVersion
	return
}

//export goGetTokenInfo
func goGetTokenInfo(slotID C.CK_SLOT_ID, pInfo C.CK_TOKEN_INFO_PTR) (rv C.CK_RV) {
	var err error
	defer finish("C_GetTokenInfo", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	if pInfo == nil {
		err = errArgs
		return
	}
	ti, err := t.TokenInfo(uint(slotID))
	if err != nil {
		return
	}
	fixed(&pInfo.label[0], len(pInfo.label), ti.Label)
	fixed(&pInfo.manufacturerID[0], len(pInfo.manufacturerID), ti.Manufacturer)
	fixed(&pInfo.model[0], len(pInfo.model), ti.Model)
	bytesOut(unsafe.Pointer(&pInfo.serialNumber[0]), token.Pad(ti.Serial, len(pInfo.serialNumber)))
	pInfo.flags = C.CK_FLAGS(ti.Flags)
	pInfo.ulMaxSessionCount = C.CK_EFFECTIVELY_INFINITE
	pInfo.ulSessionCount = C.CK_ULONG(ti.SessionCount)
	pInfo.ulMaxRwSessionCount = C.CK_EFFECTIVELY_INFINITE
	pInfo.ulRwSessionCount = C.CK_ULONG(ti.RWSessionCount)
	pInfo.ulMaxPinLen = C.CK_ULONG(ti.MaxPINLen)
	pInfo.ulMinPinLen = C.CK_ULONG(ti.MinPINLen)
	pInfo.ulTotalPublicMemory = C.CK_UNAVAILABLE_INFORMATION
	pInfo.ulFreePublicMemory = C.CK_UNAVAILABLE_INFORMATION
	pInfo.ulTotalPrivateMemory = C.CK_UNAVAILABLE_INFORMATION
	pInfo.ulFreePrivateMemory = C.CK_UNAVAILABLE_INFORMATION
	pInfo.hardwareVersion = C.CK_VERSION{major: C.CK_BYTE(ti.HardwareVersion[0]), minor: C.CK_BYTE(ti.HardwareVersion[1])}
	pInfo.firmwareVersion = C.CK_VERSION{major: C.CK_BYTE(ti.FirmwareVersion[0]), minor: C.CK_BYTE(ti.FirmwareVersion[1])}
	bytesOut(unsafe.Pointer(&pInfo.utcTime[0]), token.Pad("", len(pInfo.utcTime)))
	return
}

//export goGetMechanismList
func goGetMechanismList(slotID C.CK_SLOT_ID, pMechanismList C.CK_MECHANISM_TYPE_PTR, pulCount C.CK_ULONG_PTR) (rv C.CK_RV) {
	var err error
	defer finish("C_GetMechanismList", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	if pulCount == nil {
		err = errArgs
		return
	}
	ms, err := t.Mechanisms(uint(slotID))
	if err != nil {
		return
	}
	if pMechanismList != nil {
		if uint64(*pulCount) < uint64(len(ms)) {
			*pulCount = C.CK_ULONG(len(ms))
			err = token.ErrBufferTooSmall
			return
		}
		out := unsafe.Slice(pMechanismList, len(ms))
		for i, m := range ms {
			out[i] = C.CK_MECHANISM_TYPE(m)
		}
	}
	*pulCount = C.CK_ULONG(len(ms))
	return
}

//export goGetMechanismInfo
func goGetMechanismInfo(slotID C.CK_SLOT_ID, typ C.CK_MECHANISM_TYPE, pInfo C.CK_MECHANISM_INFO_PTR) (rv C.CK_RV) {
	var err error
	defer finish("C_GetMechanismInfo", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	if pInfo == nil {
		err = errArgs
		return
	}
	mi, err := t.Mechanism(uint(slotID), uint(typ))
	if err != nil {
		return
	}
	pInfo.ulMinKeySize = C.CK_ULONG(mi.MinKeySize)
	pInfo.ulMaxKeySize = C.CK_ULONG(mi.MaxKeySize)
	pInfo.flags = C.CK_FLAGS(mi.Flags)
	return
}

// ---- sessions ----

//export goOpenSession
func goOpenSession(slotID C.CK_SLOT_ID, flags C.CK_FLAGS, pApplication C.CK_VOID_PTR, notify C.CK_NOTIFY, phSession C.CK_SESSION_HANDLE_PTR) (rv C.CK_RV) {
	var err error
	defer finish("C_OpenSession", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	if phSession == nil {
		err = errArgs
		return
	}
	// Notification callbacks are never called: the token raises no events.
	h, err := t.OpenSession(uint(slotID), uint(flags))
	if err != nil {
		return
	}
	*phSession = C.CK_SESSION_HANDLE(h)
	return
}

//export goCloseSession
func goCloseSession(hSession C.CK_SESSION_HANDLE) (rv C.CK_RV) {
	var err error
	defer finish("C_CloseSession", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	err = t.CloseSession(uint(hSession))
	return
}

//export goCloseAllSessions
func goCloseAllSessions(slotID C.CK_SLOT_ID) (rv C.CK_RV) {
	var err error
	defer finish("C_CloseAllSessions", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	err = t.CloseAllSessions(uint(slotID))
	return
}

//export goGetSessionInfo
func goGetSessionInfo(hSession C.CK_SESSION_HANDLE, pInfo C.CK_SESSION_INFO_PTR) (rv C.CK_RV) {
	var err error
	defer finish("C_GetSessionInfo", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	if pInfo == nil {
		err = errArgs
		return
	}
	si, err := t.SessionInfo(uint(hSession))
	if err != nil {
		return
	}
	pInfo.slotID = C.CK_SLOT_ID(si.SlotID)
	pInfo.state = C.CK_STATE(si.State)
	pInfo.flags = C.CK_FLAGS(si.Flags)
	pInfo.ulDeviceError = 0
	return
}

//export goLogin
func goLogin(hSession C.CK_SESSION_HANDLE, userType C.CK_USER_TYPE, pPin C.CK_UTF8CHAR_PTR, ulPinLen C.CK_ULONG) (rv C.CK_RV) {
	var err error
	defer finish("C_Login", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	if pPin == nil {
		// No protected authentication path (CKF_PROTECTED_AUTHENTICATION_PATH is not set).
		err = errArgs
		return
	}
	if uint64(ulPinLen) > maxPINInput {
		// Do not read an absurd length from the caller's memory; no such PIN is right.
		err = token.ErrPINIncorrect
		return
	}
	pin, err := bytesIn(C.CK_BYTE_PTR(pPin), ulPinLen)
	if err != nil {
		return
	}
	err = t.Login(uint(hSession), uint(userType), pin)
	clear(pin)
	return
}

//export goSetPIN
func goSetPIN(hSession C.CK_SESSION_HANDLE, pOldPin C.CK_UTF8CHAR_PTR, ulOldLen C.CK_ULONG, pNewPin C.CK_UTF8CHAR_PTR, ulNewLen C.CK_ULONG) (rv C.CK_RV) {
	var err error
	defer finish("C_SetPIN", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	if pOldPin == nil || pNewPin == nil {
		err = errArgs
		return
	}
	if uint64(ulOldLen) > maxPINInput {
		err = token.ErrPINIncorrect
		return
	}
	if uint64(ulNewLen) > maxPINInput {
		err = token.ErrPINLenRange
		return
	}
	oldPIN, err := bytesIn(C.CK_BYTE_PTR(pOldPin), ulOldLen)
	if err != nil {
		return
	}
	defer clear(oldPIN)
	newPIN, err := bytesIn(C.CK_BYTE_PTR(pNewPin), ulNewLen)
	if err != nil {
		return
	}
	defer clear(newPIN)
	err = t.SetPIN(uint(hSession), oldPIN, newPIN)
	return
}

//export goLogout
func goLogout(hSession C.CK_SESSION_HANDLE) (rv C.CK_RV) {
	var err error
	defer finish("C_Logout", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	err = t.Logout(uint(hSession))
	return
}

// ---- objects ----

//export goDestroyObject
func goDestroyObject(hSession C.CK_SESSION_HANDLE, hObject C.CK_OBJECT_HANDLE) (rv C.CK_RV) {
	var err error
	defer finish("C_DestroyObject", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	err = t.DestroyObject(uint(hSession), uint(hObject))
	return
}

//export goGetObjectSize
func goGetObjectSize(hSession C.CK_SESSION_HANDLE, hObject C.CK_OBJECT_HANDLE, pulSize C.CK_ULONG_PTR) (rv C.CK_RV) {
	var err error
	defer finish("C_GetObjectSize", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	if pulSize == nil {
		err = errArgs
		return
	}
	n, err := t.ObjectSize(uint(hSession), uint(hObject))
	if err != nil {
		return
	}
	*pulSize = C.CK_ULONG(n)
	return
}

//export goGetAttributeValue
func goGetAttributeValue(hSession C.CK_SESSION_HANDLE, hObject C.CK_OBJECT_HANDLE, pTemplate C.CK_ATTRIBUTE_PTR, ulCount C.CK_ULONG) (rv C.CK_RV) {
	var err error
	defer finish("C_GetAttributeValue", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	if (pTemplate == nil && ulCount > 0) || uint64(ulCount) > 1<<16 {
		err = errArgs
		return
	}
	var tmpl []C.CK_ATTRIBUTE
	if ulCount > 0 {
		tmpl = unsafe.Slice(pTemplate, int(ulCount))
	}
	slots := make([]token.AttrSlot, len(tmpl))
	for i, a := range tmpl {
		slots[i] = token.AttrSlot{Type: uint(a._type), HasBuf: a.pValue != nil, BufLen: uint(a.ulValueLen)}
	}
	err = t.GetAttributeValue(uint(hSession), uint(hObject), slots)
	if err != nil && !errors.Is(err, token.ErrAttributeSensitive) && !errors.Is(err, token.ErrAttributeTypeInvalid) &&
		!errors.Is(err, token.ErrBufferTooSmall) {
		return
	}
	for i := range tmpl {
		if slots[i].Value != nil {
			bytesOut(unsafe.Pointer(tmpl[i].pValue), slots[i].Value)
		}
		tmpl[i].ulValueLen = C.CK_ULONG(slots[i].Len)
	}
	return
}

//export goSetAttributeValue
func goSetAttributeValue(hSession C.CK_SESSION_HANDLE, hObject C.CK_OBJECT_HANDLE, pTemplate C.CK_ATTRIBUTE_PTR, ulCount C.CK_ULONG) (rv C.CK_RV) {
	var err error
	defer finish("C_SetAttributeValue", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	tmpl, err := templateIn(pTemplate, ulCount)
	if err != nil {
		return
	}
	err = t.SetAttributeValue(uint(hSession), uint(hObject), tmpl)
	return
}

//export goFindObjectsInit
func goFindObjectsInit(hSession C.CK_SESSION_HANDLE, pTemplate C.CK_ATTRIBUTE_PTR, ulCount C.CK_ULONG) (rv C.CK_RV) {
	var err error
	defer finish("C_FindObjectsInit", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	tmpl, err := templateIn(pTemplate, ulCount)
	if err != nil {
		return
	}
	err = t.FindObjectsInit(uint(hSession), tmpl)
	return
}

//export goFindObjects
func goFindObjects(hSession C.CK_SESSION_HANDLE, phObject C.CK_OBJECT_HANDLE_PTR, ulMaxObjectCount C.CK_ULONG, pulObjectCount C.CK_ULONG_PTR) (rv C.CK_RV) {
	var err error
	defer finish("C_FindObjects", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	if pulObjectCount == nil || (phObject == nil && ulMaxObjectCount > 0) {
		err = errArgs
		return
	}
	max := min(uint64(ulMaxObjectCount), 1<<20)
	hs, err := t.FindObjects(uint(hSession), int(max))
	if err != nil {
		return
	}
	if len(hs) > 0 {
		out := unsafe.Slice(phObject, len(hs))
		for i, h := range hs {
			out[i] = C.CK_OBJECT_HANDLE(h)
		}
	}
	*pulObjectCount = C.CK_ULONG(len(hs))
	return
}

//export goFindObjectsFinal
func goFindObjectsFinal(hSession C.CK_SESSION_HANDLE) (rv C.CK_RV) {
	var err error
	defer finish("C_FindObjectsFinal", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	err = t.FindObjectsFinal(uint(hSession))
	return
}

//export goGenerateKeyPair
func goGenerateKeyPair(hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR,
	pPublicKeyTemplate C.CK_ATTRIBUTE_PTR, ulPublicKeyAttributeCount C.CK_ULONG,
	pPrivateKeyTemplate C.CK_ATTRIBUTE_PTR, ulPrivateKeyAttributeCount C.CK_ULONG,
	phPublicKey C.CK_OBJECT_HANDLE_PTR, phPrivateKey C.CK_OBJECT_HANDLE_PTR) (rv C.CK_RV) {
	var err error
	defer finish("C_GenerateKeyPair", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	if phPublicKey == nil || phPrivateKey == nil {
		err = errArgs
		return
	}
	mech, err := mechanismIn(pMechanism)
	if err != nil {
		return
	}
	pubT, err := templateIn(pPublicKeyTemplate, ulPublicKeyAttributeCount)
	if err != nil {
		return
	}
	privT, err := templateIn(pPrivateKeyTemplate, ulPrivateKeyAttributeCount)
	if err != nil {
		return
	}
	pub, priv, err := t.GenerateKeyPair(uint(hSession), mech, pubT, privT)
	if err != nil {
		return
	}
	*phPublicKey = C.CK_OBJECT_HANDLE(pub)
	*phPrivateKey = C.CK_OBJECT_HANDLE(priv)
	return
}

//export goCreateObject
func goCreateObject(hSession C.CK_SESSION_HANDLE, pTemplate C.CK_ATTRIBUTE_PTR, ulCount C.CK_ULONG, phObject C.CK_OBJECT_HANDLE_PTR) (rv C.CK_RV) {
	var err error
	defer finish("C_CreateObject", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	if phObject == nil {
		err = errArgs
		return
	}
	tmpl, err := templateIn(pTemplate, ulCount)
	if err != nil {
		return
	}
	h, err := t.CreateObject(uint(hSession), tmpl)
	if err != nil {
		return
	}
	*phObject = C.CK_OBJECT_HANDLE(h)
	return
}

// ---- signing ----

// endOnError ends session h's operation of kind op when the call failed, but not for
// CKR_BUFFER_TOO_SMALL: PKCS#11 v2.40 ends an operation on every other failure of the calls
// that feed or finish it, including argument errors found before the token is asked.
func endOnError(t *token.Token, h C.CK_SESSION_HANDLE, op token.Operation, err *error) {
	if *err != nil && !errors.Is(*err, token.ErrBufferTooSmall) {
		t.EndOperation(uint(h), op)
	}
}

//export goSignInit
func goSignInit(hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR, hKey C.CK_OBJECT_HANDLE) (rv C.CK_RV) {
	var err error
	defer finish("C_SignInit", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	mech, err := mechanismIn(pMechanism)
	if err != nil {
		return
	}
	err = t.SignInit(uint(hSession), mech, uint(hKey))
	return
}

//export goSign
func goSign(hSession C.CK_SESSION_HANDLE, pData C.CK_BYTE_PTR, ulDataLen C.CK_ULONG, pSignature C.CK_BYTE_PTR, pulSignatureLen C.CK_ULONG_PTR) (rv C.CK_RV) {
	var err error
	defer finish("C_Sign", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	defer endOnError(t, hSession, token.OpSign, &err)
	if pulSignatureLen == nil {
		err = errArgs
		return
	}
	data, err := bytesIn(pData, ulDataLen)
	if err != nil {
		return
	}
	sig, n, err := t.Sign(uint(hSession), data, pSignature == nil, uint(*pulSignatureLen))
	err = output(pSignature, pulSignatureLen, sig, n, err)
	return
}

//export goSignUpdate
func goSignUpdate(hSession C.CK_SESSION_HANDLE, pPart C.CK_BYTE_PTR, ulPartLen C.CK_ULONG) (rv C.CK_RV) {
	var err error
	defer finish("C_SignUpdate", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	defer endOnError(t, hSession, token.OpSign, &err)
	data, err := bytesIn(pPart, ulPartLen)
	if err != nil {
		return
	}
	err = t.SignUpdate(uint(hSession), data)
	return
}

//export goSignFinal
func goSignFinal(hSession C.CK_SESSION_HANDLE, pSignature C.CK_BYTE_PTR, pulSignatureLen C.CK_ULONG_PTR) (rv C.CK_RV) {
	var err error
	defer finish("C_SignFinal", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	defer endOnError(t, hSession, token.OpSign, &err)
	if pulSignatureLen == nil {
		err = errArgs
		return
	}
	sig, n, err := t.SignFinal(uint(hSession), pSignature == nil, uint(*pulSignatureLen))
	err = output(pSignature, pulSignatureLen, sig, n, err)
	return
}

//export goVerifyInit
func goVerifyInit(hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR, hKey C.CK_OBJECT_HANDLE) (rv C.CK_RV) {
	var err error
	defer finish("C_VerifyInit", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	mech, err := mechanismIn(pMechanism)
	if err != nil {
		return
	}
	err = t.VerifyInit(uint(hSession), mech, uint(hKey))
	return
}

//export goVerify
func goVerify(hSession C.CK_SESSION_HANDLE, pData C.CK_BYTE_PTR, ulDataLen C.CK_ULONG, pSignature C.CK_BYTE_PTR, ulSignatureLen C.CK_ULONG) (rv C.CK_RV) {
	var err error
	defer finish("C_Verify", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	defer endOnError(t, hSession, token.OpVerify, &err)
	data, err := bytesIn(pData, ulDataLen)
	if err != nil {
		return
	}
	sig, err := bytesIn(pSignature, ulSignatureLen)
	if err != nil {
		return
	}
	err = t.Verify(uint(hSession), data, sig)
	return
}

//export goVerifyUpdate
func goVerifyUpdate(hSession C.CK_SESSION_HANDLE, pPart C.CK_BYTE_PTR, ulPartLen C.CK_ULONG) (rv C.CK_RV) {
	var err error
	defer finish("C_VerifyUpdate", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	defer endOnError(t, hSession, token.OpVerify, &err)
	data, err := bytesIn(pPart, ulPartLen)
	if err != nil {
		return
	}
	err = t.VerifyUpdate(uint(hSession), data)
	return
}

//export goVerifyFinal
func goVerifyFinal(hSession C.CK_SESSION_HANDLE, pSignature C.CK_BYTE_PTR, ulSignatureLen C.CK_ULONG) (rv C.CK_RV) {
	var err error
	defer finish("C_VerifyFinal", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	defer endOnError(t, hSession, token.OpVerify, &err)
	sig, err := bytesIn(pSignature, ulSignatureLen)
	if err != nil {
		return
	}
	err = t.VerifyFinal(uint(hSession), sig)
	return
}

// ---- digests ----

//export goDigestInit
func goDigestInit(hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR) (rv C.CK_RV) {
	var err error
	defer finish("C_DigestInit", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	mech, err := mechanismIn(pMechanism)
	if err != nil {
		return
	}
	err = t.DigestInit(uint(hSession), mech)
	return
}

//export goDigest
func goDigest(hSession C.CK_SESSION_HANDLE, pData C.CK_BYTE_PTR, ulDataLen C.CK_ULONG, pDigest C.CK_BYTE_PTR, pulDigestLen C.CK_ULONG_PTR) (rv C.CK_RV) {
	var err error
	defer finish("C_Digest", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	defer endOnError(t, hSession, token.OpDigest, &err)
	if pulDigestLen == nil {
		err = errArgs
		return
	}
	data, err := bytesIn(pData, ulDataLen)
	if err != nil {
		return
	}
	d, n, err := t.Digest(uint(hSession), data, pDigest == nil, uint(*pulDigestLen))
	err = output(pDigest, pulDigestLen, d, n, err)
	return
}

//export goDigestUpdate
func goDigestUpdate(hSession C.CK_SESSION_HANDLE, pPart C.CK_BYTE_PTR, ulPartLen C.CK_ULONG) (rv C.CK_RV) {
	var err error
	defer finish("C_DigestUpdate", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	defer endOnError(t, hSession, token.OpDigest, &err)
	data, err := bytesIn(pPart, ulPartLen)
	if err != nil {
		return
	}
	err = t.DigestUpdate(uint(hSession), data)
	return
}

//export goDigestFinal
func goDigestFinal(hSession C.CK_SESSION_HANDLE, pDigest C.CK_BYTE_PTR, pulDigestLen C.CK_ULONG_PTR) (rv C.CK_RV) {
	var err error
	defer finish("C_DigestFinal", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	defer endOnError(t, hSession, token.OpDigest, &err)
	if pulDigestLen == nil {
		err = errArgs
		return
	}
	d, n, err := t.DigestFinal(uint(hSession), pDigest == nil, uint(*pulDigestLen))
	err = output(pDigest, pulDigestLen, d, n, err)
	return
}

// ---- random numbers ----

//export goSeedRandom
func goSeedRandom(hSession C.CK_SESSION_HANDLE, pSeed C.CK_BYTE_PTR, ulSeedLen C.CK_ULONG) (rv C.CK_RV) {
	var err error
	defer finish("C_SeedRandom", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	if pSeed == nil && ulSeedLen > 0 {
		err = errArgs
		return
	}
	err = t.SeedRandom(uint(hSession))
	return
}

//export goGenerateRandom
func goGenerateRandom(hSession C.CK_SESSION_HANDLE, pRandomData C.CK_BYTE_PTR, ulRandomLen C.CK_ULONG) (rv C.CK_RV) {
	var err error
	defer finish("C_GenerateRandom", &rv, &err)
	t, err := tok()
	if err != nil {
		return
	}
	if (pRandomData == nil && ulRandomLen > 0) || uint64(ulRandomLen) > maxInput {
		err = errArgs
		return
	}
	b, err := t.GenerateRandom(uint(hSession), int(ulRandomLen))
	if err != nil {
		return
	}
	bytesOut(unsafe.Pointer(pRandomData), b)
	return
}
