// Package target defines what the harness benchmarks: a signer that turns SHA-256 digests into
// RSA PKCS#1 v1.5 signatures, with one Worker per client goroutine, and its implementations
// (Go crypto/rsa in process, any PKCS#11 module, SoftHSM2 on a throw-away token).
package target

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync/atomic"
)

// Sentinel errors, wrapped with %w.
var (
	ErrBadConfig    = errors.New("target: bad configuration")
	ErrTokenMissing = errors.New("target: token not found")
	ErrKeySize      = errors.New("target: key has the wrong size")
)

// Target is a signer under test.
type Target interface {
	// Name is the short name used in tables and plots ("softhsm", "gorsa", "tchsm", ...).
	Name() string
	// Describe says what exactly was measured (module path, library version, key).
	Describe() string
	// PublicKey is the key every signature is verified against.
	PublicKey() *rsa.PublicKey
	// NewWorker opens what one client goroutine uses (a PKCS#11 session). A Worker is never
	// used by two goroutines at once.
	NewWorker() (Worker, error)
	// Close releases everything the target created (sessions, generated keys, temp tokens).
	Close() error
}

// Worker signs on behalf of one goroutine.
type Worker interface {
	// Sign returns the RSA PKCS#1 v1.5 signature of a SHA-256 digest (32 bytes).
	Sign(digest []byte) ([]byte, error)
	Close() error
}

// ValidBits reports whether bits is a key size the harness supports.
func ValidBits(bits int) bool {
	switch bits {
	case 1024, 2048, 3072, 4096:
		return true
	}
	return false
}

// sha256DigestInfoPrefix is the DER prefix of a SHA-256 DigestInfo (RFC 8017, section 9.2).
var sha256DigestInfoPrefix = []byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}

// DigestInfo wraps a SHA-256 digest the way OpenDNSSEC's libhsm does before C_Sign(CKM_RSA_PKCS).
func DigestInfo(digest []byte) ([]byte, error) {
	if len(digest) != sha256.Size {
		return nil, fmt.Errorf("%w: digest is %d bytes, want %d", ErrBadConfig, len(digest), sha256.Size)
	}
	out := make([]byte, 0, len(sha256DigestInfoPrefix)+len(digest))
	return append(append(out, sha256DigestInfoPrefix...), digest...), nil
}

// Verifier checks signatures over a fixed set of digests. PKCS#1 v1.5 signatures are
// deterministic: a key has exactly one valid signature per digest. The first signature seen for
// each digest is verified with the public key and remembered; later ones are compared byte for
// byte (a few nanoseconds) and fully verified only when they differ. So every signature is
// checked, and the expensive check happens at most once per digest, normally during warm-up.
type Verifier struct {
	pub     *rsa.PublicKey
	digests [][]byte
	good    []atomic.Pointer[[]byte]
}

// NewVerifier makes count random SHA-256 digests to sign and a verifier for them.
func NewVerifier(pub *rsa.PublicKey, count int) (*Verifier, error) {
	if pub == nil || count < 1 {
		return nil, fmt.Errorf("%w: verifier needs a key and at least one digest", ErrBadConfig)
	}
	v := &Verifier{pub: pub, digests: make([][]byte, count), good: make([]atomic.Pointer[[]byte], count)}
	for i := range v.digests {
		var msg [64]byte
		if _, err := rand.Read(msg[:]); err != nil {
			return nil, fmt.Errorf("target: random message: %w", err)
		}
		d := sha256.Sum256(msg[:])
		v.digests[i] = d[:]
	}
	return v, nil
}

// Len is the number of digests.
func (v *Verifier) Len() int { return len(v.digests) }

// Digest returns digest i (mod Len). Callers must not modify it.
func (v *Verifier) Digest(i int) []byte { return v.digests[i%len(v.digests)] }

// Check reports whether sig is a valid signature of Digest(i).
func (v *Verifier) Check(i int, sig []byte) bool {
	i %= len(v.digests)
	if p := v.good[i].Load(); p != nil && string(*p) == string(sig) {
		return true
	}
	if err := rsa.VerifyPKCS1v15(v.pub, crypto.SHA256, v.digests[i], sig); err != nil {
		return false
	}
	s := append([]byte(nil), sig...)
	v.good[i].Store(&s)
	return true
}

// GoRSA signs in process with crypto/rsa (SignPKCS1v15, SHA-256, CRT, constant time).
type GoRSA struct {
	priv *rsa.PrivateKey
}

// NewGoRSA generates a key of the given size.
func NewGoRSA(bits int) (*GoRSA, error) {
	if !ValidBits(bits) {
		return nil, fmt.Errorf("%w: %d bits", ErrBadConfig, bits)
	}
	priv, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, fmt.Errorf("target: gorsa: generate key: %w", err)
	}
	return &GoRSA{priv: priv}, nil
}

// Name implements Target.
func (g *GoRSA) Name() string { return "gorsa" }

// Describe implements Target.
func (g *GoRSA) Describe() string {
	return fmt.Sprintf("Go crypto/rsa SignPKCS1v15(SHA-256) in process, RSA-%d", g.priv.N.BitLen())
}

// PublicKey implements Target.
func (g *GoRSA) PublicKey() *rsa.PublicKey { return &g.priv.PublicKey }

// NewWorker implements Target.
func (g *GoRSA) NewWorker() (Worker, error) { return goRSAWorker{g.priv}, nil }

// Close implements Target.
func (g *GoRSA) Close() error { return nil }

type goRSAWorker struct{ priv *rsa.PrivateKey }

func (w goRSAWorker) Sign(digest []byte) ([]byte, error) {
	return rsa.SignPKCS1v15(rand.Reader, w.priv, crypto.SHA256, digest)
}

func (w goRSAWorker) Close() error { return nil }
