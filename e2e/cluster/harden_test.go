package cluster_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/testcluster"
	"github.com/tchsm/tchsm/internal/transport/rabbitmq"
	"github.com/tchsm/tchsm/internal/trust"
	"github.com/tchsm/tchsm/node/nodetest"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
)

// tchsm runs the built command with a client config and returns its stdout and stderr.
func tchsm(t *testing.T, tc *testcluster.Cluster, cfg string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tc.Bin, args...)
	cmd.Env = append(os.Environ(), "TCHSM_CONFIG="+cfg, "TCHSM_AMQP_URL="+tc.AMQPURL, "TCHSM_PIN="+tc.PIN)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// A signer client signs and lists but may not generate, delete or restore keys; the dealer
// refuses it too when the client's own copy of the manifest claims it is an admin. About 15 s.
func TestClientRoles(t *testing.T) {
	tc := testcluster.Start(t, testcluster.Options{K: 2, N: 3})
	admin := tc.Client()
	k := generate(t, admin, 1024)
	signer := tc.Signer()
	if signer.Role() != trust.ClientRoleSigner || admin.Role() != trust.ClientRoleAdmin {
		t.Fatalf("roles: signer %s, admin %s", signer.Role(), admin.Role())
	}
	signOK(t, signer, k, "a signer signs")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if keys, err := signer.Keys(ctx); err != nil || len(keys) != 1 || keys[0].ID != k.ID {
		t.Fatalf("signer's Keys = %v, %v", keys, err)
	}
	refused := func(who string, c *client.Client) {
		t.Helper()
		if _, err := c.GenerateKey(ctx, client.GenerateRequest{Bits: 1024}); !errors.Is(err, client.ErrUnauthorized) {
			t.Errorf("%s GenerateKey: %v, want ErrUnauthorized", who, err)
		}
		if _, err := c.DeleteKey(ctx, k.ID); !errors.Is(err, client.ErrUnauthorized) {
			t.Errorf("%s DeleteKey: %v, want ErrUnauthorized", who, err)
		}
		if _, _, err := c.RestoreKey(ctx, k.ID); !errors.Is(err, client.ErrUnauthorized) {
			t.Errorf("%s RestoreKey: %v, want ErrUnauthorized", who, err)
		}
	}
	refused("signer", signer)

	// The same signer with a manifest of its own that says admin: the client lets the requests
	// go, the dealer (with the real manifest) refuses them.
	var sc config.Client
	if err := config.Load(tc.SignerConfig, &sc); err != nil {
		t.Fatal(err)
	}
	m, err := trust.LoadManifest(sc.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	for i := range m.Clients {
		m.Clients[i].ClientRole = trust.ClientRoleAdmin
	}
	dir := t.TempDir()
	sc.Manifest = filepath.Join(dir, "manifest.json")
	sc.PKCS11, sc.LogFile = nil, ""
	if err := m.Save(sc.Manifest); err != nil {
		t.Fatal(err)
	}
	forged := filepath.Join(dir, "client.json")
	if err := config.Save(forged, sc, 0o600); err != nil {
		t.Fatal(err)
	}
	liar, err := client.Open(ctx, forged)
	if err != nil {
		t.Fatal(err)
	}
	defer liar.Close()
	if liar.Role() != trust.ClientRoleAdmin {
		t.Fatal("the forged manifest did not make the signer an admin locally")
	}
	// Logged in, so that the nodes give it login tickets and the requests reach the dealer.
	if _, err := liar.Login(ctx, []byte(tc.PIN)); err != nil {
		t.Fatal(err)
	}
	refused("signer with a forged manifest", liar)
	signOK(t, admin, k, "the key is still there")

	// The command says why.
	_, stderr, err := tchsm(t, tc, tc.SignerConfig, "keys", "delete", k.ID)
	if err == nil || !strings.Contains(stderr, "role signer") {
		t.Fatalf("tchsm keys delete as a signer: %v\n%s", err, stderr)
	}
}

// Deleting hides a key at once; the nodes keep its share (encrypted) for their grace period
// and `tchsm keys restore` brings it back, after the nodes restarted too; a node whose grace
// period is over purges the share at start. A node given its passphrase in $TCHSM_PASSPHRASE
// does not keep it in /proc/PID/environ. About 25 s.
func TestRecoverableDeletion(t *testing.T) {
	tc := testcluster.Start(t, testcluster.Options{K: 2, N: 3})
	admin := tc.Client()
	signer := tc.Signer()
	k := generate(t, admin, 1024)
	signOK(t, signer, k, "before delete")

	t0 := time.Now()
	out, stderr, err := tchsm(t, tc, tc.ClientConfig, "keys", "delete", k.ID)
	if err != nil {
		t.Fatalf("keys delete: %v\n%s", err, stderr)
	}
	var until time.Time
	if i := strings.Index(out, "recoverable until "); i < 0 {
		t.Fatalf("keys delete does not say until when the key is recoverable: %q", out)
	} else if until, err = time.Parse(time.RFC3339, strings.Fields(out[i+len("recoverable until "):])[0]); err != nil {
		t.Fatal(err)
	}
	if want := t0.Add(config.DefaultDeletedKeyGrace); until.Before(want.Add(-time.Minute)) || until.After(want.Add(time.Minute)) {
		t.Fatalf("recoverable until %v, want about %v", until, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if keys, err := signer.Keys(ctx); err != nil || len(keys) != 0 {
		t.Fatalf("Keys after delete = %v, %v", keys, err)
	}
	if _, err := signer.Sign(ctx, k.ID, scheme.SHA256RSAPKCS, []byte("x")); !errors.Is(err, client.ErrKeyNotFound) {
		t.Fatalf("Sign after delete: %v, want ErrKeyNotFound", err)
	}

	// Every node restarts. Node 3's grace period is now 1 s, so it purges the share at start;
	// node 1 gets its passphrase from $TCHSM_PASSPHRASE only.
	for i := 1; i <= 3; i++ {
		tc.StopNode(i)
	}
	var n3 config.Node
	if err := config.Load(tc.Layout.Nodes[2], &n3); err != nil {
		t.Fatal(err)
	}
	n3.DeletedKeyGrace = config.Duration(time.Second)
	if err := config.Save(tc.Layout.Nodes[2], n3, 0o600); err != nil {
		t.Fatal(err)
	}
	var n1 config.Node
	if err := config.Load(tc.Layout.Nodes[0], &n1); err != nil {
		t.Fatal(err)
	}
	pass, err := n1.Passphrase()
	if err != nil {
		t.Fatal(err)
	}
	n1.PassphraseFile = ""
	if err := config.Save(tc.Layout.Nodes[0], n1, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // past node 3's grace period
	tc.StartNode(2)
	tc.StartNode(3)
	t.Setenv(config.EnvPassphrase, string(pass))
	tc.StartNode(1)
	os.Unsetenv(config.EnvPassphrase)
	tc.WaitUp(3, 30*time.Second)
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", tc.Pid("node-1")))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(env, []byte(config.EnvPassphrase+"=")) || bytes.Contains(env, pass) {
		t.Fatal("node 1's /proc/PID/environ holds its passphrase")
	}

	out, stderr, err = tchsm(t, tc, tc.ClientConfig, "keys", "restore", k.ID)
	if err != nil {
		t.Fatalf("keys restore: %v\n%s%s", err, out, stderr)
	}
	if !strings.Contains(out, "restored on node-1, node-2") || !strings.Contains(stderr, "node-3") {
		t.Fatalf("keys restore said:\n%s%s", out, stderr)
	}
	for i := range 5 {
		signOK(t, signer, k, fmt.Sprint("restored ", i))
	}
	if b, _ := os.ReadFile(filepath.Join(tc.Dir, "node-3.log")); !bytes.Contains(b, []byte("deleted key purged")) {
		t.Fatal("node 3 did not purge the share at start")
	}
	// A signer cannot restore; restoring again changes nothing.
	if _, _, err := signer.RestoreKey(ctx, k.ID); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("signer RestoreKey: %v", err)
	}
	restored, missing, err := admin.RestoreKey(ctx, k.ID)
	if err != nil || !slices.Equal(restored, []string{"node-1", "node-2"}) || !slices.Equal(missing, []string{"node-3"}) {
		t.Fatalf("RestoreKey again = %v %v %v", restored, missing, err)
	}
}

// A copy of an admin client's files (identity, client.json) without the PIN can neither delete
// nor generate keys through the dealer: the nodes give it no login tickets, so the client stops
// before the dealer, and the dealer process refuses a request sent to it without tickets (or
// with the tickets of fewer than k nodes) with NOT_LOGGED_IN. With the PIN, the tchsm command
// deletes and generates. About 15 s.
func TestDealerNeedsLogin(t *testing.T) {
	tc := testcluster.Start(t, testcluster.Options{K: 2, N: 3, DealerPool: -1})
	admin := tc.Client()
	k := generate(t, admin, 1024)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The thief's copy of the files, opened without the PIN.
	dir := t.TempDir()
	var cc config.Client
	if err := config.Load(tc.ClientConfig, &cc); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*string{&cc.Identity, &cc.Manifest} {
		b, err := os.ReadFile(*f)
		if err != nil {
			t.Fatal(err)
		}
		*f = filepath.Join(dir, filepath.Base(*f))
		if err := os.WriteFile(*f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cc.PKCS11, cc.LogFile = nil, ""
	stolen := filepath.Join(dir, "client.json")
	if err := config.Save(stolen, cc, 0o600); err != nil {
		t.Fatal(err)
	}
	thief := tc.Open(stolen, false)
	if _, err := thief.DeleteKey(ctx, k.ID); !errors.Is(err, client.ErrNotLoggedIn) {
		t.Fatalf("DeleteKey without the PIN: %v, want ErrNotLoggedIn", err)
	}
	if _, err := thief.GenerateKey(ctx, client.GenerateRequest{Bits: 1024}); !errors.Is(err, client.ErrNotLoggedIn) {
		t.Fatalf("GenerateKey without the PIN: %v, want ErrNotLoggedIn", err)
	}
	// The command, with no PIN to take (no $TCHSM_PIN, no terminal).
	cmd := exec.CommandContext(ctx, tc.Bin, "keys", "delete", k.ID)
	cmd.Env = append(os.Environ(), "TCHSM_CONFIG="+stolen, "TCHSM_AMQP_URL="+tc.AMQPURL, "TCHSM_PIN=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "not logged in") {
		t.Fatalf("tchsm keys delete without the PIN: %v\n%s", err, out)
	}

	// A client that skips the client's checks: the dealer process itself refuses.
	m := admin.Manifest()
	conn, err := rabbitmq.Dial(ctx, rabbitmq.Config{URL: tc.AMQPURL, ClusterID: m.ClusterID, Name: "thief"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	id, err := trust.ReadIdentityFile(cc.Identity, nil)
	if err != nil {
		t.Fatal(err)
	}
	pass, _ := (&config.Node{PassphraseFile: tc.Dir + "/secrets/node-2.passphrase"}).Passphrase()
	node2, err := trust.ReadIdentityFile(tc.Dir+"/nodes/node-2/identity.json", pass)
	if err != nil {
		t.Fatal(err)
	}
	del := &tchsmpb.DeleteKey{KeyId: k.ID}
	body, _ := proto.Marshal(del)
	_, tkey, _ := ed25519.GenerateKey(nil)
	ticket, err := trust.IssueTicket(node2, m.ClusterID, id.ID, tchsmpb.TicketStatement_LOGGED_IN, tkey.Public().(ed25519.PublicKey), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	oneTicket := &tchsmpb.WithTickets{Tickets: []*tchsmpb.LoginTicket{ticket}, Type: tchsmpb.BodyType_BODY_TYPE_DELETE_KEY, Body: body}
	trust.SignTicketed(tkey, m.ClusterID, id.ID, oneTicket)
	opener, err := trust.NewOpener(m)
	if err != nil {
		t.Fatal(err)
	}
	for name, raw := range map[string][]byte{
		"bare DeleteKey":             nodetest.Forge(id, m.ClusterID, tchsmpb.BodyType_BODY_TYPE_DELETE_KEY, del, time.Now(), 30*time.Second),
		"bare GenerateKeyRequest":    nodetest.Forge(id, m.ClusterID, tchsmpb.BodyType_BODY_TYPE_GENERATE_KEY_REQUEST, &tchsmpb.GenerateKeyRequest{Bits: 1024}, time.Now(), 30*time.Second),
		"DeleteKey with k-1 tickets": nodetest.Forge(id, m.ClusterID, tchsmpb.BodyType_BODY_TYPE_WITH_TICKETS, oneTicket, time.Now(), 30*time.Second),
	} {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		rep, err := conn.Call(cctx, rabbitmq.DealerRPCQueue(m.ClusterID), raw)
		ccancel()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		op, err := opener.Open(rep)
		if err != nil {
			t.Fatalf("%s: reply: %v", name, err)
		}
		if e, ok := op.Message.(*tchsmpb.Error); !ok || e.GetCode() != tchsmpb.Error_NOT_LOGGED_IN {
			t.Fatalf("%s: the dealer answered %v, want NOT_LOGGED_IN", name, op.Message)
		}
	}
	signOK(t, admin, k, "the key survived the thief")

	// With the PIN, the command deletes and generates.
	if out, stderr, err := tchsm(t, tc, stolen, "keys", "delete", k.ID); err != nil || !strings.Contains(out, "deleted") {
		t.Fatalf("tchsm keys delete with the PIN: %v\n%s%s", err, out, stderr)
	}
	if out, stderr, err := tchsm(t, tc, stolen, "keys", "generate", "-bits", "1024"); err != nil || !trust.ValidKeyID(strings.TrimSpace(out)) {
		t.Fatalf("tchsm keys generate with the PIN: %v\n%s%s", err, out, stderr)
	}
}
