package trust

import (
	"fmt"
	"os"
	"path/filepath"
)

// BuildManifest makes a manifest from identities: nodes get indices 1..n in the order given.
// The result is validated.
func BuildManifest(clusterID string, k int, ids ...*Identity) (*Manifest, error) {
	m := &Manifest{Version: 1, ClusterID: clusterID, Threshold: k}
	for _, id := range ids {
		if err := id.check(); err != nil {
			return nil, err
		}
		mem := id.Public()
		switch id.Role {
		case RoleNode:
			mem.Index = len(m.Nodes) + 1
			m.Nodes = append(m.Nodes, mem)
		case RoleDealer:
			m.Dealers = append(m.Dealers, mem)
		case RoleClient:
			m.Clients = append(m.Clients, mem)
		}
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// ClusterFiles names the files GenerateCluster writes.
type ClusterFiles struct {
	Manifest   string            // dir/manifest.json
	Identities map[string]string // identity id -> dir/<id>.identity.json (mode 0600)
}

// GenerateCluster creates fresh identities for n nodes named node1..nodeN and for the given
// dealer and client ids, and writes them (unencrypted, mode 0600) with the manifest into dir,
// which is created with mode 0700 if needed. It is meant for tests and first set-up; production
// identities should be generated on their own hosts, optionally with a passphrase.
func GenerateCluster(dir, clusterID string, k, n int, dealers, clients []string) (*Manifest, *ClusterFiles, error) {
	if n < 1 || n > MaxNodes {
		return nil, nil, fmt.Errorf("%w: %d nodes", ErrInvalidManifest, n)
	}
	var ids []*Identity
	add := func(name string, role Role) error {
		id, err := NewIdentity(name, role)
		if err != nil {
			return err
		}
		ids = append(ids, id)
		return nil
	}
	for i := 1; i <= n; i++ {
		if err := add(fmt.Sprintf("node%d", i), RoleNode); err != nil {
			return nil, nil, err
		}
	}
	for _, d := range dealers {
		if err := add(d, RoleDealer); err != nil {
			return nil, nil, err
		}
	}
	for _, c := range clients {
		if err := add(c, RoleClient); err != nil {
			return nil, nil, err
		}
	}
	m, err := BuildManifest(clusterID, k, ids...)
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("trust: %w", err)
	}
	files := &ClusterFiles{Manifest: filepath.Join(dir, "manifest.json"), Identities: make(map[string]string)}
	for _, id := range ids {
		p := filepath.Join(dir, id.ID+".identity.json")
		if err := WriteIdentityFile(p, id, nil); err != nil {
			return nil, nil, err
		}
		files.Identities[id.ID] = p
	}
	if err := m.Save(files.Manifest); err != nil {
		return nil, nil, err
	}
	return m, files, nil
}
