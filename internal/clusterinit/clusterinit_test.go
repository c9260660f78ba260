package clusterinit

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/trust"
)

func TestCreateWritesLoadableFiles(t *testing.T) {
	dir := t.TempDir()
	l, err := Create(dir, Options{K: 2, N: 3, Clients: 2, Signers: 1, AMQPURL: "amqp://guest:guest@127.0.0.1:5672/x"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := trust.LoadManifest(l.Manifest)
	if err != nil || m.N() != 3 || m.Threshold != 2 || len(m.Clients) != 3 || len(m.Dealers) != 1 {
		t.Fatalf("manifest: %v %+v", err, m)
	}
	// Two admin clients and one signer, each with its role in the manifest.
	if len(l.Clients) != 2 || len(l.Signers) != 1 {
		t.Fatalf("layout: %d admin and %d signer clients", len(l.Clients), len(l.Signers))
	}
	for _, want := range []struct {
		id   string
		role trust.ClientRole
	}{{"client-1", trust.ClientRoleAdmin}, {"client-2", trust.ClientRoleAdmin}, {"signer-1", trust.ClientRoleSigner}} {
		if mem, ok := m.Lookup(want.id); !ok || mem.ClientRole != want.role {
			t.Errorf("%s: %+v, want role %s", want.id, mem, want.role)
		}
	}
	// The passphrases are outside the node folders, in a folder only the owner reads.
	if st, err := os.Stat(dir + "/secrets"); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("secrets folder: %v %v", st, err)
	}
	for i, p := range l.Nodes {
		var c config.Node
		if err := config.Load(p, &c); err != nil {
			t.Fatal(err)
		}
		pass, from, err := c.PassphraseFrom()
		if err != nil {
			t.Fatal(err)
		}
		if c.PassphraseBesideData(from) {
			t.Fatalf("node %d: passphrase %s beside its store or identity", i+1, from)
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(c.Store), "passphrase")); err == nil {
			t.Fatalf("node %d: a passphrase file in its folder", i+1)
		}
		id, err := trust.ReadIdentityFile(c.Identity, pass)
		if err != nil || id.ID != NodeID(i+1) {
			t.Fatalf("node %d identity: %v", i+1, err)
		}
		if _, err := trust.ReadIdentityFile(c.Identity, []byte("wrong")); err == nil {
			t.Fatal("node identity opened with a wrong passphrase")
		}
		st, _ := os.Stat(c.Identity)
		if st.Mode().Perm()&0o077 != 0 {
			t.Fatalf("identity mode %v", st.Mode())
		}
	}
	var cc config.Client
	if err := config.Load(l.Clients[1], &cc); err != nil {
		t.Fatal(err)
	}
	if _, err := trust.ReadIdentityFile(cc.Identity, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(dir, Options{K: 2, N: 3}); !errors.Is(err, ErrExists) {
		t.Fatalf("second Create: %v", err)
	}
	if _, err := Create(t.TempDir(), Options{K: 4, N: 3}); err == nil {
		t.Fatal("k > n accepted")
	}
}

// With BrokerUsers every role gets its own user and password on the same brokers and vhost,
// and the definitions hold the users, their permissions and the nodes' queues, but no password.
func TestCreateBrokerUsers(t *testing.T) {
	dir := t.TempDir()
	l, err := Create(dir, Options{ClusterID: "c1", K: 2, N: 3, BrokerUsers: true,
		AMQPURL: "amqp://admin:secret@b1:5672/v,amqp://admin:secret@b2:5672/v"})
	if err != nil {
		t.Fatal(err)
	}
	var sections []config.AMQP
	for _, p := range l.Nodes {
		var c config.Node
		if err := config.Load(p, &c); err != nil {
			t.Fatal(err)
		}
		sections = append(sections, c.AMQP)
	}
	var d config.Dealer
	if err := config.Load(l.Dealer, &d); err != nil {
		t.Fatal(err)
	}
	var c config.Client
	if err := config.Load(l.Clients[0], &c); err != nil {
		t.Fatal(err)
	}
	sections = append(sections, d.AMQP, c.AMQP)
	want := []string{"tchsm-c1-node-1", "tchsm-c1-node-2", "tchsm-c1-node-3", "tchsm-c1-dealer", "tchsm-c1-client-1"}
	defs, err := os.ReadFile(l.BrokerDefinitions)
	if err != nil {
		t.Fatal(err)
	}
	passwords := map[string]bool{}
	for i, a := range sections {
		if len(a.URLs) != 2 || a.URL != "" {
			t.Fatalf("%s: urls %d", want[i], len(a.URLs))
		}
		for j, raw := range a.URLs {
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			pw, _ := u.User.Password()
			if u.User.Username() != want[i] || len(pw) < 30 || u.Host != fmt.Sprintf("b%d:5672", j+1) || u.Path != "/v" {
				t.Fatalf("%s's URL %d: %s", want[i], j, u.Redacted())
			}
			if strings.Contains(string(defs), pw) {
				t.Fatal("a password in the definitions")
			}
			passwords[pw] = true
		}
		if !strings.Contains(string(defs), `"`+want[i]+`"`) {
			t.Fatalf("%s not in the definitions", want[i])
		}
	}
	if len(passwords) != len(want) || strings.Contains(string(defs), "secret") {
		t.Fatalf("%d distinct passwords for %d users, or the admin's in the definitions", len(passwords), len(want))
	}
	for _, s := range []string{`"tchsm.c1.node.node-3.inbox"`, `"tchsm.c1.inbox"`, `"vhost": "v"`} {
		if !strings.Contains(string(defs), s) {
			t.Fatalf("definitions lack %s", s)
		}
	}
	if st, _ := os.Stat(l.BrokerDefinitions); st.Mode().Perm() != 0o600 {
		t.Fatalf("definitions mode %v", st.Mode())
	}
	conf, _ := os.ReadFile(filepath.Join(dir, "broker", BrokerConf))
	if !strings.Contains(string(conf), "max_message_size = 4194304") {
		t.Fatalf("rabbitmq.conf: %s", conf)
	}
}
