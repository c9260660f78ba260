package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tchsm/tchsm/internal/clusterinit"
)

func init() {
	register("broker", "create or remove a cluster's broker users and queues (broker setup|remove)", runBroker)
}

// runBroker: `tchsm broker setup|remove -dir DIR [-rabbitmqctl CMD]`. setup imports
// DIR/broker/definitions.json (written by tchsm init: the exchanges, the nodes' control queues,
// every role's user and permissions) with rabbitmqctl import_definitions, which adds or
// updates and never deletes, so it can run again; remove deletes the cluster's users.
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
		return brokerRemove(ctx, e, *dir, *ctl)
	}
	return brokerSetup(ctx, e, *dir, *ctl)
}

func definitionsPath(dir string) string {
	return filepath.Join(dir, "broker", clusterinit.BrokerDefinitions)
}

// rabbitmqctl runs the rabbitmqctl command ctl ("" : $RABBITMQCTL or rabbitmqctl) with args
// and stdin.
func rabbitmqctl(ctx context.Context, ctl string, stdin []byte, args ...string) ([]byte, error) {
	if ctl == "" {
		ctl = os.Getenv("RABBITMQCTL")
	}
	argv := strings.Fields(ctl)
	if len(argv) == 0 {
		argv = []string{"rabbitmqctl"}
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], append(append(argv[1:], "-q"), args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", strings.Join(argv, " "), args[0], err, bytes.TrimSpace(out))
	}
	return out, nil
}

func brokerSetup(ctx context.Context, e *env, dir, ctl string) error {
	defs, err := os.ReadFile(definitionsPath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w (the cluster was created with tchsm init -broker-users=false: every role uses the account in its configuration)", err)
	}
	if err != nil {
		return err
	}
	// On standard input, so that it works through docker exec -T as well.
	if _, err := rabbitmqctl(ctx, ctl, defs, "import_definitions", "--format", "json"); err != nil {
		return err
	}
	users, err := definitionUsers(defs)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "broker: %d users, their permissions, the exchanges and the control queues set up from %s\n", len(users), definitionsPath(dir))
	return nil
}

func brokerRemove(ctx context.Context, e *env, dir, ctl string) error {
	defs, err := os.ReadFile(definitionsPath(dir))
	if err != nil {
		return err
	}
	users, err := definitionUsers(defs)
	if err != nil {
		return err
	}
	for _, u := range users {
		if _, err := rabbitmqctl(ctx, ctl, nil, "delete_user", u); err != nil {
			fmt.Fprintf(e.stderr, "broker: %v\n", err)
		}
	}
	fmt.Fprintf(e.stderr, "broker: removed the users of %s (queues and exchanges stay; rabbitmqctl delete_vhost removes a vhost and all it holds)\n", definitionsPath(dir))
	return nil
}

func definitionUsers(defs []byte) ([]string, error) {
	var d struct {
		Users []struct {
			Name string `json:"name"`
		} `json:"users"`
	}
	if err := json.Unmarshal(defs, &d); err != nil {
		return nil, fmt.Errorf("broker definitions: %w", err)
	}
	var names []string
	for _, u := range d.Users {
		names = append(names, u.Name)
	}
	return names, nil
}

// canRunRabbitmqctl reports whether ctl reaches a broker.
func canRunRabbitmqctl(ctx context.Context, ctl string) error {
	_, err := rabbitmqctl(ctx, ctl, nil, "list_vhosts")
	return err
}
