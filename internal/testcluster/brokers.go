package testcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Brokers is a local RabbitMQ cluster of its own (scripts/brokers.sh), beside the machine's
// broker, which it never touches: tests stop and kill its nodes.
type Brokers struct {
	Dir  string
	N    int
	Port int // AMQP port of node 1; node i listens on Port+i-1
	sh   string
}

// StartBrokers starts a cluster of n broker nodes, stopped at the end of the test. It skips
// the test when Debian's rabbitmq-server is not installed. Start-up takes 10-40 s.
func StartBrokers(t testing.TB, n int) *Brokers {
	t.Helper()
	if _, err := os.Stat("/usr/lib/rabbitmq/bin/rabbitmq-server"); err != nil {
		t.Skip("rabbitmq-server not installed (run scripts/deps.sh)")
	}
	_, self, _, _ := runtime.Caller(0)
	b := &Brokers{Dir: filepath.Join(t.TempDir(), "brokers"), N: n, Port: freePorts(t, n),
		sh: filepath.Join(filepath.Dir(self), "..", "..", "scripts", "brokers.sh")}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(b.Dir, "node*", "log", "*.log"))
			for _, l := range logs {
				data, _ := os.ReadFile(l)
				if len(data) > 4000 {
					data = data[len(data)-4000:]
				}
				t.Logf("---- %s\n%s", l, data)
			}
		}
		b.run(t, "down")
	})
	b.run(t, "up", fmt.Sprint(n), fmt.Sprint(b.Port))
	return b
}

// freePorts finds a port p such that p..p+n-1 and the Erlang distribution ports p+20000..
// are free now.
func freePorts(t testing.TB, n int) int {
	t.Helper()
	free := func(p int) bool {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return false
		}
		l.Close()
		return true
	}
	var b [2]byte
	rand.Read(b[:])
	start := 6000 + 10*(int(b[0])%200) // 6000..7990, distribution 26000..27990
	for p := start; p < 8000; p += 10 {
		ok := true
		for i := range n {
			ok = ok && free(p+i) && free(p+i+20000)
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free ports for the broker nodes")
	return 0
}

func (b *Brokers) run(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	argv := append([]string{b.sh, args[0], b.Dir}, args[1:]...)
	out, err := exec.CommandContext(ctx, "bash", argv...).CombinedOutput()
	if err != nil {
		t.Fatalf("brokers.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// NodeName is broker node i's Erlang node name (1-based).
func (b *Brokers) NodeName(i int) string { return fmt.Sprintf("tchsm%d-%d@localhost", b.Port, i) }

// Ctl runs rabbitmqctl on broker node i.
func (b *Brokers) Ctl(t testing.TB, i int, args ...string) string {
	t.Helper()
	return b.run(t, append([]string{"ctl", fmt.Sprint(i)}, args...)...)
}

// Stop stops broker node i gracefully; Kill kills it with SIGKILL; Start starts it again and
// waits until it runs.
func (b *Brokers) Stop(t testing.TB, i int)  { t.Helper(); b.run(t, "stop", fmt.Sprint(i)) }
func (b *Brokers) Kill(t testing.TB, i int)  { t.Helper(); b.run(t, "kill", fmt.Sprint(i)) }
func (b *Brokers) Start(t testing.TB, i int) { t.Helper(); b.run(t, "start", fmt.Sprint(i)) }

// URLs are the AMQP URLs of the nodes for vhost.
func (b *Brokers) URLs(vhost string) []string {
	var us []string
	for i := range b.N {
		us = append(us, fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/%s", b.Port+i, vhost))
	}
	return us
}

// VHost creates a fresh vhost on the cluster, for guest, and returns its name.
func (b *Brokers) VHost(t testing.TB) string {
	t.Helper()
	var r [4]byte
	rand.Read(r[:])
	name := "tchsm-test-" + hex.EncodeToString(r[:])
	b.Ctl(t, 1, "add_vhost", name)
	b.Ctl(t, 1, "set_permissions", "-p", name, "guest", ".*", ".*", ".*")
	return name
}

// Pid is the process id of broker node i's Erlang VM (from its pid file, RABBITMQ_PID_FILE in
// scripts/brokers.sh), for benchmarks that count its CPU time.
func (b *Brokers) Pid(t testing.TB, i int) int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(b.Dir, fmt.Sprintf("node%d", i), "pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatalf("broker node %d's pid file: %q", i, raw)
	}
	return pid
}
