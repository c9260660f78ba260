package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/transport/rabbitmq"
	"github.com/tchsm/tchsm/internal/trust"
)

func init() {
	register("queues", "broker queues of the nodes: migrate (classic to quorum) or requeue-dead", runQueues)
}

// runQueues: `tchsm queues migrate|requeue-dead -config dealer.json [-node ID]`. Both run with
// the dealer's configuration: the dealer is the role that writes into the nodes' inboxes.
func runQueues(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || (args[0] != "migrate" && args[0] != "requeue-dead") {
		fmt.Fprintln(e.stderr, "Usage: tchsm queues migrate|requeue-dead -config dealer.json [-node ID]")
		fmt.Fprintln(e.stderr, "  migrate       declare every node's quorum control queues, moving what the classic")
		fmt.Fprintln(e.stderr, "                queues of an older version hold into them (nodes and the dealer also")
		fmt.Fprintln(e.stderr, "                do this by themselves at start-up)")
		fmt.Fprintln(e.stderr, "  requeue-dead  move the messages of the nodes' dead-letter queues back into their")
		fmt.Fprintln(e.stderr, "                control queues (shares that reached the delivery limit)")
		return errUsage
	}
	sub, args := args[0], args[1:]
	fs := newFlags(e, "queues "+sub, "queues "+sub+" -config dealer.json [-node ID]")
	cfgPath := fs.String("config", "", "the dealer's configuration (broker and manifest)")
	only := fs.String("node", "", "one node id (default: every node of the manifest)")
	timeout := fs.Duration("timeout", 60*time.Second, "how long to try")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cfgPath == "" {
		return fmt.Errorf("queues %s needs -config", sub)
	}
	var cfg config.Dealer
	if err := config.Load(*cfgPath, &cfg); err != nil {
		return err
	}
	m, err := trust.LoadManifest(cfg.Manifest)
	if err != nil {
		return err
	}
	tc, err := rabbitmq.FromConfig(cfg.AMQP, m.ClusterID, "tchsm-queues")
	if err != nil {
		return err
	}
	if tc.Logger, err = newLogger(e.stderr, "warn"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	conn, err := rabbitmq.Dial(ctx, tc)
	if err != nil {
		return err
	}
	defer conn.Close()
	found := false
	for _, n := range m.Nodes {
		if *only != "" && n.ID != *only {
			continue
		}
		found = true
		if sub == "migrate" {
			q, err := conn.DeclareNode(ctx, n.ID)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s: %s, %s\n", n.ID, q.Control, q.Dead)
			continue
		}
		moved, err := conn.RequeueDead(ctx, n.ID)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s: %d message(s) moved back into %s\n", n.ID, moved, conn.NodeControlQueue(n.ID))
	}
	if !found {
		return fmt.Errorf("no node %q in the manifest", *only)
	}
	return nil
}
