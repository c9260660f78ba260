package rabbitmq

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"os/exec"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/transport/rabbitmq/rabbitmqtest"
)

// restrictedUsers imports the definitions of cluster "test" (nodes n1 and n2, the dealer,
// client c1) into url's vhost: the exchanges, the nodes' control queues and the users with
// the permissions of their roles. It returns the users' URLs by role name ("n1", "n2",
// "dealer", "c1"). The users are deleted at cleanup.
func restrictedUsers(t *testing.T, base string) map[string]string {
	t.Helper()
	vhost := vhostOf(base)
	var accounts []Account
	urls := map[string]string{}
	for role, f := range map[string]func() (Permission, error){
		"n1":     func() (Permission, error) { return NodePermission("test", "n1") },
		"n2":     func() (Permission, error) { return NodePermission("test", "n2") },
		"dealer": func() (Permission, error) { return DealerPermission("test") },
		"c1":     func() (Permission, error) { return ClientPermission("test", "c1") },
	} {
		p, err := f()
		if err != nil {
			t.Fatal(err)
		}
		// Users are global to the broker: make the names unique to this test's vhost.
		p.User = vhost + "-" + p.User
		for i := range p.Topics {
			if p.Topics[i].Exchange == ReplyExchange("test") {
				p.Topics[i].Read = "^" + q(p.User) + `\.`
			}
		}
		a := Account{Permission: p, Password: newID()}
		accounts = append(accounts, a)
		t.Cleanup(func() { exec.Command("rabbitmqctl", "-q", "delete_user", a.User).Run() })
		u, _ := url.Parse(base)
		u.User = url.UserPassword(a.User, a.Password)
		urls[role] = u.String()
	}
	defs, err := Definitions(vhost, "test", []string{"n1", "n2"}, accounts)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("rabbitmqctl", "-q", "import_definitions", "--format", "json")
	cmd.Stdin = bytes.NewReader(defs)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("import_definitions: %v\n%s", err, out)
	}
	return urls
}

func publishConfirm(ch *amqp.Channel, exchange, key string) error {
	if err := ch.Confirm(false); err != nil {
		return err
	}
	dc, err := ch.PublishWithDeferredConfirm(exchange, key, false, false, amqp.Publishing{Body: []byte("intruder")})
	if err != nil {
		return err
	}
	dc.Wait() // the broker closes the channel instead of confirming a refused publish
	return nil
}

// With the broker users of docs/broker-permissions.md, each role works (the dealer delivers to
// a node's inbox, the node consumes it and serves requests, a client calls the node and the
// dealer), and every action of one node against another, and of a client against the inboxes,
// is refused by the broker.
func TestBrokerPermissions(t *testing.T) {
	base := testVhost(t)
	us := restrictedUsers(t, base)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A process with the shared account declares the same topology as the definitions.
	if _, err := dialTest(t, base, "shared").DeclareNode(ctx, "n1"); err != nil {
		t.Fatalf("the definitions' queues differ from the declarations: %v", err)
	}
	dealer := New(dialTest(t, us["dealer"], "dealer"))
	n1 := New(dialTest(t, us["n1"], "n1"))
	n2 := New(dialTest(t, us["n2"], "n2"))
	cl := New(dialTest(t, us["c1"], "c1"))

	// The roles work.
	for _, n := range []struct {
		tr *Transport
		id string
	}{{n1, "n1"}, {n2, "n2"}} {
		sctx, scancel := context.WithCancel(ctx)
		defer scancel()
		go n.tr.Serve(sctx, transport.Node(n.id), 1, func(_ context.Context, d transport.Delivery) ([]byte, error) {
			return append([]byte(n.id+":"), d.Body...), nil
		})
		if err := n.tr.WaitServing(ctx, transport.Node(n.id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := dealer.Publish(ctx, transport.Node("n1"), []byte("share")); err != nil {
		t.Fatalf("dealer publishes a share: %v", err)
	}
	got := make(chan string, 2)
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	fail := true
	go n1.Consume(cctx, transport.Node("n1"), func(_ context.Context, b []byte) error {
		if fail { // the failed message goes back to the inbox as a copy: node publishes to its own
			fail = false
			return errors.New("store busy")
		}
		got <- string(b)
		return nil
	})
	select {
	case s := <-got:
		if s != "share" {
			t.Fatalf("n1 got %q", s)
		}
	case <-ctx.Done():
		t.Fatal("n1 never got its share")
	}
	if r, err := cl.Call(ctx, transport.Node("n1"), []byte("sign")); err != nil || string(r) != "n1:sign" {
		t.Fatalf("client calls n1: %q %v", r, err)
	}
	if r, err := dealer.Call(ctx, transport.Node("n2"), []byte("health")); err != nil || string(r) != "n2:health" {
		t.Fatalf("dealer calls n2: %q %v", r, err)
	}
	dctx, dcancel := context.WithCancel(ctx)
	defer dcancel()
	go dealer.Serve(dctx, transport.Dealer, 1, func(_ context.Context, d transport.Delivery) ([]byte, error) { return []byte("dealt"), nil })
	if err := dealer.WaitServing(ctx, transport.Dealer); err != nil {
		t.Fatal(err)
	}
	if r, err := cl.Call(ctx, transport.Dealer, []byte("deal")); err != nil || string(r) != "dealt" {
		t.Fatalf("client calls the dealer: %q %v", r, err)
	}
	if _, err := dealer.Conn().DeclareNode(ctx, "n2"); err != nil {
		t.Fatal(err)
	}
	if _, err := dealer.Conn().DeclareNode(ctx, "n3"); !errors.Is(err, transport.ErrUnavailable) {
		t.Fatalf("the dealer declares a control queue the operator did not create: %v", err)
	}

	inbox1, dead1 := NodeControlQueue("test", "n1"), NodeDeadQueue("test", "n1")
	rpc1 := NodeRPCQueue("test", "n1")
	consume := func(queue string) func(ch *amqp.Channel) error {
		return func(ch *amqp.Channel) error {
			_, err := ch.Consume(queue, "", false, false, false, false, nil)
			return err
		}
	}
	// Node 2 against node 1.
	n2u := us["n2"]
	rabbitmqtest.Refused(t, n2u, "n2 consumes n1's inbox", consume(inbox1))
	rabbitmqtest.Refused(t, n2u, "n2 consumes n1's rpc queue", consume(rpc1))
	rabbitmqtest.Refused(t, n2u, "n2 consumes n1's dead letters", consume(dead1))
	rabbitmqtest.Refused(t, n2u, "n2 gets from n1's inbox", func(ch *amqp.Channel) error { _, _, err := ch.Get(inbox1, false); return err })
	rabbitmqtest.Refused(t, n2u, "n2 purges n1's inbox", func(ch *amqp.Channel) error { _, err := ch.QueuePurge(inbox1, false); return err })
	rabbitmqtest.Refused(t, n2u, "n2 deletes n1's inbox", func(ch *amqp.Channel) error { _, err := ch.QueueDelete(inbox1, false, false, false); return err })
	rabbitmqtest.Refused(t, n2u, "n2 redeclares n1's inbox", func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(inbox1, true, false, false, false, controlArgs(inbox1, DeliveryLimit))
		return err
	})
	rabbitmqtest.Refused(t, n2u, "n2 publishes a share into n1's inbox", func(ch *amqp.Channel) error {
		return publishConfirm(ch, InboxExchange("test"), NodeKey("n1"))
	})
	rabbitmqtest.Refused(t, n2u, "n2 publishes into n1's inbox through the default exchange", func(ch *amqp.Channel) error {
		return publishConfirm(ch, "", inbox1)
	})
	rabbitmqtest.Refused(t, n2u, "n2 sends a request", func(ch *amqp.Channel) error { return publishConfirm(ch, RPCExchange("test"), NodeKey("n1")) })
	rabbitmqtest.Refused(t, n2u, "n2 binds its inbox to n1's key", func(ch *amqp.Channel) error {
		return ch.QueueBind(NodeControlQueue("test", "n2"), NodeKey("n1"), InboxExchange("test"), false, nil)
	})
	rabbitmqtest.Refused(t, n2u, "n2 binds its inbox to every key", func(ch *amqp.Channel) error {
		return ch.QueueBind(NodeControlQueue("test", "n2"), "#", InboxExchange("test"), false, nil)
	})
	rabbitmqtest.Refused(t, n2u, "n2 binds n1's inbox", func(ch *amqp.Channel) error {
		return ch.QueueBind(inbox1, NodeKey("n1"), InboxExchange("test"), false, nil)
	})
	rabbitmqtest.Refused(t, n2u, "n2 deletes an exchange", func(ch *amqp.Channel) error { return ch.ExchangeDelete(InboxExchange("test"), false, false) })
	// A client.
	cu := us["c1"]
	rabbitmqtest.Refused(t, cu, "a client publishes into an inbox", func(ch *amqp.Channel) error {
		return publishConfirm(ch, InboxExchange("test"), NodeKey("n1"))
	})
	rabbitmqtest.Refused(t, cu, "a client publishes through the default exchange", func(ch *amqp.Channel) error { return publishConfirm(ch, "", inbox1) })
	rabbitmqtest.Refused(t, cu, "a client consumes an inbox", consume(inbox1))
	rabbitmqtest.Refused(t, cu, "a client replies", func(ch *amqp.Channel) error { return publishConfirm(ch, ReplyExchange("test"), "x.amq.gen-x") })
	// The dealer reads, purges and deletes no inbox.
	du := us["dealer"]
	rabbitmqtest.Refused(t, du, "the dealer consumes an inbox", consume(inbox1))
	rabbitmqtest.Refused(t, du, "the dealer purges an inbox", func(ch *amqp.Channel) error { _, err := ch.QueuePurge(inbox1, false); return err })
	rabbitmqtest.Refused(t, du, "the dealer deletes an inbox", func(ch *amqp.Channel) error { _, err := ch.QueueDelete(inbox1, false, false, false); return err })
	rabbitmqtest.Refused(t, du, "the dealer consumes a node's rpc queue", consume(rpc1))

	// After all that, node 1 still works and gets what the dealer sends.
	if err := dealer.Publish(ctx, transport.Node("n1"), []byte("second")); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "second" {
			t.Fatalf("n1 got %q", s)
		}
	case <-ctx.Done():
		t.Fatal("n1 never got the second share")
	}
	if r, err := cl.Call(ctx, transport.Node("n1"), []byte("again")); err != nil || string(r) != "n1:again" {
		t.Fatalf("client calls n1 again: %q %v", r, err)
	}
}

// A caller of the previous version (direct reply-to, default exchange) is still answered by a
// server whose broker user may write to the default exchange (a shared account); a restricted
// server drops such requests and keeps serving the others.
func TestDirectReplyToCallers(t *testing.T) {
	base := testVhost(t)
	us := restrictedUsers(t, base)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	oldCall := func(queue string) ([]byte, error) {
		_, ch := rawChannel(t, base)
		ds, err := ch.Consume(directReplyTo, "", true, false, false, false, nil)
		if err != nil {
			return nil, err
		}
		if err := ch.Publish("", queue, true, false, amqp.Publishing{ReplyTo: directReplyTo, CorrelationId: "old",
			Expiration: "5000", Body: []byte("old")}); err != nil {
			return nil, err
		}
		select {
		case d := <-ds:
			return d.Body, nil
		case <-time.After(2 * time.Second):
			return nil, context.DeadlineExceeded
		}
	}
	for _, c := range []struct {
		url    string
		answer bool
	}{{base, true}, {us["n1"], false}} {
		srv := dialTest(t, c.url, "server")
		sctx, scancel := context.WithCancel(ctx)
		q := srv.NodeRPCQueue("n1")
		go srv.Serve(sctx, q, 1, func(_ context.Context, d transport.Delivery) ([]byte, error) {
			return []byte("re:" + string(d.Body)), nil
		})
		if err := srv.WaitConsuming(ctx, q); err != nil {
			t.Fatal(err)
		}
		r, err := oldCall(q)
		if c.answer && (err != nil || string(r) != "re:old") {
			t.Fatalf("old caller, shared account: %q %v", r, err)
		}
		if !c.answer && err == nil {
			t.Fatalf("old caller answered by a restricted server: %q", r)
		}
		cli := dialTest(t, us["c1"], "client")
		if r, err := cli.Call(ctx, q, []byte("new")); err != nil || string(r) != "re:new" {
			t.Fatalf("new caller after an old one: %q %v", r, err)
		}
		scancel()
		srv.Close()
	}
}
