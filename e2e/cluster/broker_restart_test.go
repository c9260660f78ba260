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
	"github.com/tchsm/tchsm/scheme"
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
	// the broker is away, and signing must resume at once: the first signature of every load
	// goroutine completes within maxResume of the broker answering again.
	const workers = 4
	var ok, failed, bad atomic.Int64
	var backAt atomic.Int64 // unix nanos when the broker answered again; 0 before
	var firstAfter [workers]atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	pub := k.Public.(*rsa.PublicKey)
	for w := range workers {
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
				sig, err := c.Sign(ctx, k.ID, scheme.SHA256RSAPKCS, msg)
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
				if b := backAt.Load(); b != 0 {
					firstAfter[w].CompareAndSwap(0, time.Now().UnixNano())
				}
			}
		}()
	}
	time.Sleep(2 * time.Second)
	before := ok.Load()
	d = restart()
	back := time.Now()
	backAt.Store(back.UnixNano())
	t.Logf("restart under load took %v", d.Round(time.Millisecond))
	waitSign(t, c, k, 30*time.Second)
	probe := time.Since(back)
	afterRestart := ok.Load()
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	var resume []time.Duration
	for w := range workers {
		f := firstAfter[w].Load()
		if f == 0 {
			resume = append(resume, -1)
			continue
		}
		resume = append(resume, time.Unix(0, f).Sub(back).Round(time.Millisecond))
	}
	t.Logf("under load: %d signatures (%d before the restart), %d failed during it, %d invalid; after the broker was back: probe signed after %v, first signature of each load goroutine after %v",
		ok.Load(), before, failed.Load(), bad.Load(), probe.Round(time.Millisecond), resume)
	if bad.Load() != 0 {
		t.Fatalf("%d invalid signatures returned", bad.Load())
	}
	if before == 0 || ok.Load()-afterRestart == 0 {
		t.Fatalf("no signatures before (%d) or after (%d) the restart", before, ok.Load()-afterRestart)
	}
	for w, r := range resume {
		if r < 0 || r > maxResume {
			t.Errorf("load goroutine %d: first signature %v after the broker was back, want at most %v", w, r, maxResume)
		}
	}
}

// maxResume is how soon after the broker answers again every signer must sign again.
const maxResume = time.Second

// waitSign retries a signature until it succeeds or timeout passes.
func waitSign(t *testing.T, c *client.Client, k client.KeyInfo, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := c.Sign(ctx, k.ID, scheme.SHA256RSAPKCS, []byte("probe"))
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
