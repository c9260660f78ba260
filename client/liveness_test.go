package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/transport/memory"
	"github.com/tchsm/tchsm/node"
	"github.com/tchsm/tchsm/scheme"
)

// Tests of the liveness rule (liveness.go) over the in-memory network: with fewer than k nodes
// answering, signatures fail within the window instead of at their deadline, name the nodes,
// and resume once k answer again; a broker outage is waited out, not taken for dead nodes;
// the healthy path sends no probe.

// Bounds: the first failure has to find out (a hedge delay, then the 1 s window); later ones
// know. Generous for a loaded 2-core machine; the measured times are logged.
const (
	memFirstFail = 3 * time.Second
	memKnownFail = 500 * time.Millisecond
	memResume    = 3 * time.Second
)

// failsFast signs five times with sign and checks that each fails with ErrNotEnoughNodes,
// the first within memFirstFail, the others within memKnownFail, naming up as answering and
// down as silent.
func failsFast(t *testing.T, what string, sign func(msg string) error, up, down []string) {
	t.Helper()
	for j := range 5 {
		t0 := time.Now()
		err := sign(fmt.Sprintf("%s %d", what, j))
		took := time.Since(t0)
		if !errors.Is(err, ErrNotEnoughNodes) {
			t.Fatalf("%s: signature %d: %v after %v, want ErrNotEnoughNodes", what, j, err, took)
		}
		bound := memKnownFail
		if j == 0 {
			bound = memFirstFail
			t.Logf("%s: %v", what, err)
		}
		t.Logf("%s: signature %d failed after %v", what, j, took.Round(time.Millisecond))
		if took > bound {
			t.Errorf("%s: signature %d failed after %v, want < %v (the deadline is 30 s)", what, j, took, bound)
		}
		answering, silent, ok := strings.Cut(err.Error(), "no answer from ")
		if !ok || !strings.Contains(answering, "answering: ") {
			t.Fatalf("%s: the error does not name the nodes: %v", what, err)
		}
		for _, id := range up {
			if !strings.Contains(answering, id) {
				t.Errorf("%s: %s is not named as answering: %v", what, id, err)
			}
		}
		for _, id := range down {
			if !strings.Contains(silent, id) || strings.Contains(answering, id) {
				t.Errorf("%s: %s is not named as silent: %v", what, id, err)
			}
		}
	}
}

// resumes signs until sign succeeds, within memResume; with first, the first try must (the
// nodes known down are asked again before a signature fails fast: Client.recheck).
func resumes(t *testing.T, what string, sign func(msg string) error, first bool) {
	t.Helper()
	back := time.Now()
	for try := 0; ; try++ {
		err := sign(what)
		if err == nil {
			t.Logf("%s: signs again %v after the nodes were back (try %d)", what, time.Since(back).Round(time.Millisecond), try)
			return
		}
		if first {
			t.Fatalf("%s: the first signature once the nodes are back: %v", what, err)
		}
		if time.Since(back) > memResume {
			t.Fatalf("%s: still failing %v after the nodes were back: %v", what, time.Since(back), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var (
	upFirst  = []string{"node-1", "node-2"}
	downLast = []string{"node-3", "node-4", "node-5"}
)

func hang(mc *memCluster, ids []string, on bool) {
	for _, id := range ids {
		f := memory.Fault{}
		if on {
			f.Hang = true
		}
		mc.Net.SetFault(transport.Node(id), f)
	}
}

// fastFailureScenario warms up with 20 good signatures (no probe may be sent), then hangs
// three of five nodes and stops three: each time sign must fail fast naming them, and resume
// once they are back (exact: whether resumes demands the first signature to succeed).
func fastFailureScenario(t *testing.T, mc *memCluster, sign func(string) error, exact bool) (dealt int) {
	t.Helper()
	dealt = mc.requests(t, "health_request")
	for i := range 20 {
		if err := sign(fmt.Sprint("warm ", i)); err != nil {
			t.Fatal(err)
		}
	}
	// The healthy path probes nothing (the dealer's polls while it dealt came before).
	if n := mc.requests(t, "health_request"); n != dealt {
		t.Fatalf("%d health requests during 20 good signatures", n-dealt)
	}

	// Three nodes hang: alive for the network, silent.
	hang(mc, downLast, true)
	failsFast(t, "hung", sign, upFirst, downLast)
	hang(mc, downLast, false)
	resumes(t, "unhung", sign, exact)

	// Three nodes stopped: nobody serves their address (ErrNoRoute at once).
	for i := 3; i <= 5; i++ {
		mc.StopNode(i)
	}
	failsFast(t, "stopped", sign, upFirst, downLast)
	for i := 3; i <= 5; i++ {
		mc.StartNode(i, node.Options{})
	}
	resumes(t, "restarted", sign, exact)
	return dealt
}

func TestMemFastFailureRSA(t *testing.T) {
	mc := newMemCluster(t, 3, 5, nil)
	c := mc.client(t, nil)
	sign := func(msg string) error { return mc.sign(t, c, msg) }
	dealt := fastFailureScenario(t, mc, sign, true)
	for i := range 10 {
		if err := sign(fmt.Sprint("after ", i)); err != nil {
			t.Fatal(err)
		}
	}
	// The probes went to the nodes, under the label the healthy check counted (nodes 1 and 2
	// kept their metrics; the restarted ones have none).
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := mc.requests(t, "health_request"); n < dealt+2 {
		t.Fatalf("%d health requests counted after probes and a status", n)
	}
}

// The same for Ed25519; after the restart the nodes' nonces are gone: stale commitments,
// fetched again, so resumes does not demand the first signature.
func TestMemFastFailureEd25519(t *testing.T) {
	mc, c := newEdCluster(t, 3, 5, nil)
	fastFailureScenario(t, mc, func(msg string) error { return mc.signEd(t, c, msg) }, false)
}

// TestMemFewerKnownDownStillSigns: two of five nodes down (n−k) is not fewer than k: the
// signatures go on, without waiting for the silent ones once they are known.
func TestMemFewerKnownDownStillSigns(t *testing.T) {
	mc := newMemCluster(t, 3, 5, nil)
	c := mc.client(t, nil)
	hang(mc, []string{"node-4", "node-5"}, true)
	t0 := time.Now()
	for i := range 20 {
		if err := mc.sign(t, c, fmt.Sprint("two hung ", i)); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("20 signatures with two of five nodes hung: %v", time.Since(t0).Round(time.Millisecond))
	if took := time.Since(t0); took > 10*time.Second {
		t.Fatalf("20 signatures took %v", took)
	}
}

// TestMemBrokerFailoverSigns: a broker outage of 2 s is waited out. Signatures in flight and
// signatures started during it succeed once it is back, RSA and Ed25519 alike, even when the
// client knew of nodes down before the outage and they came back during it (what the client
// knew belongs to the connection it learnt it on), and when three nodes come back 1.5 s after
// the broker (reconnectGrace).
func TestMemBrokerFailoverSigns(t *testing.T) {
	mc := startMem(t, 3, 5, nil, nil)
	cEd := mc.generateEd(t)
	edKey := mc.key
	mc.dealRSA(t, "rsa")
	rsaKey := mc.key
	c := mc.client(t, nil)
	signBoth := func(msg string) error {
		mc.key = rsaKey
		if err := mc.sign(t, c, msg); err != nil {
			return fmt.Errorf("rsa: %w", err)
		}
		mc.key = edKey
		if err := mc.signEd(t, cEd, msg); err != nil {
			return fmt.Errorf("ed25519: %w", err)
		}
		return nil
	}
	for i := range 5 {
		if err := signBoth(fmt.Sprint("warm ", i)); err != nil {
			t.Fatal(err)
		}
	}

	// The client knows three nodes are down, then the broker goes away for 2 s and the nodes
	// come back meanwhile.
	hang(mc, downLast, true)
	mc.key = rsaKey
	if err := mc.sign(t, c, "hung"); !errors.Is(err, ErrNotEnoughNodes) {
		t.Fatalf("with three nodes hung: %v", err)
	}
	mc.key = edKey
	if err := mc.signEd(t, cEd, "hung"); !errors.Is(err, ErrNotEnoughNodes) {
		t.Fatalf("with three nodes hung: %v", err)
	}
	mc.Net.SetDown(true)
	hang(mc, downLast, false)
	type result struct {
		what string
		err  error
		end  time.Time
	}
	res := make(chan result, 4)
	start := func(what string, f func() error) {
		go func() {
			err := f()
			res <- result{what, err, time.Now()}
		}()
	}
	ctxSign := func(cl *Client, id string, ed bool, msg string) func() error {
		return func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			mech := scheme.SHA256RSAPKCS
			if ed {
				mech = scheme.EDDSA
			}
			_, err := cl.Sign(ctx, id, mech, []byte(msg))
			return err
		}
	}
	start("rsa at the start", ctxSign(c, rsaKey.ID, false, "outage 1"))
	start("ed25519 at the start", ctxSign(cEd, edKey.ID, true, "outage 1"))
	time.Sleep(time.Second)
	start("rsa in the middle", ctxSign(c, rsaKey.ID, false, "outage 2"))
	start("ed25519 in the middle", ctxSign(cEd, edKey.ID, true, "outage 2"))
	time.Sleep(time.Second)
	up := time.Now()
	mc.Net.SetDown(false)
	for range 4 {
		r := <-res
		if r.err != nil {
			t.Errorf("%s of a 2 s broker outage: %v", r.what, r.err)
		} else {
			t.Logf("%s of a 2 s broker outage: signed %v after the broker was back", r.what, r.end.Sub(up).Round(time.Millisecond))
		}
	}
	if err := signBoth("after"); err != nil {
		t.Fatal(err)
	}

	// Again, and three nodes come back 1.5 s after the broker (their reconnection backoff):
	// until then, requests to them fail at once (no route), as they do on a real broker.
	mc.Net.SetDown(true)
	noRoute(mc, downLast, true)
	start("rsa at the start", ctxSign(c, rsaKey.ID, false, "outage 3"))
	start("ed25519 at the start", ctxSign(cEd, edKey.ID, true, "outage 3"))
	time.Sleep(time.Second)
	start("rsa in the middle", ctxSign(c, rsaKey.ID, false, "outage 4"))
	start("ed25519 in the middle", ctxSign(cEd, edKey.ID, true, "outage 4"))
	time.Sleep(time.Second)
	mc.Net.SetDown(false)
	time.Sleep(1500 * time.Millisecond)
	back := time.Now()
	noRoute(mc, downLast, false)
	for range 4 {
		r := <-res
		if r.err != nil {
			t.Errorf("%s of a 2 s broker outage, three nodes back 1.5 s after it: %v", r.what, r.err)
		} else {
			t.Logf("%s of a 2 s broker outage, three nodes back 1.5 s after it: signed %v after the nodes", r.what, r.end.Sub(back).Round(time.Millisecond))
		}
	}
}

// noRoute makes requests to ids fail at once as to nodes away from the broker (on) or not.
func noRoute(mc *memCluster, ids []string, on bool) {
	for _, id := range ids {
		f := memory.Fault{}
		if on {
			f.Err = transport.ErrNoRoute
		}
		mc.Net.SetFault(transport.Node(id), f)
	}
}
