// Package node is tchsm's signing node daemon: it holds one share of every cluster key in an
// encrypted store (node/store) and answers signing requests over RabbitMQ.
//
// # Queues
//
// A node consumes two queues (internal/transport names them):
//
//   - its durable control queue, one message at a time: KeyShareDelivery from a dealer,
//     DKGLateDeals from the dealer (the deals of a key generated while this node was down, from
//     which it computes its share: see dkg.go), and DeleteKey and RestoreKey from the dealer
//     (clients ask the dealer). A message is acknowledged only once its effect is on disk (the
//     share stored, the tombstone written, the key restored). A deleted key's share stays
//     encrypted in the store for the node's deleted_key_grace (default 7 days), when
//     RestoreKey can bring it back; it is purged at start and periodically afterwards.
//     Malformed, forged, expired, unauthorised or
//     inconsistent messages are logged (sender, reason, never secrets) and rejected with
//     transport.ErrPermanent, so the broker dead-letters them into the node's .dead queue for the
//     operator. ManifestPush from the dealer: manifest updates (manifest.go), applied like an
//     admin client's push. Control messages are idempotent (a share stored twice, a key deleted twice, a
//     share for a deleted key ignored thanks to the store's tombstones), so they are opened
//     without the replay cache: a delivery requeued after a transient store failure must be
//     accepted the second time.
//   - its rpc queue, with cfg.WorkerCount() workers: SignRequest (-> SignatureShare),
//     SignBatch (-> SignBatchResult: up to 64 SignRequests, computed in parallel, each answered
//     with a share or an Error), ProofRequest (-> Proof), ListKeys (-> KeyList), HealthRequest
//     (-> Health), DeleteKey (-> DeleteKeyAck), ManifestPush from an admin client and
//     ManifestFetch (-> ManifestState, ManifestChain: manifest.go), PINLogin, PINChange and PINUnlock (->
//     PINResult), and LoggedIn wrappers around the requests that need a login (see login.go:
//     a client the node holds a PIN for signs and generates keys only under a login). Every answer is an envelope sealed by the node whose in_reply_to is the
//     request's message id. A request that opened (authentic, authorised, fresh) but cannot be
//     served is answered with a sealed Error (UNKNOWN_KEY, BAD_REQUEST, UNAUTHORIZED, EXPIRED,
//     INTERNAL, UNAVAILABLE, POLICY_REFUSED, NOT_LOGGED_IN, PIN_LOCKED).
//
// ProofRequest.indices is advisory: a node that receives a ProofRequest answers with its own
// share and proof. A key record is accepted when the manifest's dealer signed it for this
// cluster and its n equals the manifest's number of nodes; its k is the dealer's choice.
//
// # Backups
//
// A node listens on a unix socket beside its store (SocketPath, mode 0600, its own user and
// root only) and answers a backup request there with a snapshot of its whole store, still
// sealed: see backup.go and docs/operations/backup-restore.md. The socket is not part of the
// broker protocol and never a network listener.
//
// # Rejected requests
//
// A request that does not open (garbage, wrong cluster, unknown sender, bad signature, a role
// that may not send it, expired, replayed) cannot be answered with a sealed Error: the node
// cannot tell the genuine sender apart from someone replaying or forging its messages, and the
// in_reply_to of an unauthenticated request means nothing. It is logged and answered with a
// plain transport error naming only the category ("node: request rejected: trust: envelope
// already seen"), which a client sees as a transport.RemoteError rather than a time-out; the
// text carries no secret and nothing taken from the request.
//
// # Trusted parameters
//
// A node signs only with the parameters of the key record it stored after verifying the
// dealer's signature (for RSA the modulus, exponent, k and n); a SignRequest names a key and
// carries the round's payload (for RSA the PKCS#1 payload T, from which the key's scheme
// builds EM itself). Nothing else in a request reaches the arithmetic: the key's
// scheme.Participant (store.Key) answers it.
//
// # Shutdown
//
// When Run's ctx ends the node stops consuming, lets the requests in flight finish, closes the
// broker connection and the store (wiping the decrypted shares), and returns nil.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/dnspolicy"
	"github.com/tchsm/tchsm/internal/logging"
	"github.com/tchsm/tchsm/internal/modexp"
	// The share's exponentiation in OpenSSL's constant-time code (issue 17): linked here, in
	// the node, and not in the PKCS#11 module, which computes no shares.
	_ "github.com/tchsm/tchsm/internal/modexp/openssl"
	"github.com/tchsm/tchsm/internal/rpc"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/transport/rabbitmq"
	"github.com/tchsm/tchsm/internal/trust"
	"github.com/tchsm/tchsm/node/store"
	"github.com/tchsm/tchsm/scheme"
)

// Errors of Run's start-up.
var (
	ErrIdentity = errors.New("node: identity does not match the manifest")
)

// Options are the parts of a node that do not come from its configuration file.
type Options struct {
	// Logger receives structured logs; nil means JSON on stderr at cfg.LogLevel.
	Logger *slog.Logger
	// Version is reported in Health.
	Version string
	// Ready, when set, is called once the node's queues are declared and its consumers started
	// (200 ms after starting them without an error; requests sent earlier wait in the queues),
	// with the address the metrics listen on ("" when disabled).
	Ready func(metricsAddr string)
	// ShareHook, when set, is called on every reply of a signing session before it is sent
	// (for RSA: the share x_i in Payload, after its proof was made). Tests use it to make an
	// in-process node lie. Not reachable from a configuration file.
	ShareHook func(*scheme.Reply)
	// Registerer, when set, receives the node's Prometheus metrics as well as its own /metrics.
	Registerer prometheus.Registerer
	// Transport, when set, carries the node's messages instead of a broker connection made
	// from cfg's amqp section (tests use an in-memory one). Run closes it when it returns.
	Transport transport.Transport
	// WithoutFeatures are optional protocol features (internal/protocol) the node neither
	// advertises nor serves, answering their messages UNSUPPORTED_BODY_TYPE as a node of a
	// release without them would. Tests of mixed-version clusters use it. Not reachable from
	// a configuration file.
	WithoutFeatures []string
}

// node is one running signing node.
type node struct {
	cfg     *config.Node
	opts    Options
	log     *slog.Logger
	trusted *trust.Trusted // the manifest trusted now (manifest.go); manifest() reads it
	id      *trust.Identity
	self    trust.Member
	sealer  *trust.Sealer
	opener  *trust.Opener
	rpc     *rpc.Server
	store   *store.Store
	conn    transport.Transport
	metrics *metrics
	started time.Time

	inFlight atomic.Int64
	// exps bounds the exponentiations running at once to the worker count: a SignBatch's
	// requests are computed in parallel, next to the other workers' requests.
	exps chan struct{}
	// dkgs are the distributed key generations in progress (memory only).
	dkgs *dkgRuns
	// reshares are the resharings in progress (memory only).
	reshares *dkgRuns

	// policy is the node's signing policy (cfg.SigningPolicy, compiled); refusals bounds its
	// log lines; signed remembers the payloads it accepted, for the proof round.
	policy   *dnspolicy.Set
	refusals rpc.LogLimit
	signed   signedPayloads

	// logins are the clients' PINs and login sessions (login.go).
	logins *logins
}

// Run runs a signing node until ctx ends (it then returns nil after a graceful shutdown) or it
// fails. Start-up errors (configuration, wrong passphrase, identity not in the manifest, broker
// refusing access) are returned at once.
func Run(ctx context.Context, cfg *config.Node, opts Options) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	exp, err := modexp.Selected() // fails when $TCHSM_MODEXP names an engine not linked
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	policy, err := dnspolicy.Compile(cfg.SigningPolicy)
	if err != nil {
		return err
	}
	n := &node{cfg: cfg, opts: opts, log: opts.Logger, started: time.Now(), exps: make(chan struct{}, cfg.WorkerCount()), policy: policy}
	if n.log == nil {
		var err error
		if n.log, _, err = logging.Open("", cfg.LogLevel, os.Stderr); err != nil {
			return fmt.Errorf("node: %w", err)
		}
	}
	if err := n.load(); err != nil {
		return err
	}
	defer n.store.Close()
	n.metrics = newMetrics(opts.Registerer)
	n.metrics.keys.Set(float64(n.store.Len()))

	if n.conn = opts.Transport; n.conn == nil {
		tc, err := rabbitmq.FromConfig(cfg.AMQP, n.manifest().ClusterID, "tchsm-node-"+n.id.ID)
		if err != nil {
			return err
		}
		tc.Logger = n.log
		tc.Spread = n.self.Index // nodes 1..n start on brokers 1, 2, ... in turn
		if n.conn, err = rabbitmq.Open(ctx, tc); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("node: %w", err)
		}
	}
	defer n.conn.Close()
	self := transport.Node(n.id.ID)

	var metricsAddr string
	if cfg.MetricsAddr != "" {
		ln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("node: metrics listener: %w", err)
		}
		metricsAddr = ln.Addr().String()
		srv := &http.Server{Handler: n.metricsHandler(cfg.Pprof), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
	}

	// Online backups (backup.go). Without the socket the node still signs: it is backed up
	// stopped, from its store file.
	if ln, err := n.listenBackups(); err != nil {
		n.log.Warn("no online backups: the backup socket cannot be opened", "socket", SocketPath(cfg), "error", err)
	} else {
		go n.serveBackups(ln)
		defer ln.Close()
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	purged := make(chan struct{})
	go func() { defer close(purged); n.purgeLoop(ctx) }()
	defer func() { cancel(); <-purged }() // before the store closes
	errc := make(chan error, 2)
	go func() {
		err := n.conn.Consume(ctx, self, n.handleControl)
		cancel()
		errc <- err
	}()
	go func() {
		err := n.conn.Serve(ctx, self, cfg.WorkerCount(), n.handleRPC)
		cancel()
		errc <- err
	}()
	n.log.Info("node started", "cluster", n.manifest().ClusterID, "index", n.self.Index, "manifest", n.manifest().Fingerprint(),
		"keys", n.store.Len(), "workers", cfg.WorkerCount(), "metrics", metricsAddr, "version", opts.Version,
		"modexp", exp.Name())
	if opts.Ready != nil {
		// Ready once both consumers are subscribed: requests reach the node from then on (its
		// rpc queue exists only while it consumes). A failure to subscribe cancels ctx.
		go func() {
			if n.conn.WaitServing(ctx, self) == nil && n.conn.WaitConsuming(ctx, self) == nil {
				opts.Ready(metricsAddr)
			}
		}()
	}
	err1, err2 := <-errc, <-errc
	n.log.Info("node stopped")
	return errors.Join(quiet(err1), quiet(err2))
}

// quiet drops the error a consumer returns because the other one stopped first.
func quiet(err error) error {
	if errors.Is(err, transport.ErrClosed) {
		return nil
	}
	return err
}

// load reads the manifest, the passphrase, the identity and the store.
func (n *node) load() error {
	tr, err := trust.OpenTrusted(n.cfg.Manifest)
	if err != nil {
		return err
	}
	m := tr.Manifest()
	pass, from, err := n.cfg.PassphraseFrom()
	if err != nil {
		return err
	}
	defer clear(pass)
	if from != "fd" && from != "env" && n.cfg.PassphraseBesideData(from) {
		n.log.Warn("the passphrase file is in the folder of the share store or the identity: a copy of that folder decrypts the shares; move it out (a systemd credential, a container secret)", "passphrase_file", from)
	}
	id, err := trust.ReadIdentityFile(n.cfg.Identity, pass)
	if err != nil {
		return err
	}
	mem, err := memberOf(m, id)
	if err != nil {
		return err
	}
	// Requests issued before this start are refused: the replay cache is new, and a request
	// captured before a restart must not be served again.
	opener, err := trust.NewOpener(m, trust.WithIdentity(id), trust.WithNotBefore(n.started))
	if err != nil {
		return err
	}
	st, err := store.Open(n.cfg.Store, pass, store.Options{NodeID: id.ID, Manifest: m})
	if err != nil {
		return fmt.Errorf("node: share store: %w", err)
	}
	n.trusted, n.id, n.self, n.opener, n.store = tr, id, mem, opener, st
	tr.OnChange(n.manifestChanged)
	n.sealer = &trust.Sealer{Identity: id, ClusterID: m.ClusterID}
	n.log = n.log.With("node", id.ID)
	n.dkgs = newDKGRuns()
	n.reshares = newDKGRuns()
	n.rpc = &rpc.Server{Opener: opener, Sealer: n.sealer, Log: n.log, Handle: n.dispatch, Done: n.requestDone, Unwrap: n.unwrap}
	if err := n.loadPINs(); err != nil {
		st.Close()
		return err
	}
	return nil
}
