package rabbitmq

import (
	"context"
	"os"
	"testing"
	"time"
)

// BenchmarkPublishDurable measures one confirmed persistent publish of a share-sized message
// (4 KiB) into a node's quorum control queue and, for comparison, into a classic durable queue
// like the one the previous version used. $TCHSM_BENCH_AMQP_URL points it at another broker
// (a cluster: each quorum publish is then confirmed by a majority of its nodes); its vhost must
// exist.
func BenchmarkPublishDurable(b *testing.B) {
	url := os.Getenv("TCHSM_BENCH_AMQP_URL")
	if url == "" {
		url = testVhost(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := Dial(ctx, Config{URL: url, ClusterID: "bench", Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	q, err := c.DeclareNode(ctx, "n1")
	if err != nil {
		b.Fatal(err)
	}
	classic := "tchsm.bench.classic"
	s, err := c.session(ctx)
	if err != nil {
		b.Fatal(err)
	}
	ch, err := s.conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ch.QueueDeclare(classic, true, false, false, false, nil); err != nil {
		b.Fatal(err)
	}
	defer func() {
		ch.QueuePurge(q.Control, false)
		ch.QueueDelete(classic, false, false, false)
		ch.Close()
	}()
	body := make([]byte, 4096)
	for _, bc := range []struct{ name, queue string }{{"quorum", q.Control}, {"classic", classic}} {
		b.Run(bc.name, func(b *testing.B) {
			for range b.N {
				if err := c.PublishDurable(ctx, bc.queue, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
