package trust

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// Role is what a member of the cluster is allowed to be.
type Role string

// The three roles of the manifest.
const (
	RoleNode   Role = "node"
	RoleDealer Role = "dealer"
	RoleClient Role = "client"
)

func (r Role) valid() bool { return r == RoleNode || r == RoleDealer || r == RoleClient }

// Errors about identities and their files.
var (
	ErrInvalidIdentity      = errors.New("trust: invalid identity")
	ErrInsecurePermissions  = errors.New("trust: identity file readable by group or others")
	ErrPassphraseRequired   = errors.New("trust: identity file is passphrase-protected")
	ErrWrongPassphrase      = errors.New("trust: wrong passphrase or corrupted identity file")
	errIdentityJSONRedacted = errors.New("trust: identities are not JSON-marshalled; use WriteIdentityFile")
)

// idPattern limits identity and cluster ids to characters safe in AMQP names and file names.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// validID is idPattern.MatchString, byte by byte, for the paths every request takes.
func validID(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if ('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') {
			continue
		}
		if i == 0 || (c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// Identity is one process's private identity. Treat it as secret: its String, GoString,
// LogValue and MarshalJSON methods print only the public part.
type Identity struct {
	ID      string
	Role    Role
	SignKey ed25519.PrivateKey // Ed25519, signs envelopes and key records
	EncKey  *ecdh.PrivateKey   // X25519, HPKE recipient key for key shares
}

// Member is the public part of an identity, as listed in the manifest.
type Member struct {
	ID      string            `json:"id"`
	Role    Role              `json:"role"`
	Index   int               `json:"index,omitempty"` // nodes: share index 1..n; others 0
	SignPub ed25519.PublicKey `json:"sign_pub"`        // 32 bytes
	EncPub  []byte            `json:"enc_pub"`         // 32-byte X25519 public key
	// DKGPub is a node's long-term DKG public key (Identity.DKGKey), 32 bytes; absent in
	// manifests written before distributed key generation, and for other roles.
	DKGPub []byte `json:"dkg_pub,omitempty"`
	// ClientRole is what a client may do (clients only; "" means DefaultClientRole).
	ClientRole ClientRole `json:"client_role,omitempty"`
}

// NewIdentity generates a fresh identity with random keys.
func NewIdentity(id string, role Role) (*Identity, error) {
	if !idPattern.MatchString(id) {
		return nil, fmt.Errorf("%w: id %q must match %s", ErrInvalidIdentity, id, idPattern)
	}
	if !role.valid() {
		return nil, fmt.Errorf("%w: role %q", ErrInvalidIdentity, role)
	}
	_, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("trust: generating signing key: %w", err)
	}
	ek, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("trust: generating encryption key: %w", err)
	}
	return &Identity{ID: id, Role: role, SignKey: sk, EncKey: ek}, nil
}

// Public returns the identity's public part. Index is 0: the manifest assigns node indices.
func (id *Identity) Public() Member {
	m := Member{ID: id.ID, Role: id.Role}
	if len(id.SignKey) == ed25519.PrivateKeySize {
		m.SignPub = bytes.Clone(id.SignKey.Public().(ed25519.PublicKey))
	}
	if id.EncKey != nil {
		m.EncPub = id.EncKey.PublicKey().Bytes()
	}
	if id.Role == RoleNode {
		if _, pub, err := id.DKGKey(); err == nil {
			m.DKGPub = pub
		}
	}
	return m
}

// check reports whether id is usable for signing and decrypting.
func (id *Identity) check() error {
	if id == nil {
		return fmt.Errorf("%w: nil identity", ErrInvalidIdentity)
	}
	if !validID(id.ID) || !id.Role.valid() {
		return fmt.Errorf("%w: id %q role %q", ErrInvalidIdentity, id.ID, id.Role)
	}
	if len(id.SignKey) != ed25519.PrivateKeySize || id.EncKey == nil || id.EncKey.Curve() != ecdh.X25519() {
		return fmt.Errorf("%w: %s: missing or malformed keys", ErrInvalidIdentity, id.ID)
	}
	return nil
}

// String prints the public part only.
func (id Identity) String() string {
	return fmt.Sprintf("trust.Identity{ID:%q Role:%s SignPub:%x keys:REDACTED}", id.ID, id.Role, id.signPub())
}

// GoString keeps %#v from printing private keys.
func (id Identity) GoString() string { return id.String() }

// LogValue keeps slog from printing private keys.
func (id Identity) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", id.ID), slog.String("role", string(id.Role)),
		slog.String("sign_pub", fmt.Sprintf("%x", id.signPub())))
}

// MarshalJSON refuses: private keys are written only by WriteIdentityFile.
func (id Identity) MarshalJSON() ([]byte, error) { return nil, errIdentityJSONRedacted }

func (id Identity) signPub() []byte {
	if len(id.SignKey) != ed25519.PrivateKeySize {
		return nil
	}
	return id.SignKey[32:]
}

// identityFile is the on-disk form; see the package documentation.
type identityFile struct {
	Version  int       `json:"version"`
	ID       string    `json:"id"`
	Role     Role      `json:"role"`
	SignSeed []byte    `json:"sign_seed,omitempty"`
	EncKey   []byte    `json:"enc_key,omitempty"`
	KDF      *kdfParam `json:"kdf,omitempty"`
	Sealed   []byte    `json:"sealed,omitempty"`
}

type kdfParam struct {
	Name      string `json:"name"`
	Salt      []byte `json:"salt"`
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
}

// Argon2id parameters for new passphrase-protected files; reading accepts what the file says
// within limits that keep a hostile file from exhausting memory.
const (
	argonTime      = 2
	argonMemoryKiB = 64 * 1024
	argonThreads   = 2
	maxIdentityLen = 64 << 10
)

// WriteIdentityFile writes id to a new file at path with mode 0600; it never overwrites an
// existing file. With a non-empty passphrase the keys are sealed under an Argon2id-derived key;
// with none they are stored in the clear (protected by file permissions only).
func WriteIdentityFile(path string, id *Identity, passphrase []byte) error {
	if err := id.check(); err != nil {
		return err
	}
	plain := identityFile{Version: 1, ID: id.ID, Role: id.Role, SignSeed: id.SignKey.Seed(), EncKey: id.EncKey.Bytes()}
	data, err := json.Marshal(plain)
	clear(plain.SignSeed)
	clear(plain.EncKey)
	if err != nil {
		return fmt.Errorf("trust: encoding identity: %w", err)
	}
	if len(passphrase) > 0 {
		sealed, err := sealIdentity(plain, data, passphrase)
		clear(data)
		if err != nil {
			return err
		}
		data = sealed
	}
	defer clear(data)
	data = append(data, '\n')
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("trust: writing identity: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("trust: writing identity %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("trust: writing identity %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("trust: writing identity %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func sealIdentity(hdr identityFile, plain, passphrase []byte) ([]byte, error) {
	salt := make([]byte, 16)
	rand.Read(salt)
	kp := &kdfParam{Name: "argon2id", Salt: salt, Time: argonTime, MemoryKiB: argonMemoryKiB, Threads: argonThreads}
	key := argon2.IDKey(passphrase, salt, kp.Time, kp.MemoryKiB, kp.Threads, chacha20poly1305.KeySize)
	defer clear(key)
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("trust: sealing identity: %w", err)
	}
	out := identityFile{Version: 1, ID: hdr.ID, Role: hdr.Role, KDF: kp}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	rand.Read(nonce)
	out.Sealed = aead.Seal(nonce, nonce, plain, identityAAD(out))
	return json.Marshal(out)
}

// identityAAD binds the clear header (id, role, KDF parameters) to the sealed keys.
func identityAAD(f identityFile) []byte {
	b := appendLPString(nil, "tchsm/v1/identity-file")
	b = appendLPString(b, f.ID)
	b = appendLPString(b, string(f.Role))
	b = appendLPString(b, f.KDF.Name)
	b = appendLP(b, f.KDF.Salt)
	return fmt.Appendf(b, "%d/%d/%d", f.KDF.Time, f.KDF.MemoryKiB, f.KDF.Threads)
}

// ReadIdentityFile reads an identity written by WriteIdentityFile. It refuses files that group
// or others may read. passphrase is needed only for passphrase-protected files.
func ReadIdentityFile(path string, passphrase []byte) (*Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("trust: reading identity: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("trust: reading identity: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v (want 0600)", ErrInsecurePermissions, path, st.Mode().Perm())
	}
	if !st.Mode().IsRegular() || st.Size() > maxIdentityLen {
		return nil, fmt.Errorf("%w: %s is not a regular file of at most %d bytes", ErrInvalidIdentity, path, maxIdentityLen)
	}
	data := make([]byte, st.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("trust: reading identity %s: %w", path, err)
	}
	defer clear(data)
	id, err := parseIdentity(data, passphrase)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return id, nil
}

// parseIdentity decodes an identity file's contents. Error messages never include key bytes.
func parseIdentity(data, passphrase []byte) (*Identity, error) {
	var f identityFile
	if err := json.Unmarshal(data, &f); err != nil {
		// json errors may quote input fragments; do not pass them on.
		return nil, fmt.Errorf("%w: not valid identity JSON", ErrInvalidIdentity)
	}
	defer clear(f.SignSeed)
	defer clear(f.EncKey)
	if f.Version != 1 {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrInvalidIdentity, f.Version)
	}
	if f.Sealed != nil || f.KDF != nil {
		if len(passphrase) == 0 {
			return nil, ErrPassphraseRequired
		}
		kp := f.KDF
		if kp == nil || kp.Name != "argon2id" || len(kp.Salt) < 16 || kp.Time < 1 || kp.Time > 16 ||
			kp.MemoryKiB < 8*1024 || kp.MemoryKiB > 1024*1024 || kp.Threads < 1 {
			return nil, fmt.Errorf("%w: bad kdf parameters", ErrInvalidIdentity)
		}
		key := argon2.IDKey(passphrase, kp.Salt, kp.Time, kp.MemoryKiB, kp.Threads, chacha20poly1305.KeySize)
		defer clear(key)
		aead, err := chacha20poly1305.NewX(key)
		if err != nil {
			return nil, fmt.Errorf("trust: opening identity: %w", err)
		}
		if len(f.Sealed) < aead.NonceSize()+aead.Overhead() {
			return nil, fmt.Errorf("%w: sealed keys truncated", ErrInvalidIdentity)
		}
		plain, err := aead.Open(nil, f.Sealed[:aead.NonceSize()], f.Sealed[aead.NonceSize():], identityAAD(f))
		if err != nil {
			return nil, ErrWrongPassphrase
		}
		defer clear(plain)
		inner, err := parseIdentity(plain, nil)
		if err != nil {
			return nil, err
		}
		if inner.ID != f.ID || inner.Role != f.Role {
			return nil, fmt.Errorf("%w: sealed id/role differ from header", ErrInvalidIdentity)
		}
		return inner, nil
	}
	if len(f.SignSeed) != ed25519.SeedSize || len(f.EncKey) != 32 {
		return nil, fmt.Errorf("%w: key lengths", ErrInvalidIdentity)
	}
	ek, err := ecdh.X25519().NewPrivateKey(f.EncKey)
	if err != nil {
		return nil, fmt.Errorf("%w: encryption key", ErrInvalidIdentity)
	}
	id := &Identity{ID: f.ID, Role: f.Role, SignKey: ed25519.NewKeyFromSeed(f.SignSeed), EncKey: ek}
	if err := id.check(); err != nil {
		return nil, err
	}
	return id, nil
}
