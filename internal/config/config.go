// Package config defines the files tchsm processes read: one JSON file per process (node,
// dealer, client), written by `tchsm init` and `tchsm dev up`. Relative paths inside a file are
// relative to the file's own folder. Every field has a usable zero value where one makes sense,
// and Validate runs at start-up so that a bad file fails before anything connects.
//
// The package links no broker library and no transport (internal/transport turns an AMQP
// section into its own configuration with rabbitmq.FromConfig): the PKCS#11 token, a pure-Go
// core, takes its settings from here.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tchsm/tchsm/internal/logging"
	"github.com/tchsm/tchsm/internal/pin"
)

// ErrInvalid wraps every configuration error.
var ErrInvalid = errors.New("config: invalid configuration")

// EnvPassphrase overrides a node's passphrase file with the passphrase itself. `tchsm node`
// does not keep it in its environment (/proc/PID/environ): it re-executes itself without it,
// handing the passphrase over on a pipe named by EnvPassphraseFD.
const EnvPassphrase = "TCHSM_PASSPHRASE"

// EnvPassphraseFD names an open file descriptor to read the passphrase from (then closed).
const EnvPassphraseFD = "TCHSM_PASSPHRASE_FD"

// CredentialPassphrase is the name of the systemd credential holding a node's passphrase
// (LoadCredential=passphrase:FILE), found in $CREDENTIALS_DIRECTORY.
const CredentialPassphrase = "passphrase"

// maxPassphrase bounds a passphrase read from a file or a descriptor.
const maxPassphrase = 4096

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
	// (rabbitmq.FromConfig applies this section).
	URL string `json:"url,omitempty"`
	// URLs lists the nodes of one RabbitMQ cluster (same users, vhost and TLS settings); a
	// process connects to one of them and fails over to the others. URL, when set too, is
	// tried as one more. $TCHSM_AMQP_URL, when set, replaces both and may hold a
	// comma-separated list.
	URLs []string `json:"urls,omitempty"`
	// CAFile, CertFile and KeyFile configure TLS for amqps:// (PEM files).
	CAFile   string `json:"ca_file,omitempty"`
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	Prefetch int    `json:"prefetch,omitempty"`
}

// SplitURLs splits a comma-separated list of broker URLs ($TCHSM_AMQP_URL, the -amqp flags).
// A comma starts a new URL only where an amqp:// or amqps:// follows it, so a password that
// holds a comma survives; blanks around the URLs are dropped.
func SplitURLs(s string) []string {
	var us []string
	for s != "" {
		cut := len(s)
		for i := 0; i < len(s); i++ {
			if s[i] != ',' {
				continue
			}
			rest := strings.TrimLeft(s[i+1:], " \t")
			if strings.HasPrefix(rest, "amqp://") || strings.HasPrefix(rest, "amqps://") || rest == "" {
				cut = i
				break
			}
		}
		if u := strings.Trim(s[:cut], " \t,"); u != "" {
			us = append(us, u)
		}
		if cut == len(s) {
			break
		}
		s = s[cut+1:]
	}
	return us
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
	// DeletedKeyGrace is how long the node keeps a deleted key's share (encrypted, in its
	// store) so that `tchsm keys restore` can bring it back (0: DefaultDeletedKeyGrace).
	DeletedKeyGrace Duration `json:"deleted_key_grace,omitempty"`
	// SigningPolicy is the DNSSEC signing policy this node enforces (internal/dnspolicy); nil:
	// none, every key signs as before.
	SigningPolicy *SigningPolicy `json:"signing_policy,omitempty"`
	// PINMaxFailures is how many consecutive wrong PINs lock a client on this node until an
	// admin client unlocks it (0: DefaultPINMaxFailures).
	PINMaxFailures int `json:"pin_max_failures,omitempty"`
	// InitialPINs is the file `tchsm init -pin-file` writes beside the node's identity: every
	// client's first PIN, HPKE-encrypted to this node (trust.PINPurposeInitial). At start the
	// node installs each one for a client it holds no PIN for yet; a PIN changed since is kept.
	InitialPINs string `json:"initial_pins,omitempty"`
}

// SigningPolicy is a node's DNSSEC signing policy: the node's operator's own, never the
// client's. A key gets the first entry of Keys that matches it, or else Default; a key that
// gets none (or an entry with "off") has no policy and signs whatever it is asked, as before.
type SigningPolicy struct {
	Default *KeyPolicy  `json:"default,omitempty"`
	Keys    []KeyPolicy `json:"keys,omitempty"`
}

// KeyPolicy is the policy of the keys it matches. Zero fields take the defaults below (they
// are not inherited from another entry). Times are checked with RFC 1982 serial arithmetic
// against the node's own clock.
type KeyPolicy struct {
	// KeyID matches one key by its id; Label matches CKA_LABELs with a path.Match pattern
	// ("ksk-*"). An entry of Keys has exactly one of them; Default has neither.
	KeyID string `json:"key_id,omitempty"`
	Label string `json:"label,omitempty"`
	// Off: the matched keys have no policy (an exception to Default).
	Off bool `json:"off,omitempty"`
	// MaxValidity bounds expiration − inception (0: DefaultMaxValidity).
	MaxValidity Duration `json:"max_validity,omitempty"`
	// MaxBackdate bounds how far the inception lies before the node's clock (0:
	// DefaultMaxBackdate).
	MaxBackdate Duration `json:"max_backdate,omitempty"`
	// MaxAhead bounds how far the expiration lies after the node's clock (0: DefaultMaxAhead).
	MaxAhead Duration `json:"max_ahead,omitempty"`
	// Zones are the signer's names allowed, exactly ("example.test"); empty: any.
	Zones []string `json:"zones,omitempty"`
	// Types are the types covered allowed ("SOA", "DNSKEY", "TYPE65534"); empty: any.
	Types []string `json:"types,omitempty"`
	// AllowDigestOnly lets requests without the message through (CKM_RSA_PKCS over a DigestInfo,
	// what OpenDNSSEC, Knot and BIND send for RSA): the policy is then advisory for them, logged
	// but not enforced. Off by default: such requests are refused.
	AllowDigestOnly bool `json:"allow_digest_only,omitempty"`
}

// Defaults of a KeyPolicy.
const (
	// DefaultMaxValidity is 93 days: no mainstream signer's default (14 to 30 days) comes near.
	DefaultMaxValidity = 93 * 24 * time.Hour
	// DefaultMaxBackdate is 15 days: PowerDNS 4.7 dates its inceptions a week before the start
	// of the current week (Thursday 00:00 UTC), so up to 14 days back (and expires them two weeks
	// after that start); OpenDNSSEC, Knot and BIND date them back by about an hour.
	DefaultMaxBackdate = 15 * 24 * time.Hour
	// DefaultMaxAhead is 93 days.
	DefaultMaxAhead = 93 * 24 * time.Hour
)

func (p *KeyPolicy) validate(name string, entry bool) error {
	switch {
	case entry && (p.KeyID == "") == (p.Label == ""):
		return fmt.Errorf("%w: %s: give exactly one of key_id and label", ErrInvalid, name)
	case !entry && (p.KeyID != "" || p.Label != ""):
		return fmt.Errorf("%w: %s: the default matches every key; key_id and label belong to \"keys\"", ErrInvalid, name)
	}
	if _, err := path.Match(p.Label, ""); err != nil {
		return fmt.Errorf("%w: %s: label pattern %q: %v", ErrInvalid, name, p.Label, err)
	}
	for _, d := range []struct {
		f string
		v Duration
	}{{"max_validity", p.MaxValidity}, {"max_backdate", p.MaxBackdate}, {"max_ahead", p.MaxAhead}} {
		// RRSIG times are 32-bit serial numbers: differences of 2^31 s (68 years) or more mean nothing.
		if time.Duration(d.v) >= (1<<31)*time.Second {
			return fmt.Errorf("%w: %s: %s must be below 68 years", ErrInvalid, name, d.f)
		}
	}
	return nil
}

// Validate checks the form of a policy; internal/dnspolicy checks the zone names and types
// when the node compiles it at start.
func (sp *SigningPolicy) Validate() error {
	if sp.Default != nil {
		if err := sp.Default.validate("signing_policy.default", false); err != nil {
			return err
		}
	}
	for i := range sp.Keys {
		if err := sp.Keys[i].validate(fmt.Sprintf("signing_policy.keys[%d]", i), true); err != nil {
			return err
		}
	}
	return nil
}

// DefaultDeletedKeyGrace is how long a node keeps a deleted key's share by default.
const DefaultDeletedKeyGrace = 7 * 24 * time.Hour

// Grace returns the node's grace period for deleted keys.
// DefaultPINMaxFailures is Node.PINMaxFailures's default.
const DefaultPINMaxFailures = 10

// MaxPINFailures bounds Node.PINMaxFailures.
const MaxPINFailures = 1000

// PINLimit is PINMaxFailures with its default.
func (c *Node) PINLimit() int {
	if c.PINMaxFailures == 0 {
		return DefaultPINMaxFailures
	}
	return c.PINMaxFailures
}

func (c *Node) Grace() time.Duration { return c.DeletedKeyGrace.Or(DefaultDeletedKeyGrace) }

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
	DealerConfig string `json:"dealer_config,omitempty"`
	// SignTimeout is the deadline of a signature whose caller gives none (0: DefaultSignTimeout),
	// and of the PKCS#11 module's C_Sign unless its section sets its own.
	SignTimeout Duration `json:"sign_timeout,omitempty"`
	// KeygenTimeout is the same for key generation (0: DefaultKeygenTimeout).
	KeygenTimeout Duration `json:"keygen_timeout,omitempty"`
	// Hedge is how long to wait for a slow node before asking one more (0: adaptive).
	Hedge Duration `json:"hedge,omitempty"`
	// Batch is the most sign requests sent to one node in one message (0: 16, 1: one request
	// per message, at most 64). Requests for a node accumulate only while BatchWindow messages
	// to it are already waiting for their answers, so a client that signs one thing at a time
	// sends every request at once; a loaded one saves a message per share. 0: adaptive, two
	// messages, or one while the node is saturated (its round trips more than three times its
	// floor: a second message would only wait behind the first).
	Batch       int    `json:"batch,omitempty"`
	BatchWindow int    `json:"batch_window,omitempty"`
	LogLevel    string `json:"log_level,omitempty"`
	LogFile     string `json:"log_file,omitempty"` // "" means no log (a library must not write to the host's stdout)
	// PKCS11 is the PKCS#11 module's own section (nil: none, all defaults); see
	// p11shim/README.md. The module reads the file once, with Load, and takes the token's
	// settings from TokenSettings.
	PKCS11 *PKCS11 `json:"pkcs11,omitempty"`
}

// Defaults of the client and the PKCS#11 token, stated once for both.
const (
	// DefaultSignTimeout is the deadline of one signature: the client's when its caller gives
	// none, and the PKCS#11 module's for C_Sign. It is 10 s, not less, because it is not what
	// keeps signatures fast: a signature takes milliseconds, and the hedging asks one more node
	// after a hedge delay (a slow or silent node costs that delay, not the deadline). The
	// deadline only decides when to give up on a cluster with fewer than k reachable nodes or
	// on a broker that is restarting (the transport redials with a backoff of up to 5 s), and
	// a signer such as OpenDNSSEC's signerd gains nothing from failing sooner: it waits in a
	// worker thread, and a failed signature fails that zone's run, which it retries later.
	// 10 s is also what the module always used and the signer tests (e2e/) ran with.
	DefaultSignTimeout = 10 * time.Second
	// DefaultKeygenTimeout bounds one key generation (a safe-prime search and the dealing).
	DefaultKeygenTimeout = 120 * time.Second

	DefaultTokenLabel     = "tchsm"          // CK_TOKEN_INFO.label
	DefaultSerial         = "0"              // CK_TOKEN_INFO.serialNumber
	DefaultRequestTimeout = 10 * time.Second // deadline of a key deletion through the token
	DefaultListTimeout    = 3 * time.Second  // deadline of a key listing through the token
	DefaultKeyCacheTTL    = 2 * time.Second  // age after which the token lists keys again
)

// PKCS11 is the PKCS#11 module's section of a client file, the "pkcs11" object (see
// p11shim/README.md for each field). Every field has a usable zero value; WithDefaults fills
// them in.
type PKCS11 struct {
	TokenLabel     string   `json:"token_label,omitempty"`   // at most 32 bytes of UTF-8
	Serial         string   `json:"serial,omitempty"`        // at most 16 printable ASCII characters
	UserPINHash    string   `json:"user_pin_hash,omitempty"` // legacy: argon2id PHC string (internal/pin), checked only while no node holds a PIN for the client
	SignTimeout    Duration `json:"sign_timeout,omitempty"`
	KeygenTimeout  Duration `json:"keygen_timeout,omitempty"`
	RequestTimeout Duration `json:"request_timeout,omitempty"`
	ListTimeout    Duration `json:"list_timeout,omitempty"`
	KeyCacheTTL    Duration `json:"key_cache_ttl,omitempty"`
	LogFile        string   `json:"log_file,omitempty"` // "": no log at all
	LogLevel       string   `json:"log_level,omitempty"`
}

// WithDefaults returns p with every zero field set to its default.
func (p PKCS11) WithDefaults() PKCS11 {
	str := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	dur := func(v *Duration, def time.Duration) { *v = Duration(v.Or(def)) }
	str(&p.TokenLabel, DefaultTokenLabel)
	str(&p.Serial, DefaultSerial)
	dur(&p.SignTimeout, DefaultSignTimeout)
	dur(&p.KeygenTimeout, DefaultKeygenTimeout)
	dur(&p.RequestTimeout, DefaultRequestTimeout)
	dur(&p.ListTimeout, DefaultListTimeout)
	dur(&p.KeyCacheTTL, DefaultKeyCacheTTL)
	return p
}

// Validate checks a PKCS#11 section, with or without defaults applied. Its errors never
// repeat the user_pin_hash field.
func (p PKCS11) Validate() error {
	if len(p.TokenLabel) > 32 || !utf8.ValidString(p.TokenLabel) {
		return fmt.Errorf("%w: pkcs11: token_label must be valid UTF-8 of at most 32 bytes", ErrInvalid)
	}
	if len(p.Serial) > 16 || !printable(p.Serial) {
		return fmt.Errorf("%w: pkcs11: serial must be at most 16 printable ASCII characters", ErrInvalid)
	}
	if p.UserPINHash != "" {
		if err := pin.Check(p.UserPINHash); err != nil {
			return fmt.Errorf("%w: pkcs11: user_pin_hash: %w", ErrInvalid, err)
		}
	}
	for _, d := range []struct {
		name string
		v    Duration
	}{{"sign_timeout", p.SignTimeout}, {"keygen_timeout", p.KeygenTimeout}, {"request_timeout", p.RequestTimeout},
		{"list_timeout", p.ListTimeout}, {"key_cache_ttl", p.KeyCacheTTL}} {
		if d.v < 0 {
			return fmt.Errorf("%w: pkcs11: %s is negative", ErrInvalid, d.name)
		}
	}
	if err := checkLevel(p.LogLevel); err != nil {
		return fmt.Errorf("pkcs11: %w", err)
	}
	return nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// TokenSettings returns the PKCS#11 module's settings with every default filled in. A timeout
// the "pkcs11" section leaves out is the client's own (sign_timeout, keygen_timeout) when the
// file sets that, so that one sign_timeout in the file governs the Go client and C_Sign alike.
func (c *Client) TokenSettings() PKCS11 {
	var p PKCS11
	if c.PKCS11 != nil {
		p = *c.PKCS11
	}
	if p.SignTimeout == 0 {
		p.SignTimeout = c.SignTimeout
	}
	if p.KeygenTimeout == 0 {
		p.KeygenTimeout = c.KeygenTimeout
	}
	return p.WithDefaults()
}

// Load reads a JSON file into v (a *Node, *Dealer or *Client), rejects unknown fields, and
// makes relative paths absolute with respect to the file's folder.
func Load(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	defer f.Close()
	if _, ok := v.(*Client); ok {
		// A client file holds broker credentials and the PIN's hash: refuse it when others can
		// read it, as the identity file beside it is refused.
		if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o077 != 0 {
			return fmt.Errorf("%w: %s is readable or writable by group or others (mode %v; want 0600)", ErrInvalid, path, fi.Mode().Perm())
		}
	}
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
		for _, p := range []*string{&c.Manifest, &c.Identity, &c.Store, &c.PassphraseFile, &c.InitialPINs, &c.AMQP.CAFile, &c.AMQP.CertFile, &c.AMQP.KeyFile} {
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
		if c.PKCS11 != nil {
			abs(&c.PKCS11.LogFile)
		}
		return c.Validate()
	}
	return nil
}

// Save writes v as indented JSON with the given mode, also when the file existed with another
// (os.WriteFile alone keeps an existing file's mode: a client file rewritten at 0644 would then
// be refused by Load).
func Save(path string, v any, mode os.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), mode); err != nil {
		return err
	}
	return os.Chmod(path, mode)
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
	if c.PINMaxFailures < 0 || c.PINMaxFailures > MaxPINFailures {
		return fmt.Errorf("%w: pin_max_failures must be 0 (default %d) to %d", ErrInvalid, DefaultPINMaxFailures, MaxPINFailures)
	}
	if c.SigningPolicy != nil {
		if err := c.SigningPolicy.Validate(); err != nil {
			return err
		}
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

// Passphrase returns the share-store passphrase and where it came from, the first of: the file
// descriptor $TCHSM_PASSPHRASE_FD (read once, then closed), $TCHSM_PASSPHRASE, the systemd
// credential $CREDENTIALS_DIRECTORY/passphrase, the passphrase file (a trailing newline
// removed). It is an error to have none.
func (c *Node) Passphrase() ([]byte, error) {
	b, _, err := c.PassphraseFrom()
	return b, err
}

// PassphraseFrom is Passphrase, also naming the source: "fd", "env", or the file read.
func (c *Node) PassphraseFrom() ([]byte, string, error) {
	if v := os.Getenv(EnvPassphraseFD); v != "" {
		fd, err := strconv.Atoi(v)
		if err != nil || fd < 0 {
			return nil, "", fmt.Errorf("%w: %s=%.16q is not a file descriptor", ErrInvalid, EnvPassphraseFD, v)
		}
		os.Unsetenv(EnvPassphraseFD)
		f := os.NewFile(uintptr(fd), EnvPassphraseFD)
		defer f.Close()
		b, err := readSecret(f)
		return b, "fd", err
	}
	if p := os.Getenv(EnvPassphrase); p != "" {
		return []byte(p), "env", nil
	}
	path := c.PassphraseFile
	if d := os.Getenv("CREDENTIALS_DIRECTORY"); d != "" {
		if p := filepath.Join(d, CredentialPassphrase); fileExists(p) {
			path = p
		}
	}
	if path == "" {
		return nil, "", fmt.Errorf("%w: no passphrase: set passphrase_file, a systemd credential %q, or %s", ErrInvalid, CredentialPassphrase, EnvPassphrase)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, "", fmt.Errorf("%w: passphrase file: %v", ErrInvalid, err)
	}
	defer f.Close()
	b, err := readSecret(f)
	return b, path, err
}

func readSecret(f *os.File) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(f, maxPassphrase+1))
	if err != nil {
		return nil, fmt.Errorf("%w: passphrase: %v", ErrInvalid, err)
	}
	if len(b) > maxPassphrase {
		clear(b)
		return nil, fmt.Errorf("%w: passphrase longer than %d bytes", ErrInvalid, maxPassphrase)
	}
	n := len(b)
	for n > 0 && (b[n-1] == '\n' || b[n-1] == '\r') {
		n--
	}
	clear(b[n:])
	if n == 0 {
		return nil, fmt.Errorf("%w: passphrase is empty", ErrInvalid)
	}
	return b[:n], nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// PassphraseBesideData reports whether a passphrase file lies in the folder of the node's
// share store or identity, where a copy of that folder would decrypt the shares.
func (c *Node) PassphraseBesideData(file string) bool {
	d := filepath.Dir(filepath.Clean(file))
	return d == filepath.Dir(filepath.Clean(c.Store)) || d == filepath.Dir(filepath.Clean(c.Identity))
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
	if c.PKCS11 != nil {
		if err := c.PKCS11.Validate(); err != nil {
			return err
		}
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
