// Package cluster starts and stops a local tchsm cluster for the benchmark with the cluster
// launcher, `tchsm dev` (internal/cli/dev.go). Launcher.Command is that command: the harness's
// -tchsm-launch, split on spaces, or with `auto` the tchsm binary it builds from this repository.
//
//	<Command> dev up --dir D --k K --n N [UpArgs] [--amqp URL]   # Up
//	<Command> dev down --dir D --purge                           # Down: stops the processes, deletes D
//
// `tchsm dev up` creates the cluster folder on first use, starts the dealer and the n nodes as
// detached processes, waits until every node answers, prints `export TCHSM_CONFIG=...` and exits
// 0. Up reads every KEY=VALUE line the launcher prints into Cluster.Env (an `export ` prefix and
// single or double quotes are accepted) and fails without TCHSM_CONFIG; the harness also takes
// TCHSM_MODULE, TCHSM_TOKEN_LABEL and TCHSM_PIN from there when a launcher prints them (`tchsm dev
// up` does not: the harness passes the label and PIN in UpArgs and builds libtchsm.so itself).
// A launcher that stays in the foreground works too: once it has printed TCHSM_CONFIG and then
// been quiet for a second it counts as ready, and Down sends its process group SIGTERM before
// running `dev down`. With Launcher.VHost set, Up gives the cluster a private RabbitMQ vhost
// (rabbitmqctl, passed as --amqp) and Down deletes it.
//
// Without -tchsm-launch the harness does not use this package: it signs through a cluster
// started by hand, given with -tchsm-module and -tchsm-config.
package cluster

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Sentinel errors.
var (
	ErrNoLauncher = errors.New("cluster: no cluster launcher (give -tchsm-launch, e.g. \"tchsm\" or \"go run ./cmd/tchsm\")")
	ErrLaunch     = errors.New("cluster: launcher failed")
)

// Launcher runs `<Command...> dev up|down`.
type Launcher struct {
	Command []string // e.g. {"tchsm"} or {"go", "run", "./cmd/tchsm"}
	UpArgs  []string // extra `dev up` flags, e.g. {"--token-label", "L", "--pin", "P"}
	// VHost, when set, makes Up create a private RabbitMQ vhost with this name prefix
	// (rabbitmqctl add_vhost + set_permissions for guest) and pass `--amqp <AMQPBase><vhost>`;
	// Down deletes it, so the shared broker keeps no queues from benchmark clusters.
	VHost    string
	AMQPBase string        // default amqp://guest:guest@127.0.0.1:5672/
	Timeout  time.Duration // for `dev up` to become ready (default 5 minutes: key generation)
	Log      io.Writer     // launcher's stderr goes here (nil: discarded)
}

// ParseCommand splits a -tchsm-launch flag value on spaces.
func ParseCommand(s string) []string { return strings.Fields(s) }

// Cluster is a running local cluster.
type Cluster struct {
	Dir  string
	K, N int
	Env  map[string]string

	l     Launcher
	vhost string    // private vhost to delete at Down
	cmd   *exec.Cmd // non-nil when `dev up` stayed in the foreground
	wait  chan error
	once  sync.Once
}

var envLine = regexp.MustCompile(`^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$`)

// ParseEnv reads KEY=VALUE lines; other lines are ignored.
func ParseEnv(line string, into map[string]string) {
	m := envLine.FindStringSubmatch(strings.TrimSpace(line))
	if m == nil {
		return
	}
	v := strings.TrimSpace(m[2])
	if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\'') {
		if v[0] == '"' {
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			} else {
				v = v[1 : len(v)-1]
			}
		} else {
			v = v[1 : len(v)-1]
		}
	}
	into[m[1]] = v
}

// Up starts a cluster of n nodes with threshold k in dir.
func (l Launcher) Up(ctx context.Context, dir string, k, n int) (*Cluster, error) {
	if len(l.Command) == 0 {
		return nil, ErrNoLauncher
	}
	if l.Timeout <= 0 {
		l.Timeout = 5 * time.Minute
	}
	args := append(append([]string{}, l.Command[1:]...), "dev", "up", "--dir", dir, "--k", strconv.Itoa(k), "--n", strconv.Itoa(n))
	args = append(args, l.UpArgs...)
	var vhost string
	if l.VHost != "" {
		var b [4]byte
		rand.Read(b[:])
		vhost = l.VHost + hex.EncodeToString(b[:])
		if err := rabbitmqctl("add_vhost", vhost); err != nil {
			return nil, err
		}
		if err := rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"); err != nil {
			rabbitmqctl("delete_vhost", vhost)
			return nil, err
		}
		base := l.AMQPBase
		if base == "" {
			base = "amqp://guest:guest@127.0.0.1:5672/"
		}
		args = append(args, "--amqp", base+vhost)
	}
	c, err := l.up(ctx, dir, k, n, args)
	if err != nil {
		if vhost != "" {
			rabbitmqctl("delete_vhost", vhost)
		}
		return nil, err
	}
	c.vhost = vhost
	return c, nil
}

func rabbitmqctl(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rabbitmqctl", append([]string{"-q"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: rabbitmqctl %s: %w: %s", ErrLaunch, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (l Launcher) up(ctx context.Context, dir string, k, n int, args []string) (*Cluster, error) {
	cmd := exec.Command(l.Command[0], args...)
	cmd.Stderr = l.Log
	if cmd.Stderr == nil {
		cmd.Stderr = io.Discard
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLaunch, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrLaunch, strings.Join(l.Command, " "), err)
	}
	c := &Cluster{Dir: dir, K: k, N: n, Env: map[string]string{}, l: l, wait: make(chan error, 1)}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.NewTimer(l.Timeout)
	defer deadline.Stop()
	var mu sync.Mutex
	quiet := time.NewTimer(time.Hour)
	defer quiet.Stop()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				err := cmd.Wait()
				if err != nil {
					return nil, fmt.Errorf("%w: dev up: %w", ErrLaunch, err)
				}
				if c.Env["TCHSM_CONFIG"] == "" {
					c.Down()
					return nil, fmt.Errorf("%w: dev up printed no TCHSM_CONFIG", ErrLaunch)
				}
				return c, nil // detached cluster
			}
			mu.Lock()
			ParseEnv(line, c.Env)
			mu.Unlock()
			if c.Env["TCHSM_CONFIG"] != "" {
				quiet.Reset(time.Second)
			}
		case <-quiet.C:
			// Foreground launcher: ready, keep draining its output.
			c.cmd = cmd
			go func() {
				for range lines {
				}
				c.wait <- cmd.Wait()
			}()
			return c, nil
		case <-deadline.C:
			killGroup(cmd)
			cmd.Wait()
			return nil, fmt.Errorf("%w: dev up not ready after %v", ErrLaunch, l.Timeout)
		case <-ctx.Done():
			killGroup(cmd)
			cmd.Wait()
			return nil, ctx.Err()
		}
	}
}

func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		// Negative pid: the launcher's own process group (Setpgid above), nothing else.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	}
}

// Down stops the cluster (idempotent).
func (c *Cluster) Down() error {
	var err error
	c.once.Do(func() {
		if c.cmd != nil {
			killGroup(c.cmd)
			select {
			case <-c.wait:
			case <-time.After(30 * time.Second):
				c.cmd.Process.Kill()
			}
		}
		args := append(append([]string{}, c.l.Command[1:]...), "dev", "down", "--dir", c.Dir, "--purge")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, c.l.Command[0], args...)
		cmd.Stderr = c.l.Log
		if out, e := cmd.Output(); e != nil {
			err = fmt.Errorf("%w: dev down: %w: %s", ErrLaunch, e, strings.TrimSpace(string(out)))
		}
		if c.vhost != "" {
			err = errors.Join(err, rabbitmqctl("delete_vhost", c.vhost))
		}
	})
	return err
}

// FromEnv returns the environment value for key, falling back to the process environment.
func (c *Cluster) FromEnv(key string) string {
	if c != nil {
		if v, ok := c.Env[key]; ok {
			return v
		}
	}
	return os.Getenv(key)
}

// NodePids returns the process ids of the nodes `tchsm dev up` started in dir (their
// nodes/*/process.pid files).
func NodePids(dir string) ([]int, error) {
	files, err := filepath.Glob(filepath.Join(dir, "nodes", "*", "process.pid"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("cluster: %s: not a pid", f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}
