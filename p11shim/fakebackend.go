//go:build tchsm_fakebackend

package main

// Built only with -tags tchsm_fakebackend, by p11shim/sotest/edfake: the module then signs with
// an in-process backend holding plain crypto/ed25519 keys instead of a cluster, so the C ABI
// of what only a cluster release with Ed25519 could otherwise exercise (CK_EDDSA_PARAMS read
// from caller memory, CKA_EC_POINT written into it) is tested through real PKCS#11 callers.
// It honours the backend.Backend contract for Ed25519 keys and refuses RSA ones. The keys live
// in fake-keys.json beside the client file's manifest (seeds in the clear: test keys only), so
// that one process sees the keys another made, as with a cluster. (Not an environment
// variable: a c-shared Go runtime sees only the environment the process started with.) Never
// ship a module built with this tag.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
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
}

func (k fakeKey) info() backend.KeyInfo {
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

func (b *fakeBackend) GenerateKey(_ context.Context, req backend.GenerateRequest) (backend.KeyInfo, error) {
	if req.Algorithm != scheme.Ed25519FROST || (req.Bits != 0 && req.Bits != 256) || req.E != 0 {
		return backend.KeyInfo{}, fmt.Errorf("%w: the fake backend makes Ed25519 keys only", backend.ErrInvalidInput)
	}
	id := make([]byte, 16)
	rand.Read(id)
	k := fakeKey{ID: hex.EncodeToString(id), Label: req.Label, P11ID: req.P11ID, Seed: make([]byte, ed25519.SeedSize)}
	rand.Read(k.Seed)
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
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: %s", backend.ErrKeyNotFound, id)
	case mech != scheme.EDDSA:
		return nil, fmt.Errorf("%w: %v with an Ed25519 key", backend.ErrInvalidInput, mech)
	}
	return ed25519.Sign(ed25519.NewKeyFromSeed(k.Seed), data), nil
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
