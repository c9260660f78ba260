package clusterinit

import (
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/trust"
)

// TestReplaceNode: the manifest gets a new identity at the index, the old one is gone, the new
// node's folder holds what a node needs (identity under its passphrase, config, initial PINs),
// and with broker users the definitions trade the old node's user for the new one's.
func TestReplaceNode(t *testing.T) {
	dir := t.TempDir()
	l, err := Create(dir, Options{K: 2, N: 3, AMQPURL: "amqp://admin:pw@broker:5672/vh", BrokerUsers: true, PIN: "1234"})
	if err != nil {
		t.Fatal(err)
	}
	before, err := trust.LoadManifest(l.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ReplaceNode(dir, 2, "node-2b", "1234")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReplaceNode(dir, 2, "node-1", ""); err == nil {
		t.Fatal("a replacement with an id the manifest lists")
	}
	if _, err := ReplaceNode(dir, 4, "", ""); err == nil {
		t.Fatal("a replacement of an index the manifest lacks")
	}
	m, err := trust.LoadManifest(l.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Lookup(NodeID(2)); ok {
		t.Fatal("the old identity is still listed")
	}
	nm, ok := m.NodeByIndex(2)
	if !ok || nm.ID != "node-2b" || m.N() != 3 || m.Threshold != 2 || m.ClusterID != before.ClusterID {
		t.Fatalf("manifest after: %+v", m)
	}
	if m.Serial != before.Serial+1 || m.Previous != before.Hash() {
		t.Fatalf("manifest after: serial %d previous %q, want %d and the replaced one's hash %s", m.Serial, m.Previous, before.Serial+1, before.Hash())
	}
	for _, i := range []int{1, 3} {
		a, _ := before.NodeByIndex(i)
		b, _ := m.NodeByIndex(i)
		if a.ID != b.ID || string(a.SignPub) != string(b.SignPub) {
			t.Fatalf("node %d changed", i)
		}
	}
	if prev, err := trust.LoadManifest(r.Previous); err != nil || prev.Fingerprint() != before.Fingerprint() {
		t.Fatalf("previous manifest kept: %v", err)
	}
	var nc config.Node
	if err := config.Load(r.NodeConfig, &nc); err != nil {
		t.Fatal(err)
	}
	phrase, err := os.ReadFile(r.Passphrase)
	if err != nil {
		t.Fatal(err)
	}
	id, err := trust.ReadIdentityFile(nc.Identity, []byte(strings.TrimSpace(string(phrase))))
	if err != nil {
		t.Fatal(err)
	}
	if id.ID != "node-2b" || string(id.Public().SignPub) != string(nm.SignPub) {
		t.Fatal("the new identity is not the manifest's")
	}
	if nc.InitialPINs == "" {
		t.Fatal("no initial PINs for the new node")
	}
	if _, err := os.Stat(nc.InitialPINs); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(nc.AMQP.URL)
	if err != nil || u.User.Username() != r.BrokerUser || r.BrokerUser == "" || u.Path != "/vh" {
		t.Fatalf("new node's amqp section: user %q, broker user %q", u.User.Username(), r.BrokerUser)
	}
	defs, err := os.ReadFile(l.BrokerDefinitions)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(defs), `"`+r.BrokerUser+`"`) || strings.Contains(string(defs), `"`+r.OldBrokerUser+`"`) || r.OldBrokerUser == "" {
		t.Fatalf("definitions: new user %q present, old user %q absent?", r.BrokerUser, r.OldBrokerUser)
	}
}
