package node_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tchsm/tchsm/node"
	"github.com/tchsm/tchsm/node/nodetest"
	"github.com/tchsm/tchsm/node/store"
)

// TestBackupSocket: a running node answers backups on a 0600 socket beside its store and
// refuses anything else; a stopped node is backed up from its file and restored; a node whose
// socket path is taken still starts, and its store is then reported locked, not copied.
func TestBackupSocket(t *testing.T) {
	c := nodetest.NewInMemory(t, nodetest.Options{K: 2, N: 3})
	cfg := c.Nodes[0]
	ctx := context.Background()
	if _, _, err := node.Backup(ctx, cfg, &bytes.Buffer{}, false); err == nil {
		t.Fatal("backup of a node that never ran (no store)")
	}
	c.StartNode(1, node.Options{})
	sock := node.SocketPath(cfg)
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %s: %v, %v", sock, fi, err)
	}
	if !node.Running(ctx, cfg) {
		t.Fatal("Running: false for a running node")
	}
	var online bytes.Buffer
	h, isOnline, err := node.Backup(ctx, cfg, &online, false)
	if err != nil || !isOnline || h.Node != c.NodeID(1) || h.Cluster != c.Manifest.ClusterID {
		t.Fatalf("online backup: %+v, %v, %v", h, isOnline, err)
	}
	if _, err := store.InspectBackup(bytes.NewReader(online.Bytes())); err != nil {
		t.Fatal(err)
	}
	// Offline while it runs: the store is locked.
	if _, _, err := node.Backup(ctx, cfg, &bytes.Buffer{}, true); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("offline backup of a running node: %v", err)
	}
	// Anything but a request line is refused.
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("give me everything\n"))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if line != "error: unknown request\n" {
		t.Fatalf("bad request answered %q", line)
	}
	if _, err := node.Restore(cfg, bytes.NewReader(online.Bytes()), true); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("restore under a running node: %v", err)
	}

	c.StopNode(1)
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind by a stopped node: %v", err)
	}
	if node.Running(ctx, cfg) {
		t.Fatal("Running: true for a stopped node")
	}
	var offline bytes.Buffer
	if h, isOnline, err := node.Backup(ctx, cfg, &offline, false); err != nil || isOnline || h.Node != c.NodeID(1) {
		t.Fatalf("offline backup: %+v, %v, %v", h, isOnline, err)
	}
	// Restored onto a wiped folder, then onto node 2: refused.
	os.Remove(cfg.Store)
	if _, err := node.Restore(cfg, bytes.NewReader(online.Bytes()), false); err != nil {
		t.Fatal(err)
	}
	if _, err := node.Restore(c.Nodes[1], bytes.NewReader(online.Bytes()), true); !errors.Is(err, store.ErrWrongNode) {
		t.Fatalf("node 1's backup restored as node 2: %v", err)
	}

	// A file that is not a socket where the socket goes: the node starts without online
	// backups, and a backup is refused rather than taken from a store in use.
	if err := os.WriteFile(sock, []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.StartNode(1, node.Options{})
	_, _, err = node.Backup(ctx, cfg, &bytes.Buffer{}, false)
	if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), filepath.Base(sock)) {
		t.Fatalf("backup with the socket path taken: %v", err)
	}
	c.StopNode(1)
	if b, err := os.ReadFile(sock); err != nil || string(b) != "not a socket" {
		t.Fatalf("the node touched a file that is not its socket: %q, %v", b, err)
	}
}
