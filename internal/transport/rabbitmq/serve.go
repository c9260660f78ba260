package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"github.com/tchsm/tchsm/internal/transport"
	"strconv"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// defaultHandlerTimeout bounds a request that carries no deadline (not sent
// by Call).
const defaultHandlerTimeout = 30 * time.Second

// Serve declares the rpc queue and consumes it with workers concurrent
// handlers until ctx ends (it then returns nil) or the Conn is closed
// (transport.ErrClosed). The queue belongs to this Conn alone (exclusive, auto-delete):
// it exists only while Serve consumes it, so callers get [transport.ErrNoRoute] at once
// while the server is away. Serve survives reconnections, declaring the queue
// again just before it subscribes again. It fails at once if the first
// subscription fails for a reason other than the connection (bad name,
// permissions); a queue held by another connection is retried.
func (c *Conn) Serve(ctx context.Context, queue string, workers int, h transport.Handler) error {
	if workers < 1 || workers > 10000 || h == nil || queue == "" {
		return fmt.Errorf("%w: Serve needs a queue, a handler and 1..10000 workers", transport.ErrConfig)
	}
	prefetch := c.cfg.Prefetch
	if prefetch == 0 {
		prefetch = min(2*workers, 65535)
	}
	return c.consumeLoop(ctx, queue, true, prefetch, func(ch *amqp.Channel, deliveries <-chan amqp.Delivery) {
		r := &replier{c: c, ch: ch}
		defer r.close()
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for d := range deliveries {
					c.handleRequest(ctx, r, d, h)
				}
			}()
		}
		wg.Wait()
	})
}

// replier publishes the replies of one Serve subscription: to the reply exchange on the
// channel the requests come from, and those to a direct reply-to address (a caller of the
// previous version) through the default exchange on a channel of their own, opened at the
// first such reply. A restricted broker user may not write to the default exchange: the broker
// then closes that channel, and direct reply-to requests are dropped until the next
// subscription, without disturbing the others.
type replier struct {
	c      *Conn
	mu     sync.Mutex // one publisher at a time on each channel
	ch     *amqp.Channel
	legacy *amqp.Channel
	noLeg  bool // the legacy channel failed: drop direct reply-to requests
}

func (r *replier) publish(replyTo string, msg amqp.Publishing) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if validReplyKey(replyTo) {
		return r.ch.Publish(ReplyExchange(r.c.cfg.ClusterID), replyTo, false, false, msg)
	}
	if r.noLeg {
		return errLegacyReply
	}
	if r.legacy == nil || r.legacy.IsClosed() {
		if r.legacy != nil {
			r.noLeg = true
			r.c.log.Warn("dropping requests with a direct reply-to address (a caller of the previous version): this broker user may not publish to the default exchange")
			return errLegacyReply
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s, err := r.c.session(ctx)
		cancel()
		if err != nil {
			return err
		}
		if r.legacy, err = s.conn.Channel(); err != nil {
			return err
		}
	}
	return r.legacy.Publish("", replyTo, false, false, msg)
}

func (r *replier) close() {
	if r.legacy != nil {
		r.legacy.Close()
	}
}

var errLegacyReply = errors.New("transport: direct reply-to replies are refused by the broker")

// replyAddress reports whether a request's reply_to is one this package answers: a reply key
// on the reply exchange ([ReplyKey]), or a direct reply-to address of a caller of the
// previous version.
func replyAddress(replyTo string) bool {
	return validReplyKey(replyTo) || strings.HasPrefix(replyTo, directReplyTo+".")
}

func (c *Conn) handleRequest(ctx context.Context, r *replier, d amqp.Delivery, h transport.Handler) {
	// At-most-once: acknowledge before handling (see package doc).
	if err := d.Ack(false); err != nil {
		return // channel gone: the broker requeues it for another consumer
	}
	// Answers go only through the reply exchange (or to a direct reply-to address), never to
	// a queue a request names: a member must not make a node publish into another queue.
	if !replyAddress(d.ReplyTo) {
		c.log.Debug("dropping a request without a reply address", "queue", d.RoutingKey)
		return
	}
	now := time.Now()
	deadline := requestDeadline(d, now)
	if !deadline.After(now) {
		c.log.Debug("dropping expired request", "queue", d.RoutingKey)
		return
	}
	hctx, cancel := context.WithDeadline(ctx, deadline)
	reply, herr := transport.SafeHandle(hctx, h, transport.Delivery{Body: d.Body, Deadline: deadline, Redelivered: d.Redelivered})
	cancel()
	left := time.Until(deadline)
	if left <= 0 {
		c.log.Debug("dropping late reply", "queue", d.RoutingKey)
		return
	}
	msg := amqp.Publishing{
		DeliveryMode:  amqp.Transient,
		CorrelationId: d.CorrelationId,
		Expiration:    strconv.FormatInt(max(left.Milliseconds(), 1), 10),
		Body:          reply,
	}
	if herr != nil {
		msg.Body = nil
		msg.Headers = amqp.Table{hdrError: transport.RemoteErrorText(herr)}
	}
	if err := r.publish(d.ReplyTo, msg); err != nil {
		c.log.Debug("reply not sent", "err", err)
	}
}

// requestDeadline is the earlier of the x-tchsm-deadline header and arrival
// time + Expiration; without either, now + defaultHandlerTimeout.
func requestDeadline(d amqp.Delivery, now time.Time) time.Time {
	var dl time.Time
	if v, ok := d.Headers[hdrDeadline]; ok {
		if ms, ok := v.(int64); ok {
			dl = time.UnixMilli(ms)
		}
	}
	if d.Expiration != "" {
		if ms, err := strconv.ParseInt(d.Expiration, 10, 64); err == nil && ms >= 0 {
			e := now.Add(time.Duration(ms) * time.Millisecond)
			if dl.IsZero() || e.Before(dl) {
				dl = e
			}
		}
	}
	if dl.IsZero() {
		dl = now.Add(defaultHandlerTimeout)
	}
	return dl
}

// Consume processes a durable control queue one message at a time until ctx
// ends (nil) or the Conn is closed (transport.ErrClosed), surviving reconnections. A
// message is acknowledged after h returns nil. An error wrapping transport.ErrPermanent
// rejects it to the dead-letter queue. After any other error, and a delay that grows from
// 100 ms to 5 s over consecutive failures, the message is put back at the tail of the queue
// as a copy (published with a confirm, then the original acknowledged): a failing handler
// never spends the queue's delivery limit (see the package doc).
func (c *Conn) Consume(ctx context.Context, queue string, h func(ctx context.Context, body []byte) error) error {
	if h == nil || queue == "" {
		return fmt.Errorf("%w: Consume needs a queue and a handler", transport.ErrConfig)
	}
	bo := backoff{ceil: c.cfg.retryMax} // consecutive handler failures, across reconnections
	return c.consumeLoop(ctx, queue, false, 1, func(ch *amqp.Channel, deliveries <-chan amqp.Delivery) {
		for d := range deliveries {
			err := transport.SafeConsume(ctx, h, d.Body)
			switch {
			case err == nil:
				bo.reset()
				if aerr := d.Ack(false); aerr != nil {
					c.log.Warn("ack failed; the message will be redelivered", "queue", queue, "err", aerr)
				}
			case errors.Is(err, transport.ErrPermanent):
				c.log.Error("message rejected to the dead-letter queue", "queue", queue, "err", err)
				_ = d.Reject(false)
			default:
				delay := bo.next()
				c.log.Warn("handler failed, retrying", "queue", queue, "delay", delay, "err", err)
				t := time.NewTimer(delay)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return // unacknowledged: the broker hands it out again
				case <-c.ctx.Done():
					t.Stop()
					return
				}
				if rerr := c.requeueCopy(ctx, queue, d); rerr != nil {
					// Not copied: hand it back (this counts as a delivery).
					c.log.Warn("could not put the message back as a copy; requeueing it", "queue", queue, "err", rerr)
					_ = d.Nack(false, true)
					continue
				}
				if aerr := d.Ack(false); aerr != nil {
					c.log.Warn("ack of a copied message failed; it will come twice", "queue", queue, "err", aerr)
				}
			}
		}
	})
}

// requeueTimeout bounds the publish of a failed message's copy.
const requeueTimeout = 10 * time.Second

// requeueCopy publishes a copy of d at the tail of queue and waits for the broker's confirm.
func (c *Conn) requeueCopy(ctx context.Context, queue string, d amqp.Delivery) error {
	ctx, cancel := context.WithTimeout(ctx, requeueTimeout)
	defer cancel()
	s, err := c.session(ctx)
	if err != nil {
		return err
	}
	x, key := c.route(queue)
	return s.publishConfirmed(ctx, x, key, copyOf(d))
}

// copyOf is a persistent publishing of d, with its properties and headers but for those the
// broker sets: the delivery count, and the user id (the broker checks it against the
// publisher's user).
func copyOf(d amqp.Delivery) amqp.Publishing {
	var h amqp.Table
	if len(d.Headers) > 0 {
		h = make(amqp.Table, len(d.Headers))
		for k, v := range d.Headers {
			if k != "x-delivery-count" {
				h[k] = v
			}
		}
	}
	return amqp.Publishing{
		Headers:         h,
		ContentType:     d.ContentType,
		ContentEncoding: d.ContentEncoding,
		DeliveryMode:    amqp.Persistent,
		Priority:        d.Priority,
		CorrelationId:   d.CorrelationId,
		ReplyTo:         d.ReplyTo,
		Expiration:      d.Expiration,
		MessageId:       d.MessageId,
		Timestamp:       d.Timestamp,
		Type:            d.Type,
		AppId:           d.AppId,
		Body:            d.Body,
	}
}

// moveMessages moves the messages queue from holds now into queue to, which must exist, one
// at a time: each is published to to and confirmed before it is acknowledged in from, so a
// crash in between leaves a duplicate, never a loss. With drop, from is then deleted if it is
// empty and has no consumer (a process of an older version still reading it keeps it). A
// from that does not exist moves nothing. It returns how many messages were moved.
func (c *Conn) moveMessages(ctx context.Context, from, to string, drop bool) (int, error) {
	s, err := c.session(ctx)
	if err != nil {
		return 0, err
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return 0, fmt.Errorf("%w: open channel: %w", transport.ErrUnavailable, err)
	}
	defer ch.Close()
	st, err := ch.QueueDeclarePassive(from, true, false, false, false, nil)
	if err != nil {
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.NotFound {
			return 0, nil
		}
		return 0, fmt.Errorf("%w: inspect %s: %w", transport.ErrUnavailable, from, err)
	}
	x, key := c.route(to)
	n := 0
	// At most what it holds now (a message moved back from a dead-letter queue may come back
	// to it); with drop, until it is empty.
	for drop || n < st.Messages {
		d, ok, err := ch.Get(from, false)
		if err != nil {
			return n, fmt.Errorf("%w: get from %s: %w", transport.ErrUnavailable, from, err)
		}
		if !ok {
			break
		}
		if err := s.publishConfirmed(ctx, x, key, copyOf(d)); err != nil {
			_ = d.Nack(false, true)
			return n, err
		}
		if err := d.Ack(false); err != nil {
			return n, fmt.Errorf("%w: ack in %s: %w", transport.ErrUnavailable, from, err)
		}
		n++
	}
	if drop {
		if _, err := ch.QueueDelete(from, true, true, false); err != nil {
			// Used or not empty any more: it stays, and the next DeclareNode moves what it holds.
			c.log.Warn("old queue not deleted", "queue", from, "err", err)
		}
	}
	return n, nil
}

// RequeueDead moves the messages in node nodeID's dead-letter queue back into its control
// queue, for the operator (tchsm queues requeue-dead): after a node's store was repaired, the
// shares that reached the delivery limit are stored; messages the node refused as malformed
// come back to the dead-letter queue. It returns how many messages were moved.
func (c *Conn) RequeueDead(ctx context.Context, nodeID string) (int, error) {
	q, err := c.DeclareNode(ctx, nodeID)
	if err != nil {
		return 0, err
	}
	return c.moveMessages(ctx, q.Dead, q.Control, false)
}

// consumeLoop subscribes to queue on a fresh channel of the current session
// and runs process until the deliveries end, then subscribes again, until ctx
// ends or the Conn is closed. owned: an rpc queue the consumer owns and declares
// itself each time; otherwise one declared through [Conn.DeclareNode].
func (c *Conn) consumeLoop(ctx context.Context, queue string, owned bool, prefetch int, process func(*amqp.Channel, <-chan amqp.Delivery)) error {
	var bo backoff
	first := true
	for {
		s, err := c.session(ctx)
		if err != nil {
			if errors.Is(err, transport.ErrClosed) {
				return transport.ErrClosed
			}
			return nil // ctx ended
		}
		started, err := c.consumeOnce(ctx, s, queue, owned, prefetch, process)
		if c.ctx.Err() != nil {
			return transport.ErrClosed
		}
		if ctx.Err() != nil {
			return nil
		}
		if first && err != nil && !errors.Is(err, transport.ErrUnavailable) {
			return err
		}
		first = false
		if started {
			bo.reset()
		}
		c.log.Warn("consumer stopped, resubscribing", "queue", queue, "err", err)
		t := time.NewTimer(bo.next())
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-c.ctx.Done():
			t.Stop()
			return transport.ErrClosed
		}
	}
}

func (c *Conn) consumeOnce(ctx context.Context, s *session, queue string, owned bool, prefetch int, process func(*amqp.Channel, <-chan amqp.Delivery)) (started bool, err error) {
	ch, err := s.conn.Channel()
	if err != nil {
		return false, fmt.Errorf("%w: open channel: %w", transport.ErrUnavailable, err)
	}
	defer ch.Close()
	if owned {
		if err := c.declareOwned(s.conn, queue); err != nil {
			return false, err
		}
	} else {
		c.mu.Lock()
		kind, known := c.queues[queue]
		c.mu.Unlock()
		if known { // it may have been deleted (operator)
			if err := c.declareQueue(s.conn, queue, kind); err != nil {
				return false, err
			}
		}
	}
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return false, fmt.Errorf("%w: qos: %w", transport.ErrUnavailable, err)
	}
	tag := "tchsm-" + newID()
	deliveries, err := ch.Consume(queue, tag, false, false, false, false, nil)
	if err != nil {
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.NotFound {
			return false, fmt.Errorf("%w: consume %s: %w", transport.ErrNoRoute, queue, err)
		}
		return false, fmt.Errorf("%w: consume %s: %w", transport.ErrUnavailable, queue, err)
	}
	// Stop at ctx end or Close: closing the channel ends deliveries, and
	// process returns once its handlers are done.
	stop := context.AfterFunc(ctx, func() { ch.Close() })
	defer stop()
	stopClose := context.AfterFunc(c.ctx, func() { ch.Close() })
	defer stopClose()
	c.setConsuming(queue, +1)
	defer c.setConsuming(queue, -1)
	process(ch, deliveries)
	return true, fmt.Errorf("%w: deliveries ended", transport.ErrUnavailable)
}

// declareOwned declares an rpc queue its consumer owns (exclusive to ac). A queue of the same name
// that is not exclusive and has no consumer (left by an older version, which declared rpc
// queues shared) is deleted first: it holds only transient requests. One held by another
// connection stays, and the error (transport.ErrUnavailable) makes the caller retry.
func (c *Conn) declareOwned(ac *amqp.Connection, queue string) error {
	err := c.declareQueue(ac, queue, KindRPC)
	var ae *amqp.Error
	if err == nil || !errors.As(err, &ae) || ae.Code != amqp.ResourceLocked {
		return err
	}
	dc, cerr := ac.Channel()
	if cerr != nil {
		return fmt.Errorf("%w: open channel: %w", transport.ErrUnavailable, cerr)
	}
	defer dc.Close()
	if _, derr := dc.QueueDelete(queue, true, false, false); derr != nil {
		return err // exclusive elsewhere, or consumed: keep the first error
	}
	return fmt.Errorf("%w: deleted a stale shared queue %s; declaring it again", transport.ErrUnavailable, queue)
}

// setConsuming counts the consumers this Conn has on queue and wakes WaitConsuming.
func (c *Conn) setConsuming(queue string, delta int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.consuming[queue] += delta
	if c.consuming[queue] <= 0 {
		delete(c.consuming, queue)
	}
	close(c.consumingChanged)
	c.consumingChanged = make(chan struct{})
}

// WaitConsuming waits until a Serve or Consume of this Conn is subscribed to queue, or ctx
// ends. Processes use it to report themselves ready only when requests reach them.
func (c *Conn) WaitConsuming(ctx context.Context, queue string) error {
	for {
		c.mu.Lock()
		n, changed := c.consuming[queue], c.consumingChanged
		c.mu.Unlock()
		if n > 0 {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("transport: %s not consumed: %w", queue, ctx.Err())
		case <-c.ctx.Done():
			return transport.ErrClosed
		}
	}
}
