package rabbitmq

import (
	crand "crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/tchsm/tchsm/internal/transport"
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

// Config configures a Conn. The zero value of every field but URL and
// ClusterID is usable.
type Config struct {
	// URL is amqp://user:pass@host:port/vhost or amqps://... The password is
	// never logged.
	URL string
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
	// Logger receives connection events; nil discards them.
	Logger *slog.Logger
}

func (c *Config) validate() (*url.URL, error) {
	if c.URL == "" {
		return nil, fmt.Errorf("%w: empty URL", transport.ErrConfig)
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		// url.Parse errors quote the whole URL, password included.
		return nil, fmt.Errorf("%w: unparseable URL (not shown: it may hold a password)", transport.ErrConfig)
	}
	switch u.Scheme {
	case "amqp":
		if c.TLS != nil {
			return nil, fmt.Errorf("%w: TLS configuration given for a plain amqp:// URL %s", transport.ErrConfig, RedactURL(c.URL))
		}
	case "amqps":
	default:
		return nil, fmt.Errorf("%w: URL scheme must be amqp or amqps: %s", transport.ErrConfig, RedactURL(c.URL))
	}
	if !transport.ValidID(c.ClusterID) {
		return nil, fmt.Errorf("%w: cluster id %q must be 1-64 letters, digits, '-' or '_'", transport.ErrConfig, c.ClusterID)
	}
	if c.Prefetch < 0 || c.Prefetch > 65535 {
		return nil, fmt.Errorf("%w: prefetch %d out of range 0..65535", transport.ErrConfig, c.Prefetch)
	}
	return u, nil
}

// URLFromEnv returns $TCHSM_AMQP_URL if set and non-empty, else def.
func URLFromEnv(def string) string {
	if v := os.Getenv(EnvURL); v != "" {
		return v
	}
	return def
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

// backoff is exponential with full jitter: 100 ms doubling up to 5 s.
type backoff struct {
	cur time.Duration
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
