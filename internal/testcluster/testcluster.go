// Package testcluster runs a real tchsm cluster for tests: a private RabbitMQ vhost, a cluster
// folder made by clusterinit, and node and dealer processes of the real `tchsm` binary, which
// tests can kill and restart.
package testcluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/internal/clusterinit"
	"github.com/tchsm/tchsm/internal/config"
)

// Options configure a test cluster.
type Options struct {
	K, N    int
	Workers int // signing goroutines per node; 0: 2
	// DealerPool is the dealer process's prime_pool setting: 0 keeps the default, -1 turns the
	// pool off so no safe-prime search runs in the background (benchmarks: a pool refilling
	// after a key generation takes both cores for seconds).
	DealerPool int
	// NodeConfig, when set, edits node i's configuration (1-based) before it starts.
	NodeConfig func(i int, c *config.Node)
	// TokenLabel fills the client config's pkcs11 section (default "tchsm"); PIN is every
	// client's user PIN, installed on the nodes (default "1234").
	TokenLabel, PIN string
	// NoPIN installs no PIN on the nodes: they serve clients without a login, as clusters of
	// releases before node-checked PINs do (tests that forge raw requests as a client).
	NoPIN bool
	// Brokers, when set, is the broker cluster to run on (StartBrokers) instead of the
	// machine's broker; every process gets all of its nodes' URLs.
	Brokers *Brokers
	// BrokerUsers runs every process as its own least-privilege broker user (tchsm init's
	// broker users, created in the cluster's vhost with broker/setup.sh and deleted at the end)
	// instead of guest; AMQPURL stays guest's, for the test itself.
	BrokerUsers bool
	// Proxy puts a Proxy (Cluster.Proxy) between the machine's broker and every process of
	// the cluster, the test's clients included; not with Brokers.
	Proxy bool
	// Bin, when set, is the tchsm binary the nodes and the dealer run (ReleaseBinary: an older
	// release's); Cluster.StartNodeBin and StartDealerBin run another one later.
	Bin string
	// InitBin, when set, makes the cluster folder with that binary's own `tchsm init` (an
	// older release's, as an upgraded cluster was made) and leaves every file as it wrote it:
	// configuration edits (Workers, NodeConfig, the pkcs11 section) are not made, but for
	// DealerPool's prime_pool,
	// and the processes get the cluster's vhost from $TCHSM_AMQP_URL. Not with BrokerUsers,
	// Brokers or Proxy.
	InitBin string
}

// Cluster is a running test cluster.
type Cluster struct {
	t            testing.TB
	Dir          string
	Layout       *clusterinit.Layout
	VHost        string
	AMQPURL      string
	ClientConfig string // client-1's config (an admin client), with a pkcs11 section
	SignerConfig string // signer-1's config (a signer client), with a pkcs11 section
	Proxy        *Proxy // with Options.Proxy
	PIN          string
	Bin          string

	brokerUsers bool
	noPIN       bool
	workers     int

	mu    sync.Mutex
	procs map[string]*exec.Cmd
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds the tchsm command once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tchsm-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "tchsm")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/tchsm/tchsm/cmd/tchsm")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

var (
	moduleOnce sync.Once
	modulePath string
	moduleErr  error
)

// Module builds libtchsm.so (the PKCS#11 module) once per test process and returns its path.
func Module(t testing.TB) string {
	t.Helper()
	moduleOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tchsm-module-")
		if err != nil {
			moduleErr = err
			return
		}
		modulePath = filepath.Join(dir, "libtchsm.so")
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", modulePath, "github.com/tchsm/tchsm/p11shim")
		if out, err := cmd.CombinedOutput(); err != nil {
			moduleErr = fmt.Errorf("go build -buildmode=c-shared: %v\n%s", err, out)
		}
	})
	if moduleErr != nil {
		t.Fatal(moduleErr)
	}
	return modulePath
}

// RemoveBuilds removes what Binary and Module built; a TestMain calls it after m.Run.
func RemoveBuilds() {
	for _, p := range []string{binPath, modulePath} {
		if p != "" {
			os.RemoveAll(filepath.Dir(p))
		}
	}
}

// RabbitMQCtl runs rabbitmqctl and fails the test on error.
func RabbitMQCtl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", append([]string{"-q"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// VHost creates a private vhost for guest, deleted at the end of the test, and returns its URL.
func VHost(t testing.TB) (name, url string) {
	t.Helper()
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		t.Skip("rabbitmqctl not installed (run scripts/deps.sh)")
	}
	b := make([]byte, 4)
	rand.Read(b)
	name = "tchsm-test-" + hex.EncodeToString(b)
	RabbitMQCtl(t, "add_vhost", name)
	t.Cleanup(func() { exec.Command("rabbitmqctl", "-q", "delete_vhost", name).Run() })
	RabbitMQCtl(t, "set_permissions", "-p", name, "guest", ".*", ".*", ".*")
	return name, "amqp://guest:guest@127.0.0.1:5672/" + name
}

// Start creates and starts a cluster; everything stops and is removed when the test ends.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Workers == 0 {
		o.Workers = 2
	}
	if o.TokenLabel == "" {
		o.TokenLabel = "tchsm"
	}
	if o.PIN == "" {
		o.PIN = "1234"
	}
	c := &Cluster{t: t, Dir: t.TempDir(), Bin: Binary(t), procs: map[string]*exec.Cmd{}, PIN: o.PIN, brokerUsers: o.BrokerUsers, noPIN: o.NoPIN, workers: o.Workers}
	if o.Bin != "" {
		c.Bin = o.Bin
	}
	initialPIN := o.PIN
	if o.NoPIN {
		initialPIN = ""
	}
	if o.Brokers != nil {
		c.VHost = o.Brokers.VHost(t)
		c.AMQPURL = strings.Join(o.Brokers.URLs(c.VHost), ",")
	} else {
		c.VHost, c.AMQPURL = VHost(t)
	}
	if o.Proxy && o.Brokers == nil {
		c.Proxy = StartProxy(t, "127.0.0.1:5672")
		c.AMQPURL = "amqp://guest:guest@" + c.Proxy.Addr() + "/" + c.VHost
	}
	if o.InitBin != "" {
		if o.BrokerUsers || o.Brokers != nil || o.Proxy {
			t.Fatal("testcluster: InitBin with BrokerUsers, Brokers or Proxy")
		}
		c.initWith(o.InitBin, o.K, o.N, initialPIN, o.DealerPool)
		t.Cleanup(c.stopAll)
		for i := 1; i <= o.N; i++ {
			c.StartNode(i)
		}
		c.StartDealerBin(c.Bin)
		c.WaitUp(o.N, 30*time.Second)
		return c
	}
	l, err := clusterinit.Create(c.Dir, clusterinit.Options{K: o.K, N: o.N, Signers: 1, AMQPURL: c.AMQPURL, OneHost: true, BrokerUsers: o.BrokerUsers, PIN: initialPIN})
	if err != nil {
		t.Fatal(err)
	}
	c.Layout = l
	if o.BrokerUsers {
		c.setupBrokerUsers(o.Brokers)
	}
	c.ClientConfig, c.SignerConfig = l.Clients[0], l.Signers[0]
	for i, p := range l.Nodes {
		var nc config.Node
		if err := config.Load(p, &nc); err != nil {
			t.Fatal(err)
		}
		raw := config.Node{AMQP: c.amqpSection(nc.AMQP), Manifest: nc.Manifest, Identity: nc.Identity,
			Store: nc.Store, PassphraseFile: nc.PassphraseFile, InitialPINs: nc.InitialPINs, Workers: o.Workers, LogLevel: "debug"}
		if o.NodeConfig != nil {
			o.NodeConfig(i+1, &raw)
		}
		if err := config.Save(p, raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if o.DealerPool != 0 {
		var dc config.Dealer
		if err := config.Load(l.Dealer, &dc); err != nil {
			t.Fatal(err)
		}
		dc.PrimePool = o.DealerPool
		if err := config.Save(l.Dealer, dc, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{c.ClientConfig, c.SignerConfig} {
		if err := c.addPKCS11(p, o.TokenLabel); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(c.stopAll)
	for i := 1; i <= o.N; i++ {
		c.StartNode(i)
	}
	c.start("dealer", "dealer", "-config", l.Dealer)
	c.WaitUp(o.N, 30*time.Second)
	return c
}

// amqpSection is a process's amqp section: its own (written by clusterinit) with broker
// users, else guest's of the cluster's vhost.
func (c *Cluster) amqpSection(own config.AMQP) config.AMQP {
	if c.brokerUsers {
		return own
	}
	return amqpSection(c.AMQPURL)
}

// setupBrokerUsers runs `tchsm broker setup` (on broker node 1 of b, or the machine's
// broker) and `tchsm broker remove` at the end of the test.
func (c *Cluster) setupBrokerUsers(b *Brokers) {
	c.t.Helper()
	env := os.Environ()
	if b != nil {
		env = append(env, "RABBITMQCTL=bash "+b.sh+" ctl "+b.Dir+" 1")
	}
	run := func(sub string) error {
		cmd := exec.Command(c.Bin, "broker", sub, "-dir", c.Dir)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("tchsm broker %s: %v\n%s", sub, err, out)
		}
		return nil
	}
	c.t.Cleanup(func() {
		if err := run("remove"); err != nil {
			c.t.Log(err)
		}
	})
	if err := run("setup"); err != nil {
		c.t.Fatal(err)
	}
}

// amqpSection is the amqp section for one broker URL or a comma-separated list of them.
func amqpSection(urls string) config.AMQP {
	if us := config.SplitURLs(urls); len(us) > 1 {
		return config.AMQP{URLs: us}
	}
	return config.AMQP{URL: urls}
}

// addPKCS11 gives a client file the module's section; the PIN is on the nodes.
func (c *Cluster) addPKCS11(path, label string) error {
	var cc config.Client
	if err := config.Load(path, &cc); err != nil {
		return err
	}
	logs := ""
	if path != c.ClientConfig {
		logs = "-" + filepath.Base(filepath.Dir(path))
	}
	sec := &config.PKCS11{TokenLabel: label, LogFile: filepath.Join(c.Dir, "pkcs11"+logs+".log")}
	raw := config.Client{AMQP: c.amqpSection(cc.AMQP), Manifest: cc.Manifest, Identity: cc.Identity,
		PKCS11: sec, LogFile: filepath.Join(c.Dir, "client"+logs+".log"), LogLevel: "debug"}
	return config.Save(path, raw, 0o600)
}

func (c *Cluster) start(name string, args ...string) { c.startBin(c.Bin, name, args...) }

// initWith makes the cluster folder with bin's `tchsm init` (one admin and one signer client,
// the PIN installed when pin is set, no broker users) and reads its layout from the paths
// `tchsm init` has always written.
func (c *Cluster) initWith(bin string, k, n int, pin string, pool int) {
	c.t.Helper()
	args := []string{"init", "-dir", c.Dir, "-k", fmt.Sprint(k), "-n", fmt.Sprint(n), "-clients", "1", "-signers", "1",
		"-amqp", c.AMQPURL, "-broker-users=false"}
	if pin != "" {
		pf := filepath.Join(c.t.TempDir(), "pin")
		if err := os.WriteFile(pf, []byte(pin+"\n"), 0o600); err != nil {
			c.t.Fatal(err)
		}
		args = append(args, "-pin-file", pf)
	}
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		c.t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
	}
	l := &clusterinit.Layout{Dir: c.Dir, Manifest: filepath.Join(c.Dir, "manifest.json"),
		Dealer:  filepath.Join(c.Dir, "dealer", "dealer.json"),
		Clients: []string{filepath.Join(c.Dir, "clients", clusterinit.ClientID(1), "client.json")},
		Signers: []string{filepath.Join(c.Dir, "clients", clusterinit.SignerID(1), "client.json")}}
	for i := 1; i <= n; i++ {
		l.Nodes = append(l.Nodes, filepath.Join(c.Dir, "nodes", clusterinit.NodeID(i), "node.json"))
	}
	for _, p := range append(append([]string{l.Manifest, l.Dealer}, l.Clients...), append(l.Signers, l.Nodes...)...) {
		if _, err := os.Stat(p); err != nil {
			c.t.Fatalf("%s init wrote no %s: %v", bin, p, err)
		}
	}
	if pool != 0 {
		// Edited as JSON, keeping every other field as the release wrote it.
		raw, err := os.ReadFile(l.Dealer)
		var dc map[string]any
		if err == nil {
			err = json.Unmarshal(raw, &dc)
		}
		if err != nil {
			c.t.Fatalf("dealer config %s: %v", l.Dealer, err)
		}
		dc["prime_pool"] = pool
		if raw, err = json.MarshalIndent(dc, "", "  "); err != nil {
			c.t.Fatal(err)
		}
		if err := os.WriteFile(l.Dealer, raw, 0o600); err != nil {
			c.t.Fatal(err)
		}
	}
	c.Layout = l
	c.ClientConfig, c.SignerConfig = l.Clients[0], l.Signers[0]
}

// startBin starts process name running bin with args.
func (c *Cluster) startBin(bin, name string, args ...string) {
	c.t.Helper()
	logf, err := os.OpenFile(filepath.Join(c.Dir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = os.Environ()
	if !c.brokerUsers {
		cmd.Env = append(cmd.Env, "TCHSM_AMQP_URL="+c.AMQPURL)
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	logf.Close()
	go cmd.Wait()
	c.mu.Lock()
	c.procs[name] = cmd
	c.mu.Unlock()
}

func nodeName(i int) string { return clusterinit.NodeID(i) }

// StartNode starts node i (1-based) if it is not running.
func (c *Cluster) StartNode(i int) {
	c.t.Helper()
	c.mu.Lock()
	_, running := c.procs[nodeName(i)]
	c.mu.Unlock()
	if !running {
		c.start(nodeName(i), "node", "-config", c.Layout.Nodes[i-1])
	}
}

// StartNodeBin starts node i (1-based), if it is not running, with the tchsm binary bin (an
// upgrade or a rollback: the same configuration and data directory).
func (c *Cluster) StartNodeBin(i int, bin string) {
	c.t.Helper()
	c.mu.Lock()
	_, running := c.procs[nodeName(i)]
	c.mu.Unlock()
	if !running {
		c.startBin(bin, nodeName(i), "node", "-config", c.Layout.Nodes[i-1])
	}
}

// StopDealer stops the dealer with SIGTERM and waits for it to exit.
func (c *Cluster) StopDealer() { c.signal("dealer", syscall.SIGTERM) }

// StartDealerBin starts the dealer, if it is not running, with the tchsm binary bin.
func (c *Cluster) StartDealerBin(bin string) {
	c.t.Helper()
	c.mu.Lock()
	_, running := c.procs["dealer"]
	c.mu.Unlock()
	if !running {
		c.startBin(bin, "dealer", "dealer", "-config", c.Layout.Dealer)
	}
}

// ReplaceNode replaces node i as an operator replaces a lost node: the node is killed and its
// folder (its store with it) deleted, clusterinit.ReplaceNode puts a new identity at index i
// into the manifest (with the cluster's PIN for every client), and every process (nodes and
// dealer) restarts with the new manifest, the new node with an empty store. It returns the new
// node's id. Clients opened before keep the old manifest: open new ones. Not with
// Options.BrokerUsers (the new identity has no broker user).
func (c *Cluster) ReplaceNode(i int) string {
	c.t.Helper()
	if c.brokerUsers {
		c.t.Fatal("testcluster: ReplaceNode with broker users")
	}
	c.KillNode(i)
	if err := os.RemoveAll(filepath.Dir(c.Layout.Nodes[i-1])); err != nil {
		c.t.Fatal(err)
	}
	pin := c.PIN
	if c.noPIN {
		pin = ""
	}
	r, err := clusterinit.ReplaceNode(c.Dir, i, "", pin)
	if err != nil {
		c.t.Fatal(err)
	}
	var nc config.Node
	if err := config.Load(r.NodeConfig, &nc); err != nil {
		c.t.Fatal(err)
	}
	raw := config.Node{AMQP: c.amqpSection(nc.AMQP), Manifest: nc.Manifest, Identity: nc.Identity, Store: nc.Store,
		PassphraseFile: nc.PassphraseFile, InitialPINs: nc.InitialPINs, Workers: c.workers, LogLevel: "debug"}
	if err := config.Save(r.NodeConfig, raw, 0o600); err != nil {
		c.t.Fatal(err)
	}
	c.Layout.Nodes[i-1] = r.NodeConfig
	c.RestartAll()
	return r.NewID
}

// RestartAll stops every node and the dealer (SIGTERM), starts them again, and waits until
// every node answers: how every process picks up a new manifest.
func (c *Cluster) RestartAll() {
	c.t.Helper()
	for i := range c.Layout.Nodes {
		c.StopNode(i + 1)
	}
	c.signal("dealer", syscall.SIGTERM)
	for i := range c.Layout.Nodes {
		c.StartNode(i + 1)
	}
	c.start("dealer", "dealer", "-config", c.Layout.Dealer)
	c.WaitUp(len(c.Layout.Nodes), 30*time.Second)
}

// KillNode kills node i with SIGKILL, as a crash would.
func (c *Cluster) KillNode(i int) { c.signal(nodeName(i), syscall.SIGKILL) }

// StopNode stops node i with SIGTERM and waits for it to exit.
func (c *Cluster) StopNode(i int) { c.signal(nodeName(i), syscall.SIGTERM) }

// PauseNode stops node i with SIGSTOP: the process stays, with its broker connection and its
// rpc queue, but answers nothing (a hung node, or one cut off behind a network partition that
// the broker has not noticed yet). ResumeNode continues it; the test's end does too.
func (c *Cluster) PauseNode(i int) { c.kill(nodeName(i), syscall.SIGSTOP) }

// ResumeNode continues node i after PauseNode (SIGCONT).
func (c *Cluster) ResumeNode(i int) { c.kill(nodeName(i), syscall.SIGCONT) }

// kill sends sig to a running process and leaves it running.
func (c *Cluster) kill(name string, sig syscall.Signal) {
	c.t.Helper()
	c.mu.Lock()
	cmd := c.procs[name]
	c.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		c.t.Fatalf("%s is not running", name)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		c.t.Fatalf("signal %v to %s: %v", sig, name, err)
	}
}

func (c *Cluster) signal(name string, sig syscall.Signal) {
	c.mu.Lock()
	cmd := c.procs[name]
	delete(c.procs, name)
	c.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	cmd.Process.Signal(sig)
	if sig != syscall.SIGKILL {
		cmd.Process.Signal(syscall.SIGCONT) // a paused process (PauseNode) handles nothing else
	}
	for i := 0; i < 100; i++ {
		if cmd.Process.Signal(syscall.Signal(0)) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
}

// Pid returns the pid of a running process ("node-1", "dealer"), or 0.
func (c *Cluster) Pid(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cmd := c.procs[name]; cmd != nil && cmd.Process != nil {
		return cmd.Process.Pid
	}
	return 0
}

func (c *Cluster) stopAll() {
	c.mu.Lock()
	names := make([]string, 0, len(c.procs))
	for n := range c.procs {
		names = append(names, n)
	}
	c.mu.Unlock()
	for _, n := range names {
		c.signal(n, syscall.SIGTERM)
	}
	if c.t.Failed() {
		c.DumpLogs()
	}
}

// DumpLogs prints the tail of every process log into the test log.
func (c *Cluster) DumpLogs() {
	logs, _ := filepath.Glob(filepath.Join(c.Dir, "*.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		c.t.Logf("---- %s\n%s", filepath.Base(l), bytes.TrimSpace(b))
	}
}

// Client opens a client with client-1's config, logged in with c.PIN; it is closed at the end
// of the test.
func (c *Cluster) Client() *client.Client { return c.Open(c.ClientConfig, true) }

// Signer opens a client with signer-1's config (role signer), logged in with c.PIN; it is
// closed at the end of the test.
func (c *Cluster) Signer() *client.Client { return c.Open(c.SignerConfig, true) }

// Open opens a client with the config at path, logged in with c.PIN when login is set; it is
// closed at the end of the test.
func (c *Cluster) Open(path string, login bool) *client.Client {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := client.Open(ctx, path)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	if login && !c.noPIN {
		if _, err := cl.Login(ctx, []byte(c.PIN)); err != nil {
			c.t.Fatalf("login with %s: %v", path, err)
		}
	}
	return cl
}

// WaitUp waits until at least want nodes answer a health request.
func (c *Cluster) WaitUp(want int, timeout time.Duration) {
	c.t.Helper()
	cl := c.Open(c.ClientConfig, false) // health needs no login
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := cl.Status(ctx)
		cancel()
		up := 0
		for _, s := range st {
			if s.OK {
				up++
			}
		}
		if err == nil && up >= want {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("only %d of %d nodes up after %v (err %v)", up, want, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// NumCPU is the number of cores the nodes share.
func NumCPU() int { return runtime.NumCPU() }

// P11KitModuleDir makes a new folder that P11KitCommand puts in place of p11-kit's module
// folder, with one module file per token: for tchsm the file the project ships
// (deploy/p11-kit/tchsm.module) with its `module:` line pointing at the built library.
func P11KitModuleDir(t testing.TB, tokens ...Token) string {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	shipped, err := os.ReadFile(filepath.Join(filepath.Dir(self), "..", "..", "deploy", "p11-kit", "tchsm.module"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tk := range tokens {
		text := "module: " + tk.Module + "\n"
		if tk.P11KitName == "tchsm" {
			var lines []string
			for _, l := range strings.Split(string(shipped), "\n") {
				if strings.HasPrefix(l, "module:") {
					l = "module: " + tk.Module
				}
				lines = append(lines, l)
			}
			text = strings.Join(lines, "\n")
		}
		if err := os.WriteFile(filepath.Join(dir, tk.P11KitName+".module"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// P11KitModules is p11-kit's module folder on Debian.
const P11KitModules = "/usr/share/p11-kit/modules"

// P11KitCommand runs name with p11-kit seeing only the module files of modDir: in a private
// mount namespace where modDir is bind-mounted over P11KitModules. The machine's p11-kit
// configuration is never touched (p11-kit ignores a user configuration when run as root). It
// needs root and unshare.
func P11KitCommand(ctx context.Context, modDir, name string, args ...string) *exec.Cmd {
	wrapped := append([]string{"-m", "--propagation", "private", "--", "sh", "-c",
		`mount --bind "$0" ` + P11KitModules + ` && exec "$@"`, modDir, name}, args...)
	return exec.CommandContext(ctx, "unshare", wrapped...)
}

// Token is a PKCS#11 token the signer suites sign with: its module, token label, user PIN, the
// environment the signer needs, and the module's p11-kit name (for signers that load modules
// through p11-kit).
type Token struct {
	Name, Module, Label, PIN string
	Env                      []string
	P11KitName               string
}

// Token returns the cluster's token through the PKCS#11 module so.
func (c *Cluster) Token(so string) Token {
	return Token{Name: "tchsm", Module: so, Label: "tchsm", PIN: c.PIN,
		Env: []string{"TCHSM_CONFIG=" + c.ClientConfig}, P11KitName: "tchsm"}
}

// SoftHSM2Module is Debian's SoftHSM2 module.
const SoftHSM2Module = "/usr/lib/softhsm/libsofthsm2.so"

// SoftHSM2 makes a fresh SoftHSM2 token in a temporary folder, for comparing a signer's speed
// with tchsm in the same run. It skips the test when SoftHSM2 is not installed.
func SoftHSM2(t testing.TB) Token {
	t.Helper()
	if _, err := os.Stat(SoftHSM2Module); err != nil {
		t.Skipf("SoftHSM2 not installed: %v", err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.MkdirAll(filepath.Join(dir, "tokens"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+filepath.Join(dir, "tokens")+"\nobjectstore.backend = file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tk := Token{Name: "SoftHSM2", Module: SoftHSM2Module, Label: "softhsm", PIN: "1234",
		Env: []string{"SOFTHSM2_CONF=" + conf}, P11KitName: "softhsm2"}
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", tk.Label, "--pin", tk.PIN, "--so-pin", tk.PIN)
	cmd.Env = append(os.Environ(), tk.Env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	return tk
}

// Daemon is a signer process a test started with StartDaemon.
type Daemon struct {
	done chan struct{}
	err  error
}

// Done is closed when the process has exited.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Err is the process's exit error, once Done is closed.
func (d *Daemon) Err() error { return d.err }

// StartDaemon starts cmd (a DNS signer) in a process group of its own, its output appended to
// logPath. At test cleanup it is stopped (SIGTERM, SIGKILL after 10 s) and, if the test failed,
// its log is printed.
func StartDaemon(t testing.TB, cmd *exec.Cmd, logPath string) *Daemon {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	d := &Daemon{done: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		logf.Close()
		close(d.done)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-d.done
		}
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			t.Logf("%s log:\n%s", filepath.Base(cmd.Path), out)
		}
	})
	return d
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WriteZone writes a zone file for zone with records data records to path
// (e2e/opendnssec/zonegen.sh: SOA, NS and glue, then A/AAAA/TXT/MX in turn).
func WriteZone(t testing.TB, path, zone string, records int) {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	gen := filepath.Join(filepath.Dir(self), "..", "..", "e2e", "opendnssec", "zonegen.sh")
	out, err := exec.Command(gen, zone, fmt.Sprint(records)).Output()
	if err != nil {
		t.Fatalf("zonegen.sh: %v", err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}
