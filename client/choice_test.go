package client

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/trust"
	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/shoup"
	"github.com/tchsm/tchsm/scheme/shoup/keygen"
)

// The logic that decides which node to ask and when a message may leave, tested without a
// broker: a batcher with a fake deliver, a client with node states only.

func testBatcher(window int, overdue time.Duration, deliver func([]*shareAsk)) *batcher {
	return &batcher{node: trust.Member{ID: "node-1", Index: 1}, max: 16, window: window,
		deliver: func(asks []*shareAsk) bool { deliver(asks); return true }, overdueAfter: func() time.Duration { return overdue }}
}

func answer(asks []*shareAsk) {
	for _, a := range asks {
		a.done <- shareResult{rep: scheme.Reply{Payload: []byte{1}}}
	}
}

// A message whose answer never comes (a request lost in a queue nobody consumed, a node that
// stopped) must not hold the node's window: with batch_window 1 the requests behind it leave
// once it is overdue, and are answered.
func TestOverdueMessageReleasesWindow(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	b := testBatcher(1, 50*time.Millisecond, func(asks []*shareAsk) {
		if calls.Add(1) == 1 {
			<-release // stuck
		}
		answer(asks)
	})
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go b.ask(ctx, "k", nil)
	waitUntil(t, func() bool { return calls.Load() == 1 })

	start := time.Now()
	for i := range 5 {
		if _, err := b.ask(ctx, "k", nil); err != nil {
			t.Fatalf("request %d behind a stuck message: %v", i, err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("requests behind a stuck message took %v", d)
	}
	if b.overdue.Load() != 1 {
		t.Fatalf("%d overdue messages, want the stuck one", b.overdue.Load())
	}
}

// A node that stopped answering holds at most 2 × window messages: window on time, window
// overdue; the rest wait in the batcher.
func TestOverdueMessagesBounded(t *testing.T) {
	for _, window := range []int{1, 2} {
		t.Run(fmt.Sprint(window), func(t *testing.T) {
			release := make(chan struct{})
			var inflight, most atomic.Int32
			b := testBatcher(window, 20*time.Millisecond, func(asks []*shareAsk) {
				n := inflight.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				<-release
				inflight.Add(-1)
				answer(asks)
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			for range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := b.ask(ctx, "k", nil); err != nil {
						t.Error(err)
					}
				}()
				time.Sleep(5 * time.Millisecond)
			}
			want := int32(2 * window)
			waitUntil(t, func() bool { return inflight.Load() == want })
			time.Sleep(200 * time.Millisecond) // ten more overdue periods: still no more
			if m := most.Load(); m != want {
				t.Fatalf("%d messages in flight at most, want %d", m, want)
			}
			close(release)
			wg.Wait() // every request answered once the node answers again
		})
	}
}

// While a node has an overdue message, signings ask the other nodes first.
func TestOrderPutsOverdueNodeLast(t *testing.T) {
	c := testClient(5)
	c.batchers["node-2"].overdue.Store(1)
	for range 100 {
		if o := c.order(); o[len(o)-1].ID != "node-2" {
			t.Fatalf("order %v: the node with an overdue message is not last", ids(o))
		}
	}
	c.batchers["node-2"].overdue.Store(0)
	last := 0
	for range 200 {
		if o := c.order(); o[len(o)-1].ID == "node-2" {
			last++
		}
	}
	if last > 100 {
		t.Fatalf("node-2 still last in %d of 200 orders once its message was answered", last)
	}
}

// Equal nodes share the load; a node that looks slow is still asked at least once every
// probeEvery signatures.
func TestOrderSpreadsLoad(t *testing.T) {
	c := testClient(5)
	for id, st := range c.nodes {
		st.shares, st.ewma, st.last = 10, 20*time.Millisecond, 20*time.Millisecond
		if id == "node-5" {
			st.ewma, st.last = 80*time.Millisecond, 80*time.Millisecond
		}
	}
	const k, signatures = 3, 800
	asked := map[string]int{}
	sinceAsked := 0
	for range signatures {
		o := c.order()
		slowAsked := false
		for _, n := range o[:k] {
			c.track(n.ID)()
			asked[n.ID]++
			slowAsked = slowAsked || n.ID == "node-5"
		}
		if slowAsked {
			sinceAsked = 0
		} else if sinceAsked++; sinceAsked > 3*probeEvery {
			t.Fatalf("the slow node was not asked for %d signatures: %v", sinceAsked, asked)
		}
	}
	for i := 1; i <= 4; i++ {
		// Each equal node is asked in about 3/4 of the signatures the slow one leaves.
		if n := asked[fmt.Sprintf("node-%d", i)]; n < signatures/2 {
			t.Errorf("node-%d asked %d times of %d: %v", i, n, signatures, asked)
		}
	}
	if n := asked["node-5"]; n < signatures/(3*probeEvery) {
		t.Errorf("slow node asked %d times of %d: %v", n, signatures, asked)
	}
}

func testClient(n int) *Client {
	c := &Client{m: &trust.Manifest{}, nodes: map[string]*nodeState{}, batchers: map[string]*batcher{}}
	for i := 1; i <= n; i++ {
		m := trust.Member{ID: fmt.Sprintf("node-%d", i), Role: trust.RoleNode, Index: i}
		c.m.Nodes = append(c.m.Nodes, m)
		c.nodes[m.ID] = &nodeState{member: m}
		c.batchers[m.ID] = &batcher{node: m}
	}
	c.live = newLiveness(c)
	return c
}

func ids(ms []trust.Member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func waitUntil(t *testing.T, f func() bool) {
	t.Helper()
	end := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(end) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// The stall behind issue 10, without a broker: three nodes fail at once (their requests were
// lost with a connection), the other two answer later, and every node has been asked. The
// shares that arrive must not leave the signing waiting for nothing until its deadline: it asks
// the failed nodes again.
func TestSignAsksAgainAfterEarlyFailures(t *testing.T) {
	const K, N = 3, 5
	c, pk, shares := testSigner(t, K, N)
	var calls [N + 1]atomic.Int32
	for i := 1; i <= N; i++ {
		b := c.batchers[fmt.Sprintf("node-%d", i)]
		b.deliver = func(asks []*shareAsk) bool {
			n := calls[i].Add(1)
			for _, a := range asks {
				switch {
				case (i == 1 || i == 4 || i == 5) && n == 1:
					a.done <- shareResult{err: errors.New("transport: connection lost while waiting for the reply")}
					continue
				case i == 2 || i == 3:
					time.Sleep(50 * time.Millisecond)
				}
				em, err := shoup.EncodePayload(pk.Size(), a.payload)
				if err != nil {
					t.Error(err)
				}
				ss, err := shoup.SignShare(pk, shares[i-1], em)
				if err != nil {
					t.Error(err)
				}
				a.done <- shareResult{rep: scheme.Reply{Payload: ss.X.Bytes()}}
			}
			return true
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	msg := []byte("signed after a broker restart")
	sig, err := c.Sign(ctx, "00112233445566778899aabbccddeeff", scheme.SHA256RSAPKCS, msg)
	if err != nil {
		t.Fatalf("Sign after three early failures: %v (after %v)", err, time.Since(start))
	}
	h := sha256.Sum256(msg)
	if err := rsa.VerifyPKCS1v15(pk.RSA(), crypto.SHA256, h[:], sig); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Sign took %v", d)
	}
}

var signerKey struct {
	once sync.Once
	key  *shoup.Key
	err  error
}

// testSigner returns a client whose nodes are fake batchers (set deliver) for a dealt k-of-n key
// "00112233445566778899aabbccddeeff", and the key's shares by index-1.
func testSigner(t *testing.T, k, n int) (*Client, *shoup.PublicKey, []*shoup.KeyShare) {
	t.Helper()
	signerKey.once.Do(func() {
		signerKey.key, signerKey.err = keygen.GenerateKey(context.Background(), rand.Reader, 1024, 0, nil)
	})
	if signerKey.err != nil {
		t.Fatal(signerKey.err)
	}
	pk, shares, err := shoup.Deal(rand.Reader, signerKey.key, k, n)
	if err != nil {
		t.Fatal(err)
	}
	c := testClient(n)
	c.log = slog.New(slog.DiscardHandler)
	c.keys = map[string]*key{"00112233445566778899aabbccddeeff": {info: KeyInfo{ID: "00112233445566778899aabbccddeeff",
		Algorithm: scheme.ShoupRSA, K: k, L: n}, scheme: shoup.Scheme{}, pk: pk}}
	for _, m := range c.m.Nodes {
		b := c.batchers[m.ID]
		b.max, b.window, b.overdueAfter = 16, 1, c.overdueAfter
	}
	return c, pk, shares
}

// The adaptive window: one message at a time while the node's round trips are well above its
// floor (a saturated node: requests that wait leave together), the configured window otherwise.
func TestAdaptiveWindowRule(t *testing.T) {
	b := testBatcher(2, time.Second, answer)
	b.adaptive = true
	now := time.Unix(1000, 0)
	if w := b.windowNow(); w != 2 {
		t.Fatalf("no round trip yet: window %d, want 2", w)
	}
	b.observe(2*time.Millisecond, 1, now)
	if w := b.windowNow(); w != 2 {
		t.Fatalf("at the floor: window %d, want 2", w)
	}
	b.observe(5*time.Millisecond, 3, now) // a batch, 2.5× the floor: not saturated
	if w := b.windowNow(); w != 2 {
		t.Fatalf("2.5× the floor: window %d, want 2", w)
	}
	b.observe(20*time.Millisecond, 4, now)
	if w := b.windowNow(); w != 1 {
		t.Fatalf("10× the floor: window %d, want 1", w)
	}
	if b.floor != 2*time.Millisecond {
		t.Fatalf("a batch's round trip moved the floor to %v", b.floor)
	}
	// The floor forgets: 20 s later (two half-lives) it is 8 ms, and a 20 ms round trip is no
	// longer saturation.
	b.observe(20*time.Millisecond, 4, now.Add(2*floorHalfLife))
	if b.floor < 7900*time.Microsecond || b.floor > 8100*time.Microsecond {
		t.Fatalf("floor after two half-lives: %v, want 8 ms", b.floor)
	}
	if w := b.windowNow(); w != 2 {
		t.Fatalf("after the floor drifted up: window %d, want 2", w)
	}
	b.observe(time.Millisecond, 1, now.Add(2*floorHalfLife))
	if b.floor != time.Millisecond {
		t.Fatalf("a faster lone request: floor %v, want 1 ms", b.floor)
	}
	fixed := testBatcher(2, time.Second, answer) // batch_window set: never adaptive
	fixed.observe(time.Millisecond, 1, now)
	fixed.observe(time.Second, 1, now)
	if w := fixed.windowNow(); w != 2 {
		t.Fatalf("fixed window: %d, want 2", w)
	}
}

// A saturated node gets one message at a time, each carrying what queued behind the previous
// one; every request is answered.
func TestAdaptiveWindowBatchesOnSaturatedNode(t *testing.T) {
	var inflight, most, messages, slow atomic.Int32
	b := testBatcher(2, 10*time.Second, func(asks []*shareAsk) {
		n := inflight.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		messages.Add(1)
		if slow.Load() == 1 {
			time.Sleep(20 * time.Millisecond)
		} else {
			time.Sleep(time.Millisecond)
		}
		inflight.Add(-1)
		answer(asks)
	})
	b.adaptive = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 { // an idle node: the floor (about 1 ms)
		if _, err := b.ask(ctx, "k", nil); err != nil {
			t.Fatal(err)
		}
	}
	slow.Store(1)
	if _, err := b.ask(ctx, "k", nil); err != nil { // one slow round trip: saturated now
		t.Fatal(err)
	}
	most.Store(0)
	messages.Store(0)
	var wg sync.WaitGroup
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := b.ask(ctx, "k", nil); err != nil {
				t.Error(err)
			}
		}()
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	if m := most.Load(); m != 1 {
		t.Errorf("%d messages in flight at once to a saturated node, want 1", m)
	}
	if n := messages.Load(); n > 20 {
		t.Errorf("40 requests took %d messages: they did not wait to leave together", n)
	}
}
