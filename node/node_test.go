package node_test

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/dealer"
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/transport/rabbitmq"
	"github.com/tchsm/tchsm/internal/trust"
	"github.com/tchsm/tchsm/node"
	"github.com/tchsm/tchsm/node/nodetest"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/shoup"
	"github.com/tchsm/tchsm/scheme/shoup/keygen"
)

// eventually polls f until it returns nil or d passes.
func eventually(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func hasKey(client *nodetest.Peer, t testing.TB, i int, keyID string) error {
	ids, err := client.KeyIDs(nodetest.Ctx(t, 5*time.Second), i)
	if err != nil {
		return err
	}
	if !slices.Contains(ids, keyID) {
		return fmt.Errorf("node %d does not list %s (has %v)", i, keyID, ids)
	}
	return nil
}

// Deal a 3-of-5 key to 5 in-process nodes, sign with three of them, verify with crypto/rsa.
func TestDealSignCombine(t *testing.T) {
	c := nodetest.New(t, nodetest.Options{K: 3, N: 5})
	c.Nodes[0].MetricsAddr = "127.0.0.1:0"
	var metricsAddr, metricsAddr2 string
	c.Nodes[0].Pprof = true // node 1 serves the profiler, node 2 does not
	c.Nodes[1].MetricsAddr = "127.0.0.1:0"
	for i := 1; i <= 5; i++ {
		r := c.StartNode(i, node.Options{})
		switch i {
		case 1:
			metricsAddr = r.MetricsAddr
		case 2:
			metricsAddr2 = r.MetricsAddr
		}
	}
	d := c.Dealer(dealer.Options{})
	signed, acked, missing, err := d.GenerateKey(nodetest.Ctx(t, 60*time.Second), 1024, 0, "zone-ksk", []byte{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(acked) != 5 || len(missing) != 0 {
		t.Fatalf("acked %v, missing %v", acked, missing)
	}
	rec, pk := nodetest.RecordKey(t, c.Manifest, signed)
	if rec.Label != "zone-ksk" || rec.K != 3 || rec.N != 5 || rec.Bits != 1024 || !rec.SafePrimes || rec.PublicExponent != 65537 {
		t.Fatalf("record %v", rec)
	}
	client := c.Peer("client-1")
	for i := 1; i <= 5; i++ {
		if err := hasKey(client, t, i, rec.KeyId); err != nil {
			t.Fatal(err)
		}
	}
	nodetest.SignWith(t, client, pk, rec.KeyId, []byte("example.com. IN DNSKEY"), 1, 3, 5)
	sig1 := nodetest.SignWith(t, client, pk, rec.KeyId, []byte("same message"), 2, 3, 4)
	sig2 := nodetest.SignWith(t, client, pk, rec.KeyId, []byte("same message"), 5, 1, 2)
	if string(sig1) != string(sig2) {
		t.Fatal("two subsets gave different signatures")
	}

	// Health and metrics.
	op, err := client.CallNode(nodetest.Ctx(t, 5*time.Second), 2, tchsmpb.BodyType_BODY_TYPE_HEALTH_REQUEST, &tchsmpb.HealthRequest{})
	if err != nil {
		t.Fatal(err)
	}
	h := op.Message.(*tchsmpb.Health)
	if h.Node != "node-2" || h.Version != "test" || !slices.Contains(h.KeyIds, rec.KeyId) || h.UptimeNanos <= 0 {
		t.Fatalf("health %v", h)
	}
	body := httpGet(t, "http://"+metricsAddr+"/metrics")
	for _, want := range []string{`tchsm_node_requests_total{result="ok",type="sign_request"} 2`, "tchsm_node_keys 1", "tchsm_node_sign_seconds_count 2"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if hz := httpGet(t, "http://"+metricsAddr+"/healthz"); !strings.HasPrefix(hz, "ok node-1 keys=1") {
		t.Errorf("healthz: %q", hz)
	}
	if code := httpStatus(t, "http://"+metricsAddr+"/debug/pprof/cmdline"); code != http.StatusOK {
		t.Errorf("pprof on: /debug/pprof/cmdline answered %d", code)
	}
	if metricsAddr2 == "" {
		t.Fatal("node 2 has no metrics listener")
	}
	if code := httpStatus(t, "http://"+metricsAddr2+"/debug/pprof/cmdline"); code != http.StatusNotFound {
		t.Errorf("pprof off: /debug/pprof/cmdline answered %d", code)
	}
}

func httpStatus(t testing.TB, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func httpGet(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// A node that is down while a key is dealt gets its share from its durable queue when it starts.
func TestLateNode(t *testing.T) {
	c := nodetest.New(t, nodetest.Options{K: 2, N: 3})
	c.StartNode(1, node.Options{})
	c.StartNode(2, node.Options{})
	c.DealerCfg.AckTimeout = config.Duration(3 * time.Second)
	d := c.Dealer(dealer.Options{})
	signed, acked, missing, err := d.GenerateKey(nodetest.Ctx(t, 60*time.Second), 1024, 0, "late", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(acked, []string{"node-1", "node-2"}) || !slices.Equal(missing, []string{"node-3"}) {
		t.Fatalf("acked %v missing %v", acked, missing)
	}
	rec, pk := nodetest.RecordKey(t, c.Manifest, signed)
	if n := c.QueueDepth(rabbitmq.NodeControlQueue(c.Manifest.ClusterID, "node-3")); n != 1 {
		t.Fatalf("node-3's control queue holds %d messages, want 1", n)
	}
	c.StartNode(3, node.Options{})
	client := c.Peer("client-1")
	eventually(t, 10*time.Second, func() error { return hasKey(client, t, 3, rec.KeyId) })
	nodetest.SignWith(t, client, pk, rec.KeyId, []byte("late node"), 3, 1)

	// A client's deletion in the control queue is refused (set aside): only the dealer deletes.
	del, _, err := client.Sealer.Seal(tchsmpb.BodyType_BODY_TYPE_DELETE_KEY, &tchsmpb.DeleteKey{KeyId: rec.KeyId}, trust.DurableMaxTTL)
	if err != nil {
		t.Fatal(err)
	}
	c.Publish(c.Dial("test-client-publisher"), 3, del)
	eventually(t, 20*time.Second, func() error {
		if n := c.QueueDepth(rabbitmq.NodeDeadQueue(c.Manifest.ClusterID, "node-3")); n != 1 {
			return fmt.Errorf("node-3's dead letters: %d, want the client's deletion", n)
		}
		return nil
	})
	if err := hasKey(client, t, 3, rec.KeyId); err != nil {
		t.Fatalf("a client's deletion in the control queue was obeyed: %v", err)
	}
	// The dealer's is obeyed.
	dealerDel, _, err := c.Peer("dealer").Sealer.Seal(tchsmpb.BodyType_BODY_TYPE_DELETE_KEY, &tchsmpb.DeleteKey{KeyId: rec.KeyId}, trust.DurableMaxTTL)
	if err != nil {
		t.Fatal(err)
	}
	c.Publish(c.Dial("test-dealer-publisher"), 3, dealerDel)
	eventually(t, 10*time.Second, func() error {
		if hasKey(client, t, 3, rec.KeyId) == nil {
			return fmt.Errorf("node-3 still holds %s", rec.KeyId)
		}
		return nil
	})
}

// Shares survive a restart; a wrong passphrase is a clear error.
func TestRestartAndPassphrase(t *testing.T) {
	c := nodetest.New(t, nodetest.Options{K: 2, N: 2})
	c.StartAll()
	d := c.Dealer(dealer.Options{})
	signed, acked, _, err := d.GenerateKey(nodetest.Ctx(t, 60*time.Second), 1024, 0, "restart", nil)
	if err != nil || len(acked) != 2 {
		t.Fatalf("GenerateKey: %v, acked %v", err, acked)
	}
	rec, pk := nodetest.RecordKey(t, c.Manifest, signed)
	c.StopNode(1)
	c.StopNode(2)
	c.StartAll()
	client := c.Peer("client-1")
	nodetest.SignWith(t, client, pk, rec.KeyId, []byte("after restart"), 1, 2)
	c.StopNode(1)

	cfg := *c.Nodes[0]
	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte("not the passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.PassphraseFile = wrong
	err = node.Run(nodetest.Ctx(t, 30*time.Second), &cfg, node.Options{Logger: c.Logger})
	if !errors.Is(err, trust.ErrWrongPassphrase) {
		t.Fatalf("Run with a wrong passphrase: %v", err)
	}
	t.Logf("wrong passphrase: %v", err)
}

// Garbage, forged, replayed, expired, unauthorised and wrong-cluster requests are refused and
// the node keeps serving.
func TestRejectedRequests(t *testing.T) {
	c := nodetest.New(t, nodetest.Options{K: 2, N: 3})
	c.StartAll()
	d := c.Dealer(dealer.Options{})
	signed, _, _, err := d.GenerateKey(nodetest.Ctx(t, 60*time.Second), 1024, 0, "rejects", nil)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := nodetest.RecordKey(t, c.Manifest, signed)
	client := c.Peer("client-1")
	clientID := client.Sealer.Identity
	q := transport.Node("node-1")
	good := &tchsmpb.SignRequest{KeyId: rec.KeyId, Payload: []byte("hello")}
	seal := func(s *trust.Sealer) []byte {
		raw, _, err := s.Seal(tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, good, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	forged := seal(client.Sealer)
	forged[len(forged)-5] ^= 0x40 // inside the signature, the envelope's last field
	replayed := seal(client.Sealer)
	if _, err := client.CallRaw(nodetest.Ctx(t, 5*time.Second), "node-1", q, replayed); err != nil {
		t.Fatalf("first use of the replayed request: %v", err)
	}
	sealTo := func(s *trust.Sealer, node int) []byte {
		raw, _, err := s.SealTo(c.Manifest.Nodes[node-1], tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, good, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	badMAC := sealTo(client.Sealer, 1)
	badMAC[len(badMAC)-3] ^= 0x40                               // inside the MAC, the envelope's last field
	other, _ := trust.NewIdentity("client-1", trust.RoleClient) // same id, other key
	nodeID := c.Identity("node-2")
	dealerID := c.Identity("dealer")
	cases := []struct {
		name, want string
		raw        []byte
	}{
		{"garbage", "malformed", []byte("\x00\x01garbage\xff")},
		{"empty", "malformed", nil},
		{"forged signature", "bad envelope signature", forged},
		{"impostor key", "bad envelope signature", seal(&trust.Sealer{Identity: other, ClusterID: c.Manifest.ClusterID})},
		{"forged MAC", "bad envelope signature", badMAC},
		{"MAC for node-2", "bad envelope signature", sealTo(client.Sealer, 2)},
		{"impostor's MAC", "bad envelope signature", sealTo(&trust.Sealer{Identity: other, ClusterID: c.Manifest.ClusterID}, 1)},
		{"replayed", "already seen", replayed},
		{"expired", "validity window", nodetest.Forge(clientID, c.Manifest.ClusterID, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, good, time.Now().Add(-time.Minute), 30*time.Second)},
		{"from the future", "validity window", nodetest.Forge(clientID, c.Manifest.ClusterID, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, good, time.Now().Add(time.Minute), 30*time.Second)},
		{"too long a ttl", "validity window", nodetest.Forge(clientID, c.Manifest.ClusterID, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, good, time.Now(), time.Hour)},
		{"node signs", "may not send", nodetest.Forge(nodeID, c.Manifest.ClusterID, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, good, time.Now(), 10*time.Second)},
		{"dealer signs", "may not send", nodetest.Forge(dealerID, c.Manifest.ClusterID, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, good, time.Now(), 10*time.Second)},
		{"wrong cluster", "another cluster", seal(&trust.Sealer{Identity: clientID, ClusterID: "othercluster"})},
		{"unknown sender", "not in manifest", seal(&trust.Sealer{Identity: mustIdentity(t, "client-9"), ClusterID: c.Manifest.ClusterID})},
	}
	for _, tc := range cases {
		_, err := client.CallRaw(nodetest.Ctx(t, 5*time.Second), "node-1", q, tc.raw)
		if !errors.Is(err, transport.ErrRemote) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v (want a remote error saying %q)", tc.name, err, tc.want)
		}
	}

	// Authentic requests that cannot be served get a sealed Error.
	for _, tc := range []struct {
		name string
		req  *tchsmpb.SignRequest
		code tchsmpb.Error_Code
	}{
		{"unknown key", &tchsmpb.SignRequest{KeyId: strings.Repeat("ab", 16), Payload: []byte("x")}, tchsmpb.Error_UNKNOWN_KEY},
		{"bad key id", &tchsmpb.SignRequest{KeyId: "../../etc/passwd", Payload: []byte("x")}, tchsmpb.Error_BAD_REQUEST},
		{"payload too long", &tchsmpb.SignRequest{KeyId: rec.KeyId, Payload: make([]byte, 200)}, tchsmpb.Error_BAD_REQUEST},
	} {
		_, err := client.CallNode(nodetest.Ctx(t, 5*time.Second), 1, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, tc.req)
		if got := nodetest.Code(err); got != tc.code {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.code)
		}
	}
	// A key share delivery sent to the rpc queue by the dealer: authentic, but not served there.
	dp := c.Peer("dealer")
	if _, err := dp.CallNode(nodetest.Ctx(t, 5*time.Second), 1, tchsmpb.BodyType_BODY_TYPE_KEY_SHARE_DELIVERY, &tchsmpb.KeyShareDelivery{}); nodetest.Code(err) != tchsmpb.Error_BAD_REQUEST {
		t.Errorf("delivery on the rpc queue: %v", err)
	}

	// The node is still alive and signing.
	if _, err := client.CallNode(nodetest.Ctx(t, 5*time.Second), 1, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, good); err != nil {
		t.Fatalf("node-1 after the rejects: %v", err)
	}
}

func mustIdentity(t testing.TB, id string) *trust.Identity {
	ident, err := trust.NewIdentity(id, trust.RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	return ident
}

// Control-queue messages that must not be stored go to the dead-letter queue; the node lives on.
func TestRejectedDeliveries(t *testing.T) {
	c := nodetest.New(t, nodetest.Options{K: 2, N: 3})
	c.StartNode(1, node.Options{})
	conn := c.Dial("test-publisher")
	client := c.Peer("client-1")
	cid := c.Manifest.ClusterID

	key, err := keygen.GenerateKey(nodetest.Ctx(t, 60*time.Second), rand.Reader, 1024, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	// node-1's share is off by one: it does not match vk_1.
	bad := c.ManualDeal(key, true, func(id string, s *tchsmpb.KeyShare) {
		if id == "node-1" {
			x := new(big.Int).SetBytes(s.S)
			x.Add(x, big.NewInt(1)).FillBytes(s.S)
		}
	})
	good := c.ManualDeal(key, true, nil)
	var ksd tchsmpb.KeyShareDelivery
	op, err := mustOpen(t, c, good.Deliveries["node-1"])
	if err != nil {
		t.Fatal(err)
	}
	if err := op.Unmarshal(&ksd); err != nil {
		t.Fatal(err)
	}
	clientIdent := client.Sealer.Identity
	// node-2's delivery, re-addressed to node-1 (it cannot decrypt it, and the index is wrong).
	var ksd2 tchsmpb.KeyShareDelivery
	op2, _ := mustOpen(t, c, good.Deliveries["node-2"])
	op2.Unmarshal(&ksd2)
	ksd2.Recipient = "node-1"
	dealerIdent := c.Identity("dealer")
	readdressed, _, _ := (&trust.Sealer{Identity: dealerIdent, ClusterID: cid}).Seal(tchsmpb.BodyType_BODY_TYPE_KEY_SHARE_DELIVERY, &ksd2, time.Hour)
	// The good record, but signed by the client instead of the dealer.
	fakeSigned := proto.Clone(ksd.SignedRecord).(*tchsmpb.SignedKeyRecord)
	fakeSigned.Dealer = "client-1"
	fakeRec := proto.Clone(&ksd).(*tchsmpb.KeyShareDelivery)
	fakeRec.SignedRecord = fakeSigned
	fakeRecEnv, _, _ := (&trust.Sealer{Identity: dealerIdent, ClusterID: cid}).Seal(tchsmpb.BodyType_BODY_TYPE_KEY_SHARE_DELIVERY, fakeRec, time.Hour)

	rejects := map[string][]byte{
		"share does not match vk":  bad.Deliveries["node-1"],
		"client sends a delivery":  nodetest.Forge(clientIdent, cid, tchsmpb.BodyType_BODY_TYPE_KEY_SHARE_DELIVERY, &ksd, time.Now(), time.Hour),
		"node sends a delivery":    nodetest.Forge(c.Identity("node-2"), cid, tchsmpb.BodyType_BODY_TYPE_KEY_SHARE_DELIVERY, &ksd, time.Now(), time.Hour),
		"expired delivery":         nodetest.Forge(dealerIdent, cid, tchsmpb.BodyType_BODY_TYPE_KEY_SHARE_DELIVERY, &ksd, time.Now().Add(-2*time.Hour), time.Hour),
		"wrong cluster":            nodetest.Forge(dealerIdent, "othercluster", tchsmpb.BodyType_BODY_TYPE_KEY_SHARE_DELIVERY, &ksd, time.Now(), time.Hour),
		"re-addressed delivery":    readdressed,
		"record not by the dealer": fakeRecEnv,
		"garbage":                  []byte("garbage"),
		"sign request on control":  nodetest.Forge(clientIdent, cid, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, &tchsmpb.SignRequest{KeyId: good.Record.KeyId}, time.Now(), time.Minute),
	}
	for name, raw := range rejects {
		t.Log("publishing:", name)
		c.Publish(conn, 1, raw)
	}
	dead := rabbitmq.NodeDeadQueue(cid, "node-1")
	eventually(t, 20*time.Second, func() error {
		if n := c.QueueDepth(dead); n != len(rejects) {
			return fmt.Errorf("dead-letter queue holds %d, want %d", n, len(rejects))
		}
		return nil
	})
	if ids, err := client.KeyIDs(nodetest.Ctx(t, 5*time.Second), 1); err != nil || len(ids) != 0 {
		t.Fatalf("node-1 holds %v (%v) after the rejects", ids, err)
	}
	// The genuine delivery is stored, and node-1 signs with it.
	c.Publish(conn, 1, good.Deliveries["node-1"])
	eventually(t, 10*time.Second, func() error { return hasKey(client, t, 1, good.Record.KeyId) })
	if n := c.QueueDepth(rabbitmq.NodeControlQueue(cid, "node-1")); n != 0 {
		t.Fatalf("control queue holds %d", n)
	}
}

func mustOpen(t testing.TB, c *nodetest.Cluster, raw []byte) (*trust.Opened, error) {
	o, err := trust.NewOpener(c.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	return o.Open(raw)
}

// Delete removes the key from every node; an old delivery redelivered afterwards does not bring
// it back; a node down during the delete deletes when it is back.
func TestDelete(t *testing.T) {
	c := nodetest.New(t, nodetest.Options{K: 2, N: 3})
	c.StartAll()
	conn := c.Dial("test-publisher")
	client := c.Peer("client-1")
	key, err := keygen.GenerateKey(nodetest.Ctx(t, 60*time.Second), rand.Reader, 1024, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	dealt := c.ManualDeal(key, true, nil)
	id := dealt.Record.KeyId
	for i := 1; i <= 3; i++ {
		c.Publish(conn, i, dealt.Deliveries[c.NodeID(i)])
		// Delivered twice (a broker redelivery): idempotent.
		c.Publish(conn, i, dealt.Deliveries[c.NodeID(i)])
	}
	for i := 1; i <= 3; i++ {
		eventually(t, 10*time.Second, func() error { return hasKey(client, t, i, id) })
	}
	nodetest.SignWith(t, client, dealt.Public, id, []byte("before delete"), 1, 3)

	c.StopNode(3)
	c.DealerCfg.AckTimeout = config.Duration(3 * time.Second)
	d := c.Dealer(dealer.Options{NoPool: true})
	gone, missing, _, err := d.DeleteKey(nodetest.Ctx(t, 30*time.Second), id)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gone, []string{"node-1", "node-2"}) || !slices.Equal(missing, []string{"node-3"}) {
		t.Fatalf("gone %v missing %v", gone, missing)
	}
	_, err = client.CallNode(nodetest.Ctx(t, 5*time.Second), 1, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST,
		&tchsmpb.SignRequest{KeyId: id, Payload: []byte("after delete")})
	if nodetest.Code(err) != tchsmpb.Error_UNKNOWN_KEY {
		t.Fatalf("sign after delete: %v", err)
	}
	// Old deliveries again: acknowledged, not stored.
	for i := 1; i <= 2; i++ {
		c.Publish(conn, i, dealt.Deliveries[c.NodeID(i)])
	}
	c.StartNode(3, node.Options{})
	// node-3 finds the delete waiting in its queue.
	eventually(t, 10*time.Second, func() error {
		for i := 1; i <= 3; i++ {
			if c.QueueDepth(rabbitmq.NodeControlQueue(c.Manifest.ClusterID, c.NodeID(i))) != 0 {
				return fmt.Errorf("node-%d's control queue is not empty", i)
			}
		}
		return nil
	})
	for i := 1; i <= 3; i++ {
		ids, err := client.KeyIDs(nodetest.Ctx(t, 5*time.Second), i)
		if err != nil || slices.Contains(ids, id) {
			t.Fatalf("node %d lists %v (%v) after delete", i, ids, err)
		}
		if n := c.QueueDepth(rabbitmq.NodeDeadQueue(c.Manifest.ClusterID, c.NodeID(i))); n != 0 {
			t.Errorf("node %d dead-lettered %d messages", i, n)
		}
	}
	// Restarting does not resurrect it either.
	c.StopNode(1)
	c.StartNode(1, node.Options{})
	if ids, _ := client.KeyIDs(nodetest.Ctx(t, 5*time.Second), 1); slices.Contains(ids, id) {
		t.Fatal("key back after restart")
	}
	// Over the rpc queue, a client's deletion is refused and the dealer's obeyed.
	if _, err := client.CallNode(nodetest.Ctx(t, 5*time.Second), 2, tchsmpb.BodyType_BODY_TYPE_DELETE_KEY, &tchsmpb.DeleteKey{KeyId: id}); nodetest.Code(err) != tchsmpb.Error_UNAUTHORIZED {
		t.Fatalf("a client's rpc DeleteKey: %v, want UNAUTHORIZED", err)
	}
	op, err := c.Peer("dealer").CallNode(nodetest.Ctx(t, 5*time.Second), 2, tchsmpb.BodyType_BODY_TYPE_DELETE_KEY, &tchsmpb.DeleteKey{KeyId: id})
	if err != nil || !op.Message.(*tchsmpb.DeleteKeyAck).Ok {
		t.Fatalf("the dealer's rpc DeleteKey: %v", err)
	}
}

// A node made to lie (ShareHook) is caught by its proof.
func TestLyingNodeCaught(t *testing.T) {
	c := nodetest.New(t, nodetest.Options{K: 2, N: 3})
	c.StartNode(1, node.Options{})
	c.StartNode(2, node.Options{ShareHook: func(rep *scheme.Reply) {
		x := new(big.Int).SetBytes(rep.Payload)
		rep.Payload = x.Add(x, big.NewInt(1)).Bytes()
	}})
	c.StartNode(3, node.Options{})
	d := c.Dealer(dealer.Options{})
	signed, _, _, err := d.GenerateKey(nodetest.Ctx(t, 60*time.Second), 1024, 0, "liar", nil)
	if err != nil {
		t.Fatal(err)
	}
	rec, pk := nodetest.RecordKey(t, c.Manifest, signed)
	client := c.Peer("client-1")
	payload := []byte("abc")
	em, _ := shoup.EncodePayload(pk.Size(), payload)
	op, err := client.CallNode(nodetest.Ctx(t, 5*time.Second), 2, tchsmpb.BodyType_BODY_TYPE_PROOF_REQUEST, &tchsmpb.ProofRequest{KeyId: rec.KeyId, Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	p := op.Message.(*tchsmpb.Proof)
	err = shoup.VerifyShare(pk, em, &shoup.SigShare{Index: int(p.Index), X: new(big.Int).SetBytes(p.X)},
		&shoup.Proof{C: new(big.Int).SetBytes(p.Proof.C), Z: new(big.Int).SetBytes(p.Proof.Z)})
	if !errors.Is(err, shoup.ErrBadShare) {
		t.Fatalf("lying share passed its proof: %v", err)
	}
	nodetest.SignWith(t, client, pk, rec.KeyId, []byte("honest"), 1, 3)
}

// A request captured before a node restarts is not served again by the restarted node (its
// replay cache is new; it refuses requests issued before its start).
func TestReplayAfterRestart(t *testing.T) {
	c := nodetest.NewInMemory(t, nodetest.Options{K: 2, N: 3})
	c.StartNode(1, node.Options{})
	client := c.Peer("client-1")
	raw, _, err := client.Sealer.Seal(tchsmpb.BodyType_BODY_TYPE_LIST_KEYS, &tchsmpb.ListKeys{}, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CallRaw(nodetest.Ctx(t, 5*time.Second), "node-1", transport.Node("node-1"), raw); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if _, err := client.CallRaw(nodetest.Ctx(t, 5*time.Second), "node-1", transport.Node("node-1"), raw); !errors.Is(err, transport.ErrRemote) ||
		!strings.Contains(err.Error(), trust.ErrReplay.Error()) {
		t.Fatalf("replay before the restart: %v", err)
	}
	c.StopNode(1)
	time.Sleep(trust.DefaultSkew + 100*time.Millisecond) // the node's start is then past the request's issue time + skew
	c.StartNode(1, node.Options{})
	_, err = client.CallRaw(nodetest.Ctx(t, 5*time.Second), "node-1", transport.Node("node-1"), raw)
	if !errors.Is(err, transport.ErrRemote) || !strings.Contains(err.Error(), trust.ErrExpired.Error()) {
		t.Fatalf("replay after the restart: %v, want a rejection (expired)", err)
	}
	// A fresh request is served.
	if _, err := client.CallNode(nodetest.Ctx(t, 5*time.Second), 1, tchsmpb.BodyType_BODY_TYPE_LIST_KEYS, &tchsmpb.ListKeys{}); err != nil {
		t.Fatalf("a fresh request after the restart: %v", err)
	}
}
