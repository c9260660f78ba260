package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/clusterinit"
	"github.com/tchsm/tchsm/scheme"
)

// A client must open while the broker is unreachable (a signer starting during a broker
// restart) and fail its calls with ErrUnavailable within their deadline.
func TestOpenWithBrokerDown(t *testing.T) {
	l, err := clusterinit.Create(t.TempDir(), clusterinit.Options{K: 2, N: 3, AMQPURL: "amqp://guest:guest@127.0.0.1:1/"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TCHSM_AMQP_URL", "")
	start := time.Now()
	c, err := Open(context.Background(), l.Clients[0])
	if err != nil {
		t.Fatalf("Open with the broker down: %v", err)
	}
	defer c.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Open took %v", d)
	}
	for name, call := range map[string]func(ctx context.Context) error{
		"Keys": func(ctx context.Context) error { _, err := c.Keys(ctx); return err },
		"Sign": func(ctx context.Context) error {
			_, err := c.Sign(ctx, "00112233445566778899aabbccddeeff", scheme.SHA256RSAPKCS, []byte("x"))
			return err
		},
		"GenerateKey": func(ctx context.Context) error {
			_, err := c.GenerateKey(ctx, GenerateRequest{Bits: 2048})
			return err
		},
		"DeleteKey": func(ctx context.Context) error {
			_, err := c.DeleteKey(ctx, "00112233445566778899aabbccddeeff")
			return err
		},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		t0 := time.Now()
		err := call(ctx)
		cancel()
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: err = %v, want ErrUnavailable", name, err)
		}
		if d := time.Since(t0); d > 2*time.Second {
			t.Errorf("%s took %v with a 500 ms deadline", name, d)
		}
	}
	// Key generation has a long deadline (120 s by default) but gives up on a missing broker
	// after brokerWait.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t0 := time.Now()
	if _, err := c.GenerateKey(ctx, GenerateRequest{Bits: 2048}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("GenerateKey with a long deadline: err = %v, want ErrUnavailable", err)
	}
	if d := time.Since(t0); d > brokerWait+2*time.Second {
		t.Errorf("GenerateKey with the broker down took %v", d)
	}
}

func TestBadInput(t *testing.T) {
	l, err := clusterinit.Create(t.TempDir(), clusterinit.Options{K: 2, N: 3, AMQPURL: "amqp://guest:guest@127.0.0.1:1/"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TCHSM_AMQP_URL", "")
	c, err := Open(context.Background(), l.Clients[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Sign(ctx, "not-a-key-id", scheme.SHA256RSAPKCS, nil); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("bad key id: %v", err)
	}
	if _, err := c.Sign(ctx, "00112233445566778899aabbccddeeff", scheme.Mechanism(42), nil); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("bad mechanism: %v", err)
	}
	if _, err := c.GenerateKey(ctx, GenerateRequest{Bits: 512}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("512-bit key: %v", err)
	}
	if _, err := Open(ctx, "/nonexistent/client.json"); err == nil {
		t.Error("Open of a missing config succeeded")
	}
	// A node identity cannot be used as a client.
	if _, err := Open(ctx, l.Nodes[0]); err == nil {
		t.Error("Open of a node config succeeded")
	}
}
