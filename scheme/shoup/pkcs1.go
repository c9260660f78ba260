package shoup

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"

	"github.com/tchsm/tchsm/scheme"
)

// ErrMessageTooLong is returned when a payload does not fit the modulus (PKCS#1 "intended encoded
// message length too short").
var ErrMessageTooLong = errors.New("shoup: message too long for RSA key size")

// digestInfoPrefix holds the DER prefix of DigestInfo for each hash (RFC 8017, section 9.2, note 1).
var digestInfoPrefix = map[crypto.Hash][]byte{
	crypto.SHA1:   {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14},
	crypto.SHA224: {0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04, 0x05, 0x00, 0x04, 0x1c},
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

// DigestInfo returns the DER DigestInfo for digest under hash h.
func DigestInfo(h crypto.Hash, digest []byte) ([]byte, error) {
	prefix, ok := digestInfoPrefix[h]
	if !ok {
		return nil, fmt.Errorf("shoup: unsupported hash %v", h)
	}
	if len(digest) != h.Size() {
		return nil, fmt.Errorf("shoup: digest is %d bytes, %v needs %d", len(digest), h, h.Size())
	}
	out := make([]byte, 0, len(prefix)+len(digest))
	return append(append(out, prefix...), digest...), nil
}

func hashFunc(h crypto.Hash) func([]byte) []byte {
	switch h {
	case crypto.SHA1:
		return func(b []byte) []byte { s := sha1.Sum(b); return s[:] }
	case crypto.SHA224:
		return func(b []byte) []byte { s := sha256.Sum224(b); return s[:] }
	case crypto.SHA256:
		return func(b []byte) []byte { s := sha256.Sum256(b); return s[:] }
	case crypto.SHA384:
		return func(b []byte) []byte { s := sha512.Sum384(b); return s[:] }
	case crypto.SHA512:
		return func(b []byte) []byte { s := sha512.Sum512(b); return s[:] }
	}
	return nil
}

// Payload turns (mechanism, data) into the PKCS#1 v1.5 payload T: data itself for RSAPKCS, the
// DigestInfo of data's hash for the hash mechanisms.
func Payload(m scheme.Mechanism, data []byte) ([]byte, error) {
	if m == scheme.EDDSA { // known to tchsm, hashes nothing, and is not PKCS#1 v1.5
		return nil, fmt.Errorf("%w: %v is not an RSA mechanism", scheme.ErrUnknownMechanism, m)
	}
	h, err := m.Hash()
	if err != nil {
		return nil, err
	}
	if h == 0 {
		return data, nil
	}
	sum := hashFunc(h)
	return DigestInfo(h, sum(data))
}

// EncodePayload builds the EMSA-PKCS1-v1_5 block EM = 00 01 FF..FF 00 T of length kLen bytes
// (RFC 8017, section 9.2). T may be at most kLen-11 bytes.
func EncodePayload(kLen int, t []byte) ([]byte, error) {
	if kLen < 11 || len(t) > kLen-11 {
		return nil, fmt.Errorf("%w: %d payload bytes, modulus of %d bytes", ErrMessageTooLong, len(t), kLen)
	}
	em := make([]byte, kLen)
	em[1] = 0x01
	ps := em[2 : kLen-len(t)-1]
	for i := range ps {
		ps[i] = 0xff
	}
	copy(em[kLen-len(t):], t)
	return em, nil
}

// DigestInfoHash returns the hash a payload T is the DigestInfo of (one of those DigestInfo
// writes, with a digest of the right length), or 0 when T is not such a DigestInfo.
func DigestInfoHash(t []byte) crypto.Hash {
	for h, prefix := range digestInfoPrefix {
		if len(t) == len(prefix)+h.Size() && bytes.Equal(t[:len(prefix)], prefix) {
			return h
		}
	}
	return 0
}
