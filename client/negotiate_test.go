package client

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/protocol"
	"github.com/tchsm/tchsm/node"
)

// nodeRequests is node i's tchsm_node_requests_total of one body type and result ("" for any).
func (mc *memCluster) nodeRequests(t *testing.T, i int, typ, result string) int {
	t.Helper()
	mfs, err := mc.metrics[i-1].Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, mf := range mfs {
		if mf.GetName() != "tchsm_node_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var gotType, gotResult string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "type":
					gotType = l.GetValue()
				case "result":
					gotResult = l.GetValue()
				}
			}
			if gotType == typ && (result == "" || gotResult == result) {
				total += int(m.GetCounter().GetValue())
			}
		}
	}
	return total
}

// restartWithout restarts node i without the features given (as a node of a release without
// them), with fresh metrics.
func (mc *memCluster) restartWithout(t *testing.T, i int, features ...string) {
	t.Helper()
	mc.StopNode(i)
	mc.metrics[i-1] = prometheus.NewRegistry()
	mc.StartNode(i, node.Options{WithoutFeatures: features, Registerer: mc.metrics[i-1]})
}

// signLoad makes n signatures at once and fails the test on any error.
func (mc *memCluster) signLoad(t *testing.T, c *Client, n int, tag string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- mc.sign(t, c, fmt.Sprint(tag, i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a signature failed: %v", err)
		}
	}
}

// waitPeer waits until c knows node id's protocol and has(feature) is want.
func waitPeer(t *testing.T, c *Client, id, feature string, want bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, ok := c.PeerProtocol(id)
		if ok && p.Has(feature) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("client's view of %s: %+v (known %v); want %s %v", id, p, ok, feature, want)
		}
		c.peerHas(id, feature) // starts a probe when none is known
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMemBatchesNegotiated: node 3 is run as a release without batches (it neither advertises
// nor serves SignBatch). Under load the client batches to nodes 1 and 2, which advertise it, and
// sends node 3 plain SignRequests only: not one batch reaches it, so it never has to refuse
// one, and no signature fails.
func TestMemBatchesNegotiated(t *testing.T) {
	mc := startMem(t, 2, 3, nil, nil)
	mc.restartWithout(t, 3, protocol.SignBatch)
	mc.dealRSA(t, "negotiated")
	c := mc.client(t, func(cfg *config.Client) { cfg.BatchWindow = 1 })
	if err := mc.sign(t, c, "first"); err != nil {
		t.Fatal(err)
	}
	waitPeer(t, c, "node-1", protocol.SignBatch, true)
	waitPeer(t, c, "node-2", protocol.SignBatch, true)
	waitPeer(t, c, "node-3", protocol.SignBatch, false)
	mc.signLoad(t, c, 96, "load ")
	if b := mc.nodeRequests(t, 3, "sign_batch", ""); b != 0 {
		t.Fatalf("node 3 does not advertise batches and was sent %d", b)
	}
	if r := mc.nodeRequests(t, 3, "sign_request", "ok"); r == 0 {
		t.Fatal("node 3 signed nothing: it should be asked with plain SignRequests")
	}
	if b := mc.nodeRequests(t, 1, "sign_batch", "ok") + mc.nodeRequests(t, 2, "sign_batch", "ok"); b == 0 {
		t.Fatal("no batches to nodes 1 and 2, which advertise them")
	}
}

// TestMemBatchRefusedFallsBack: the client learnt that node 3 serves batches; node 3 is then
// replaced, behind the same queue and before the client notices, by a node without them (a
// rollback to an older release). Its first batches are answered UNSUPPORTED_BODY_TYPE: each of
// their requests is sent again on its own, no signature fails, and the client forgets node 3's
// features, learns them again, and sends it no more batches.
func TestMemBatchRefusedFallsBack(t *testing.T) {
	mc := newMemCluster(t, 2, 3, nil)
	c := mc.client(t, func(cfg *config.Client) { cfg.BatchWindow = 1 })
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitPeer(t, c, "node-3", protocol.SignBatch, true)
	mc.restartWithout(t, 3, protocol.SignBatch)
	// Node 3's stop went unseen: the client still believes it batches.
	if p, ok := c.PeerProtocol("node-3"); !ok || !p.Has(protocol.SignBatch) {
		t.Fatalf("client forgot node 3's features before the test: %+v %v", p, ok)
	}
	for round := 0; mc.nodeRequests(t, 3, "sign_batch", "unsupported_body_type") == 0; round++ {
		if round == 10 {
			t.Fatal("no batch reached node 3 in 10 rounds of load")
		}
		mc.signLoad(t, c, 64, fmt.Sprint("round ", round, " "))
	}
	waitPeer(t, c, "node-3", protocol.SignBatch, false)
	refused := mc.nodeRequests(t, 3, "sign_batch", "")
	mc.signLoad(t, c, 64, "after ")
	if b := mc.nodeRequests(t, 3, "sign_batch", ""); b != refused {
		t.Fatalf("%d more batches to node 3 after it refused them", b-refused)
	}
}
