package trust

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// MaxNodes is the largest number of signing nodes a cluster may have.
const MaxNodes = 64

// maxManifestLen bounds manifest files read from disk.
const maxManifestLen = 4 << 20

// ErrInvalidManifest wraps every manifest validation failure.
var ErrInvalidManifest = errors.New("trust: invalid manifest")

// Manifest is the cluster's root of trust: who is in the cluster, with which keys and roles.
type Manifest struct {
	Version   int      `json:"version"` // 1
	ClusterID string   `json:"cluster_id"`
	Threshold int      `json:"threshold"` // k
	Nodes     []Member `json:"nodes"`     // n = len(Nodes); indices exactly 1..n
	Dealers   []Member `json:"dealers"`
	Clients   []Member `json:"clients"`
}

// N returns the number of signing nodes.
func (m *Manifest) N() int { return len(m.Nodes) }

// Validate checks the manifest: version 1, a well-formed cluster id, 1 <= k <= n <= MaxNodes,
// node indices exactly 1..n, non-nodes with index 0, each member's role matching its list,
// unique ids and keys across all members, and well-formed keys.
func (m *Manifest) Validate() error {
	if m == nil {
		return fmt.Errorf("%w: nil", ErrInvalidManifest)
	}
	if m.Version != 1 {
		return fmt.Errorf("%w: version %d (want 1)", ErrInvalidManifest, m.Version)
	}
	if !idPattern.MatchString(m.ClusterID) {
		return fmt.Errorf("%w: cluster id %q must match %s", ErrInvalidManifest, m.ClusterID, idPattern)
	}
	n := len(m.Nodes)
	if n < 1 || n > MaxNodes {
		return fmt.Errorf("%w: %d nodes (want 1..%d)", ErrInvalidManifest, n, MaxNodes)
	}
	if m.Threshold < 1 || m.Threshold > n {
		return fmt.Errorf("%w: threshold %d with %d nodes (want 1 <= k <= n)", ErrInvalidManifest, m.Threshold, n)
	}
	ids := make(map[string]bool)
	signKeys := make(map[string]string)
	encKeys := make(map[string]string)
	dkgKeys := make(map[string]string)
	indices := make([]bool, n+1)
	for _, list := range []struct {
		role    Role
		members []Member
	}{{RoleNode, m.Nodes}, {RoleDealer, m.Dealers}, {RoleClient, m.Clients}} {
		for i, mem := range list.members {
			if !idPattern.MatchString(mem.ID) {
				return fmt.Errorf("%w: %s #%d: id %q must match %s", ErrInvalidManifest, list.role, i+1, mem.ID, idPattern)
			}
			if mem.Role != list.role {
				return fmt.Errorf("%w: %s is listed as %s but has role %q", ErrInvalidManifest, mem.ID, list.role, mem.Role)
			}
			if ids[mem.ID] {
				return fmt.Errorf("%w: duplicate id %q", ErrInvalidManifest, mem.ID)
			}
			ids[mem.ID] = true
			if list.role == RoleNode {
				if mem.Index < 1 || mem.Index > n || indices[mem.Index] {
					return fmt.Errorf("%w: node %s has index %d (indices must be exactly 1..%d)", ErrInvalidManifest, mem.ID, mem.Index, n)
				}
				indices[mem.Index] = true
			} else if mem.Index != 0 {
				return fmt.Errorf("%w: %s %s has index %d (only nodes have indices)", ErrInvalidManifest, list.role, mem.ID, mem.Index)
			}
			if !mem.ClientRole.valid() || (mem.ClientRole != "" && list.role != RoleClient) {
				return fmt.Errorf("%w: %s %s has client role %q (clients only: %s or %s)", ErrInvalidManifest, list.role, mem.ID, mem.ClientRole, ClientRoleAdmin, ClientRoleSigner)
			}
			if len(mem.SignPub) != ed25519.PublicKeySize {
				return fmt.Errorf("%w: %s: signing key is %d bytes (want %d)", ErrInvalidManifest, mem.ID, len(mem.SignPub), ed25519.PublicKeySize)
			}
			if len(mem.EncPub) != 32 {
				return fmt.Errorf("%w: %s: encryption key is %d bytes (want 32)", ErrInvalidManifest, mem.ID, len(mem.EncPub))
			}
			if _, err := ecdh.X25519().NewPublicKey(mem.EncPub); err != nil {
				return fmt.Errorf("%w: %s: encryption key: %v", ErrInvalidManifest, mem.ID, err)
			}
			if other, dup := signKeys[string(mem.SignPub)]; dup {
				return fmt.Errorf("%w: %s and %s share a signing key", ErrInvalidManifest, other, mem.ID)
			}
			signKeys[string(mem.SignPub)] = mem.ID
			if other, dup := encKeys[string(mem.EncPub)]; dup {
				return fmt.Errorf("%w: %s and %s share an encryption key", ErrInvalidManifest, other, mem.ID)
			}
			encKeys[string(mem.EncPub)] = mem.ID
			if len(mem.DKGPub) > 0 {
				if list.role != RoleNode {
					return fmt.Errorf("%w: %s %s has a DKG key (only nodes have one)", ErrInvalidManifest, list.role, mem.ID)
				}
				if err := checkDKGPub(mem.DKGPub); err != nil {
					return fmt.Errorf("%w: %s: DKG key: %v", ErrInvalidManifest, mem.ID, err)
				}
				if other, dup := dkgKeys[string(mem.DKGPub)]; dup {
					return fmt.Errorf("%w: %s and %s share a DKG key", ErrInvalidManifest, other, mem.ID)
				}
				dkgKeys[string(mem.DKGPub)] = mem.ID
			}
		}
	}
	return nil
}

// Lookup returns the member with the given id.
func (m *Manifest) Lookup(id string) (Member, bool) {
	for _, list := range [][]Member{m.Nodes, m.Dealers, m.Clients} {
		for _, mem := range list {
			if mem.ID == id {
				return mem, true
			}
		}
	}
	return Member{}, false
}

// NodeByIndex returns the node holding share index i (1..n).
func (m *Manifest) NodeByIndex(i int) (Member, bool) {
	for _, mem := range m.Nodes {
		if mem.Index == i {
			return mem, true
		}
	}
	return Member{}, false
}

// Marshal returns the manifest's JSON form (indented, members in the order given).
func (m *Manifest) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("trust: encoding manifest: %w", err)
	}
	return append(b, '\n'), nil
}

// Fingerprint is a short hex SHA-256 of the manifest's JSON form, for logs and for operators to
// compare that every host runs the same manifest.
func (m *Manifest) Fingerprint() string {
	b, err := json.Marshal(m)
	if err != nil {
		return "invalid"
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// ParseManifest decodes and validates a manifest. Unknown JSON fields are rejected so that a
// misspelt field cannot silently weaken the configuration.
func ParseManifest(data []byte) (*Manifest, error) {
	if len(data) > maxManifestLen {
		return nil, fmt.Errorf("%w: %d bytes (max %d)", ErrInvalidManifest, len(data), maxManifestLen)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	m := new(Manifest)
	if err := dec.Decode(m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidManifest, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the manifest", ErrInvalidManifest)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// LoadManifest reads and validates a manifest file.
func LoadManifest(path string) (*Manifest, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("trust: reading manifest: %w", err)
	}
	if st.Size() > maxManifestLen {
		return nil, fmt.Errorf("%w: %s is %d bytes (max %d)", ErrInvalidManifest, path, st.Size(), maxManifestLen)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("trust: reading manifest: %w", err)
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return m, nil
}

// Save validates m and writes it atomically (temporary file, fsync, rename) with mode 0644.
func (m *Manifest) Save(path string) error {
	if err := m.Validate(); err != nil {
		return err
	}
	data, err := m.Marshal()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".manifest-*")
	if err != nil {
		return fmt.Errorf("trust: writing manifest: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("trust: writing manifest: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("trust: writing manifest: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("trust: writing manifest: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("trust: writing manifest: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("trust: writing manifest: %w", err)
	}
	return nil
}
