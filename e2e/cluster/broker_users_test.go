package cluster_test

import (
	"context"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/testcluster"
	"github.com/tchsm/tchsm/internal/transport/rabbitmq"
	"github.com/tchsm/tchsm/internal/transport/rabbitmq/rabbitmqtest"
)

// The cluster of `tchsm init` with its default least-privilege broker users (`tchsm broker
// setup`) deals, signs and deletes; with node 2's broker credentials, node 1's inbox and rpc
// queue cannot be consumed and no share can be put into node 1's inbox; with the client's, no
// inbox can be written. Node 1 keeps its share throughout. Budget: about 20 s.
func TestLeastPrivilegeBrokerUsers(t *testing.T) {
	tc := testcluster.Start(t, testcluster.Options{K: 2, N: 3, BrokerUsers: true})
	c := tc.Client()
	k := generate(t, c, 1024)
	signOK(t, c, k, "restricted users")

	var n2 config.Node
	if err := config.Load(tc.Layout.Nodes[1], &n2); err != nil {
		t.Fatal(err)
	}
	var cl config.Client
	if err := config.Load(tc.Layout.Clients[0], &cl); err != nil {
		t.Fatal(err)
	}
	m := c.Manifest()
	inbox, rpc := rabbitmq.NodeControlQueue(m.ClusterID, "node-1"), rabbitmq.NodeRPCQueue(m.ClusterID, "node-1")
	try := func(who, rawURL, what string, op func(ch *amqp.Channel) error) {
		t.Helper()
		rabbitmqtest.Refused(t, rawURL, who+" "+what, op)
	}
	publish := func(exchange, key string) func(ch *amqp.Channel) error {
		return func(ch *amqp.Channel) error {
			if err := ch.Confirm(false); err != nil {
				return err
			}
			dc, err := ch.PublishWithDeferredConfirm(exchange, key, false, false, amqp.Publishing{Body: []byte("forged share")})
			if err != nil {
				return err
			}
			dc.Wait()
			return nil
		}
	}
	consume := func(q string) func(ch *amqp.Channel) error {
		return func(ch *amqp.Channel) error { _, err := ch.Consume(q, "", false, false, false, false, nil); return err }
	}
	node2 := n2.AMQP.URL
	try("node-2", node2, "consumes node-1's inbox", consume(inbox))
	try("node-2", node2, "consumes node-1's rpc queue", consume(rpc))
	try("node-2", node2, "acknowledges a get from node-1's inbox", func(ch *amqp.Channel) error {
		d, _, err := ch.Get(inbox, false)
		if err == nil {
			err = d.Ack(false)
		}
		return err
	})
	try("node-2", node2, "publishes a share delivery to node-1's inbox", publish(rabbitmq.InboxExchange(m.ClusterID), rabbitmq.NodeKey("node-1")))
	try("node-2", node2, "publishes to node-1's inbox through the default exchange", publish("", inbox))
	client := cl.AMQP.URL
	try("the client", client, "publishes to node-1's inbox", publish(rabbitmq.InboxExchange(m.ClusterID), rabbitmq.NodeKey("node-1")))
	try("the client", client, "publishes to an inbox through the default exchange", publish("", inbox))
	try("the client", client, "consumes node-1's inbox", consume(inbox))

	// Node 1 still holds its share, and signing and deletion still work.
	st, err := c.Status(context.Background())
	if err != nil || len(st) != 3 || len(st[0].Keys) != 1 {
		t.Fatalf("status after the intrusions: %+v %v", st, err)
	}
	tc.KillNode(3)
	signOK(t, c, k, "nodes 1 and 2")
	if _, err := c.DeleteKey(context.Background(), k.ID); err != nil {
		t.Fatal(err)
	}
}
