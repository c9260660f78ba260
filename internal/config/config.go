// Package config defines the files tchsm processes read: one JSON file per process (node,
// dealer, client), written by `tchsm init` and `tchsm dev up`. Relative paths inside a file are
// relative to the file's own folder. Every field has a usable zero value where one makes sense,
// and Validate runs at start-up so that a bad file fails before anything connects.
//
// The package links no broker library and no transport (internal/transport turns an AMQP
// section into its own configuration with transport.FromConfig): the PKCS#11 token, a pure-Go
// core, takes its settings from here.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/tchsm/tchsm/internal/logging"
)

// ErrInvalid wraps every configuration error.
var ErrInvalid = errors.New("config: invalid configuration")

// EnvPassphrase overrides a node's passphrase file with the passphrase itself.
const EnvPassphrase = "TCHSM_PASSPHRASE"

// Duration is a time.Duration written as a string such as "10s" in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%w: duration must be a string like \"10s\"", ErrInvalid)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("%w: bad duration %q", ErrInvalid, s)
	}
	*d = Duration(v)
	return nil
}

// Or returns d, or def when d is zero.
func (d Duration) Or(def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return time.Duration(d)
}

// AMQP says how to reach the broker.
type AMQP struct {
	// URL is amqp://user:pass@host:port/vhost or amqps://...; $TCHSM_AMQP_URL overrides it
	// (transport.FromConfig applies this section).
	URL string `json:"url,omitempty"`
	// CAFile, CertFile and KeyFile configure TLS for amqps:// (PEM files).
	CAFile   string `json:"ca_file,omitempty"`
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	Prefetch int    `json:"prefetch,omitempty"`
}

// DefaultAMQPURL is the broker used when neither the file nor the environment name one.
const DefaultAMQPURL = "amqp://guest:guest@127.0.0.1:5672/"

// Node is a signing node's configuration (`tchsm node --config FILE`).
type Node struct {
	AMQP     AMQP   `json:"amqp"`
	Manifest string `json:"manifest"` // cluster manifest (JSON)
	Identity string `json:"identity"` // the node's identity file, encrypted with the passphrase
	Store    string `json:"store"`    // share store file
	// PassphraseFile holds the passphrase that encrypts the share store and the identity file;
	// $TCHSM_PASSPHRASE, when set, is used instead.
	PassphraseFile string `json:"passphrase_file,omitempty"`
	Workers        int    `json:"workers,omitempty"`      // signing goroutines; 0 means the number of CPUs
	MetricsAddr    string `json:"metrics_addr,omitempty"` // Prometheus /metrics and /healthz; "" disables
	// Pprof also serves Go's profiler (net/http/pprof) at /debug/pprof/ on metrics_addr. Profiles
	// hold stack traces and sizes, not memory contents; keep metrics_addr off public networks.
	Pprof    bool   `json:"pprof,omitempty"`
	LogLevel string `json:"log_level,omitempty"` // debug, info (default), warn, error
}

// Dealer is the dealer's configuration (`tchsm dealer --config FILE`, or used in-process).
type Dealer struct {
	AMQP     AMQP   `json:"amqp"`
	Manifest string `json:"manifest"`
	Identity string `json:"identity"`
	// PrimePool is how many safe primes per key size to keep ready in memory (0: 2; -1: no pool,
	// so no safe-prime search runs in the background and every key is generated on the spot).
	PrimePool int `json:"prime_pool,omitempty"`
	// PoolBits lists the key sizes the pool serves (default [2048]).
	PoolBits []int `json:"pool_bits,omitempty"`
	// AckTimeout bounds how long GenerateKey waits for every node to store its share (0: 15s).
	AckTimeout Duration `json:"ack_timeout,omitempty"`
	LogLevel   string   `json:"log_level,omitempty"`
}

// Client is a client's configuration: the PKCS#11 module (through $TCHSM_CONFIG), the CLI and
// the benchmark harness read it.
type Client struct {
	AMQP     AMQP   `json:"amqp"`
	Manifest string `json:"manifest"`
	Identity string `json:"identity"`
	// DealerConfig, when set, makes GenerateKey deal in this process with that dealer
	// configuration; otherwise GenerateKey asks the dealer service over AMQP.
	DealerConfig  string   `json:"dealer_config,omitempty"`
	SignTimeout   Duration `json:"sign_timeout,omitempty"`   // 0: 5s
	KeygenTimeout Duration `json:"keygen_timeout,omitempty"` // 0: 120s
	// Hedge is how long to wait for a slow node before asking one more (0: adaptive).
	Hedge Duration `json:"hedge,omitempty"`
	// Batch is the most sign requests sent to one node in one message (0: 16, 1: one request
	// per message, at most 64). Requests for a node accumulate only while BatchWindow messages
	// to it are already waiting for their answers (0: 2), so a client that signs one thing at a
	// time sends every request at once; a loaded one saves a message per share.
	Batch       int    `json:"batch,omitempty"`
	BatchWindow int    `json:"batch_window,omitempty"`
	LogLevel    string `json:"log_level,omitempty"`
	LogFile     string `json:"log_file,omitempty"` // "" means no log (a library must not write to the host's stdout)
	// PKCS11 is the PKCS#11 module's own section; see p11shim/README.md.
	PKCS11 json.RawMessage `json:"pkcs11,omitempty"`
}

// Load reads a JSON file into v (a *Node, *Dealer or *Client), rejects unknown fields, and
// makes relative paths absolute with respect to the file's folder.
func Load(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalid, path, err)
	}
	dir := filepath.Dir(path)
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	switch c := v.(type) {
	case *Node:
		for _, p := range []*string{&c.Manifest, &c.Identity, &c.Store, &c.PassphraseFile, &c.AMQP.CAFile, &c.AMQP.CertFile, &c.AMQP.KeyFile} {
			abs(p)
		}
		return c.Validate()
	case *Dealer:
		for _, p := range []*string{&c.Manifest, &c.Identity, &c.AMQP.CAFile, &c.AMQP.CertFile, &c.AMQP.KeyFile} {
			abs(p)
		}
		return c.Validate()
	case *Client:
		for _, p := range []*string{&c.Manifest, &c.Identity, &c.DealerConfig, &c.LogFile, &c.AMQP.CAFile, &c.AMQP.CertFile, &c.AMQP.KeyFile} {
			abs(p)
		}
		return c.Validate()
	}
	return nil
}

// Save writes v as indented JSON with the given mode.
func Save(path string, v any, mode os.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), mode)
}

func required(name, v string) error {
	if v == "" {
		return fmt.Errorf("%w: %s is required", ErrInvalid, name)
	}
	return nil
}

// Validate checks a node configuration.
func (c *Node) Validate() error {
	for _, f := range [][2]string{{"manifest", c.Manifest}, {"identity", c.Identity}, {"store", c.Store}} {
		if err := required(f[0], f[1]); err != nil {
			return err
		}
	}
	if c.Workers < 0 {
		return fmt.Errorf("%w: workers must not be negative", ErrInvalid)
	}
	return checkLevel(c.LogLevel)
}

// WorkerCount returns the configured number of workers or the number of CPUs.
func (c *Node) WorkerCount() int {
	if c.Workers > 0 {
		return c.Workers
	}
	return runtime.NumCPU()
}

// Passphrase returns the share-store passphrase from $TCHSM_PASSPHRASE or the passphrase file
// (trailing newline removed). It is an error to have neither.
func (c *Node) Passphrase() ([]byte, error) {
	if p := os.Getenv(EnvPassphrase); p != "" {
		return []byte(p), nil
	}
	if c.PassphraseFile == "" {
		return nil, fmt.Errorf("%w: no passphrase: set %s or passphrase_file", ErrInvalid, EnvPassphrase)
	}
	b, err := os.ReadFile(c.PassphraseFile)
	if err != nil {
		return nil, fmt.Errorf("%w: passphrase file: %v", ErrInvalid, err)
	}
	b = []byte(strings.TrimRight(string(b), "\r\n"))
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: passphrase file is empty", ErrInvalid)
	}
	return b, nil
}

// Validate checks a dealer configuration.
func (c *Dealer) Validate() error {
	for _, f := range [][2]string{{"manifest", c.Manifest}, {"identity", c.Identity}} {
		if err := required(f[0], f[1]); err != nil {
			return err
		}
	}
	if c.PrimePool < -1 || c.PrimePool > 64 {
		return fmt.Errorf("%w: prime_pool must be -1 (no pool) or 0..64", ErrInvalid)
	}
	for _, b := range c.PoolBits {
		if b < 1024 || b > 8192 || b%2 != 0 {
			return fmt.Errorf("%w: pool_bits: %d", ErrInvalid, b)
		}
	}
	return checkLevel(c.LogLevel)
}

// Validate checks a client configuration.
func (c *Client) Validate() error {
	for _, f := range [][2]string{{"manifest", c.Manifest}, {"identity", c.Identity}} {
		if err := required(f[0], f[1]); err != nil {
			return err
		}
	}
	if c.Batch < 0 || c.Batch > MaxBatch {
		return fmt.Errorf("%w: batch %d: 0 (default %d) to %d", ErrInvalid, c.Batch, DefaultBatch, MaxBatch)
	}
	if c.BatchWindow < 0 || c.BatchWindow > 1000 {
		return fmt.Errorf("%w: batch_window %d: 0 (default %d) to 1000", ErrInvalid, c.BatchWindow, DefaultBatchWindow)
	}
	return checkLevel(c.LogLevel)
}

// Batching defaults and the largest batch a node serves.
const (
	DefaultBatch       = 16
	DefaultBatchWindow = 2
	MaxBatch           = 64
)

// BatchSize is the configured batch size, or the default.
func (c *Client) BatchSize() int {
	if c.Batch > 0 {
		return c.Batch
	}
	return DefaultBatch
}

// BatchWindowSize is the configured batch window, or the default.
func (c *Client) BatchWindowSize() int {
	if c.BatchWindow > 0 {
		return c.BatchWindow
	}
	return DefaultBatchWindow
}

// checkLevel applies logging's one level policy at load time, so that a bad level fails
// before anything starts.
func checkLevel(l string) error {
	if _, err := logging.ParseLevel(l); err != nil {
		return fmt.Errorf("%w: log_level: %w", ErrInvalid, err)
	}
	return nil
}
