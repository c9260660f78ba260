// Package nodetest runs a real tchsm cluster inside a test process: its own RabbitMQ vhost on
// the local broker, cluster files written by clusterinit, signing nodes running node.Run in
// goroutines, and helpers to talk to them as a client or a dealer would. Tests of node, dealer
// and client use it; nothing in it is a mock.
package nodetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/dealer"
	"github.com/tchsm/tchsm/internal/clusterinit"
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/transport/memory"
	"github.com/tchsm/tchsm/internal/transport/rabbitmq"
	"github.com/tchsm/tchsm/internal/trust"
	"github.com/tchsm/tchsm/node"
	tchsmpb "github.com/tchsm/tchsm/proto"
)

// Cluster is a test cluster. Create it with New; everything it started stops at test cleanup.
type Cluster struct {
	TB        testing.TB
	Dir       string
	URL       string // amqp URL of the cluster's own vhost
	Vhost     string
	Layout    *clusterinit.Layout
	Manifest  *trust.Manifest
	Nodes     []*config.Node // index i-1 for node i
	DealerCfg *config.Dealer
	Logger    *slog.Logger
	// Net, in a cluster made by NewInMemory, carries every message instead of a broker.
	Net *memory.Network

	mu      sync.Mutex
	running map[int]*Running
}

// Running is a node started by StartNode.
type Running struct {
	Index       int
	ID          string
	MetricsAddr string
	cancel      context.CancelFunc
	done        chan error
}

// Options for New.
type Options struct {
	K, N int
	// Signers is the number of signer clients (signer-1..), besides the admin client-1.
	Signers int
	// PIN, when set, is every client's first PIN, installed on the nodes at their first start
	// (clusterinit.Options.PIN).
	PIN string
	// Logger for nodes and dealers; nil logs to the test log at warn level and above when
	// TCHSM_TEST_LOG is set, and discards otherwise.
	Logger *slog.Logger
}

// NewInMemory creates the files of a k-of-n cluster whose nodes, dealer and clients talk over
// an in-memory network (c.Net) instead of a broker: for tests of the roles' logic, which can
// then inject faults per node. Everything else (files, identities, stores, crypto, the node
// code) is the real thing.
func NewInMemory(tb testing.TB, o Options) *Cluster {
	tb.Helper()
	c := &Cluster{TB: tb, Dir: tb.TempDir(), running: map[int]*Running{}, Logger: o.Logger, Net: memory.NewNetwork()}
	c.setUp(o, "amqp://unused.invalid/")
	return c
}

// New creates a vhost and the files of a k-of-n cluster. It skips the test when rabbitmqctl is
// not installed; a broker that does not answer fails it.
func New(tb testing.TB, o Options) *Cluster {
	tb.Helper()
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		tb.Skip("rabbitmqctl not installed")
	}
	var b [6]byte
	rand.Read(b[:])
	vhost := "tchsm-nodetest-" + hex.EncodeToString(b[:])
	// Registered first: even when add_vhost reports a failure, it may have created the vhost.
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for attempt := range 3 {
			out, err := exec.CommandContext(ctx, "rabbitmqctl", "-q", "delete_vhost", vhost).CombinedOutput()
			if err == nil || strings.Contains(string(out), "does not exist") || strings.Contains(string(out), "not_found") {
				return
			}
			if attempt == 2 {
				tb.Errorf("rabbitmqctl delete_vhost %s: %v\n%s", vhost, err, out)
			}
			time.Sleep(time.Second)
		}
	})
	Rabbitmqctl(tb, "add_vhost", vhost)
	Rabbitmqctl(tb, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
	c := &Cluster{TB: tb, Dir: tb.TempDir(), Vhost: vhost, URL: "amqp://guest:guest@127.0.0.1:5672/" + vhost,
		running: map[int]*Running{}, Logger: o.Logger}
	c.setUp(o, c.URL)
	return c
}

// setUp writes the cluster's files (brokerURL goes into them) and loads them.
func (c *Cluster) setUp(o Options, brokerURL string) {
	tb := c.TB
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
		if os.Getenv("TCHSM_TEST_LOG") != "" {
			c.Logger = slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	}
	l, err := clusterinit.Create(c.Dir, clusterinit.Options{K: o.K, N: o.N, AMQPURL: brokerURL, Clients: 1, Signers: o.Signers, PIN: o.PIN})
	if err != nil {
		tb.Fatal(err)
	}
	c.Layout = l
	if c.Manifest, err = trust.LoadManifest(l.Manifest); err != nil {
		tb.Fatal(err)
	}
	for _, p := range l.Nodes {
		var nc config.Node
		if err := config.Load(p, &nc); err != nil {
			tb.Fatal(err)
		}
		nc.Workers = 2
		c.Nodes = append(c.Nodes, &nc)
	}
	c.DealerCfg = new(config.Dealer)
	if err := config.Load(l.Dealer, c.DealerCfg); err != nil {
		tb.Fatal(err)
	}
	// Tests deal 1024-bit keys; keep the pool small and cheap.
	c.DealerCfg.PoolBits = []int{1024}
	c.DealerCfg.AckTimeout = config.Duration(10 * time.Second)
	tb.Cleanup(c.stopAll)
}

type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.tb.Log(string(p)); return len(p), nil }

// Rabbitmqctl runs rabbitmqctl -q args and fails the test on error.
func Rabbitmqctl(tb testing.TB, args ...string) string {
	tb.Helper()
	// The CLI occasionally fails to reach the broker node when many tests use it at once
	// (it then prints its usage); a few attempts make that rare failure go away.
	var out []byte
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * time.Second)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		out, err = exec.CommandContext(ctx, "rabbitmqctl", append([]string{"-q"}, args...)...).CombinedOutput()
		cancel()
		if err == nil || (attempt > 0 && strings.Contains(string(out), "already exists")) {
			return string(out)
		}
	}
	tb.Fatalf("rabbitmqctl %v: %v\n%s", args, err, out)
	return ""
}

// NodeID returns the id of node i.
func (c *Cluster) NodeID(i int) string { return clusterinit.NodeID(i) }

// StartNode runs node i (1..n) in a goroutine and waits until it consumes its queues.
func (c *Cluster) StartNode(i int, opts node.Options) *Running {
	c.TB.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{Index: i, ID: c.NodeID(i), cancel: cancel, done: make(chan error, 1)}
	ready := make(chan string, 1)
	opts.Ready = func(addr string) { ready <- addr }
	if opts.Logger == nil {
		opts.Logger = c.Logger
	}
	if opts.Version == "" {
		opts.Version = "test"
	}
	cfg := *c.Nodes[i-1]
	if c.Net != nil && opts.Transport == nil {
		opts.Transport = c.Net.Connect(r.ID)
	}
	go func() { r.done <- node.Run(ctx, &cfg, opts) }()
	select {
	case r.MetricsAddr = <-ready:
	case err := <-r.done:
		cancel()
		c.TB.Fatalf("node %d did not start: %v", i, err)
	case <-time.After(30 * time.Second):
		cancel()
		c.TB.Fatalf("node %d did not start in 30 s", i)
	}
	c.mu.Lock()
	c.running[i] = r
	c.mu.Unlock()
	return r
}

// StopNode stops node i gracefully and fails the test if Run returned an error.
func (c *Cluster) StopNode(i int) {
	c.TB.Helper()
	c.mu.Lock()
	r := c.running[i]
	delete(c.running, i)
	c.mu.Unlock()
	if r == nil {
		return
	}
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			c.TB.Errorf("node %d stopped with %v", i, err)
		}
	case <-time.After(30 * time.Second):
		c.TB.Errorf("node %d did not stop in 30 s", i)
	}
}

func (c *Cluster) stopAll() {
	c.mu.Lock()
	var idx []int
	for i := range c.running {
		idx = append(idx, i)
	}
	c.mu.Unlock()
	for _, i := range idx {
		c.StopNode(i)
	}
}

// StartAll starts every node.
func (c *Cluster) StartAll() {
	c.TB.Helper()
	for i := 1; i <= len(c.Nodes); i++ {
		c.StartNode(i, node.Options{})
	}
}

// Dial opens a transport connection to the cluster's vhost (or its in-memory network), closed
// at cleanup.
func (c *Cluster) Dial(name string) transport.Transport {
	c.TB.Helper()
	if c.Net != nil {
		tr := c.Net.Connect(name)
		c.TB.Cleanup(func() { tr.Close() })
		return tr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := rabbitmq.Open(ctx, rabbitmq.Config{URL: c.URL, ClusterID: c.Manifest.ClusterID, Name: name})
	if err != nil {
		c.TB.Fatal(err)
	}
	c.TB.Cleanup(func() { conn.Close() })
	return conn
}

// Dealer returns an in-process dealer on its own connection, closed at cleanup.
func (c *Cluster) Dealer(opts dealer.Options) *dealer.Dealer {
	c.TB.Helper()
	if opts.Logger == nil {
		opts.Logger = c.Logger
	}
	d, err := dealer.New(c.DealerCfg, c.Dial("test-dealer"), opts)
	if err != nil {
		c.TB.Fatal(err)
	}
	c.TB.Cleanup(func() { d.Close() })
	return d
}

// Identity reads an identity of the cluster: "dealer", "client-1" or "node-I".
func (c *Cluster) Identity(id string) *trust.Identity {
	c.TB.Helper()
	var path string
	var pass []byte
	mem, ok := c.Manifest.Lookup(id)
	if !ok {
		c.TB.Fatalf("no member %q", id)
	}
	switch mem.Role {
	case trust.RoleDealer:
		path = c.DealerCfg.Identity
	case trust.RoleClient:
		for _, cp := range append(slices.Clone(c.Layout.Clients), c.Layout.Signers...) {
			var cc config.Client
			if err := config.Load(cp, &cc); err != nil {
				c.TB.Fatal(err)
			}
			if filepath.Base(filepath.Dir(cp)) == id {
				path = cc.Identity
			}
		}
	case trust.RoleNode:
		n := c.Nodes[mem.Index-1]
		path = n.Identity
		p, err := n.Passphrase()
		if err != nil {
			c.TB.Fatal(err)
		}
		pass = p
	}
	ident, err := trust.ReadIdentityFile(path, pass)
	if err != nil {
		c.TB.Fatalf("identity %s: %v", id, err)
	}
	return ident
}

// Peer talks to nodes and the dealer service as one identity of the cluster, with its own
// connection, sealer and opener.
type Peer struct {
	c      *Cluster
	Conn   transport.Transport
	Sealer *trust.Sealer
	Opener *trust.Opener
}

// Peer returns a Peer for identity id (see Identity).
func (c *Cluster) Peer(id string) *Peer {
	c.TB.Helper()
	ident := c.Identity(id)
	o, err := trust.NewOpener(c.Manifest)
	if err != nil {
		c.TB.Fatal(err)
	}
	return &Peer{c: c, Conn: c.Dial("test-peer-" + id), Sealer: &trust.Sealer{Identity: ident, ClusterID: c.Manifest.ClusterID}, Opener: o}
}

// ErrNodeError is wrapped by the error CallNode returns for a sealed Error answer.
var ErrNodeError = errors.New("nodetest: answered with Error")

// ErrorBody is the error Call returns for a sealed Error answer (errors.As finds it).
type ErrorBody struct{ Body *tchsmpb.Error }

func (e ErrorBody) Error() string {
	return fmt.Sprintf("nodetest: %v: %s", e.Body.GetCode(), e.Body.GetMessage())
}
func (e ErrorBody) Unwrap() error { return ErrNodeError }

// Code returns the Error code of err when it is an ErrorBody, else CODE_UNSPECIFIED.
func Code(err error) tchsmpb.Error_Code {
	var eb ErrorBody
	if errors.As(err, &eb) {
		return eb.Body.GetCode()
	}
	return tchsmpb.Error_CODE_UNSPECIFIED
}

// Call seals body, sends it to address to, and opens the reply, which must come from `from`
// and answer this request. A sealed Error comes back as an ErrorBody error.
func (p *Peer) Call(ctx context.Context, from string, to transport.Address, bt tchsmpb.BodyType, body proto.Message) (*trust.Opened, error) {
	raw, _, err := p.Sealer.Seal(bt, body, 10*time.Second)
	if err != nil {
		return nil, err
	}
	return p.CallRaw(ctx, from, to, raw)
}

// CallRaw sends an already sealed (or forged) envelope and opens the reply.
func (p *Peer) CallRaw(ctx context.Context, from string, to transport.Address, raw []byte) (*trust.Opened, error) {
	var env tchsmpb.Envelope
	_ = proto.Unmarshal(raw, &env)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	rep, err := p.Conn.Call(ctx, to, raw)
	if err != nil {
		return nil, err
	}
	op, err := p.Opener.Open(rep)
	if err != nil {
		return nil, fmt.Errorf("nodetest: reply rejected: %w", err)
	}
	if op.Sender.ID != from || string(op.InReplyTo) != string(env.GetMessageId()) {
		return nil, fmt.Errorf("nodetest: reply from %s to %x, want %s to %x", op.Sender.ID, op.InReplyTo, from, env.GetMessageId())
	}
	if e, ok := op.Message.(*tchsmpb.Error); ok {
		return op, ErrorBody{e}
	}
	return op, nil
}

// CallNode calls node i's rpc queue.
func (p *Peer) CallNode(ctx context.Context, i int, bt tchsmpb.BodyType, body proto.Message) (*trust.Opened, error) {
	id := p.c.NodeID(i)
	return p.Call(ctx, id, transport.Node(id), bt, body)
}

// KeyIDs asks node i for its key ids (ListKeys).
func (p *Peer) KeyIDs(ctx context.Context, i int) ([]string, error) {
	op, err := p.CallNode(ctx, i, tchsmpb.BodyType_BODY_TYPE_LIST_KEYS, &tchsmpb.ListKeys{})
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, s := range op.Message.(*tchsmpb.KeyList).GetKeys() {
		rec, err := trust.VerifyKeyRecord(p.c.Manifest, s)
		if err != nil {
			return nil, err
		}
		ids = append(ids, rec.GetKeyId())
	}
	return ids, nil
}
