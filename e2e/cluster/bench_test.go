package cluster_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tchsm/tchsm/client"
	// r is timed here with the nodes' engine (OpenSSL's exponentiation; issue 17), not bigmod.
	_ "github.com/tchsm/tchsm/internal/modexp/openssl"
	"github.com/tchsm/tchsm/internal/testcluster"
	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/shoup"
	"github.com/tchsm/tchsm/scheme/shoup/keygen"
)

// shareTimer measures one 2048-bit signature share on one goroutine: r = 1/shareTime is the
// single-core share rate of the C·r/k limit. The host's speed drifts (by a third on the
// reference VM within minutes), so benchmarks measure r in short windows between their own.
type shareTimer struct {
	pk    *shoup.PublicKey
	share *shoup.KeyShare
	em    []byte
}

func newShareTimer(b testing.TB, bits int) *shareTimer {
	key, err := keygen.GenerateKey(context.Background(), rand.Reader, bits, 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	pk, shares, err := shoup.Deal(rand.Reader, key, 3, 5)
	if err != nil {
		b.Fatal(err)
	}
	em, _ := shoup.EncodePayload(pk.Size(), []byte("share time"))
	return &shareTimer{pk: pk, share: shares[0], em: em}
}

// measure returns the mean time of one share over a window of about d.
func (st *shareTimer) measure(b testing.TB, d time.Duration) time.Duration {
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		if _, err := shoup.SignShare(st.pk, st.share, st.em); err != nil {
			b.Fatal(err)
		}
		n++
	}
	return time.Since(start) / time.Duration(n)
}

func median[T int64 | float64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func benchCluster(b testing.TB, k, n, bits, workers int) (*testcluster.Cluster, *client.Client, client.KeyInfo) {
	return benchClusterOn(b, nil, k, n, bits, workers)
}

// benchClusterOn is benchCluster on brokers (nil: the machine's broker).
func benchClusterOn(b testing.TB, brokers *testcluster.Brokers, k, n, bits, workers int) (*testcluster.Cluster, *client.Client, client.KeyInfo) {
	tc := testcluster.Start(b, testcluster.Options{K: k, N: n, Workers: workers, DealerPool: -1, Brokers: brokers})
	c, key := benchKey(b, tc, bits)
	return tc, c, key
}

// BenchmarkClusterThroughput_2048_3of5 signs from many goroutines against five node processes
// on this machine and reports sig/s, the threshold limit C·r/k and the ratio (goals, issue 17:
// >= 0.65 at 4 in flight, >= 0.75 at 8, >= 0.80 at 32, the harness's largest concurrency).
// The host's speed drifts by a third within seconds on the reference VM, so it alternates short
// windows, r alone (cluster idle) then the cluster under load, and pools them: the ratio is the
// cluster's mean rate over the limit from the mean share time. In each window a second client
// with the adaptive batch window (batch_window 0, a real deployment's default) signs too, in
// its own turn, beside the test clusters' fixed batch_window 1, so that the two are compared in
// the same run ("adaptive-ratio": on nodes that share the cores it should not be lower).
func BenchmarkClusterThroughput_2048_3of5(b *testing.B) {
	for _, conc := range []int{4, 8, 32} {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) { benchThroughput(b, conc) })
	}
}

func benchThroughput(b *testing.B, conc int) {
	const k, n, bits, windows = 3, 5, 2048, 10
	st := newShareTimer(b, bits)
	tc, c, key := benchCluster(b, k, n, bits, 2)
	adaptive := tc.Open(editedConfig(b, tc.ClientConfig, func(m map[string]any) { delete(m, "batch_window") }), true)
	for range 20 {
		if _, err := adaptive.Sign(context.Background(), key.ID, scheme.SHA256RSAPKCS, []byte("warm-up")); err != nil {
			b.Fatal(err)
		}
	}
	var shareSum, busy, busyAdaptive time.Duration
	var sigs, sigsAdaptive int64
	var ratios []float64
	b.ResetTimer()
	for range windows {
		share := st.measure(b, 400*time.Millisecond)
		made, el := signLoad(b, c, key, conc, 1500*time.Millisecond)
		madeS, elS := signLoad(b, adaptive, key, conc, 1500*time.Millisecond)
		shareSum += share
		busy, busyAdaptive = busy+el, busyAdaptive+elS
		sigs, sigsAdaptive = sigs+made, sigsAdaptive+madeS
		ratios = append(ratios, float64(made)/el.Seconds()/(float64(runtime.NumCPU())/share.Seconds()/k))
	}
	share := shareSum / windows
	rate, rateS := float64(sigs)/busy.Seconds(), float64(sigsAdaptive)/busyAdaptive.Seconds()
	limit := float64(runtime.NumCPU()) / share.Seconds() / k
	slices.Sort(ratios)
	b.Logf("concurrency %d: share %v, limit %.1f sig/s, cluster %.1f sig/s, ratio %.3f (window ratios %.2f..%.2f); adaptive window: %.1f sig/s, ratio %.3f",
		conc, share.Round(time.Microsecond), limit, rate, rate/limit, ratios[0], ratios[len(ratios)-1], rateS, rateS/limit)
	b.ReportMetric(rate, "sig/s")
	b.ReportMetric(limit, "limit-sig/s")
	b.ReportMetric(rate/limit, "ratio")
	b.ReportMetric(rateS/limit, "adaptive-ratio")
	b.ReportMetric(float64(share.Microseconds()), "share-µs")
}

// editedConfig writes a copy of the JSON config at path, changed by edit, beside it and returns
// the copy's path.
func editedConfig(b testing.TB, path string, edit func(map[string]any)) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		b.Fatal(err)
	}
	edit(m)
	if raw, err = json.Marshal(m); err != nil {
		b.Fatal(err)
	}
	out := strings.TrimSuffix(path, ".json") + "-edited.json"
	if err := os.WriteFile(out, raw, 0o600); err != nil {
		b.Fatal(err)
	}
	return out
}

// BenchmarkBrokersThroughput_2048_3of5 compares, side by side in one run, a 3-of-5 cluster on
// the machine's single broker with one on a three-node broker cluster of its own
// (scripts/brokers.sh; goal: within 10 %), at 16 signatures in flight. The two clusters take
// turns in short windows, so that the host's drift hits both alike; it reports each one's mean
// rate and the ratio three-broker / single-broker. It starts three broker nodes: run it with
// -bench explicitly.
func BenchmarkBrokersThroughput_2048_3of5(b *testing.B) {
	const k, n, bits, windows, conc = 3, 5, 2048, 10, 16
	brokers := testcluster.StartBrokers(b, 3)
	_, one, key1 := benchClusterOn(b, nil, k, n, bits, 2)
	_, three, key3 := benchClusterOn(b, brokers, k, n, bits, 2)
	window := func(c *client.Client, key client.KeyInfo) (int64, time.Duration) {
		return signLoad(b, c, key, conc, 1500*time.Millisecond)
	}
	b.ResetTimer()
	var s1, s3 int64
	var t1, t3 time.Duration
	for range windows {
		n1, d1 := window(one, key1)
		n3, d3 := window(three, key3)
		s1, t1, s3, t3 = s1+n1, t1+d1, s3+n3, t3+d3
	}
	r1, r3 := float64(s1)/t1.Seconds(), float64(s3)/t3.Seconds()
	b.Logf("single broker %.1f sig/s, three brokers %.1f sig/s, ratio %.3f", r1, r3, r3/r1)
	b.ReportMetric(r1, "single-sig/s")
	b.ReportMetric(r3, "three-sig/s")
	b.ReportMetric(r3/r1, "ratio")
}

// BenchmarkClusterLatency_2048_3of5 measures one signature at a time on an idle cluster
// (goal: p50 <= one share + 3 ms), in windows of 200 signatures, each after a share-time
// window; it reports the medians. On a machine with fewer cores than k, the k exponentiations
// of one signature wait for each other: BenchmarkClusterLatency_2048_2of3 is the same
// measurement with k no larger than the reference VM's two cores.
func BenchmarkClusterLatency_2048_3of5(b *testing.B) { benchLatency(b, 3, 5) }
func BenchmarkClusterLatency_2048_2of3(b *testing.B) { benchLatency(b, 2, 3) }

func benchLatency(b *testing.B, k, n int) {
	const bits, windows = 2048, 5
	st := newShareTimer(b, bits)
	_, c, key := benchCluster(b, k, n, bits, 2)
	var p50s, shares, overheads []time.Duration
	b.ResetTimer()
	for w := range windows {
		share := st.measure(b, time.Second)
		lat := make([]time.Duration, 0, 200)
		for i := range 200 {
			t0 := time.Now()
			if _, err := c.Sign(context.Background(), key.ID, scheme.SHA256RSAPKCS, []byte(fmt.Sprint(w, i))); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		p50 := median(lat)
		b.Logf("window: share %v, p50 %v", share.Round(time.Microsecond), p50.Round(time.Microsecond))
		p50s, shares, overheads = append(p50s, p50), append(shares, share), append(overheads, p50-share)
	}
	b.ReportMetric(float64(median(p50s).Microseconds()), "p50-µs")
	b.ReportMetric(float64(median(shares).Microseconds()), "share-µs")
	b.ReportMetric(float64(median(overheads).Microseconds()), "overhead-µs")
}

// signLoad signs with conc goroutines, one signature after the other each, for d; it returns the
// signatures made and the time they took.
func signLoad(b *testing.B, c *client.Client, key client.KeyInfo, conc int, d time.Duration) (int64, time.Duration) {
	var done atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(d)
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				if _, err := c.Sign(context.Background(), key.ID, mechOf(key), []byte(fmt.Sprint(w, i))); err != nil {
					b.Error(err)
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	return done.Load(), time.Since(start)
}

// mechOf is the mechanism the benchmarks sign with: SHA256_RSA_PKCS for RSA keys, EDDSA for
// Ed25519 keys.
func mechOf(key client.KeyInfo) scheme.Mechanism {
	if key.Algorithm == scheme.Ed25519FROST {
		return scheme.EDDSA
	}
	return scheme.SHA256RSAPKCS
}

// BenchmarkClusterEd25519_3of5: a 3-of-5 Ed25519 key generated by five node processes on this
// machine (the DKG's time over the broker is reported), then one signature at a time (p50; goal
// within 1.5 ms of the cluster's round-trip floor, ≤ 4.5 ms) and the rate at 1 to 32 signatures
// in flight (goal ≥ 500 sig/s at the best). A 150-byte message, an RRset's size.
func BenchmarkClusterEd25519_3of5(b *testing.B) {
	tc := testcluster.Start(b, testcluster.Options{K: 3, N: 5, Workers: 2, DealerPool: -1})
	c := tc.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t0 := time.Now()
	key, err := c.GenerateKey(ctx, client.GenerateRequest{Algorithm: scheme.Ed25519FROST, Label: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	dkg := time.Since(t0)
	msg := make([]byte, 150)
	for range 50 {
		if _, err := c.Sign(ctx, key.ID, scheme.EDDSA, msg); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	lat := make([]time.Duration, 0, 1000)
	for i := range 1000 {
		msg[0], msg[1] = byte(i), byte(i>>8)
		t := time.Now()
		if _, err := c.Sign(ctx, key.ID, scheme.EDDSA, msg); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	slices.Sort(lat)
	b.Logf("DKG %v; one at a time: p50 %v, p90 %v, p99 %v", dkg.Round(time.Millisecond),
		lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*9/10].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond))
	b.ReportMetric(float64(dkg.Milliseconds()), "dkg-ms")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	best := 0.0
	for _, conc := range []int{1, 4, 8, 16, 32} {
		made, el := signLoad(b, c, key, conc, 3*time.Second)
		rate := float64(made) / el.Seconds()
		b.Logf("%d in flight: %.0f sig/s", conc, rate)
		b.ReportMetric(rate, fmt.Sprintf("c%d-sig/s", conc))
		best = max(best, rate)
	}
	b.ReportMetric(best, "best-sig/s")
}
