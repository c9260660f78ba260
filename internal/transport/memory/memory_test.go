package memory

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/transport/transporttest"
)

func TestConformance(t *testing.T) {
	transporttest.Run(t, func(t *testing.T) transporttest.Connect {
		n := NewNetwork()
		return func(t *testing.T, name string) transport.Transport {
			tr := n.Connect(name)
			t.Cleanup(func() { tr.Close() })
			return tr
		}
	})
}

func serveEcho(t *testing.T, tr *Transport, at transport.Address) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- tr.Serve(ctx, at, 2, func(_ context.Context, d transport.Delivery) ([]byte, error) { return d.Body, nil })
	}()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if err := tr.WaitServing(wctx, at); err != nil {
		t.Fatal(err)
	}
}

// echoNetwork is a network with an echo server at node n1 (on srv) and a client, both closed at
// cleanup.
func echoNetwork(t *testing.T) (n *Network, srv, cli *Transport, a transport.Address) {
	n = NewNetwork()
	srv, cli = n.Connect("srv"), n.Connect("cli")
	t.Cleanup(func() { cli.Close(); srv.Close() })
	a = transport.Node("n1")
	serveEcho(t, srv, a)
	return n, srv, cli, a
}

func TestFaults(t *testing.T) {
	n, _, cli, a := echoNetwork(t)
	call := func(d time.Duration) (time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		t0 := time.Now()
		_, err := cli.Call(ctx, a, []byte("x"))
		return time.Since(t0), err
	}
	n.SetFault(a, Fault{Delay: 100 * time.Millisecond})
	if took, err := call(5 * time.Second); err != nil || took < 100*time.Millisecond {
		t.Fatalf("delayed call: %v after %v", err, took)
	}
	n.SetFault(a, Fault{Hang: true})
	if took, err := call(200 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) || took < 200*time.Millisecond {
		t.Fatalf("hung call: %v after %v", err, took)
	}
	boom := errors.New("boom")
	n.SetFault(a, Fault{Err: boom})
	if _, err := call(time.Second); !errors.Is(err, boom) {
		t.Fatalf("failing call: %v", err)
	}
	n.SetFault(a, Fault{})
	if _, err := call(time.Second); err != nil {
		t.Fatalf("after the fault is gone: %v", err)
	}
	if got := n.Calls(a); got != 2 { // the hung and the failing call never reached the server
		t.Fatalf("Calls = %d, want 2", got)
	}
}

func TestDown(t *testing.T) {
	n, srv, cli, a := echoNetwork(t)
	n.SetDown(true)
	if cli.Connected() {
		t.Fatal("Connected while down")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err := cli.Call(ctx, a, nil)
	cancel()
	if !errors.Is(err, transport.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Call while down: %v", err)
	}
	// A call made while down goes through once the network is back and the server resubscribed.
	res := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := cli.Call(ctx, a, nil)
		res <- err
	}()
	time.Sleep(50 * time.Millisecond)
	n.SetDown(false)
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if err := srv.WaitServing(wctx, a); err != nil {
		t.Fatal(err)
	}
	if err := <-res; err != nil && !errors.Is(err, transport.ErrNoRoute) {
		t.Fatalf("Call across the outage: %v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Call(ctx, a, nil); err != nil {
		t.Fatalf("Call after the outage: %v", err)
	}
}
