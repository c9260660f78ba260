//go:build cgo

// Package openssl links libcrypto's constant-time modular exponentiation,
// BN_mod_exp_mont_consttime, into the binary as modexp's "openssl" engine (registered when the
// package is linked; see package modexp for how the engine is chosen). The node imports it; the
// PKCS#11 module does not, and must not: it computes no shares.
//
// Why OpenSSL (issue 17; measurements in scheme/shoup/BENCHMARKS.md): the goal is a share no
// slower than 1.05 × OpenSSL's own constant-time exponentiation at 2048, 3072 and 4096 bits.
// filippo.io/bigmod is 1.37× at 2048 bits with its MULX/ADX assembly and 3.3× and 4.5× at 3072
// and 4096, where it has none. Assembly kernels of the same kind for 3072/4096 would leave about
// the 2048-bit factor, short of the goal; an AVX-512 IFMA kernel could beat OpenSSL 3.0 (which
// uses IFMA only for 1024-bit moduli) but is a project of its own. Calling OpenSSL gives its
// speed at every size (measured 1.02, 1.02 and 1.01) with code the industry reviews.
//
// Constant time: the exponent carries BN_FLG_CONSTTIME and goes to BN_mod_exp_mont_consttime
// (fixed window, table gathered with masks (bn_gather5 / MOD_EXP_CTIME_COPY_FROM_PREBUF), no
// branch on the exponent's bits); the exponent's BIGNUM is freed with BN_clear_free and
// BN_mod_exp_mont_consttime cleanses its own buffers. OpenSSL uses all the words the exponent's
// BIGNUM holds, so only the exponent's length in 64-bit words is public (see package modexp).
//
// Static binaries (scripts/build-binary.sh) link Debian's libcrypto.a (libssl-dev).
package openssl

/*
#cgo LDFLAGS: -lcrypto
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>

// tchsm_mont is a public modulus with its Montgomery context, prepared once per key and then
// only read (BN_mod_exp_mont_consttime takes both as const), so threads share it.
typedef struct {
	BIGNUM *m;
	BN_MONT_CTX *mont;
} tchsm_mont;

static void tchsm_mont_free(tchsm_mont *t) {
	if (t == NULL)
		return;
	BN_MONT_CTX_free(t->mont);
	BN_free(t->m);
	OPENSSL_free(t);
}

static tchsm_mont *tchsm_mont_new(const unsigned char *mod, int modlen) {
	tchsm_mont *t = OPENSSL_zalloc(sizeof(*t));
	BN_CTX *ctx = BN_CTX_new();
	if (t == NULL || ctx == NULL)
		goto fail;
	t->m = BN_bin2bn(mod, modlen, NULL);
	t->mont = BN_MONT_CTX_new();
	if (t->m == NULL || t->mont == NULL || !BN_MONT_CTX_set(t->mont, t->m, ctx))
		goto fail;
	BN_CTX_free(ctx);
	return t;
fail:
	BN_CTX_free(ctx);
	tchsm_mont_free(t);
	return NULL;
}

// tchsm_ct_exp writes base^exp mod t->m (big-endian, modlen bytes) to out; it returns 1 on
// success and 0 on failure.
static int tchsm_ct_exp(unsigned char *out, const unsigned char *base, const unsigned char *exp,
                        int explen, const tchsm_mont *t, int modlen) {
	int ok = 0;
	BN_CTX *ctx = BN_CTX_secure_new();
	BIGNUM *p = BN_secure_new();
	if (ctx == NULL || p == NULL)
		goto end;
	BN_CTX_start(ctx);
	BIGNUM *a = BN_CTX_get(ctx), *r = BN_CTX_get(ctx);
	if (r == NULL)
		goto end_ctx;
	BN_set_flags(p, BN_FLG_CONSTTIME);
	if (BN_bin2bn(base, modlen, a) == NULL || BN_bin2bn(exp, explen, p) == NULL)
		goto end_ctx;
	if (!BN_mod_exp_mont_consttime(r, a, p, t->m, ctx, t->mont))
		goto end_ctx;
	ok = BN_bn2binpad(r, out, modlen) == modlen;
end_ctx:
	BN_CTX_end(ctx);
end:
	BN_clear_free(p);
	BN_CTX_free(ctx);
	return ok;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/tchsm/tchsm/internal/modexp"
)

func init() { modexp.Register(Engine{}) }

// Engine is the "openssl" engine.
type Engine struct{}

// Name implements modexp.Engine.
func (Engine) Name() string { return "openssl" }

// Version is the version of the libcrypto linked.
func Version() string { return C.GoString(C.OpenSSL_version(C.OPENSSL_VERSION)) }

// Exp implements modexp.Engine.
func (Engine) Exp(m *modexp.Modulus, base, exp []byte) ([]byte, error) {
	n := m.Bytes()
	if len(base) != len(n) {
		return nil, fmt.Errorf("%w: base of %d bytes for a %d-byte modulus", modexp.ErrInput, len(base), len(n))
	}
	if !less(base, n) {
		return nil, fmt.Errorf("%w: base not reduced", modexp.ErrInput)
	}
	var e0 [1]byte // BN_bin2bn wants a valid pointer even for an empty exponent
	ep := &e0[0]
	if len(exp) > 0 {
		ep = &exp[0]
	}
	// A context made by a concurrent first use and then discarded is freed by its own cleanup.
	st, err := m.State(stateKey{}, func() (any, error) { return newMont(m) }, nil)
	if err != nil {
		return nil, err
	}
	mc := st.(*mont)
	out := make([]byte, len(n))
	// The slices hold no Go pointers, so C may read them during the call (cgo's pointer rules).
	ok := C.tchsm_ct_exp((*C.uchar)(unsafe.Pointer(&out[0])), (*C.uchar)(unsafe.Pointer(&base[0])),
		(*C.uchar)(unsafe.Pointer(ep)), C.int(len(exp)), mc.t, C.int(len(n)))
	runtime.KeepAlive(m) // m's cleanup frees mc.t
	if ok != 1 {
		return nil, errors.New("modexp/openssl: BN_mod_exp_mont_consttime failed")
	}
	return out, nil
}

type stateKey struct{}

// mont is a modulus's tchsm_mont, freed (runtime.AddCleanup) when its modexp.Modulus is garbage.
type mont struct{ t *C.tchsm_mont }

func newMont(m *modexp.Modulus) (*mont, error) {
	n := m.Bytes()
	t := C.tchsm_mont_new((*C.uchar)(unsafe.Pointer(&n[0])), C.int(len(n)))
	if t == nil {
		return nil, errors.New("modexp/openssl: BN_MONT_CTX_set failed")
	}
	mc := &mont{t: t}
	runtime.AddCleanup(m, func(t *C.tchsm_mont) { C.tchsm_mont_free(t) }, t)
	return mc, nil
}

// less reports a < b for equal-length big-endian a and b (both public here).
func less(a, b []byte) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// Linked reports whether the "openssl" engine is linked (built with cgo).
const Linked = true
