package rabbitmq

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/tchsm/tchsm/internal/transport"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestCallRoundTripConcurrent(t *testing.T) {
	url := testVhost(t)
	srv := dialTest(t, url, "server")
	cli := dialTest(t, url, "client")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	q, err := srv.DeclareNode(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if q.RPC != "tchsm.test.node.n1.rpc" || q.Control != "tchsm.test.node.n1.inbox" || q.Dead != "tchsm.test.node.n1.inbox.dead" {
		t.Fatalf("queue names %+v", q)
	}
	serveEcho(t, srv, q.RPC, 4)

	got, err := cli.Call(ctx, q.RPC, []byte("hello"))
	if err != nil || string(got) != "hello" {
		t.Fatalf("Call = %q, %v", got, err)
	}
	// Empty body and a large one survive.
	if got, err := cli.Call(ctx, q.RPC, nil); err != nil || len(got) != 0 {
		t.Fatalf("empty Call = %q, %v", got, err)
	}
	big := bytes.Repeat([]byte{0xa5}, 1<<20)
	if got, err := cli.Call(ctx, q.RPC, big); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("1 MiB Call: len %d, %v", len(got), err)
	}

	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Appendf(nil, "request %d", i)
			got, err := cli.Call(ctx, q.RPC, body)
			if err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, body) {
				errs <- fmt.Errorf("call %d got reply %q", i, got)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCallNeedsDeadline(t *testing.T) {
	url := testVhost(t)
	c := dialTest(t, url, "client")
	if _, err := c.Call(context.Background(), "x", nil); !errors.Is(err, transport.ErrNoDeadline) {
		t.Fatalf("Call without deadline: %v", err)
	}
}

func TestCallUnknownQueueFailsFast(t *testing.T) {
	url := testVhost(t)
	c := dialTest(t, url, "client")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.Call(ctx, c.NodeRPCQueue("nobody"), []byte("x"))
	if !errors.Is(err, transport.ErrNoRoute) {
		t.Fatalf("Call to missing queue: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Call to missing queue took %v", d)
	}
	// The same for durable publishing.
	err = c.PublishDurable(ctx, c.NodeControlQueue("nobody"), []byte("x"))
	if !errors.Is(err, transport.ErrNoRoute) {
		t.Fatalf("PublishDurable to missing queue: %v", err)
	}
	// The Conn is still usable afterwards.
	q, err := c.DeclareNode(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PublishDurable(ctx, q.Control, []byte("y")); err != nil {
		t.Fatalf("PublishDurable after a return: %v", err)
	}
}

func TestRemoteErrorAndPanic(t *testing.T) {
	url := testVhost(t)
	c := dialTest(t, url, "both")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q := c.DealerRPCQueue()
	sctx, scancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- c.Serve(sctx, q, 1, func(ctx context.Context, d transport.Delivery) ([]byte, error) {
			switch string(d.Body) {
			case "panic":
				panic("boom")
			case "fail":
				return nil, errors.New("no such key")
			}
			return []byte("ok"), nil
		})
	}()
	if err := c.WaitConsuming(ctx, q); err != nil {
		t.Fatal(err)
	}
	_, err := c.Call(ctx, q, []byte("fail"))
	var re *transport.RemoteError
	if !errors.As(err, &re) || re.Msg != "no such key" || !errors.Is(err, transport.ErrRemote) {
		t.Fatalf("Call to failing handler: %v", err)
	}
	_, err = c.Call(ctx, q, []byte("panic"))
	if !errors.Is(err, transport.ErrRemote) || !strings.Contains(err.Error(), "panic") {
		t.Fatalf("Call to panicking handler: %v", err)
	}
	if got, err := c.Call(ctx, q, []byte("x")); err != nil || string(got) != "ok" {
		t.Fatalf("server did not survive the panic: %q %v", got, err)
	}
	scancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after ctx cancel: %v", err)
	}
}

// A reply that arrives after the caller's deadline is dropped, and the next
// call gets its own reply, not the stale one.
func TestLateReplyDropped(t *testing.T) {
	url := testVhost(t)
	c := dialTest(t, url, "client")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	q, err := c.DeclareNode(ctx, "slow")
	if err != nil {
		t.Fatal(err)
	}

	// A raw server that answers the first request only after its deadline
	// (bypassing Serve, which never sends late replies).
	raw, ch := rawChannel(t, url)
	if err := c.declareQueue(raw, q.RPC, KindRPC); err != nil {
		t.Fatal(err)
	}
	replies := ReplyExchange(c.cfg.ClusterID)
	ds, err := ch.Consume(q.RPC, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	lateSent := make(chan struct{})
	go func() {
		first := true
		for d := range ds {
			if first {
				first = false
				time.Sleep(700 * time.Millisecond)
				_ = ch.Publish(replies, d.ReplyTo, false, false, amqp.Publishing{CorrelationId: d.CorrelationId, Body: []byte("late")})
				close(lateSent)
				continue
			}
			_ = ch.Publish(replies, d.ReplyTo, false, false, amqp.Publishing{CorrelationId: d.CorrelationId, Body: append([]byte("re:"), d.Body...)})
		}
	}()

	cctx, ccancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = c.Call(cctx, q.RPC, []byte("one"))
	ccancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow Call: %v", err)
	}
	<-lateSent
	got, err := c.Call(ctx, q.RPC, []byte("two"))
	if err != nil || string(got) != "re:two" {
		t.Fatalf("Call after a late reply = %q, %v", got, err)
	}
	raw.Close()

	// Serve side: the handler sees the deadline and its late reply is not sent.
	var handled atomic.Int32
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	go c.Serve(sctx, q.RPC, 1, func(hctx context.Context, d transport.Delivery) ([]byte, error) {
		handled.Add(1)
		if dl, ok := hctx.Deadline(); !ok || dl.After(time.Now().Add(time.Second)) {
			t.Errorf("handler deadline %v, %v", dl, ok)
		}
		<-hctx.Done()
		time.Sleep(50 * time.Millisecond)
		return []byte("too late"), nil
	})
	if err := c.WaitConsuming(ctx, q.RPC); err != nil {
		t.Fatal(err)
	}
	cctx, ccancel = context.WithTimeout(ctx, 400*time.Millisecond)
	_, err = c.Call(cctx, q.RPC, []byte("three"))
	ccancel()
	if !errors.Is(err, context.DeadlineExceeded) || handled.Load() != 1 {
		t.Fatalf("Call to a handler that overruns: %v (handled %d)", err, handled.Load())
	}
}

// A request whose deadline passed while it waited behind another (the server
// busy) is never handled.
func TestExpiredRequestNotDelivered(t *testing.T) {
	url := testVhost(t)
	c := dialTest(t, url, "client")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	q := c.NodeRPCQueue("busy")
	var stale atomic.Int32
	release := make(chan struct{})
	sctx, scancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- c.Serve(sctx, q, 1, func(ctx context.Context, d transport.Delivery) ([]byte, error) {
			switch string(d.Body) {
			case "stale":
				stale.Add(1)
			case "block":
				<-release
			}
			return d.Body, nil
		})
	}()
	if err := c.WaitConsuming(ctx, q); err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	go func() {
		_, err := c.Call(ctx, q, []byte("block"))
		blocked <- err
	}()
	time.Sleep(100 * time.Millisecond) // the one worker is busy with "block"
	cctx, ccancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := c.Call(cctx, q, []byte("stale"))
	ccancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Call to a busy server: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	close(release)
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	if r, err := c.Call(ctx, q, []byte("fresh")); err != nil || string(r) != "fresh" {
		t.Fatalf("fresh Call = %q, %v", r, err)
	}
	scancel()
	<-done
	if stale.Load() != 0 {
		t.Fatalf("expired request handled %d times", stale.Load())
	}
}

// A request for a server that is not consuming (not started yet, stopped, its
// connection gone, its owner's peers redeclaring the node's topology) fails at
// once with transport.ErrNoRoute instead of waiting in a queue nobody reads until its
// deadline: the stall of issue 10, where requests published after a broker
// restart sat in rpc queues the clients had redeclared before the nodes
// resubscribed.
func TestCallToServerAwayFailsFast(t *testing.T) {
	url := testVhost(t)
	srv := dialTest(t, url, "server")
	cli := dialTest(t, url, "client")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := cli.DeclareNode(ctx, "n1") // what clients and the dealer do: no rpc queue
	if err != nil {
		t.Fatal(err)
	}
	fast := func(what string) {
		t.Helper()
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		start := time.Now()
		_, err := cli.Call(cctx, q.RPC, []byte("x"))
		if !errors.Is(err, transport.ErrNoRoute) {
			t.Fatalf("%s: Call = %v, want transport.ErrNoRoute", what, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("%s: Call took %v", what, d)
		}
	}
	fast("before the server started")

	serve := func() (stop func()) {
		sctx, scancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- srv.Serve(sctx, q.RPC, 1, func(ctx context.Context, d transport.Delivery) ([]byte, error) { return d.Body, nil })
		}()
		if err := srv.WaitConsuming(ctx, q.RPC); err != nil {
			t.Fatal(err)
		}
		return func() {
			scancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		}
	}
	stop := serve()
	if r, err := cli.Call(ctx, q.RPC, []byte("up")); err != nil || string(r) != "up" {
		t.Fatalf("Call = %q, %v", r, err)
	}
	stop()
	fast("after Serve stopped")
	if _, err := cli.DeclareNode(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	fast("after a peer redeclared the node's queues")

	// The server's connection dropped: the broker deleted its queue with it, and Serve
	// declares it again when it has resubscribed.
	stop = serve()
	defer stop()
	raw := srv.current(t)
	raw.conn.Close()
	fast("after the server's connection dropped")
	if err := srv.WaitConsuming(ctx, q.RPC); err != nil {
		t.Fatal(err)
	}
	if r, err := cli.Call(ctx, q.RPC, []byte("back")); err != nil || string(r) != "back" {
		t.Fatalf("Call after the server resubscribed = %q, %v", r, err)
	}
}

// Two processes serving the same queue: the second waits until the first's is gone, then
// serves. A shared queue of the same name left by an older version is replaced.
func TestServeOwnsItsQueue(t *testing.T) {
	url := testVhost(t)
	a := dialTest(t, url, "a")
	b := dialTest(t, url, "b")
	cli := dialTest(t, url, "client")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q := cli.NodeRPCQueue("n1")

	// An older version's queue: shared, with x-expires, nobody consuming.
	_, ch := rawChannel(t, url)
	if _, err := ch.QueueDeclare(q, false, false, false, false, amqp.Table{"x-expires": int32(600000)}); err != nil {
		t.Fatal(err)
	}

	run := func(c *Conn, name string) (stop func()) {
		sctx, scancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- c.Serve(sctx, q, 1, func(ctx context.Context, d transport.Delivery) ([]byte, error) { return []byte(name), nil })
		}()
		return func() { scancel(); <-done }
	}
	stopA := run(a, "a")
	if err := a.WaitConsuming(ctx, q); err != nil {
		t.Fatal(err)
	}
	stopB := run(b, "b")
	defer stopB()
	time.Sleep(300 * time.Millisecond)
	if b.WaitConsuming(expired(), q) == nil {
		t.Fatal("a second server subscribed to a queue the first one owns")
	}
	for range 5 {
		if r, err := cli.Call(ctx, q, nil); err != nil || string(r) != "a" {
			t.Fatalf("Call = %q, %v; want the first server", r, err)
		}
	}
	stopA()
	if err := b.WaitConsuming(ctx, q); err != nil {
		t.Fatal(err)
	}
	if r, err := cli.Call(ctx, q, nil); err != nil || string(r) != "b" {
		t.Fatalf("Call = %q, %v; want the second server", r, err)
	}
}

func expired() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// current returns c's current session (test helper).
func (c *Conn) current(t *testing.T) *session {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		t.Fatal("not connected")
	}
	return c.cur
}

// A durable message published while no consumer runs survives the
// publisher's connection and is consumed by a new one.
func TestDurablePublishSurvives(t *testing.T) {
	url := testVhost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	dealer, err := Dial(ctx, Config{URL: url, ClusterID: "test", Name: "dealer"})
	if err != nil {
		t.Fatal(err)
	}
	q, err := dealer.DeclareNode(ctx, "n1") // the dealer declares for a node that never ran
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := dealer.PublishDurable(ctx, q.Control, fmt.Appendf(nil, "share %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	dealer.Close()
	if err := dealer.PublishDurable(ctx, q.Control, nil); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("PublishDurable after Close: %v", err)
	}

	node := dialTest(t, url, "node")
	if _, err := node.DeclareNode(ctx, "n1"); err != nil { // identical redeclaration
		t.Fatal(err)
	}
	got := make(chan string, 10)
	cctx, ccancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- node.Consume(cctx, q.Control, func(ctx context.Context, body []byte) error {
			got <- string(body)
			return nil
		})
	}()
	for i := range 3 {
		select {
		case b := <-got:
			if want := fmt.Sprintf("share %d", i); b != want {
				t.Fatalf("got %q, want %q", b, want)
			}
		case <-ctx.Done():
			t.Fatal("durable message not delivered")
		}
	}
	ccancel()
	if err := <-done; err != nil {
		t.Fatalf("Consume: %v", err)
	}
	// Acked: nothing left in the queue.
	if n := queueDepth(t, url, q.Control); n != 0 {
		t.Fatalf("%d messages left after ack", n)
	}
}

func queueDepth(t *testing.T, url, queue string) int {
	t.Helper()
	_, ch := rawChannel(t, url)
	st, err := ch.QueueDeclarePassive(queue, false, false, false, false, nil)
	if err != nil {
		// Passive declaration needs identical flags only for exclusivity; a
		// durable queue declared non-durable passively is fine.
		t.Fatal(err)
	}
	return st.Messages
}

// A handler error requeues the message (with a delay), a permanent error
// dead-letters it.
func TestConsumeRedeliveryAndDeadLetter(t *testing.T) {
	url := testVhost(t)
	c := dialTest(t, url, "node")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	q, err := c.DeclareNode(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PublishDurable(ctx, q.Control, []byte("flaky")); err != nil {
		t.Fatal(err)
	}
	if err := c.PublishDurable(ctx, q.Control, []byte("malformed")); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var seen []time.Time
	stored := make(chan struct{})
	cctx, ccancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- c.Consume(cctx, q.Control, func(ctx context.Context, body []byte) error {
			switch string(body) {
			case "malformed":
				return fmt.Errorf("bad share: %w", transport.ErrPermanent)
			case "flaky":
				mu.Lock()
				defer mu.Unlock()
				seen = append(seen, time.Now())
				if len(seen) < 3 {
					return errors.New("disk full")
				}
				close(stored)
			}
			return nil
		})
	}()
	select {
	case <-stored:
	case <-ctx.Done():
		t.Fatal("failed message not redelivered")
	}
	// The malformed message is dead-lettered while the flaky one waits for its retry.
	waitFor(t, 10*time.Second, func() bool { return queueDepth(t, url, q.Dead) == 1 })
	ccancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if gap := seen[1].Sub(seen[0]); gap < 40*time.Millisecond {
		t.Errorf("redelivery after %v: no backoff", gap)
	}
	if n := queueDepth(t, url, q.Control); n != 0 {
		t.Errorf("%d messages left in the control queue", n)
	}
	if n := queueDepth(t, url, q.Dead); n != 1 {
		t.Errorf("dead-letter queue holds %d messages, want 1", n)
	}
}

// Killing the connections on the broker side: the Conn reconnects, Serve and
// Consume resume, calls succeed again.
func TestReconnectAfterConnectionsClosed(t *testing.T) {
	url := testVhost(t)
	srv := dialTest(t, url, "server")
	cli := dialTest(t, url, "client")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	q, err := srv.DeclareNode(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, srv, q.RPC, 2)
	// A server that never answers.
	dq := srv.DealerRPCQueue()
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	go srv.Serve(hctx, dq, 1, func(ctx context.Context, d transport.Delivery) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	if err := srv.WaitConsuming(ctx, q.RPC); err != nil {
		t.Fatal(err)
	}
	if err := srv.WaitConsuming(ctx, dq); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 10)
	cctx, ccancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- srv.Consume(cctx, q.Control, func(ctx context.Context, body []byte) error {
			got <- string(body)
			return nil
		})
	}()
	defer func() {
		ccancel()
		if err := <-done; err != nil {
			t.Errorf("Consume: %v", err)
		}
	}()
	if _, err := cli.Call(ctx, q.RPC, []byte("before")); err != nil {
		t.Fatal(err)
	}

	// A call in flight when the connection drops fails at once: its reply
	// could no longer arrive.
	inflight := make(chan error, 1)
	go func() {
		cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
		defer ccancel()
		_, err := cli.Call(cctx, dq, []byte("pending"))
		inflight <- err
	}()
	time.Sleep(200 * time.Millisecond)

	rabbitmqctl(t, "close_all_connections", "-p", vhostOf(url), "test")
	select {
	case err := <-inflight:
		if !errors.Is(err, transport.ErrUnavailable) {
			t.Fatalf("in-flight Call: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight Call did not fail when the connection dropped")
	}

	// A call made during the outage waits for the client's reconnection; until
	// the server has resubscribed, its queue does not exist and calls fail at
	// once with transport.ErrNoRoute (the caller asks again or asks another server).
	start := time.Now()
	var r []byte
	for {
		cctx2, ccancel2 := context.WithTimeout(ctx, 10*time.Second)
		r, err = cli.Call(cctx2, q.RPC, []byte("after"))
		ccancel2()
		if !errors.Is(err, transport.ErrNoRoute) || time.Since(start) > 10*time.Second {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || string(r) != "after" {
		t.Fatalf("Call after reconnect = %q, %v", r, err)
	}
	t.Logf("calls succeed again %v after the connections were closed", time.Since(start))

	if err := cli.PublishDurable(ctx, q.Control, []byte("share")); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if b != "share" {
			t.Fatalf("consumed %q", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Consume did not resume")
	}
}

func waitFor(t *testing.T, d time.Duration, f func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !f() {
		if time.Now().After(end) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Close stops every goroutine: Serve, Consume and reconnect loops included.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	url := testVhost(t)
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Dial(ctx, Config{URL: url, ClusterID: "test", Name: "leak"})
	if err != nil {
		t.Fatal(err)
	}
	q, err := c.DeclareNode(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		errs <- c.Serve(context.Background(), q.RPC, 3, func(ctx context.Context, d transport.Delivery) ([]byte, error) { return d.Body, nil })
	}()
	go func() {
		defer wg.Done()
		errs <- c.Consume(context.Background(), q.Control, func(ctx context.Context, body []byte) error { return nil })
	}()
	if err := c.WaitConsuming(ctx, q.RPC); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Call(ctx, q.RPC, []byte("x")); err != nil {
		t.Fatal(err)
	}
	// Make it go through a reconnection too.
	rabbitmqctl(t, "close_all_connections", "-p", vhostOf(url), "test")
	waitFor(t, 10*time.Second, c.Connected)

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, transport.ErrClosed) {
			t.Errorf("Serve/Consume after Close: %v", err)
		}
	}
	if _, err := c.Call(ctx, q.RPC, nil); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Call after Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	end := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(end) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines before Dial, %d after Close:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

func TestDialErrors(t *testing.T) {
	url := testVhost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	secret := "s3cr3t-pa55"
	bad := strings.Replace(url, "guest:guest", "guest:"+secret, 1)
	start := time.Now()
	_, err := Dial(ctx, Config{URL: bad, ClusterID: "test"})
	if !errors.Is(err, transport.ErrAccess) || strings.Contains(err.Error(), secret) {
		t.Fatalf("Dial with a wrong password: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("wrong password retried for %v", time.Since(start))
	}
	_, err = Dial(ctx, Config{URL: "amqp://guest:" + secret + "@127.0.0.1:5672/no-such-vhost-tchsm", ClusterID: "test"})
	if !errors.Is(err, transport.ErrAccess) || strings.Contains(err.Error(), secret) {
		t.Fatalf("Dial to a missing vhost: %v", err)
	}

	// Nothing listens on port 1: retried until ctx ends, then transport.ErrUnavailable.
	sctx, scancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer scancel()
	_, err = Dial(sctx, Config{URL: "amqp://guest:" + secret + "@127.0.0.1:1/", ClusterID: "test"})
	if !errors.Is(err, transport.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), secret) {
		t.Fatalf("Dial to a closed port: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	ctx := context.Background()
	for _, cfg := range []Config{
		{},
		{URL: "amqp://h/", ClusterID: ""},
		{URL: "amqp://h/", ClusterID: "a.b"},
		{URL: "amqp://h/", ClusterID: strings.Repeat("a", 65)},
		{URL: "http://u:topsecret@h/", ClusterID: "c"},
		{URL: "amqp://u:topsecret@h:port/", ClusterID: "c"},
		{URL: "amqp://h/", ClusterID: "c", Prefetch: -1},
		{URL: "amqp://u:topsecret@h/", ClusterID: "c", TLS: new(tls.Config)},
	} {
		_, err := Dial(ctx, cfg)
		if !errors.Is(err, transport.ErrConfig) || strings.Contains(err.Error(), "topsecret") {
			t.Errorf("Dial(%+v) = %v", cfg, err)
		}
	}
	if got := RedactURL("amqp://u:topsecret@h/v"); strings.Contains(got, "topsecret") {
		t.Errorf("RedactURL leaks: %s", got)
	}
	if got := redactErr(`parse "amqp://u:topsecret@h:x/": bad`, "amqp://u:topsecret@h:x/"); strings.Contains(got, "topsecret") {
		t.Errorf("redactErr leaks: %s", got)
	}
	t.Setenv(EnvURL, "")
	if URLFromEnv("amqp://d/") != "amqp://d/" {
		t.Error("URLFromEnv default")
	}
	t.Setenv(EnvURL, "amqp://e/")
	if URLFromEnv("amqp://d/") != "amqp://e/" {
		t.Error("URLFromEnv env")
	}
}

func TestDeclareRejectsBadNodeID(t *testing.T) {
	url := testVhost(t)
	c := dialTest(t, url, "x")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, id := range []string{"", "a.b", "a/b", "#", strings.Repeat("x", 65)} {
		if _, err := c.DeclareNode(ctx, id); !errors.Is(err, transport.ErrConfig) {
			t.Errorf("DeclareNode(%q) = %v", id, err)
		}
	}
}

// A queue redeclared with other arguments is a topology error, not a hang.
func TestTopologyMismatch(t *testing.T) {
	url := testVhost(t)
	_, ch := rawChannel(t, url)
	if _, err := ch.QueueDeclare(NodeControlQueue("test", "n1"), true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	c := dialTest(t, url, "x")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.DeclareNode(ctx, "n1"); !errors.Is(err, ErrTopology) {
		t.Fatalf("DeclareNode over a different queue: %v", err)
	}
	// The connection survives the channel error.
	if _, err := c.DeclareNode(ctx, "n2"); err != nil {
		t.Fatal(err)
	}
}

func TestBackoff(t *testing.T) {
	var b backoff
	prev := time.Duration(0)
	for i := range 20 {
		d := b.next()
		if d <= 0 || d > backoffMax {
			t.Fatalf("step %d: %v", i, d)
		}
		if i > 8 && d < backoffMax/2 {
			t.Fatalf("step %d below the cap's half: %v", i, d)
		}
		prev = d
	}
	_ = prev
	b.reset()
	if d := b.next(); d > backoffMin {
		t.Fatalf("after reset: %v", d)
	}
}

func BenchmarkCallRoundTrip(b *testing.B) {
	url := testVhost(b)
	srv := dialTest(b, url, "server")
	cli := dialTest(b, url, "client")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	q, err := srv.DeclareNode(ctx, "n1")
	if err != nil {
		b.Fatal(err)
	}
	serveEcho(b, srv, q.RPC, 4)
	body := make([]byte, 256)
	b.ResetTimer()
	for b.Loop() {
		if _, err := cli.Call(ctx, q.RPC, body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCallRoundTripParallel(b *testing.B) {
	url := testVhost(b)
	srv := dialTest(b, url, "server")
	cli := dialTest(b, url, "client")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	q, err := srv.DeclareNode(ctx, "n1")
	if err != nil {
		b.Fatal(err)
	}
	serveEcho(b, srv, q.RPC, 4)
	body := make([]byte, 256)
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := cli.Call(ctx, q.RPC, body); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// A request that names another queue as its reply_to is not served: a member must not make a
// node publish into a queue of its choosing (another node's control queue, say). Replies go
// only through the reply exchange (or to a direct reply-to address).
func TestServeRepliesOnlyToReplyAddresses(t *testing.T) {
	url := testVhost(t)
	srv := dialTest(t, url, "server")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q := srv.NodeRPCQueue("n1")
	var handled atomic.Int32
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	go srv.Serve(sctx, q, 1, func(ctx context.Context, d transport.Delivery) ([]byte, error) {
		handled.Add(1)
		return []byte("answer"), nil
	})
	if err := srv.WaitConsuming(ctx, q); err != nil {
		t.Fatal(err)
	}
	_, ch := rawChannel(t, url)
	victim := "tchsm.test.victim"
	if _, err := ch.QueueDeclare(victim, false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 3))
	for _, replyTo := range []string{victim, "", "amq.rabbitmq.reply-to-not"} {
		if err := ch.Publish("", q, false, false, amqp.Publishing{ReplyTo: replyTo, CorrelationId: "x", Body: []byte("hi"),
			Expiration: "10000"}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if c := <-confirms; !c.Ack {
			t.Fatal("publish not confirmed")
		}
	}
	// The three are queued ahead of this call, and the server takes its queue in order: once
	// the call is answered, they have been taken and dropped.
	cli := dialTest(t, url, "client")
	if r, err := cli.Call(ctx, q, []byte("x")); err != nil || string(r) != "answer" {
		t.Fatalf("a call: %q %v", r, err)
	}
	if n := handled.Load(); n != 1 {
		t.Fatalf("%d requests handled, want only the proper call: those with a foreign reply_to were served", n)
	}
	if qi, err := ch.QueueDeclarePassive(victim, false, true, false, false, nil); err != nil || qi.Messages != 0 {
		t.Fatalf("the victim queue got %d messages (%v)", qi.Messages, err)
	}
}
