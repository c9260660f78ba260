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
	"regexp"
)

// MaxNodes is the largest number of signing nodes a cluster may have.
const MaxNodes = 64

// maxManifestLen bounds manifest files read from disk.
const maxManifestLen = 4 << 20

// ErrInvalidManifest wraps every manifest validation failure.
var ErrInvalidManifest = errors.New("trust: invalid manifest")

// Manifest is the cluster's root of trust: who is in the cluster, with which keys and roles.
//
// Version is the format's version (1). Serial is the manifest's place in the cluster's
// history: 0 for the first manifest (tchsm init, and every manifest written before updates
// existed), then one more for every update (update.go), which names the hash of the manifest it
// replaces in Previous. Admins and AdminThreshold are the rules for the next update: it must
// carry the signatures of at least AdminThreshold of these admins. A manifest without admins
// cannot be updated over the wire; it is changed only by installing a new file on every host,
// as before. The fields added after version 1 are omitted when empty, so that a manifest of
// an older release keeps its bytes, its hash and its fingerprint.
type Manifest struct {
	Version   int      `json:"version"` // 1
	ClusterID string   `json:"cluster_id"`
	Threshold int      `json:"threshold"` // k
	Nodes     []Member `json:"nodes"`     // n = len(Nodes); indices exactly 1..n
	Dealers   []Member `json:"dealers"`
	Clients   []Member `json:"clients"`
	Serial    uint64   `json:"serial,omitempty"`   // 0: the first manifest
	Previous  string   `json:"previous,omitempty"` // hex SHA-256 (Hash) of the manifest this one replaced; "" at serial 0
	// Admins sign the updates of this manifest, offline (see update.go for why they are not
	// the nodes' or clients' keys); AdminThreshold of them are needed (0 without admins).
	Admins         []Admin `json:"admins,omitempty"`
	AdminThreshold int     `json:"admin_threshold,omitempty"`
}

// MaxAdmins bounds a manifest's admin list.
const MaxAdmins = 16

// Admin is a manifest admin's public key: an Ed25519 key kept offline (AdminKey) that signs
// manifest updates and nothing else.
type Admin struct {
	ID      string            `json:"id"`
	SignPub ed25519.PublicKey `json:"sign_pub"` // 32 bytes
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
	if (m.Serial == 0) != (m.Previous == "") {
		return fmt.Errorf("%w: serial %d with previous %.80q (serial 0 has no previous; every later serial names one)", ErrInvalidManifest, m.Serial, m.Previous)
	}
	if m.Previous != "" && !hashPattern.MatchString(m.Previous) {
		return fmt.Errorf("%w: previous %.80q is not a lowercase hex SHA-256", ErrInvalidManifest, m.Previous)
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
	return m.validateAdmins(ids, signKeys)
}

// validateAdmins checks the admin list: at most MaxAdmins, ids and keys unique and apart from
// every member's (an admin key must not be a key that lives on an online host), and
// 1 <= AdminThreshold <= len(Admins), or no admins and AdminThreshold 0.
func (m *Manifest) validateAdmins(ids map[string]bool, signKeys map[string]string) error {
	if len(m.Admins) > MaxAdmins {
		return fmt.Errorf("%w: %d admins (max %d)", ErrInvalidManifest, len(m.Admins), MaxAdmins)
	}
	if len(m.Admins) == 0 && m.AdminThreshold != 0 || len(m.Admins) > 0 && (m.AdminThreshold < 1 || m.AdminThreshold > len(m.Admins)) {
		return fmt.Errorf("%w: admin threshold %d with %d admins (want 1 <= threshold <= admins, or 0 without admins)", ErrInvalidManifest, m.AdminThreshold, len(m.Admins))
	}
	for i, a := range m.Admins {
		if !idPattern.MatchString(a.ID) {
			return fmt.Errorf("%w: admin #%d: id %q must match %s", ErrInvalidManifest, i+1, a.ID, idPattern)
		}
		if ids[a.ID] {
			return fmt.Errorf("%w: duplicate id %q (admins and members share one namespace)", ErrInvalidManifest, a.ID)
		}
		ids[a.ID] = true
		if len(a.SignPub) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: admin %s: signing key is %d bytes (want %d)", ErrInvalidManifest, a.ID, len(a.SignPub), ed25519.PublicKeySize)
		}
		if other, dup := signKeys[string(a.SignPub)]; dup {
			return fmt.Errorf("%w: %s and admin %s share a signing key", ErrInvalidManifest, other, a.ID)
		}
		signKeys[string(a.SignPub)] = a.ID
	}
	return nil
}

// Admin returns the admin with the given id.
func (m *Manifest) Admin(id string) (Admin, bool) {
	for _, a := range m.Admins {
		if a.ID == id {
			return a, true
		}
	}
	return Admin{}, false
}

// Canonical is the manifest's canonical encoding: compact JSON of the struct, fields in
// declaration order, empty later fields omitted. Hashes and update signatures cover these
// bytes, never a file's own spacing.
func (m *Manifest) Canonical() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("trust: encoding manifest: %w", err)
	}
	return b, nil
}

// Hash is the lowercase hex SHA-256 of the canonical encoding: what an update's Previous names.
func (m *Manifest) Hash() string {
	b, err := m.Canonical()
	if err != nil {
		return "invalid"
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
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

// hashPattern is a Hash.
var hashPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

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
	return writeAtomic(path, data, 0o644)
}

// writeAtomic writes data to path through a temporary file in the same folder (fsync, then
// rename over path, then fsync of the folder): readers see the old file or the new one.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("trust: writing %s: %w", filepath.Base(path), err)
	}
	defer os.Remove(tmp.Name())
	fail := func(err error) error {
		tmp.Close()
		return fmt.Errorf("trust: writing %s: %w", filepath.Base(path), err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fail(err)
	}
	if err := tmp.Chmod(mode); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("trust: writing %s: %w", filepath.Base(path), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("trust: writing %s: %w", filepath.Base(path), err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync() // the rename's durability; best effort (not every file system syncs folders)
		d.Close()
	}
	return nil
}
