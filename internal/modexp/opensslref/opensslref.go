//go:build cgo

// Package opensslref is the yardstick for the share's speed (issue 17): OpenSSL's
// BN_mod_exp_mont_consttime on a full-length exponent with BN_FLG_CONSTTIME, at its best (the
// operands, the BN_CTX and the Montgomery context prepared once, as in OpenSSL's RSA code), so
// that benchmarks time tchsm's share and OpenSSL's exponentiation in the same run. Only tests and
// the bench harness import it.
package opensslref

/*
#cgo LDFLAGS: -lcrypto
#include <openssl/bn.h>
#include <openssl/crypto.h>

typedef struct {
	BN_CTX *ctx;
	BN_MONT_CTX *mont;
	BIGNUM *a, *p, *m, *r;
} tchsm_ref;

static void tchsm_ref_free(tchsm_ref *t) {
	if (t == NULL)
		return;
	BN_MONT_CTX_free(t->mont);
	BN_clear_free(t->p);
	BN_free(t->a);
	BN_free(t->m);
	BN_free(t->r);
	BN_CTX_free(t->ctx);
	OPENSSL_free(t);
}

static tchsm_ref *tchsm_ref_new(const unsigned char *mod, int modlen, const unsigned char *base,
                                int baselen, const unsigned char *exp, int explen) {
	tchsm_ref *t = OPENSSL_zalloc(sizeof(*t));
	if (t == NULL)
		return NULL;
	t->ctx = BN_CTX_new();
	t->mont = BN_MONT_CTX_new();
	t->a = BN_bin2bn(base, baselen, NULL);
	t->p = BN_bin2bn(exp, explen, NULL);
	t->m = BN_bin2bn(mod, modlen, NULL);
	t->r = BN_new();
	if (t->ctx == NULL || t->mont == NULL || t->a == NULL || t->p == NULL || t->m == NULL ||
	    t->r == NULL || !BN_MONT_CTX_set(t->mont, t->m, t->ctx)) {
		tchsm_ref_free(t);
		return NULL;
	}
	BN_set_flags(t->p, BN_FLG_CONSTTIME);
	return t;
}

static int tchsm_ref_exp(tchsm_ref *t) {
	return BN_mod_exp_mont_consttime(t->r, t->a, t->p, t->m, t->ctx, t->mont);
}

static int tchsm_ref_result(tchsm_ref *t, unsigned char *out, int len) {
	return BN_bn2binpad(t->r, out, len) == len;
}
*/
import "C"

import (
	"errors"
	"unsafe"
)

// Version is the version of the libcrypto linked.
func Version() string { return C.GoString(C.OpenSSL_version(C.OPENSSL_VERSION)) }

// Ref is one prepared exponentiation base^exp mod m. It is not safe for concurrent use.
type Ref struct {
	t    *C.tchsm_ref
	size int
}

// New prepares base^exp mod mod (big-endian; mod odd, base < mod, exp not empty).
func New(mod, base, exp []byte) (*Ref, error) {
	if len(mod) == 0 || len(base) == 0 || len(exp) == 0 {
		return nil, errors.New("opensslref: empty operand")
	}
	t := C.tchsm_ref_new((*C.uchar)(unsafe.Pointer(&mod[0])), C.int(len(mod)),
		(*C.uchar)(unsafe.Pointer(&base[0])), C.int(len(base)),
		(*C.uchar)(unsafe.Pointer(&exp[0])), C.int(len(exp)))
	if t == nil {
		return nil, errors.New("opensslref: preparing the operands failed")
	}
	return &Ref{t: t, size: len(mod)}, nil
}

// Exp runs BN_mod_exp_mont_consttime once.
func (r *Ref) Exp() error {
	if C.tchsm_ref_exp(r.t) != 1 {
		return errors.New("opensslref: BN_mod_exp_mont_consttime failed")
	}
	return nil
}

// Result is the last result, big-endian, as long as the modulus.
func (r *Ref) Result() ([]byte, error) {
	out := make([]byte, r.size)
	if C.tchsm_ref_result(r.t, (*C.uchar)(unsafe.Pointer(&out[0])), C.int(len(out))) != 1 {
		return nil, errors.New("opensslref: no result")
	}
	return out, nil
}

// Close frees the operands (the exponent's with BN_clear_free).
func (r *Ref) Close() {
	C.tchsm_ref_free(r.t)
	r.t = nil
}
