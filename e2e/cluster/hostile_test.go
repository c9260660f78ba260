package cluster_test

import (
	"context"
	"crypto/rsa"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/testcluster"
	"github.com/tchsm/tchsm/internal/transport/rabbitmq"
	"github.com/tchsm/tchsm/internal/trust"
	"github.com/tchsm/tchsm/node"
	"github.com/tchsm/tchsm/node/nodetest"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
)

// TestLyingNode replaces node 2's process with an in-process node that corrupts every share it
// sends. Every signature must still verify, and the client must name node 2.
func TestLyingNode(t *testing.T) {
	tc := testcluster.Start(t, testcluster.Options{K: 3, N: 5})
	c := tc.Client()
	k := generate(t, c, 2048)
	lies := startLiar(t, tc, 2, func(rep *scheme.Reply) bool {
		x := new(big.Int).SetBytes(rep.Payload)
		rep.Payload = x.Mul(x, big.NewInt(2)).Mod(x, k.Public.(*rsa.PublicKey).N).Bytes()
		return true
	})
	// The client saw node 2 go away while its process was swapped: it asks it again once it
	// answers its probes (and the client has logged in to it again); until then every
	// signature goes to the four others.
	untilLied(t, lies, func(i int) { signOK(t, c, k, fmt.Sprintf("until node 2 is asked %d", i)) })
	// Many signatures at once: the liar's shares also travel in batches. Every signature verifies.
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 3 {
				signOK(t, c, k, fmt.Sprintf("liar in a busy cluster %d %d", g, i))
			}
		})
	}
	wg.Wait()
	for i := range 20 {
		signOK(t, c, k, fmt.Sprintf("liar in the cluster %d", i))
	}
	untilExcluded(t, c, "node-2", func(i int) { signOK(t, c, k, fmt.Sprintf("until excluded %d", i)) })
	if lies.Load() == 0 {
		t.Fatal("the lying node was never asked; the test proves nothing")
	}
	if _, ok := c.Excluded()["node-2"]; !ok {
		t.Fatalf("node-2 lied %d times but is not excluded: %v", lies.Load(), c.Excluded())
	}
	t.Logf("node-2 lied %d times; excluded until %v", lies.Load(), c.Excluded()["node-2"].Format(time.TimeOnly))
}

// untilLied signs (sign(i)) until the liar lied once, for at most 20 s: a node that is back
// must be asked again within that (the liveness probes see it within a window).
func untilLied(t *testing.T, lies *atomic.Int64, sign func(i int)) {
	t.Helper()
	end := time.Now().Add(20 * time.Second)
	for i := 0; lies.Load() == 0 && time.Now().Before(end); i++ {
		sign(i)
	}
	if lies.Load() == 0 {
		t.Fatal("the lying node was not asked within 20 s of its start")
	}
}

// untilExcluded signs (sign(i)) until c excludes node, at most 100 times. A lie counts only when
// its share is combined: on a loaded machine an in-process liar may answer only after the
// others and so be asked, lie, and not be caught for a while; the client must still catch it.
func untilExcluded(t *testing.T, c *client.Client, node string, sign func(i int)) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if _, ok := c.Excluded()[node]; ok {
			return
		}
		sign(i)
	}
}

// startLiar replaces node i's process with an in-process node that passes every reply through
// lie before it leaves, and returns the count of replies lie changed (it returns true for those).
func startLiar(t *testing.T, tc *testcluster.Cluster, i int, lie func(*scheme.Reply) bool) *atomic.Int64 {
	t.Helper()
	tc.StopNode(i)
	var cfg config.Node
	if err := config.Load(tc.Layout.Nodes[i-1], &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.AMQP.URL = tc.AMQPURL
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	lies := new(atomic.Int64)
	ready := make(chan struct{})
	go func() {
		done <- node.Run(ctx, &cfg, node.Options{
			Logger: slog.New(slog.DiscardHandler),
			Ready:  func(string) { close(ready) },
			ShareHook: func(rep *scheme.Reply) {
				if lie(rep) {
					lies.Add(1)
				}
			},
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatalf("lying node-%d did not start", i)
	}
	return lies
}

// TestHostileMessages sends garbage, forged, replayed, expired and unauthorised messages to a
// node's queues; the node must refuse them and keep signing.
func TestHostileMessages(t *testing.T) {
	// No PIN on the nodes: the forged requests below are bare SignRequests, as an older client
	// sends them (with PINs they are refused NOT_LOGGED_IN first: p11shim/sotest's
	// TestModuleNodePIN).
	tc := testcluster.Start(t, testcluster.Options{K: 2, N: 3, NoPIN: true})
	c := tc.Client()
	k := generate(t, c, 1024)
	m := c.Manifest()
	ctx := context.Background()
	conn, err := rabbitmq.Dial(ctx, rabbitmq.Config{URL: tc.AMQPURL, ClusterID: m.ClusterID, Name: "mallory"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rpc := rabbitmq.NodeRPCQueue(m.ClusterID, "node-1")
	ctl := rabbitmq.NodeControlQueue(m.ClusterID, "node-1")
	clientID, err := trust.ReadIdentityFile(tc.Dir+"/clients/client-1/identity.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	mallory, _ := trust.NewIdentity("client-1", trust.RoleClient) // same name, other keys
	pass, _ := (&config.Node{PassphraseFile: tc.Dir + "/secrets/node-2.passphrase"}).Passphrase()
	node2, err := trust.ReadIdentityFile(tc.Dir+"/nodes/node-2/identity.json", pass)
	if err != nil {
		t.Fatal(err)
	}
	req := &tchsmpb.SignRequest{KeyId: k.ID, Payload: []byte("payload")}
	now := time.Now()
	valid := nodetest.Forge(clientID, m.ClusterID, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, req, now, 30*time.Second)

	call := func(body []byte) error {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		rep, err := conn.Call(cctx, rpc, body)
		if err != nil {
			return err
		}
		op, err := trust.NewOpener(m)
		if err != nil {
			return err
		}
		o, err := op.Open(rep)
		if err != nil {
			return fmt.Errorf("unopenable reply: %w", err)
		}
		if o.Type == tchsmpb.BodyType_BODY_TYPE_ERROR {
			return fmt.Errorf("node error: %v", o.Message)
		}
		return nil
	}
	if err := call(valid); err != nil {
		t.Fatalf("valid request refused: %v", err)
	}
	reasons := map[string]string{
		"replayed": "already seen", "garbage": "malformed", "empty": "malformed", "truncated": "malformed",
		"forged by mallory": "bad envelope signature", "expired": "validity window", "node asks to sign": "may not send",
		"other cluster": "another cluster", "unknown key": "UNKNOWN_KEY", "payload too long": "BAD_REQUEST",
	}
	cases := map[string][]byte{
		"replayed":          valid,
		"garbage":           []byte("\x00\x01garbage"),
		"empty":             {},
		"truncated":         valid[:len(valid)/2],
		"forged by mallory": nodetest.Forge(mallory, m.ClusterID, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, req, now, 30*time.Second),
		"expired":           nodetest.Forge(clientID, m.ClusterID, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, req, now.Add(-time.Minute), 30*time.Second),
		"node asks to sign": nodetest.Forge(node2, m.ClusterID, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, req, now, 30*time.Second),
		"other cluster":     nodetest.Forge(clientID, "elsewhere", tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, req, now, 30*time.Second),
		"unknown key":       nodetest.Forge(clientID, m.ClusterID, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, &tchsmpb.SignRequest{KeyId: "00112233445566778899aabbccddeeff", Payload: []byte("x")}, now, 30*time.Second),
		"payload too long":  nodetest.Forge(clientID, m.ClusterID, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, &tchsmpb.SignRequest{KeyId: k.ID, Payload: make([]byte, 200)}, now, 30*time.Second),
	}
	for name, body := range cases {
		err := call(body)
		if err == nil {
			t.Errorf("%s: node answered with a signature share", name)
			continue
		}
		if !strings.Contains(err.Error(), reasons[name]) {
			t.Errorf("%s: refused for the wrong reason: %v (want %q)", name, err, reasons[name])
		}
	}
	// Control queue: a client may not deliver shares; garbage is dead-lettered, not retried forever.
	for _, body := range [][]byte{
		[]byte("garbage"),
		nodetest.Forge(clientID, m.ClusterID, tchsmpb.BodyType_BODY_TYPE_KEY_SHARE_DELIVERY, &tchsmpb.KeyShareDelivery{Recipient: "node-1"}, now, time.Hour),
	} {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := conn.PublishDurable(cctx, ctl, body); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	time.Sleep(500 * time.Millisecond)
	st, _ := c.Status(ctx)
	for _, s := range st {
		if !s.OK {
			t.Fatalf("node %s down after hostile messages: %s", s.ID, s.Err)
		}
	}
	signOK(t, c, k, "still signing")
}
