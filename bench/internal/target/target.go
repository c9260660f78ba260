// Package target defines what the harness benchmarks: a signer that turns SHA-256 digests into
// RSA PKCS#1 v1.5 signatures, or messages into Ed25519 signatures (pure Ed25519, RFC 8032, as
// DNSSEC algorithm 15 signs), with one Worker per client goroutine, and its implementations
// (Go crypto/rsa and crypto/ed25519 in process, any PKCS#11 module, SoftHSM2 on a throw-away
// token).
package target

import (
	"crypto"
	"crypto/ed25519"
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
	// PublicKey is the key every signature is verified against: *rsa.PublicKey or
	// ed25519.PublicKey.
	PublicKey() crypto.PublicKey
	// NewWorker opens what one client goroutine uses (a PKCS#11 session). A Worker is never
	// used by two goroutines at once.
	NewWorker() (Worker, error)
	// Close releases everything the target created (sessions, generated keys, temp tokens).
	Close() error
}

// Worker signs on behalf of one goroutine.
type Worker interface {
	// Sign returns the RSA PKCS#1 v1.5 signature of a SHA-256 digest (32 bytes), or for an
	// Ed25519 key the Ed25519 signature of the message.
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

// Verifier checks signatures over a fixed set of digests (RSA) or messages (Ed25519). PKCS#1
// v1.5 and RFC 8032 Ed25519 signatures are deterministic: a key has exactly one valid signature
// per digest. The first signature seen for each digest is verified with the public key and
// remembered; later ones are compared byte for byte (a few nanoseconds) and fully verified only
// when they differ. So every signature is checked, and the expensive check happens at most once
// per digest, normally during warm-up. A threshold Ed25519 signature (FROST) is not
// deterministic: its nonce is random, so each one differs and is verified in full
// (crypto/ed25519.Verify, about 50 µs of the harness's CPU per signature).
type Verifier struct {
	rsa     *rsa.PublicKey
	ed      ed25519.PublicKey
	digests [][]byte
	good    []atomic.Pointer[[]byte]
}

// Ed25519MessageSize is the length of the messages an Ed25519 target signs: an RRSIG's RDATA
// and a small RRset, the size OpenDNSSEC passes to C_Sign.
const Ed25519MessageSize = 150

// NewVerifier makes count random SHA-256 digests (an RSA key) or Ed25519MessageSize-byte
// messages (an Ed25519 key) to sign and a verifier for them.
func NewVerifier(pub crypto.PublicKey, count int) (*Verifier, error) {
	if count < 1 {
		return nil, fmt.Errorf("%w: verifier needs at least one digest", ErrBadConfig)
	}
	v := &Verifier{digests: make([][]byte, count), good: make([]atomic.Pointer[[]byte], count)}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k == nil {
			return nil, fmt.Errorf("%w: verifier needs a key", ErrBadConfig)
		}
		v.rsa = k
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: Ed25519 key of %d bytes", ErrBadConfig, len(k))
		}
		v.ed = k
	default:
		return nil, fmt.Errorf("%w: verifier needs an RSA or Ed25519 key, not %T", ErrBadConfig, pub)
	}
	for i := range v.digests {
		msg := make([]byte, max(64, Ed25519MessageSize))
		if _, err := rand.Read(msg); err != nil {
			return nil, fmt.Errorf("target: random message: %w", err)
		}
		if v.ed != nil {
			v.digests[i] = msg[:Ed25519MessageSize]
			continue
		}
		d := sha256.Sum256(msg[:64])
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
	if v.ed != nil {
		if !ed25519.Verify(v.ed, v.digests[i], sig) {
			return false
		}
	} else if err := rsa.VerifyPKCS1v15(v.rsa, crypto.SHA256, v.digests[i], sig); err != nil {
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
func (g *GoRSA) PublicKey() crypto.PublicKey { return &g.priv.PublicKey }

// NewWorker implements Target.
func (g *GoRSA) NewWorker() (Worker, error) { return goRSAWorker{g.priv}, nil }

// Close implements Target.
func (g *GoRSA) Close() error { return nil }

type goRSAWorker struct{ priv *rsa.PrivateKey }

func (w goRSAWorker) Sign(digest []byte) ([]byte, error) {
	return rsa.SignPKCS1v15(rand.Reader, w.priv, crypto.SHA256, digest)
}

func (w goRSAWorker) Close() error { return nil }

// GoEd25519 signs in process with crypto/ed25519 (RFC 8032 pure Ed25519).
type GoEd25519 struct {
	priv ed25519.PrivateKey
}

// NewGoEd25519 generates a key.
func NewGoEd25519() (*GoEd25519, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("target: goed25519: generate key: %w", err)
	}
	return &GoEd25519{priv: priv}, nil
}

// Name implements Target.
func (g *GoEd25519) Name() string { return "goed25519" }

// Describe implements Target.
func (g *GoEd25519) Describe() string {
	return fmt.Sprintf("Go crypto/ed25519 Sign in process, %d-byte messages", Ed25519MessageSize)
}

// PublicKey implements Target.
func (g *GoEd25519) PublicKey() crypto.PublicKey { return g.priv.Public() }

// NewWorker implements Target.
func (g *GoEd25519) NewWorker() (Worker, error) { return goEdWorker{g.priv}, nil }

// Close implements Target.
func (g *GoEd25519) Close() error { return nil }

type goEdWorker struct{ priv ed25519.PrivateKey }

func (w goEdWorker) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(w.priv, msg), nil }

func (w goEdWorker) Close() error { return nil }
