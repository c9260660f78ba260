//go:build tchsm_fakebackend

package main

// Built only with -tags tchsm_fakebackend, by p11shim/sotest/edfake and p11shim/sotest/ecfake:
// the module then signs with an in-process backend holding plain crypto/ed25519 and
// crypto/ecdsa P-256 keys instead of a cluster, so the C ABI of what only a cluster release
// with those keys could otherwise exercise (CK_EDDSA_PARAMS read from caller memory,
// CKA_EC_PARAMS and CKA_EC_POINT written into it, the EC mechanisms) is tested through real
// PKCS#11 callers. It honours the backend.Backend contract for Ed25519 and ECDSA P-256 keys
// (backend.AlgorithmLister) and refuses RSA ones. The keys live
// in fake-keys.json beside the client file's manifest (seeds in the clear: test keys only), so
// that one process sees the keys another made, as with a cluster. (Not an environment
// variable: a c-shared Go runtime sees only the environment the process started with.) Never
// ship a module built with this tag.

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/internal/backend"
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/scheme"
)

func init() {
	openBackend = func(_ context.Context, cfg *config.Client, _ *slog.Logger) (client.Backend, error) {
		return &fakeBackend{path: filepath.Join(filepath.Dir(cfg.Manifest), "fake-keys.json")}, nil
	}
}

type fakeBackend struct {
	path string
	mu   sync.Mutex // held across each load … save
}

// fakeKey is one key of the fake-keys.json file.
type fakeKey struct {
	ID    string `json:"id"`
	Label string `json:"label"`
	P11ID []byte `json:"p11_id"`
	Seed  []byte `json:"seed"`
	// Algorithm is 0 (an Ed25519 key, Seed its seed: files of earlier builds) or
	// scheme.ECDSAP256HM (Seed the P-256 private scalar, 32 bytes).
	Algorithm scheme.Algorithm `json:"algorithm,omitempty"`
}

// ecdsaKey returns the P-256 private key of an ECDSA key.
func (k fakeKey) ecdsaKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.ParseRawPrivateKey(elliptic.P256(), k.Seed)
}

func (k fakeKey) info() backend.KeyInfo {
	if k.Algorithm == scheme.ECDSAP256HM {
		priv, err := k.ecdsaKey()
		if err != nil {
			return backend.KeyInfo{ID: k.ID, Algorithm: k.Algorithm} // the token ignores it (no public key)
		}
		return backend.KeyInfo{ID: k.ID, Label: k.Label, P11ID: k.P11ID, Algorithm: scheme.ECDSAP256HM,
			Bits: 256, Public: &priv.PublicKey, K: 3, L: 5, Created: time.Unix(0, 0)}
	}
	pub := ed25519.NewKeyFromSeed(k.Seed).Public().(ed25519.PublicKey)
	return backend.KeyInfo{ID: k.ID, Label: k.Label, P11ID: k.P11ID, Algorithm: scheme.Ed25519FROST,
		Bits: 256, Public: pub, K: 1, L: 1, Created: time.Unix(0, 0)}
}

func (b *fakeBackend) load() (map[string]fakeKey, error) {
	keys := map[string]fakeKey{}
	data, err := os.ReadFile(b.path)
	if errors.Is(err, fs.ErrNotExist) {
		return keys, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", backend.ErrUnavailable, err)
	}
	if err := json.Unmarshal(data, &keys); err != nil {
		return nil, fmt.Errorf("%w: %w", backend.ErrUnavailable, err)
	}
	return keys, nil
}

func (b *fakeBackend) save(keys map[string]fakeKey) error {
	data, err := json.Marshal(keys)
	if err != nil {
		return err
	}
	return os.WriteFile(b.path, data, 0o600)
}

func (b *fakeBackend) Keys(context.Context) ([]backend.KeyInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	keys, err := b.load()
	if err != nil {
		return nil, err
	}
	var out []backend.KeyInfo
	for _, k := range keys {
		out = append(out, k.info())
	}
	return out, nil
}

// Algorithms: Ed25519 and ECDSA P-256 keys.
func (b *fakeBackend) Algorithms() []scheme.Algorithm {
	return []scheme.Algorithm{scheme.Ed25519FROST, scheme.ECDSAP256HM}
}

func (b *fakeBackend) GenerateKey(_ context.Context, req backend.GenerateRequest) (backend.KeyInfo, error) {
	if (req.Algorithm != scheme.Ed25519FROST && req.Algorithm != scheme.ECDSAP256HM) || (req.Bits != 0 && req.Bits != 256) || req.E != 0 {
		return backend.KeyInfo{}, fmt.Errorf("%w: the fake backend makes Ed25519 and ECDSA P-256 keys only", backend.ErrInvalidInput)
	}
	id := make([]byte, 16)
	rand.Read(id)
	k := fakeKey{ID: hex.EncodeToString(id), Label: req.Label, P11ID: req.P11ID, Seed: make([]byte, ed25519.SeedSize)}
	rand.Read(k.Seed)
	if req.Algorithm == scheme.ECDSAP256HM {
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return backend.KeyInfo{}, err
		}
		if k.Seed, err = priv.Bytes(); err != nil {
			return backend.KeyInfo{}, err
		}
		k.Algorithm = scheme.ECDSAP256HM
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	keys, err := b.load()
	if err != nil {
		return backend.KeyInfo{}, err
	}
	keys[k.ID] = k
	if err := b.save(keys); err != nil {
		return backend.KeyInfo{}, err
	}
	return k.info(), nil
}

func (b *fakeBackend) DeleteKey(_ context.Context, id string) (time.Time, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	keys, err := b.load()
	if err != nil {
		return time.Time{}, err
	}
	if _, ok := keys[id]; !ok {
		return time.Time{}, fmt.Errorf("%w: %s", backend.ErrKeyNotFound, id)
	}
	delete(keys, id)
	return time.Time{}, b.save(keys) // the fake deletes at once: nothing to restore
}

func (b *fakeBackend) Sign(_ context.Context, id string, mech scheme.Mechanism, data []byte) ([]byte, error) {
	b.mu.Lock()
	keys, err := b.load()
	b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	k, ok := keys[id]
	if ok && k.Algorithm == scheme.ECDSAP256HM {
		return signECDSA(k, mech, data)
	}
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: %s", backend.ErrKeyNotFound, id)
	case mech != scheme.EDDSA:
		return nil, fmt.Errorf("%w: %v with an Ed25519 key", backend.ErrInvalidInput, mech)
	}
	return ed25519.Sign(ed25519.NewKeyFromSeed(k.Seed), data), nil
}

// signECDSA signs as the cluster would: CKM_ECDSA over exactly a 32-byte digest, ECDSA_SHA256
// over the message, r || s of 32 bytes each.
func signECDSA(k fakeKey, mech scheme.Mechanism, data []byte) ([]byte, error) {
	var digest []byte
	switch mech {
	case scheme.ECDSA:
		if len(data) != scheme.ECDSADigestSize {
			return nil, fmt.Errorf("%w: CKM_ECDSA over %d bytes, not a 32-byte digest", backend.ErrInvalidInput, len(data))
		}
		digest = data
	case scheme.ECDSASHA256:
		h := sha256.Sum256(data)
		digest = h[:]
	default:
		return nil, fmt.Errorf("%w: %v with an ECDSA P-256 key", backend.ErrInvalidInput, mech)
	}
	priv, err := k.ecdsaKey()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", backend.ErrUnavailable, err)
	}
	r, s, err := ecdsa.Sign(rand.Reader, priv, digest)
	if err != nil {
		return nil, err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return sig, nil
}

func (b *fakeBackend) Close() error { return nil }

// Login: the fake holds no PIN, so the token checks user_pin_hash as for a cluster whose
// nodes hold none.
func (b *fakeBackend) Login(context.Context, []byte) (backend.PINStatus, error) {
	return backend.PINStatus{}, backend.ErrNoPINVerifier
}

func (b *fakeBackend) Logout() {}

func (b *fakeBackend) ChangePIN(context.Context, []byte, []byte) (backend.PINStatus, error) {
	return backend.PINStatus{}, fmt.Errorf("%w: the fake backend keeps no PIN", backend.ErrUnavailable)
}
