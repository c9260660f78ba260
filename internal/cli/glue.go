package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/dealer"
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	"github.com/tchsm/tchsm/node"
	tchsmpb "github.com/tchsm/tchsm/proto"
)

func init() {
	register("node", "run a signing node (tchsm node -config FILE); back up or restore its store (node backup|restore); give a lost node's index a new identity (node replace)", runNode)
	register("dealer", "run the dealer service that generates and deals keys", runDealer)
}

// openClient opens a client from its configuration file. When the file names a dealer_config,
// keys are dealt in this process (client.Options.Dealer): only the command can, since the
// PKCS#11 module does not link the dealer. Without a log_file of its own, the client's warnings
// (a node caught lying, a broker away) go to stderr (e nil: nowhere).
func openClient(ctx context.Context, e *env, path string) (*client.Client, error) {
	var cfg config.Client
	if err := config.Load(path, &cfg); err != nil {
		return nil, err
	}
	var opts client.Options
	if cfg.LogFile == "" && e != nil {
		if log, err := newLogger(e.stderr, "warn"); err == nil {
			opts.Logger = log
		}
	}
	if cfg.DealerConfig != "" {
		dealerCfg := cfg.DealerConfig
		opts.Dealer = func(t transport.Transport) (client.KeyDealer, error) {
			var dc config.Dealer
			if err := config.Load(dealerCfg, &dc); err != nil {
				return nil, err
			}
			d, err := dealer.New(&dc, t, dealer.Options{})
			if err != nil {
				return nil, err
			}
			return localDealer{d}, nil
		}
	}
	return client.New(ctx, &cfg, opts)
}

// localDealer is an in-process dealer as a client.KeyDealer (its DeleteKey and RestoreKey are
// the dealer's own).
type localDealer struct{ *dealer.Dealer }

func (d localDealer) GenerateKey(ctx context.Context, bits, e int, label string, p11id []byte) (*tchsmpb.SignedKeyRecord, []string, []string, error) {
	rec, acked, missing, err := d.Dealer.GenerateKey(ctx, bits, e, label, p11id)
	if errors.Is(err, dealer.ErrInvalid) {
		err = fmt.Errorf("%w: %v", client.ErrInvalidInput, err)
	}
	return rec, acked, missing, err
}

func runNode(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "backup":
			return runNodeBackup(ctx, e, args[1:])
		case "restore":
			return runNodeRestore(ctx, e, args[1:])
		case "replace":
			return runNodeReplace(ctx, e, args[1:])
		}
	}
	if err := dropPassphraseEnv(); err != nil {
		return err
	}
	fs := newFlags(e, "node", "node -config FILE [overrides]")
	cfgPath := fs.String("config", "/etc/tchsm/node.json", "node configuration file")
	manifest := fs.String("manifest", "", "override: manifest file")
	store := fs.String("store", "", "override: share store file")
	passFile := fs.String("passphrase-file", "", "override: passphrase file outside the node's folder ($TCHSM_PASSPHRASE_FD, $TCHSM_PASSPHRASE and a systemd credential \"passphrase\" win over it)")
	metrics := fs.String("metrics", "", "override: address for /metrics and /healthz, e.g. :9100")
	level := fs.String("log-level", "", "override: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var cfg config.Node
	if err := config.Load(*cfgPath, &cfg); err != nil {
		return err
	}
	override(&cfg.Manifest, *manifest)
	override(&cfg.Store, *store)
	override(&cfg.PassphraseFile, *passFile)
	override(&cfg.MetricsAddr, *metrics)
	override(&cfg.LogLevel, *level)
	if err := cfg.Validate(); err != nil {
		return err
	}
	log, err := newLogger(e.stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	err = node.Run(ctx, &cfg, node.Options{Logger: log, Version: e.version})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func runDealer(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "dealer", "dealer -config FILE [overrides]")
	cfgPath := fs.String("config", "/etc/tchsm/dealer.json", "dealer configuration file")
	manifest := fs.String("manifest", "", "override: manifest file")
	level := fs.String("log-level", "", "override: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var cfg config.Dealer
	if err := config.Load(*cfgPath, &cfg); err != nil {
		return err
	}
	override(&cfg.Manifest, *manifest)
	override(&cfg.LogLevel, *level)
	if err := cfg.Validate(); err != nil {
		return err
	}
	log, err := newLogger(e.stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	err = dealer.Run(ctx, &cfg, dealer.Options{Logger: log, Version: e.version})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func override(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}

// importKey deals an existing RSA private key (migration from SoftHSM or files) in this
// process with the dealer's identity, then forgets it.
func importKey(ctx context.Context, e *env, c *client.Client, pemFile, dealerCfg, label, p11id string) error {
	if pemFile == "" || dealerCfg == "" {
		return fmt.Errorf("keys import needs -pem FILE and -dealer-config FILE")
	}
	// The import deals with the dealer's own identity, which the nodes obey whoever runs it;
	// a signer client is still refused here, as the dealer service would refuse it.
	if c.Role() != trust.ClientRoleAdmin {
		return fmt.Errorf("%w: client has role %s; importing keys needs an %s client", client.ErrUnauthorized, c.Role(), trust.ClientRoleAdmin)
	}
	priv, err := parseRSAKey(pemFile)
	if err != nil {
		return err
	}
	idb, err := p11ID(p11id)
	if err != nil {
		return err
	}
	var dc config.Dealer
	if err := config.Load(dealerCfg, &dc); err != nil {
		return err
	}
	conn, err := c.Transport(ctx)
	if err != nil {
		return err
	}
	log, err := newLogger(e.stderr, "warn")
	if err != nil {
		return err
	}
	d, err := dealer.New(&dc, conn, dealer.Options{Logger: log, NoPool: true})
	if err != nil {
		return err
	}
	defer d.Close()
	rec, acked, missing, err := d.Import(ctx, priv, label, idb)
	if err != nil {
		return err
	}
	k, err := c.AddRecord(rec)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s\n", k.ID)
	fmt.Fprintf(e.stderr, "imported: %d nodes stored their share", len(acked))
	if len(missing) > 0 {
		fmt.Fprintf(e.stderr, "; missing (their shares wait in their queues): %v", missing)
	}
	fmt.Fprintln(e.stderr)
	return nil
}
