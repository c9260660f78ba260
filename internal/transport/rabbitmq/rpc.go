package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"github.com/tchsm/tchsm/internal/transport"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Message headers set by this package.
const (
	hdrDeadline = "x-tchsm-deadline" // int64, Unix milliseconds
	hdrError    = "x-tchsm-error"    // string, the handler's error
)

type callResult struct {
	body []byte
	err  error
}

func callFromReply(d amqp.Delivery) callResult {
	if v, ok := d.Headers[hdrError]; ok {
		msg, _ := v.(string)
		if len(msg) > transport.MaxRemoteError {
			msg = msg[:transport.MaxRemoteError]
		}
		return callResult{err: &transport.RemoteError{Msg: msg}}
	}
	return callResult{body: d.Body}
}

// deliver hands a reply (or a return) to the waiting caller; a reply nobody
// waits for any more (late, or unknown id) is dropped.
func (s *session) deliver(id string, r callResult) {
	s.pendMu.Lock()
	ch, ok := s.pending[id]
	delete(s.pending, id)
	s.pendMu.Unlock()
	if ok {
		ch <- r // buffered 1, only one sender since the entry is deleted
	}
}

// Call sends body to queue and waits for the reply, or ctx's end. ctx must
// have a deadline: it becomes the request's TTL. See the package doc for the
// failure semantics.
func (c *Conn) Call(ctx context.Context, queue string, body []byte) ([]byte, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return nil, transport.ErrNoDeadline
	}
	if queue == "" {
		return nil, fmt.Errorf("%w: empty queue name", transport.ErrConfig)
	}
	id := newID()
	res := make(chan callResult, 1)
	for {
		s, err := c.session(ctx)
		if err != nil {
			return nil, fmt.Errorf("transport: call %s: %w", queue, err)
		}
		if s.blocked.Load() {
			// A publish would hang in a TCP write that ctx cannot interrupt.
			return nil, fmt.Errorf("transport: call %s: %w: %w", queue, transport.ErrUnavailable, errBlocked)
		}
		ttl := time.Until(deadline).Milliseconds()
		if ttl <= 0 {
			return nil, fmt.Errorf("transport: call %s: %w", queue, context.DeadlineExceeded)
		}
		s.pendMu.Lock()
		s.pending[id] = res
		s.pendMu.Unlock()

		x, key := c.route(queue)
		s.rpcMu.Lock()
		err = s.rpc.PublishWithContext(ctx, x, key, true, false, amqp.Publishing{
			Headers:       amqp.Table{hdrDeadline: deadline.UnixMilli()},
			DeliveryMode:  amqp.Transient,
			CorrelationId: id,
			ReplyTo:       s.replyKey,
			Expiration:    strconv.FormatInt(ttl, 10),
			Timestamp:     time.Now(),
			Body:          body,
		})
		s.rpcMu.Unlock()
		if err != nil {
			s.forget(id)
			if ctx.Err() != nil {
				return nil, fmt.Errorf("transport: call %s: %w", queue, ctx.Err())
			}
			// Not sent: safe to try again on the next connection.
			select {
			case <-s.lost:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("transport: call %s: %w: %w", queue, transport.ErrUnavailable, ctx.Err())
			}
		}

		select {
		case r := <-res:
			if r.err != nil {
				return nil, fmt.Errorf("transport: call %s: %w", queue, r.err)
			}
			return r.body, nil
		case <-ctx.Done():
			s.forget(id)
			return nil, fmt.Errorf("transport: call %s: %w", queue, ctx.Err())
		case <-s.lost:
			s.forget(id)
			select { // the reply may have won the race
			case r := <-res:
				if r.err != nil {
					return nil, fmt.Errorf("transport: call %s: %w", queue, r.err)
				}
				return r.body, nil
			default:
			}
			if c.ctx.Err() != nil {
				return nil, fmt.Errorf("transport: call %s: %w", queue, transport.ErrClosed)
			}
			return nil, fmt.Errorf("transport: call %s: %w: connection lost while waiting for the reply", queue, transport.ErrUnavailable)
		}
	}
}

func (s *session) forget(id string) {
	s.pendMu.Lock()
	delete(s.pending, id)
	s.pendMu.Unlock()
}

// PublishDurable publishes a persistent message to queue and waits for the
// broker's confirm, publishing again after a nack or a connection loss until
// ctx ends: the message may arrive more than once. A queue that does not
// exist gives transport.ErrNoRoute at once.
func (c *Conn) PublishDurable(ctx context.Context, queue string, body []byte) error {
	if queue == "" {
		return fmt.Errorf("%w: empty queue name", transport.ErrConfig)
	}
	msg := amqp.Publishing{
		DeliveryMode: amqp.Persistent,
		MessageId:    newID(),
		Timestamp:    time.Now(),
		Body:         body,
	}
	x, key := c.route(queue)
	var bo backoff
	for {
		s, err := c.session(ctx)
		if err != nil {
			return fmt.Errorf("transport: publish %s: %w", queue, err)
		}
		err = s.publishConfirmed(ctx, x, key, msg)
		if err == nil {
			return nil
		}
		if errors.Is(err, transport.ErrNoRoute) {
			return fmt.Errorf("transport: publish %s: %w", queue, err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("transport: publish %s: %w: %w", queue, err, ctx.Err())
		}
		c.log.Warn("durable publish failed, retrying", "queue", queue, "err", err)
		t := time.NewTimer(bo.next())
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("transport: publish %s: %w: %w", queue, err, ctx.Err())
		case <-c.ctx.Done():
			t.Stop()
			return fmt.Errorf("transport: publish %s: %w", queue, transport.ErrClosed)
		}
	}
}

var (
	errNacked  = errors.New("transport: broker nacked the message")
	errBlocked = errors.New("transport: broker blocked publishing (resource alarm)")
)

// publishConfirmed publishes msg to queue on the session's confirm channel and waits for the
// broker's confirm. After a nack, or when the channel is found closed, the channel is replaced
// before the caller's next attempt: the broker keeps per-channel state for each quorum queue a
// channel publishes to (its enqueuer). In one run of TestBrokerNodeFailover on RabbitMQ 3.10.8,
// the dealer's channel had every publish to one node's quorum queue nacked for two minutes
// after a broker node was killed while the two others ran; the cause was not isolated, and a
// fresh channel costs one round trip.
func (s *session) publishConfirmed(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	if s.blocked.Load() {
		return fmt.Errorf("%w: %w", transport.ErrUnavailable, errBlocked)
	}
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	if s.pub.IsClosed() {
		if err := s.openPub(); err != nil {
			return err
		}
	}
	err := s.publishLocked(ctx, exchange, key, msg)
	if errors.Is(err, errNacked) {
		if rerr := s.openPub(); rerr != nil {
			return fmt.Errorf("%w (and %w)", err, rerr)
		}
	}
	return err
}

func (s *session) publishLocked(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	// Returns of earlier messages whose publisher gave up (ctx) are stale.
	for drained := false; !drained; {
		select {
		case _, ok := <-s.pubRet:
			drained = !ok
		default:
			drained = true
		}
	}
	dc, err := s.pub.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, msg)
	if err != nil {
		return fmt.Errorf("%w: %w", transport.ErrUnavailable, err)
	}
	select {
	case <-dc.Done():
	case <-ctx.Done():
		return ctx.Err()
	case <-s.lost:
		return fmt.Errorf("%w: connection lost before the confirm", transport.ErrUnavailable)
	}
	if !dc.Acked() {
		return errNacked
	}
	// The broker sends basic.return before basic.ack, and the library queues
	// the return on pubRet before it processes the ack: if this message was
	// unroutable its return is already there.
	for {
		select {
		case r, ok := <-s.pubRet:
			if !ok {
				return nil
			}
			if r.MessageId == msg.MessageId {
				return fmt.Errorf("%w: %s (%s)", transport.ErrNoRoute, r.RoutingKey, r.ReplyText)
			}
		default:
			return nil
		}
	}
}
