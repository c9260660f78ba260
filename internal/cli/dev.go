package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tchsm/tchsm/internal/clusterinit"
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/scripts"
)

func init() {
	register("dev", "start or stop a local k-of-n cluster of node processes (dev up|down|env)", runDev)
}

// DevPIN is the user PIN `tchsm dev up` gives the PKCS#11 token unless -pin says otherwise.
const DevPIN = "1234"

func runDev(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || (args[0] != "up" && args[0] != "down" && args[0] != "env") {
		fmt.Fprintln(e.stderr, "Usage: tchsm dev up|down|env [-dir DIR] [flags]")
		return errUsage
	}
	sub, args := args[0], args[1:]
	fs := newFlags(e, "dev "+sub, "dev "+sub+" [flags]")
	dir := fs.String("dir", ".dev", "cluster folder")
	k := fs.Int("k", 3, "up: threshold")
	n := fs.Int("n", 5, "up: number of nodes")
	url := fs.String("amqp", "", "up: broker URL or comma-separated URLs (default: $TCHSM_AMQP_URL or amqp://guest:guest@127.0.0.1:5672/)")
	label := fs.String("token-label", "tchsm", "up: PKCS#11 token label")
	userPIN := fs.String("pin", DevPIN, "up: every client's first user PIN, installed on the nodes (the tchsm command asks for it, or takes $TCHSM_PIN)")
	workers := fs.Int("workers", 0, "up: signing goroutines per node (0: number of CPUs)")
	brokers := fs.Int("brokers", 0, "up: also start a local RabbitMQ cluster of this many broker nodes in DIR/brokers and use it (0: use -amqp)")
	brokerPort := fs.Int("broker-port", 5781, "up: AMQP port of the first of -brokers nodes (the others follow; Erlang distribution on port+20000)")
	purge := fs.Bool("purge", false, "down: also delete the cluster folder (and, on a broker not started by -brokers, the cluster's broker users)")
	brokerUsers := fs.Bool("broker-users", true, "up: give each role its own broker user with only its permissions (needs rabbitmqctl; falls back to the -amqp account, with a warning, when rabbitmqctl cannot reach the broker)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	switch sub {
	case "up":
		if *brokers < 0 || *brokers > 9 {
			return fmt.Errorf("dev up: -brokers %d: want 0..9", *brokers)
		}
		ctl := ""
		if *brokers > 0 || brokersRunning(abs) {
			if *url != "" {
				return fmt.Errorf("dev up: -amqp and -brokers exclude each other")
			}
			if *url, err = brokersUp(ctx, e, abs, *brokers, *brokerPort); err != nil {
				return err
			}
			ctl = brokersCtl(abs)
		}
		return devUp(ctx, e, abs, *k, *n, *url, *label, *userPIN, *workers, *brokerUsers, ctl)
	case "down":
		return devDown(e, abs, *purge)
	default:
		printDevEnv(e, abs)
		return nil
	}
}

// brokersCtl is the rabbitmqctl command of the broker cluster of `dev up -brokers` in dir.
func brokersCtl(dir string) string {
	return "bash " + filepath.Join(dir, "brokers", "brokers.sh") + " ctl " + filepath.Join(dir, "brokers") + " 1"
}

func devUp(ctx context.Context, e *env, dir string, k, n int, url, label, userPIN string, workers int, brokerUsers bool, ctl string) error {
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); errors.Is(err, os.ErrNotExist) {
		if brokerUsers {
			if err := canRunRabbitmqctl(ctx, ctl); err != nil {
				fmt.Fprintf(e.stderr, "WARNING: rabbitmqctl cannot reach the broker (%v): every role uses the -amqp account instead of a broker user of its own\n", err)
				brokerUsers = false
			}
		}
		l, err := clusterinit.Create(dir, clusterinit.Options{K: k, N: n, AMQPURL: url, Signers: 1, OneHost: true, BrokerUsers: brokerUsers, PIN: userPIN})
		if err != nil {
			return err
		}
		if l.BrokerDefinitions != "" {
			if err := brokerSetup(ctx, e, dir, ctl); err != nil {
				return err
			}
		}
		for _, p := range append(l.Clients, l.Signers...) {
			if err := addPKCS11Section(p, label); err != nil {
				return err
			}
		}
		if workers > 0 {
			for _, p := range l.Nodes {
				var c config.Node
				if err := readJSON(p, &c); err != nil {
					return err
				}
				c.Workers = workers
				if err := config.Save(p, c, 0o600); err != nil {
					return err
				}
			}
		}
		fmt.Fprintf(e.stderr, "created a %d-of-%d cluster in %s\n", k, n, dir)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	nodes, _ := filepath.Glob(filepath.Join(dir, "nodes", "node-*", "node.json"))
	procs := map[string][]string{filepath.Join(dir, "dealer"): {"dealer", "-config", filepath.Join(dir, "dealer", "dealer.json")}}
	for _, p := range nodes {
		procs[filepath.Dir(p)] = []string{"node", "-config", p}
	}
	for d, argv := range procs {
		if pid, ok := alive(d); ok {
			fmt.Fprintf(e.stderr, "%s already running (pid %d)\n", filepath.Base(d), pid)
			continue
		}
		if err := startDetached(self, argv, d); err != nil {
			return err
		}
	}
	cfgPath := filepath.Join(dir, "clients", "client-1", "client.json")
	// Wait until every node answers.
	deadline := time.Now().Add(60 * time.Second)
	for {
		up, total, err := countUp(ctx, cfgPath)
		if err == nil && up == total {
			fmt.Fprintf(e.stderr, "%d nodes up\n", up)
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster did not come up in 60 s (%d nodes answer; last error: %v); see the logs in %s/nodes/*/process.log", up, err, dir)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
	printDevEnv(e, dir)
	return nil
}

func printDevEnv(e *env, dir string) {
	fmt.Fprintf(e.stdout, "export TCHSM_CONFIG=%s\n", filepath.Join(dir, "clients", "client-1", "client.json"))
	if signer := filepath.Join(dir, "clients", "signer-1", "client.json"); fileExists(signer) {
		// stderr: stdout is the one line scripts evaluate.
		fmt.Fprintf(e.stderr, "a signer client (signs and lists only): TCHSM_CONFIG=%s\n", signer)
	}
}

func countUp(ctx context.Context, cfgPath string) (int, int, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := openClient(ctx, nil, cfgPath)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	st, err := c.Status(ctx)
	if err != nil {
		return 0, 0, err
	}
	up := 0
	var last error
	for _, s := range st {
		if s.OK {
			up++
		} else {
			last = errors.New(s.Err)
		}
	}
	return up, len(st), last
}

// addPKCS11Section gives a client config the PKCS#11 module's section (p11shim/README.md). It
// holds no PIN: the nodes check it (clusterinit.Options.PIN).
func addPKCS11Section(path, label string) error {
	var raw map[string]any
	if err := readJSON(path, &raw); err != nil {
		return err
	}
	logFile := filepath.Join(filepath.Dir(path), "pkcs11.log")
	raw["pkcs11"] = map[string]any{"token_label": label, "log_file": logFile}
	return config.Save(path, raw, 0o600)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// startDetached starts `self argv...` in its own session with output to dir/process.log and its
// pid in dir/process.pid.
func startDetached(self string, argv []string, dir string) error {
	logf, err := os.OpenFile(filepath.Join(dir, "process.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(self, argv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "process.pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600); err != nil {
		return err
	}
	return cmd.Process.Release()
}

func alive(dir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "process.pid"))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, syscall.Kill(pid, 0) == nil
}

// brokersRunning reports whether dir has a broker cluster of `dev up -brokers`.
func brokersRunning(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "brokers", "env"))
	return err == nil
}

// brokersScript runs scripts/brokers.sh (embedded in the binary) on dir/brokers.
func brokersScript(ctx context.Context, dir string, args ...string) (string, error) {
	bd := filepath.Join(dir, "brokers")
	if err := os.MkdirAll(bd, 0o700); err != nil {
		return "", err
	}
	sh := filepath.Join(bd, "brokers.sh")
	if err := os.WriteFile(sh, scripts.Brokers, 0o700); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "bash", append([]string{sh, args[0], bd}, args[1:]...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("brokers.sh %s: %v\n%s", args[0], err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

// brokersUp starts (or, on a folder that has them, restarts) n local broker nodes and returns
// their AMQP URLs, comma-separated.
func brokersUp(ctx context.Context, e *env, dir string, n, port int) (string, error) {
	if _, err := os.Stat("/usr/lib/rabbitmq/bin/rabbitmq-server"); err != nil {
		return "", fmt.Errorf("dev up -brokers needs Debian's rabbitmq-server (scripts/deps.sh): %w", err)
	}
	fmt.Fprintf(e.stderr, "starting the broker nodes in %s (10-40 s each on 2 cores)\n", filepath.Join(dir, "brokers"))
	urls, err := brokersScript(ctx, dir, "up", strconv.Itoa(n), strconv.Itoa(port))
	if err != nil {
		return "", err
	}
	fmt.Fprintf(e.stderr, "brokers: %s\n", urls)
	return urls, nil
}

func devDown(e *env, dir string, purge bool) error {
	pids, _ := filepath.Glob(filepath.Join(dir, "*", "process.pid"))
	more, _ := filepath.Glob(filepath.Join(dir, "nodes", "*", "process.pid"))
	stopped := 0
	for _, p := range append(pids, more...) {
		d := filepath.Dir(p)
		pid, ok := alive(d)
		if ok {
			syscall.Kill(pid, syscall.SIGTERM)
			for i := 0; i < 50; i++ {
				if syscall.Kill(pid, 0) != nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if syscall.Kill(pid, 0) == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			stopped++
		}
		os.Remove(p)
	}
	fmt.Fprintf(e.stderr, "stopped %d processes\n", stopped)
	if _, err := os.Stat(definitionsPath(dir)); err == nil && purge && !brokersRunning(dir) {
		if err := brokerRemove(context.Background(), e, dir, ""); err != nil {
			fmt.Fprintf(e.stderr, "removing the broker users: %v\n", err)
		}
	}
	if brokersRunning(dir) {
		if _, err := brokersScript(context.Background(), dir, "down"); err != nil {
			fmt.Fprintf(e.stderr, "stopping the broker nodes: %v\n", err)
		} else {
			fmt.Fprintln(e.stderr, "stopped the broker nodes")
		}
	}
	if purge {
		return os.RemoveAll(dir)
	}
	return nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
