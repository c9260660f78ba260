// Package dealer creates cluster keys, deals their shares to the signing nodes, and deletes keys.
//
// A Dealer is used in two ways: as a library (dealer.New over any transport.Transport; the tchsm
// command deals in its own process when a client configuration names a dealer_config, through
// client.Options.Dealer), and as a service (Dealer.Serve, dealer.Run: `tchsm dealer --config
// FILE`) answering clients at the dealer's address. The PKCS#11 module never links it.
//
// # Dealing a key
//
// GenerateKey takes two safe primes from an in-memory pool (kept filled in the background for
// the key sizes of cfg.PoolBits; a miss generates them on the spot), builds N, and deals d with
// the manifest's k and n (shoup.Deal). The public KeyRecord (cluster id, label, CKA_ID, k, n,
// creation time, and the scheme's parameters written by shoup.Scheme.EncodePublic: algorithm,
// modulus, e, v, vk, safe_primes) is signed with the dealer's identity.
// Each node's share is HPKE-encrypted to that node, wrapped in a KeyShareDelivery envelope valid
// for trust.DurableMaxTTL, and published durably (with publisher confirms) to the node's control
// queue, which is declared first so that a node that never ran still gets its share when it
// starts. Then the key, its primes and the shares are wiped from memory: from this point the
// key exists only as shares.
//
// # Acknowledgements
//
// GenerateKey then waits up to cfg.AckTimeout (default 15 s, and never past its ctx deadline;
// at most 2 s more once k nodes have confirmed) for the nodes to store their shares, polling each node that has not yet confirmed with a
// sealed HealthRequest on its rpc queue; a node confirms by listing the key id. It returns the
// nodes that confirmed (acked) and those that did not (missing). A missing node is not an
// error: its share waits in its durable queue until it comes back (within DurableMaxTTL). The
// caller decides what is enough; the client fails GenerateKey when fewer than k nodes
// acknowledged. GenerateKey returns an error (ErrNotEnoughNodes) only when fewer than k shares
// could even be queued: such a key could never sign, and it is deleted again.
//
// # Importing a key
//
// Import deals an existing RSA key (shoup.FromRSA). When its primes are not safe primes the
// record says safe_primes=false and a warning is logged: signing works, but share proofs are not
// sound for that key, so a lying node can only be found by trying subsets.
package dealer

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/logging"
	"github.com/tchsm/tchsm/internal/rpc"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme/shoup"
	"github.com/tchsm/tchsm/scheme/shoup/keygen"
)

// Defaults.
const (
	DefaultAckTimeout = 15 * time.Second
	DefaultPrimePool  = 2
	DefaultPoolBits   = 2048
	// pollEvery is the pause between two rounds of acknowledgement polling.
	pollEvery = 200 * time.Millisecond
	// pollTimeout bounds one HealthRequest to one node while waiting for acknowledgements.
	pollTimeout = time.Second
	// MaxServeBits is the largest key the dealer service generates on request.
	MaxServeBits = 4096
)

// Sentinel errors.
var (
	ErrInvalid        = errors.New("dealer: invalid request")
	ErrIdentity       = errors.New("dealer: identity does not match the manifest")
	ErrNotEnoughNodes = errors.New("dealer: fewer than k nodes could be sent their share")
)

// Options are the parts of a dealer that do not come from its configuration file.
type Options struct {
	// Logger receives structured logs; nil means JSON on stderr at cfg.LogLevel.
	Logger *slog.Logger
	// Version is reported in Health.
	Version string
	// NoPool disables the background safe-prime pool (every key is generated on the spot).
	NoPool bool
}

// Dealer deals keys to the nodes of one cluster. It is safe for concurrent use.
type Dealer struct {
	cfg     *config.Dealer
	opts    Options
	log     *slog.Logger
	trusted *trust.Trusted // the manifest trusted now (manifest.go)
	id      *trust.Identity
	sealer  *trust.Sealer
	opener  *trust.Opener
	conn    transport.Transport
	caller  *rpc.Caller
	pool    *primePool
	started time.Time
}

// New loads the dealer's manifest and identity and starts its prime pool (stop it with Close).
// conn carries its messages; it is the caller's own: the dealer does not close it.
func New(cfg *config.Dealer, conn transport.Transport, opts Options) (*Dealer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if conn == nil {
		return nil, fmt.Errorf("%w: no broker connection", ErrInvalid)
	}
	d := &Dealer{cfg: cfg, opts: opts, log: opts.Logger, conn: conn, started: time.Now()}
	if d.log == nil {
		var err error
		if d.log, _, err = logging.Open("", cfg.LogLevel, os.Stderr); err != nil {
			return nil, fmt.Errorf("dealer: %w", err)
		}
	}
	tr, err := trust.OpenTrusted(cfg.Manifest)
	if err != nil {
		return nil, err
	}
	m := tr.Manifest()
	id, err := trust.ReadIdentityFile(cfg.Identity, nil)
	if err != nil {
		return nil, err
	}
	mem, ok := m.Lookup(id.ID)
	pub := id.Public()
	if !ok || mem.Role != trust.RoleDealer || id.Role != trust.RoleDealer ||
		subtle.ConstantTimeCompare(pub.SignPub, mem.SignPub) != 1 || subtle.ConstantTimeCompare(pub.EncPub, mem.EncPub) != 1 {
		return nil, fmt.Errorf("%w: %s is not a dealer of cluster %s", ErrIdentity, id.ID, m.ClusterID)
	}
	d.trusted, d.id = tr, id
	d.log = d.log.With("dealer", id.ID)
	d.sealer = &trust.Sealer{Identity: id, ClusterID: m.ClusterID}
	if d.opener, err = trust.NewOpener(m, trust.WithIdentity(id), trust.WithNotBefore(d.started)); err != nil {
		return nil, err
	}
	tr.OnChange(d.manifestChanged)
	d.caller = &rpc.Caller{Sealer: d.sealer, Opener: d.opener,
		Transport: func(context.Context) (transport.Transport, error) { return d.conn, nil }}
	bits := cfg.PoolBits
	if len(bits) == 0 {
		bits = []int{DefaultPoolBits}
	}
	size := cfg.PrimePool
	if size == 0 {
		size = DefaultPrimePool
	}
	if opts.NoPool || size < 0 {
		size = 0
	}
	d.pool = newPrimePool(bits, size, d.log)
	return d, nil
}

// Close stops the prime pool and wipes the primes it holds. It does not close the connection.
func (d *Dealer) Close() error {
	d.pool.close()
	return nil
}

// Manifest returns the manifest the dealer deals for (the one it trusts now).
func (d *Dealer) Manifest() *trust.Manifest { return d.manifest() }

// PoolSize returns how many primes for keys of keyBits bits are ready.
func (d *Dealer) PoolSize(keyBits int) int { return d.pool.size(keyBits) }

func checkMeta(label string, p11id []byte) error {
	if len(label) > trust.MaxLabelLen || len(p11id) > trust.MaxP11IDLen {
		return fmt.Errorf("%w: label or CKA_ID too long", ErrInvalid)
	}
	return nil
}

// GenerateKey generates a key of bits bits with public exponent e (0: 65537), deals it to every
// node, and waits for their acknowledgements (see the package doc). It returns the signed key
// record, the nodes that acknowledged and those that did not (yet).
func (d *Dealer) GenerateKey(ctx context.Context, bits, e int, label string, p11id []byte) (*tchsmpb.SignedKeyRecord, []string, []string, error) {
	if bits < shoup.MinBits || bits > shoup.MaxBits || bits%2 != 0 {
		return nil, nil, nil, fmt.Errorf("%w: modulus of %d bits", ErrInvalid, bits)
	}
	if e == 0 {
		e = shoup.DefaultE
	}
	if e <= d.manifest().N() || e > 1<<31-1 || e%2 == 0 || !big.NewInt(int64(e)).ProbablyPrime(20) {
		return nil, nil, nil, fmt.Errorf("%w: public exponent %d (must be a prime larger than n=%d)", ErrInvalid, e, d.manifest().N())
	}
	if err := checkMeta(label, p11id); err != nil {
		return nil, nil, nil, err
	}
	t0 := time.Now()
	key, err := d.newKey(ctx, bits, e)
	if err != nil {
		return nil, nil, nil, err
	}
	d.log.Info("key generated", "bits", bits, "took", time.Since(t0).Round(time.Millisecond))
	return d.deal(ctx, key, true, label, p11id)
}

// newKey builds a key from pooled primes, generating on the spot what the pool lacks.
func (d *Dealer) newKey(ctx context.Context, bits, e int) (*shoup.Key, error) {
	prime := func() (*big.Int, error) {
		if q, ok := d.pool.take(bits); ok {
			return q, nil
		}
		return keygen.GenerateSafePrime(ctx, rand.Reader, bits/2, nil)
	}
	for {
		p, err := prime()
		if err != nil {
			return nil, fmt.Errorf("dealer: generating a %d-bit key: %w", bits, err)
		}
		q, err := prime()
		if err != nil {
			wipeInt(p)
			return nil, fmt.Errorf("dealer: generating a %d-bit key: %w", bits, err)
		}
		key, err := shoup.NewKeyFromPrimes(p, q, e) // copies p and q
		wipeInt(p)
		wipeInt(q)
		if err == nil && key.N.BitLen() == bits {
			return key, nil
		}
		if err == nil {
			key.Wipe()
		}
		// p == q, or e divides p'q': astronomically rare; draw again.
		d.log.Warn("primes unusable; drawing again", "err", err)
	}
}

// Import deals an existing RSA key. The caller should destroy its copy afterwards.
func (d *Dealer) Import(ctx context.Context, priv *rsa.PrivateKey, label string, p11id []byte) (*tchsmpb.SignedKeyRecord, []string, []string, error) {
	if priv == nil {
		return nil, nil, nil, fmt.Errorf("%w: no key", ErrInvalid)
	}
	if err := checkMeta(label, p11id); err != nil {
		return nil, nil, nil, err
	}
	if priv.E <= d.manifest().N() {
		return nil, nil, nil, fmt.Errorf("%w: public exponent %d must be larger than n=%d", ErrInvalid, priv.E, d.manifest().N())
	}
	key, safe, err := shoup.FromRSA(priv)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if !safe {
		d.log.Warn("imported key has no safe primes: share proofs are not sound for it; a lying node can only be found by trying subsets",
			"bits", key.N.BitLen())
	}
	return d.deal(ctx, key, safe, label, p11id)
}

// deal splits key, publishes the shares and waits for acknowledgements. It wipes key.
func (d *Dealer) deal(ctx context.Context, key *shoup.Key, safe bool, label string, p11id []byte) (*tchsmpb.SignedKeyRecord, []string, []string, error) {
	defer key.Wipe()
	k, n := d.manifest().Threshold, d.manifest().N()
	pk, shares, err := shoup.Deal(rand.Reader, key, k, n)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("dealer: %w", err)
	}
	defer func() {
		for _, s := range shares {
			s.Wipe()
		}
	}()
	key.Wipe()
	idb := make([]byte, 16)
	if _, err := rand.Read(idb); err != nil {
		return nil, nil, nil, fmt.Errorf("dealer: %w", err)
	}
	rec := &tchsmpb.KeyRecord{
		KeyId: hex.EncodeToString(idb), Label: label, P11Id: slices.Clone(p11id),
		K: uint32(k), N: uint32(n), CreatedUnix: time.Now().Unix(), ClusterId: d.manifest().ClusterID,
	}
	pk.Safe = safe
	if err := (shoup.Scheme{}).EncodePublic(pk, rec); err != nil {
		return nil, nil, nil, fmt.Errorf("dealer: %w", err)
	}
	signed, err := trust.SignKeyRecord(d.id, rec)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("dealer: %w", err)
	}
	log := d.log.With("key", rec.KeyId)

	// Seal every delivery first, then publish: the shares leave memory as early as possible.
	envs := make(map[string][]byte, n)
	for _, s := range shares {
		node, ok := d.manifest().NodeByIndex(s.Index)
		if !ok {
			return nil, nil, nil, fmt.Errorf("dealer: no node with index %d", s.Index)
		}
		sb, err := (shoup.Scheme{}).MarshalShare(pk, shoup.WrapShare(s))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("dealer: %w", err)
		}
		enc, ct, err := trust.EncryptShare(node, d.manifest().ClusterID, rec.KeyId, &tchsmpb.KeyShare{KeyId: rec.KeyId, Index: uint32(s.Index), S: sb})
		clear(sb)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("dealer: encrypting %s's share: %w", node.ID, err)
		}
		s.Wipe()
		env, _, err := d.sealer.Seal(tchsmpb.BodyType_BODY_TYPE_KEY_SHARE_DELIVERY,
			&tchsmpb.KeyShareDelivery{SignedRecord: signed, Recipient: node.ID, Enc: enc, Ciphertext: ct}, trust.DurableMaxTTL)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("dealer: %w", err)
		}
		envs[node.ID] = env
	}
	queued, failed := d.publishAll(ctx, envs, log)
	if len(queued) < k {
		log.Error("too few shares queued; deleting the key", "queued", len(queued), "k", k, "failed", failed)
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		d.publishDelete(dctx, rec.KeyId, queued)
		cancel()
		return nil, nil, nil, fmt.Errorf("%w: key %s: %d of %d queued (k=%d)", ErrNotEnoughNodes, rec.KeyId, len(queued), n, k)
	}
	log.Info("shares queued", "bits", rec.Bits, "k", k, "n", n, "safe_primes", safe, "label", label)
	acked, missing := d.waitFor(ctx, rec.KeyId, queued, true, k)
	missing = append(missing, failed...)
	slices.Sort(missing)
	if len(missing) > 0 {
		log.Warn("some nodes have not stored their share yet", "acked", acked, "missing", missing)
	} else {
		log.Info("every node stored its share")
	}
	return signed, acked, missing, nil
}

// publishAll declares each node's queues and publishes its message durably, concurrently.
func (d *Dealer) publishAll(ctx context.Context, envs map[string][]byte, log *slog.Logger) (ok, failed []string) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for nodeID, env := range envs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := d.publish(ctx, nodeID, env)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				log.Error("publishing to node failed", "to", nodeID, "err", err)
				failed = append(failed, nodeID)
				return
			}
			ok = append(ok, nodeID)
		}()
	}
	wg.Wait()
	slices.Sort(ok)
	slices.Sort(failed)
	return ok, failed
}

func (d *Dealer) publish(ctx context.Context, nodeID string, env []byte) error {
	return d.conn.Publish(ctx, transport.Node(nodeID), env)
}

// publishDelete sends DeleteKey to the control queues of nodes.
func (d *Dealer) publishDelete(ctx context.Context, keyID string, nodes []string) (ok, failed []string, err error) {
	env, _, err := d.sealer.Seal(tchsmpb.BodyType_BODY_TYPE_DELETE_KEY, &tchsmpb.DeleteKey{KeyId: keyID}, trust.DurableMaxTTL)
	if err != nil {
		return nil, nil, fmt.Errorf("dealer: %w", err)
	}
	envs := make(map[string][]byte, len(nodes))
	for _, n := range nodes {
		envs[n] = env
	}
	ok, failed = d.publishAll(ctx, envs, d.log.With("key", keyID))
	return ok, failed, nil
}

// DeleteKey deletes a key on every node: DeleteKey goes durably to each node's control queue (a
// node that is down deletes it when it is back), then DeleteKey waits, like GenerateKey, for
// the nodes to stop listing it (at most a grace once n-k+1 have, since the key then cannot
// sign). gone are the nodes that confirmed, missing the others; until is the earliest time
// until which the nodes that confirmed keep the key's share for RestoreKey (zero when none
// said). The error is non-nil when the message could not be queued for some node.
func (d *Dealer) DeleteKey(ctx context.Context, keyID string) (gone, missing []string, until time.Time, err error) {
	if !trust.ValidKeyID(keyID) {
		return nil, nil, time.Time{}, fmt.Errorf("%w: bad key id", ErrInvalid)
	}
	all := make([]string, 0, d.manifest().N())
	for _, n := range d.manifest().Nodes {
		all = append(all, n.ID)
	}
	queued, failed, err := d.publishDelete(ctx, keyID, all)
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	// Once n-k+1 nodes have deleted their shares, fewer than k hold one: the key cannot sign
	// any more. The others delete it from their durable queues; wait only a grace for them.
	gone, missing = d.waitFor(ctx, keyID, queued, false, d.manifest().N()-d.manifest().Threshold+1)
	missing = append(missing, failed...)
	slices.Sort(missing)
	until = d.recoverableUntil(ctx, keyID, gone)
	d.log.Info("key deleted", "key", keyID, "confirmed", gone, "missing", missing, "recoverable_until", until)
	if len(failed) > 0 {
		return gone, missing, until, fmt.Errorf("dealer: DeleteKey %s could not be queued for %v", keyID, failed)
	}
	return gone, missing, until, nil
}

// recoverableUntil asks nodes that deleted keyID until when they keep its share: their answer
// to a DeleteKey over rpc, which changes nothing (a repeated deletion keeps the first one's
// time). It returns the earliest date, or zero when no node gave one.
func (d *Dealer) recoverableUntil(ctx context.Context, keyID string, nodes []string) time.Time {
	var mu sync.Mutex
	var until time.Time
	var wg sync.WaitGroup
	for _, nodeID := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, pollTimeout)
			defer cancel()
			ack := new(tchsmpb.DeleteKeyAck)
			if err := d.call(cctx, nodeID, &tchsmpb.DeleteKey{KeyId: keyID}, ack); err != nil || ack.GetRecoverableUntil() == 0 {
				return
			}
			t := time.Unix(ack.GetRecoverableUntil(), 0)
			mu.Lock()
			if until.IsZero() || t.Before(until) {
				until = t
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return until
}

// RestoreKey brings a deleted key back on every node that still keeps its share (deleted
// within its grace period): RestoreKey goes durably to each node's control queue, then
// RestoreKey waits, like GenerateKey, for the nodes to list the key again. restored are the
// nodes that do, missing the others (share purged, never held, or down). Fewer than k
// restored is ErrNotEnoughNodes: the key cannot sign.
func (d *Dealer) RestoreKey(ctx context.Context, keyID string) (restored, missing []string, err error) {
	if !trust.ValidKeyID(keyID) {
		return nil, nil, fmt.Errorf("%w: bad key id", ErrInvalid)
	}
	env, _, err := d.sealer.Seal(tchsmpb.BodyType_BODY_TYPE_RESTORE_KEY, &tchsmpb.RestoreKey{KeyId: keyID}, trust.DurableMaxTTL)
	if err != nil {
		return nil, nil, fmt.Errorf("dealer: %w", err)
	}
	envs := make(map[string][]byte, d.manifest().N())
	for _, n := range d.manifest().Nodes {
		envs[n.ID] = env
	}
	log := d.log.With("key", keyID)
	queued, failed := d.publishAll(ctx, envs, log)
	restored, missing = d.waitFor(ctx, keyID, queued, true, d.manifest().Threshold)
	missing = append(missing, failed...)
	slices.Sort(missing)
	log.Info("key restore", "restored", restored, "missing", missing)
	if len(restored) < d.manifest().Threshold {
		return restored, missing, fmt.Errorf("%w: key %s restored on %d nodes (k=%d; missing %v)", ErrNotEnoughNodes, keyID, len(restored), d.manifest().Threshold, missing)
	}
	return restored, missing, nil
}

// ackGrace is how long waitFor goes on waiting for the other nodes once enough have confirmed.
const ackGrace = 2 * time.Second

// waitFor polls nodes with HealthRequest until each lists keyID (present) or no longer lists it
// (!present), until cfg.AckTimeout or shortly before ctx's deadline, and at most ackGrace after
// enough of them have: a node that is down gets its share from its durable queue when it is
// back, and waiting the whole AckTimeout for it would only delay the caller.
func (d *Dealer) waitFor(ctx context.Context, keyID string, nodes []string, present bool, enough int) (done, missing []string) {
	timeout := d.cfg.AckTimeout.Or(DefaultAckTimeout)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if dl, ok := ctx.Deadline(); ok {
		// Leave time to answer the request that asked for this.
		var c2 context.CancelFunc
		wctx, c2 = context.WithDeadline(wctx, dl.Add(-min(time.Until(dl)/4, 2*time.Second)))
		defer c2()
	}
	pending := slices.Clone(nodes)
	var grace <-chan time.Time // set once enough nodes have confirmed
	for len(pending) > 0 {
		answered := make([]bool, len(pending))
		var wg sync.WaitGroup
		for i, nodeID := range pending {
			wg.Add(1)
			go func() {
				defer wg.Done()
				has, err := d.nodeHas(wctx, nodeID, keyID)
				if err != nil {
					d.log.Debug("node not answering yet", "node", nodeID, "err", err)
					return
				}
				answered[i] = has == present
			}()
		}
		wg.Wait()
		var still []string
		for i, nodeID := range pending {
			if answered[i] {
				done = append(done, nodeID)
			} else {
				still = append(still, nodeID)
			}
		}
		pending = still
		if len(pending) == 0 {
			break
		}
		if grace == nil && len(done) >= enough {
			grace = time.After(ackGrace)
		}
		select {
		case <-wctx.Done():
		case <-grace:
		case <-time.After(pollEvery):
			continue
		}
		break
	}
	missing = pending
	slices.Sort(done)
	slices.Sort(missing)
	return done, missing
}

// nodeHas asks one node whether it holds keyID.
func (d *Dealer) nodeHas(ctx context.Context, nodeID, keyID string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, pollTimeout)
	defer cancel()
	h := new(tchsmpb.Health)
	if err := d.call(ctx, nodeID, &tchsmpb.HealthRequest{}, h); err != nil {
		return false, err
	}
	return slices.Contains(h.GetKeyIds(), keyID), nil
}

// call sends a request to a node and opens its answer into out. A sealed Error answer is
// returned as an *rpc.Error.
func (d *Dealer) call(ctx context.Context, nodeID string, body, out proto.Message) error {
	n, ok := d.manifest().Lookup(nodeID)
	if !ok || n.Role != trust.RoleNode {
		return fmt.Errorf("dealer: %s is not a node of the manifest", nodeID)
	}
	op, err := d.caller.Call(ctx, n, transport.Node(nodeID), body)
	if err != nil {
		return err
	}
	return op.Unmarshal(out)
}

func wipeInt(x *big.Int) {
	if x != nil {
		clear(x.Bits())
		x.SetInt64(0)
	}
}
