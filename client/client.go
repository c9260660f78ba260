package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/logging"
	"github.com/tchsm/tchsm/internal/protocol"
	"github.com/tchsm/tchsm/internal/rpc"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/transport/rabbitmq"
	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/schemes"
	"github.com/tchsm/tchsm/scheme/shoup"
)

// Defaults for a Client (its sign and keygen timeouts are config.DefaultSignTimeout and
// config.DefaultKeygenTimeout, shared with the PKCS#11 token).
const (
	// listGrace is how long a listing waits for the remaining nodes once enough have answered.
	listGrace = 100 * time.Millisecond
	// suspendFor is how long a node that failed is tried only after the others.
	suspendFor = 2 * time.Second
	// liarFor is how long a node caught returning a wrong share is left out entirely.
	liarFor = 5 * time.Minute
	// probeEvery is how many signatures at most pass before a node that looks slow is asked again.
	probeEvery = 8
)

// Options are the parts of a Client that do not come from its configuration file.
type Options struct {
	Logger *slog.Logger // nil: from the config's log_file, or discard
	// Transport, when set, carries the client's messages instead of a broker connection
	// made from the config's amqp section (tests use an in-memory one). Close closes it.
	Transport transport.Transport
	// Dealer, when set, makes GenerateKey deal in this process instead of asking the dealer
	// service: it is called once, at the first GenerateKey, with the client's transport. The
	// tchsm command sets it for a config with dealer_config; the PKCS#11 module never does, so
	// that libtchsm.so links neither the dealer nor its prime search.
	Dealer func(transport.Transport) (KeyDealer, error)
}

// KeyDealer deals and deletes keys in the client's process (see Options.Dealer). GenerateKey returns the
// dealer-signed record and the nodes that did and did not acknowledge their shares; an error
// for a request the dealer refuses as invalid wraps ErrInvalidInput. When a KeyDealer is an
// io.Closer, the client closes it.
type KeyDealer interface {
	GenerateKey(ctx context.Context, bits, e int, label string, p11id []byte) (rec *tchsmpb.SignedKeyRecord, acked, missing []string, err error)
	// DeleteKey queues the key's deletion for every node and waits, within ctx, for them to
	// stop listing it; gone and missing are the nodes that did and did not confirm, until the
	// earliest time until which they keep its share (zero: unknown).
	DeleteKey(ctx context.Context, keyID string) (gone, missing []string, until time.Time, err error)
	// RestoreKey brings a deleted key back on the nodes that still keep its share.
	RestoreKey(ctx context.Context, keyID string) (restored, missing []string, err error)
}

// Client signs with a tchsm cluster. It is safe for concurrent use.
type Client struct {
	cfg       config.Client
	m         *trust.Manifest
	self      trust.Member // this client in the manifest (its client role)
	sealer    *trust.Sealer
	opener    *trust.Opener
	caller    *rpc.Caller
	conn      transport.Transport
	log       *slog.Logger
	logOut    io.Closer
	dealerMu  sync.Mutex
	newDealer func(transport.Transport) (KeyDealer, error)
	dealer    KeyDealer // in-process dealer, made by newDealer at first use

	connReady  chan struct{} // closed once conn is set
	firstEpoch time.Time     // conn's first connection (ConnectedSince when it was set)
	stopDial   context.CancelFunc
	closed     bool

	batchers map[string]*batcher // by node id; set up in New, read-only afterwards
	live     *liveness           // which nodes answer (see liveness.go)

	mu        sync.Mutex
	orders    uint64 // calls of order(): signatures started
	keys      map[string]*key
	rekeyAt   map[string]time.Time // when newerKey last asked the nodes about a key
	nodes     map[string]*nodeState
	refreshMu sync.Mutex

	login loginState // login.go
}

type key struct {
	info   KeyInfo
	scheme scheme.Scheme
	pk     scheme.PublicKey
	record []byte // the signed record's bytes
	epoch  uint32 // the record's resharing epoch (KeyRecord.epoch)
	// pools are the nodes' commitments for schemes that hand them out in advance (FROST).
	pools *commitPools
}

type nodeState struct {
	member     trust.Member
	ewma       time.Duration // recent latency
	last       time.Duration // latency of the latest share
	suspended  time.Time     // tried last until then
	excluded   time.Time     // not tried at all until then (caught lying)
	lastErr    string
	lastSeenOK time.Time
	inflight   int    // sign requests sent and not answered yet
	shares     int    // signature shares received
	invalid    int    // shares proven invalid (the node lied)
	lastAsked  uint64 // c.orders when it was last asked

	proto peerState // its protocol and features (negotiate.go)
}

var _ Backend = (*Client)(nil)

// Open reads a client configuration file and connects. (The PKCS#11 module loads the file
// itself, for its "pkcs11" section too, and calls New with it.)
func Open(ctx context.Context, path string) (*Client, error) {
	var cfg config.Client
	if err := config.Load(path, &cfg); err != nil {
		return nil, err
	}
	return New(ctx, &cfg, Options{})
}

// New connects a client with cfg. The broker may be down: the connection is then made in the
// background and calls fail with ErrUnavailable until it is up.
func New(ctx context.Context, cfg *config.Client, opts Options) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := trust.LoadManifest(cfg.Manifest)
	if err != nil {
		return nil, err
	}
	id, err := trust.ReadIdentityFile(cfg.Identity, nil)
	if err != nil {
		return nil, err
	}
	if id.Role != trust.RoleClient {
		return nil, fmt.Errorf("%w: identity %s is a %s, not a client", ErrUnauthorized, id.ID, id.Role)
	}
	mem, ok := m.Lookup(id.ID)
	if !ok || mem.Role != trust.RoleClient {
		return nil, fmt.Errorf("%w: client %s is not in the manifest", ErrUnauthorized, id.ID)
	}
	if pub := id.Public(); !bytes.Equal(pub.SignPub, mem.SignPub) || !bytes.Equal(pub.EncPub, mem.EncPub) {
		return nil, fmt.Errorf("%w: the keys of client %s differ from the manifest's", ErrUnauthorized, id.ID)
	}
	opener, err := trust.NewOpener(m, trust.WithIdentity(id))
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: *cfg, m: m, opener: opener, self: mem,
		sealer: &trust.Sealer{Identity: id, ClusterID: m.ClusterID},
		keys:   map[string]*key{}, rekeyAt: map[string]time.Time{}, nodes: map[string]*nodeState{}}
	c.login.sessions, c.login.relogin = map[string]*session{}, map[string]*sync.Mutex{}
	c.login.tickets = map[string]heldTicket{}
	if _, c.login.ticketKey, err = ed25519.GenerateKey(crand.Reader); err != nil {
		return nil, fmt.Errorf("client: ticket key: %w", err)
	}
	c.log = opts.Logger
	if c.log == nil {
		c.log, c.logOut, err = logging.Open(cfg.LogFile, cfg.LogLevel, nil)
		if err != nil {
			return nil, err
		}
	}
	c.caller = &rpc.Caller{Sealer: c.sealer, Opener: c.opener, Transport: c.getConn}
	c.newDealer = opts.Dealer
	if cfg.DealerConfig != "" && c.newDealer == nil {
		c.log.Warn("dealer_config is honoured by the tchsm command only; key generation asks the dealer service")
	}
	c.batchers = map[string]*batcher{}
	for _, n := range m.Nodes {
		c.nodes[n.ID] = &nodeState{member: n}
		c.batchers[n.ID] = newBatcher(c, n)
	}
	c.live = newLiveness(c)
	c.connReady = make(chan struct{})
	if opts.Transport != nil {
		c.setConn(opts.Transport)
		return c, nil
	}
	tc, err := rabbitmq.FromConfig(cfg.AMQP, m.ClusterID, "tchsm-client-"+id.ID)
	if err != nil {
		c.closeLog()
		return nil, err
	}
	tc.Logger = c.log
	// A short first attempt keeps C_Initialize quick. When the broker is down, the client
	// still opens: it goes on dialling in the background, and calls fail with ErrUnavailable
	// until the broker answers (a signer must be able to start while the broker restarts).
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := rabbitmq.Open(dctx, tc)
	switch {
	case err == nil:
		c.setConn(conn)
	case errors.Is(err, transport.ErrAccess) || errors.Is(err, transport.ErrConfig):
		c.closeLog()
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	default:
		c.log.Warn("broker not reachable; connecting in the background", "err", err)
		bg, stop := context.WithCancel(context.Background())
		c.stopDial = stop
		go func() {
			conn, err := rabbitmq.Open(bg, tc)
			if err != nil {
				return
			}
			c.setConn(conn)
		}()
	}
	return c, nil
}

// setConn publishes the broker connection, or closes it when the client was closed meanwhile.
func (c *Client) setConn(conn transport.Transport) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		conn.Close()
		return
	}
	c.conn = conn
	c.firstEpoch = conn.ConnectedSince()
	close(c.connReady)
}

// getConn waits for the broker connection until ctx ends.
func (c *Client) getConn(ctx context.Context) (transport.Transport, error) {
	select {
	case <-c.connReady:
		return c.conn, nil
	default:
	}
	select {
	case <-c.connReady:
		return c.conn, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: no broker connection yet", ErrUnavailable)
	}
}

// brokerWait is how long an operation with a long timeout (key generation) waits for a broker
// connection before it fails with ErrUnavailable.
const brokerWait = 5 * time.Second

// waitBroker waits at most d (and at most until ctx ends) for a broker connection.
func (c *Client) waitBroker(ctx context.Context, d time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	conn, err := c.getConn(wctx)
	if err != nil {
		return fmt.Errorf("%w: no broker connection within %v", ErrUnavailable, d)
	}
	if err := conn.WaitConnected(wctx); err != nil {
		return fmt.Errorf("%w: no broker connection within %v: %v", ErrUnavailable, d, err)
	}
	return nil
}

// getDealer returns the in-process dealer, creating it on first use; nil when there is none.
func (c *Client) getDealer(ctx context.Context) (KeyDealer, error) {
	if c.newDealer == nil {
		return nil, nil
	}
	conn, err := c.getConn(ctx)
	if err != nil {
		return nil, err
	}
	c.dealerMu.Lock()
	defer c.dealerMu.Unlock()
	if c.dealer == nil {
		if c.dealer, err = c.newDealer(conn); err != nil {
			return nil, err
		}
	}
	return c.dealer, nil
}

func (c *Client) closeLog() {
	if c.logOut != nil {
		c.logOut.Close()
	}
}

// Close disconnects.
func (c *Client) Close() error {
	c.Logout()
	c.mu.Lock()
	c.closed = true
	conn := c.conn
	c.mu.Unlock()
	if c.stopDial != nil {
		c.stopDial()
	}
	c.live.close()
	c.dealerMu.Lock()
	if cl, ok := c.dealer.(io.Closer); ok {
		cl.Close()
	}
	c.dealerMu.Unlock()
	var err error
	if conn != nil {
		err = conn.Close()
	}
	c.closeLog()
	return err
}

// Manifest returns the cluster manifest the client trusts.
func (c *Client) Manifest() *trust.Manifest { return c.m }

func (c *Client) signTimeout() time.Duration { return c.cfg.SignTimeout.Or(config.DefaultSignTimeout) }

// withDefault gives ctx a deadline d from now when it has none.
func withDefault(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// rawCall sends body to member node at address at (see rpc.Caller.Call), as it is: call (in
// login.go) wraps it under a login session first where the node needs one. A sealed Error
// answer comes back as an *rpc.Error, which errors.Is maps to ErrKeyNotFound and
// ErrInvalidInput. An answer from a node, whatever it says, tells the liveness view that the
// node is alive.
func (c *Client) rawCall(ctx context.Context, node trust.Member, at transport.Address, body proto.Message) (*trust.Opened, error) {
	if at.Role != transport.RoleNode {
		return c.caller.Call(ctx, node, at, body)
	}
	seq := c.live.begin(node.ID)
	op, err := c.caller.Call(ctx, node, at, body)
	c.live.end(node.ID, seq, ctx, err)
	c.notePeer(node.ID, op, err)
	return op, err
}

// ---- keys

// Role is the client's role in the manifest (trust.DefaultClientRole when it names none).
func (c *Client) Role() trust.ClientRole { return c.self.ClientRole.Effective() }

// may refuses, before anything is sent, what the client's role does not allow (the dealer and
// the nodes refuse it too: trust.Permits).
func (c *Client) may(bt tchsmpb.BodyType, what string) error {
	if !trust.Permits(c.self, bt) {
		return fmt.Errorf("%w: client %s has role %s; %s needs an %s client", ErrUnauthorized, c.self.ID, c.Role(), what, trust.ClientRoleAdmin)
	}
	return nil
}

// dealerErr classifies an error of a call to the dealer: a refusal by role
// (ErrUnauthorized), a bad request (ErrInvalidInput), a missing login (ErrNotLoggedIn,
// ErrPINLocked: no login tickets) and too few nodes to give tickets (ErrNotEnoughNodes) keep
// their sentinel; anything else is ErrUnavailable.
func dealerErr(err error) error {
	if errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrInvalidInput) || errors.Is(err, ErrNotLoggedIn) ||
		errors.Is(err, ErrPINLocked) || errors.Is(err, ErrNotEnoughNodes) {
		return fmt.Errorf("dealer: %w", err)
	}
	return fmt.Errorf("%w: dealer: %v", ErrUnavailable, err)
}

// Keys lists every key the reachable nodes hold, each verified against the dealer's signature.
func (c *Client) Keys(ctx context.Context) ([]KeyInfo, error) {
	if err := c.refreshKeys(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]KeyInfo, 0, len(c.keys))
	for _, k := range c.keys {
		out = append(out, k.info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// refreshKeys asks every node for its keys and replaces the cache with their union.
func (c *Client) refreshKeys(ctx context.Context) error {
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	ctx, cancel := withDefault(ctx, c.signTimeout())
	defer cancel()
	c.live.demand()
	type res struct {
		node string
		recs []*tchsmpb.SignedKeyRecord
		err  error
	}
	t0, epoch := time.Now(), c.epoch()
	results := make(chan res, len(c.m.Nodes))
	for _, n := range c.m.Nodes {
		go func() {
			op, err := c.call(ctx, n, transport.Node(n.ID), &tchsmpb.ListKeys{})
			if err != nil {
				c.noteFailure(n.ID, err)
				results <- res{node: n.ID, err: err}
				return
			}
			kl, ok := op.Message.(*tchsmpb.KeyList)
			if !ok {
				results <- res{node: n.ID, err: fmt.Errorf("client: node %s answered ListKeys with %v", n.ID, op.Type)}
				return
			}
			results <- res{node: n.ID, recs: kl.GetKeys()}
		}()
	}
	fresh := map[string]*key{}
	answered := 0
	var lastErr error
	// Once n-k+1 nodes have answered, every key that k nodes hold is in some answer: wait only
	// a short grace for the others, so that a node that is down does not stall every listing.
	// A node that gives no answer for the liveness window, with the broker connection up,
	// is down (liveness.go): once some node has answered, the listing does not wait for it.
	enough := c.m.N() - c.m.Threshold + 1
	var grace <-chan time.Time
	quiet := time.NewTimer(c.silentWindow())
	defer quiet.Stop()
	returned := map[string]bool{}
collect:
	for pending := len(c.m.Nodes); pending > 0; pending-- {
		var r res
		select {
		case r = <-results:
			returned[r.node] = true
		case <-grace:
			break collect
		case <-quiet.C:
			if answered == 0 {
				pending++ // nothing yet: wait on for the first answer
				quiet.Reset(listGrace)
				continue
			}
			for _, n := range c.m.Nodes {
				if !returned[n.ID] {
					c.live.silent(n.ID, t0, epoch, "no answer", c.silentWindow())
				}
			}
			break collect
		}
		if r.err != nil {
			lastErr = r.err
			continue
		}
		answered++
		if answered == enough && grace == nil {
			grace = time.After(listGrace)
		}
		for _, s := range r.recs {
			k, err := c.verifyRecord(s)
			if err != nil {
				c.log.Warn("key record rejected", "err", err)
				continue
			}
			// During or after a resharing the nodes may report two epochs of a key: the
			// latest is the one k nodes hold (they replace their record only with it).
			if prev, ok := fresh[k.info.ID]; !ok || k.epoch > prev.epoch {
				fresh[k.info.ID] = k
			}
		}
	}
	if answered == 0 {
		return fmt.Errorf("%w: no node answered: %v", ErrUnavailable, lastErr)
	}
	c.mu.Lock()
	// Keep the precomputed public keys of keys we already know.
	for id, k := range fresh {
		if old, ok := c.keys[id]; ok && bytes.Equal(old.record, k.record) {
			fresh[id] = old
		}
	}
	c.keys = fresh
	c.mu.Unlock()
	return nil
}

func (c *Client) verifyRecord(s *tchsmpb.SignedKeyRecord) (*key, error) {
	rec, err := trust.VerifyKeyRecord(c.m, s)
	if err != nil {
		return nil, err
	}
	if rec.GetClusterId() != c.m.ClusterID || int(rec.GetN()) != c.m.N() {
		return nil, fmt.Errorf("client: key %s belongs to another cluster layout", rec.GetKeyId())
	}
	pk, err := trust.PublicKey(rec)
	if err != nil {
		return nil, fmt.Errorf("client: key %s: %w", rec.GetKeyId(), err)
	}
	sch, err := schemes.Lookup(pk.Algorithm())
	if err != nil {
		return nil, fmt.Errorf("client: key %s: %w", rec.GetKeyId(), err)
	}
	k, n := pk.Threshold()
	var pools *commitPools
	if _, ok := sch.(scheme.Precommitter); ok {
		pools = newCommitPools()
	}
	return &key{scheme: sch, pk: pk, record: s.GetRecord(), epoch: rec.GetEpoch(), pools: pools, info: KeyInfo{ID: rec.GetKeyId(), Label: rec.GetLabel(),
		P11ID: rec.GetP11Id(), Algorithm: pk.Algorithm(), Bits: pk.Bits(), Public: pk.Public(), K: k, L: n,
		Created: time.Unix(rec.GetCreatedUnix(), 0)}}, nil
}

// key returns a key from the cache, refreshing it once on a miss.
func (c *Client) key(ctx context.Context, id string) (*key, error) {
	if !trust.ValidKeyID(id) {
		return nil, fmt.Errorf("%w: bad key id", ErrKeyNotFound)
	}
	c.mu.Lock()
	k, ok := c.keys[id]
	c.mu.Unlock()
	if ok {
		return k, nil
	}
	if err := c.refreshKeys(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	k, ok = c.keys[id]
	c.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrKeyNotFound, id)
	}
	return k, nil
}

// Key returns one key's public description.
func (c *Client) Key(ctx context.Context, id string) (KeyInfo, error) {
	k, err := c.key(ctx, id)
	if err != nil {
		return KeyInfo{}, err
	}
	return k.info, nil
}

// PublicKey returns a key's threshold public key (with its scheme's verification data).
func (c *Client) PublicKey(ctx context.Context, id string) (scheme.PublicKey, error) {
	k, err := c.key(ctx, id)
	if err != nil {
		return nil, err
	}
	return k.pk, nil
}

// GenerateKey has the dealer create an RSA key, or the nodes generate an Ed25519 key together
// (generateDKG), and waits until at least k nodes hold their shares.
func (c *Client) GenerateKey(ctx context.Context, req GenerateRequest) (KeyInfo, error) {
	ctx, cancel := withDefault(ctx, c.cfg.KeygenTimeout.Or(config.DefaultKeygenTimeout))
	defer cancel()
	if req.Algorithm == scheme.Ed25519FROST {
		return c.generateDKG(ctx, req)
	}
	if req.Algorithm == scheme.ECDSAP256HM {
		// The scheme is behind the boundary (scheme/ecdsahm); its key generation over the
		// broker is not wired yet.
		return KeyInfo{}, fmt.Errorf("%w: %v key generation by the nodes is not wired yet", scheme.ErrNotSupported, req.Algorithm)
	}
	if req.Algorithm != scheme.Unspecified && req.Algorithm != scheme.ShoupRSA {
		return KeyInfo{}, fmt.Errorf("%w: %v keys cannot be generated", ErrInvalidInput, req.Algorithm)
	}
	if req.Bits < shoup.MinBits || req.Bits > 4096 || req.Bits%2 != 0 {
		return KeyInfo{}, fmt.Errorf("%w: modulus of %d bits (1024 to 4096)", ErrInvalidInput, req.Bits)
	}
	if err := c.may(tchsmpb.BodyType_BODY_TYPE_GENERATE_KEY_REQUEST, "generating keys"); err != nil {
		return KeyInfo{}, err
	}
	// Key generation may take its whole timeout (safe primes, nodes storing shares), but not
	// to find out that there is no broker at all.
	if err := c.waitBroker(ctx, brokerWait); err != nil {
		return KeyInfo{}, err
	}
	var rec *tchsmpb.SignedKeyRecord
	var acked, missing []string
	d, err := c.getDealer(ctx)
	if err != nil {
		return KeyInfo{}, err
	}
	if d != nil {
		rec, acked, missing, err = d.GenerateKey(ctx, req.Bits, req.E, req.Label, req.P11ID)
		if err != nil {
			return KeyInfo{}, err
		}
	} else {
		op, err := c.dealerCall(ctx, &tchsmpb.GenerateKeyRequest{Bits: uint32(req.Bits), PublicExponent: uint32(req.E), Label: req.Label, P11Id: req.P11ID})
		if err != nil {
			return KeyInfo{}, dealerErr(err)
		}
		resp, ok := op.Message.(*tchsmpb.GenerateKeyResponse)
		if !ok {
			return KeyInfo{}, fmt.Errorf("%w: dealer answered %v", ErrUnavailable, op.Type)
		}
		rec, acked, missing = resp.GetRecord(), resp.GetAcknowledged(), resp.GetMissing()
	}
	k, err := c.verifyRecord(rec)
	if err != nil {
		return KeyInfo{}, err
	}
	if len(acked) < k.info.K {
		// The caller is told the key was not made, so it must not appear later either, when the
		// missing nodes come back and store the shares queued for them: delete it everywhere
		// (the deletion waits in each node's control queue behind its share).
		err := fmt.Errorf("%w: key %s: only %d of %d nodes stored their share (missing: %v)", ErrNotEnoughNodes, k.info.ID, len(acked), k.info.L, missing)
		c.mu.Lock()
		c.keys[k.info.ID] = k
		c.mu.Unlock()
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.signTimeout())
		defer cancel()
		if _, derr := c.DeleteKey(dctx, k.info.ID); derr != nil {
			c.mu.Lock()
			delete(c.keys, k.info.ID) // not a key this client offers, deleted or not
			c.mu.Unlock()
			c.log.Error("a key generation failed and the key could not be deleted; delete it by hand", "key", k.info.ID, "err", derr)
			return KeyInfo{}, fmt.Errorf("%w; deleting it failed too (delete it by hand): %v", err, derr)
		}
		return KeyInfo{}, fmt.Errorf("%w; the key was deleted", err)
	}
	if len(missing) > 0 {
		c.log.Warn("key generated; some nodes have not stored their share yet", "key", k.info.ID, "missing", missing)
	}
	c.mu.Lock()
	c.keys[k.info.ID] = k
	c.mu.Unlock()
	return k.info, nil
}

// DeleteKey has the dealer delete a key on every node: the dealer queues the deletion durably
// for each node (a node that is down deletes it when it is back) and waits, within ctx, for
// the nodes to stop listing it. It is the one deletion path: clients never write to the nodes'
// queues themselves, so that who may delete stays the dealer's decision. The key is hidden at
// once; the nodes keep its share for their grace period, and RestoreKey brings it back until
// the time returned (zero when the nodes did not say: nodes of an older release delete for
// good).
func (c *Client) DeleteKey(ctx context.Context, id string) (time.Time, error) {
	if err := c.may(tchsmpb.BodyType_BODY_TYPE_DELETE_KEY, "deleting keys"); err != nil {
		return time.Time{}, err
	}
	if _, err := c.key(ctx, id); err != nil {
		return time.Time{}, err
	}
	ctx, cancel := withDefault(ctx, c.signTimeout())
	defer cancel()
	d, err := c.getDealer(ctx)
	if err != nil {
		return time.Time{}, err
	}
	var missing []string
	var until time.Time
	if d != nil {
		if _, missing, until, err = d.DeleteKey(ctx, id); err != nil {
			return time.Time{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	} else {
		op, err := c.dealerCall(ctx, &tchsmpb.DeleteKey{KeyId: id})
		if err != nil {
			return time.Time{}, dealerErr(err)
		}
		ack, ok := op.Message.(*tchsmpb.DeleteKeyAck)
		if !ok || ack.GetKeyId() != id || !ack.GetOk() {
			return time.Time{}, fmt.Errorf("%w: dealer answered DeleteKey with %v", ErrUnavailable, op.Type)
		}
		if e := ack.GetError(); e != "" {
			missing = []string{e}
		}
		if u := ack.GetRecoverableUntil(); u > 0 {
			until = time.Unix(u, 0)
		}
	}
	if len(missing) > 0 {
		c.log.Warn("key deleted; some nodes have not confirmed yet (they delete it when they are back)", "key", id, "missing", missing)
	}
	c.mu.Lock()
	delete(c.keys, id)
	c.mu.Unlock()
	return until, nil
}

// RestoreKey has the dealer bring a deleted key back on every node that still keeps its share
// (deleted within the node's grace period). restored and missing are the nodes that list the
// key again and the others; fewer than k restored is ErrNotEnoughNodes, and a key no node
// keeps is ErrKeyNotFound.
func (c *Client) RestoreKey(ctx context.Context, id string) (restored, missing []string, err error) {
	if err := c.may(tchsmpb.BodyType_BODY_TYPE_RESTORE_KEY, "restoring keys"); err != nil {
		return nil, nil, err
	}
	if !trust.ValidKeyID(id) {
		return nil, nil, fmt.Errorf("%w: bad key id %.64q", ErrInvalidInput, id)
	}
	ctx, cancel := withDefault(ctx, c.signTimeout())
	defer cancel()
	d, err := c.getDealer(ctx)
	if err != nil {
		return nil, nil, err
	}
	if d != nil {
		restored, missing, err = d.RestoreKey(ctx, id)
		if err != nil && !errors.Is(err, ErrNotEnoughNodes) && len(restored) == 0 {
			return nil, nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	} else {
		op, err := c.dealerCall(ctx, &tchsmpb.RestoreKey{KeyId: id})
		if err != nil {
			return nil, nil, dealerErr(err)
		}
		ack, ok := op.Message.(*tchsmpb.RestoreKeyAck)
		if !ok || ack.GetKeyId() != id {
			return nil, nil, fmt.Errorf("%w: dealer answered RestoreKey with %v", ErrUnavailable, op.Type)
		}
		restored, missing = ack.GetRestored(), ack.GetMissing()
	}
	switch {
	case len(restored) == 0:
		return nil, missing, fmt.Errorf("%w: no node restored key %s (deleted longer ago than the nodes' grace period, or never made)", ErrKeyNotFound, id)
	case len(restored) < c.m.Threshold:
		return restored, missing, fmt.Errorf("%w: key %s restored on %d nodes, signing needs %d (missing: %v)", ErrNotEnoughNodes, id, len(restored), c.m.Threshold, missing)
	}
	// The key is listed again: let the next use find it.
	if err := c.refreshKeys(ctx); err != nil {
		c.log.Warn("key restored; listing keys failed", "key", id, "err", err)
	}
	return restored, missing, nil
}

// ---- status

// NodeStatus is one node's answer to a health request.
type NodeStatus struct {
	ID      string
	Index   int
	OK      bool
	Latency time.Duration
	Version string
	Uptime  time.Duration
	Keys    []string
	// Policies says, for each key with a signing policy on the node, how it applies:
	// "enforced" or "advisory", with the name of the policy entry ("enforced (default)").
	Policies map[string]string
	// ManifestSerial and ManifestHash are the manifest the node trusts (0 and "" from a node
	// of a release without manifest updates).
	ManifestSerial uint64
	ManifestHash   string
	// Protocol and Features are the node's wire protocol and the optional features it
	// advertises (internal/protocol; protocol 1 and none for releases before v0.10).
	Protocol int
	Features []string
	Err      string
}

// Status asks every node for its health.
func (c *Client) Status(ctx context.Context) ([]NodeStatus, error) {
	ctx, cancel := withDefault(ctx, c.signTimeout())
	defer cancel()
	out := make([]NodeStatus, len(c.m.Nodes))
	var wg sync.WaitGroup
	for i, n := range c.m.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := NodeStatus{ID: n.ID, Index: n.Index}
			t0 := time.Now()
			op, err := c.call(ctx, n, transport.Node(n.ID), &tchsmpb.HealthRequest{})
			st.Latency = time.Since(t0)
			if err != nil {
				st.Err = err.Error()
			} else if h, ok := op.Message.(*tchsmpb.Health); ok {
				st.OK, st.Version, st.Uptime, st.Keys = true, h.GetVersion(), time.Duration(h.GetUptimeNanos()), h.GetKeyIds()
				st.ManifestSerial, st.ManifestHash = h.GetManifestSerial(), h.GetManifestHash()
				p := protocol.FromHealth(h)
				st.Protocol, st.Features = p.Protocol, p.Features
				for _, p := range h.GetPolicies() {
					if st.Policies == nil {
						st.Policies = map[string]string{}
					}
					st.Policies[p.GetKeyId()] = fmt.Sprintf("%s (%s)", p.GetMode(), p.GetPolicy())
				}
			} else {
				st.Err = fmt.Sprintf("answered %v", op.Type)
			}
			out[i] = st
		}()
	}
	wg.Wait()
	return out, nil
}

// ---- node bookkeeping

func (c *Client) noteFailure(nodeID string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.nodes[nodeID]; st != nil && !errors.Is(err, ErrKeyNotFound) {
		st.suspended = time.Now().Add(suspendFor)
		st.lastErr = err.Error()
	}
}

// silentSince reports whether node nodeID has given no share for d (or never).
func (c *Client) silentSince(nodeID string, d time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.nodes[nodeID]
	return st != nil && time.Since(st.lastSeenOK) > d
}

func (c *Client) noteSuccess(nodeID string, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.nodes[nodeID]
	if st == nil {
		return
	}
	// A node's first answer carries one-time costs (the pair key, the key's precomputation on
	// both sides) and does not count: seeded with it, a node that is as fast as the others
	// could look slow, be asked last, and never get the chance to correct the estimate.
	switch {
	case st.shares == 0:
	case st.ewma == 0:
		st.ewma, st.last = d, d
	default:
		st.ewma, st.last = (7*st.ewma+d)/8, d
	}
	st.suspended = time.Time{}
	st.lastSeenOK = time.Now()
	st.shares++
}

// NodeStat is what the client has seen of one node since it started.
type NodeStat struct {
	Shares  int           // signature shares received
	Invalid int           // shares proven invalid: each one made the client exclude the node
	Latency time.Duration // recent share latency (moving average)
	LastErr string
}

// NodeStats returns per-node counters, by node id.
func (c *Client) NodeStats() map[string]NodeStat {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]NodeStat, len(c.nodes))
	for id, st := range c.nodes {
		out[id] = NodeStat{Shares: st.shares, Invalid: st.invalid, Latency: st.ewma, LastErr: st.lastErr}
	}
	return out
}

func (c *Client) noteLiar(nodeID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.nodes[nodeID]; st != nil {
		st.excluded = time.Now().Add(liarFor)
		st.invalid++
		st.lastErr = "returned an invalid signature share"
	}
}

// order returns the nodes to ask, best first: healthy nodes by recent latency, then suspended
// ones and those with an overdue message. Nodes caught lying are left out.
func (c *Client) order() []trust.Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.orders++
	now := time.Now()
	type cand struct {
		m         trust.Member
		suspended bool
		score     float64
	}
	// Latency counts only when a node is clearly slower than the others (more than 1.5 × the
	// median): on equal nodes it is noise, and letting it decide would starve a node whose
	// estimate is stale. For the same reason a slow node is asked as if it were not at least
	// once every probeEvery signatures, and its latest answer must be slow too: one answer at
	// normal speed shows it is fast again. Among equal nodes, the one with the fewest
	// outstanding requests comes first (least outstanding requests spreads the load over all n
	// nodes, so that on separate servers throughput grows with n/k), with a small random factor
	// to break ties.
	var known []time.Duration
	for _, st := range c.nodes {
		if st.ewma > 0 {
			known = append(known, st.ewma)
		}
	}
	slices.Sort(known)
	var median time.Duration
	if len(known) > 0 {
		median = known[len(known)/2]
	}
	var cs []cand
	down := c.live.downSet()
	for _, n := range c.m.Nodes {
		st := c.nodes[n.ID]
		if now.Before(st.excluded) {
			continue
		}
		slow := 1.0
		if median > 0 && st.ewma > median*3/2 && st.last > median*3/2 && c.orders-st.lastAsked < probeEvery {
			slow = float64(st.ewma) / float64(median)
		}
		score := float64(st.inflight+1) * slow * (0.9 + 0.2*rand.Float64())
		// A node with an overdue message, or known down, is asked after the others, like a
		// failed one.
		overdue := c.batchers[n.ID].overdue.Load() > 0 || down[n.ID]
		cs = append(cs, cand{n, now.Before(st.suspended) || overdue, score})
	}
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].suspended != cs[j].suspended {
			return !cs[i].suspended
		}
		return cs[i].score < cs[j].score
	})
	out := make([]trust.Member, len(cs))
	for i := range cs {
		out[i] = cs[i].m
	}
	return out
}

// track counts a request to a node as outstanding until the returned function is called.
func (c *Client) track(nodeID string) func() {
	c.mu.Lock()
	st := c.nodes[nodeID]
	st.inflight++
	st.lastAsked = c.orders
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		st.inflight--
		c.mu.Unlock()
	}
}

// Transport returns the client's transport (for an in-process dealer), waiting for the broker
// connection until ctx ends.
func (c *Client) Transport(ctx context.Context) (transport.Transport, error) { return c.getConn(ctx) }

// AddRecord verifies a dealer-signed key record and adds the key to the cache.
func (c *Client) AddRecord(rec *tchsmpb.SignedKeyRecord) (KeyInfo, error) {
	k, err := c.verifyRecord(rec)
	if err != nil {
		return KeyInfo{}, err
	}
	c.mu.Lock()
	c.keys[k.info.ID] = k
	c.mu.Unlock()
	return k.info, nil
}

// Excluded returns the nodes currently left out because they returned invalid signature
// shares, with the time until which they are left out.
func (c *Client) Excluded() map[string]time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]time.Time{}
	for id, st := range c.nodes {
		if time.Now().Before(st.excluded) {
			out[id] = st.excluded
		}
	}
	return out
}
