// Package transporttest checks that an implementation of transport.Transport behaves as the
// roles expect. Each implementation's tests call Run; the in-memory transport that tests of the
// client rely on is held to the same behaviour as the RabbitMQ one.
package transporttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/transport"
)

// Connect returns a new, connected party on a network that is fresh for each test (an empty
// vhost, a new memory.Network); the test's cleanup closes it. Every call within one test
// returns a party of the same network.
type Connect func(t *testing.T, name string) transport.Transport

// Run runs the conformance tests as subtests of t. newNetwork is called once per subtest and
// returns that subtest's Connect.
func Run(t *testing.T, newNetwork func(t *testing.T) Connect) {
	tests := []struct {
		name string
		f    func(t *testing.T, connect Connect)
	}{
		{"CallServe", testCallServe},
		{"NoRoute", testNoRoute},
		{"NoDeadline", testNoDeadline},
		{"RemoteError", testRemoteError},
		{"HandlerDeadline", testHandlerDeadline},
		{"ServeStops", testServeStops},
		{"InboxWaitsForReader", testInboxWaits},
		{"InboxRetryAndDead", testInboxRetryAndDead},
		{"InboxOutlastsFailures", testInboxOutlastsFailures},
		{"BadAddress", testBadAddress},
		{"Close", testClose},
		{"ConnectedSince", testConnectedSince},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, newNetwork(t)) })
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// start runs run in a goroutine until the returned stop (also called at cleanup), once wait
// says it receives. stop returns run's error.
func start(t *testing.T, what string, run func(ctx context.Context) error, wait func(ctx context.Context) error) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	if err := wait(ctxFor(t, 20*time.Second)); err != nil {
		cancel()
		t.Fatalf("%s: %v", what, err)
	}
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// serve starts h at at on tr and waits until it receives requests; it stops at cleanup.
func serve(t *testing.T, tr transport.Transport, at transport.Address, workers int, h transport.Handler) (stop func() error) {
	t.Helper()
	return start(t, "WaitServing "+at.String(),
		func(ctx context.Context) error { return tr.Serve(ctx, at, workers, h) },
		func(ctx context.Context) error { return tr.WaitServing(ctx, at) })
}

func echo(_ context.Context, d transport.Delivery) ([]byte, error) { return d.Body, nil }

func testCallServe(t *testing.T, connect Connect) {
	srv, cli := connect(t, "server"), connect(t, "client")
	serve(t, srv, transport.Node("n1"), 4, echo)
	serve(t, srv, transport.Dealer, 1, func(context.Context, transport.Delivery) ([]byte, error) { return []byte("dealer"), nil })
	ctx := ctxFor(t, 20*time.Second)
	big := bytes.Repeat([]byte{0xa5}, 1<<20)
	for _, body := range [][]byte{[]byte("hello"), nil, big} {
		got, err := cli.Call(ctx, transport.Node("n1"), body)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("Call(%d bytes) = %d bytes, %v", len(body), len(got), err)
		}
	}
	if got, err := cli.Call(ctx, transport.Dealer, nil); err != nil || string(got) != "dealer" {
		t.Fatalf("Call(dealer) = %q, %v", got, err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Appendf(nil, "req-%d", i)
			got, err := cli.Call(ctx, transport.Node("n1"), body)
			if err == nil && !bytes.Equal(got, body) {
				err = fmt.Errorf("reply %q to %q", got, body)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func testNoRoute(t *testing.T, connect Connect) {
	cli := connect(t, "client")
	t0 := time.Now()
	_, err := cli.Call(ctxFor(t, 10*time.Second), transport.Node("nobody"), []byte("x"))
	if !errors.Is(err, transport.ErrNoRoute) {
		t.Fatalf("Call to an address nobody serves: %v, want ErrNoRoute", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("ErrNoRoute after %v: it must come at once, not at the deadline", d)
	}
}

func testNoDeadline(t *testing.T, connect Connect) {
	cli := connect(t, "client")
	if _, err := cli.Call(context.Background(), transport.Node("n1"), nil); !errors.Is(err, transport.ErrNoDeadline) {
		t.Fatalf("Call without deadline: %v", err)
	}
}

func testRemoteError(t *testing.T, connect Connect) {
	srv, cli := connect(t, "server"), connect(t, "client")
	serve(t, srv, transport.Node("n1"), 1, func(_ context.Context, d transport.Delivery) ([]byte, error) {
		switch string(d.Body) {
		case "fail":
			return nil, errors.New(string(bytes.Repeat([]byte("e"), 4*transport.MaxRemoteError)))
		case "panic":
			panic("boom")
		}
		return []byte("ok"), nil
	})
	ctx := ctxFor(t, 20*time.Second)
	_, err := cli.Call(ctx, transport.Node("n1"), []byte("fail"))
	var re *transport.RemoteError
	if !errors.Is(err, transport.ErrRemote) || !errors.As(err, &re) || len(re.Msg) > transport.MaxRemoteError {
		t.Fatalf("handler error: %v", err)
	}
	if _, err := cli.Call(ctx, transport.Node("n1"), []byte("panic")); !errors.Is(err, transport.ErrRemote) {
		t.Fatalf("handler panic: %v", err)
	}
	if got, err := cli.Call(ctx, transport.Node("n1"), []byte("x")); err != nil || string(got) != "ok" {
		t.Fatalf("after a panic the server must go on: %q %v", got, err)
	}
}

func testHandlerDeadline(t *testing.T, connect Connect) {
	srv, cli := connect(t, "server"), connect(t, "client")
	seen := make(chan time.Time, 1)
	serve(t, srv, transport.Node("n1"), 1, func(ctx context.Context, d transport.Delivery) ([]byte, error) {
		dl, _ := ctx.Deadline()
		seen <- dl
		return nil, nil
	})
	ctx := ctxFor(t, 8*time.Second)
	want, _ := ctx.Deadline()
	if _, err := cli.Call(ctx, transport.Node("n1"), nil); err != nil {
		t.Fatal(err)
	}
	if got := <-seen; got.After(want.Add(10*time.Millisecond)) || got.Before(want.Add(-2*time.Second)) {
		t.Fatalf("handler deadline %v, caller's %v", got, want)
	}
}

func testServeStops(t *testing.T, connect Connect) {
	srv, cli := connect(t, "server"), connect(t, "client")
	stop := serve(t, srv, transport.Node("n1"), 1, echo)
	if err := stop(); err != nil {
		t.Fatalf("Serve after its ctx ended: %v, want nil", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := cli.Call(ctxFor(t, 5*time.Second), transport.Node("n1"), nil)
		if errors.Is(err, transport.ErrNoRoute) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Call to a stopped server: %v, want ErrNoRoute", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Another party can serve the address now.
	other := connect(t, "server-2")
	serve(t, other, transport.Node("n1"), 1, func(context.Context, transport.Delivery) ([]byte, error) { return []byte("2"), nil })
	if got, err := cli.Call(ctxFor(t, 10*time.Second), transport.Node("n1"), nil); err != nil || string(got) != "2" {
		t.Fatalf("Call to the new server: %q %v", got, err)
	}
}

// publish puts msgs into to's inbox, in order.
func publish(t *testing.T, ctx context.Context, pub transport.Transport, to transport.Address, msgs ...string) {
	t.Helper()
	for _, m := range msgs {
		if err := pub.Publish(ctx, to, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
}

// consume starts h on at's inbox and waits until it receives messages; it stops at cleanup.
func consume(t *testing.T, tr transport.Transport, at transport.Address, h transport.ConsumeHandler) (stop func() error) {
	t.Helper()
	return start(t, "WaitConsuming "+at.String(),
		func(ctx context.Context) error { return tr.Consume(ctx, at, h) },
		func(ctx context.Context) error { return tr.WaitConsuming(ctx, at) })
}

func testInboxWaits(t *testing.T, connect Connect) {
	pub := connect(t, "dealer")
	ctx := ctxFor(t, 30*time.Second)
	// Published before the reader ever ran: the messages wait for it, in order.
	for i := range 5 {
		if err := pub.Publish(ctx, transport.Node("n1"), fmt.Appendf(nil, "share %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Publish(ctx, transport.Dealer, []byte("x")); !errors.Is(err, transport.ErrConfig) {
		t.Fatalf("Publish to the dealer (no inbox): %v, want ErrConfig", err)
	}
	node := connect(t, "node")
	got := make(chan string, 10)
	consume(t, node, transport.Node("n1"), func(_ context.Context, body []byte) error {
		got <- string(body)
		return nil
	})
	for i := range 5 {
		select {
		case s := <-got:
			if want := fmt.Sprintf("share %d", i); s != want {
				t.Fatalf("message %d: %q, want %q", i, s, want)
			}
		case <-ctx.Done():
			t.Fatalf("message %d never arrived", i)
		}
	}
}

func testInboxRetryAndDead(t *testing.T, connect Connect) {
	pub, node := connect(t, "dealer"), connect(t, "node")
	ctx := ctxFor(t, 30*time.Second)
	publish(t, ctx, pub, transport.Node("n1"), "flaky", "malformed", "fine")
	var mu sync.Mutex
	tries := map[string]int{}
	done := make(chan struct{})
	consume(t, node, transport.Node("n1"), func(_ context.Context, body []byte) error {
		mu.Lock()
		defer mu.Unlock()
		tries[string(body)]++
		switch string(body) {
		case "flaky":
			if tries["flaky"] < 3 {
				return errors.New("disk busy")
			}
		case "malformed":
			return fmt.Errorf("%w: cannot parse", transport.ErrPermanent)
		}
		if tries["flaky"] == 3 && tries["fine"] == 1 {
			close(done)
		}
		return nil
	})
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("a message that failed twice was not delivered again, or the others not at all")
	}
	time.Sleep(200 * time.Millisecond) // a requeued message would be back by now
	mu.Lock()
	defer mu.Unlock()
	if tries["flaky"] != 3 || tries["malformed"] != 1 || tries["fine"] != 1 {
		t.Fatalf("deliveries %v, want flaky 3 (twice refused), malformed 1 (set aside), fine 1", tries)
	}
}

// A reader whose handler fails 25 times in a row (a store that cannot write) gets the
// message again each time, and the message is neither dropped nor set aside: RabbitMQ 4's
// quorum queues would dead-letter a message returned 20 times. The messages behind it are
// not lost either.
func testInboxOutlastsFailures(t *testing.T, connect Connect) {
	const failures = 25
	pub, node := connect(t, "dealer"), connect(t, "node")
	ctx := ctxFor(t, 90*time.Second)
	publish(t, ctx, pub, transport.Node("n1"), "share", "next")
	var mu sync.Mutex
	tries := map[string]int{}
	done := make(chan struct{})
	consume(t, node, transport.Node("n1"), func(_ context.Context, body []byte) error {
		mu.Lock()
		defer mu.Unlock()
		tries[string(body)]++
		if string(body) == "share" && tries["share"] <= failures {
			return errors.New("store: disk full")
		}
		if tries["share"] == failures+1 && tries["next"] == 1 {
			close(done)
		}
		return nil
	})
	select {
	case <-done:
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("after %v deliveries the share was not stored", tries)
	}
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if tries["share"] != failures+1 || tries["next"] != 1 {
		t.Fatalf("deliveries %v, want share %d, next 1", tries, failures+1)
	}
}

func testBadAddress(t *testing.T, connect Connect) {
	tr := connect(t, "x")
	ctx := ctxFor(t, 5*time.Second)
	for _, a := range []transport.Address{{}, {Role: transport.RoleNode}, {Role: transport.RoleNode, ID: "a b"}, {Role: "other", ID: "x"}, {Role: transport.RoleDealer, ID: "d"}} {
		if _, err := tr.Call(ctx, a, nil); !errors.Is(err, transport.ErrConfig) {
			t.Errorf("Call(%+v): %v, want ErrConfig", a, err)
		}
		if err := tr.Publish(ctx, a, nil); !errors.Is(err, transport.ErrConfig) {
			t.Errorf("Publish(%+v): %v, want ErrConfig", a, err)
		}
	}
}

func testClose(t *testing.T, connect Connect) {
	tr := connect(t, "x")
	done := make(chan error, 1)
	go func() { done <- tr.Serve(context.Background(), transport.Node("n1"), 1, echo) }()
	if err := tr.WaitServing(ctxFor(t, 20*time.Second), transport.Node("n1")); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, transport.ErrClosed) {
			t.Fatalf("Serve after Close: %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
	if _, err := tr.Call(ctxFor(t, 5*time.Second), transport.Node("n1"), nil); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Call after Close: %v, want ErrClosed", err)
	}
	if err := tr.Publish(ctxFor(t, 5*time.Second), transport.Node("n1"), nil); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Publish after Close: %v, want ErrClosed", err)
	}
}

// testConnectedSince: a connected Transport gives the same non-zero time while its connection
// stays up (calls do not change it), and zero once closed.
func testConnectedSince(t *testing.T, connect Connect) {
	tr := connect(t, "x")
	if err := tr.WaitConnected(ctxFor(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	since := tr.ConnectedSince()
	if since.IsZero() || since.After(time.Now()) {
		t.Fatalf("ConnectedSince = %v while connected", since)
	}
	stop := serve(t, tr, transport.Node("n1"), 1, echo)
	if _, err := tr.Call(ctxFor(t, 5*time.Second), transport.Node("n1"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if got := tr.ConnectedSince(); !got.Equal(since) {
		t.Fatalf("ConnectedSince changed from %v to %v with the connection up", since, got)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if got := tr.ConnectedSince(); !got.IsZero() {
		t.Fatalf("ConnectedSince = %v after Close", got)
	}
}
