package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	_ "crypto/sha1" // crypto.SHA1.New
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding/asn1"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"time"

	"github.com/tchsm/tchsm/internal/backend"
	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/shoup"
)

// Mechanism is a CK_MECHANISM: its type and parameter bytes, or for CKM_EDDSA its decoded
// CK_EDDSA_PARAMS (nil when the caller gave no parameter).
type Mechanism struct {
	Type  uint
	Param []byte
	EdDSA *EdDSAParams
}

// ---- key generation ----

// keygenTemplate is what C_GenerateKeyPair takes from the two templates.
type keygenTemplate struct {
	keyType  uint // CKK_RSA, CKK_EC_EDWARDS or CKK_EC, from the mechanism
	bits     int
	e        int
	label    []byte
	id       []byte
	pubToken bool
}

// parseKeygen reads the templates for a key of type keyType liberally: attributes a
// signing-only token does not act on (ENCRYPT, WRAP, DECRYPT, SUBJECT, …) are ignored; those
// that contradict what a cluster key is, or belong to the other key type, are refused.
func parseKeygen(keyType uint, pubT, privT []Attribute) (keygenTemplate, error) {
	kt := keygenTemplate{keyType: keyType, e: 65537}
	rsaKey := keyType == CKK_RSA
	if !rsaKey {
		kt.bits, kt.e = ed25519Bits, 0 // = ecBits
	}
	var haveBits, haveCurve bool
	var pubLabel, pubID []byte
	var privLabel, privID []byte
	var havePubLabel, havePubID, havePrivLabel, havePrivID bool
	for _, a := range pubT {
		switch a.Type {
		case CKA_MODULUS_BITS, CKA_PUBLIC_EXPONENT:
			if !rsaKey {
				return kt, fmt.Errorf("%w: %#x is an RSA attribute", ErrTemplateInconsistent, a.Type)
			}
		case CKA_EC_PARAMS, CKA_EC_POINT:
			if rsaKey {
				return kt, fmt.Errorf("%w: %#x is an EC attribute", ErrTemplateInconsistent, a.Type)
			}
		}
		switch a.Type {
		case CKA_EC_PARAMS:
			if err := checkCurve(keyType, a.Value); err != nil {
				return kt, err
			}
			haveCurve = true
		case CKA_EC_POINT:
			return kt, fmt.Errorf("%w: CKA_EC_POINT is chosen by the token", ErrTemplateInconsistent)
		case CKA_MODULUS_BITS:
			v, ok := DecodeULong(a.Value)
			if !ok {
				return kt, fmt.Errorf("%w: CKA_MODULUS_BITS", ErrAttributeValueInvalid)
			}
			if v < MinKeyBits || v > MaxKeyBits || v%2 != 0 {
				// The cluster makes N from two primes of bits/2 bits each.
				return kt, fmt.Errorf("%w: %d bits (even sizes from %d to %d)", ErrKeySizeRange, v, MinKeyBits, MaxKeyBits)
			}
			kt.bits, haveBits = int(v), true
		case CKA_PUBLIC_EXPONENT:
			e, err := publicExponent(a.Value)
			if err != nil {
				return kt, err
			}
			kt.e = e
		case CKA_LABEL:
			pubLabel, havePubLabel = a.Value, true
		case CKA_ID:
			pubID, havePubID = a.Value, true
		case CKA_TOKEN:
			v, ok := DecodeBool(a.Value)
			if !ok {
				return kt, fmt.Errorf("%w: CKA_TOKEN", ErrAttributeValueInvalid)
			}
			kt.pubToken = v
		case CKA_CLASS:
			if v, ok := DecodeULong(a.Value); !ok || v != CKO_PUBLIC_KEY {
				return kt, fmt.Errorf("%w: public template CKA_CLASS", ErrTemplateInconsistent)
			}
		case CKA_KEY_TYPE:
			if v, ok := DecodeULong(a.Value); !ok || v != keyType {
				return kt, fmt.Errorf("%w: CKA_KEY_TYPE", ErrTemplateInconsistent)
			}
		case CKA_MODULUS:
			return kt, fmt.Errorf("%w: CKA_MODULUS is chosen by the token", ErrTemplateInconsistent)
		}
	}
	for _, a := range privT {
		switch a.Type {
		case CKA_LABEL:
			privLabel, havePrivLabel = a.Value, true
		case CKA_ID:
			privID, havePrivID = a.Value, true
		case CKA_TOKEN:
			v, ok := DecodeBool(a.Value)
			if !ok {
				return kt, fmt.Errorf("%w: CKA_TOKEN", ErrAttributeValueInvalid)
			}
			if !v {
				return kt, fmt.Errorf("%w: cluster private keys are token objects", ErrTemplateInconsistent)
			}
		case CKA_CLASS:
			if v, ok := DecodeULong(a.Value); !ok || v != CKO_PRIVATE_KEY {
				return kt, fmt.Errorf("%w: private template CKA_CLASS", ErrTemplateInconsistent)
			}
		case CKA_KEY_TYPE:
			if v, ok := DecodeULong(a.Value); !ok || v != keyType {
				return kt, fmt.Errorf("%w: CKA_KEY_TYPE", ErrTemplateInconsistent)
			}
		case CKA_EC_PARAMS:
			// Some callers repeat the curve in the private template: it must be the same one.
			if rsaKey {
				return kt, fmt.Errorf("%w: CKA_EC_PARAMS is an EC attribute", ErrTemplateInconsistent)
			}
			if err := checkCurve(keyType, a.Value); err != nil {
				return kt, err
			}
		case CKA_PRIVATE_EXPONENT, CKA_PRIME_1, CKA_PRIME_2, CKA_MODULUS, CKA_VALUE:
			return kt, fmt.Errorf("%w: key material is chosen by the token", ErrTemplateInconsistent)
		}
	}
	switch {
	case rsaKey && !haveBits:
		return kt, fmt.Errorf("%w: CKA_MODULUS_BITS missing", ErrTemplateIncomplete)
	case !rsaKey && !haveCurve:
		// PKCS#11 3.0 section 2.3.7: the public key template must name the curve.
		return kt, fmt.Errorf("%w: CKA_EC_PARAMS missing", ErrTemplateIncomplete)
	}
	switch {
	case havePrivLabel:
		kt.label = privLabel
	case havePubLabel:
		kt.label = pubLabel
	}
	switch {
	case havePrivID:
		kt.id = privID
	case havePubID:
		kt.id = pubID
	}
	if havePrivLabel && havePubLabel && string(privLabel) != string(pubLabel) {
		return kt, fmt.Errorf("%w: public and private CKA_LABEL differ", ErrTemplateInconsistent)
	}
	if havePrivID && havePubID && string(privID) != string(pubID) {
		return kt, fmt.Errorf("%w: public and private CKA_ID differ", ErrTemplateInconsistent)
	}
	return kt, nil
}

// checkCurve checks that CKA_EC_PARAMS v names the curve of keys of type keyType: a curve the
// token knows but for the other EC key type (the Ed25519 OID with CKM_EC_KEY_PAIR_GEN) is
// ErrCurveNotSupported, as an unknown curve is.
func checkCurve(keyType uint, v []byte) error {
	c, err := parseCurve(v)
	if err != nil {
		return err
	}
	if c != curveOf(keyType) {
		return fmt.Errorf("%w: CKA_EC_PARAMS %x names a curve keys of type %#x are not on", ErrCurveNotSupported, v, keyType)
	}
	return nil
}

// GenerateKeyPair generates a cluster key (C_GenerateKeyPair with CKM_RSA_PKCS_KEY_PAIR_GEN, or
// CKM_EC_EDWARDS_KEY_PAIR_GEN or its alias CKM_EDDSA for Ed25519) and returns the public and
// private key handles. The public key is the token object of the key, or a new session object
// when the public template says CKA_TOKEN=FALSE (or omits it).
func (t *Token) GenerateKeyPair(h uint, mech Mechanism, pubT, privT []Attribute) (pubH, privH uint, err error) {
	s, err := t.acquire(h)
	if err != nil {
		return 0, 0, err
	}
	defer s.mu.Unlock()
	m, err := t.mechanismFor(mech, CKF_GENERATE_KEY_PAIR)
	if err != nil {
		return 0, 0, err
	}
	kt, err := parseKeygen(m.keyType, pubT, privT)
	if err != nil {
		return 0, 0, err
	}
	if !s.rw {
		return 0, 0, ErrSessionReadOnly
	}
	if !t.isLoggedIn() {
		return 0, 0, ErrUserNotLoggedIn
	}
	ctx, cancel := context.WithTimeout(s.ctx, time.Duration(t.cfg.KeygenTimeout))
	defer cancel()
	started := time.Now()
	req := backend.GenerateRequest{Algorithm: scheme.ShoupRSA, Bits: kt.bits, E: kt.e,
		Label: string(kt.label), P11ID: append([]byte{}, kt.id...)}
	switch kt.keyType {
	case CKK_EC_EDWARDS:
		req.Algorithm, req.Bits, req.E = scheme.Ed25519FROST, ed25519Bits, 0
	case CKK_EC:
		req.Algorithm, req.Bits, req.E = scheme.ECDSAP256HM, ecBits, 0
	}
	info, err := t.backend.GenerateKey(ctx, req)
	if errors.Is(err, scheme.ErrNotSupported) {
		// The backend lists the algorithm but cannot make its keys yet (the cluster client
		// for ECDSA P-256): the mechanism is not usable here, not a failing device.
		t.log.Error("the signing cluster cannot generate keys of this algorithm", "algorithm", req.Algorithm, "err", err)
		return 0, 0, fmt.Errorf("%w: %s: %w", ErrMechanismInvalid, m.name, err)
	}
	if err != nil {
		// A request the cluster refuses as bad (a public exponent it does not take, a label or
		// CKA_ID too long) is an attribute value, not a device failure.
		return 0, 0, backendErr("generating key", err, ErrDeviceError, ErrAttributeValueInvalid)
	}
	k, err := newKey(info)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %w", ErrDeviceError, err)
	}
	switch {
	case k.keyType != kt.keyType:
		return 0, 0, fmt.Errorf("%w: cluster generated a %v key, asked %v", ErrDeviceError, info.Algorithm, req.Algorithm)
	case kt.keyType == CKK_RSA && (info.Bits != kt.bits || k.pub.E != kt.e):
		return 0, 0, fmt.Errorf("%w: cluster generated a %d-bit key with e=%d, asked %d bits e=%d",
			ErrDeviceError, info.Bits, k.pub.E, kt.bits, kt.e)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return 0, 0, ErrClosed
	}
	t.keys[info.ID] = k
	t.seq++
	t.changes[info.ID] = localChange{seq: t.seq}
	hs := t.handlesLocked(info.ID)
	privH, pubH = hs[0], hs[1]
	if !kt.pubToken {
		t.nextObject++
		pubH = t.nextObject
		t.byHandle[pubH] = objRef{keyID: info.ID, pub: true, session: s.h, k: k}
	}
	t.log.Info("key generated", "key", info.ID, "algorithm", info.Algorithm, "bits", info.Bits, "label", info.Label,
		"took", time.Since(started).Round(time.Millisecond))
	return pubH, privH, nil
}

// ecPublicKey decodes the CKA_EC_PARAMS and CKA_EC_POINT of an EC public key to create: the
// P-256 OID, and the DER OCTET STRING of the 65-byte uncompressed point (or the bare point,
// which some callers send).
func ecPublicKey(params, point []byte) (*ecdsa.PublicKey, error) {
	if params == nil || point == nil {
		return nil, fmt.Errorf("%w: CKA_EC_PARAMS and CKA_EC_POINT", ErrTemplateIncomplete)
	}
	if err := checkCurve(CKK_EC, params); err != nil {
		return nil, err
	}
	raw := point
	if len(point) != 65 {
		var inner []byte
		rest, err := asn1.Unmarshal(point, &inner)
		if err != nil || len(rest) != 0 {
			return nil, fmt.Errorf("%w: CKA_EC_POINT is not one DER OCTET STRING", ErrAttributeValueInvalid)
		}
		raw = inner
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		return nil, fmt.Errorf("%w: CKA_EC_POINT: %v", ErrAttributeValueInvalid, err)
	}
	return pub, nil
}

// ---- signing ----

type signOp struct {
	hash    crypto.Hash // 0 for CKM_RSA_PKCS and CKM_EDDSA
	h       hash.Hash
	buf     []byte // CKM_RSA_PKCS and CKM_EDDSA input, at most limit bytes
	limit   int
	k       *key
	updated bool
	// mech is the mechanism; msg the message of a one-part C_Sign with a hash mechanism,
	// which the cluster gets too (nodes with a signing policy check it).
	mech scheme.Mechanism
	msg  []byte
}

// inputLimit is the most a mechanism without a hash takes: k-11 bytes of PKCS#1 v1.5 payload
// for RSA, maxEdDSAData bytes of message for Ed25519.
func inputLimit(k *key) int {
	switch k.keyType {
	case CKK_EC_EDWARDS:
		return maxEdDSAData
	case CKK_EC:
		return scheme.ECDSADigestSize // CKM_ECDSA's digest
	}
	return k.size - 11
}

// keyFor checks that key o is of the type mechanism m uses.
func keyFor(m *mechanismSpec, o object) error {
	if m.keyType != o.k.keyType {
		return fmt.Errorf("%w: %s with a key of type %#x", ErrKeyTypeInconsistent, m.name, o.k.keyType)
	}
	return nil
}

// SignInit starts a signature (C_SignInit).
func (t *Token) SignInit(h uint, mech Mechanism, kh uint) error {
	s, err := t.acquire(h)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.sign != nil {
		return ErrOperationActive
	}
	m, err := t.mechanismFor(mech, CKF_SIGN)
	if err != nil {
		return err
	}
	o, err := t.resolveKey(kh)
	if err != nil {
		return err
	}
	if err := keyFor(m, o); err != nil {
		return err
	}
	if o.pub {
		return fmt.Errorf("%w: public keys do not sign", ErrKeyFunctionNotPermitted)
	}
	op := &signOp{hash: m.hash, k: o.k, limit: inputLimit(o.k), mech: m.wire}
	if m.hash != 0 {
		op.h = m.hash.New()
	}
	s.sign = op
	return nil
}

// resolveKey resolves a key handle for an operation: unknown handles are ErrKeyHandleInvalid, a
// private key without login ErrUserNotLoggedIn.
func (t *Token) resolveKey(kh uint) (object, error) {
	t.mu.Lock()
	ref, ok := t.byHandle[kh]
	var exists bool
	if ok {
		exists = ref.session != 0 || t.keys[ref.keyID] != nil
	}
	logged := t.loggedIn
	t.mu.Unlock()
	if !exists {
		return object{}, ErrKeyHandleInvalid
	}
	if !ref.pub && !logged {
		return object{}, ErrUserNotLoggedIn
	}
	o, err := t.resolve(kh)
	if err != nil {
		return object{}, fmt.Errorf("%w: %w", ErrKeyHandleInvalid, err)
	}
	return o, nil
}

// Sign signs data in one part (C_Sign). With query set (pSignature == NULL) it returns only the
// signature length and keeps the operation; with a buffer shorter than that (bufLen) it returns
// the length and ErrBufferTooSmall and keeps the operation. Anything else ends it.
func (t *Token) Sign(h uint, data []byte, query bool, bufLen uint) ([]byte, uint, error) {
	return t.finishSign(h, query, bufLen, func(op *signOp) ([]byte, error) {
		if op.updated {
			return nil, fmt.Errorf("%w: C_Sign after C_SignUpdate", ErrOperationActive)
		}
		if op.hash == 0 {
			return data, nil
		}
		op.h.Write(data)
		op.msg = data
		return op.hashed()
	})
}

// SignUpdate feeds a multi-part signature (C_SignUpdate).
func (t *Token) SignUpdate(h uint, data []byte) error {
	s, err := t.acquire(h)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	op := s.sign
	if op == nil {
		return ErrOperationNotInitialized
	}
	op.updated = true
	if op.hash != 0 {
		op.h.Write(data)
		return nil
	}
	if len(op.buf)+len(data) > op.limit {
		s.sign = nil
		return fmt.Errorf("%w: more than %d bytes in all", ErrDataLenRange, op.limit)
	}
	op.buf = append(op.buf, data...)
	return nil
}

// SignFinal finishes a multi-part signature (C_SignFinal); query and bufLen as for Sign.
func (t *Token) SignFinal(h uint, query bool, bufLen uint) ([]byte, uint, error) {
	return t.finishSign(h, query, bufLen, func(op *signOp) ([]byte, error) {
		if op.hash == 0 {
			return op.buf, nil
		}
		return op.hashed()
	})
}

// finishSign is the common end of C_Sign and C_SignFinal: the length query and the short
// buffer keep the operation; otherwise the operation ends and the payload that payloadOf
// builds from it is signed.
func (t *Token) finishSign(h uint, query bool, bufLen uint, payloadOf func(*signOp) ([]byte, error)) ([]byte, uint, error) {
	s, err := t.acquire(h)
	if err != nil {
		return nil, 0, err
	}
	defer s.mu.Unlock()
	op := s.sign
	if op == nil {
		return nil, 0, ErrOperationNotInitialized
	}
	n := uint(op.k.size)
	if query {
		return nil, n, nil
	}
	if bufLen < n {
		return nil, n, ErrBufferTooSmall
	}
	s.sign = nil
	payload, err := payloadOf(op)
	if err != nil {
		return nil, 0, err
	}
	sig, err := t.sign(s, op, payload)
	return sig, uint(len(sig)), err
}

// hashed is the payload of a hash mechanism: for RSA the DigestInfo of the hash of
// everything fed so far, for ECDSA the digest itself.
func (op *signOp) hashed() ([]byte, error) {
	if op.k.keyType == CKK_EC {
		return op.h.Sum(nil), nil
	}
	return op.digestInfo()
}

// digestInfo wraps the hash of everything fed so far in its DigestInfo.
func (op *signOp) digestInfo() ([]byte, error) {
	di, err := shoup.DigestInfo(op.hash, op.h.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDeviceError, err)
	}
	return di, nil
}

// sign has the cluster sign the PKCS#1 v1.5 payload and checks the result against the public
// key before returning it. A one-part C_Sign with a hash mechanism goes to the cluster with
// its message (the client sends the nodes both the message and its DigestInfo, so that nodes
// with a signing policy can check what they sign); a multi-part one (C_SignUpdate) is hashed
// here and sent as its DigestInfo under CKM_RSA_PKCS, digest-only.
func (t *Token) sign(s *session, op *signOp, payload []byte) ([]byte, error) {
	k := op.k
	if !t.isLoggedIn() {
		return nil, ErrUserNotLoggedIn
	}
	switch k.keyType {
	case CKK_EC_EDWARDS:
		return t.signEd25519(s, k, payload)
	case CKK_EC:
		return t.signECDSA(s, op, payload)
	}
	if len(payload) > k.size-11 {
		return nil, fmt.Errorf("%w: %d bytes, at most %d for this key", ErrDataLenRange, len(payload), k.size-11)
	}
	ctx, cancel := context.WithTimeout(s.ctx, time.Duration(t.cfg.SignTimeout))
	defer cancel()
	mech, data := scheme.RSAPKCS, payload
	if op.msg != nil && op.mech != scheme.RSAPKCS {
		mech, data = op.mech, op.msg
	}
	sig, err := t.backend.Sign(ctx, k.info.ID, mech, data)
	if errors.Is(err, backend.ErrKeyNotFound) {
		t.forgetKey(k.info.ID)
	}
	if err != nil {
		return nil, backendErr("signing", err, ErrKeyHandleInvalid, ErrDataLenRange)
	}
	if len(sig) > k.size {
		return nil, fmt.Errorf("%w: cluster returned a %d-byte signature for a %d-byte modulus",
			ErrDeviceError, len(sig), k.size)
	}
	if len(sig) < k.size {
		sig = append(make([]byte, k.size-len(sig)), sig...)
	}
	if err := rsa.VerifyPKCS1v15(k.pub, 0, payload, sig); err != nil {
		t.log.Error("cluster returned a signature that does not verify", "key", k.info.ID)
		return nil, fmt.Errorf("%w: cluster signature does not verify: %w", ErrDeviceError, err)
	}
	return sig, nil
}

// signEd25519 has the cluster sign msg with pure Ed25519 (scheme.EDDSA: the whole message; the
// cluster hashes it as RFC 8032 says) and checks the signature with crypto/ed25519 before
// returning it.
func (t *Token) signEd25519(s *session, k *key, msg []byte) ([]byte, error) {
	if len(msg) > maxEdDSAData {
		return nil, fmt.Errorf("%w: %d bytes, at most %d for CKM_EDDSA", ErrDataLenRange, len(msg), maxEdDSAData)
	}
	ctx, cancel := context.WithTimeout(s.ctx, time.Duration(t.cfg.SignTimeout))
	defer cancel()
	sig, err := t.backend.Sign(ctx, k.info.ID, scheme.EDDSA, msg)
	if errors.Is(err, backend.ErrKeyNotFound) {
		t.forgetKey(k.info.ID)
	}
	if err != nil {
		return nil, backendErr("signing", err, ErrKeyHandleInvalid, ErrDataLenRange)
	}
	if len(sig) != ed25519.SignatureSize || !ed25519.Verify(k.ed, msg, sig) {
		t.log.Error("cluster returned a signature that does not verify", "key", k.info.ID, "len", len(sig))
		return nil, fmt.Errorf("%w: cluster Ed25519 signature (%d bytes) does not verify", ErrDeviceError, len(sig))
	}
	return sig, nil
}

// signECDSA has the cluster sign digest with ECDSA P-256 and checks the 64-byte r || s with
// crypto/ecdsa before returning it. CKM_ECDSA takes exactly a 32-byte digest
// (ErrDataLenRange otherwise: the cluster signs SHA-256 digests, DNSSEC algorithm 13, only); a
// one-part CKM_ECDSA_SHA256 sends the cluster the message too (scheme.ECDSASHA256), a
// multi-part one the digest computed here (scheme.ECDSA).
func (t *Token) signECDSA(s *session, op *signOp, digest []byte) ([]byte, error) {
	k := op.k
	if len(digest) != scheme.ECDSADigestSize {
		return nil, fmt.Errorf("%w: CKM_ECDSA signs a %d-byte digest (SHA-256), not %d bytes",
			ErrDataLenRange, scheme.ECDSADigestSize, len(digest))
	}
	ctx, cancel := context.WithTimeout(s.ctx, time.Duration(t.cfg.SignTimeout))
	defer cancel()
	mech, data := scheme.ECDSA, digest
	if op.msg != nil && op.mech == scheme.ECDSASHA256 {
		mech, data = scheme.ECDSASHA256, op.msg
	}
	sig, err := t.backend.Sign(ctx, k.info.ID, mech, data)
	if errors.Is(err, backend.ErrKeyNotFound) {
		t.forgetKey(k.info.ID)
	}
	if err != nil {
		return nil, backendErr("signing", err, ErrKeyHandleInvalid, ErrDataLenRange)
	}
	if len(sig) != k.size || !ecdsaVerify(k.ec, digest, sig) {
		t.log.Error("cluster returned a signature that does not verify", "key", k.info.ID, "len", len(sig))
		return nil, fmt.Errorf("%w: cluster ECDSA signature (%d bytes) does not verify", ErrDeviceError, len(sig))
	}
	return sig, nil
}

// ecdsaVerify checks an r || s signature of even length up to 64 bytes (v2.40 section 2.3.1:
// a signature passed in for verification may be shorter than 2·nLen, its halves of equal length).
func ecdsaVerify(pub *ecdsa.PublicKey, digest, sig []byte) bool {
	if len(sig) == 0 || len(sig)%2 != 0 || len(sig) > 2*ecScalarSize {
		return false
	}
	h := len(sig) / 2
	return ecdsa.Verify(pub, digest, new(big.Int).SetBytes(sig[:h]), new(big.Int).SetBytes(sig[h:]))
}

// forgetKey drops a key the cluster no longer has (deleted by another process).
func (t *Token) forgetKey(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.keys, id)
	t.seq++
	t.changes[id] = localChange{seq: t.seq, deleted: true}
}

// ---- verification ----

type verifyOp struct {
	hash  crypto.Hash
	h     hash.Hash
	buf   []byte
	limit int
	k     *key
}

// VerifyInit starts a verification (C_VerifyInit) with a public key object.
func (t *Token) VerifyInit(h uint, mech Mechanism, kh uint) error {
	s, err := t.acquire(h)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.verify != nil {
		return ErrOperationActive
	}
	m, err := t.mechanismFor(mech, CKF_VERIFY)
	if err != nil {
		return err
	}
	o, err := t.resolveKey(kh)
	if err != nil {
		return err
	}
	if err := keyFor(m, o); err != nil {
		return err
	}
	if !o.pub {
		return fmt.Errorf("%w: verify with the public key object", ErrKeyFunctionNotPermitted)
	}
	op := &verifyOp{hash: m.hash, k: o.k, limit: inputLimit(o.k)}
	if m.hash != 0 {
		op.h = m.hash.New()
	}
	s.verify = op
	return nil
}

// Verify checks a one-part signature (C_Verify) in software.
func (t *Token) Verify(h uint, data, sig []byte) error {
	s, err := t.acquire(h)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	op := s.verify
	if op == nil {
		return ErrOperationNotInitialized
	}
	s.verify = nil
	if op.hash == 0 {
		return op.check(data, sig)
	}
	op.h.Write(data)
	return op.check(nil, sig)
}

// VerifyUpdate feeds a multi-part verification (C_VerifyUpdate).
func (t *Token) VerifyUpdate(h uint, data []byte) error {
	s, err := t.acquire(h)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	op := s.verify
	if op == nil {
		return ErrOperationNotInitialized
	}
	if op.hash != 0 {
		op.h.Write(data)
		return nil
	}
	if len(op.buf)+len(data) > op.limit {
		s.verify = nil
		return fmt.Errorf("%w: more than %d bytes in all", ErrDataLenRange, op.limit)
	}
	op.buf = append(op.buf, data...)
	return nil
}

// VerifyFinal finishes a multi-part verification (C_VerifyFinal).
func (t *Token) VerifyFinal(h uint, sig []byte) error {
	s, err := t.acquire(h)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	op := s.verify
	if op == nil {
		return ErrOperationNotInitialized
	}
	s.verify = nil
	return op.check(op.buf, sig)
}

func (op *verifyOp) check(data, sig []byte) error {
	if op.k.keyType == CKK_EC {
		if len(sig) == 0 || len(sig)%2 != 0 || len(sig) > op.k.size {
			return ErrSignatureLenRange
		}
		digest := data
		if op.hash != 0 {
			digest = op.h.Sum(nil)
		} else if len(data) != scheme.ECDSADigestSize {
			return ErrDataLenRange
		}
		if !ecdsaVerify(op.k.ec, digest, sig) {
			return ErrSignatureInvalid
		}
		return nil
	}
	if len(sig) != op.k.size {
		return ErrSignatureLenRange
	}
	if op.k.keyType == CKK_EC_EDWARDS {
		if len(data) > op.limit {
			return ErrDataLenRange
		}
		if !ed25519.Verify(op.k.ed, data, sig) {
			return ErrSignatureInvalid
		}
		return nil
	}
	payload := data
	if op.hash != 0 {
		var err error
		payload, err = shoup.DigestInfo(op.hash, op.h.Sum(nil))
		if err != nil {
			return fmt.Errorf("%w: %w", ErrDeviceError, err)
		}
	} else if len(data) > op.k.size-11 {
		return ErrDataLenRange
	}
	if err := rsa.VerifyPKCS1v15(op.k.pub, 0, payload, sig); err != nil {
		return ErrSignatureInvalid
	}
	return nil
}

// ---- digests ----

type digestOp struct {
	h       hash.Hash
	updated bool
}

// DigestInit starts a digest (C_DigestInit).
func (t *Token) DigestInit(h uint, mech Mechanism) error {
	s, err := t.acquire(h)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.digest != nil {
		return ErrOperationActive
	}
	m, err := t.mechanismFor(mech, CKF_DIGEST)
	if err != nil {
		return err
	}
	s.digest = &digestOp{h: m.hash.New()}
	return nil
}

// Digest hashes data in one part (C_Digest); query and bufLen as for Sign.
func (t *Token) Digest(h uint, data []byte, query bool, bufLen uint) ([]byte, uint, error) {
	return t.finishDigest(h, query, bufLen, func(op *digestOp) error {
		if op.updated {
			return fmt.Errorf("%w: C_Digest after C_DigestUpdate", ErrOperationActive)
		}
		op.h.Write(data)
		return nil
	})
}

// DigestUpdate feeds a multi-part digest (C_DigestUpdate).
func (t *Token) DigestUpdate(h uint, data []byte) error {
	s, err := t.acquire(h)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.digest == nil {
		return ErrOperationNotInitialized
	}
	s.digest.updated = true
	s.digest.h.Write(data)
	return nil
}

// DigestFinal finishes a multi-part digest (C_DigestFinal).
func (t *Token) DigestFinal(h uint, query bool, bufLen uint) ([]byte, uint, error) {
	return t.finishDigest(h, query, bufLen, func(*digestOp) error { return nil })
}

// finishDigest is the common end of C_Digest and C_DigestFinal, as finishSign is for signing:
// the length query and the short buffer keep the operation; otherwise it ends, last feeds it
// its final part, and the digest is returned.
func (t *Token) finishDigest(h uint, query bool, bufLen uint, last func(*digestOp) error) ([]byte, uint, error) {
	s, err := t.acquire(h)
	if err != nil {
		return nil, 0, err
	}
	defer s.mu.Unlock()
	op := s.digest
	if op == nil {
		return nil, 0, ErrOperationNotInitialized
	}
	n := uint(op.h.Size())
	if query {
		return nil, n, nil
	}
	if bufLen < n {
		return nil, n, ErrBufferTooSmall
	}
	s.digest = nil
	if err := last(op); err != nil {
		return nil, 0, err
	}
	return op.h.Sum(nil), n, nil
}

// Operation names a kind of operation a session can have active.
type Operation int

// The operations EndOperation ends.
const (
	OpSign Operation = iota + 1
	OpVerify
	OpDigest
)

// EndOperation ends session h's active operation of kind op, if there is one. The module calls
// it whenever a C_Sign, C_SignUpdate, C_SignFinal, C_Verify*, C_Digest* call fails other than
// with CKR_BUFFER_TOO_SMALL (PKCS#11 v2.40 sections 5.12 to 5.14): the token's own failures
// have ended the operation already; this also covers argument errors the module finds before
// the token is asked (a NULL pointer).
func (t *Token) EndOperation(h uint, op Operation) {
	s, err := t.acquire(h)
	if err != nil {
		return
	}
	defer s.mu.Unlock()
	switch op {
	case OpSign:
		s.sign = nil
	case OpVerify:
		s.verify = nil
	case OpDigest:
		s.digest = nil
	}
}

// publicExponent decodes a CKA_PUBLIC_EXPONENT: big-endian, odd, from 3 to 2^31-1.
func publicExponent(v []byte) (int, error) {
	e := new(big.Int).SetBytes(v)
	if len(v) == 0 || e.BitLen() > 31 || e.Int64() < 3 || e.Bit(0) == 0 {
		return 0, fmt.Errorf("%w: CKA_PUBLIC_EXPONENT", ErrAttributeValueInvalid)
	}
	return int(e.Int64()), nil
}

// maxCreated bounds the public keys callers may create (C_CreateObject) across all sessions.
const maxCreated = 4096

// CreateObject creates a session object (C_CreateObject). Only what verifying needs is
// supported: an RSA public key with CKA_MODULUS and CKA_PUBLIC_EXPONENT, or (when the token
// offers ECDSA P-256) an EC public key with CKA_EC_PARAMS naming P-256 and CKA_EC_POINT (the DER
// OCTET STRING of the uncompressed point, or the bare point), CKA_TOKEN false or absent. OpenSSL's pkcs11-provider creates one to verify a signature with a public key it
// holds (BIND's dnssec-signzone checks every signature it makes so). Private keys cannot be
// imported this way (the CLI's keys import deals them to the cluster); token objects cannot
// be created at all.
func (t *Token) CreateObject(h uint, tmpl []Attribute) (uint, error) {
	s, err := t.acquire(h)
	if err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	var info backend.KeyInfo
	var modulus *big.Int
	var exponent int
	var ecParams, ecPoint []byte
	var class, keyType uint
	var haveClass, haveType bool
	for _, a := range tmpl {
		switch a.Type {
		case CKA_CLASS, CKA_KEY_TYPE:
			v, ok := DecodeULong(a.Value)
			if !ok {
				return 0, fmt.Errorf("%w: CKA_CLASS/CKA_KEY_TYPE", ErrAttributeValueInvalid)
			}
			if a.Type == CKA_CLASS {
				class, haveClass = v, true
			} else {
				keyType, haveType = v, true
			}
		case CKA_MODULUS:
			modulus = new(big.Int).SetBytes(a.Value)
		case CKA_EC_PARAMS, CKA_EC_POINT:
			if !t.ecdsa {
				// As before EC keys: no such attribute here.
				return 0, fmt.Errorf("%w: %#x in C_CreateObject", ErrAttributeTypeInvalid, a.Type)
			}
			if a.Type == CKA_EC_PARAMS {
				ecParams = a.Value
			} else {
				ecPoint = a.Value
			}
		case CKA_PUBLIC_EXPONENT:
			if exponent, err = publicExponent(a.Value); err != nil {
				return 0, err
			}
		case CKA_LABEL:
			info.Label = string(a.Value)
		case CKA_ID:
			info.P11ID = append([]byte{}, a.Value...)
		case CKA_TOKEN, CKA_PRIVATE:
			if b, ok := DecodeBool(a.Value); !ok || b {
				return 0, fmt.Errorf("%w: only public session objects can be created", ErrAttributeValueInvalid)
			}
		case CKA_ENCRYPT, CKA_VERIFY, CKA_VERIFY_RECOVER, CKA_WRAP, CKA_DERIVE, CKA_TRUSTED,
			CKA_MODIFIABLE, CKA_COPYABLE, CKA_DESTROYABLE:
			if _, ok := DecodeBool(a.Value); !ok {
				return 0, fmt.Errorf("%w: boolean attribute %#x", ErrAttributeValueInvalid, a.Type)
			}
		case CKA_SUBJECT, CKA_START_DATE, CKA_END_DATE:
			// accepted, not kept
		default:
			return 0, fmt.Errorf("%w: %#x in C_CreateObject", ErrAttributeTypeInvalid, a.Type)
		}
	}
	switch {
	case !haveClass || !haveType:
		return 0, fmt.Errorf("%w: CKA_CLASS and CKA_KEY_TYPE", ErrTemplateIncomplete)
	case class != CKO_PUBLIC_KEY:
		return 0, fmt.Errorf("%w: only public keys can be created (import private keys with the CLI)", ErrAttributeValueInvalid)
	case keyType == CKK_EC && t.ecdsa:
		if modulus != nil || exponent != 0 {
			return 0, fmt.Errorf("%w: RSA attributes in an EC key", ErrTemplateInconsistent)
		}
		pub, err := ecPublicKey(ecParams, ecPoint)
		if err != nil {
			return 0, err
		}
		info.Algorithm, info.Bits, info.Public = scheme.ECDSAP256HM, ecBits, pub
	case keyType != CKK_RSA:
		return 0, fmt.Errorf("%w: key type %#x", ErrAttributeValueInvalid, keyType)
	case ecParams != nil || ecPoint != nil:
		return 0, fmt.Errorf("%w: EC attributes in an RSA key", ErrTemplateInconsistent)
	case modulus == nil || exponent == 0:
		return 0, fmt.Errorf("%w: CKA_MODULUS and CKA_PUBLIC_EXPONENT", ErrTemplateIncomplete)
	case modulus.BitLen() < 512 || modulus.BitLen() > 2*MaxKeyBits || modulus.Bit(0) == 0:
		return 0, fmt.Errorf("%w: CKA_MODULUS of %d bits", ErrAttributeValueInvalid, modulus.BitLen())
	default:
		info.Algorithm, info.Bits, info.Public = scheme.ShoupRSA, modulus.BitLen(), &rsa.PublicKey{N: modulus, E: exponent}
	}
	k, err := newKey(info)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrAttributeValueInvalid, err)
	}
	k.created = true
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return 0, ErrClosed
	}
	n := 0
	for _, ref := range t.byHandle {
		if ref.session != 0 && ref.k.created {
			n++
		}
	}
	if n >= maxCreated {
		return 0, fmt.Errorf("%w: %d created objects", ErrDeviceMemory, n)
	}
	t.nextObject++
	oh := t.nextObject
	t.byHandle[oh] = objRef{pub: true, session: s.h, k: k}
	return oh, nil
}
