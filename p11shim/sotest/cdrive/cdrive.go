// Package cdrive calls a PKCS#11 module's function list from C with arguments a well-behaved
// wrapper such as github.com/miekg/pkcs11 never sends (NULL pointers, short buffers, mixed
// attribute templates, initialisation arguments) and across fork. It exists for p11shim's
// tests.
package cdrive

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tchsm.h"

static CK_FUNCTION_LIST_PTR cd_load(const char *path) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) return NULL;
	CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
	if (gfl == NULL) return NULL;
	CK_FUNCTION_LIST_PTR fl = NULL;
	if (gfl(&fl) != CKR_OK) return NULL;
	if (gfl(NULL) != CKR_ARGUMENTS_BAD) return NULL;
	return fl;
}

static CK_RV cd_fake_create(CK_VOID_PTR_PTR m) { return CKR_OK; }
static CK_RV cd_fake_mutex(CK_VOID_PTR m) { return CKR_OK; }

static CK_RV cd_initialize(CK_FUNCTION_LIST_PTR f, int kind) {
	CK_C_INITIALIZE_ARGS a;
	memset(&a, 0, sizeof(a));
	switch (kind) {
	case 0: return f->C_Initialize(NULL);
	case 1: a.flags = CKF_OS_LOCKING_OK; break;
	case 2: a.flags = CKF_OS_LOCKING_OK; a.pReserved = &a; break;
	case 3: case 6:
		a.CreateMutex = cd_fake_create; a.DestroyMutex = cd_fake_mutex;
		a.LockMutex = cd_fake_mutex; a.UnlockMutex = cd_fake_mutex;
		if (kind == 6) a.flags = CKF_OS_LOCKING_OK;
		break;
	case 4: a.CreateMutex = cd_fake_create; break;
	case 5: a.flags = CKF_LIBRARY_CANT_CREATE_OS_THREADS | CKF_OS_LOCKING_OK; break;
	case 7: // what p11-kit passes (and so GnuTLS, p11tool, Knot, PowerDNS)
		a.CreateMutex = cd_fake_create; a.DestroyMutex = cd_fake_mutex;
		a.LockMutex = cd_fake_mutex; a.UnlockMutex = cd_fake_mutex;
		a.flags = CKF_OS_LOCKING_OK | CKF_LIBRARY_CANT_CREATE_OS_THREADS;
		break;
	}
	return f->C_Initialize(&a);
}

static CK_RV cd_finalize(CK_FUNCTION_LIST_PTR f, int reserved) {
	CK_ULONG x;
	return f->C_Finalize(reserved ? &x : NULL);
}

// cd_nulls runs calls with NULL output or input pointers; rvs receives one CK_RV per call.
static void cd_nulls(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, CK_RV *rvs) {
	CK_ULONG n = 0;
	CK_BYTE data[32] = {0};
	CK_BYTE buf[16];
	CK_MECHANISM m = { CKM_SHA256_RSA_PKCS, NULL, 0 };
	CK_ATTRIBUTE t = { CKA_LABEL, NULL, 5 };
	rvs[0] = f->C_GetInfo(NULL);
	rvs[1] = f->C_GetSlotList(CK_TRUE, NULL, NULL);
	rvs[2] = f->C_GetTokenInfo(1, NULL);
	rvs[3] = f->C_OpenSession(1, CKF_SERIAL_SESSION, NULL, NULL, NULL);
	rvs[4] = f->C_Login(s, CKU_USER, NULL, 4);
	rvs[5] = f->C_GetSessionInfo(s, NULL);
	rvs[6] = f->C_SignInit(s, NULL, key);
	rvs[7] = f->C_SignInit(s, &m, key);
	rvs[8] = f->C_Sign(s, data, sizeof(data), buf, NULL);
	rvs[9] = f->C_Sign(s, NULL, 32, NULL, &n);
	rvs[10] = f->C_FindObjectsInit(s, NULL, 1);
	rvs[11] = f->C_FindObjectsInit(s, &t, 1);
	rvs[12] = f->C_GenerateRandom(s, NULL, 10);
	rvs[13] = f->C_GetMechanismList(1, NULL, NULL);
	rvs[14] = f->C_GetSlotList(CK_TRUE, (CK_SLOT_ID_PTR)buf, &n); // n == 0: too small
	rvs[15] = n;
	// A call that fails with CKR_ARGUMENTS_BAD ends its operation (PKCS#11 v2.40 5.12-5.14).
	CK_MECHANISM dm = { CKM_SHA256, NULL, 0 };
	n = 0;
	rvs[16] = f->C_SignInit(s, &m, key);
	rvs[17] = f->C_Sign(s, data, sizeof(data), NULL, NULL);
	rvs[18] = f->C_Sign(s, data, sizeof(data), NULL, &n);
	rvs[19] = f->C_DigestInit(s, &dm);
	rvs[20] = f->C_Digest(s, data, sizeof(data), buf, NULL);
	rvs[21] = f->C_Digest(s, data, sizeof(data), NULL, &n);
	rvs[22] = f->C_DigestInit(s, &dm);
	rvs[23] = f->C_DigestFinal(s, buf, NULL);
	rvs[24] = f->C_DigestFinal(s, NULL, &n);
	rvs[25] = f->C_SignInit(s, &m, key);
	rvs[26] = f->C_SignUpdate(s, NULL, 4);
	rvs[27] = f->C_SignFinal(s, NULL, &n);
}

// cd_short signs with mech (no parameter) through a length query and a short buffer.
static CK_RV cd_short(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, CK_MECHANISM_TYPE mech,
	CK_BYTE_PTR msg, CK_ULONG msglen, CK_BYTE_PTR sig, CK_ULONG *lens) {
	CK_MECHANISM m = { mech, NULL, 0 };
	CK_RV rv = f->C_SignInit(s, &m, key);
	if (rv != CKR_OK) return rv;
	CK_ULONG n = 0;
	rv = f->C_Sign(s, msg, msglen, NULL, &n);
	if (rv != CKR_OK) return rv;
	lens[0] = n;
	CK_ULONG short_len = n - 1;
	rv = f->C_Sign(s, msg, msglen, sig, &short_len);
	if (rv != CKR_BUFFER_TOO_SMALL) return 0x80000000UL | rv;
	lens[1] = short_len;
	CK_ULONG full = 4096;
	rv = f->C_Sign(s, msg, msglen, sig, &full);
	lens[2] = full;
	return rv;
}

// cd_attrs reads a mixed template from a private key object.
static CK_RV cd_attrs(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ULONG *lens, CK_BYTE *mod) {
	CK_BYTE priv[512], unknown[8], id[1];
	CK_ATTRIBUTE t[] = {
		{ CKA_MODULUS, mod, 512 },
		{ CKA_PRIVATE_EXPONENT, priv, sizeof(priv) },
		{ 0x7777, unknown, sizeof(unknown) },
		{ CKA_LABEL, NULL, 0 },
		{ CKA_ID, id, sizeof(id) },
	};
	CK_RV rv = f->C_GetAttributeValue(s, o, t, 5);
	for (int i = 0; i < 5; i++) lens[i] = t[i].ulValueLen;
	return rv;
}

// cd_forked calls C_GetSlotList in a forked child and returns its CK_RV.
static CK_RV cd_forked(CK_FUNCTION_LIST_PTR f) {
	int p[2];
	if (pipe(p) != 0) return (CK_RV)-1;
	pid_t pid = fork();
	if (pid < 0) return (CK_RV)-1;
	if (pid == 0) {
		CK_ULONG n = 0;
		CK_RV rv = f->C_GetSlotList(CK_TRUE, NULL, &n);
		if (write(p[1], &rv, sizeof(rv)) != sizeof(rv)) _exit(1);
		_exit(0);
	}
	close(p[1]);
	CK_RV rv = (CK_RV)-1;
	if (read(p[0], &rv, sizeof(rv)) != sizeof(rv)) rv = (CK_RV)-2;
	close(p[0]);
	waitpid(pid, NULL, 0);
	return rv;
}

static void cd_unsupported(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_RV *rvs) {
	CK_MECHANISM m = { CKM_RSA_PKCS, NULL, 0 };
	CK_OBJECT_HANDLE o;
	rvs[0] = f->C_InitToken(1, (CK_UTF8CHAR_PTR)"1234", 4, (CK_UTF8CHAR_PTR)"x");
	rvs[1] = f->C_InitPIN(s, (CK_UTF8CHAR_PTR)"1234", 4);
	rvs[2] = f->C_SetPIN(s, (CK_UTF8CHAR_PTR)"1234", 4, (CK_UTF8CHAR_PTR)"5678", 4);
	rvs[3] = f->C_CreateObject(s, NULL, 0, &o);
	rvs[4] = f->C_EncryptInit(s, &m, 1);
	rvs[5] = f->C_DecryptInit(s, &m, 1);
	rvs[6] = f->C_WaitForSlotEvent(0, NULL, NULL);
	rvs[7] = f->C_GetFunctionStatus(s);
}

// cd_garbage_params starts an operation with each of mechs (C_SignInit on key when sign, else
// C_DigestInit) with a pParameter and ulParameterLen that point nowhere, as PowerDNS leaves
// them, and finishes it on a SHA-256 DigestInfo. rvs receives two CK_RVs per mechanism: the
// init's and the finishing call's (0 when the init failed).
static void cd_garbage_params(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
		CK_MECHANISM_TYPE *mechs, int n, int sign, CK_RV *rvs) {
	static const CK_BYTE info[51] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
		0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
	for (int i = 0; i < n; i++) {
		CK_MECHANISM m = { mechs[i], (CK_VOID_PTR)(uintptr_t)0x10, (CK_ULONG)0xdeadbeefUL };
		CK_BYTE out[1024];
		CK_ULONG outLen = sizeof(out);
		rvs[2*i] = sign ? f->C_SignInit(s, &m, key) : f->C_DigestInit(s, &m);
		rvs[2*i+1] = 0;
		if (rvs[2*i] == CKR_OK)
			rvs[2*i+1] = sign ? f->C_Sign(s, (CK_BYTE_PTR)info, sizeof(info), out, &outLen)
			                  : f->C_Digest(s, (CK_BYTE_PTR)info, sizeof(info), out, &outLen);
	}
}

// cd_eddsa_sign_init calls C_SignInit with CKM_EDDSA and a CK_EDDSA_PARAMS in C memory whose
// context is ctx (ctxLen bytes, possibly NULL), given with ulParameterLen paramLen.
static CK_RV cd_eddsa_sign_init(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
		CK_BBOOL ph, CK_BYTE_PTR ctx, CK_ULONG ctxLen, CK_ULONG paramLen) {
	tchsm_eddsa_params p;
	memset(&p, 0, sizeof(p));
	p.phFlag = ph;
	p.ulContextDataLen = ctxLen;
	p.pContextData = ctx;
	CK_MECHANISM m = { CKM_EDDSA, &p, paramLen };
	return f->C_SignInit(s, &m, key);
}

static CK_ULONG cd_eddsa_params_size(void) { return sizeof(tchsm_eddsa_params); }
*/
import "C"

import (
	"errors"
	"unsafe"
)

// Lib is a loaded module.
type Lib struct{ f C.CK_FUNCTION_LIST_PTR }

// Open loads the module at path and checks C_GetFunctionList (including its NULL check).
func Open(path string) (*Lib, error) {
	p := C.CString(path)
	defer C.free(unsafe.Pointer(p))
	f := C.cd_load(p)
	if f == nil {
		return nil, errors.New("cdrive: cannot load the module or C_GetFunctionList misbehaves")
	}
	return &Lib{f: f}, nil
}

// Version returns the function list's version.
func (l *Lib) Version() (major, minor int) {
	return int(l.f.version.major), int(l.f.version.minor)
}

// Init kinds for Initialize.
const (
	InitNULL = iota
	InitOSLocking
	InitReserved
	InitMutexesOnly
	InitPartialMutexes
	InitCantCreateThreads
	InitMutexesAndOSLocking
	InitP11Kit
)

// Initialize calls C_Initialize with arguments of the given kind.
func (l *Lib) Initialize(kind int) uint { return uint(C.cd_initialize(l.f, C.int(kind))) }

// Finalize calls C_Finalize, with a non-NULL pReserved if reserved.
func (l *Lib) Finalize(reserved bool) uint {
	r := 0
	if reserved {
		r = 1
	}
	return uint(C.cd_finalize(l.f, C.int(r)))
}

// Nulls runs the NULL-argument calls of cd_nulls on session (use a session of its own).
func (l *Lib) Nulls(session, key uint) []uint {
	var rvs [28]C.CK_RV
	C.cd_nulls(l.f, C.CK_SESSION_HANDLE(session), C.CK_OBJECT_HANDLE(key), &rvs[0])
	out := make([]uint, len(rvs))
	for i, v := range rvs {
		out[i] = uint(v)
	}
	return out
}

// ShortBuffer signs msg with CKM_SHA256_RSA_PKCS through a length query and a short buffer.
// lens are the length from the query, the length reported with CKR_BUFFER_TOO_SMALL and the
// final length.
func (l *Lib) ShortBuffer(session, key uint, msg []byte) (rv uint, lens [3]uint, sig []byte) {
	return l.ShortBufferMech(session, key, C.CKM_SHA256_RSA_PKCS, msg)
}

// ShortBufferMech is ShortBuffer with mechanism mech.
func (l *Lib) ShortBufferMech(session, key, mech uint, msg []byte) (rv uint, lens [3]uint, sig []byte) {
	cmsg := C.CBytes(msg)
	defer C.free(cmsg)
	csig := (*C.CK_BYTE)(C.malloc(4096))
	defer C.free(unsafe.Pointer(csig))
	var cl [3]C.CK_ULONG
	r := C.cd_short(l.f, C.CK_SESSION_HANDLE(session), C.CK_OBJECT_HANDLE(key), C.CK_MECHANISM_TYPE(mech),
		(*C.CK_BYTE)(cmsg), C.CK_ULONG(len(msg)), csig, &cl[0])
	for i := range cl {
		lens[i] = uint(cl[i])
	}
	if r == C.CKR_OK {
		sig = C.GoBytes(unsafe.Pointer(csig), C.int(cl[2]))
	}
	return uint(r), lens, sig
}

// MixedAttributes reads CKA_MODULUS (512-byte buffer), CKA_PRIVATE_EXPONENT, attribute 0x7777,
// CKA_LABEL (length query) and CKA_ID (1-byte buffer) in one call.
func (l *Lib) MixedAttributes(session, obj uint) (rv uint, lens [5]uint, modulus []byte) {
	var cl [5]C.CK_ULONG
	mod := (*C.CK_BYTE)(C.malloc(512))
	defer C.free(unsafe.Pointer(mod))
	r := C.cd_attrs(l.f, C.CK_SESSION_HANDLE(session), C.CK_OBJECT_HANDLE(obj), &cl[0], mod)
	for i := range cl {
		lens[i] = uint(cl[i])
	}
	if cl[0] <= 512 {
		modulus = C.GoBytes(unsafe.Pointer(mod), C.int(cl[0]))
	}
	return uint(r), lens, modulus
}

// Forked returns what C_GetSlotList returns in a forked child.
func (l *Lib) Forked() uint { return uint(C.cd_forked(l.f)) }

// Unsupported calls C_InitToken, C_InitPIN, C_SetPIN (supported, but refused on a read-only
// session), C_CreateObject (empty template), C_EncryptInit,
// C_DecryptInit, C_WaitForSlotEvent and C_GetFunctionStatus.
func (l *Lib) Unsupported(session uint) []uint {
	var rvs [8]C.CK_RV
	C.cd_unsupported(l.f, C.CK_SESSION_HANDLE(session), &rvs[0])
	out := make([]uint, len(rvs))
	for i, v := range rvs {
		out[i] = uint(v)
	}
	return out
}

// GarbageParams starts and finishes an operation with each mechanism, its pParameter and
// ulParameterLen pointing nowhere: C_SignInit + C_Sign with key when sign, else C_DigestInit +
// C_Digest. It returns two CK_RVs per mechanism (init, finish; finish 0 when init failed).
func (l *Lib) GarbageParams(session, key uint, sign bool, mechs []uint) []uint {
	cm := make([]C.CK_MECHANISM_TYPE, len(mechs))
	for i, m := range mechs {
		cm[i] = C.CK_MECHANISM_TYPE(m)
	}
	rvs := make([]C.CK_RV, 2*len(mechs))
	s := 0
	if sign {
		s = 1
	}
	C.cd_garbage_params(l.f, C.CK_SESSION_HANDLE(session), C.CK_OBJECT_HANDLE(key), &cm[0], C.int(len(mechs)), C.int(s), &rvs[0])
	out := make([]uint, len(rvs))
	for i, v := range rvs {
		out[i] = uint(v)
	}
	return out
}

// EdDSAParamsSize is sizeof(CK_EDDSA_PARAMS).
func EdDSAParamsSize() uint { return uint(C.cd_eddsa_params_size()) }

// EdDSASignInit calls C_SignInit with CKM_EDDSA and a CK_EDDSA_PARAMS{ph, ctx} built in C
// memory, passed with ulParameterLen paramLen; a nil ctx of length ctxLen is a NULL pointer.
func (l *Lib) EdDSASignInit(session, key uint, ph bool, ctx []byte, ctxLen, paramLen uint) uint {
	var p C.CK_BYTE_PTR
	if ctx != nil {
		p = (C.CK_BYTE_PTR)(C.CBytes(ctx))
		defer C.free(unsafe.Pointer(p))
	}
	var b C.CK_BBOOL
	if ph {
		b = 1
	}
	return uint(C.cd_eddsa_sign_init(l.f, C.CK_SESSION_HANDLE(session), C.CK_OBJECT_HANDLE(key), b, p,
		C.CK_ULONG(ctxLen), C.CK_ULONG(paramLen)))
}
