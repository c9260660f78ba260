package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/tchsm/tchsm/internal/clusterinit"
)

func init() {
	register("init", "create a cluster: identities, manifest and configuration files", runInit)
}

func runInit(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "init", "init -dir DIR -k K -n N [-clients A] [-signers S] [-cluster-id ID] [-amqp URL]")
	dir := fs.String("dir", "", "folder to create the cluster in (required)")
	k := fs.Int("k", 3, "threshold: shares needed to sign")
	n := fs.Int("n", 5, "number of signing nodes")
	clients := fs.Int("clients", 1, "number of admin clients (client-1..): sign, generate, import, delete and restore keys")
	signers := fs.Int("signers", 1, "number of signer clients (signer-1..): sign and list keys only")
	id := fs.String("cluster-id", "", "cluster id (letters, digits, - and _); random if empty")
	url := fs.String("amqp", "", "broker URL, or a comma-separated list of a RabbitMQ cluster's nodes, written into every config (default: $TCHSM_AMQP_URL or amqp://guest:guest@127.0.0.1:5672/)")
	localDealer := fs.Bool("local-dealer", false, "clients deal keys in-process instead of asking `tchsm dealer`")
	pinFile := fs.String("pin-file", "", "file holding every client's first user PIN, installed on the nodes (encrypted to each); without it the nodes check no PIN until `tchsm pin set`, and a client's files alone sign")
	brokerUsers := fs.Bool("broker-users", true, "give every node, the dealer and every client its own broker user with only its role's permissions (created by `tchsm broker setup`; -amqp then only names the brokers and the vhost); false: every role uses the -amqp URL's account")
	admins := fs.Int("admins", 1, "manifest admin keys to make (admin/admin-J.key): they sign manifest updates and belong offline; 0 makes none (the manifest then takes no update)")
	adminThreshold := fs.Int("admin-threshold", 1, "admin signatures every manifest update needs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() != 0 || *clients < 0 || *signers < 0 || *clients+*signers == 0 {
		fs.Usage()
		return errUsage
	}
	nAdmins := *admins // clusterinit: 0 is its default (one), -1 none
	if nAdmins <= 0 {
		nAdmins = -1
	}
	var userPIN string
	if *pinFile != "" {
		p, err := readPIN(e, *pinFile, EnvNewPIN, "")
		if err != nil {
			return err
		}
		if len(p) < 4 || len(p) > 255 {
			return fmt.Errorf("-pin-file: a PIN has 4 to 255 bytes")
		}
		userPIN = string(p)
	}
	l, err := clusterinit.Create(*dir, clusterinit.Options{ClusterID: *id, K: *k, N: *n, Clients: *clients, Signers: *signers, AMQPURL: *url, LocalDealer: *localDealer, BrokerUsers: *brokerUsers, PIN: userPIN,
		Admins: nAdmins, AdminThreshold: *adminThreshold})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "cluster created in %s (%d-of-%d)\nmanifest: %s\n", l.Dir, *k, *n, l.Manifest)
	for i, p := range l.Nodes {
		fmt.Fprintf(e.stdout, "node %d:   %s\n", i+1, p)
	}
	fmt.Fprintf(e.stdout, "dealer:   %s\n", l.Dealer)
	for _, p := range l.Clients {
		fmt.Fprintf(e.stdout, "admin client:  %s\n", p)
	}
	for _, p := range l.Signers {
		fmt.Fprintf(e.stdout, "signer client: %s\n", p)
	}
	fmt.Fprintf(e.stdout, "\nThe nodes' passphrases are in %s/secrets, outside the node folders: give each to its node\n"+
		"as a systemd credential (LoadCredential=passphrase:FILE) or a container secret (/run/secrets/...), then\n"+
		"delete the folder. Never copy a passphrase into a node's folder.\n", l.Dir)
	if len(l.AdminKeys) > 0 {
		fmt.Fprintf(e.stdout, "\nManifest admin keys: %s (%d needed per update).\n"+
			"They are the root of the cluster's membership: move them offline (a removable medium in a safe)\n"+
			"now, and bring one out only to sign a manifest update (docs/operations/manifest.md).\n", strings.Join(l.AdminKeys, ", "), *adminThreshold)
	}
	if userPIN == "" {
		fmt.Fprintf(e.stdout, "\nNo -pin-file: the nodes check no user PIN yet, so a client's files alone sign. Set one\n"+
			"per client (tchsm pin set -config CLIENT.json) before the clients go into service.\n")
	}
	if l.BrokerDefinitions != "" {
		fmt.Fprintf(e.stdout, "broker:   %s\n\nBefore the first start: `tchsm broker setup -dir %s` where rabbitmqctl reaches the broker\n(it creates every role's broker user, the exchanges and the control queues), and add\n%s to every broker node's rabbitmq.conf.\n",
			l.BrokerDefinitions, l.Dir, filepath.Join(l.Dir, "broker", clusterinit.BrokerConf))
	}
	return nil
}
