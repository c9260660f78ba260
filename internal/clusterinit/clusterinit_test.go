package clusterinit

import (
	"errors"
	"os"
	"testing"

	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/trust"
)

func TestCreateWritesLoadableFiles(t *testing.T) {
	dir := t.TempDir()
	l, err := Create(dir, Options{K: 2, N: 3, Clients: 2, AMQPURL: "amqp://guest:guest@127.0.0.1:5672/x"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := trust.LoadManifest(l.Manifest)
	if err != nil || m.N() != 3 || m.Threshold != 2 || len(m.Clients) != 2 || len(m.Dealers) != 1 {
		t.Fatalf("manifest: %v %+v", err, m)
	}
	for i, p := range l.Nodes {
		var c config.Node
		if err := config.Load(p, &c); err != nil {
			t.Fatal(err)
		}
		pass, err := c.Passphrase()
		if err != nil {
			t.Fatal(err)
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
