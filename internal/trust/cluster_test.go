package trust

import (
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	tchsmpb "github.com/tchsm/tchsm/proto"
)

func TestGenerateCluster(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cluster")
	m, files, err := GenerateCluster(dir, "gen-test", 3, 5, []string{"dealer"}, []string{"alice", "ods"})
	if err != nil {
		t.Fatal(err)
	}
	if m.N() != 5 || m.Threshold != 3 || len(m.Dealers) != 1 || len(m.Clients) != 2 || len(files.Identities) != 8 {
		t.Fatalf("manifest %+v files %v", m, files)
	}
	loaded, err := LoadManifest(files.Manifest)
	if err != nil || !reflect.DeepEqual(loaded, m) {
		t.Fatalf("manifest on disk: %v", err)
	}
	// Files written by GenerateCluster work end to end: alice asks, node3 answers.
	alice, err := ReadIdentityFile(files.Identities["alice"], nil)
	if err != nil {
		t.Fatal(err)
	}
	node3, err := ReadIdentityFile(files.Identities["node3"], nil)
	if err != nil {
		t.Fatal(err)
	}
	o, err := NewOpener(loaded)
	if err != nil {
		t.Fatal(err)
	}
	raw, _, err := Seal(alice, "gen-test", tchsmpb.BodyType_BODY_TYPE_HEALTH_REQUEST, &tchsmpb.HealthRequest{}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	req, err := o.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	s := &Sealer{Identity: node3, ClusterID: "gen-test"}
	raw, err = s.Reply(req, tchsmpb.BodyType_BODY_TYPE_HEALTH, &tchsmpb.Health{Node: "node3"}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := o.Open(raw)
	if err != nil || resp.Sender.Index != 3 {
		t.Fatalf("reply: %v %+v", err, resp)
	}
	if _, _, err := GenerateCluster(dir, "gen-test", 3, 5, nil, nil); err == nil {
		t.Fatal("GenerateCluster overwrote existing identities")
	}
	if _, _, err := GenerateCluster(t.TempDir(), "gen-test", 6, 5, nil, nil); !errors.Is(err, ErrInvalidManifest) {
		t.Fatalf("k > n: %v", err)
	}
}
