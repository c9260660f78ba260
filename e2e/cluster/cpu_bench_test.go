package cluster_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/internal/clusterinit"
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/testcluster"
	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/shoup"
)

// BenchmarkClusterCPU_2048_3of5 measures, from /proc, the CPU time per signature of the five
// node processes, of the client (this process) and of the broker, at 4, 8 and 32 signatures in
// flight (issue 17, part 3: the goal for all the work outside the share arithmetic is ≤ 0.8 ms
// per signature). Each node reports the thread CPU time of its own exponentiations
// (tchsm_process_modexp_cpu_seconds_total), so "beyond" is exactly the nodes' CPU outside the
// arithmetic, and the ratio of that per-share time to the share's time on this process's idle
// thread (r, measured before each window) shows what running ten exponentiations on two cores
// costs the arithmetic itself. The broker is one of its own (testcluster.StartBrokers, one node)
// so that its CPU is this cluster's alone; TCHSM_BENCH_SHARED_BROKER=1 uses the machine's
// broker instead and leaves the broker out.
func BenchmarkClusterCPU_2048_3of5(b *testing.B) {
	const k, n, bits = 3, 5, 2048
	st := newShareTimer(b, bits)
	var brokers *testcluster.Brokers
	if os.Getenv("TCHSM_BENCH_SHARED_BROKER") == "" {
		brokers = testcluster.StartBrokers(b, 1)
	}
	ports := make([]int, n+1)
	for i := 1; i <= n; i++ {
		ports[i] = freePort(b)
	}
	tc := testcluster.Start(b, testcluster.Options{K: k, N: n, Workers: 2, DealerPool: -1, Brokers: brokers,
		NodeConfig: func(i int, c *config.Node) { c.MetricsAddr = fmt.Sprintf("127.0.0.1:%d", ports[i]) }})
	c, key := benchKey(b, tc, bits)
	brokerPid := 0
	if brokers != nil {
		brokerPid = brokers.Pid(b, 1)
	}
	for _, conc := range []int{4, 8, 32} {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
			share := st.cpuPerShare(b, 300*time.Millisecond)
			var pids []int
			for i := 1; i <= n; i++ {
				pids = append(pids, tc.Pid(clusterinit.NodeID(i)))
			}
			exp0 := nodeMetric(b, ports[1:], "tchsm_process_modexp_cpu_seconds_total")
			nodes0, self0, broker0 := procCPU(b, pids...), procCPU(b, os.Getpid()), brokerCPU(b, brokerPid)
			made, el := signLoad(b, c, key, conc, 3*time.Second)
			nodes, self, broker := procCPU(b, pids...)-nodes0, procCPU(b, os.Getpid())-self0, brokerCPU(b, brokerPid)-broker0
			exps := nodeMetric(b, ports[1:], "tchsm_process_modexp_cpu_seconds_total") - exp0
			sigs := float64(made)
			if sigs == 0 {
				b.Fatal("no signature")
			}
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / sigs }
			limit := float64(runtime.NumCPU()) / share.Seconds() / k
			rate := sigs / el.Seconds()
			beyond := ms(nodes - exps)
			inflation := float64(exps) / sigs / k / float64(share)
			b.Logf("concurrency %d: %.0f sig/s (limit %.0f, ratio %.2f); CPU per signature: nodes %.2f ms (their %d shares %.2f ms, %.2f× r's; beyond them %.2f ms), client %.2f ms, broker %.2f ms; outside the arithmetic %.2f ms",
				conc, rate, limit, rate/limit, ms(nodes), k, ms(exps), inflation, beyond, ms(self), ms(broker), beyond+ms(self)+ms(broker))
			b.ReportMetric(rate, "sig/s")
			b.ReportMetric(rate/limit, "ratio")
			b.ReportMetric(ms(nodes), "node-cpu-ms/sig")
			b.ReportMetric(beyond, "node-beyond-shares-ms/sig")
			b.ReportMetric(inflation, "share-cpu/r")
			b.ReportMetric(ms(self), "client-cpu-ms/sig")
			if brokerPid != 0 {
				b.ReportMetric(ms(broker), "broker-cpu-ms/sig")
			}
			b.ReportMetric(beyond+ms(self)+ms(broker), "outside-arith-ms/sig")
		})
	}
}

// benchKey opens tc's client, deals a key of bits and warms the client up (benchCluster's).
func benchKey(b testing.TB, tc *testcluster.Cluster, bits int) (*client.Client, client.KeyInfo) {
	c := tc.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	key, err := c.GenerateKey(ctx, client.GenerateRequest{Bits: bits, Label: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	for range 20 {
		if _, err := c.Sign(ctx, key.ID, scheme.SHA256RSAPKCS, []byte("warm-up")); err != nil {
			b.Fatal(err)
		}
	}
	return c, key
}

func freePort(b testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// nodeMetric sums a counter (in seconds) over the nodes' /metrics.
func nodeMetric(b testing.TB, ports []int, name string) time.Duration {
	var sum float64
	for _, p := range ports {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", p))
		if err != nil {
			b.Fatal(err)
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		found := false
		for _, l := range strings.Split(string(raw), "\n") {
			if v, ok := strings.CutPrefix(l, name+" "); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					b.Fatalf("%s: %q", name, l)
				}
				sum, found = sum+f, true
			}
		}
		if !found {
			b.Fatalf("node on port %d reports no %s", p, name)
		}
	}
	return time.Duration(sum * float64(time.Second))
}

// brokerCPU is procCPU of the broker (0 for none).
func brokerCPU(b testing.TB, pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	return procCPU(b, pid)
}

// cpuPerShare is the CPU time of one share on this goroutine's locked thread over about d.
func (st *shareTimer) cpuPerShare(b testing.TB, d time.Duration) time.Duration {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu := func() time.Duration {
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ts.Nano())
	}
	c0, n, start := cpu(), 0, time.Now()
	for ; n < 3 || time.Since(start) < d; n++ {
		if _, err := shoup.SignShare(st.pk, st.share, st.em); err != nil {
			b.Fatal(err)
		}
	}
	return (cpu() - c0) / time.Duration(n)
}

// procCPU is the user+system CPU time of the processes so far (/proc/PID/stat; USER_HZ 100).
func procCPU(b testing.TB, pids ...int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			b.Fatal(err)
		}
		// Fields after the command name in parentheses: state is field 3, utime 14, stime 15.
		f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
		ut, err1 := strconv.ParseInt(f[11], 10, 64)
		stm, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			b.Fatalf("/proc/%d/stat: %q", pid, raw)
		}
		total += time.Duration(ut+stm) * 10 * time.Millisecond
	}
	return total
}
