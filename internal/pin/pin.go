// Package pin hashes and verifies PKCS#11 user PINs with argon2id (RFC 9106).
//
// Hashes are PHC strings, the format the reference implementation and libsodium print:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt, unpadded standard base64>$<hash, unpadded standard base64>
//
// The default cost (19 MiB, 2 passes, 1 lane; OWASP's recommendation) takes ~25 ms on the
// project's reference machine: slow enough to make guessing a PIN from a leaked config
// expensive, fast enough for a daemon's C_Login. Verify accepts other costs within bounds,
// so a hash written with stronger parameters keeps working, while a config cannot make the
// PKCS#11 module allocate unbounded memory.
package pin

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Default argon2id parameters used by Hash.
const (
	DefaultMemory  = 19 * 1024 // KiB
	DefaultTime    = 2
	DefaultThreads = 1
	saltLen        = 16
	keyLen         = 32
)

// Bounds Verify enforces on parameters read from a hash.
const (
	maxMemory  = 1 << 20 // KiB (1 GiB)
	maxTime    = 64
	maxThreads = 16
	minSalt    = 8
	maxSalt    = 64
	minKey     = 16
	maxKey     = 64
	// MaxPINLen bounds the PIN length accepted by Hash and Verify.
	MaxPINLen = 1024
)

var (
	// ErrMalformed is returned for a string that is not a valid argon2id PHC hash.
	ErrMalformed = errors.New("pin: malformed argon2id hash")
	// ErrEmpty is returned by Hash for an empty PIN.
	ErrEmpty = errors.New("pin: empty PIN")
	// ErrTooLong is returned for a PIN longer than MaxPINLen bytes.
	ErrTooLong = errors.New("pin: PIN too long")
)

var b64 = base64.RawStdEncoding

// Hash returns the PHC string of pin under argon2id with the default parameters and a
// random 16-byte salt.
func Hash(pin string) (string, error) {
	if pin == "" {
		return "", ErrEmpty
	}
	if len(pin) > MaxPINLen {
		return "", ErrTooLong
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("pin: reading random salt: %w", err)
	}
	sum := argon2.IDKey([]byte(pin), salt, DefaultTime, DefaultMemory, DefaultThreads, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
		DefaultMemory, DefaultTime, DefaultThreads, b64.EncodeToString(salt), b64.EncodeToString(sum)), nil
}

type params struct {
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	sum     []byte
}

// parse decodes a PHC argon2id string. Error messages never include the hash itself.
func parse(hash string) (*params, error) {
	parts := strings.Split(hash, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, sum
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return nil, fmt.Errorf("%w: want $argon2id$v=19$m=..,t=..,p=..$salt$hash", ErrMalformed)
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || parts[2] != fmt.Sprintf("v=%d", v) {
		return nil, fmt.Errorf("%w: bad version field", ErrMalformed)
	}
	if v != argon2.Version {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrMalformed, v, argon2.Version)
	}
	var m, t, p uint64
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil ||
		parts[3] != fmt.Sprintf("m=%d,t=%d,p=%d", m, t, p) {
		return nil, fmt.Errorf("%w: bad parameter field", ErrMalformed)
	}
	if t < 1 || t > maxTime || p < 1 || p > maxThreads || m < 8*p || m > maxMemory {
		return nil, fmt.Errorf("%w: parameters m=%d,t=%d,p=%d out of range", ErrMalformed, m, t, p)
	}
	salt, err := b64.DecodeString(parts[4])
	if err != nil || len(salt) < minSalt || len(salt) > maxSalt {
		return nil, fmt.Errorf("%w: bad salt", ErrMalformed)
	}
	sum, err := b64.DecodeString(parts[5])
	if err != nil || len(sum) < minKey || len(sum) > maxKey {
		return nil, fmt.Errorf("%w: bad hash value", ErrMalformed)
	}
	return &params{memory: uint32(m), time: uint32(t), threads: uint8(p), salt: salt, sum: sum}, nil
}

// Check reports whether hash is a well-formed argon2id PHC string Verify accepts.
func Check(hash string) error {
	_, err := parse(hash)
	return err
}

// Verify reports whether pin matches hash. The comparison of the derived key is constant
// time. An error means the hash itself is unusable; a wrong PIN is (false, nil).
func Verify(hash, pin string) (bool, error) {
	p, err := parse(hash)
	if err != nil {
		return false, err
	}
	if len(pin) > MaxPINLen {
		return false, nil
	}
	sum := argon2.IDKey([]byte(pin), p.salt, p.time, p.memory, p.threads, uint32(len(p.sum)))
	return subtle.ConstantTimeCompare(sum, p.sum) == 1, nil
}
