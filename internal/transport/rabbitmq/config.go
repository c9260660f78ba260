package rabbitmq

import (
	crand "crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/tchsm/tchsm/internal/transport"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"time"
)

// EnvURL is the environment variable [URLFromEnv] reads.
const EnvURL = "TCHSM_AMQP_URL"

// ErrTopology: a queue exists with different arguments, or cannot be declared. Errors of this
// package wrap it or one of the sentinel errors of package transport.
var ErrTopology = errors.New("transport: topology declaration failed")

// Config configures a Conn. The zero value of every field but URL (or URLs) and
// ClusterID is usable.
type Config struct {
	// URL is amqp://user:pass@host:port/vhost or amqps://... The password is
	// never logged.
	URL string
	// URLs are more brokers: the nodes of one RabbitMQ cluster. The Conn connects to one of
	// URL and URLs (see Spread) and fails over to the next when it cannot reach it.
	URLs []string
	// Spread picks the broker tried first: the (Spread mod number of URLs)-th of URL and
	// URLs, so that processes given different values start on different brokers (a node
	// passes its manifest index). 0 derives it from Name, which spreads many processes
	// roughly evenly.
	Spread int
	// TLS, optional, configures amqps (CA pool, client certificate). Must be
	// nil for an amqp:// URL.
	TLS *tls.Config
	// ClusterID prefixes every queue name: tchsm.<ClusterID>.
	// Letters, digits, '-' and '_', at most 64 characters.
	ClusterID string
	// Name is the connection name shown by the broker (rabbitmqctl
	// list_connections client_properties, management UI).
	Name string
	// Prefetch is the number of unacknowledged rpc requests a Serve call
	// holds; 0 means 2 × workers.
	Prefetch int
	// MaxMessageSize bounds the body of a message the Conn takes in (0: DefaultMaxMessageSize):
	// a larger one is delivered with an empty body, never read into memory (see sizeGuard).
	MaxMessageSize int
	// Logger receives connection events; nil discards them.
	Logger *slog.Logger

	// For this package's tests: a lower delivery limit (0: DeliveryLimit), and a shorter
	// ceiling for the consumer's retry backoff (0: 5 s).
	deliveryLimit int
	retryMax      time.Duration
}

// maxURLs bounds the broker list: a RabbitMQ cluster has a handful of nodes.
const maxURLs = 64

// urls returns URL followed by URLs, without empty entries.
func (c *Config) urls() []string {
	var us []string
	for _, u := range append([]string{c.URL}, c.URLs...) {
		if u = strings.TrimSpace(u); u != "" {
			us = append(us, u)
		}
	}
	return us
}

func (c *Config) validate() ([]string, error) {
	us := c.urls()
	if len(us) == 0 {
		return nil, fmt.Errorf("%w: empty URL", transport.ErrConfig)
	}
	if len(us) > maxURLs {
		return nil, fmt.Errorf("%w: %d broker URLs, at most %d", transport.ErrConfig, len(us), maxURLs)
	}
	seen := make(map[string]bool, len(us))
	for i, raw := range us {
		u, err := url.Parse(raw)
		if err != nil {
			// url.Parse errors quote the whole URL, password included.
			return nil, fmt.Errorf("%w: broker URL %d unparseable (not shown: it may hold a password)", transport.ErrConfig, i+1)
		}
		switch u.Scheme {
		case "amqp":
			if c.TLS != nil {
				return nil, fmt.Errorf("%w: TLS configuration given for a plain amqp:// URL %s", transport.ErrConfig, RedactURL(raw))
			}
		case "amqps":
		default:
			return nil, fmt.Errorf("%w: URL scheme must be amqp or amqps: %s", transport.ErrConfig, RedactURL(raw))
		}
		if seen[raw] {
			return nil, fmt.Errorf("%w: broker URL %s listed twice", transport.ErrConfig, RedactURL(raw))
		}
		seen[raw] = true
	}
	if !transport.ValidID(c.ClusterID) {
		return nil, fmt.Errorf("%w: cluster id %q must be 1-64 letters, digits, '-' or '_'", transport.ErrConfig, c.ClusterID)
	}
	if c.Prefetch < 0 || c.Prefetch > 65535 {
		return nil, fmt.Errorf("%w: prefetch %d out of range 0..65535", transport.ErrConfig, c.Prefetch)
	}
	return us, nil
}

// URLFromEnv returns $TCHSM_AMQP_URL if set and non-empty, else def.
func URLFromEnv(def string) string {
	if v := os.Getenv(EnvURL); v != "" {
		return v
	}
	return def
}

// spreadIndex is the index of the first of n brokers tried by a process with this spread and
// name (see Config.Spread).
func spreadIndex(spread int, name string, n int) int {
	if n <= 1 {
		return 0
	}
	if spread == 0 {
		h := fnv.New32a()
		h.Write([]byte(name))
		return int(h.Sum32() % uint32(n))
	}
	i := spread % n
	if i < 0 {
		i += n
	}
	return i
}

// dialOrder is the order in which a process whose first broker is home tries n brokers after
// it lost the connection to broker lost (-1: none lost): from home on, the lost one last, so
// that a broker that is shutting down is not the first one asked.
func dialOrder(home, lost, n int) []int {
	order := make([]int, 0, n)
	for j := range n {
		if i := (home + j) % n; i != lost {
			order = append(order, i)
		}
	}
	if lost >= 0 && lost < n {
		order = append(order, lost)
	}
	return order
}

// RedactURL returns rawURL with its password replaced by "xxxxx", safe to
// log. An unparseable URL gives a placeholder, never the input.
func RedactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "<invalid URL>"
	}
	return u.Redacted()
}

// newID returns 128 random bits in hex, for correlation and message ids.
func newID() string {
	var b [16]byte
	_, _ = crand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// backoff is exponential with full jitter: 100 ms doubling up to 5 s (or ceil).
type backoff struct {
	cur  time.Duration
	ceil time.Duration // 0: backoffMax
}

const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
)

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = backoffMin
	} else {
		b.cur = min(2*b.cur, backoffMax)
	}
	if b.ceil > 0 {
		b.cur = min(b.cur, b.ceil)
	}
	// Half fixed, half random: never zero, spreads reconnect storms.
	return b.cur/2 + rand.N(b.cur/2+1)
}

func (b *backoff) reset() { b.cur = 0 }

// redactErr removes a URL and its password from an error text.
func redactErr(msg, rawURL string) string {
	if rawURL == "" {
		return msg
	}
	msg = strings.ReplaceAll(msg, rawURL, RedactURL(rawURL))
	if u, err := url.Parse(rawURL); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
	}
	return msg
}
