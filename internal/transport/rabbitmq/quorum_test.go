package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The control queues are quorum queues with an explicit delivery limit and at-least-once
// dead-lettering.
func TestControlQueuesAreQuorum(t *testing.T) {
	url := testVhost(t)
	c := dialTest(t, url, "dealer")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	q, err := c.DeclareNode(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	out := rabbitmqctl(t, "list_queues", "-p", vhostOf(url), "--no-table-headers", "name", "type", "arguments")
	for _, want := range []struct{ name, args string }{
		{q.Control, fmt.Sprintf("{x-delivery-limit,%d}", DeliveryLimit)},
		{q.Control, "{x-dead-letter-strategy,at-least-once}"},
		{q.Control, "{x-overflow,reject-publish}"},
		{q.Control, "{x-dead-letter-routing-key," + q.Dead + "}"},
		{q.Dead, "{x-queue-type,quorum}"},
	} {
		line := ""
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, want.name+"\t") {
				line = l
			}
		}
		// rabbitmqctl quotes differently across versions: compare without quotes.
		bare := strings.NewReplacer(" ", "", `"`, "", `\`, "", "<<", "", ">>", "").Replace(line)
		if !strings.Contains(line, "\tquorum\t") || !strings.Contains(bare, want.args) {
			t.Errorf("%s: want a quorum queue with %s, got %q", want.name, want.args, line)
		}
	}
}

// A handler that fails 25 times in a row (a store that cannot write) gets the message again
// every time and, once it succeeds, the message is gone from the queue and never
// dead-lettered: failures do not spend the delivery limit (here 3, far below 25).
func TestStoreFailuresDoNotSpendTheDeliveryLimit(t *testing.T) {
	url := testVhost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := Dial(ctx, Config{URL: url, ClusterID: "test", Name: "node", deliveryLimit: 3, retryMax: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q, err := c.DeclareNode(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"share", "next"} {
		if err := c.PublishDurable(ctx, q.Control, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	const failures = 25
	var tries, stored, next atomic.Int32
	got := make(chan struct{})
	cctx, ccancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- c.Consume(cctx, q.Control, func(ctx context.Context, body []byte) error {
			switch string(body) {
			case "share":
				if tries.Add(1) <= failures {
					return errors.New("store: disk full")
				}
				stored.Add(1)
			case "next":
				next.Add(1)
			}
			if stored.Load() == 1 && next.Load() >= 1 {
				select {
				case <-got:
				default:
					close(got)
				}
			}
			return nil
		})
	}()
	select {
	case <-got:
	case <-ctx.Done():
		t.Fatalf("share stored %d times after %d tries", stored.Load(), tries.Load())
	}
	waitFor(t, 10*time.Second, func() bool { return queueDepth(t, url, q.Control) == 0 })
	ccancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if tries.Load() != failures+1 || stored.Load() != 1 || next.Load() != 1 {
		t.Errorf("tries %d, stored %d, next %d; want %d, 1, 1", tries.Load(), stored.Load(), next.Load(), failures+1)
	}
	if n := queueDepth(t, url, q.Dead); n != 0 {
		t.Errorf("dead-letter queue holds %d messages, want 0", n)
	}
}

// What happens at the delivery limit: a message handed out and returned more often than the
// limit (consumers that die holding it) is dead-lettered, at least once, into the dead-letter
// queue with reason delivery_limit; it is never dropped. RequeueDead puts it back.
func TestDeliveryLimitDeadLettersAndRequeue(t *testing.T) {
	url := testVhost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := Dial(ctx, Config{URL: url, ClusterID: "test", Name: "dealer", deliveryLimit: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q, err := c.DeclareNode(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PublishDurable(ctx, q.Control, []byte("share")); err != nil {
		t.Fatal(err)
	}
	// A consumer that takes the message and dies without an answer, again and again.
	for i := 0; queueDepth(t, url, q.Control) > 0; i++ {
		if i > 10 {
			t.Fatal("the message is never dead-lettered")
		}
		raw, ch := rawChannel(t, url)
		if _, ok, err := ch.Get(q.Control, false); err != nil || !ok {
			t.Fatalf("get %d: %v %v", i, ok, err)
		}
		raw.Close()
		time.Sleep(50 * time.Millisecond)
	}
	waitFor(t, 10*time.Second, func() bool { return queueDepth(t, url, q.Dead) == 1 })
	_, ch := rawChannel(t, url)
	d, ok, err := ch.Get(q.Dead, false)
	if err != nil || !ok {
		t.Fatalf("dead letter: %v %v", ok, err)
	}
	deaths, _ := d.Headers["x-death"].([]any)
	if len(deaths) == 0 || fmt.Sprint(deaths[0].(amqp.Table)["reason"]) != "delivery_limit" || string(d.Body) != "share" {
		t.Fatalf("dead letter %q with x-death %v", d.Body, d.Headers["x-death"])
	}
	if err := d.Nack(false, true); err != nil {
		t.Fatal(err)
	}
	// The nack is asynchronous: RequeueDead moves what is ready, so wait until the dead letter
	// is back in its queue (it failed once when RequeueDead ran first).
	waitFor(t, 10*time.Second, func() bool { return queueDepth(t, url, q.Dead) == 1 })

	n, err := c.RequeueDead(ctx, "n1")
	if err != nil || n != 1 {
		t.Fatalf("RequeueDead = %d, %v", n, err)
	}
	if queueDepth(t, url, q.Control) != 1 || queueDepth(t, url, q.Dead) != 0 {
		t.Fatal("RequeueDead did not move the message back")
	}
}

// Queues of the previous version (classic .control and .control.dead queues holding
// messages) are emptied into the quorum queues by the first DeclareNode, and deleted.
func TestMigrateLegacyClassicQueues(t *testing.T) {
	url := testVhost(t)
	lc, ld := LegacyControlQueues("test", "n1")
	_, ch := rawChannel(t, url)
	// Exactly as the previous version declared them.
	if _, err := ch.QueueDeclare(ld, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(lc, true, false, false, false, amqp.Table{
		"x-dead-letter-exchange": "", "x-dead-letter-routing-key": ld,
	}); err != nil {
		t.Fatal(err)
	}
	pub := func(q, body string) {
		t.Helper()
		err := ch.PublishWithContext(context.Background(), "", q, true, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent, MessageId: body, Body: []byte(body)})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []string{"share 1", "share 2", "delete 1"} {
		pub(lc, m)
	}
	pub(ld, "malformed")
	waitFor(t, 5*time.Second, func() bool { return queueDepth(t, url, lc) == 3 })

	c := dialTest(t, url, "node")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := c.DeclareNode(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if n := queueDepth(t, url, q.Dead); n != 1 {
		t.Errorf("new dead-letter queue holds %d, want 1", n)
	}
	out := rabbitmqctl(t, "list_queues", "-p", vhostOf(url), "--no-table-headers", "name")
	for _, old := range []string{lc, ld} {
		if slices.Contains(strings.Fields(out), old) {
			t.Errorf("%s not deleted after the migration:\n%s", old, out)
		}
	}
	var got []string
	cctx, ccancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- c.Consume(cctx, q.Control, func(_ context.Context, body []byte) error {
			got = append(got, string(body))
			if len(got) == 3 {
				ccancel()
			}
			return nil
		})
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"share 1", "share 2", "delete 1"}) {
		t.Fatalf("migrated messages %q", got)
	}
}
