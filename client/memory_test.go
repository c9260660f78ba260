package client

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tchsm/tchsm/dealer"
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/transport/memory"
	"github.com/tchsm/tchsm/node"
	"github.com/tchsm/tchsm/node/nodetest"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
)

// Tests of the client's own logic — node choice, hedging, batching, liar exclusion, recovery —
// against real nodes (node.Run, real stores and shares) over an in-memory network, where faults
// are injected per node. No broker is involved; the broker-backed tests are in client_test.go
// and e2e/.

// memCluster is a k-of-n cluster on an in-memory network with one 1024-bit key dealt.
type memCluster struct {
	*nodetest.Cluster
	key     KeyInfo
	logs    *logBuffer
	metrics []*prometheus.Registry // node i's metrics at i-1
}

// requests sums the nodes' tchsm_node_requests_total of one body type ("sign_batch", ...).
func (mc *memCluster) requests(t *testing.T, typ string) int {
	return mc.counter(t, "tchsm_node_requests_total", "type", typ)
}

// counter sums the nodes' counter name over the series whose label is value.
func (mc *memCluster) counter(t *testing.T, name, label, value string) int {
	t.Helper()
	total := 0
	for _, reg := range mc.metrics {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == label && l.GetValue() == value {
						total += int(m.GetCounter().GetValue())
					}
				}
			}
		}
	}
	return total
}

// logBuffer collects a client's log records.
type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// newMemCluster starts n nodes (hooks[i], when set, is node i+1's ShareHook) and deals a key.
func newMemCluster(t *testing.T, k, n int, hooks map[int]func(*scheme.Reply)) *memCluster {
	t.Helper()
	mc := startMem(t, k, n, hooks, nil)
	mc.dealRSA(t, "test")
	return mc
}

// startMem starts the nodes of an in-memory k-of-n cluster: hooks[i] is node i's ShareHook
// and policy(i), when policy is set, its signing policy.
func startMem(t *testing.T, k, n int, hooks map[int]func(*scheme.Reply), policy func(i int) *config.SigningPolicy) *memCluster {
	t.Helper()
	c := nodetest.NewInMemory(t, nodetest.Options{K: k, N: n})
	mc := &memCluster{Cluster: c, logs: &logBuffer{}}
	for i := 1; i <= n; i++ {
		if policy != nil {
			c.Nodes[i-1].SigningPolicy = policy(i)
		}
		reg := prometheus.NewRegistry()
		mc.metrics = append(mc.metrics, reg)
		c.StartNode(i, node.Options{ShareHook: hooks[i], Registerer: reg})
	}
	return mc
}

// dealRSA deals a 1024-bit RSA key labelled label to every node and makes it mc.key.
func (mc *memCluster) dealRSA(t *testing.T, label string) {
	t.Helper()
	d := mc.Dealer(dealer.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rec, acked, _, err := d.GenerateKey(ctx, 1024, 0, label, nil)
	if err != nil || len(acked) != len(mc.Nodes) {
		t.Fatalf("GenerateKey: %v (acked %v)", err, acked)
	}
	if mc.key, err = mc.client(t, nil).AddRecord(rec); err != nil {
		t.Fatal(err)
	}
}

// client returns a client of the cluster over the in-memory network; edit, when set, changes its
// configuration first. It logs into mc.logs.
func (mc *memCluster) client(t *testing.T, edit func(*config.Client)) *Client {
	return mc.clientTB(t, edit)
}

// clientTB is client for benchmarks too.
func (mc *memCluster) clientTB(t testing.TB, edit func(*config.Client)) *Client {
	t.Helper()
	var cfg config.Client
	if err := config.Load(mc.Layout.Clients[0], &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.SignTimeout = config.Duration(10 * time.Second)
	if edit != nil {
		edit(&cfg)
	}
	log := slog.New(slog.NewTextHandler(mc.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := New(ctx, &cfg, Options{Logger: log, Transport: mc.Net.Connect("client")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sign signs msg with SHA256_RSA_PKCS and checks the signature with crypto/rsa.
func (mc *memCluster) sign(t *testing.T, c *Client, msg string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sig, err := c.Sign(ctx, mc.key.ID, scheme.SHA256RSAPKCS, []byte(msg))
	if err != nil {
		return err
	}
	h := sha256.Sum256([]byte(msg))
	if err := rsa.VerifyPKCS1v15(mc.key.Public.(*rsa.PublicKey), crypto.SHA256, h[:], sig); err != nil {
		t.Fatalf("signature over %q does not verify: %v", msg, err)
	}
	return nil
}

// shares returns the signature shares the client received from each node.
func shares(c *Client) map[string]int {
	out := map[string]int{}
	for id, st := range c.NodeStats() {
		out[id] = st.Shares
	}
	return out
}

func TestMemLoadSpreadsOverAllNodes(t *testing.T) {
	mc := newMemCluster(t, 2, 4, nil)
	c := mc.client(t, nil)
	const sigs = 60
	for i := range sigs {
		if err := mc.sign(t, c, fmt.Sprint("spread ", i)); err != nil {
			t.Fatal(err)
		}
	}
	got := shares(c)
	total := 0
	for id, n := range got {
		total += n
		// k·sigs/n = 30 each on average; a node below a third of that is being starved.
		if n < 10 {
			t.Errorf("node %s gave %d shares of %d: the load does not spread (%v)", id, n, 2*sigs, got)
		}
	}
	if total < 2*sigs {
		t.Errorf("%d shares for %d signatures", total, sigs)
	}
}

func TestMemSlowNodeIsHedgedAround(t *testing.T) {
	mc := newMemCluster(t, 2, 3, nil)
	c := mc.client(t, nil)
	const delay = 2 * time.Second
	mc.Net.SetFault(transport.Node("node-1"), memory.Fault{Delay: delay})
	const sigs = 12
	t0 := time.Now()
	for i := range sigs {
		if err := mc.sign(t, c, fmt.Sprint("slow ", i)); err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(t0)
	// Waiting for node-1 each time would take sigs × 2 s; hedging asks node-3 instead after a
	// delay of a few share latencies, and the client learns to ask node-1 last.
	if took > sigs*delay/3 {
		t.Fatalf("%d signatures took %v with one node %v slow: the slow node is waited for", sigs, took, delay)
	}
	if got := shares(c); got["node-2"] < sigs-2 || got["node-3"] < sigs-2 {
		t.Fatalf("shares %v: the two fast nodes must carry almost every signature", got)
	}
}

func TestMemSilentNodeCostsOneHedge(t *testing.T) {
	mc := newMemCluster(t, 2, 3, nil)
	const hedge = 150 * time.Millisecond
	c := mc.client(t, func(cfg *config.Client) { cfg.Hedge = config.Duration(hedge) })
	// Warm up: every node answers once.
	for i := range 3 {
		if err := mc.sign(t, c, fmt.Sprint("warm ", i)); err != nil {
			t.Fatal(err)
		}
	}
	mc.Net.SetFault(transport.Node("node-2"), memory.Fault{Hang: true})
	before := mc.Net.Calls(transport.Node("node-2"))
	const sigs = 10
	for i := range sigs {
		t0 := time.Now()
		if err := mc.sign(t, c, fmt.Sprint("silent ", i)); err != nil {
			t.Fatal(err)
		}
		// The deadline is 10 s: a signature that waited for node-2 would take it all.
		if took := time.Since(t0); took > 3*time.Second {
			t.Fatalf("signature %d took %v with node-2 silent: it waited for the node instead of hedging", i, took)
		}
	}
	// Once node-2 has been silent for a while the client asks it last: it stops costing even
	// the hedge delay. Without that, about two thirds of the signatures would ask it.
	if asked := mc.Net.Calls(transport.Node("node-2")) - before; asked > sigs/2 {
		t.Fatalf("node-2 was asked %d times in %d signatures although it never answers", asked, sigs)
	}
}

func TestMemLyingNodeIsNamedAndExcluded(t *testing.T) {
	var lies atomic.Int32
	liar := func(rep *scheme.Reply) {
		lies.Add(1)
		x := new(big.Int).SetBytes(rep.Payload)
		rep.Payload = x.Add(x, big.NewInt(1)).Bytes()
	}
	mc := newMemCluster(t, 2, 3, map[int]func(*scheme.Reply){2: liar})
	c := mc.client(t, nil)
	for i := range 12 {
		if err := mc.sign(t, c, fmt.Sprint("liar ", i)); err != nil {
			t.Fatalf("signature %d with one lying node: %v", i, err)
		}
	}
	if lies.Load() == 0 {
		t.Fatal("the lying node was never asked: the test proves nothing")
	}
	ex := c.Excluded()
	if _, ok := ex["node-2"]; !ok || len(ex) != 1 {
		t.Fatalf("excluded %v, want node-2 only", ex)
	}
	if st := c.NodeStats()["node-2"]; !strings.Contains(st.LastErr, "invalid") || st.Invalid < 1 {
		t.Fatalf("node-2's stats %+v do not say it lied", st)
	}
	if logs := mc.logs.String(); !strings.Contains(logs, "invalid signature share") || !strings.Contains(logs, "node-2") {
		t.Fatalf("the liar is not named in the client's log:\n%s", logs)
	}
	// Excluded: later signatures do not ask it.
	lied := lies.Load()
	for i := range 5 {
		if err := mc.sign(t, c, fmt.Sprint("after ", i)); err != nil {
			t.Fatal(err)
		}
	}
	if lies.Load() != lied {
		t.Fatal("the excluded node was asked again")
	}
}

func TestMemBatchesFormUnderLoadOnly(t *testing.T) {
	mc := newMemCluster(t, 2, 3, nil)
	c := mc.client(t, func(cfg *config.Client) { cfg.BatchWindow = 1 })
	// One signature at a time: every request leaves at once as a plain SignRequest.
	for i := range 6 {
		if err := mc.sign(t, c, fmt.Sprint("lone ", i)); err != nil {
			t.Fatal(err)
		}
	}
	if b := mc.requests(t, "sign_batch"); b != 0 {
		t.Fatalf("%d batches for signatures made one at a time: a lone request must not wait for company", b)
	}
	// 64 at once: requests queue behind the one message in flight per node and leave together.
	plain := mc.requests(t, "sign_request")
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- mc.sign(t, c, fmt.Sprint("load ", i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Each request of a batch also counts as a sign_request on the node.
	batches, reqs := mc.requests(t, "sign_batch"), mc.requests(t, "sign_request")-plain
	if batches == 0 || reqs < 128 || reqs-batches < 64 {
		t.Fatalf("under load: %d batches for %d share requests; most requests should travel in batches", batches, reqs)
	}
}

func TestMemFewerThanKNodes(t *testing.T) {
	mc := newMemCluster(t, 3, 4, nil)
	c := mc.client(t, nil)
	if err := mc.sign(t, c, "all up"); err != nil {
		t.Fatal(err)
	}
	// Two nodes stopped: their requests fail at once (nobody serves them).
	mc.StopNode(1)
	mc.StopNode(2)
	t0 := time.Now()
	err := mc.sign(t, c, "two down")
	if !errors.Is(err, ErrNotEnoughNodes) {
		t.Fatalf("with 2 of 4 nodes up, a 3-of-4 signature: %v, want ErrNotEnoughNodes", err)
	}
	if took := time.Since(t0); took > 8*time.Second {
		t.Fatalf("it took %v to find out; the nodes that are away fail at once", took)
	}
	for _, want := range []string{"node-1", "node-2", "2 of 3 shares"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// A node that hangs instead: the signature fails, naming the node that does not answer
	// (the client knows within its liveness window: TestMemFastFailure).
	mc.StartNode(1, node.Options{})
	mc.Net.SetFault(transport.Node("node-1"), memory.Fault{Hang: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = c.Sign(ctx, mc.key.ID, scheme.SHA256RSAPKCS, []byte("one hangs"))
	if !errors.Is(err, ErrNotEnoughNodes) || !strings.Contains(err.Error(), "no answer from node-1") {
		t.Fatalf("with a node hanging: %v", err)
	}
	// Back to three nodes: signing works again once a probe sees node-1 answer (a hung
	// request is lost here; a node that is continued answers the one waiting in its queue).
	mc.Net.SetFault(transport.Node("node-1"), memory.Fault{})
	back := time.Now()
	for {
		err := mc.sign(t, c, "back")
		if err == nil {
			break
		}
		if time.Since(back) > 3*time.Second {
			t.Fatalf("node-1 answers again, yet after %v: %v", time.Since(back), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestMemBrokerOutage(t *testing.T) {
	mc := newMemCluster(t, 2, 3, nil)
	c := mc.client(t, nil)
	if err := mc.sign(t, c, "before"); err != nil {
		t.Fatal(err)
	}
	mc.Net.SetDown(true)
	res := make(chan error, 1)
	go func() { res <- mc.sign(t, c, "across") }()
	time.Sleep(300 * time.Millisecond)
	mc.Net.SetDown(false)
	if err := <-res; err != nil {
		t.Fatalf("a signature started during a short outage: %v", err)
	}
	if err := mc.sign(t, c, "after"); err != nil {
		t.Fatal(err)
	}
}

// inProcess adapts a dealer.Dealer the way the tchsm command does for dealer_config.
type inProcess struct{ *dealer.Dealer }

func (d inProcess) GenerateKey(ctx context.Context, bits, e int, label string, p11id []byte) (*tchsmpb.SignedKeyRecord, []string, []string, error) {
	rec, acked, missing, err := d.Dealer.GenerateKey(ctx, bits, e, label, p11id)
	if errors.Is(err, dealer.ErrInvalid) {
		err = fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	return rec, acked, missing, err
}

func TestMemGenerateKey(t *testing.T) {
	c := nodetest.NewInMemory(t, nodetest.Options{K: 2, N: 3})
	c.StartAll()
	mc := &memCluster{Cluster: c, logs: &logBuffer{}}
	// Through the dealer service.
	dtr := c.Net.Connect("dealer")
	d, err := dealer.New(c.DealerCfg, dtr, dealer.Options{Logger: c.Logger})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- d.Serve(sctx) }()
	t.Cleanup(func() { stop(); <-served; d.Close(); dtr.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := dtr.WaitServing(ctx, transport.Dealer); err != nil {
		t.Fatal(err)
	}
	svc := mc.client(t, nil)
	k, err := svc.GenerateKey(ctx, GenerateRequest{Bits: 1024, Label: "via-service"})
	if err != nil || k.Label != "via-service" || k.Bits != 1024 {
		t.Fatalf("GenerateKey through the dealer service: %+v %v", k, err)
	}
	mc.key = k
	if err := mc.sign(t, svc, "service key"); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.GenerateKey(ctx, GenerateRequest{Bits: 1024, E: 4}); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("an even exponent through the service: %v, want ErrInvalidInput", err)
	}
	// In this process (Options.Dealer), as the tchsm command does for dealer_config.
	var made atomic.Int32
	var cfg config.Client
	if err := config.Load(c.Layout.Clients[0], &cfg); err != nil {
		t.Fatal(err)
	}
	local, err := New(ctx, &cfg, Options{Transport: c.Net.Connect("client-local"), Dealer: func(tr transport.Transport) (KeyDealer, error) {
		made.Add(1)
		d, err := dealer.New(c.DealerCfg, tr, dealer.Options{Logger: c.Logger})
		return inProcess{d}, err
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	for i := range 2 {
		k, err := local.GenerateKey(ctx, GenerateRequest{Bits: 1024, Label: fmt.Sprint("local-", i)})
		if err != nil {
			t.Fatalf("GenerateKey in process: %v", err)
		}
		mc.key = k
		if err := mc.sign(t, local, "local key"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := local.GenerateKey(ctx, GenerateRequest{Bits: 1024, E: 4}); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("an even exponent in process: %v, want ErrInvalidInput", err)
	}
	// Deletion goes through the dealer as well: through the service, and in process.
	keys := func(c *Client) map[string]bool {
		ks, err := c.Keys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, k := range ks {
			out[k.ID] = true
		}
		return out
	}
	ids := keys(svc)
	if len(ids) != 3 {
		t.Fatalf("keys before deleting: %v", ids)
	}
	if _, err := svc.DeleteKey(ctx, mc.key.ID); err != nil {
		t.Fatalf("DeleteKey through the service: %v", err)
	}
	c.StopNode(3) // down while a key is deleted: it deletes it when it is back
	var other string
	for id := range ids {
		if id != mc.key.ID {
			other = id
		}
	}
	if _, err := local.DeleteKey(ctx, other); err != nil {
		t.Fatalf("DeleteKey in process with a node down: %v", err)
	}
	if _, err := svc.DeleteKey(ctx, mc.key.ID); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("deleting a deleted key: %v, want ErrKeyNotFound", err)
	}
	c.StartNode(3, node.Options{})
	peer := c.Peer("client-1")
	for {
		held, err := peer.KeyIDs(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(held) == 1 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("node-3 still holds %v after coming back", held)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := keys(svc); len(got) != 1 || got[mc.key.ID] || got[other] {
		t.Fatalf("keys after deleting two of three: %v", got)
	}
	if made.Load() != 1 {
		t.Fatalf("the in-process dealer was made %d times, want once", made.Load())
	}
}
