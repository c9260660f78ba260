package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/node"
	"github.com/tchsm/tchsm/node/store"
)

// backupDoc is the operator's page for these two commands.
const backupDoc = "docs/operations/backup-restore.md"

// loadNodeConfig reads a node configuration with the overrides backup and restore take.
func loadNodeConfig(path, storePath, passFile string) (*config.Node, error) {
	var cfg config.Node
	if err := config.Load(path, &cfg); err != nil {
		return nil, err
	}
	override(&cfg.Store, storePath)
	override(&cfg.PassphraseFile, passFile)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

func runNodeBackup(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "node backup", "node backup -config FILE -out FILE [-offline]")
	cfgPath := fs.String("config", "/etc/tchsm/node.json", "node configuration file")
	out := fs.String("out", "", "backup file to write (required; replaced atomically, mode 0600)")
	offline := fs.Bool("offline", false, "read the store file even if a node answers on its socket (the node must be stopped)")
	storePath := fs.String("store", "", "override: share store file")
	passFile := fs.String("passphrase-file", "", "override: passphrase file (offline backups only: a running node needs none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() != 0 {
		fs.Usage()
		return errUsage
	}
	cfg, err := loadNodeConfig(*cfgPath, *storePath, *passFile)
	if err != nil {
		return err
	}
	if same(*out, cfg.Store) || same(*out, node.SocketPath(cfg)) || same(*out, cfg.Identity) {
		return fmt.Errorf("-out %s is the node's own store, socket or identity", *out)
	}
	dir := filepath.Dir(*out)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(*out)+".tmp-*") // mode 0600
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	t0 := time.Now()
	h, online, err := node.Backup(ctx, cfg, tmp, *offline)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// Read back what is on disk before it takes the place of an older backup.
	f, err := os.Open(tmp.Name())
	if err != nil {
		return err
	}
	back, err := store.InspectBackup(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("the backup written does not read back: %w", err)
	}
	if back.Size != h.Size || back.Node != h.Node || len(back.Keys) != len(h.Keys) {
		return fmt.Errorf("the backup written does not read back as the one taken")
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	how := "from the running node"
	if !online {
		how = "from the store file (node stopped)"
	}
	fmt.Fprintf(e.stdout, "backup of %s written to %s %s in %v\n", h.Node, *out, how, time.Since(t0).Round(time.Millisecond))
	printBackup(e.stdout, h)
	if filepath.Dir(filepath.Clean(*out)) == filepath.Dir(filepath.Clean(cfg.Store)) {
		fmt.Fprintf(e.stderr, "warning: the backup is in the store's own folder: a lost disk takes both; copy it elsewhere\n")
	}
	return nil
}

func runNodeRestore(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "node restore", "node restore -config FILE -in FILE [-force]")
	cfgPath := fs.String("config", "/etc/tchsm/node.json", "node configuration file")
	in := fs.String("in", "", "backup file written by tchsm node backup (required)")
	force := fs.Bool("force", false, "replace an existing store (it is moved aside to STORE.replaced-TIME, not deleted)")
	storePath := fs.String("store", "", "override: share store file")
	passFile := fs.String("passphrase-file", "", "override: passphrase file outside the node's folder")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *in == "" || fs.NArg() != 0 {
		fs.Usage()
		return errUsage
	}
	cfg, err := loadNodeConfig(*cfgPath, *storePath, *passFile)
	if err != nil {
		return err
	}
	// The store's lock tells whether a node holds the file; a node whose folder was wiped
	// under it holds a file that is no longer there, but still answers on its socket.
	if node.Running(ctx, cfg) {
		return fmt.Errorf("a node is running on this store (it answers on %s): stop it before restoring", node.SocketPath(cfg))
	}
	f, err := os.Open(*in)
	if err != nil {
		return err
	}
	defer f.Close()
	res, err := node.Restore(cfg, f, *force)
	if errors.Is(err, store.ErrExists) {
		return fmt.Errorf("%w: it may hold keys the backup lacks; restore over it with -force (it is moved aside, not deleted)", err)
	}
	if err != nil {
		return err
	}
	h := res.Header
	fmt.Fprintf(e.stdout, "restored %s's store %s from %s\n", h.Node, cfg.Store, *in)
	printBackup(e.stdout, h)
	if res.Replaced != "" {
		fmt.Fprintf(e.stdout, "the store that was there is now %s\n", res.Replaced)
	}
	fmt.Fprintf(e.stderr, `warning: this backup is %v old. Start the node, then run tchsm status:
  keys dealt to the cluster after %s are missing on %s and are not re-delivered: status reports
  "%s lacks ..."; give an Ed25519 key its share back with tchsm keys reshare ID (every node
  must answer); an RSA key cannot be (the dealer keeps no key): roll it over (%s);
  keys deleted after that time are back on %s alone: status reports "held only by %s"; delete
  them there too with tchsm keys delete ID. See %s.
`, time.Since(h.Created).Round(time.Second), h.Created.Format(time.RFC3339), h.Node, h.Node, replaceDoc, h.Node, h.Node, backupDoc)
	return nil
}

// printBackup prints what a backup holds.
func printBackup(w io.Writer, h *store.BackupHeader) {
	fmt.Fprintf(w, "taken %s; cluster %s, manifest %s; %d key(s), %d deletion(s) recorded, %d bytes\n",
		h.Created.Format(time.RFC3339), h.Cluster, h.Manifest, len(h.Keys), h.Deleted, h.Size)
	if len(h.Keys) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tALGORITHM\tLABEL\tCREATED")
	for _, k := range h.Keys {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", k.ID, k.Algorithm, k.Label, k.Created.Format(time.RFC3339))
	}
	tw.Flush()
}

// same reports whether two paths name the same file (or would).
func same(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	if err1 != nil || err2 != nil {
		return filepath.Clean(a) == filepath.Clean(b)
	}
	if aa == bb {
		return true
	}
	fa, err1 := os.Stat(aa)
	fb, err2 := os.Stat(bb)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
