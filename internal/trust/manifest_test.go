package trust

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func cloneManifest(m *Manifest) *Manifest {
	c := *m
	c.Nodes = append([]Member(nil), m.Nodes...)
	c.Dealers = append([]Member(nil), m.Dealers...)
	c.Clients = append([]Member(nil), m.Clients...)
	return &c
}

func TestManifestValidate(t *testing.T) {
	c := newCluster(t)
	big := cloneManifest(c.m)
	for i := 4; i <= MaxNodes+1; i++ {
		id := mustIdentity(t, "n"+string(rune('a'+i/26))+string(rune('a'+i%26)), RoleNode)
		mem := id.Public()
		mem.Index = i
		big.Nodes = append(big.Nodes, mem)
	}
	cases := map[string]func(m *Manifest){
		"version 0":         func(m *Manifest) { m.Version = 0 },
		"empty cluster id":  func(m *Manifest) { m.ClusterID = "" },
		"cluster id with /": func(m *Manifest) { m.ClusterID = "a/b" },
		"k = 0":             func(m *Manifest) { m.Threshold = 0 },
		"k > n":             func(m *Manifest) { m.Threshold = 4 },
		"no nodes":          func(m *Manifest) { m.Nodes = nil; m.Threshold = 1 },
		"index 0":           func(m *Manifest) { m.Nodes[0].Index = 0 },
		"index n+1":         func(m *Manifest) { m.Nodes[2].Index = 4 },
		"duplicate index":   func(m *Manifest) { m.Nodes[2].Index = 1 },
		"client with index": func(m *Manifest) { m.Clients[0].Index = 1 },
		"duplicate id":      func(m *Manifest) { m.Clients[1].ID = "node1" },
		"node listed as dealer": func(m *Manifest) {
			m.Dealers = append(m.Dealers, m.Nodes[0])
		},
		"role mismatch":           func(m *Manifest) { m.Clients[0].Role = RoleDealer },
		"short sign key":          func(m *Manifest) { m.Nodes[1].SignPub = m.Nodes[1].SignPub[:31] },
		"long enc key":            func(m *Manifest) { m.Dealers[0].EncPub = append(bytes.Clone(m.Dealers[0].EncPub), 0) },
		"shared sign key":         func(m *Manifest) { m.Clients[1].SignPub = m.Clients[0].SignPub },
		"shared enc key":          func(m *Manifest) { m.Nodes[1].EncPub = m.Nodes[0].EncPub },
		"bad member id":           func(m *Manifest) { m.Clients[0].ID = "alice smith" },
		"65 nodes":                func(m *Manifest) { *m = *cloneManifest(big) },
		"missing dealer id":       func(m *Manifest) { m.Dealers[0].ID = "" },
		"unknown client role":     func(m *Manifest) { m.Clients[0].ClientRole = "root" },
		"node with a client role": func(m *Manifest) { m.Nodes[0].ClientRole = ClientRoleAdmin },
	}
	for name, mutate := range cases {
		m := cloneManifest(c.m)
		mutate(m)
		if err := m.Validate(); !errors.Is(err, ErrInvalidManifest) {
			t.Errorf("%s: Validate = %v, want ErrInvalidManifest", name, err)
		}
	}
	// Client roles, and none (an older manifest), are fine; a manifest without any keeps its
	// JSON form (and fingerprint), since the field is omitted.
	roles := cloneManifest(c.m)
	roles.Clients[0].ClientRole, roles.Clients[1].ClientRole = ClientRoleSigner, ClientRoleAdmin
	if err := roles.Validate(); err != nil {
		t.Fatalf("client roles: %v", err)
	}
	if b, _ := c.m.Marshal(); bytes.Contains(b, []byte("client_role")) {
		t.Fatal("a manifest without client roles writes client_role")
	}
	// 64 nodes and k = n are fine.
	ok := cloneManifest(big)
	ok.Nodes = ok.Nodes[:MaxNodes]
	ok.Threshold = MaxNodes
	if err := ok.Validate(); err != nil {
		t.Fatalf("64 nodes: %v", err)
	}
	if mem, found := c.m.NodeByIndex(2); !found || mem.ID != "node2" {
		t.Fatalf("NodeByIndex(2) = %v %v", mem, found)
	}
	if _, found := c.m.Lookup("mallory"); found {
		t.Fatal("mallory found in the manifest")
	}
}

func TestManifestSaveLoad(t *testing.T) {
	c := newCluster(t)
	path := filepath.Join(t.TempDir(), "manifest.json")
	if err := c.m.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := LoadManifest(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c.m) {
		t.Fatalf("loaded %+v\nwant %+v", got, c.m)
	}
	if got.Fingerprint() != c.m.Fingerprint() || len(got.Fingerprint()) != 16 {
		t.Fatalf("fingerprints %s %s", got.Fingerprint(), c.m.Fingerprint())
	}
	bad := cloneManifest(c.m)
	bad.Threshold = 9
	if err := bad.Save(path); !errors.Is(err, ErrInvalidManifest) {
		t.Fatalf("saving an invalid manifest: %v", err)
	}
	data, _ := os.ReadFile(path)
	if _, err := ParseManifest(bytes.Replace(data, []byte(`"threshold"`), []byte(`"threshhold"`), 1)); !errors.Is(err, ErrInvalidManifest) {
		t.Fatalf("misspelt field: %v", err)
	}
	if _, err := ParseManifest(append(bytes.Clone(data), []byte("{}")...)); !errors.Is(err, ErrInvalidManifest) {
		t.Fatalf("trailing data: %v", err)
	}
	if _, err := ParseManifest([]byte("null")); !errors.Is(err, ErrInvalidManifest) {
		t.Fatalf("null: %v", err)
	}
}
