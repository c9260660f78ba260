package token

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tchsm/tchsm/internal/backend"
	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/shoup"
	rsakeygen "github.com/tchsm/tchsm/scheme/shoup/keygen"
)

// clusterBackend is a backend.Backend that runs the real threshold scheme in process: the dealer
// generates safe-prime keys and deals k-of-n shares, each "node" computes its signature share,
// and the backend combines k of them. Nodes can be taken down or slowed to exercise the
// token's error paths and deadlines, the way a real cluster fails. Ed25519 keys
// (scheme.Ed25519FROST) are plain crypto/ed25519 keys held here: the token sees only the
// backend.Backend contract (the 32-byte public key, 64-byte signatures over the whole
// message), which is all this fake has to honour; FROST itself is the cluster's business.
type clusterBackend struct {
	k, n int

	mu        sync.Mutex
	keys      map[string]*clusterKey
	down      map[int]bool
	delay     time.Duration // added to every node's answer
	listDelay time.Duration // added to every key listing
	corrupt   bool          // flip a bit of every signature, as a cluster that failed to check would
	refuseEd  bool          // refuse Ed25519 keys, as a cluster release before them does
	// ecdsa: the backend lists scheme.ECDSAP256HM (Algorithms) and makes plain crypto/ecdsa
	// P-256 keys; ecNotWired: it lists it but answers scheme.ErrNotSupported to its key
	// generation, as the cluster client does until the scheme is wired. Set before New.
	ecdsa, ecNotWired bool
	closed            bool

	lastMech scheme.Mechanism // the mechanism of the last Sign
	lastData []byte           // and its data

	signs atomic.Int64
	lists atomic.Int64

	// refuse makes Sign answer as a cluster whose nodes' signing policy refuses.
	refuse bool

	// The nodes' PIN, as one node would keep it: nil means no node holds one (the token then
	// checks user_pin_hash); with one, Sign needs a login, wrong PINs count up to maxFails.
	pin       []byte
	failures  int
	maxFails  int
	locked    bool
	logged    bool
	loginRuns int
}

func (b *clusterBackend) setPIN(pin string, maxFails int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pin, b.maxFails = []byte(pin), maxFails
}

func (b *clusterBackend) status() backend.PINStatus {
	return backend.PINStatus{Known: true, Failures: b.failures, Remaining: b.maxFails - b.failures, Locked: b.locked}
}

func (b *clusterBackend) Login(_ context.Context, pin []byte) (backend.PINStatus, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.loginRuns++
	switch {
	case b.pin == nil:
		return backend.PINStatus{}, backend.ErrNoPINVerifier
	case b.locked:
		return b.status(), backend.ErrPINLocked
	case !bytes.Equal(pin, b.pin):
		b.failures++
		if b.failures >= b.maxFails {
			b.locked = true
			return b.status(), backend.ErrPINLocked
		}
		return b.status(), backend.ErrPINIncorrect
	}
	b.failures, b.logged = 0, true
	return b.status(), nil
}

func (b *clusterBackend) Logout() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.logged = false
}

func (b *clusterBackend) ChangePIN(ctx context.Context, oldPIN, newPIN []byte) (backend.PINStatus, error) {
	if b.pin == nil && oldPIN == nil {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.pin, b.maxFails, b.logged = bytes.Clone(newPIN), 10, true
		return b.status(), nil
	}
	st, err := b.Login(ctx, oldPIN)
	if err != nil {
		return st, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pin = bytes.Clone(newPIN)
	return b.status(), nil
}

func (b *clusterBackend) unlock() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures, b.locked = 0, false
}

// needLogin is Sign's check, as the nodes make it.
func (b *clusterBackend) needLogin() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pin != nil && b.locked {
		return backend.ErrPINLocked
	}
	if b.pin != nil && !b.logged {
		return backend.ErrNotLoggedIn
	}
	return nil
}

type clusterKey struct {
	info   backend.KeyInfo
	pk     *shoup.PublicKey
	shares []*shoup.KeyShare
	ed     ed25519.PrivateKey // scheme.Ed25519FROST keys
	ec     *ecdsa.PrivateKey  // scheme.ECDSAP256HM keys
}

func newClusterBackend(k, n int) *clusterBackend {
	return &clusterBackend{k: k, n: n, keys: map[string]*clusterKey{}, down: map[int]bool{}}
}

func (b *clusterBackend) setDown(i int, down bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down[i] = down
}

func (b *clusterBackend) setDelay(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.delay = d
}

func (b *clusterBackend) setListDelay(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.listDelay = d
}

func (b *clusterBackend) Keys(ctx context.Context) ([]backend.KeyInfo, error) {
	b.mu.Lock()
	d := b.listDelay
	b.mu.Unlock()
	if d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, backend.ErrUnavailable
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.lists.Add(1)
	out := make([]backend.KeyInfo, 0, len(b.keys))
	for _, k := range b.keys {
		out = append(out, k.info)
	}
	return out, nil
}

func (b *clusterBackend) GenerateKey(ctx context.Context, req backend.GenerateRequest) (backend.KeyInfo, error) {
	b.mu.Lock()
	closed, up := b.closed, b.n-len(b.downLocked())
	b.mu.Unlock()
	if closed {
		return backend.KeyInfo{}, backend.ErrUnavailable
	}
	if up < b.n {
		// Dealing needs every node to store its share.
		return backend.KeyInfo{}, fmt.Errorf("%w: %d of %d nodes up", backend.ErrNotEnoughNodes, up, b.n)
	}
	if req.Algorithm == scheme.ECDSAP256HM {
		return b.generateECDSA(req)
	}
	if req.Algorithm == scheme.Ed25519FROST {
		b.mu.Lock()
		refuse := b.refuseEd
		b.mu.Unlock()
		if refuse {
			return backend.KeyInfo{}, fmt.Errorf("%w: %v keys cannot be generated", backend.ErrInvalidInput, req.Algorithm)
		}
		return b.generateEd25519(req)
	}
	if req.Algorithm != scheme.Unspecified && req.Algorithm != scheme.ShoupRSA {
		return backend.KeyInfo{}, fmt.Errorf("%w: algorithm %v", backend.ErrInvalidInput, req.Algorithm)
	}
	if req.Bits < shoup.MinBits || req.Bits > 4096 || req.Bits%2 != 0 { // as the client
		return backend.KeyInfo{}, fmt.Errorf("%w: %d bits", backend.ErrInvalidInput, req.Bits)
	}
	e := req.E
	if e == 0 {
		e = 65537
	}
	key, err := rsakeygen.GenerateKey(ctx, rand.Reader, req.Bits, e, nil)
	if err != nil {
		if ctx.Err() != nil {
			return backend.KeyInfo{}, err
		}
		return backend.KeyInfo{}, fmt.Errorf("%w: %w", backend.ErrInvalidInput, err)
	}
	pk, shares, err := shoup.Deal(rand.Reader, key, b.k, b.n)
	key.Wipe()
	if err != nil {
		return backend.KeyInfo{}, err
	}
	idb := make([]byte, 16)
	rand.Read(idb)
	info := backend.KeyInfo{
		ID: hex.EncodeToString(idb), Label: req.Label, P11ID: append([]byte{}, req.P11ID...),
		Algorithm: scheme.ShoupRSA, Bits: pk.N.BitLen(), Public: pk.RSA(), K: b.k, L: b.n, Created: time.Now(),
	}
	b.mu.Lock()
	b.keys[info.ID] = &clusterKey{info: info, pk: pk, shares: shares}
	b.mu.Unlock()
	return info, nil
}

// Algorithms lists ECDSA P-256 only when b.ecdsa is set.
func (b *clusterBackend) Algorithms() []scheme.Algorithm {
	out := []scheme.Algorithm{scheme.ShoupRSA, scheme.Ed25519FROST}
	if b.ecdsa || b.ecNotWired {
		out = append(out, scheme.ECDSAP256HM)
	}
	return out
}

// generateECDSA makes an ECDSA P-256 key as the contract says: Bits 0 or 256, E 0.
func (b *clusterBackend) generateECDSA(req backend.GenerateRequest) (backend.KeyInfo, error) {
	if b.ecNotWired {
		return backend.KeyInfo{}, fmt.Errorf("%w: %v key generation by the nodes is not wired yet", scheme.ErrNotSupported, req.Algorithm)
	}
	if !b.ecdsa || (req.Bits != 0 && req.Bits != 256) || req.E != 0 {
		return backend.KeyInfo{}, fmt.Errorf("%w: ECDSA P-256 with %d bits, e=%d", backend.ErrInvalidInput, req.Bits, req.E)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return backend.KeyInfo{}, err
	}
	idb := make([]byte, 16)
	rand.Read(idb)
	info := backend.KeyInfo{
		ID: hex.EncodeToString(idb), Label: req.Label, P11ID: append([]byte{}, req.P11ID...),
		Algorithm: scheme.ECDSAP256HM, Bits: 256, Public: &priv.PublicKey, K: 3, L: b.n, Created: time.Now(),
	}
	b.mu.Lock()
	b.keys[info.ID] = &clusterKey{info: info, ec: priv}
	b.mu.Unlock()
	return info, nil
}

// generateEd25519 makes an Ed25519 key as the contract says: Bits 0 or 256, E 0.
func (b *clusterBackend) generateEd25519(req backend.GenerateRequest) (backend.KeyInfo, error) {
	if (req.Bits != 0 && req.Bits != 256) || req.E != 0 {
		return backend.KeyInfo{}, fmt.Errorf("%w: Ed25519 with %d bits, e=%d", backend.ErrInvalidInput, req.Bits, req.E)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return backend.KeyInfo{}, err
	}
	idb := make([]byte, 16)
	rand.Read(idb)
	info := backend.KeyInfo{
		ID: hex.EncodeToString(idb), Label: req.Label, P11ID: append([]byte{}, req.P11ID...),
		Algorithm: scheme.Ed25519FROST, Bits: 256, Public: pub, K: b.k, L: b.n, Created: time.Now(),
	}
	b.mu.Lock()
	b.keys[info.ID] = &clusterKey{info: info, ed: priv}
	b.mu.Unlock()
	return info, nil
}

func (b *clusterBackend) setCorrupt(v bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.corrupt = v
}

func (b *clusterBackend) last() (scheme.Mechanism, []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastMech, b.lastData
}

func (b *clusterBackend) DeleteKey(ctx context.Context, id string) (time.Time, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return time.Time{}, backend.ErrUnavailable
	}
	if b.keys[id] == nil {
		return time.Time{}, fmt.Errorf("%w: %s", backend.ErrKeyNotFound, id)
	}
	delete(b.keys, id)
	return time.Now().Add(7 * 24 * time.Hour), nil
}

func (b *clusterBackend) downLocked() []int {
	var d []int
	for i, v := range b.down {
		if v {
			d = append(d, i)
		}
	}
	return d
}

func (b *clusterBackend) Sign(ctx context.Context, id string, mech scheme.Mechanism, data []byte) ([]byte, error) {
	if err := b.needLogin(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	k, closed, delay, corrupt := b.keys[id], b.closed, b.delay, b.corrupt
	b.lastMech, b.lastData = mech, append([]byte{}, data...)
	nodesUp := b.n - len(b.downLocked())
	if b.refuse {
		b.mu.Unlock()
		return nil, fmt.Errorf("%w: 3 of 5 nodes refused", backend.ErrPolicyRefused)
	}
	var up []*shoup.KeyShare
	if k != nil {
		for _, s := range k.shares {
			if !b.down[s.Index] {
				up = append(up, s)
			}
		}
	}
	b.mu.Unlock()
	if closed {
		return nil, backend.ErrUnavailable
	}
	if k == nil {
		return nil, fmt.Errorf("%w: %s", backend.ErrKeyNotFound, id)
	}
	if k.ec != nil {
		var digest []byte
		switch mech {
		case scheme.ECDSA:
			if len(data) != scheme.ECDSADigestSize {
				return nil, fmt.Errorf("%w: CKM_ECDSA over %d bytes", backend.ErrInvalidInput, len(data))
			}
			digest = data
		case scheme.ECDSASHA256:
			h := sha256.Sum256(data)
			digest = h[:]
		default:
			return nil, fmt.Errorf("%w: an ECDSA key does not sign with %v", backend.ErrInvalidInput, mech)
		}
		r, s, err := ecdsa.Sign(rand.Reader, k.ec, digest)
		if err != nil {
			return nil, err
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		if corrupt {
			sig[3] ^= 1
		}
		b.signs.Add(1)
		return sig, nil
	}
	if (k.ed != nil) != (mech == scheme.EDDSA) {
		return nil, fmt.Errorf("%w: a %v key does not sign with %v", backend.ErrInvalidInput, k.info.Algorithm, mech)
	}
	if k.ed != nil {
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil, fmt.Errorf("client: waiting for nodes: %w", ctx.Err())
			}
		}
		if nodesUp < b.k {
			return nil, fmt.Errorf("%w: %d of %d needed", backend.ErrNotEnoughNodes, nodesUp, b.k)
		}
		sig := ed25519.Sign(k.ed, data)
		if corrupt {
			sig[3] ^= 1
		}
		b.signs.Add(1)
		return sig, nil
	}
	t, err := shoup.Payload(mech, data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", backend.ErrInvalidInput, err)
	}
	em, err := shoup.EncodePayload(k.pk.Size(), t)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", backend.ErrInvalidInput, err)
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, fmt.Errorf("client: waiting for nodes: %w", ctx.Err())
		}
	}
	if len(up) < k.pk.K {
		return nil, fmt.Errorf("%w: %d of %d needed", backend.ErrNotEnoughNodes, len(up), k.pk.K)
	}
	var sigShares []*shoup.SigShare
	for _, s := range up[:k.pk.K] {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ss, err := shoup.SignShare(k.pk, s, em)
		if err != nil {
			return nil, err
		}
		sigShares = append(sigShares, ss)
	}
	sig, err := shoup.Combine(k.pk, em, sigShares)
	if err != nil {
		return nil, err
	}
	if corrupt {
		sig[3] ^= 1
	}
	b.signs.Add(1)
	return sig, nil
}

func (b *clusterBackend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("clusterBackend: closed twice")
	}
	b.closed = true
	return nil
}

var _ backend.Backend = (*clusterBackend)(nil)
