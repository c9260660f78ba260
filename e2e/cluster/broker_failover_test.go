package cluster_test

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/tchsm/tchsm/internal/clusterinit"
	"github.com/tchsm/tchsm/internal/testcluster"
	"github.com/tchsm/tchsm/scheme"
)

// maxOutage is how long after a broker node stops signatures may fail.
const maxOutage = 2 * time.Second

// signRecord is one signature of the load.
type signRecord struct {
	start, end time.Time
	err        error
}

// brokerEvent is one broker node stopped (and started again).
type brokerEvent struct {
	node               int
	kill               bool
	at, back           time.Time
	rpcQueues, leaders int // on that broker node when it stopped
}

// TestBrokerNodeFailover runs a 3-of-5 cluster on a three-node RabbitMQ cluster of its own
// (scripts/brokers.sh) and, while four goroutines sign, stops each broker node in turn, once
// gracefully (rabbitmqctl stop) and once with SIGKILL, and starts it again. Every signature
// returned must verify; signatures may fail only when they were in flight at a stop or
// started within maxOutage after it; a key dealt while a broker node is down reaches all
// five nodes. It reports the p99 latency during the failovers. It starts three broker nodes
// (CPU-heavy for half a minute), so it runs only with TCHSM_BROKER_FAILOVER=1: `make test`
// runs it alone, after the parallel test run.
func TestBrokerNodeFailover(t *testing.T) {
	if os.Getenv("TCHSM_BROKER_FAILOVER") != "1" {
		t.Skip("starts and kills a broker cluster of its own; run with TCHSM_BROKER_FAILOVER=1 (make test does, serially)")
	}
	t0 := time.Now()
	brokers := testcluster.StartBrokers(t, 3)
	t.Logf("three broker nodes up in %v", time.Since(t0).Round(time.Millisecond))
	tc := testcluster.Start(t, testcluster.Options{K: 3, N: 5, Brokers: brokers, DealerPool: -1, BrokerUsers: true})
	checkMaxMessageSize(t, brokers.URLs(tc.VHost)[0])
	c := tc.Client()
	k := generate(t, c, 2048)
	signOK(t, c, k, "before")
	pub := k.Public.(*rsa.PublicKey)

	// Where the queues live: classic rpc queues on the broker node their server is
	// connected to, quorum inboxes led by one node each.
	where := func(up int) (rpc, leaders map[int]int) {
		rpc, leaders = map[int]int{}, map[int]int{}
		out := brokers.Ctl(t, up, "list_queues", "-p", tc.VHost, "--no-table-headers", "name", "type", "pid", "leader")
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) < 3 {
				continue
			}
			for i := 1; i <= brokers.N; i++ {
				switch {
				case f[1] == "classic" && strings.HasSuffix(f[0], ".rpc") && strings.Contains(f[2], brokers.NodeName(i)):
					rpc[i]++
				case f[1] == "quorum" && strings.HasSuffix(f[0], ".inbox") && len(f) >= 4 && f[3] == brokers.NodeName(i):
					leaders[i]++
				}
			}
		}
		return rpc, leaders
	}

	const workers = 4
	var mu sync.Mutex
	var recs []signRecord
	var bad int
	stop := make(chan struct{})
	var wg sync.WaitGroup
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
				msg := []byte(fmt.Sprintf("failover %d/%d", w, i))
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				start := time.Now()
				sig, err := c.Sign(ctx, k.ID, scheme.SHA256RSAPKCS, msg)
				end := time.Now()
				cancel()
				h := sha256.Sum256(msg)
				mu.Lock()
				recs = append(recs, signRecord{start: start, end: end, err: err})
				if err == nil && rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig) != nil {
					bad++
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(2 * time.Second)

	var events []brokerEvent
	var dealt string
	for _, kill := range []bool{false, true} {
		for i := 1; i <= brokers.N; i++ {
			up := i%brokers.N + 1 // another node, to ask
			rpc, leaders := where(up)
			ev := brokerEvent{node: i, kill: kill, rpcQueues: rpc[i], leaders: leaders[i], at: time.Now()}
			if kill {
				brokers.Kill(t, i)
			} else {
				brokers.Stop(t, i)
			}
			ev.at = time.Now() // the broker is gone from here on
			if kill && i == 1 {
				// A key dealt while a broker node is down.
				dealt = generate(t, c, 1024).ID
			}
			time.Sleep(3 * time.Second)
			brokers.Start(t, i)
			ev.back = time.Now()
			events = append(events, ev)
			t.Logf("broker %d %s (%d rpc queues, leader of %d inboxes): back after %v",
				i, map[bool]string{false: "stopped", true: "killed"}[kill], ev.rpcQueues, ev.leaders, ev.back.Sub(ev.at).Round(time.Millisecond))
			time.Sleep(2 * time.Second) // let the restarted member catch up before the next stop
		}
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	// Judge the load.
	mu.Lock()
	defer mu.Unlock()
	inWindow := func(r signRecord) bool {
		for _, ev := range events {
			if r.end.After(ev.at) && r.start.Before(ev.at.Add(maxOutage)) {
				return true
			}
		}
		return false
	}
	var failed, outside int
	var during, all []time.Duration
	for _, r := range recs {
		if r.err != nil {
			failed++
			if !inWindow(r) {
				outside++
				t.Errorf("signature started %v after the test began failed outside any failover window: %v", r.start.Sub(t0).Round(time.Millisecond), r.err)
			}
			continue
		}
		d := r.end.Sub(r.start)
		all = append(all, d)
		for _, ev := range events {
			if r.end.After(ev.at) && r.start.Before(ev.at.Add(5*time.Second)) {
				during = append(during, d)
				break
			}
		}
	}
	t.Logf("%d signatures, %d failed (%d outside the %v windows), %d invalid; latency p50 %v p99 %v max %v; within 5 s after a stop (%d signatures): p50 %v p99 %v max %v",
		len(all), failed, outside, maxOutage, bad, pct(all, 50), pct(all, 99), pct(all, 100),
		len(during), pct(during, 50), pct(during, 99), pct(during, 100))
	if bad != 0 {
		t.Errorf("%d invalid signatures returned", bad)
	}
	if len(during) == 0 {
		t.Error("no signature completed during the failovers")
	}
	var rpcHit, leaderHit int
	for _, ev := range events {
		rpcHit += ev.rpcQueues
		leaderHit += ev.leaders
	}
	if rpcHit == 0 || leaderHit == 0 {
		t.Errorf("no stop hit a broker holding rpc queues (%d) or leading inboxes (%d)", rpcHit, leaderHit)
	}

	// The key dealt during a stop reached all five nodes.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := c.Status(ctx)
		cancel()
		have := 0
		for _, s := range st {
			if slices.Contains(s.Keys, dealt) {
				have++
			}
		}
		if err == nil && have == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("key %s dealt while a broker node was down: %d of 5 nodes hold it (%v)", dealt, have, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("whole test %v", time.Since(t0).Round(time.Millisecond))
}

// pct is the p-th percentile of ds (p 100: the maximum).
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)].Round(time.Millisecond)
}

// checkMaxMessageSize: the brokers of scripts/brokers.sh refuse a message larger than
// clusterinit.MaxMessageSize (max_message_size) and take one below it.
func checkMaxMessageSize(t *testing.T, url string) {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, size := range []int{clusterinit.MaxMessageSize - 1024, clusterinit.MaxMessageSize + 1} {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		closed := ch.NotifyClose(make(chan *amqp.Error, 1))
		if err := ch.Confirm(false); err != nil {
			t.Fatal(err)
		}
		dc, err := ch.PublishWithDeferredConfirm("", "tchsm.no-such-queue", false, false, amqp.Publishing{Body: make([]byte, size)})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-dc.Done():
		case <-time.After(10 * time.Second):
		}
		var cerr *amqp.Error
		select {
		case cerr = <-closed:
		case <-time.After(time.Second):
		}
		refused := cerr != nil && cerr.Code == amqp.PreconditionFailed
		if want := size > clusterinit.MaxMessageSize; refused != want {
			t.Fatalf("a message of %d bytes: refused %v (%v), want %v", size, refused, cerr, want)
		}
		ch.Close()
	}
}
