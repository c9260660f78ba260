package rabbitmq

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/tchsm/tchsm/internal/transport"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

const (
	dialTimeout   = 10 * time.Second
	heartbeat     = 10 * time.Second
	directReplyTo = "amq.rabbitmq.reply-to"
)

// Conn is a self-healing AMQP connection. All methods are safe for concurrent use.
type Conn struct {
	cfg      Config
	urls     []string // hold the password: never log them
	redacted []string // urls without their passwords
	home     int      // index of the broker tried first (Config.Spread)
	log      *slog.Logger

	ctx    context.Context // ends at Close; aborts dials in progress
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the Conn starts

	mu       sync.Mutex
	cur      *session      // nil while disconnected
	ready    chan struct{} // closed when cur becomes non-nil
	closed   bool
	queues   map[string]queueKind // declared topology, redeclared on reconnect
	migrated sync.Map             // node id -> true: legacy queues emptied (DeclareNode)

	consuming        map[string]int // subscribed consumers by queue
	consumingChanged chan struct{}  // closed and replaced when consuming changes
}

// session is one AMQP connection with its channels; it is replaced, never
// repaired, when the connection fails.
type session struct {
	conn    *amqp.Connection
	broker  int           // index of the URL it is connected to
	since   time.Time     // when it was set up
	lost    chan struct{} // closed once the connection is gone
	blocked atomic.Bool   // the broker stopped reading (resource alarm)

	// rpc: the reply queue's consumer and request publishing. Requests carry replyKey as
	// their reply_to: the key the session's reply queue is bound with on the reply exchange.
	rpcMu    sync.Mutex
	rpc      *amqp.Channel
	replyKey string
	pendMu   sync.Mutex
	pending  map[string]chan callResult

	// pub: confirm mode, durable publishing, one message at a time. Replaced (openPub) after
	// a nack or when it closed: see publishConfirmed.
	pubMu  sync.Mutex
	pub    *amqp.Channel
	pubRet chan amqp.Return
}

// Dial connects to the broker, retrying with backoff until ctx ends unless
// the error cannot be fixed by retrying (bad URL, credentials, vhost). The
// returned Conn reconnects by itself until Close.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	urls, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Conn{
		cfg:    cfg,
		urls:   urls,
		home:   spreadIndex(cfg.Spread, cfg.Name, len(urls)),
		log:    log.With("component", "transport"),
		ready:  make(chan struct{}),
		queues: make(map[string]queueKind),

		consuming:        make(map[string]int),
		consumingChanged: make(chan struct{}),
	}
	for _, u := range urls {
		c.redacted = append(c.redacted, RedactURL(u))
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())

	var bo backoff
	order := dialOrder(c.home, -1, len(urls))
	for attempt := 0; ; attempt++ {
		i := order[attempt%len(order)]
		s, err := c.connect(ctx, i)
		if err == nil {
			c.install(s)
			c.wg.Add(1)
			go c.supervise(s)
			return c, nil
		}
		if permanentDialError(err) || ctx.Err() != nil {
			c.cancel()
			if ctx.Err() != nil && !permanentDialError(err) {
				return nil, fmt.Errorf("%w: dial %s: %w (last error: %v)", transport.ErrUnavailable, c.brokers(), ctx.Err(), err)
			}
			return nil, err
		}
		c.log.Warn("dial failed, trying the next broker", "broker", c.redacted[i], "err", err)
		if attempt%len(order) != len(order)-1 {
			continue // the next broker at once; the backoff after a round of them all
		}
		t := time.NewTimer(bo.next())
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

// brokers is the broker list, without passwords, for error messages.
func (c *Conn) brokers() string {
	if len(c.redacted) == 1 {
		return c.redacted[0]
	}
	return "[" + strings.Join(c.redacted, " ") + "]"
}

// Broker returns the URL, without its password, of the broker the Conn is connected to, or
// "" while it is disconnected.
func (c *Conn) Broker() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return ""
	}
	return c.redacted[c.cur.broker]
}

func (c *Conn) deliveryLimit() int {
	if c.cfg.deliveryLimit > 0 {
		return c.cfg.deliveryLimit
	}
	return DeliveryLimit
}

// permanentDialError reports errors a redial cannot fix.
func permanentDialError(err error) bool {
	return errors.Is(err, transport.ErrConfig) || errors.Is(err, transport.ErrAccess)
}

// connect dials broker i once and prepares the session's channels and topology.
func (c *Conn) connect(ctx context.Context, i int) (*session, error) {
	rawURL, redacted := c.urls[i], c.redacted[i]
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel) // Close aborts a dial in progress
	defer stop()

	props := amqp.NewConnectionProperties()
	if c.cfg.Name != "" {
		props.SetClientConnectionName(c.cfg.Name)
	}
	ac, err := c.open(dctx, rawURL, props)
	if err != nil {
		var ae *amqp.Error
		if errors.As(err, &ae) {
			// amqp errors never contain the URL.
			if ae.Code == amqp.AccessRefused || ae.Code == amqp.NotAllowed {
				return nil, fmt.Errorf("%w: dial %s: %w", transport.ErrAccess, redacted, err)
			}
			return nil, fmt.Errorf("%w: dial %s: %w", transport.ErrUnavailable, redacted, err)
		}
		// Other errors (URI parsing) might quote the URL: do not include them.
		var ne net.Error
		if errors.As(err, &ne) || errors.Is(err, context.Canceled) {
			return nil, fmt.Errorf("%w: dial %s: %w", transport.ErrUnavailable, redacted, err)
		}
		return nil, fmt.Errorf("%w: dial %s: %s", transport.ErrUnavailable, redacted, redactErr(err.Error(), rawURL))
	}
	s, err := c.setup(ac, i, brokerUser(rawURL))
	if err != nil {
		ac.Close()
		return nil, err
	}
	return s, nil
}

// open dials rawURL and opens an AMQP connection over it, as amqp.DialConfig does, but with
// the broker's bytes read through a sizeGuard (after TLS, so the guard sees the frames).
func (c *Conn) open(ctx context.Context, rawURL string, props amqp.Table) (*amqp.Connection, error) {
	uri, err := amqp.ParseURI(rawURL)
	if err != nil {
		return nil, err
	}
	cfg := amqp.Config{
		Heartbeat:  heartbeat,
		Properties: props,
		Vhost:      uri.Vhost,
		ChannelMax: uri.ChannelMax,
		FrameSize:  131072, // amqp091-go's and RabbitMQ's default frame_max
		Locale:     "en_US",
	}
	for _, m := range uri.AuthMechanism {
		switch strings.ToUpper(m) {
		case "PLAIN":
			cfg.SASL = append(cfg.SASL, uri.PlainAuth())
		case "AMQPLAIN":
			cfg.SASL = append(cfg.SASL, uri.AMQPlainAuth())
		case "EXTERNAL":
			cfg.SASL = append(cfg.SASL, &amqp.ExternalAuth{})
		default:
			return nil, fmt.Errorf("%w: unsupported auth_mechanism %q", transport.ErrConfig, m)
		}
	}
	if len(cfg.SASL) == 0 {
		cfg.SASL = []amqp.Authentication{uri.PlainAuth()}
	}
	d := net.Dialer{Timeout: dialTimeout}
	nc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port)))
	if err != nil {
		return nil, err
	}
	// Bound the TLS and AMQP handshakes; the library clears the deadline once open.
	if err := nc.SetDeadline(time.Now().Add(dialTimeout)); err != nil {
		nc.Close()
		return nil, err
	}
	if uri.Scheme == "amqps" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.cfg.TLS != nil {
			tc = c.cfg.TLS.Clone()
		}
		if tc.ServerName == "" {
			tc.ServerName = uri.Host
			if uri.ServerName != "" {
				tc.ServerName = uri.ServerName
			}
		}
		tlc := tls.Client(nc, tc)
		if err := tlc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, err
		}
		nc = tlc
	}
	max := c.cfg.MaxMessageSize
	if max <= 0 {
		max = DefaultMaxMessageSize
	}
	ac, err := amqp.Open(newSizeGuard(nc, uint64(max)), cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return ac, nil
}

// brokerUser is the user name in an AMQP URL, or guest (amqp091-go's default) if it has none.
func brokerUser(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil && u.User != nil && u.User.Username() != "" {
		return u.User.Username()
	}
	return "guest"
}

func (c *Conn) setup(ac *amqp.Connection, broker int, user string) (*session, error) {
	s := &session{
		conn:    ac,
		broker:  broker,
		since:   time.Now(),
		lost:    make(chan struct{}),
		pending: make(map[string]chan callResult),
	}
	if err := declareExchanges(ac, c.cfg.ClusterID); err != nil {
		return nil, err
	}
	var err error
	if s.rpc, err = ac.Channel(); err != nil {
		return nil, fmt.Errorf("%w: open rpc channel: %w", transport.ErrUnavailable, err)
	}
	// The reply queue: server-named, exclusive (no other connection can consume, bind or
	// delete it) and auto-delete, bound to the reply exchange with a key that starts with the
	// broker user's name, which is all a restricted user's topic read permission allows it
	// to bind (docs/broker-permissions.md). Direct reply-to would need write permission on the
	// default exchange, which reaches every queue of the vhost.
	rq, err := s.rpc.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return nil, accessOr(fmt.Errorf("declare the reply queue: %w", err))
	}
	s.replyKey = ReplyKey(user, rq.Name)
	if err := s.rpc.QueueBind(rq.Name, s.replyKey, ReplyExchange(c.cfg.ClusterID), false, nil); err != nil {
		return nil, accessOr(fmt.Errorf("bind the reply queue: %w", err))
	}
	replies, err := s.rpc.Consume(rq.Name, "", true, true, false, false, nil)
	if err != nil {
		return nil, accessOr(fmt.Errorf("consume the reply queue: %w", err))
	}
	returns := s.rpc.NotifyReturn(make(chan amqp.Return, 64))
	if err := s.openPub(); err != nil {
		return nil, err
	}

	c.mu.Lock()
	queues := make(map[string]queueKind, len(c.queues))
	for n, k := range c.queues {
		queues[n] = k
	}
	c.mu.Unlock()
	if err := c.declareAll(ac, queues); err != nil {
		return nil, err
	}

	blocks := ac.NotifyBlocked(make(chan amqp.Blocking, 4))

	c.wg.Add(3)
	go func() {
		defer c.wg.Done()
		for b := range blocks {
			s.blocked.Store(b.Active)
			if b.Active {
				c.log.Warn("broker blocked publishing", "reason", b.Reason)
			} else {
				c.log.Info("broker unblocked publishing")
			}
		}
	}()
	go func() {
		defer c.wg.Done()
		for d := range replies {
			s.deliver(d.CorrelationId, callFromReply(d))
		}
	}()
	go func() {
		defer c.wg.Done()
		for r := range returns {
			s.deliver(r.CorrelationId, callResult{err: fmt.Errorf("%w: %s (%s)", transport.ErrNoRoute, r.RoutingKey, r.ReplyText)})
		}
	}()
	return s, nil
}

// accessOr wraps err in transport.ErrAccess when the broker refused it for lack of permission
// (a broker user without the permissions of its role: nothing a retry fixes), and in
// transport.ErrUnavailable otherwise.
func accessOr(err error) error {
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.AccessRefused {
		return fmt.Errorf("%w: %w", transport.ErrAccess, err)
	}
	return fmt.Errorf("%w: %w", transport.ErrUnavailable, err)
}

// openPub opens the session's confirm-mode publishing channel, replacing (and closing) the
// one it had. Callers hold pubMu, or own s alone (setup).
func (s *session) openPub() error {
	if s.pub != nil {
		s.pub.Close()
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return fmt.Errorf("%w: open publish channel: %w", transport.ErrUnavailable, err)
	}
	if err := ch.Confirm(false); err != nil {
		ch.Close()
		return fmt.Errorf("%w: confirm mode: %w", transport.ErrUnavailable, err)
	}
	s.pub, s.pubRet = ch, ch.NotifyReturn(make(chan amqp.Return, 16))
	return nil
}

// install makes s the current session and wakes waiters.
func (c *Conn) install(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur = s
	close(c.ready)
}

// supervise waits for the session's connection to die, then reconnects,
// until Close.
func (c *Conn) supervise(s *session) {
	defer c.wg.Done()
	for {
		closeCh := s.conn.NotifyClose(make(chan *amqp.Error, 1))
		rpcClosed := s.rpc.NotifyClose(make(chan *amqp.Error, 1))
		var reason *amqp.Error
		select {
		case reason = <-closeCh:
		case reason = <-rpcClosed:
		case <-c.ctx.Done():
		}
		c.mu.Lock()
		c.cur = nil
		c.ready = make(chan struct{})
		c.mu.Unlock()
		close(s.lost)
		s.conn.Close() // a channel died alone: drop the whole connection
		if c.ctx.Err() != nil {
			return
		}
		c.log.Warn("connection lost, reconnecting", "broker", c.redacted[s.broker], "reason", reason)

		// Rounds over every broker, the lost one last, with a backoff before each round: a
		// broker node that went away costs one refused dial, not a backoff.
		var bo backoff
		order := dialOrder(c.home, s.broker, len(c.urls))
	redial:
		for {
			t := time.NewTimer(bo.next())
			select {
			case <-c.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			for _, i := range order {
				ns, err := c.connect(c.ctx, i)
				if err == nil {
					s = ns
					break redial
				}
				if c.ctx.Err() != nil {
					return
				}
				c.log.Warn("reconnect failed", "broker", c.redacted[i], "err", err)
			}
		}
		c.install(s)
		c.log.Info("reconnected", "broker", c.redacted[s.broker])
	}
}

// session returns the current session, waiting for a reconnection until ctx ends.
func (c *Conn) session(ctx context.Context) (*session, error) {
	for {
		c.mu.Lock()
		s, ready, closed := c.cur, c.ready, c.closed
		c.mu.Unlock()
		if closed {
			return nil, transport.ErrClosed
		}
		if s != nil {
			return s, nil
		}
		select {
		case <-ready:
		case <-c.ctx.Done():
			return nil, transport.ErrClosed
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", transport.ErrUnavailable, ctx.Err())
		}
	}
}

// Close closes the connection and stops every goroutine the Conn started.
// Serve and Consume calls return transport.ErrClosed. Close is idempotent.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	s := c.cur
	c.mu.Unlock()
	c.cancel()
	if s != nil {
		s.conn.Close()
	}
	c.wg.Wait()
	return nil
}

// WaitConnected waits until the Conn has a broker connection, or ctx ends (transport.ErrUnavailable) or
// the Conn is closed (transport.ErrClosed).
func (c *Conn) WaitConnected(ctx context.Context) error {
	_, err := c.session(ctx)
	return err
}

// Connected reports whether the Conn currently has a broker connection.
func (c *Conn) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur != nil
}

// ConnectedSince returns when the current broker connection was set up; zero while there is
// none. Each reconnection gives a new time.
func (c *Conn) ConnectedSince() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return time.Time{}
	}
	return c.cur.since
}
