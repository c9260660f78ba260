package rabbitmq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"github.com/tchsm/tchsm/internal/transport"
	"os/exec"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// testVhost creates a fresh vhost on the local broker, deleted at cleanup,
// and returns its amqp URL. Only a missing rabbitmqctl skips: a broker that
// does not answer is a failure.
func testVhost(tb testing.TB) string {
	tb.Helper()
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		tb.Skip("rabbitmqctl not installed")
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	vhost := "tchsm-transport-test-" + hex.EncodeToString(b[:])
	rabbitmqctl(tb, "add_vhost", vhost)
	tb.Cleanup(func() { rabbitmqctl(tb, "delete_vhost", vhost) })
	rabbitmqctl(tb, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
	return "amqp://guest:guest@127.0.0.1:5672/" + vhost
}

func vhostOf(url string) string { return url[strings.LastIndex(url, "/")+1:] }

func rabbitmqctl(tb testing.TB, args ...string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rabbitmqctl", append([]string{"-q"}, args...)...).CombinedOutput()
	if err != nil {
		tb.Fatalf("rabbitmqctl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// rawChannel dials url with amqp091-go alone (no Conn) and opens a channel; the connection is
// closed at cleanup, or earlier by the test.
func rawChannel(t testing.TB, url string) (*amqp.Connection, *amqp.Channel) {
	t.Helper()
	raw, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	ch, err := raw.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return raw, ch
}

// dialTest dials url with a test config; the Conn is closed at cleanup.
func dialTest(tb testing.TB, url, name string) *Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, Config{URL: url, ClusterID: "test", Name: name})
	if err != nil {
		tb.Fatalf("Dial: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// serveEcho runs an echo server on queue until the test ends.
func serveEcho(tb testing.TB, c *Conn, queue string, workers int) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- c.Serve(ctx, queue, workers, func(ctx context.Context, d transport.Delivery) ([]byte, error) {
			return d.Body, nil
		})
	}()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && err != transport.ErrClosed {
			tb.Errorf("Serve: %v", err)
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := c.WaitConsuming(wctx, queue); err != nil {
		tb.Fatal(err)
	}
}
