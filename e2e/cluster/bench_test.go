package cluster_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/internal/testcluster"
	"github.com/tchsm/tchsm/threshold"
)

// shareTime measures one signature share at bits on one goroutine: r = 1/shareTime is the
// single-core share rate of the C·r/k limit.
func shareTime(b *testing.B, bits int) time.Duration {
	key, err := threshold.GenerateKey(context.Background(), rand.Reader, bits, 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	pk, shares, err := threshold.Deal(rand.Reader, key, 3, 5)
	if err != nil {
		b.Fatal(err)
	}
	em, _ := threshold.EncodePayload(pk.Size(), []byte("share time"))
	n := 0
	start := time.Now()
	for time.Since(start) < 700*time.Millisecond {
		if _, err := threshold.SignShare(pk, shares[0], em); err != nil {
			b.Fatal(err)
		}
		n++
	}
	return time.Since(start) / time.Duration(n)
}

func benchCluster(b testing.TB, k, n, bits, workers int) (*testcluster.Cluster, *client.Client, client.KeyInfo) {
	tc := testcluster.Start(b, testcluster.Options{K: k, N: n, Workers: workers, DealerPool: -1})
	c := tc.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	key, err := c.GenerateKey(ctx, client.GenerateRequest{Bits: bits, Label: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	for range 20 { // warm up: key cache, connections, latency estimates
		if _, err := c.Sign(ctx, key.ID, threshold.SHA256RSAPKCS, []byte("warm-up")); err != nil {
			b.Fatal(err)
		}
	}
	return tc, c, key
}

// BenchmarkClusterThroughput_2048_3of5 signs from many goroutines against five node processes
// on this machine and reports sig/s, the threshold limit C·r/k and the ratio (goal: >= 0.80).
func BenchmarkClusterThroughput_2048_3of5(b *testing.B) {
	const k, n, bits = 3, 5, 2048
	st := shareTime(b, bits)
	_, c, key := benchCluster(b, k, n, bits, 2)
	conc := 4 * runtime.NumCPU()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				if _, err := c.Sign(context.Background(), key.ID, threshold.SHA256RSAPKCS, []byte(fmt.Sprint(i))); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	rate := float64(b.N) / elapsed.Seconds()
	limit := float64(runtime.NumCPU()) / st.Seconds() / k
	b.ReportMetric(rate, "sig/s")
	b.ReportMetric(limit, "limit-sig/s")
	b.ReportMetric(rate/limit, "ratio")
	b.ReportMetric(float64(st.Microseconds()), "share-µs")
}

// BenchmarkClusterLatency_2048_3of5 signs one at a time on an idle cluster and reports the
// median latency against one share computation (goal: p50 <= share + 3 ms).
func BenchmarkClusterLatency_2048_3of5(b *testing.B) {
	const k, n, bits = 3, 5, 2048
	st := shareTime(b, bits)
	_, c, key := benchCluster(b, k, n, bits, 2)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := c.Sign(context.Background(), key.ID, threshold.SHA256RSAPKCS, []byte(fmt.Sprint(i))); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	p50 := lat[len(lat)/2]
	b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(st.Microseconds()), "share-µs")
	b.ReportMetric(float64((p50 - st).Microseconds()), "overhead-µs")
}
