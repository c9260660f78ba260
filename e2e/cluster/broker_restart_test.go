package cluster_test

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/internal/testcluster"
	"github.com/tchsm/tchsm/threshold"
)

// TestBrokerRestart restarts the RabbitMQ application (rabbitmqctl stop_app / start_app) while
// the cluster is idle and while it is signing. It stops the broker for every process on the
// machine, so it runs only when TCHSM_BROKER_RESTART=1: `make test` runs it on its own, after
// the parallel test run.
func TestBrokerRestart(t *testing.T) {
	if os.Getenv("TCHSM_BROKER_RESTART") != "1" {
		t.Skip("stops the shared broker; run with TCHSM_BROKER_RESTART=1 (make test does, serially)")
	}
	tc := testcluster.Start(t, testcluster.Options{K: 3, N: 5})
	c := tc.Client()
	k := generate(t, c, 2048)
	signOK(t, c, k, "before")

	// A key dealt while node 5 is down: its share waits in node 5's durable queue, across the
	// restart.
	tc.KillNode(5)
	k2 := generate(t, c, 1024)

	restart := func() time.Duration {
		t0 := time.Now()
		for _, a := range []string{"stop_app", "start_app"} {
			if out, err := exec.Command("rabbitmqctl", "-q", a).CombinedOutput(); err != nil {
				t.Fatalf("rabbitmqctl %s: %v\n%s", a, err, out)
			}
		}
		exec.Command("rabbitmqctl", "-q", "await_startup").Run()
		return time.Since(t0)
	}

	// Idle restart: everyone reconnects by themselves.
	d := restart()
	t.Logf("idle restart took %v", d.Round(time.Millisecond))
	waitSign(t, c, k, 30*time.Second)
	for i := range 5 {
		signOK(t, c, k, fmt.Sprintf("after idle restart %d", i))
	}
	tc.StartNode(5)
	tc.WaitUp(5, 30*time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, _ := c.Status(context.Background())
		if len(st) == 5 && slices.Contains(st[4].Keys, k2.ID) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 5 lost the share queued for it across the broker restart: %+v", st[4])
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Restart under load: every signature returned must verify; failures are allowed only while
	// the broker is away, and signing must resume.
	var ok, failed, bad atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	pub := &rsa.PublicKey{N: k.N, E: k.E}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				msg := []byte(fmt.Sprintf("load %d/%d", w, i))
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				sig, err := c.Sign(ctx, k.ID, threshold.SHA256RSAPKCS, msg)
				cancel()
				if err != nil {
					failed.Add(1)
					continue
				}
				h := sha256.Sum256(msg)
				if rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig) != nil {
					bad.Add(1)
				}
				ok.Add(1)
			}
		}()
	}
	time.Sleep(2 * time.Second)
	before := ok.Load()
	d = restart()
	t.Logf("restart under load took %v", d.Round(time.Millisecond))
	waitSign(t, c, k, 30*time.Second)
	afterRestart := ok.Load()
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("under load: %d signatures (%d before the restart), %d failed during it, %d invalid", ok.Load(), before, failed.Load(), bad.Load())
	if bad.Load() != 0 {
		t.Fatalf("%d invalid signatures returned", bad.Load())
	}
	if before == 0 || ok.Load()-afterRestart == 0 {
		t.Fatalf("no signatures before (%d) or after (%d) the restart", before, ok.Load()-afterRestart)
	}
}

// waitSign retries a signature until it succeeds or timeout passes.
func waitSign(t *testing.T, c *client.Client, k client.KeyInfo, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := c.Sign(ctx, k.ID, threshold.SHA256RSAPKCS, []byte("probe"))
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster did not recover within %v: %v", timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
