package node

// Backups of a node's share store (issue 19).
//
// A running node holds its bbolt file locked, so a backup of a running node is made by the
// node itself: it listens on a unix socket beside its store (SocketPath, mode 0600, in the
// node's own folder) and answers each connection that sends "backup" with a snapshot of the
// whole store (store.Store.WriteBackup, one read transaction: signing goes on). The socket is
// not the metrics listener on purpose: metrics_addr is often bound to a network for
// Prometheus, and a backup, although sealed under the passphrase, is exactly what an offline
// guess at the passphrase needs. Only the node's own user (and root) may connect: the socket's
// mode says so and, on Linux, the peer's credentials are checked as well. A stopped node is
// backed up from its store file (Backup with offline). Restore writes a backup back, the node
// stopped.
//
// The socket protocol: the client sends one line, "backup\n"; the node answers "ok\n" and the
// backup, or "error: REASON\n". One backup is made at a time. "ping\n" is answered "pong\n"
// (Running: is a node using this store?).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/trust"
	"github.com/tchsm/tchsm/node/store"
)

// Errors of backups.
var (
	// ErrNotRunning: no node answers on the backup socket.
	ErrNotRunning = errors.New("node: no running node answers on the backup socket")
	// ErrBackup: the node answered, and refused or failed.
	ErrBackup = errors.New("node: backup failed")
)

const (
	backupRequest = "backup"
	pingRequest   = "ping"
	// backupDeadline bounds one backup connection, request to last byte.
	backupDeadline = 2 * time.Minute
)

// SocketPath is where the node of cfg listens for backup requests: beside its store file.
func SocketPath(cfg *config.Node) string { return cfg.Store + ".sock" }

// listenBackups opens the backup socket. A socket left behind by a node that died is
// replaced (the store's lock, held by now, proves that no other node uses this store); any
// other file there is left alone and reported.
func (n *node) listenBackups() (*net.UnixListener, error) {
	path := SocketPath(n.cfg)
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("node: %s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("node: backup socket: %w", err)
	}
	// Connecting needs write permission on the socket: the umask's usual 022 already keeps
	// others out until this chmod.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("node: backup socket: %w", err)
	}
	return ln, nil
}

// serveBackups answers backup requests on ln until it is closed.
func (n *node) serveBackups(ln *net.UnixListener) {
	var one sync.Mutex
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				n.log.Warn("backup socket: accept failed; online backups stop", "error", err)
			}
			return
		}
		go func() {
			defer conn.Close()
			one.Lock()
			defer one.Unlock()
			n.serveBackup(conn)
		}()
	}
}

func (n *node) serveBackup(conn *net.UnixConn) {
	conn.SetDeadline(time.Now().Add(backupDeadline))
	uid, pid, err := peerCred(conn)
	if err != nil {
		n.log.Warn("backup refused: peer credentials", "error", err)
		return
	}
	if uid >= 0 && uid != 0 && uid != os.Getuid() {
		n.log.Warn("backup refused: another user", "peer_uid", uid, "peer_pid", pid)
		fmt.Fprintf(conn, "error: only the node's user may take backups\n")
		return
	}
	line, err := bufio.NewReader(io.LimitReader(conn, 64)).ReadString('\n')
	if err == nil && strings.TrimSpace(line) == pingRequest {
		io.WriteString(conn, "pong\n")
		return
	}
	if err != nil || strings.TrimSpace(line) != backupRequest {
		n.log.Warn("backup socket: bad request", "peer_uid", uid, "peer_pid", pid)
		fmt.Fprintf(conn, "error: unknown request\n")
		return
	}
	t0 := time.Now()
	// A buffer, not the connection: the store's read transaction must not wait on a slow
	// reader (a writer that grows the file would wait for it).
	var buf bytes.Buffer
	buf.WriteString("ok\n")
	h, err := n.store.WriteBackup(&buf)
	if err != nil {
		n.log.Error("backup failed", "error", err, "peer_uid", uid, "peer_pid", pid)
		fmt.Fprintf(conn, "error: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return
	}
	if _, err := conn.Write(buf.Bytes()); err != nil {
		n.log.Warn("backup not delivered", "error", err, "peer_uid", uid, "peer_pid", pid)
		return
	}
	n.log.Info("backup taken", "keys", len(h.Keys), "tombstones", h.Deleted, "bytes", h.Size,
		"seconds", time.Since(t0).Seconds(), "peer_uid", uid, "peer_pid", pid)
}

// RequestBackup asks the node listening on socket for a backup and writes it to w. A socket
// that is missing or that nobody listens on is ErrNotRunning.
func RequestBackup(ctx context.Context, socket string, w io.Writer) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w (%s)", ErrNotRunning, socket)
		}
		return fmt.Errorf("node: backup socket: %w", err)
	}
	defer conn.Close()
	deadline := time.Now().Add(backupDeadline)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	conn.SetDeadline(deadline)
	if _, err := io.WriteString(conn, backupRequest+"\n"); err != nil {
		return fmt.Errorf("node: backup socket: %w", err)
	}
	br := bufio.NewReader(conn)
	status, err := br.ReadString('\n')
	if len(status) > 4096 {
		status = status[:4096]
	}
	if err != nil && status == "" {
		return fmt.Errorf("%w: the node closed the connection (%v)", ErrBackup, err)
	}
	if status != "ok\n" {
		return fmt.Errorf("%w: the node says %q", ErrBackup, strings.TrimSpace(status))
	}
	if _, err := io.Copy(w, br); err != nil {
		return fmt.Errorf("node: backup socket: %w", err)
	}
	return nil
}

// Running reports whether a node answers on cfg's backup socket.
func Running(ctx context.Context, cfg *config.Node) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", SocketPath(cfg))
	if err != nil {
		return false
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	conn.SetDeadline(dl)
	if _, err := io.WriteString(conn, pingRequest+"\n"); err != nil {
		return false
	}
	line, _ := bufio.NewReader(io.LimitReader(conn, 16)).ReadString('\n')
	return line == "pong\n"
}

// Backup writes a backup of cfg's store to w: asked of the running node through its socket
// or, when none answers, read from the store file, which needs the passphrase
// (cfg.PassphraseFrom). offline skips the socket. It returns the backup's header and whether
// it came from the running node.
func Backup(ctx context.Context, cfg *config.Node, w io.Writer, offline bool) (h *store.BackupHeader, online bool, err error) {
	if !offline {
		var buf bytes.Buffer
		err := RequestBackup(ctx, SocketPath(cfg), &buf)
		if err == nil {
			h, err := store.InspectBackup(bytes.NewReader(buf.Bytes()))
			if err != nil {
				return nil, true, err
			}
			if _, err := w.Write(buf.Bytes()); err != nil {
				return nil, true, err
			}
			return h, true, nil
		}
		if !errors.Is(err, ErrNotRunning) {
			return nil, true, err
		}
	}
	if _, err := os.Stat(cfg.Store); err != nil {
		return nil, false, fmt.Errorf("node: no store to back up: %w", err)
	}
	m, id, pass, err := OpenIdentity(cfg)
	if err != nil {
		return nil, false, err
	}
	defer clear(pass)
	s, err := store.Open(cfg.Store, pass, store.Options{NodeID: id.ID, Manifest: m})
	if errors.Is(err, store.ErrLocked) {
		return nil, false, fmt.Errorf("%w; a node holds it but does not answer on %s (started by a release without online backups, or its socket failed: see its log)", err, SocketPath(cfg))
	}
	if err != nil {
		return nil, false, fmt.Errorf("node: share store: %w", err)
	}
	defer s.Close()
	h, err = s.WriteBackup(w)
	return h, false, err
}

// Restore writes the backup read from r as cfg's store, the node stopped: see
// store.RestoreBackup for what it checks. The backup must be of this node (its identity, which
// the passphrase opens) and of the manifest's cluster.
func Restore(cfg *config.Node, r io.Reader, force bool) (*store.Restored, error) {
	m, id, pass, err := OpenIdentity(cfg)
	if err != nil {
		return nil, err
	}
	defer clear(pass)
	return store.RestoreBackup(r, cfg.Store, pass, store.Options{NodeID: id.ID, Manifest: m}, force)
}

// OpenIdentity reads cfg's manifest, passphrase and identity, and checks that the identity is
// the manifest's node of that id (ErrIdentity), as the node does at start. The caller clears
// the passphrase.
func OpenIdentity(cfg *config.Node) (*trust.Manifest, *trust.Identity, []byte, error) {
	m, err := trust.LoadManifest(cfg.Manifest)
	if err != nil {
		return nil, nil, nil, err
	}
	pass, _, err := cfg.PassphraseFrom()
	if err != nil {
		return nil, nil, nil, err
	}
	id, err := trust.ReadIdentityFile(cfg.Identity, pass)
	if err != nil {
		clear(pass)
		return nil, nil, nil, err
	}
	if _, err := memberOf(m, id); err != nil {
		clear(pass)
		return nil, nil, nil, err
	}
	return m, id, pass, nil
}

// memberOf returns id's entry in the manifest, which must be a node's with id's keys.
func memberOf(m *trust.Manifest, id *trust.Identity) (trust.Member, error) {
	mem, ok := m.Lookup(id.ID)
	if !ok || mem.Role != trust.RoleNode || id.Role != trust.RoleNode {
		return trust.Member{}, fmt.Errorf("%w: %s is not a node of cluster %s", ErrIdentity, id.ID, m.ClusterID)
	}
	pub := id.Public()
	if subtle.ConstantTimeCompare(pub.SignPub, mem.SignPub) != 1 || subtle.ConstantTimeCompare(pub.EncPub, mem.EncPub) != 1 {
		return trust.Member{}, fmt.Errorf("%w: the keys of %s differ from the manifest's", ErrIdentity, id.ID)
	}
	if len(mem.DKGPub) > 0 && subtle.ConstantTimeCompare(pub.DKGPub, mem.DKGPub) != 1 {
		return trust.Member{}, fmt.Errorf("%w: the DKG key of %s differs from the manifest's", ErrIdentity, id.ID)
	}
	return mem, nil
}
