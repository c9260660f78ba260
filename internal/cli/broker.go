package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/transport/rabbitmq"
	"github.com/tchsm/tchsm/internal/trust"
)

func init() {
	register("broker", "create or remove a cluster's broker users (broker setup|remove)", runBroker)
}

// runBroker: `tchsm broker setup|remove -dir DIR [-rabbitmqctl CMD]`. setup runs DIR/broker/setup.sh
// (written by tchsm init: the users, passwords and permissions of every role) and then
// connects as the dealer, which creates the cluster's exchanges; remove deletes the users.
func runBroker(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || (args[0] != "setup" && args[0] != "remove") {
		fmt.Fprintln(e.stderr, "Usage: tchsm broker setup|remove -dir DIR [-rabbitmqctl CMD]")
		return errUsage
	}
	sub, args := args[0], args[1:]
	fs := newFlags(e, "broker "+sub, "broker "+sub+" -dir DIR [-rabbitmqctl CMD]")
	dir := fs.String("dir", "", "the cluster folder tchsm init wrote (required)")
	ctl := fs.String("rabbitmqctl", "", "the rabbitmqctl command, split at blanks (default: $RABBITMQCTL or rabbitmqctl), e.g. \"docker compose exec -T rabbitmq rabbitmqctl\"")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() != 0 {
		fs.Usage()
		return errUsage
	}
	if sub == "remove" {
		return brokerScript(ctx, e, *dir, *ctl, "remove")
	}
	if err := brokerScript(ctx, e, *dir, *ctl); err != nil {
		return err
	}
	return declareExchanges(ctx, filepath.Join(*dir, "dealer", "dealer.json"))
}

// brokerScript runs DIR/broker/setup.sh with args.
func brokerScript(ctx context.Context, e *env, dir, ctl string, args ...string) error {
	sh := filepath.Join(dir, "broker", "setup.sh")
	if _, err := os.Stat(sh); err != nil {
		return fmt.Errorf("%s: %w (the cluster was created without broker users: tchsm init -broker-users=false)", sh, err)
	}
	cmd := exec.CommandContext(ctx, "bash", append([]string{sh}, args...)...)
	cmd.Env = os.Environ()
	if ctl != "" {
		cmd.Env = append(cmd.Env, "RABBITMQCTL="+ctl)
	}
	cmd.Stdout, cmd.Stderr = e.stderr, e.stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("running %s %s: %w", sh, strings.Join(args, " "), err)
	}
	return nil
}

// declareExchanges connects with the dealer's configuration: the dealer's user may create the
// cluster's exchanges, and every connection makes sure they exist, so nodes and clients (which
// may not create them) can start before the dealer ever ran.
func declareExchanges(ctx context.Context, dealerCfg string) error {
	var cfg config.Dealer
	if err := config.Load(dealerCfg, &cfg); err != nil {
		return err
	}
	m, err := trust.LoadManifest(cfg.Manifest)
	if err != nil {
		return err
	}
	tc, err := rabbitmq.FromConfig(cfg.AMQP, m.ClusterID, "tchsm-broker-setup")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := rabbitmq.Dial(ctx, tc)
	if err != nil {
		return fmt.Errorf("connecting as the dealer to create the exchanges: %w", err)
	}
	return conn.Close()
}

// canRunRabbitmqctl reports whether ctl (or rabbitmqctl) reaches a broker.
func canRunRabbitmqctl(ctx context.Context, ctl string) error {
	if ctl == "" {
		ctl = os.Getenv("RABBITMQCTL")
	}
	argv := strings.Fields(ctl)
	if len(argv) == 0 {
		argv = []string{"rabbitmqctl"}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], append(argv[1:], "-q", "list_vhosts")...).CombinedOutput()
	if err != nil {
		return errors.New(strings.TrimSpace(string(out)) + ": " + err.Error())
	}
	return nil
}
